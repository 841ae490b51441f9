package e2e

import (
	"encoding/json"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestBridgeWithNAT rebuilds article 000: red and green on a bridge with a
// gateway, masqueraded to the outside, then takes it all down again.
func TestBridgeWithNAT(t *testing.T) {
	l := newLab(t)
	out := l.addOutside()
	seen := listen(t, out, net.JoinHostPort(server, "8080"))
	red, green := l.ns("red"), l.ns("green")
	l.must("net", "create", "vnet", "--subnet", "192.168.20.0/24")
	l.must("net", "connect", "vnet", red)
	l.must("net", "connect", "vnet", green, "--ip", "192.168.20.50")

	n := l.network("vnet")
	if len(n.Members) != 2 || n.Gateways[0] != "192.168.20.1" {
		t.Fatalf("net inspect = %+v, want 2 members and gateway 192.168.20.1", n)
	}
	redIP, greenIP := l.addrOf("vnet", red, false), l.addrOf("vnet", green, false)
	if redIP != "192.168.20.2" || greenIP != "192.168.20.50" {
		t.Errorf("addresses red=%s green=%s, want first free 192.168.20.2 and requested 192.168.20.50", redIP, greenIP)
	}

	l.mustPing(red, greenIP)
	l.mustPing(green, redIP)
	l.mustPing(red, "192.168.20.1")
	if _, err := exec2(l, "ip", "netns", "exec", l.host, "ping", "-c1", "-W1", redIP); err != nil {
		t.Errorf("host cannot reach member %s: %v", redIP, err)
	}

	src, err := dial(red, net.JoinHostPort(server, "8080"))
	if err != nil {
		t.Fatalf("member to outside: %v", err)
	}
	if src != uplinkHost {
		t.Errorf("outside saw source %s, want the host's uplink %s (masquerade)", src, uplinkHost)
	}
	<-seen

	// The bridge port carries no address; the gateway lives on the bridge.
	var addrs []struct {
		Ifname   string `json:"ifname"`
		AddrInfo []struct {
			Local string `json:"local"`
		} `json:"addr_info"`
	}
	json.Unmarshal([]byte(l.fixture("ip", "-n", l.host, "-j", "addr", "show")), &addrs)
	for _, a := range addrs {
		if a.Ifname == n.Bridge && (len(a.AddrInfo) == 0 || a.AddrInfo[0].Local != "192.168.20.1") {
			t.Errorf("bridge %s addresses = %+v, want the gateway", a.Ifname, a.AddrInfo)
		}
		if strings.HasPrefix(a.Ifname, "nsv") && len(a.AddrInfo) != 0 {
			t.Errorf("bridge port %s has addresses %+v, want none", a.Ifname, a.AddrInfo)
		}
	}

	// The rules are readable with nft and live in nsnet's table only.
	rules := l.fixture("ip", "netns", "exec", l.host, "nft", "list", "ruleset")
	masq := l.fixture("ip", "netns", "exec", l.host, "nft", "list", "set", "inet", "nsnet", "masq4")
	if !strings.Contains(rules, "table inet nsnet") || !strings.Contains(rules, `ip saddr @masq4 ip saddr . ip daddr != @same4 masquerade`) || !strings.Contains(masq, "192.168.20.0/24") {
		t.Errorf("ruleset lacks nsnet's masquerade:\n%s", rules)
	}
	// Interface-name sets list their names, not "" (the sets carry the
	// byte order nft prints them by).
	if bridges := l.fixture("ip", "netns", "exec", l.host, "nft", "list", "set", "inet", "nsnet", "bridges"); !strings.Contains(bridges, `"`+n.Bridge+`"`) {
		t.Errorf("set bridges does not list %s:\n%s", n.Bridge, bridges)
	}

	var info struct {
		Routes []struct{ Dst, Via, Dev string } `json:"routes"`
	}
	l.jsonOf(&info, "ns", "inspect", red)
	if len(info.Routes) == 0 || info.Routes[0].Dst != "default" || info.Routes[0].Via != "192.168.20.1" {
		t.Errorf("ns inspect routes = %+v, want default via 192.168.20.1 first", info.Routes)
	}

	l.must("ns", "rm", red)
	l.must("ns", "rm", green)
	l.must("net", "rm", "vnet")
	assertClean(t, l)
}

// assertClean checks that no nsnet link, table, network or namespace is left.
func assertClean(t *testing.T, l *lab) {
	t.Helper()
	if links := l.nsnetLinks(); len(links) != 0 {
		t.Errorf("links left in host: %v", links)
	}
	if tables := l.nftTables(); tables != "" {
		t.Errorf("nftables tables left in host: %s", tables)
	}
	var nets []network
	l.jsonOf(&nets, "net", "ls")
	if len(nets) != 0 {
		t.Errorf("networks left in store: %+v", nets)
	}
	var nss []struct {
		Name    string `json:"name"`
		Managed bool   `json:"managed"`
	}
	l.jsonOf(&nss, "ns", "ls")
	for _, n := range nss {
		if n.Managed {
			t.Errorf("namespace %s left behind", n.Name)
		}
	}
}

func exec2(l *lab, args ...string) (string, error) {
	out, err := execCommand(args...)
	return out, err
}

// TestDualStack checks that IPv6 works at once after connect, with no DAD
// wait, and that each family gets its default route.
func TestDualStack(t *testing.T) {
	l := newLab(t)
	a, b := l.ns("a"), l.ns("b")
	l.must("net", "create", "ds", "--subnet", "10.30.0.0/24", "--subnet", "fd00:30::/64")
	l.must("net", "connect", "ds", a)
	l.must("net", "connect", "ds", b)
	start := time.Now()
	bIP6 := l.addrOf("ds", b, true)
	l.mustPing(a, bIP6)
	l.mustPing(a, "fd00:30::1")
	l.mustPing(a, l.addrOf("ds", b, false))
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("first IPv6 pings took %s; addresses should be usable at once", d)
	}
	addrs := l.fixture("ip", "-n", a, "-6", "addr", "show", "dev", "eth0")
	if strings.Contains(addrs, "tentative") {
		t.Errorf("member address still tentative:\n%s", addrs)
	}
	routes := l.fixture("ip", "-n", a, "-6", "route", "show", "default")
	if !strings.Contains(routes, "via fd00:30::1") {
		t.Errorf("IPv6 default route = %q, want via fd00:30::1", routes)
	}
	l.must("net", "rm", "ds", "--force")
	l.must("ns", "rm", a)
	l.must("ns", "rm", b)
	assertClean(t, l)
}

