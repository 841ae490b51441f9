package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nsnet/nsnet/internal/netns"
)

// listenUDP starts a UDP echo server inside namespace ns that answers each
// datagram with the source address it saw.
func listenUDP(t *testing.T, ns, addr string) {
	t.Helper()
	h, err := netns.Open(netns.Path(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var c net.PacketConn
	if err := netns.Do(h, func() (err error) { c, err = net.ListenPacket("udp", addr); return err }); err != nil {
		t.Fatalf("listen udp %s in %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(from.String())
			c.WriteTo([]byte(host), from)
		}
	}()
}

// dialUDP sends one datagram from ns and returns the reply.
func dialUDP(ns, addr string) (string, error) {
	h, err := netns.Open(netns.Path(ns))
	if err != nil {
		return "", err
	}
	defer h.Close()
	var c net.Conn
	if err := netns.Do(h, func() (err error) { c, err = net.Dial("udp", addr); return err }); err != nil {
		return "", err
	}
	defer c.Close()
	buf := make([]byte, 1500)
	for range 5 {
		c.Write([]byte("ping"))
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, err := c.Read(buf); err == nil {
			return string(buf[:n]), nil
		}
	}
	return "", errTimeout
}

type timeoutError struct{}

func (timeoutError) Error() string { return "no reply" }

var errTimeout = timeoutError{}

func TestPublishedPorts(t *testing.T) {
	l := newLab(t)
	out := l.addOutside()
	l.fixture("ip", "-n", l.host, "addr", "add", "2001:db8::1/64", "dev", "uplink", "nodad")
	l.fixture("ip", "-n", out, "addr", "add", "2001:db8::2/64", "dev", "eth0", "nodad")
	srv, peer, other := l.ns("srv"), l.ns("peer"), l.ns("other")
	l.must("net", "create", "web", "--subnet", "10.0.31.0/24", "--subnet", "fd00:31::/64")
	l.must("net", "create", "else", "--subnet", "10.0.32.0/24")
	l.must("net", "connect", "web", srv, "-p", "8080:80", "-p", "8053:53/udp", "-p", uplinkHost+":9090:90", "-p", "7000-7001:7100-7101")
	l.must("net", "connect", "web", peer)
	l.must("net", "connect", "else", other)
	srvIP := l.addrOf("web", srv, false)
	for _, port := range []string{"80", "90", "7100", "7101"} {
		listen(t, srv, "[::]:"+port) // both families
	}
	listenUDP(t, srv, "0.0.0.0:53")

	reach := []struct {
		name, from, addr string
		want             bool
	}{
		{"outside via uplink", out, uplinkHost + ":8080", true},
		{"outside, IPv6", out, "[2001:db8::1]:8080", true},
		{"outside, range start", out, uplinkHost + ":7000", true},
		{"outside, range end", out, uplinkHost + ":7001", true},
		{"outside to HOSTIP mapping", out, uplinkHost + ":9090", true},
		{"host on its own address", l.host, uplinkHost + ":8080", true},
		{"host on 127.0.0.1", l.host, "127.0.0.1:8080", true},
		{"host on ::1", l.host, "[::1]:8080", true},
		{"hairpin from the same network", peer, uplinkHost + ":8080", true},
		{"from another network", other, uplinkHost + ":8080", true},
		{"HOSTIP mapping on another address", l.host, "10.0.31.1:9090", false},
		{"unpublished port", out, uplinkHost + ":8081", false},
	}
	for _, c := range reach {
		src, err := dial(c.from, c.addr)
		// ::1 is carried by the agent's proxy, which notices a new port
		// when it next polls the store: on a loaded machine that can take
		// longer than the first dial. Bounded: 2 s.
		for i := 0; err != nil && c.want && strings.Contains(c.addr, "[::1]") && i < 20; i++ {
			time.Sleep(100 * time.Millisecond)
			src, err = dial(c.from, c.addr)
		}
		if (err == nil) != c.want {
			t.Errorf("%s (%s from %s): err=%v, want reachable=%v", c.name, c.addr, c.from, err, c.want)
			continue
		}
		if err == nil && c.name == "outside via uplink" && src != uplinkOut {
			t.Errorf("member saw source %s from the outside, want %s", src, uplinkOut)
		}
	}
	if got, err := dialUDP(out, uplinkHost+":8053"); err != nil || got != uplinkOut {
		t.Errorf("UDP through the published port: reply %q, err %v", got, err)
	}
	if _, err := dialUDP(l.host, "[::1]:8053"); err != nil {
		t.Errorf("UDP through the published port on ::1: %v", err)
	}

	// One host port, one owner.
	if _, err := l.run("net", "connect", "else", l.ns("thief"), "-p", "8080:80"); err == nil || !strings.Contains(err.Error(), `already published by the member "`+srv+`" of network "web"`) {
		t.Errorf("second mapping of tcp/8080: %v", err)
	}
	var n network
	l.jsonOf(&n, "net", "inspect", "web")
	var info struct {
		Networks []struct {
			Ports []struct {
				HostPort int `json:"host_port"`
			} `json:"ports"`
		} `json:"networks"`
	}
	l.jsonOf(&info, "ns", "inspect", srv)
	if len(info.Networks) != 1 || len(info.Networks[0].Ports) != 4 {
		t.Errorf("ns inspect ports = %+v, want 4 mappings", info.Networks)
	}

	l.must("net", "disconnect", "web", srv)
	if _, err := dial(out, uplinkHost+":8080"); err == nil {
		t.Errorf("port still published after disconnect")
	}
	if maps := l.fixture("ip", "netns", "exec", l.host, "nft", "list", "map", "inet", "nsnet", "ports4_any"); strings.Contains(maps, srvIP) {
		t.Errorf("map elements left after disconnect:\n%s", maps)
	}
	l.must("net", "connect", "else", l.ns("heir"), "-p", "8080:80") // the host port is free again
}

// TestIsolation checks who reaches whom across bridge, internal, routed and
// non-isolated networks, the host and the outside, in both directions.
func TestIsolation(t *testing.T) {
	l := newLab(t)
	out := l.addOutside()
	eps := map[string]string{} // endpoint -> namespace
	addr := map[string]string{}
	join := func(name, network string, extra ...string) {
		ns := l.ns(name)
		l.must(append([]string{"net", "connect", network, ns}, extra...)...)
		eps[name], addr[name] = ns, l.addrOf(network, ns, false)
	}
	// Routed members keep their addresses: the outside routes them back.
	l.fixture("ip", "-n", out, "route", "add", "10.0.44.0/24", "via", uplinkHost)
	l.must("net", "create", "A", "--subnet", "10.0.41.0/24")
	l.must("net", "create", "B", "--subnet", "10.0.42.0/24")
	l.must("net", "create", "I", "--subnet", "10.0.43.0/24", "--internal")
	l.must("net", "create", "R", "--driver", "routed", "--subnet", "10.0.44.0/24")
	l.must("net", "create", "S", "--driver", "routed", "--subnet", "10.0.45.0/24")
	l.must("net", "create", "O", "--subnet", "10.0.46.0/24", "--isolate=false")
	join("a1", "A")
	join("a2", "A")
	join("b", "B", "-p", "8443:7000")
	join("i1", "I")
	join("i2", "I")
	join("r", "R")
	join("s", "S")
	join("o", "O")
	eps["out"], addr["out"] = out, server
	eps["host"], addr["host"] = l.host, uplinkHost
	both := l.ns("both")
	l.must("net", "connect", "A", both)
	l.must("net", "connect", "B", both)
	eps["both"] = both
	for name, ns := range eps {
		if name != "both" {
			listen(t, ns, net.JoinHostPort(addr[name], "7000"))
		}
	}

	cells := []struct {
		from, to string
		want     bool
	}{
		{"a1", "a2", true}, {"a2", "a1", true}, // same network
		{"a1", "b", false}, {"b", "a1", false}, // other network
		{"r", "s", false}, {"s", "r", false}, // routed networks
		{"a1", "r", false}, {"r", "a1", false},
		{"a1", "i1", false}, {"i1", "a1", false}, // internal network
		{"i1", "i2", true},
		{"i1", "out", false}, {"i1", "host", false},
		{"a1", "out", true}, {"r", "out", true}, // the outside
		{"a1", "host", true}, {"host", "a1", true}, {"host", "r", true}, {"r", "host", true},
		{"o", "a1", true}, {"a1", "o", true}, // --isolate=false
		{"both", "a1", true}, {"both", "b", true},
		{"out", "a1", false}, // masqueraded: the outside has no way in
		{"out", "r", true},   // routed without NAT: reachable by its own address
		{"out", "i1", false},
		{"host", "i1", true}, // the host sits on the internal bridge
		{"i1", "b", false}, {"b", "i1", false},
		{"i1", "r", false}, {"r", "i1", false},
	}
	for _, c := range cells {
		_, err := dialTimeout(eps[c.from], net.JoinHostPort(addr[c.to], "7000"), 500*time.Millisecond)
		if (err == nil) != c.want {
			t.Errorf("%s -> %s (%s): reachable=%v, want %v (%v)", c.from, c.to, addr[c.to], err == nil, c.want, err)
		}
	}
	// The other network's gateway is closed too; its published ports are not.
	if _, err := dialTimeout(eps["a1"], "10.0.42.1:22", 500*time.Millisecond); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("a1 reached B's gateway: %v (want a drop, not a refusal)", err)
	}
	if _, err := dial(eps["a1"], uplinkHost+":8443"); err != nil {
		t.Errorf("a1 cannot reach B's published port through the host: %v", err)
	}
}

// dialTimeout is dial with a shorter wait, for cells expected to fail.
func dialTimeout(ns, addr string, d time.Duration) (string, error) {
	h, err := netns.Open(netns.Path(ns))
	if err != nil {
		return "", err
	}
	defer h.Close()
	var c net.Conn
	if err := netns.Do(h, func() (err error) { c, err = net.DialTimeout("tcp", addr, d); return err }); err != nil {
		return "", err
	}
	c.Close()
	return "", nil
}

// A published range larger than the agent's file budget does not take the
// agent down: the [::1] proxy carries what it can and says so, names still
// resolve, and its sockets go with the ports (issue 10, item 11).
func TestProxyBudget(t *testing.T) {
	l := newLab(t)
	a, b := l.ns("a"), l.ns("b")
	l.must("net", "create", "n", "--subnet", "10.0.56.0/24")
	// The agent this command starts (the first that needs one) inherits
	// a file limit of 1024: a budget of 512 proxies.
	cmd := exec.Command("sh", "-c", `ulimit -n 1024 && exec "$0" "$@"`, nsnetBin, "--state-dir", l.state, "--host-netns", l.host,
		"net", "connect", "n", a, "-p", "20000-21999:20000-21999/udp")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("connect with a large range: %v\n%s", err, out)
	}
	l.must("net", "connect", "n", b)
	count := func() int {
		out := l.fixture("ip", "netns", "exec", l.host, "ss", "-Hlun", "src", "[::1]")
		return len(strings.Split(strings.TrimSpace(out), "\n"))
	}
	if got, err := l.getent(a, b); err != nil || !strings.HasPrefix(got, "10.0.56.3") {
		t.Errorf("names after publishing 2000 ports: %q, %v", got, err)
	}
	log, _ := os.ReadFile(filepath.Join(l.state, "agent.log"))
	if n := count(); n != 512 || !strings.Contains(string(log), "carries 512 of 2000 published ports") {
		t.Errorf("%d [::1] listeners, want the budget of 512; the agent log says:\n%s", n, log)
	}
	l.must("net", "disconnect", "n", a)
	if out := strings.TrimSpace(l.fixture("ip", "netns", "exec", l.host, "ss", "-Hlun", "src", "[::1]")); out != "" {
		t.Errorf("[::1] listeners left after disconnect:\n%.300s", out)
	}
}

