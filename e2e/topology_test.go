package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// apply runs nsnet apply on a lab file and returns its one-line summary.
func (l *lab) apply(file string, args ...string) string {
	l.t.Helper()
	return strings.TrimSpace(l.must(append([]string{"apply", "-f", file}, args...)...))
}

// destroyAfter removes the lab when the test ends, whatever happened, and
// the namespaces the file names, in case the lab record is what failed.
func (l *lab) destroyAfter(name string, namespaces ...string) {
	l.t.Cleanup(func() {
		l.run("destroy", "--lab", name)
		for _, n := range namespaces {
			exec.Command("ip", "netns", "del", n).Run()
		}
	})
}

// kernelState is what a second apply must leave exactly as it was: every
// lab namespace's links, addresses and routes, and the host's ruleset.
func (l *lab) kernelState(namespaces ...string) string {
	l.t.Helper()
	var b strings.Builder
	for _, ns := range append([]string{l.host}, namespaces...) {
		for _, args := range [][]string{{"-d", "link"}, {"addr"}, {"route"}, {"-6", "route"}} {
			b.WriteString(l.fixture(append([]string{"ip", "-n", ns}, args...)...))
		}
	}
	b.WriteString(l.fixture("ip", "netns", "exec", l.host, "nft", "list", "ruleset"))
	// The kernel reports a new veth's carrier a moment late (linkwatch
	// batches those events for up to a second), and counters count.
	return volatile.ReplaceAllString(b.String(), "")
}

var volatile = regexp.MustCompile(`NO-CARRIER,|state [A-Z]+ |counter packets \d+ bytes \d+|_timer +[\d.]+`)

func (l *lab) assertNoChanges(file string, namespaces ...string) {
	l.t.Helper()
	before := l.kernelState(namespaces...)
	if got := l.apply(file); !strings.HasSuffix(got, ": no changes") {
		l.t.Errorf("second apply of %s: %q, want no changes", file, got)
	}
	if after := l.kernelState(namespaces...); after != before {
		l.t.Errorf("second apply of %s changed the kernel:\n%s", file, lineDiff(before, after))
	}
}

func (l *lab) assertGone(namespaces ...string) {
	l.t.Helper()
	assertClean(l.t, l)
	out := l.fixture("ip", "netns", "list")
	for _, n := range namespaces {
		if strings.Contains(" "+strings.Join(strings.Fields(out), " ")+" ", " "+n+" ") {
			l.t.Errorf("namespace %s left after destroy:\n%s", n, out)
		}
	}
	if out := l.must("lab", "ls", "-o", "json"); strings.TrimSpace(out) != "[]" {
		l.t.Errorf("labs left: %s", out)
	}
}

func example(name string) string { return filepath.Join("..", "examples", name) }

// Article 001: two namespaces on one veth pair.
func TestExampleVethLink(t *testing.T) {
	l := newLab(t)
	l.destroyAfter("veth-link", "test1", "test2")
	if got := l.apply(example("001-veth-link.yaml")); !strings.HasPrefix(got, "lab veth-link: 3 created, 0 changed, 0 removed in") {
		t.Errorf("apply: %q", got)
	}
	l.mustPing("test1", "192.168.1.2")
	l.mustPing("test2", "192.168.1.1")
	if out := l.fixture("ip", "-n", "test1", "-br", "addr", "show", "veth-test1"); !strings.Contains(out, "192.168.1.1/24") {
		t.Errorf("test1's end: %s", out)
	}
	l.assertNoChanges(example("001-veth-link.yaml"), "test1", "test2")
	l.must("destroy", "-f", example("001-veth-link.yaml"))
	l.assertGone("test1", "test2")
}

