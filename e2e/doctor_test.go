package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/nsnet/nsnet/internal/netns"
)

type doctorReport struct {
	OK      bool `json:"ok"`
	Forward []struct {
		Where, What, Cause, Evidence, Fix string
		OK                                bool
	} `json:"forward"`
	Reply []struct {
		Where, What, Cause, Evidence, Fix string
		OK                                bool
	} `json:"reply"`
	Cause string `json:"cause"`
	Live  *struct {
		Probe    string `json:"probe"`
		Answered bool   `json:"answered"`
		Outcome  string `json:"outcome"`
		Steps    []struct {
			Where, What, Cause, Evidence, Fix string
			OK                                bool
		} `json:"steps"`
		Notes []string `json:"notes"`
	} `json:"live"`
}

// doctor runs nsnet doctor and returns its exit status and report.
func (l *lab) doctor(args ...string) (int, doctorReport, string) {
	l.t.Helper()
	out, err := l.run(append([]string{"doctor", "-o", "json"}, args...)...)
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		l.t.Fatalf("doctor %v: %v", args, err)
	}
	var r doctorReport
	if code != 2 {
		if jerr := json.Unmarshal([]byte(out), &r); jerr != nil {
			l.t.Fatalf("doctor %v: %q: %v (%v)", args, out, jerr, err)
		}
	}
	return code, r, out
}

