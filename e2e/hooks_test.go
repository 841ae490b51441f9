package e2e

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// chains lists the chains of nsnet's table in the lab's host, as nft sees
// them.
func (l *lab) chains() []string {
	l.t.Helper()
	var names []string
	inTable := false
	for _, line := range strings.Split(l.fixture("ip", "netns", "exec", l.host, "nft", "list", "chains", "inet"), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[0] == "table":
			inTable = f[2] == "nsnet"
		case inTable && len(f) >= 2 && f[0] == "chain" && f[1] != "owner":
			// owner is a regular chain, no hook: no packet passes it.
			names = append(names, f[1])
		}
	}
	slices.Sort(names)
	return names
}

// tracked counts the connections the host's conntrack holds. Without
// nf_conntrack loaded there is no such file, and nothing is tracked.
func (l *lab) tracked() int {
	l.t.Helper()
	out := l.fixture("ip", "netns", "exec", l.host, "sh", "-c", "cat /proc/sys/net/netfilter/nf_conntrack_count 2>/dev/null || echo 0")
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		l.t.Fatalf("conntrack count %q: %v", out, err)
	}
	return n
}

// TestRoutedForwardingPath checks that a routed network with its defaults
// (DNS, isolation, no NAT, no ports) leaves the host's forwarding path
// alone: no chain of nsnet's is hooked where forwarded packets pass, and
// conntrack sees none of them. Published ports, NAT and a second isolated
// network bring exactly the chains they need, and take them away again.
func TestRoutedForwardingPath(t *testing.T) {
	l := newLab(t)
	out := l.addOutside()
	l.fixture("ip", "-n", out, "route", "add", "10.0.21.0/24", "via", uplinkHost)
	seen := listen(t, out, net.JoinHostPort(server, "9200"))
	r1, r2, b := l.ns("r1"), l.ns("r2"), l.ns("b")

	l.must("net", "create", "rt", "--driver", "routed", "--subnet", "10.0.21.0/24")
	l.must("net", "connect", "rt", r1)
	if got, want := l.chains(), []string{"input"}; !slices.Equal(got, want) {
		t.Errorf("chains with a lone routed network = %v, want %v", got, want)
	}
	lo := l.fixture("ip", "-n", l.host, "addr", "show", "dev", "lo")
	if !strings.Contains(lo, "169.254.1.1/32 scope host lo:nsnet") {
		t.Errorf("the routed gateway is not on the host's lo for DNS:\n%s", lo)
	}
	if src, err := dial(r1, net.JoinHostPort(server, "9200")); err != nil {
		t.Fatalf("routed member to the outside: %v", err)
	} else if <-seen; src != l.addrOf("rt", r1, false) {
		t.Errorf("the outside saw %s, want the member's own address", src)
	}
	if n := l.tracked(); n != 0 {
		t.Errorf("conntrack holds %d connections of a routed network without NAT or ports, want 0", n)
	}
	if _, err := l.run("exec", r1, "--", "getent", "hosts", r1); err != nil {
		t.Errorf("DNS at 169.254.1.1 from a routed member: %v", err)
	}
	// The member knows its gateway without asking; gc puts the entry back
	// if someone flushed it.
	for _, step := range []string{"connect", "gc"} {
		if n := l.fixture("ip", "-n", r1, "neigh", "show", "169.254.1.1"); !strings.Contains(n, "PERMANENT") {
			t.Errorf("after %s the member has no permanent entry for its gateway: %q", step, n)
		}
		l.fixture("ip", "-n", r1, "neigh", "del", "169.254.1.1", "dev", "eth0")
		l.must("gc")
	}
	// The host's 169.254.1.1 is for its routed members only: the uplink's
	// LAN gets no ARP answer for it, and no packet through.
	l.fixture("ip", "-n", out, "route", "add", "169.254.1.1/32", "dev", "eth0")
	l.mustNotPing(out, "169.254.1.1")
	if n := l.fixture("ip", "-n", out, "neigh", "show", "169.254.1.1"); strings.Contains(n, "lladdr") {
		t.Errorf("the host answered ARP for 169.254.1.1 on its uplink: %s", n)
	}
	l.fixture("ip", "-n", out, "route", "replace", "169.254.1.1/32", "via", uplinkHost)
	l.mustNotPing(out, "169.254.1.1")

	// A published port brings DNAT, and with it conntrack.
	l.must("net", "connect", "rt", r2, "-p", "8080:80")
	if got, want := l.chains(), []string{"input", "output", "postrouting", "prerouting"}; !slices.Equal(got, want) {
		t.Errorf("chains with a published port = %v, want %v", got, want)
	}
	l.must("net", "disconnect", "rt", r2)
	if got, want := l.chains(), []string{"input"}; !slices.Equal(got, want) {
		t.Errorf("chains after the last port went = %v, want %v", got, want)
	}

	// A second isolated network needs the forward checks; without NAT or
	// ports they need no conntrack.
	l.must("net", "create", "plain", "--subnet", "10.0.22.0/24", "--no-nat")
	l.must("net", "connect", "plain", b)
	if got, want := l.chains(), []string{"forward", "input"}; !slices.Equal(got, want) {
		t.Errorf("chains with two isolated networks = %v, want %v", got, want)
	}
	if rules := l.fixture("ip", "netns", "exec", l.host, "nft", "list", "table", "inet", "nsnet"); strings.Contains(rules, "ct ") {
		t.Errorf("rules use conntrack with nothing to NAT:\n%s", rules)
	}
	l.mustNotPing(r1, l.addrOf("plain", b, false))
	l.mustNotPing(b, l.addrOf("rt", r1, false))

	l.must("net", "rm", "--force", "plain")
	l.must("net", "rm", "--force", "rt")
	if got := l.nftTables(); strings.Contains(got, "nsnet") {
		t.Errorf("nsnet's table outlived its networks: %s", got)
	}
	if lo := l.fixture("ip", "-n", l.host, "addr", "show", "dev", "lo"); strings.Contains(lo, "169.254.1.1") {
		t.Errorf("the routed gateway stayed on lo after the last routed network:\n%s", lo)
	}
}