// Article 002: a bridge with the gateway on the bridge; namespaces reach
// each other and the host reaches them.
func TestExampleBridgeGateway(t *testing.T) {
	l := newLab(t)
	l.destroyAfter("bridge-gateway", "netns1", "netns2")
	l.apply(example("002-bridge-gateway.yaml"))
	l.mustPing("netns1", "10.20.30.41")
	l.mustPing("netns2", "10.20.30.1")
	if _, err := execCommand("ip", "netns", "exec", l.host, "ping", "-c1", "-W1", "10.20.30.40"); err != nil {
		t.Errorf("host cannot reach netns1: %v", err)
	}
	if out := l.fixture("ip", "-n", l.host, "-br", "addr", "show", "br0"); !strings.Contains(out, "10.20.30.1/24") {
		t.Errorf("gateway not on br0: %s", out)
	}
	if out := l.fixture("ip", "-n", "netns1", "-br", "link"); !strings.Contains(out, "veth1-1") {
		t.Errorf("netns1's interface is not veth1-1:\n%s", out)
	}
	l.assertNoChanges(example("002-bridge-gateway.yaml"), "netns1", "netns2")
	l.must("destroy", "--lab", "bridge-gateway")
	l.assertGone("netns1", "netns2")
}

// Article 000: bridge, gateway, masquerade to a simulated outside.
func TestExampleBridgeMasquerade(t *testing.T) {
	l := newLab(t)
	out := l.addOutside()
	seen := listen(t, out, net.JoinHostPort(server, "9000"))
	l.destroyAfter("bridge-masquerade", "red", "green")
	l.apply(example("000-bridge-masquerade.yaml"))
	l.mustPing("red", "192.168.20.3")
	l.mustPing("green", server)
	src, err := dial("red", net.JoinHostPort(server, "9000"))
	if err != nil {
		t.Fatalf("red to outside: %v", err)
	}
	<-seen
	if src != uplinkHost {
		t.Errorf("outside saw %s from red, want the host's %s (masquerade)", src, uplinkHost)
	}
	l.assertNoChanges(example("000-bridge-masquerade.yaml"), "red", "green")
	l.must("destroy", "--lab", "bridge-masquerade")
	l.assertGone("red", "green")
}

// Article 003: two simulated hosts on an underlay with static routes,
// routed networks, FORWARD drop on node02; every side sees real sources.
func TestExampleRoutedTwoHosts(t *testing.T) {
	l := newLab(t)
	names := []string{"node01", "node02", "demo01", "demo02", "demo03"}
	l.destroyAfter("calico-two-nodes", names...)
	l.apply(example("003-routed-two-hosts.yaml"))
	seen := listen(t, "node02", "198.51.100.3:9000")
	src, err := dial("demo01", "198.51.100.3:9000")
	if err != nil {
		t.Fatalf("demo01 to node02: %v", err)
	}
	<-seen
	if src != "10.0.1.2" {
		t.Errorf("node02 saw %s from demo01, want its real address 10.0.1.2", src)
	}
	seen3 := listen(t, "demo03", "10.0.2.2:9000")
	src, err = dial("demo01", "10.0.2.2:9000")
	if err != nil {
		t.Fatalf("demo01 to demo03 across the hosts, through node02's FORWARD drop: %v", err)
	}
	<-seen3
	if src != "10.0.1.2" {
		t.Errorf("demo03 saw %s from demo01, want 10.0.1.2", src)
	}
	l.mustPing("node02", "10.0.1.2")
	if out := l.fixture("ip", "netns", "exec", "node02", "nft", "list", "chain", "ip", "filter", "FORWARD"); !strings.Contains(out, "policy drop") {
		t.Errorf("node02's FORWARD policy is not drop:\n%s", out)
	}
	if out := l.fixture("ip", "-n", "node02", "route", "show", "10.0.1.0/24"); !strings.Contains(out, "via 198.51.100.2") || !strings.Contains(out, "proto 110") {
		t.Errorf("node02's route to node01's pods: %q", out)
	}
	var info struct {
		Hosts []struct {
			Name     string `json:"name"`
			Underlay string `json:"underlay"`
			Forward  string `json:"forward"`
		} `json:"hosts"`
		Routes []struct{ Host, Dst, Via string } `json:"routes"`
	}
	l.jsonOf(&info, "lab", "inspect", "calico-two-nodes")
	if len(info.Hosts) != 2 || info.Hosts[1].Forward != "drop" || info.Hosts[0].Underlay != "198.51.100.2" || len(info.Routes) != 2 {
		t.Errorf("lab inspect: %+v", info)
	}
	if out := l.must("graph", "--lab", "calico-two-nodes", "--format", "mermaid"); !strings.Contains(out, "10.0.1.2/32") || !strings.Contains(out, "subgraph") {
		t.Errorf("graph --lab:\n%s", out)
	}
	l.assertNoChanges(example("003-routed-two-hosts.yaml"), names...)
	l.must("destroy", "--lab", "calico-two-nodes")
	l.assertGone(names...)
}