// Each fault the issue names, built, injected and diagnosed: the exit
// status and the cause of the failing step.
func TestDoctor(t *testing.T) {
	type setup func(l *lab) (from, to string, extra []string)
	bridge := func(l *lab) (string, string) {
		a, b := l.ns("a"), l.ns("b")
		l.must("net", "create", "lan", "--subnet", "10.40.0.0/24")
		l.must("net", "connect", "lan", a)
		l.must("net", "connect", "lan", b, "--alias", "web")
		return a, b
	}
	cases := []struct {
		name  string
		setup setup
		code  int
		cause string
	}{
		{"a working path", func(l *lab) (string, string, []string) {
			a, b := bridge(l)
			return a, b, nil
		}, 0, ""},
		{"to the outside, masqueraded", func(l *lab) (string, string, []string) {
			l.addOutside()
			a, _ := bridge(l)
			return a, server, nil
		}, 0, ""},
		{"a DNS name", func(l *lab) (string, string, []string) {
			a, _ := bridge(l)
			return a, "web", nil
		}, 0, ""},
		{"through a dropping chain with nsnet accepts", func(l *lab) (string, string, []string) {
			l.addOutside()
			l.fixture("ip", "netns", "exec", l.host, "nft", "add table ip filter; add chain ip filter FORWARD { type filter hook forward priority 0; policy drop; }")
			a, _ := bridge(l)
			return a, server, nil
		}, 0, ""},
		{"an input chain that drops at TO", func(l *lab) (string, string, []string) {
			a, b := bridge(l)
			l.fixture("ip", "netns", "exec", b, "nft", "add table ip fw; add chain ip fw in { type filter hook input priority 0; policy drop; }")
			return a, b, nil
		}, 1, "chain ip fw in drops every packet at"},
		{"fault 2, forwarding off", func(l *lab) (string, string, []string) {
			l.addOutside()
			a, _ := bridge(l)
			l.fixture("ip", "netns", "exec", l.host, "sysctl", "-qw", "net.ipv4.ip_forward=0")
			return a, server, nil
		}, 1, "does not forward: net.ipv4.ip_forward is 0"},
		{"fault 3, masquerade missing", func(l *lab) (string, string, []string) {
			l.addOutside()
			a, _ := bridge(l)
			l.fixture("ip", "netns", "exec", l.host, "nft", "flush", "set", "inet", "nsnet", "masq4")
			return a, server, nil
		}, 1, "unmasqueraded, though network lan has NAT"},
		{"fault 4, a forward chain with policy drop", func(l *lab) (string, string, []string) {
			l.addOutside()
			a, _ := l.ns("a"), 0
			l.must("net", "create", "lan", "--subnet", "10.40.0.0/24", "--no-host-firewall")
			l.must("net", "connect", "lan", a)
			l.fixture("ip", "netns", "exec", l.host, "nft", "add table ip filter; add chain ip filter FORWARD { type filter hook forward priority 0; policy drop; }")
			return a, server, nil
		}, 1, "chain ip filter FORWARD drops what"},
		{"fault 6, the veth end down", func(l *lab) (string, string, []string) {
			a, b := l.ns("a"), l.ns("b")
			l.must("link", "create", a, b, "--subnet", "10.42.0.0/30", "--name", "la,lb")
			l.fixture("ip", "-n", b, "link", "set", "lb", "down")
			return a, "10.42.0.2", nil
		}, 1, "LOWERLAYERDOWN"},
		{"fault 7, no default route", func(l *lab) (string, string, []string) {
			l.addOutside()
			a, _ := bridge(l)
			l.fixture("ip", "-n", a, "route", "del", "default")
			return a, server, nil
		}, 1, "no route to 198.51.100.10 (no default route)"},
		{"fault 8, isolated networks", func(l *lab) (string, string, []string) {
			a, _ := bridge(l)
			c := l.ns("c")
			l.must("net", "create", "other", "--subnet", "10.41.0.0/24")
			l.must("net", "connect", "other", c)
			return a, c, nil
		}, 1, "nsnet isolates network lan from network other"},
		{"fault 9, nothing listening", func(l *lab) (string, string, []string) {
			a, b := bridge(l)
			return a, b, []string{"--port", "80"}
		}, 1, "nothing listens on tcp/80"},
		{"fault 10, an unknown name", func(l *lab) (string, string, []string) {
			a, _ := bridge(l)
			return a, "nosuchname", nil
		}, 1, "resolver does not know \"nosuchname\""},
		{"a sticky forwarding entry to the wrong port", func(l *lab) (string, string, []string) {
			a, b := bridge(l)
			var links []struct {
				Address string `json:"address"`
			}
			if err := json.Unmarshal([]byte(l.fixture("ip", "-n", b, "-j", "link", "show", "eth0")), &links); err != nil || len(links) != 1 {
				l.t.Fatalf("b's MAC: %v", err)
			}
			var aPort string
			for _, m := range l.network("lan").Members {
				if m.Namespace == a {
					aPort = m.HostIf
				}
			}
			l.fixture("ip", "netns", "exec", l.host, "bridge", "fdb", "replace", links[0].Address, "dev", aPort, "master", "static", "sticky")
			l.mustNotPing(a, strings.Split(l.addrOf("lan", b, false), "/")[0])
			return a, b, nil
		}, 1, "a static sticky forwarding entry"},
		{"the next hop never answers ARP", func(l *lab) (string, string, []string) {
			out := l.addOutside()
			a, _ := bridge(l)
			l.fixture("ip", "netns", "exec", out, "sysctl", "-qw", "net.ipv4.conf.eth0.arp_ignore=8")
			return a, server, nil
		}, 1, "never answers ARP: arp_ignore is 8"},
		{"a NAT network reached from outside", func(l *lab) (string, string, []string) {
			out := l.addOutside()
			_, b := bridge(l)
			return out, l.addrOf("lan", b, false), nil
		}, 1, "nsnet admits into it, from outside its host, only published ports and replies"},
		{"a hand-built bridge with its own masquerade", func(l *lab) (string, string, []string) {
			l.addOutside()
			x := l.ns("x")
			l.fixture("ip", "-n", l.host, "link", "add", "br0", "type", "bridge")
			l.fixture("ip", "-n", l.host, "addr", "add", "10.20.30.1/24", "dev", "br0")
			l.fixture("ip", "-n", l.host, "link", "add", "v0", "type", "veth", "peer", "name", "eth0", "netns", x)
			l.fixture("ip", "-n", l.host, "link", "set", "v0", "master", "br0")
			for _, d := range []string{"br0", "v0"} {
				l.fixture("ip", "-n", l.host, "link", "set", d, "up")
			}
			l.fixture("ip", "-n", x, "addr", "add", "10.20.30.2/24", "dev", "eth0")
			l.fixture("ip", "-n", x, "link", "set", "eth0", "up")
			l.fixture("ip", "-n", x, "route", "add", "default", "via", "10.20.30.1")
			l.fixture("ip", "netns", "exec", l.host, "sysctl", "-qw", "net.ipv4.ip_forward=1")
			l.fixture("ip", "netns", "exec", l.host, "nft", "add table ip nat; add chain ip nat post { type nat hook postrouting priority 100; }; add rule ip nat post ip saddr 10.20.30.0/24 oifname uplink masquerade")
			l.mustPing(x, server)
			return x, server, nil
		}, 0, ""},
		{"a port bound to another address", func(l *lab) (string, string, []string) {
			a, b := bridge(l)
			listen(l.t, b, "127.0.0.1:81")
			return a, b, []string{"--port", "81"}
		}, 1, "the port is bound only to 127.0.0.1"},
		{"strict reverse-path filtering", func(l *lab) (string, string, []string) {
			a, b := l.ns("p"), l.ns("q")
			l.fixture("ip", "link", "add", "rpa1", "netns", a, "type", "veth", "peer", "name", "rpb1", "netns", b)
			l.fixture("ip", "link", "add", "rpa2", "netns", a, "type", "veth", "peer", "name", "rpb2", "netns", b)
			l.fixture("ip", "-n", a, "addr", "add", "10.9.1.1/24", "dev", "rpa1")
			l.fixture("ip", "-n", a, "addr", "add", "10.9.2.1/24", "dev", "rpa2")
			l.fixture("ip", "-n", b, "addr", "add", "10.9.1.2/24", "dev", "rpb1")
			l.fixture("ip", "-n", b, "addr", "add", "10.9.2.2/24", "dev", "rpb2")
			for _, x := range []struct{ ns, dev string }{{a, "rpa1"}, {a, "rpa2"}, {b, "rpb1"}, {b, "rpb2"}} {
				l.fixture("ip", "-n", x.ns, "link", "set", x.dev, "up")
			}
			// b answers 10.9.1.1 by the other pair, and filters strictly.
			l.fixture("ip", "-n", b, "route", "add", "10.9.1.1/32", "via", "10.9.2.1")
			l.fixture("ip", "netns", "exec", b, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1")
			l.mustNotPing(a, "10.9.1.2")
			return a, "10.9.1.2", nil
		}, 1, "strict reverse-path filtering (rp_filter=1), and its route back to 10.9.1.1 leaves by rpb2"},
		{"a policy rule that prohibits", func(l *lab) (string, string, []string) {
			l.addOutside()
			a, _ := bridge(l)
			l.fixture("ip", "-n", a, "rule", "add", "to", server, "prohibit")
			return a, server, nil
		}, 1, "refuses to route to " + server + ": a prohibit route or policy rule"},
		{"a hand-built SNAT to an address the outside cannot route back", func(l *lab) (string, string, []string) {
			l.addOutside()
			x := l.ns("x")
			l.fixture("ip", "-n", l.host, "link", "add", "v0", "type", "veth", "peer", "name", "eth0", "netns", x)
			l.fixture("ip", "-n", l.host, "addr", "add", "10.20.30.1/24", "dev", "v0")
			l.fixture("ip", "-n", l.host, "link", "set", "v0", "up")
			l.fixture("ip", "-n", x, "addr", "add", "10.20.30.2/24", "dev", "eth0")
			l.fixture("ip", "-n", x, "link", "set", "eth0", "up")
			l.fixture("ip", "-n", x, "route", "add", "default", "via", "10.20.30.1")
			l.fixture("ip", "netns", "exec", l.host, "sysctl", "-qw", "net.ipv4.ip_forward=1")
			l.fixture("ip", "netns", "exec", l.host, "nft", "add table ip nat; add chain ip nat post { type nat hook postrouting priority 100; }; add rule ip nat post ip saddr 10.20.30.0/24 oifname uplink snat to 192.0.2.9")
			return x, server, nil
		}, 1, "has no route to 192.0.2.9"},
		{"a port bound to IPv6 only", func(l *lab) (string, string, []string) {
			a, b := bridge(l)
			h, err := netns.Open(netns.Path(b))
			if err != nil {
				l.t.Fatal(err)
			}
			defer h.Close()
			var ln net.Listener
			// Go listens on "tcp6" [::] with IPV6_V6ONLY, as nginx does.
			if err := netns.Do(h, func() (err error) { ln, err = net.Listen("tcp6", "[::]:86"); return err }); err != nil {
				l.t.Fatal(err)
			}
			l.t.Cleanup(func() { ln.Close() })
			return a, b, []string{"--port", "86"}
		}, 1, "the port is bound only to :: (IPv6 only)"},
		{"fault 1, the address on a bridge port", func(l *lab) (string, string, []string) {
			x := l.ns("x")
			l.fixture("ip", "-n", l.host, "link", "add", "br0", "type", "bridge")
			l.fixture("ip", "-n", l.host, "link", "add", "v0", "type", "veth", "peer", "name", "eth0", "netns", x)
			l.fixture("ip", "-n", l.host, "link", "set", "v0", "master", "br0")
			l.fixture("ip", "-n", l.host, "addr", "add", "10.20.30.1/24", "dev", "v0")
			for _, d := range []string{"br0", "v0"} {
				l.fixture("ip", "-n", l.host, "link", "set", d, "up")
			}
			l.fixture("ip", "-n", x, "addr", "add", "10.20.30.2/24", "dev", "eth0")
			l.fixture("ip", "-n", x, "link", "set", "eth0", "up")
			return "host", "10.20.30.2", nil
		}, 1, "a port of bridge br0: the bridge takes the replies"},
	}
	for _, c := range cases {
		t.Run(strings.NewReplacer(" ", "_", ",", "").Replace(c.name), func(t *testing.T) {
			l := newLab(t)
			from, to, extra := c.setup(l)
			code, r, raw := l.doctor(append([]string{from, to}, extra...)...)
			if code != c.code || !strings.Contains(r.Cause, c.cause) || (c.code == 0) != r.OK {
				t.Errorf("doctor %s %s: exit %d, cause %q; want %d and %q\n%s", from, to, code, r.Cause, c.code, c.cause, raw)
			}
		})
	}
}

// The reply has no way back: article 003 without the second host's route.
func TestDoctorNoRouteBack(t *testing.T) {
	l := newLab(t)
	names := []string{"node01", "node02", "demo01", "demo02", "demo03"}
	l.destroyAfter("noback", names...)
	file := l.writeFile("noback.yaml", `name: noback
hosts:
  node01:
    networks: {pods: {driver: routed, subnet: 10.0.1.0/24}}
    namespaces: {demo01: {networks: {pods: {ip: 10.0.1.2}}}}
  node02: {}
underlay: {subnet: 198.51.100.0/24, routing: none}
`)
	l.apply(file)
	code, r, raw := l.doctor("demo01", "node02")
	// node02 sends the reply to the lab's host by its default route,
	// and that host has no route to the member either.
	if code != 1 || !strings.Contains(r.Cause, "has no route back to 10.0.1.2") || !strings.Contains(r.Cause, "node02") || !strings.Contains(r.Cause, "not masqueraded") {
		t.Errorf("exit %d, cause %q\n%s", code, r.Cause, raw)
	}
	code, _, _ = l.doctor("demo01")
	if code != 2 {
		t.Errorf("doctor with one argument: exit %d, want 2", code)
	}
	l.must("destroy", "--lab", "noback")
}

// --live: a real probe followed by the kernel's nftables trace finds what
// the static walk cannot (a rule that drops inside a chain, a neighbour
// that never answers), confirms what it can, and leaves no trace table.
func TestDoctorLive(t *testing.T) {
	type setup func(l *lab) (from, to string, extra []string)
	bridge := func(l *lab) (string, string) {
		a, b := l.ns("a"), l.ns("b")
		l.must("net", "create", "lan", "--subnet", "10.40.0.0/24")
		l.must("net", "connect", "lan", a)
		l.must("net", "connect", "lan", b)
		return a, b
	}
	cases := []struct {
		name     string
		setup    setup
		code     int
		answered bool
		// cause is the report's; live a line the trace must hold.
		cause, live string
	}{
		{"to the outside, masqueraded", func(l *lab) (string, string, []string) {
			l.addOutside()
			a, _ := bridge(l)
			return a, server, nil
		}, 0, true, "", "source NATed to " + uplinkHost},
		{"a rule that drops, inside a chain that accepts", func(l *lab) (string, string, []string) {
			l.addOutside()
			a, _ := bridge(l)
			l.fixture("ip", "netns", "exec", l.host, "nft", "add table ip filter; add chain ip filter FORWARD { type filter hook forward priority 0; policy accept; }; add rule ip filter FORWARD ip daddr "+server+" icmp type echo-request drop")
			return a, server, nil
		}, 1, false, "dropped in host by rule handle", "ip filter FORWARD: rule handle"},
		{"a chain's policy drop past rules doctor does not evaluate", func(l *lab) (string, string, []string) {
			l.addOutside()
			a := l.ns("a")
			l.must("net", "create", "lan", "--subnet", "10.40.0.0/24", "--no-host-firewall")
			l.must("net", "connect", "lan", a)
			l.fixture("ip", "netns", "exec", l.host, "nft", "add table ip filter; add chain ip filter FORWARD { type filter hook forward priority 0; policy drop; }; add rule ip filter FORWARD tcp dport 22 accept")
			return a, server, nil
		}, 1, false, "the policy drop of chain ip filter FORWARD", "ip filter FORWARD: policy drop"},
		{"a neighbour whose ARP an arp table drops", func(l *lab) (string, string, []string) {
			out := l.addOutside()
			a, _ := bridge(l)
			// The static walk reads ip, ip6 and inet chains: an arp
			// table's drop is the trace's to find, by its consequence.
			l.fixture("ip", "netns", "exec", out, "nft", "add table arp f; add chain arp f in { type filter hook input priority 0; policy drop; }")
			return a, server, nil
		}, 1, false, "towards 203.0.113.2, which never answered ARP", "out uplink"},
		{"a rule that rejects", func(l *lab) (string, string, []string) {
			a, b := bridge(l)
			listen(l.t, b, ":80")
			l.fixture("ip", "netns", "exec", b, "nft", "add table ip f; add chain ip f in { type filter hook input priority 0; }; add rule ip f in tcp dport 80 reject with tcp reset")
			return a, b, []string{"--port", "80"}
		}, 1, false, "the probe was rejected in", "(reject)"},
		{"nothing listening: the reset seen", func(l *lab) (string, string, []string) {
			a, b := bridge(l)
			return a, b, []string{"--port", "80"}
		}, 1, false, "nothing listens on tcp/80", "[RST,ACK]"},
		{"a published port from the outside", func(l *lab) (string, string, []string) {
			out := l.addOutside()
			a := l.ns("a")
			l.must("net", "create", "lan", "--subnet", "10.40.0.0/24")
			l.must("net", "connect", "lan", a, "-p", "8080:80")
			listen(l.t, a, ":80")
			return out, uplinkHost, []string{"--port", "8080"}
		}, 0, true, "", "destination NATed to 10.40.0."},
	}
	for _, c := range cases {
		t.Run(strings.NewReplacer(" ", "_", ",", "", "'", "").Replace(c.name), func(t *testing.T) {
			l := newLab(t)
			from, to, extra := c.setup(l)
			code, r, raw := l.doctor(append([]string{from, to, "--live"}, extra...)...)
			t.Log(raw)
			if r.Live == nil {
				t.Fatalf("no live report:\n%s", raw)
			}
			var lines []string
			for _, s := range r.Live.Steps {
				lines = append(lines, s.What)
			}
			trace := strings.Join(lines, "\n")
			if code != c.code || !strings.Contains(r.Cause, c.cause) || r.Live.Answered != c.answered || !strings.Contains(trace, c.live) {
				t.Errorf("doctor %s %s --live: exit %d, cause %q, answered %v; want %d, %q, %v and a trace with %q\n%s", from, to, code, r.Cause, r.Live.Answered, c.code, c.cause, c.answered, c.live, raw)
			}
			if c.name == "a rule that drops, inside a chain that accepts" {
				// The static walk cannot evaluate the rule, and says so.
				var notes []string
				for _, s := range r.Forward {
					notes = append(notes, s.What)
				}
				if !strings.Contains(strings.Join(notes, "\n"), "chain ip filter FORWARD has rules that drop or reject (1)") {
					t.Errorf("the static walk does not name the rule it cannot evaluate:\n%s", raw)
				}
			}
			if len(r.Live.Notes) > 0 {
				t.Errorf("notes: %q", r.Live.Notes)
			}
			for _, ns := range []string{l.host, from} {
				if ns == "host" {
					continue
				}
				if tables := l.fixture("ip", "netns", "exec", ns, "nft", "list", "tables"); strings.Contains(tables, "nsnet-doctor") {
					t.Errorf("trace table left in %s: %s", ns, tables)
				}
			}
		})
	}
}

// Two --live runs at once: each reports its own probe only, and neither
// takes the other's trace table for a rule that decided.
func TestDoctorLiveTogether(t *testing.T) {
	l := newLab(t)
	l.addOutside()
	a, b := l.ns("a"), l.ns("b")
	l.must("net", "create", "lan", "--subnet", "10.40.0.0/24")
	l.must("net", "connect", "lan", a)
	l.must("net", "connect", "lan", b)
	type run struct {
		from, to string
		code     int
		r        doctorReport
		raw      string
	}
	runs := []*run{{from: a, to: server}, {from: b, to: server}, {from: a, to: b}}
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := l.run("doctor", "-o", "json", "--live", r.from, r.to)
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				r.code = ee.ExitCode()
			}
			r.raw = out
			if jerr := json.Unmarshal([]byte(out), &r.r); jerr != nil {
				r.code = -1
			}
		}()
	}
	wg.Wait()
	for _, r := range runs {
		if r.code != 0 || r.r.Live == nil || !r.r.Live.Answered {
			t.Errorf("doctor %s %s --live: exit %d\n%s", r.from, r.to, r.code, r.raw)
			continue
		}
		src := l.addrOf("lan", r.from, false)
		for _, s := range r.r.Live.Steps {
			if strings.Contains(s.What, "nsnet-doctor-") {
				t.Errorf("doctor %s %s: another run's trace table in a step: %s", r.from, r.to, s.What)
			}
			if !strings.Contains(s.What, src) && !strings.Contains(s.What, uplinkHost) {
				t.Errorf("doctor %s %s: a step of another probe: %s", r.from, r.to, s.What)
			}
		}
	}
	for _, ns := range []string{l.host, a, b} {
		if tables := l.fixture("ip", "netns", "exec", ns, "nft", "list", "tables"); strings.Contains(tables, "nsnet-doctor") {
			t.Errorf("trace table left in %s: %s", ns, tables)
		}
	}
}

// A trace table left by a run that was killed is removed by the next
// --live run, even in a namespace off that run's path.
func TestDoctorLiveRemovesStaleTables(t *testing.T) {
	l := newLab(t)
	a, b, c := l.ns("a"), l.ns("b"), l.ns("c")
	l.must("net", "create", "lan", "--subnet", "10.40.0.0/24")
	l.must("net", "connect", "lan", a)
	l.must("net", "connect", "lan", b)
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	stale := fmt.Sprintf("nsnet-doctor-%d", gone.Process.Pid)
	l.fixture("ip", "netns", "exec", c, "nft", "add", "table", "inet", stale)
	code, r, raw := l.doctor(a, b, "--live")
	if code != 0 || r.Live == nil || !strings.Contains(strings.Join(r.Live.Notes, "\n"), "removed trace tables inet "+stale) {
		t.Errorf("exit %d\n%s", code, raw)
	}
	if tables := l.fixture("ip", "netns", "exec", c, "nft", "list", "tables"); strings.Contains(tables, stale) {
		t.Errorf("stale table still in %s: %s", c, tables)
	}
}
