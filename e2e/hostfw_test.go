package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nsnet/nsnet/internal/netns"
)

// TestHostFirewallDrop puts forward chains with policy drop in the test
// host (iptables-nft's FORWARD, as article 003 meets it, and a native nft
// table). nsnet must add narrowly scoped accepts for its own networks,
// record them, and take exactly those away again.
func TestHostFirewallDrop(t *testing.T) {
	l := newLab(t)
	out := l.addOutside()
	l.fixture("ip", "-n", out, "route", "add", "10.0.11.0/24", "via", uplinkHost)
	seen := listen(t, out, net.JoinHostPort(server, "9100"))
	l.fixture("ip", "netns", "exec", l.host, "iptables", "-P", "FORWARD", "DROP")
	l.fixture("ip", "netns", "exec", l.host, "nft", "add table inet hostfw")
	l.fixture("ip", "netns", "exec", l.host, "nft", "add chain inet hostfw guard { type filter hook forward priority 10; policy drop; }")
	// Something the host's own rules already say, which must survive.
	l.fixture("ip", "netns", "exec", l.host, "nft", "add rule inet hostfw guard iifname uplink oifname uplink accept")

	b, r, closed := l.ns("b"), l.ns("r"), l.ns("closed")
	l.must("net", "create", "br", "--subnet", "10.0.10.0/24")
	l.must("net", "create", "rt", "--driver", "routed", "--subnet", "10.0.11.0/24")
	l.must("net", "create", "shut", "--subnet", "10.0.12.0/24", "--no-host-firewall")
	l.must("net", "connect", "br", b)
	l.must("net", "connect", "rt", r)
	l.must("net", "connect", "shut", closed)

	for _, ns := range []string{b, r} {
		if _, err := dial(ns, net.JoinHostPort(server, "9100")); err != nil {
			t.Errorf("%s cannot reach the outside through the dropping forward chains: %v", ns, err)
		} else {
			<-seen
		}
	}
	if _, err := dial(closed, net.JoinHostPort(server, "9100")); err == nil {
		t.Errorf("--no-host-firewall network got through the host's drop policy")
	}
	var n struct {
		ForwardAccepts []struct{ Family, Table, Chain string } `json:"forward_accepts"`
	}
	l.jsonOf(&n, "net", "inspect", "br")
	if len(n.ForwardAccepts) != 2 {
		t.Errorf("forward accepts recorded = %+v, want the two dropping chains", n.ForwardAccepts)
	}
	rules := l.fixture("ip", "netns", "exec", l.host, "nft", "list", "ruleset")
	if !strings.Contains(rules, `iifname "nsbr-br"`) || !strings.Contains(rules, "ip saddr 10.0.11.0/24") || !strings.Contains(rules, `comment "nsnet:network=br"`) {
		t.Errorf("accepts missing or unlabelled:\n%s", rules)
	}
	if strings.Contains(rules, `accept comment "nsnet:network=shut"`) {
		t.Errorf("--no-host-firewall network has accepts:\n%s", rules)
	}
	// iptables still reads its chain: nsnet's rules there are ones it
	// understands (conntrack as its own xt match, not nftables' ct).
	ipt, err := execCommand("ip", "netns", "exec", l.host, "iptables", "-S", "FORWARD")
	for _, want := range []string{"-o nsbr-br -m conntrack --ctstate RELATED,ESTABLISHED", "-o nsbr-br -m conntrack --ctstate DNAT", "-s 10.0.11.0/24", `--comment "nsnet:network=rt"`} {
		if err != nil || !strings.Contains(ipt, want) {
			t.Errorf("iptables -S FORWARD (%v) lacks %q:\n%s", err, want, ipt)
		}
	}

	l.must("net", "rm", "--force", "br")
	l.must("net", "rm", "--force", "rt")
	l.must("net", "rm", "--force", "shut")
	rules = l.fixture("ip", "netns", "exec", l.host, "nft", "list", "ruleset")
	if strings.Contains(rules, "nsnet") {
		t.Errorf("nsnet rules left in the host:\n%s", rules)
	}
	if !strings.Contains(rules, `iifname "uplink" oifname "uplink" accept`) || !strings.Contains(rules, "policy drop") {
		t.Errorf("the host's own rules changed:\n%s", rules)
	}
	if fwd := l.fixture("ip", "netns", "exec", l.host, "iptables", "-S", "FORWARD"); strings.TrimSpace(fwd) != "-P FORWARD DROP" {
		t.Errorf("iptables FORWARD after teardown = %q", fwd)
	}
}