// Isolation holds for IPv6 as for IPv4 (issue 10, item 32).
func TestIsolationIPv6(t *testing.T) {
	l := newLab(t)
	l.must("net", "create", "A", "--subnet", "10.0.57.0/24", "--subnet", "fd00:57::/64")
	l.must("net", "create", "B", "--subnet", "10.0.58.0/24", "--subnet", "fd00:58::/64")
	l.must("net", "create", "O", "--subnet", "10.0.59.0/24", "--subnet", "fd00:59::/64", "--isolate=false")
	eps := map[string]string{}
	for name, network := range map[string]string{"a1": "A", "a2": "A", "b": "B", "o": "O"} {
		ns := l.ns(name)
		l.must("net", "connect", network, ns)
		eps[name] = ns
		listen(t, ns, net.JoinHostPort(l.addrOf(network, ns, true), "7000"))
	}
	v6 := func(name string) string {
		return map[string]string{"a1": "A", "a2": "A", "b": "B", "o": "O"}[name]
	}
	for _, c := range []struct {
		from, to string
		want     bool
	}{
		{"a1", "a2", true}, {"a1", "b", false}, {"b", "a1", false},
		{"o", "a1", true}, {"a1", "o", true}, {"b", "o", true},
	} {
		to := net.JoinHostPort(l.addrOf(v6(c.to), eps[c.to], true), "7000")
		_, err := dial(eps[c.from], to)
		if (err == nil) != c.want {
			t.Errorf("IPv6 %s -> %s (%s): err=%v, want reachable=%v", c.from, c.to, to, err, c.want)
		}
	}
}