// TestGCRebuildsTable deletes nsnet's table behind its back; gc must put
// it back, isolation and NAT included.
func TestGCRebuildsTable(t *testing.T) {
	l := newLab(t)
	out := l.addOutside()
	seen := listen(t, out, net.JoinHostPort(server, "9201"))
	a, b := l.ns("a"), l.ns("b")
	l.must("net", "create", "one", "--subnet", "10.0.23.0/24")
	l.must("net", "create", "two", "--subnet", "10.0.24.0/24")
	l.must("net", "connect", "one", a)
	l.must("net", "connect", "two", b, "-p", "8081:81")
	published := listen(t, b, "0.0.0.0:81")
	l.fixture("ip", "netns", "exec", l.host, "nft", "delete", "table", "inet", "nsnet")
	l.mustPing(a, l.addrOf("two", b, false)) // nothing isolates them now

	l.must("gc")
	l.mustNotPing(a, l.addrOf("two", b, false))
	if src, err := dial(a, net.JoinHostPort(server, "9201")); err != nil {
		t.Errorf("after gc, a member cannot reach the outside: %v", err)
	} else if <-seen; src != uplinkHost {
		t.Errorf("after gc the outside saw %s, want the masqueraded %s", src, uplinkHost)
	}
	// The port maps come back from the store.
	if _, err := dial(out, net.JoinHostPort(uplinkHost, "8081")); err != nil {
		t.Errorf("after gc the published port is not reachable: %v", err)
	} else {
		<-published
	}
}

