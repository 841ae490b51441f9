package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/nsnet/nsnet/internal/netns"
)

// upstream runs a DNS server standing for the outside world's resolver
// inside namespace ns: it knows example.test.
func upstream(t *testing.T, ns, addr string) {
	t.Helper()
	h, err := netns.Open(netns.Path(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var pc net.PacketConn
	if err := netns.Do(h, func() (err error) { pc, err = net.ListenPacket("udp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if len(r.Question) == 1 && r.Question[0].Name == "example.test." && r.Question[0].Qtype == dns.TypeA {
			rr, _ := dns.NewRR("example.test. 60 IN A 198.51.100.7")
			m.Answer = append(m.Answer, rr)
		} else {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
}

// query asks server from inside ns over proto.
func query(ns, server, proto, name string, qtype uint16) (*dns.Msg, time.Duration, error) {
	h, err := netns.Open(netns.Path(ns))
	if err != nil {
		return nil, 0, err
	}
	defer h.Close()
	var c net.Conn
	if err := netns.Do(h, func() (err error) {
		c, err = net.DialTimeout(proto, net.JoinHostPort(server, "53"), time.Second)
		return err
	}); err != nil {
		return nil, 0, err
	}
	defer c.Close()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	cl := &dns.Client{Net: proto, Timeout: 4 * time.Second}
	start := time.Now()
	r, _, err := cl.ExchangeWithConn(m, &dns.Conn{Conn: c})
	return r, time.Since(start), err
}

func (l *lab) getent(ns, name string) (string, error) {
	out, err := l.run("exec", ns, "--", "getent", "hosts", name)
	return strings.TrimSpace(out), err
}

func TestDNS(t *testing.T) {
	l := newLab(t)
	out := l.addOutside()
	l.fixture("ip", "-n", out, "addr", "add", "192.0.2.53/32", "dev", "lo")
	upstream(t, out, "192.0.2.53:53")
	up := []string{"--dns-upstream", "192.0.2.53"}
	l.must(append([]string{"net", "create", "a", "--subnet", "10.0.51.0/24"}, up...)...)
	l.must(append([]string{"net", "create", "b", "--subnet", "10.0.52.0/24"}, up...)...)
	l.must(append([]string{"net", "create", "r", "--driver", "routed", "--subnet", "10.0.53.0/24"}, up...)...)
	l.must("net", "create", "dead", "--subnet", "10.0.54.0/24", "--dns-upstream", "192.0.2.99")
	a1, a2, b1, both := l.ns("a1"), l.ns("a2"), l.ns("b1"), l.ns("both")
	r1, r2, d1 := l.ns("r1"), l.ns("r2"), l.ns("d1")
	l.must("net", "connect", "a", a1)
	l.must("net", "connect", "a", a2, "--alias", "web", "--alias", "www")
	l.must("net", "connect", "b", b1)
	l.must("net", "connect", "a", both)
	l.must("net", "connect", "b", both)
	l.must("net", "connect", "r", r1)
	l.must("net", "connect", "r", r2)
	l.must("net", "connect", "dead", d1)
	a2IP, b1IP := l.addrOf("a", a2, false), l.addrOf("b", b1, false)

	lookups := []struct {
		from, name, want string // want "" means not found
	}{
		{a1, a2, a2IP},
		{a1, "web", a2IP},
		{a1, "WWW", a2IP},
		{a1, b1, ""}, // another network's member
		{b1, a2, ""},
		{both, a2, a2IP}, // a member of both sees both
		{both, b1, b1IP},
		{r1, r2, l.addrOf("r", r2, false)}, // routed, through 169.254.1.1
		{a1, "example.test", "198.51.100.7"},
	}
	for _, c := range lookups {
		got, err := l.getent(c.from, c.name)
		if c.want == "" {
			if err == nil {
				t.Errorf("getent %s in %s = %q, want not found", c.name, c.from, got)
			}
			continue
		}
		if err != nil || !strings.HasPrefix(got, c.want+" ") {
			t.Errorf("getent %s in %s = %q (%v), want %s", c.name, c.from, got, err, c.want)
		}
	}
	// ip netns exec sees the same resolv.conf.
	if out, err := execCommand("ip", "netns", "exec", a1, "getent", "hosts", a2); err != nil || !strings.HasPrefix(out, a2IP) {
		t.Errorf("ip netns exec getent = %q, %v", out, err)
	}
	// PTR, over UDP and TCP.
	for _, proto := range []string{"udp", "tcp"} {
		rev, _ := dns.ReverseAddr(a2IP)
		r, _, err := query(a1, "10.0.51.1", proto, rev, dns.TypePTR)
		if err != nil || len(r.Answer) != 1 || !strings.EqualFold(r.Answer[0].(*dns.PTR).Ptr, a2+".") {
			t.Errorf("PTR of %s over %s: %v %v", a2IP, proto, r, err)
		}
	}
	// A dead upstream gives SERVFAIL quickly, not a client timeout.
	r, took, err := query(d1, "10.0.54.1", "udp", "nowhere.test", dns.TypeA)
	if err != nil || r.Rcode != dns.RcodeServerFailure || took > 1500*time.Millisecond {
		t.Errorf("dead upstream: rcode %v after %s (%v), want SERVFAIL within 1.5 s", r, took, err)
	}

	// A connect is visible within 100 ms, without any restart.
	a3 := l.ns("a3")
	l.must("net", "connect", "a", a3)
	deadline := time.Now().Add(100 * time.Millisecond)
	for {
		r, _, err := query(a1, "10.0.51.1", "udp", a3, dns.TypeA)
		if err == nil && len(r.Answer) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%s not resolvable 100 ms after connect (%v %v)", a3, r, err)
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	l.must("net", "disconnect", "a", a3)
	deadline = time.Now().Add(100 * time.Millisecond)
	for {
		r, _, err := query(a1, "10.0.51.1", "udp", a3, dns.TypeA)
		if err == nil && len(r.Answer) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%s still resolvable 100 ms after disconnect", a3)
			break
		}
		time.Sleep(5 * time.Millisecond)
	}

	// If the agent dies, the next command restarts it.
	pid := agentPID(t, l)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if _, _, err := query(a1, "10.0.51.1", "udp", a2, dns.TypeA); err == nil {
		t.Errorf("resolver still answers after its agent was killed")
	}
	l.must("net", "ls")
	ok := false
	for range 40 {
		if r, _, err := query(a1, "10.0.51.1", "udp", a2, dns.TypeA); err == nil && len(r.Answer) == 1 {
			ok = true
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if !ok {
		t.Errorf("agent not restarted by the next command")
	}
	// With no member left on a DNS network, the agent goes away.
	for _, n := range []string{"a", "b", "r", "dead"} {
		l.must("net", "rm", "--force", n)
	}
	for range 40 {
		if _, err := os.Stat(filepath.Join(l.state, "agent.pid")); err != nil {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Errorf("agent still running with no DNS members")
}

func agentPID(t *testing.T, l *lab) int {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(l.state, "agent.pid"))
	if err != nil {
		t.Fatalf("agent not running: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}