// TestHostReplaced deletes the lab's host namespace and makes a new one
// under the same name: nsnet must not mistake it for the host its network
// was made in, and must still let that network be removed.
func TestHostReplaced(t *testing.T) {
	l := newLab(t)
	a, b := l.ns("a"), l.ns("b")
	l.must("net", "create", "old", "--subnet", "10.0.31.0/24")
	l.must("net", "connect", "old", a)
	l.fixture("ip", "netns", "del", l.host)
	l.fixture("ip", "netns", "add", l.host)

	_, err := l.run("net", "connect", "old", b)
	if err == nil || !strings.Contains(err.Error(), "not the namespace nsnet's networks were made in") {
		t.Errorf("connect on a replaced host: %v, want it refused", err)
	}
	if links := l.hostLinks(); len(links) != 1 {
		t.Errorf("the new namespace got links: %v", links)
	}
	l.must("net", "rm", "--force", "old")
	if out := l.must("net", "ls"); strings.Contains(out, "old") {
		t.Errorf("network still listed after rm: %s", out)
	}
	if got := l.nftTables(); got != "" {
		t.Errorf("the new namespace got nftables tables: %s", got)
	}
	// The new namespace is a host like any other.
	l.must("net", "create", "new", "--subnet", "10.0.32.0/24")
	l.must("net", "connect", "new", b)
	l.mustPing(b, "10.0.32.1")
}

// A link to the host records the host's namespace like a network does: once
// the path leads to another namespace, link rm forgets the link and leaves
// a same-named veth there alone (it is someone else's), and link create is
// refused (issue 9, bug 2).
func TestLinkHostReplaced(t *testing.T) {
	l := newLab(t)
	a := l.ns("a")
	l.must("link", "create", "host", a, "--name", "lk0,lk1")
	l.fixture("ip", "netns", "del", l.host)
	l.fixture("ip", "netns", "add", l.host)
	l.fixture("ip", "-n", l.host, "link", "add", "lk0", "type", "veth", "peer", "name", "theirs0")

	if _, err := l.run("link", "create", "host", l.ns("b")); err == nil || !strings.Contains(err.Error(), "not the namespace nsnet's networks were made in") {
		t.Errorf("link create on a replaced host: %v, want it refused", err)
	}
	l.must("link", "rm", "host", a)
	if links := l.hostLinks(); !slices.Contains(links, "lk0") {
		t.Errorf("link rm deleted the new namespace's own lk0: %v", links)
	}
	if out := l.must("link", "ls"); strings.Contains(out, "lk0") {
		t.Errorf("link still listed after rm: %s", out)
	}
}