// Article 004: none, a shared namespace, a user network with DNS and a
// published port, macvlan on the host's LAN, a TAP.
func TestExampleDockerModes(t *testing.T) {
	l := newLab(t)
	out := l.addOutside() // the macvlan's parent: uplink
	names := []string{"lonely", "web", "sidecar", "client", "mac1"}
	l.destroyAfter("docker-modes", names...)
	l.apply(example("004-docker-modes.yaml"))
	if got := l.fixture("ip", "-n", "lonely", "-br", "link"); strings.Count(strings.TrimSpace(got), "\n") != 0 {
		t.Errorf("lonely has more than lo:\n%s", got)
	}
	web := l.addrOf("user", "web", false)
	for _, name := range []string{"web", "www"} {
		if got, err := l.getent("client", name); err != nil || !strings.Contains(got, web) {
			t.Errorf("client resolves %s: %q, %v; want %s", name, got, err, web)
		}
	}
	if got := l.fixture("ip", "-n", "sidecar", "-br", "addr"); !strings.Contains(got, web) {
		t.Errorf("sidecar does not share web's namespace:\n%s", got)
	}
	seen := listen(t, "web", ":80")
	if _, err := dial(out, net.JoinHostPort(uplinkHost, "8080")); err != nil {
		t.Errorf("published port 8080 from outside: %v", err)
	} else {
		<-seen
	}
	l.mustPing("mac1", uplinkOut)
	if got := l.fixture("ip", "-n", l.host, "-d", "link", "show", "vm0"); !strings.Contains(got, "tun type tap") {
		t.Errorf("TAP vm0:\n%s", got)
	}
	l.assertNoChanges(example("004-docker-modes.yaml"), names...)
	l.must("destroy", "--lab", "docker-modes")
	l.assertGone(names...)
}

func (l *lab) writeFile(name, content string) string {
	l.t.Helper()
	p := filepath.Join(l.t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		l.t.Fatal(err)
	}
	return p
}