// A member reaches its own published port, with br_netfilter's bridge
// hooks on (bridge-nf-call-iptables=1, the default once the module is
// loaded, as on any Docker host) and off (issue 10, item 17).
func TestSelfHairpin(t *testing.T) {
	const knob = "/proc/sys/net/bridge/bridge-nf-call-iptables"
	for _, brnf := range []string{"0", "1"} {
		t.Run("bridge-nf-call-iptables="+brnf, func(t *testing.T) {
			l := newLab(t)
			l.addOutside()
			if _, err := os.Stat(knob); err != nil {
				// The machine has no br_netfilter: the bridge runs no
				// IP hooks, which is the "0" case.
				if brnf == "1" {
					t.Skip("br_netfilter is not loaded on this machine; nsnet's tests never load kernel modules")
				}
			} else {
				l.fixture("ip", "netns", "exec", l.host, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables="+brnf)
			}
			srv := l.ns("srv")
			l.must("net", "create", "web", "--subnet", "10.0.33.0/24")
			l.must("net", "connect", "web", srv, "-p", "8080:80")
			listen(t, srv, "0.0.0.0:80")
			if _, err := dial(srv, uplinkHost+":8080"); err != nil {
				t.Errorf("the member to its own published port %s:8080: %v", uplinkHost, err)
			}
		})
	}
}