// A namespace deleted behind nsnet's back (ip netns del) leaves nothing in
// nsnet's way: ns create takes the name again, and gc drops its files
// under /etc/netns along with its memberships (issue 10, item 15).
func TestNamespaceDeletedBehindNsnet(t *testing.T) {
	l := newLab(t)
	a, c := l.ns("a"), l.ns("c")
	l.must("net", "create", "n", "--subnet", "10.0.45.0/24")
	l.must("net", "connect", "n", a)
	l.must("net", "connect", "n", c)
	for _, ns := range []string{a, c} {
		if _, err := os.Stat(filepath.Join("/etc/netns", ns, "resolv.conf")); err != nil {
			t.Fatalf("%s has no resolv.conf to lose: %v", ns, err)
		}
		l.fixture("ip", "netns", "del", ns)
	}
	l.must("ns", "create", a)
	if out := l.must("ns", "ls"); !strings.Contains(out, a) {
		t.Errorf("ns ls after re-creating %s:\n%s", a, out)
	}
	if _, err := os.Stat(filepath.Join("/etc/netns", a, "resolv.conf")); !os.IsNotExist(err) {
		t.Errorf("the new %s inherited the old one's resolv.conf: %v", a, err)
	}
	l.must("net", "connect", "n", a) // its old lease and host end are free
	l.must("gc")
	if _, err := os.Stat(filepath.Join("/etc/netns", c)); !os.IsNotExist(err) {
		t.Errorf("gc left /etc/netns/%s: %v", c, err)
	}
	var n struct {
		Members []struct{ Namespace string } `json:"members"`
	}
	l.jsonOf(&n, "net", "inspect", "n")
	if len(n.Members) != 1 || n.Members[0].Namespace != a {
		t.Errorf("members after gc: %+v, want only %s", n.Members, a)
	}
}

// gc brings a host back to what the store says after manual deletions: a
// bridge, a member's veth, a member's addresses and default route, and a
// forward policy that turned to drop after the network was made (issue 10,
// items 5 and 13).
func TestGCRepairsDrift(t *testing.T) {
	l := newLab(t)
	out := l.addOutside()
	seen := listen(t, out, net.JoinHostPort(server, "9100"))
	a, b, r := l.ns("a"), l.ns("b"), l.ns("r")
	l.must("net", "create", "base", "--subnet", "10.0.51.0/24")
	l.must("net", "create", "rt", "--driver", "routed", "--subnet", "10.0.52.0/24", "--nat")
	l.must("net", "connect", "base", a)
	l.must("net", "connect", "base", b)
	l.must("net", "connect", "rt", r)
	hostEnd := func(ns string) string {
		for _, m := range l.network("base").Members {
			if m.Namespace == ns {
				return m.HostIf
			}
		}
		return ""
	}

	l.fixture("ip", "-n", l.host, "link", "del", "nsbr-base")
	l.fixture("ip", "-n", l.host, "link", "del", hostEnd(b))
	l.fixture("ip", "-n", a, "addr", "flush", "dev", "eth0")
	rEnd := l.network("rt").Members[0].HostIf
	l.fixture("ip", "-n", l.host, "link", "del", rEnd)
	l.fixture("ip", "netns", "exec", l.host, "iptables", "-P", "FORWARD", "DROP")

	said := l.must("gc")
	for _, want := range []string{"rebuilt nsbr-base", "member " + b + " of network base: plugged anew", "member " + r + " of network rt: plugged anew", "accepts in the host's dropping forward chains"} {
		if !strings.Contains(said, want) {
			t.Errorf("gc did not say %q:\n%s", want, said)
		}
	}
	for _, ns := range []string{a, b, r} {
		if _, err := dial(ns, net.JoinHostPort(server, "9100")); err != nil {
			t.Errorf("%s cannot reach the outside after gc: %v", ns, err)
		} else {
			<-seen
		}
	}
	l.mustPing(a, "10.0.51.3")
	if again := l.must("gc"); strings.TrimSpace(again) != "" {
		t.Errorf("a second gc found more to do:\n%s", again)
	}
}