// apply reconciles: what changed is made anew, what went is removed, what
// the lab does not own is left alone, and a plan is only a plan.
func TestApplyReconciles(t *testing.T) {
	l := newLab(t)
	names := []string{"rc-a", "rc-b", "rc-c"}
	l.destroyAfter("rc", names...)
	// Made by a plain command: the lab must not touch it.
	other := l.ns("other")
	l.must("net", "create", "plain", "--subnet", "10.61.0.0/24")
	l.must("net", "connect", "plain", other)
	v1 := l.writeFile("rc.yaml", `name: rc
networks:
  lan: {subnet: 10.60.0.0/24}
  old: {subnet: 10.62.0.0/24}
namespaces:
  rc-a: {networks: {lan: {ip: 10.60.0.10}}}
  rc-b: {networks: [lan, old]}
`)
	if got := l.apply(v1); !strings.HasPrefix(got, "lab rc: 7 created, 0 changed, 0 removed") {
		t.Errorf("first apply: %q", got)
	}
	v2 := l.writeFile("rc.yaml", `name: rc
networks:
  lan: {subnet: 10.60.0.0/24}
namespaces:
  rc-a: {networks: {lan: {ip: 10.60.0.20}}}
  rc-b: {networks: [lan]}
  rc-c: {networks: [lan]}
`)
	before := l.kernelState("rc-a", "rc-b")
	plan := l.apply(v2, "--dry-run")
	for _, want := range []string{"change member lan rc-a", "remove network old", "remove member old rc-b", "create namespace rc-c", "create member lan rc-c", "would create 2, change 1, remove 2"} {
		if !strings.Contains(plan, want) {
			t.Errorf("dry run plan lacks %q:\n%s", want, plan)
		}
	}
	if l.kernelState("rc-a", "rc-b") != before {
		t.Errorf("--dry-run changed the kernel")
	}
	var jplan struct {
		Actions []struct{ Op, Kind, Name string } `json:"actions"`
	}
	l.jsonOf(&jplan, "apply", "-f", v2, "--dry-run")
	if len(jplan.Actions) != 5 {
		t.Errorf("dry run -o json: %+v", jplan)
	}
	if got := l.apply(v2); !strings.HasPrefix(got, "lab rc: 2 created, 1 changed, 2 removed") {
		t.Errorf("second apply: %q", got)
	}
	if a := l.addrOf("lan", "rc-a", false); a != "10.60.0.20" {
		t.Errorf("rc-a has %s, want the new 10.60.0.20", a)
	}
	if _, err := l.run("net", "inspect", "old"); err == nil {
		t.Errorf("network old is still there")
	}
	l.mustPing("rc-c", "10.60.0.20")
	if l.addrOf("plain", other, false) == "" {
		t.Errorf("the lab touched a network it does not own")
	}
	// Removed behind the lab's back: made again.
	l.must("ns", "rm", "rc-c")
	if got := l.apply(v2); !strings.Contains(got, "2 created") {
		t.Errorf("apply after ns rm: %q", got)
	}
	// A network the lab does not own, under a name the file takes.
	clash := l.writeFile("clash.yaml", "name: rc2\nnetworks:\n  plain: {subnet: 10.63.0.0/24}\n")
	if _, err := l.run("apply", "-f", clash); err == nil || !strings.Contains(err.Error(), "clash.yaml:3:3: networks.plain: network plain exists and is not lab rc2's") {
		t.Errorf("apply over a plain network: %v", err)
	}
	l.must("destroy", "--lab", "rc")
	l.must("net", "disconnect", "plain", other)
	l.must("net", "rm", "plain")
	l.must("ns", "rm", other)
	l.assertGone(names...)
}

