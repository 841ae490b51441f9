package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// linkMTU reads an interface's MTU in ns through iproute2, as an observer.
func (l *lab) linkMTU(ns, ifname string) int {
	l.t.Helper()
	var links []struct {
		MTU int `json:"mtu"`
	}
	if err := json.Unmarshal([]byte(l.fixture("ip", "-n", ns, "-j", "link", "show", ifname)), &links); err != nil || len(links) != 1 {
		l.t.Fatalf("ip link show %s in %s: %v", ifname, ns, err)
	}
	return links[0].MTU
}

// A network's MTU reaches every device of a member: its interface and its
// host end (issue 10, item 31).
func TestMTUApplied(t *testing.T) {
	l := newLab(t)
	for _, driver := range []string{"bridge", "routed"} {
		a := l.ns("mtu-" + driver)
		subnet := map[string]string{"bridge": "10.0.46.0/24", "routed": "10.0.47.0/24"}[driver]
		l.must("net", "create", driver, "--driver", driver, "--subnet", subnet, "--mtu", "1400")
		l.must("net", "connect", driver, a)
		m := l.network(driver).Members[0]
		if got := l.linkMTU(a, m.IfName); got != 1400 {
			t.Errorf("%s member's %s has MTU %d, want 1400", driver, m.IfName, got)
		}
		if got := l.linkMTU(l.host, m.HostIf); got != 1400 {
			t.Errorf("%s member's host end %s has MTU %d, want 1400", driver, m.HostIf, got)
		}
	}
	if got := l.linkMTU(l.host, "nsbr-bridge"); got != 1400 {
		t.Errorf("bridge has MTU %d, want 1400", got)
	}
}

// A link's IPv6 addresses work as soon as link create returns: no
// duplicate address detection leaves them tentative (issue 10, item 30).
func TestLinkIPv6NotTentative(t *testing.T) {
	l := newLab(t)
	a, b := l.ns("a"), l.ns("b")
	l.must("link", "create", a, b, "--addr", a+"=fd00:48::1/64", "--addr", b+"=fd00:48::2/64")
	for _, ns := range []string{a, b} {
		if out := l.fixture("ip", "-n", ns, "-6", "addr", "show"); strings.Contains(out, "tentative") {
			t.Errorf("%s has tentative addresses right after link create:\n%s", ns, out)
		}
	}
	l.mustPing(a, "fd00:48::2")
}

// A member cannot reach a service on the host's loopback through its
// gateway (route_localnet is on for published ports; the input rules keep
// 127.0.0.0/8 closed), even a member that routes 127.0.0.0/8 out of its
// own interface on purpose (issue 10, item 33). With nsnet's input rules
// flushed the same member gets in, which shows the test can fail.
func TestMemberCannotReachHostLoopback(t *testing.T) {
	l := newLab(t)
	a := l.ns("a")
	l.must("net", "create", "n", "--subnet", "10.0.49.0/24")
	l.must("net", "connect", "n", a, "-p", "8090:80") // ports on: route_localnet matters
	listen(t, l.host, "127.0.0.1:7400")
	// The member sends 127.0.0.0/8 to its gateway, ahead of its own
	// local table.
	l.fixture("ip", "netns", "exec", a, "sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1", "net.ipv4.conf.eth0.route_localnet=1")
	l.fixture("ip", "-n", a, "route", "add", "127.0.0.0/8", "via", "10.0.49.1", "dev", "eth0", "table", "100")
	l.fixture("ip", "-n", a, "rule", "add", "pref", "10", "to", "127.0.0.0/8", "lookup", "100")
	l.fixture("ip", "-n", a, "rule", "add", "pref", "20", "lookup", "local")
	l.fixture("ip", "-n", a, "rule", "del", "pref", "0")
	if _, err := dial(a, "127.0.0.1:7400"); err == nil {
		t.Errorf("a member reached the host's 127.0.0.1:7400")
	}
	l.fixture("ip", "netns", "exec", l.host, "nft", "flush", "chain", "inet", "nsnet", "input")
	if _, err := dial(a, "127.0.0.1:7400"); err != nil {
		t.Errorf("without nsnet's input rules the member still could not get in (%v): the test proves nothing", err)
	}
	l.must("gc")
}

// A routed member reaches the others through its gateway by proxy ARP
// alone: with DNS off and its permanent neighbour entry for 169.254.1.1
// deleted, it has to ask, and the host end must answer (issue 10, item 29).
func TestRoutedProxyARP(t *testing.T) {
	l := newLab(t)
	r1, r2 := l.ns("r1"), l.ns("r2")
	l.must("net", "create", "rt", "--driver", "routed", "--subnet", "10.0.60.0/24", "--dns=false")
	l.must("net", "connect", "rt", r1)
	l.must("net", "connect", "rt", r2)
	l.fixture("ip", "-n", r1, "neigh", "del", "169.254.1.1", "dev", "eth0")
	l.mustPing(r1, l.addrOf("rt", r2, false))
	if out := l.fixture("ip", "-n", r1, "neigh", "show", "169.254.1.1"); !strings.Contains(out, "REACHABLE") && !strings.Contains(out, "STALE") && !strings.Contains(out, "DELAY") {
		t.Errorf("the gateway was not learnt by ARP: %q", out)
	}
}