// A NAT network is closed to the outside but for its published ports and
// replies, whether or not the admin's forward chain drops, while a
// --no-nat network stays directly reachable by design (issue 10, item 1).
func TestNATNetworkClosedFromOutside(t *testing.T) {
	for _, admin := range []string{"no host firewall", "FORWARD DROP"} {
		t.Run(admin, func(t *testing.T) {
			l := newLab(t)
			out := l.addOutside()
			if admin == "FORWARD DROP" {
				l.fixture("ip", "netns", "exec", l.host, "iptables", "-P", "FORWARD", "DROP")
			}
			seen := listen(t, out, net.JoinHostPort(server, "9100"))
			a, pub, open := l.ns("a"), l.ns("pub"), l.ns("open")
			l.must("net", "create", "nat", "--subnet", "10.0.13.0/24")
			l.must("net", "create", "plain", "--subnet", "10.0.14.0/24", "--no-nat", "--isolate=false")
			l.must("net", "connect", "nat", a)
			l.must("net", "connect", "nat", pub, "-p", "8080:80")
			l.must("net", "connect", "plain", open)
			for _, p := range []string{"10.0.13.0/24", "10.0.14.0/24"} {
				l.fixture("ip", "-n", out, "route", "add", p, "via", uplinkHost)
			}
			listen(t, a, "0.0.0.0:5432")
			listen(t, pub, "0.0.0.0:80")
			listen(t, open, "0.0.0.0:5432")

			if _, err := dial(out, "10.0.13.2:5432"); err == nil {
				t.Errorf("the outside reached a NAT member's unpublished port by its address")
			}
			if _, err := dial(out, "10.0.13.3:80"); err == nil {
				t.Errorf("the outside reached a published member's port by its address, not through the host")
			}
			// Nor with a source address forged to look like a member's.
			l.fixture("ip", "-n", out, "addr", "add", "10.0.13.77/32", "dev", "lo")
			if udpReaches(t, out, "10.0.13.77:0", a, "10.0.13.2:5353") {
				t.Errorf("a packet from the outside with a forged member source reached a NAT member")
			}
			if _, err := dial(out, net.JoinHostPort(uplinkHost, "8080")); err != nil {
				t.Errorf("published port from the outside: %v", err)
			}
			if _, err := dial(out, "10.0.14.2:5432"); err != nil {
				t.Errorf("--no-nat member from the outside: %v, want it reachable", err)
			}
			if _, err := dial(a, net.JoinHostPort(server, "9100")); err != nil {
				t.Errorf("NAT member to the outside: %v", err)
			} else {
				<-seen
			}
			// Between networks, isolation decides: plain opted out.
			if _, err := dial(a, "10.0.14.2:5432"); err != nil {
				t.Errorf("NAT member to the open network: %v", err)
			}
			if _, err := dial(open, "10.0.13.2:5432"); err != nil {
				t.Errorf("open network's member to a NAT member: %v", err)
			}
		})
	}
}

// A namespace that hosts networks cannot be removed from under them
// (issue 10, item 20).
func TestHostNamespaceNotRemoved(t *testing.T) {
	l := newLab(t)
	f := l.ns("f")
	l.must("--host-netns", f, "net", "create", "inner", "--subnet", "10.0.44.0/24")
	_, err := l.run("ns", "rm", f)
	if err == nil || !strings.Contains(err.Error(), "is the host of network inner") {
		t.Fatalf("ns rm of a host namespace: %v, want it refused", err)
	}
	if out := l.must("net", "ls"); !strings.Contains(out, "inner") {
		t.Errorf("network gone after a refused ns rm: %s", out)
	}
	l.must("--host-netns", f, "net", "rm", "inner")
	l.must("ns", "rm", f)
}

// A second state directory on a host that another one manages is refused
// with a line naming the first, instead of rebuilding its table over the
// first's rules (issue 10, item 6).
func TestSecondStateDirectoryRefused(t *testing.T) {
	l := newLab(t)
	a := l.ns("a")
	l.must("net", "create", "one", "--subnet", "10.0.54.0/24")
	l.must("net", "connect", "one", a, "-p", "8085:80")
	other := t.TempDir()
	_, err := l.run("--state-dir", other, "net", "create", "two", "--subnet", "10.0.55.0/24")
	if err == nil || !strings.Contains(err.Error(), "managed by the nsnet state directory "+l.state) {
		t.Fatalf("a second state directory's net create: %v, want it refused naming %s", err, l.state)
	}
	if links := l.hostLinks(); slices.Contains(links, "nsbr-two") {
		t.Errorf("the refused network left its bridge: %v", links)
	}
	rules := l.fixture("ip", "netns", "exec", l.host, "nft", "list", "table", "inet", "nsnet")
	if !strings.Contains(rules, "10.0.54.0/24") || !strings.Contains(rules, "nsnet:state="+l.state) {
		t.Errorf("the first state directory's table changed:\n%s", rules)
	}
}