// Every kind of bad file is one line naming file:line:column and the key,
// and changes nothing.
func TestApplyBadInput(t *testing.T) {
	l := newLab(t)
	l.destroyAfter("mine", "taken", "m1")
	l.must("net", "create", "hand", "--subnet", "10.66.0.0/24")
	l.apply(l.writeFile("mine.yaml", "name: mine\nnamespaces:\n  taken: {}\n"))
	cases := []struct{ name, file, want string }{
		{"invalid YAML", "name: x\nnetworks: {a: [\n", "bad.yaml:2:"},
		{"unknown key", "name: x\nnetworks:\n  a: {subnet: 10.1.0.0/24, colour: red}\n", "bad.yaml:3:28: networks.a.colour: unknown key"},
		{"unknown network", "name: x\nnamespaces:\n  n1: {networks: [nope]}\n", "bad.yaml:3:19: namespaces.n1.networks[0]: unknown network \"nope\""},
		{"unknown host", "name: x\nhosts:\n  h1: {}\nunderlay:\n  subnet: 198.51.100.0/24\n  addresses: {h9: 198.51.100.9}\n", "bad.yaml:6:15: underlay.addresses.h9: unknown host"},
		{"duplicate namespace", "name: x\nhosts:\n  h1:\n    namespaces: {n1: {}}\n  h2:\n    namespaces: {n1: {}}\n", "bad.yaml:6:18: hosts.h2.namespaces.n1: namespace \"n1\" is declared twice"},
		{"address outside subnet", "name: x\nnetworks:\n  a: {subnet: 10.1.0.0/24}\nnamespaces:\n  n1: {networks: {a: {ip: 10.2.0.5}}}\n", "bad.yaml:5:23: namespaces.n1.networks.a.ip: address 10.2.0.5 is outside"},
		{"address given twice", "name: x\nnetworks:\n  a: {subnet: 10.1.0.0/24}\nnamespaces:\n  n1: {networks: {a: {ip: 10.1.0.5}}}\n  n2: {networks: {a: {ip: 10.1.0.5}}}\n", "bad.yaml:6:23: namespaces.n2.networks.a.ip: address 10.1.0.5 is given twice"},
		{"gateway as address", "name: x\nnetworks:\n  a: {subnet: 10.1.0.0/24}\nnamespaces:\n  n1: {networks: {a: {ip: 10.1.0.1}}}\n", "bad.yaml:5:23: namespaces.n1.networks.a.ip: address 10.1.0.1 is network a's gateway"},
		{"overlapping subnets", "name: x\nnetworks:\n  a: {subnet: 10.1.0.0/16}\n  b: {subnet: 10.1.2.0/24}\n", "bad.yaml:4:7: networks.b.subnet: subnet 10.1.2.0/24 overlaps 10.1.0.0/16 of network a"},
		{"overlap with a plain network", "name: x\nnetworks:\n  a: {subnet: 10.66.0.0/25}\n", "bad.yaml:3:7: networks.a.subnet: subnet 10.66.0.0/25 overlaps 10.66.0.0/24 of network hand"},
		{"link endpoint", "name: x\nnamespaces: {n1: {}}\nlinks:\n  - endpoints: [n1, ghost]\n    subnet: 10.9.0.0/30\n", "bad.yaml:4:5: links[0].endpoints: link endpoint \"ghost\" does not exist"},
		{"namespace of another lab", "name: x\nnamespaces:\n  taken: {}\n", "bad.yaml:3:3: namespaces.taken: namespace taken belongs to lab mine"},
		{"port published twice", "name: x\nnetworks:\n  a: {subnet: 10.1.0.0/24}\nnamespaces:\n  n1: {networks: {a: {ports: [\"8080:80\"]}}}\n  n2: {networks: {a: {ports: [\"8080:81\"]}}}\n", "bad.yaml:6:23: namespaces.n2.networks.a.ports: host port 8080/tcp is published twice"},
		{"bad port", "name: x\nnetworks:\n  a: {subnet: 10.1.0.0/24}\nnamespaces:\n  n1: {networks: {a: {ports: [\"80:80:80:80\"]}}}\n", "bad.yaml:5:23: namespaces.n1.networks.a.ports: published port"},
		{"share unknown", "name: x\nnamespaces:\n  n1: {share: ghost}\n", "bad.yaml:3:8: namespaces.n1.share: cannot share unknown namespace \"ghost\""},
		{"subnet too small", "name: x\nnetworks:\n  a: {subnet: 10.1.0.0/31}\n", "bad.yaml:3:3: networks.a: subnet 10.1.0.0/31 is too small"},
		{"invalid lab name", "name: \"no spaces please\"\n", "bad.yaml:1:1: name: lab name \"no spaces please\" is invalid"},
		{"no name", "networks: {}\n", "bad.yaml: the lab needs a name"},
		{"bgp without asn", "name: x\nhosts: {h1: {}}\nunderlay: {subnet: 198.51.100.0/24, routing: bgp}\n", "bad.yaml:3:37: underlay.routing: routing: bgp needs the hosts' AS number"},
		{"unknown driver", "name: x\nnetworks:\n  a: {subnet: 10.1.0.0/24, driver: ovs}\n", "bad.yaml:3:3: networks.a: "},
		{"broadcast address", "name: x\nnetworks:\n  a: {subnet: 10.1.0.0/24}\nnamespaces:\n  n1: {networks: {a: {ip: 10.1.0.255}}}\n", "bad.yaml:5:23: namespaces.n1.networks.a.ip: address 10.1.0.255 is the network or broadcast address"},
		{"link ends in two subnets", "name: x\nnamespaces: {a: {}, b: {}}\nlinks:\n  - endpoints: [a, b]\n    addresses: [10.9.0.1/24, 10.8.0.2/24]\n", "bad.yaml:5:5: links[0].addresses: 10.9.0.1/24 and 10.8.0.2/24 are not in one subnet"},
		{"link subnet too small", "name: x\nnamespaces: {a: {}, b: {}}\nlinks:\n  - endpoints: [a, b]\n    subnet: 10.9.0.0/31\n", "links[0].subnet: subnet 10.9.0.0/31 has no two usable addresses"},
		{"network full", "name: x\nnetworks:\n  a: {subnet: 10.1.0.0/30}\nnamespaces:\n  n1: {networks: [a]}\n  n2: {networks: [a]}\n", "bad.yaml:3:7: networks.a.subnet: subnet 10.1.0.0/30 holds 1 members at most"},
		{"macvlan parent missing", "name: x\nnetworks:\n  a: {subnet: 10.1.0.0/24, driver: macvlan, parent: nosuch0}\n", "networks.a.parent: the host has no device nosuch0"},
	}
	before := l.snapshot() + l.must("lab", "ls", "-o", "json")
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "bad.yaml")
			os.WriteFile(p, []byte(c.file), 0o644)
			_, err := l.run("apply", "-f", p)
			if err == nil {
				t.Fatalf("apply succeeded")
			}
			msg := err.Error()
			if i := strings.Index(msg, "nsnet: "); i >= 0 {
				msg = msg[i+len("nsnet: "):]
			}
			if strings.Contains(msg, "\n") || !strings.Contains(msg, c.want) || !strings.HasPrefix(msg, p) {
				t.Errorf("error %q, want one line starting with the file and containing %q", msg, c.want)
			}
		})
	}
	if after := l.snapshot() + l.must("lab", "ls", "-o", "json"); after != before {
		t.Errorf("a refused apply changed something")
	}
	l.must("destroy", "--lab", "mine")
	l.must("net", "rm", "hand")
}