// The host's ends of members' veths stay out of IPv6 (but for routed
// IPv6 members, whose host end answers for fe80::1): no route of the
// host's IPv6 table names one, where each used to add a multicast route
// that every link change walked (issue 11). IPv6 through the bridge
// works regardless.
func TestHostEndsOutOfIPv6(t *testing.T) {
	l := newLab(t)
	a, b := l.ns("a"), l.ns("b")
	l.must("net", "create", "ds", "--subnet", "10.31.0.0/24", "--subnet", "fd00:31::/64")
	l.must("net", "create", "rt", "--driver", "routed", "--subnet", "10.32.0.0/24")
	for _, ns := range []string{a, b} {
		l.must("net", "connect", "ds", ns)
		l.must("net", "connect", "rt", ns)
	}
	l.mustPing(a, l.addrOf("ds", b, true))
	l.mustPing(a, "fd00:31::1")
	routes := l.fixture("ip", "-n", l.host, "-6", "route", "show", "table", "all")
	for _, line := range strings.Split(strings.TrimSpace(routes), "\n") {
		if strings.Contains(line, " dev nsv") {
			t.Errorf("the host has an IPv6 route on a member's veth: %s", line)
		}
	}
	ends := 0
	for _, dev := range strings.Fields(l.fixture("ip", "-n", l.host, "-o", "link", "show", "type", "veth")) {
		if name, ok := strings.CutSuffix(dev, ":"); ok && strings.HasPrefix(name, "nsv") {
			ends++
			name, _, _ = strings.Cut(name, "@")
			if v := strings.TrimSpace(l.fixture("ip", "netns", "exec", l.host, "cat", "/proc/sys/net/ipv6/conf/"+name+"/disable_ipv6")); v != "1" {
				t.Errorf("IPv6 is on on the host end %s (disable_ipv6=%s)", name, v)
			}
		}
	}
	if ends != 4 {
		t.Errorf("found %d host ends, want 4", ends)
	}
	l.must("net", "rm", "ds", "--force")
	l.must("net", "rm", "rt", "--force")
	l.must("ns", "rm", a)
	l.must("ns", "rm", b)
	assertClean(t, l)
}