// udpReaches sends one datagram from namespace from (bound to local) to
// addr, where namespace to listens, and says whether it arrived.
func udpReaches(t *testing.T, from, local, to, addr string) bool {
	t.Helper()
	var pc net.PacketConn
	th, err := netns.Open(netns.Path(to))
	if err != nil {
		t.Fatal(err)
	}
	defer th.Close()
	if err := netns.Do(th, func() (err error) { pc, err = net.ListenPacket("udp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	fh, err := netns.Open(netns.Path(from))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if err := netns.Do(fh, func() error {
		la, err := net.ResolveUDPAddr("udp", local)
		if err != nil {
			return err
		}
		ra, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			return err
		}
		c, err := net.DialUDP("udp", la, ra)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("x"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	pc.SetReadDeadline(time.Now().Add(time.Second))
	_, _, err = pc.ReadFrom(make([]byte, 16))
	return err == nil
}

// The admin turns the host's forward policy to drop after the networks
// were made: the agent notices the ruleset change and puts the accepts in
// without any nsnet command, takes them out when the policy goes back,
// and its own changes set off no further rounds (issue 10, item 5).
func TestForwardDropAfterCreate(t *testing.T) {
	l := newLab(t)
	out := l.addOutside()
	l.fixture("ip", "-n", out, "route", "add", "10.0.14.0/24", "via", uplinkHost)
	listen(t, out, net.JoinHostPort(server, "9100"))
	b, r := l.ns("b"), l.ns("r")
	l.must("net", "create", "br", "--subnet", "10.0.13.0/24")
	l.must("net", "create", "rt", "--driver", "routed", "--subnet", "10.0.14.0/24")
	l.must("net", "connect", "br", b)
	l.must("net", "connect", "rt", r)
	reach := func() error {
		for _, ns := range []string{b, r} {
			if _, err := dial(ns, net.JoinHostPort(server, "9100")); err != nil {
				return fmt.Errorf("%s: %w", ns, err)
			}
		}
		return nil
	}
	if err := reach(); err != nil {
		t.Fatalf("before the drop policy: %v", err)
	}
	// Bounded: the agent looks 100 ms after a change settles.
	eventually := func(what string, ok func() bool) {
		t.Helper()
		for i := 0; i < 40; i++ {
			if ok() {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		log, _ := os.ReadFile(filepath.Join(l.state, "agent.log"))
		t.Fatalf("%s did not happen within 2 s; agent.log:\n%s", what, log)
	}
	l.fixture("ip", "netns", "exec", l.host, "iptables", "-P", "FORWARD", "DROP")
	eventually("accepts after FORWARD DROP", func() bool {
		return strings.Contains(l.fixture("ip", "netns", "exec", l.host, "nft", "list", "chain", "ip", "filter", "FORWARD"), "nsbr-br")
	})
	if err := reach(); err != nil {
		t.Errorf("after FORWARD DROP, with no nsnet command: %v", err)
	}
	var n struct {
		ForwardAccepts []struct{ Family, Table, Chain string } `json:"forward_accepts"`
	}
	l.jsonOf(&n, "net", "inspect", "br")
	if len(n.ForwardAccepts) != 1 || n.ForwardAccepts[0].Chain != "FORWARD" {
		t.Errorf("forward accepts recorded = %+v, want filter FORWARD", n.ForwardAccepts)
	}
	l.fixture("ip", "netns", "exec", l.host, "iptables", "-P", "FORWARD", "ACCEPT")
	eventually("accepts gone after FORWARD ACCEPT", func() bool {
		return !strings.Contains(l.fixture("ip", "netns", "exec", l.host, "nft", "list", "chain", "ip", "filter", "FORWARD"), "nsnet")
	})
	// No ping-pong: the agent's own changes do not make it change more.
	count := func() int {
		log, _ := os.ReadFile(filepath.Join(l.state, "agent.log"))
		return strings.Count(string(log), "dropping forward chains now")
	}
	before := count()
	time.Sleep(500 * time.Millisecond)
	if after := count(); after != before || before != 4 {
		t.Errorf("the agent changed the accepts %d times, then %d; want 4 (two networks, two policy changes), then no more", before, after)
	}
}