// A lab of many members killed at several points of apply and of destroy
// is carried to the whole lab by the next apply or by gc, and to nothing
// by the next destroy, with nothing leaked.
func TestApplyCrash(t *testing.T) {
	l := newLab(t)
	const n = 200
	var b strings.Builder
	b.WriteString("name: crashy\nnetworks:\n  lan: {subnet: 10.64.0.0/22}\nnamespaces:\n")
	var names []string
	for i := range n {
		name := fmt.Sprintf("cr%03d", i)
		names = append(names, name)
		fmt.Fprintf(&b, "  %s: {networks: [lan]}\n", name)
	}
	file := l.writeFile("crashy.yaml", b.String())
	l.destroyAfter("crashy", names...)
	check := func(how string) {
		t.Helper()
		if got := l.apply(file); !strings.HasSuffix(got, ": no changes") {
			t.Errorf("after %s, apply still had work: %q", how, got)
		}
		if got := len(l.network("lan").Members); got != n {
			t.Errorf("after %s: %d members, want %d", how, got, n)
		}
		l.mustPing(names[0], l.addrOf("lan", names[n-1], false))
	}
	destroyAt := []string{"lab-destroy/half", "ns-rm-many/unmounted", "lab-destroy/half"}
	for i, at := range []string{"lab-apply/claimed", "connect/plugged", "lab-apply/half"} {
		if _, err := l.runEnv([]string{"NSNET_CRASH_AT=" + at}, "apply", "-f", file); err == nil {
			t.Fatalf("apply with a crash at %s did not die", at)
		}
		if i%2 == 0 {
			l.must("gc")
		} else {
			l.apply(file)
		}
		check("a crash at " + at)
		if _, err := l.runEnv([]string{"NSNET_CRASH_AT=" + destroyAt[i]}, "destroy", "--lab", "crashy"); err == nil {
			t.Fatalf("destroy with a crash at %s did not die", destroyAt[i])
		}
		if i%2 == 0 {
			l.must("destroy", "--lab", "crashy")
		} else {
			l.must("gc")
		}
		l.assertGone(names...)
	}
}