// TestNoNAT checks that without masquerade the outside sees the member's
// own address.
func TestNoNAT(t *testing.T) {
	l := newLab(t)
	out := l.addOutside()
	// The outside routes the subnet back through the host, as a real
	// upstream router would have to.
	l.fixture("ip", "-n", out, "route", "add", "10.40.0.0/24", "via", uplinkHost)
	seen := listen(t, out, net.JoinHostPort(server, "8081"))
	m := l.ns("m")
	l.must("net", "create", "plain", "--subnet", "10.40.0.0/24", "--no-nat")
	l.must("net", "connect", "plain", m)
	src, err := dial(m, net.JoinHostPort(server, "8081"))
	if err != nil {
		t.Fatalf("member to outside: %v", err)
	}
	<-seen
	if src == uplinkHost || src != l.addrOf("plain", m, false) {
		t.Errorf("outside saw source %s, want the member's own %s", src, l.addrOf("plain", m, false))
	}
	if rules := l.fixture("ip", "netns", "exec", l.host, "nft", "list", "ruleset"); strings.Contains(rules, `oifname != "nsbr-plain" masquerade`) {
		t.Errorf("--no-nat network has masquerade rules:\n%s", rules)
	}
}

// TestInternal checks that members of an internal network reach each other
// and nothing else.
func TestInternal(t *testing.T) {
	l := newLab(t)
	out := l.addOutside()
	listen(t, out, net.JoinHostPort(server, "8082"))
	a, b := l.ns("a"), l.ns("b")
	l.must("net", "create", "sealed", "--subnet", "10.50.0.0/24", "--internal")
	l.must("net", "connect", "sealed", a)
	l.must("net", "connect", "sealed", b)
	l.mustPing(a, l.addrOf("sealed", b, false))
	if _, err := dial(a, net.JoinHostPort(server, "8082")); err == nil {
		t.Errorf("internal member reached the outside")
	}
	l.mustNotPing(a, uplinkOut)
	if r := l.fixture("ip", "-n", a, "route", "show", "default"); strings.TrimSpace(r) != "" {
		t.Errorf("internal member has a default route: %s", r)
	}
	// Even with a route added by hand, the host must not forward.
	l.fixture("ip", "-n", a, "route", "add", "default", "via", "10.50.0.1")
	if _, err := dial(a, net.JoinHostPort(server, "8082")); err == nil {
		t.Errorf("internal member reached the outside through a hand-made route")
	}
}

// TestExec checks nsnet exec: exit status, /etc/netns files, /sys.
func TestExec(t *testing.T) {
	l := newLab(t)
	a := l.ns("a")
	l.must("net", "create", "e", "--subnet", "10.60.0.0/24")
	l.must("net", "connect", "e", a)
	_, err := l.run("exec", a, "--", "sh", "-c", "exit 7")
	if err == nil || !strings.Contains(err.Error(), "exit status 7") {
		t.Errorf("exec exit status: %v, want exit status 7", err)
	}
	l.fixture("mkdir", "-p", "/etc/netns/"+a)
	l.fixture("sh", "-c", "echo 'nameserver 192.0.2.53' > /etc/netns/"+a+"/resolv.conf")
	out := l.must("exec", a, "--", "cat", "/etc/resolv.conf")
	if !strings.Contains(out, "192.0.2.53") {
		t.Errorf("resolv.conf inside = %q, want the namespace's own", out)
	}
	out = l.must("exec", a, "--", "ls", "/sys/class/net")
	if got := strings.Fields(out); !slices.Equal(got, []string{"eth0", "lo"}) {
		t.Errorf("/sys/class/net inside = %v, want [eth0 lo]", got)
	}
	if _, err := l.run("exec", "no-such-ns", "--", "true"); err == nil || !strings.Contains(err.Error(), "no such namespace") {
		t.Errorf("exec in unknown namespace: %v", err)
	}
	// ns rm removes the namespace's /etc/netns files too.
	l.must("ns", "rm", a)
	if _, err := execCommand("test", "-e", "/etc/netns/"+a); err == nil {
		t.Errorf("/etc/netns/%s left after ns rm", a)
	}
}
