package e2e

import (
	"fmt"
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
	killAgent(t, l)
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

// killAgent kills the lab's DNS agent with SIGKILL and waits (at most a
// second) until it is gone. It returns the agent's pid.
func killAgent(t *testing.T, l *lab) int {
	t.Helper()
	pid := agentPID(t, l)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	return pid
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

// The bridge resolver serves the network's members only: an outside host
// that routes to the gateway is refused, for member names and for names it
// would have to forward (issue 10, item 3).
func TestResolverNotOpen(t *testing.T) {
	l := newLab(t)
	out := l.addOutside()
	upstream(t, out, server+":53")
	a := l.ns("a")
	l.must("net", "create", "n", "--subnet", "10.0.41.0/24", "--dns-upstream", server)
	l.must("net", "connect", "n", a)
	l.fixture("ip", "-n", out, "route", "add", "10.0.41.0/24", "via", uplinkHost)
	// The member is served, forwarded names included.
	if r, _, err := query(a, "10.0.41.1", "udp", "example.test", dns.TypeA); err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("member's query: %v, %v", r, err)
	}
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"example.test", dns.TypeA}, {"example.test", dns.TypeANY}, {a, dns.TypeA}} {
		for _, proto := range []string{"udp", "tcp"} {
			r, _, err := query(out, "10.0.41.1", proto, q.name, q.qtype)
			if err != nil {
				continue // dropped on the way: not answered either
			}
			if r.Rcode != dns.RcodeRefused || len(r.Answer) != 0 {
				t.Errorf("outside asked %s %s over %s: %s %v, want REFUSED", q.name, dns.TypeToString[q.qtype], proto, dns.RcodeToString[r.Rcode], r.Answer)
			}
		}
	}
}

// A network whose resolver cannot be served (another DNS server holds
// port 53 on every address of the host) fails the command that needs it,
// with a line that says why, instead of leaving members with a resolver
// that never answers (issue 10, item 8); once the port is free, the next
// command serves it.
func TestResolverPortTaken(t *testing.T) {
	l := newLab(t)
	a := l.ns("a")
	h, err := netns.Open(netns.Path(l.host))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var pc net.PacketConn
	if err := netns.Do(h, func() (err error) { pc, err = net.ListenPacket("udp", "0.0.0.0:53"); return err }); err != nil {
		t.Fatal(err)
	}
	l.must("net", "create", "n", "--subnet", "10.0.42.0/24")
	_, err = l.run("net", "connect", "n", a)
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "warning: done, but DNS agent") || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("connect with port 53 taken: %v, want a DNS agent warning naming the port, exit status 3", err)
	}
	if n := l.network("n"); len(n.Members) != 1 {
		t.Errorf("the connect was not made: %+v", n.Members)
	}
	pc.Close()
	t.Logf("connect said: %v", err)
	l.ns("b") // any change wakes the agent
	if got, err := l.getent(a, a); err != nil || !strings.HasPrefix(got, "10.0.42.2") {
		t.Errorf("getent %s once the port is free: %q, %v", a, got, err)
	}
}

// A command that returns has finished: a member connect returned for is
// resolvable at once, every time (issue 10, item 7).
func TestResolvableAtOnce(t *testing.T) {
	l := newLab(t)
	base := l.ns("base")
	l.must("net", "create", "n", "--subnet", "10.0.43.0/24")
	l.must("net", "connect", "n", base)
	for i := range 8 {
		q := l.ns(fmt.Sprintf("q%d", i))
		l.must("net", "connect", "n", q)
		if got, err := l.getent(base, q); err != nil || !strings.HasPrefix(got, fmt.Sprintf("10.0.43.%d", i+3)) {
			t.Errorf("getent %s right after connect: %q, %v", q, got, err)
		}
	}
}

// A DNS agent killed with SIGKILL is back for the next nsnet exec, not
// only for the next command that changes the state (issue 10, item 12).
func TestExecRestartsAgent(t *testing.T) {
	l := newLab(t)
	a, b := l.ns("a"), l.ns("b")
	l.must("net", "create", "n", "--subnet", "10.0.53.0/24")
	l.must("net", "connect", "n", a)
	l.must("net", "connect", "n", b)
	pid := killAgent(t, l)
	if got, err := l.getent(a, b); err != nil || !strings.HasPrefix(got, "10.0.53.3") {
		t.Errorf("getent %s through nsnet exec after the agent died: %q, %v", b, got, err)
	}
	if agentPID(t, l) == pid {
		log, _ := os.ReadFile(filepath.Join(l.state, "agent.log"))
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		t.Errorf("the agent was not restarted; its log:\n%s\nstatus of %d:\n%s", log, pid, st)
	}
}

// An IPv6-only routed network has a resolver its members can reach: the
// host's fd6e:736e:6574::53, not 169.254.1.1 (issue 10, item 9) — also
// from a member whose default route is on another network.
func TestRoutedIPv6OnlyDNS(t *testing.T) {
	l := newLab(t)
	a, b, c := l.ns("a"), l.ns("b"), l.ns("c")
	l.must("net", "create", "v6", "--driver", "routed", "--subnet", "fd00:56::/64")
	l.must("net", "create", "br", "--subnet", "10.0.56.0/24")
	l.must("net", "connect", "v6", a)
	l.must("net", "connect", "v6", b)
	l.must("net", "connect", "br", c)
	l.must("net", "connect", "v6", c)
	conf, err := l.run("exec", a, "--", "cat", "/etc/resolv.conf")
	if err != nil || !strings.Contains(conf, "nameserver fd6e:736e:6574::53") || strings.Contains(conf, "169.254.1.1") {
		t.Errorf("resolv.conf of an IPv6-only routed member:\n%s(%v)", conf, err)
	}
	bIP := l.addrOf("v6", b, true)
	for _, from := range []string{a, c} {
		if got, err := l.getent(from, b); err != nil || !strings.HasPrefix(got, bIP+" ") {
			t.Errorf("getent %s in %s = %q (%v), want %s", b, from, got, err, bIP)
		}
	}
	// The address goes with the last routed network that needs it.
	l.must("net", "rm", "v6", "--force")
	if out := l.fixture("ip", "-n", l.host, "-6", "addr", "show", "dev", "lo"); strings.Contains(out, "fd6e:736e:6574::53") {
		t.Errorf("fd6e:736e:6574::53 stays on lo after the last routed network:\n%s", out)
	}
}