// lineDiff lists the lines only in a or only in b.
func lineDiff(a, b string) string {
	count := map[string]int{}
	for _, l := range strings.Split(a, "\n") {
		count[l]++
	}
	for _, l := range strings.Split(b, "\n") {
		count[l]--
	}
	var out []string
	for l, n := range count {
		if n > 0 {
			out = append(out, "- "+l)
		} else if n < 0 {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

// A namespace that a process still holds outlives its mount, and with it
// its veth: destroy deletes that host end itself, so a returned destroy
// leaves nothing.
func TestDestroyHeldNamespace(t *testing.T) {
	l := newLab(t)
	l.destroyAfter("held", "held1", "held2")
	file := l.writeFile("held.yaml", "name: held\nnetworks:\n  lan: {subnet: 10.65.0.0/24}\nnamespaces:\n  held1: {networks: [lan]}\n  held2: {networks: [lan]}\n")
	l.apply(file)
	sleeper := exec.Command("ip", "netns", "exec", "held1", "sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleeper.Process.Kill(); sleeper.Wait() }()
	l.must("destroy", "--lab", "held")
	l.assertGone("held1", "held2")
}

// nsnet gc puts back a link end's addresses flushed behind nsnet's back.
func TestGCRepairsLinkAddresses(t *testing.T) {
	l := newLab(t)
	a, b := l.ns("a"), l.ns("b")
	l.must("link", "create", a, b, "--subnet", "10.56.0.0/30", "--name", "la,lb")
	l.fixture("ip", "-n", a, "addr", "flush", "dev", "la")
	l.fixture("ip", "-n", b, "link", "set", "lb", "down")
	if out := l.must("gc"); !strings.Contains(out, "put back the addresses and state of link") {
		t.Errorf("gc said %q", out)
	}
	l.mustPing(a, "10.56.0.2")
	l.must("link", "rm", a, b)
}

// A namespace in two networks keeps its default route on the first one
// the file lists after that network is made anew, as a fresh apply gives.
func TestApplyKeepsDefaultRoute(t *testing.T) {
	l := newLab(t)
	l.destroyAfter("dr", "dr-a")
	v1 := l.writeFile("dr.yaml", "name: dr\nnetworks:\n  vnet: {subnet: 10.57.0.0/24}\n  other: {subnet: 10.58.0.0/24}\nnamespaces:\n  dr-a: {networks: [vnet, other]}\n")
	l.apply(v1)
	if out := l.fixture("ip", "-n", "dr-a", "route", "show", "default"); !strings.Contains(out, "10.57.0.1") {
		t.Fatalf("default route after the first apply: %q", out)
	}
	v2 := l.writeFile("dr.yaml", "name: dr\nnetworks:\n  vnet: {subnet: 10.59.0.0/24}\n  other: {subnet: 10.58.0.0/24}\nnamespaces:\n  dr-a: {networks: [vnet, other]}\n")
	l.apply(v2)
	if out := l.fixture("ip", "-n", "dr-a", "route", "show", "default"); !strings.Contains(out, "10.59.0.1") {
		t.Errorf("default route after vnet was made anew: %q, want via vnet's 10.59.0.1", out)
	}
	l.must("destroy", "--lab", "dr")
}
