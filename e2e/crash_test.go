package e2e

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TestCrashRecovery kills nsnet with SIGKILL at points inside connect,
// disconnect and net create, then checks that the next command (or gc)
// leaves no link, address, lease or rule leaked or missing.
func TestCrashRecovery(t *testing.T) {
	points := []struct {
		point   string
		op      string // connect, disconnect, net-create
		recover string // gc, or the next command
	}{
		{"connect/recorded", "connect", "gc"},
		{"connect/veth-created", "connect", "gc"},
		{"connect/addressed", "connect", "gc"},
		{"connect/plugged", "connect", "next"},
		{"disconnect/recorded", "disconnect", "gc"},
		{"disconnect/veth-deleted", "disconnect", "next"},
		{"net-create/recorded", "net-create", "gc"},
		{"net-create/bridge-created", "net-create", "gc"},
		{"net-create/built", "net-create", "next"},
		{"net-rm/rules-removed", "net-rm", "gc"},
	}
	for _, p := range points {
		t.Run(strings.ReplaceAll(p.point, "/", "-"), func(t *testing.T) {
			l := newLab(t)
			a, b := l.ns("a"), l.ns("b")
			l.must("net", "create", "c", "--subnet", "10.80.0.0/24", "--subnet", "fd00:80::/64")
			l.must("net", "connect", "c", a)
			crash := []string{"NSNET_CRASH_AT=" + p.point}
			var err error
			switch p.op {
			case "connect":
				_, err = l.runEnv(crash, "net", "connect", "c", b)
			case "disconnect":
				_, err = l.runEnv(crash, "net", "disconnect", "c", a)
			case "net-create":
				_, err = l.runEnv(crash, "net", "create", "d", "--subnet", "10.81.0.0/24")
			case "net-rm":
				l.must("net", "disconnect", "c", a)
				_, err = l.runEnv(crash, "net", "rm", "c")
			}
			if err == nil || !strings.Contains(err.Error(), "signal: killed") {
				t.Fatalf("crash point %s not reached: %v", p.point, err)
			}
			if p.recover == "gc" {
				out := l.must("gc")
				if !strings.Contains(out, "interrupted") {
					t.Errorf("gc output %q does not report the recovery", out)
				}
			} else {
				// Any command that changes state recovers first.
				tmp := l.ns("tmp")
				l.must("ns", "rm", tmp)
			}
			switch p.op {
			case "connect": // rolled back: b is not a member, a is intact
				checkMembers(t, l, "c", []string{a})
				checkNSLinks(t, l, b, []string{"lo"})
				// b's lease was freed: it gets the address it would have had.
				l.must("net", "connect", "c", b)
				if got := l.addrOf("c", b, false); got != "10.80.0.3" {
					t.Errorf("address after recovery = %s, want 10.80.0.3", got)
				}
				l.mustPing(b, l.addrOf("c", a, false))
				l.mustPing(b, l.addrOf("c", a, true))
			case "disconnect": // finished: a is gone from c
				checkMembers(t, l, "c", nil)
				checkNSLinks(t, l, a, []string{"lo"})
				l.must("net", "connect", "c", b)
				if got := l.addrOf("c", b, false); got != "10.80.0.2" {
					t.Errorf("address after recovery = %s, want the freed 10.80.0.2", got)
				}
			case "net-create": // rolled back: no network d, no bridge, rules only for c
				var nets []network
				l.jsonOf(&nets, "net", "ls")
				if len(nets) != 1 || nets[0].Name != "c" {
					t.Errorf("networks after recovery = %+v, want only c", nets)
				}
				if links := l.nsnetLinks(); slices.Contains(links, "nsbr-d") {
					t.Errorf("bridge of rolled-back network left: %v", links)
				}
				if rules := l.fixture("ip", "netns", "exec", l.host, "nft", "list", "ruleset"); strings.Contains(rules, "10.81.0.0") {
					t.Errorf("rules of rolled-back network left:\n%s", rules)
				}
				l.must("net", "create", "d", "--subnet", "10.81.0.0/24")
			case "net-rm": // finished
				var nets []network
				l.jsonOf(&nets, "net", "ls")
				if len(nets) != 0 {
					t.Errorf("networks after recovery = %+v, want none", nets)
				}
			}
			// Tear everything down: nothing may be left anywhere.
			var nets []network
			l.jsonOf(&nets, "net", "ls")
			for _, n := range nets {
				l.must("net", "rm", "--force", n.Name)
			}
			l.must("ns", "rm", a)
			l.must("ns", "rm", b)
			assertClean(t, l)
		})
	}
}

func checkMembers(t *testing.T, l *lab, net string, want []string) {
	t.Helper()
	var got []string
	for _, m := range l.network(net).Members {
		got = append(got, m.Namespace)
	}
	if !slices.Equal(got, want) {
		t.Errorf("members of %s = %v, want %v", net, got, want)
	}
	var veths int
	for _, name := range l.nsnetLinks() {
		if strings.HasPrefix(name, "nsv") {
			veths++
		}
	}
	if veths != len(want) {
		t.Errorf("host has %d nsnet veths, want %d: %v", veths, len(want), l.nsnetLinks())
	}
}

func checkNSLinks(t *testing.T, l *lab, ns string, want []string) {
	t.Helper()
	var info struct {
		Interfaces []struct {
			Name string `json:"name"`
		} `json:"interfaces"`
	}
	l.jsonOf(&info, "ns", "inspect", ns)
	var got []string
	for _, i := range info.Interfaces {
		got = append(got, i.Name)
	}
	if !slices.Equal(got, want) {
		t.Errorf("interfaces in %s = %v, want %v", ns, got, want)
	}
}

// TestParallelConnect starts 50 connects as separate processes at once.
func TestParallelConnect(t *testing.T) {
	l := newLab(t)
	l.must("net", "create", "par", "--subnet", "10.90.0.0/24")
	var names []string
	for i := range 50 {
		names = append(names, l.ns(fmt.Sprintf("p%d", i)))
	}
	var wg sync.WaitGroup
	errs := make([]error, len(names))
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = l.run("net", "connect", "par", n)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("connect %s: %v", names[i], err)
		}
	}
	seen := map[string]string{}
	members := l.network("par").Members
	if len(members) != 50 {
		t.Fatalf("network has %d members, want 50", len(members))
	}
	for _, m := range members {
		if other, dup := seen[m.Addrs[0]]; dup {
			t.Errorf("%s and %s share %s", m.Namespace, other, m.Addrs[0])
		}
		seen[m.Addrs[0]] = m.Namespace
	}
	// Every member really has its address: the first pings the last.
	l.mustPing(names[0], l.addrOf("par", names[49], false))
	l.must("net", "rm", "--force", "par")
	for _, n := range names {
		l.must("ns", "rm", n)
	}
	assertClean(t, l)
}

// TestCrashWithPorts kills a connect after its ports went into the maps:
// gc must take them out again and free the host port.
func TestCrashWithPorts(t *testing.T) {
	l := newLab(t)
	a := l.ns("a")
	l.must("net", "create", "c", "--subnet", "10.82.0.0/24")
	_, err := l.runEnv([]string{"NSNET_CRASH_AT=connect/plugged"}, "net", "connect", "c", a, "-p", "8080:80", "-p", "9000-9009:9000-9009/udp")
	if err == nil || !strings.Contains(err.Error(), "signal: killed") {
		t.Fatalf("crash point not reached: %v", err)
	}
	if maps := l.fixture("ip", "netns", "exec", l.host, "nft", "list", "map", "inet", "nsnet", "ports4_any"); !strings.Contains(maps, "10.82.0.2") {
		t.Fatalf("the crash came before the ports were published:\n%s", maps)
	}
	l.must("gc")
	if maps := l.fixture("ip", "netns", "exec", l.host, "nft", "list", "map", "inet", "nsnet", "ports4_any"); strings.Contains(maps, "10.82.0.2") {
		t.Errorf("map elements left after gc:\n%s", maps)
	}
	if _, err := execCommand("test", "-e", "/etc/netns/"+a+"/resolv.conf"); err == nil {
		out, _ := execCommand("cat", "/etc/netns/"+a+"/resolv.conf")
		t.Errorf("resolv.conf block left after gc:\n%s", out)
	}
	b := l.ns("b")
	l.must("net", "connect", "c", b, "-p", "8080:80", "-p", "9000-9009:9000-9009/udp")
	l.must("net", "rm", "--force", "c")
	l.must("ns", "rm", a)
	l.must("ns", "rm", b)
	assertClean(t, l)
}

// TestDefaultRouteRestored kills a `connect --default-route` after it
// replaced the member's default route: rolling it back must put the old
// route back, not leave the member with none.
func TestDefaultRouteRestored(t *testing.T) {
	for _, driver := range []string{"bridge", "routed"} {
		t.Run(driver, func(t *testing.T) {
			l := newLab(t)
			a := l.ns("a")
			l.must("net", "create", "first", "--subnet", "10.84.0.0/24", "--subnet", "fd00:84::/64")
			l.must("net", "create", "second", "--driver", driver, "--subnet", "10.85.0.0/24", "--subnet", "fd00:85::/64")
			l.must("net", "connect", "first", a)
			// A second default of another metric, which the connect leaves
			// alone, must not come back twice.
			l.fixture("ip", "-n", a, "route", "add", "default", "via", "10.84.0.1", "metric", "100")
			before := l.fixture("ip", "-n", a, "-4", "route", "show", "default") + l.fixture("ip", "-n", a, "-6", "route", "show", "default")
			_, err := l.runEnv([]string{"NSNET_CRASH_AT=connect/plugged"}, "net", "connect", "second", a, "--default-route")
			if err == nil || !strings.Contains(err.Error(), "signal: killed") {
				t.Fatalf("crash point not reached: %v", err)
			}
			l.must("gc")
			after := l.fixture("ip", "-n", a, "-4", "route", "show", "default") + l.fixture("ip", "-n", a, "-6", "route", "show", "default")
			if after != before {
				t.Errorf("default routes after the rollback:\n%s\nwant the ones before:\n%s", after, before)
			}
			l.mustPing(a, "10.84.0.1")
		})
	}
}

// TestCrashRecoveryOtherOps kills nsnet inside namespace, link and TAP
// operations; gc must roll creations back and finish removals, leaving
// the kernel and the store agreeing.
func TestCrashRecoveryOtherOps(t *testing.T) {
	count := func(l *lab, args ...string) int {
		var v []map[string]any
		l.jsonOf(&v, args...)
		return len(v)
	}
	cases := []struct {
		point string
		setup func(l *lab, a, b string)
		run   []string // the command killed; a and b stand for the namespaces
		check func(t *testing.T, l *lab, a, b string)
	}{
		{"ns-create/recorded", nil, []string{"ns", "create", "fresh"}, checkNoNamespace("fresh")},
		{"ns-create/created", nil, []string{"ns", "create", "fresh"}, checkNoNamespace("fresh")},
		{"ns-rm/unmounted", nil, []string{"ns", "rm", "A"}, func(t *testing.T, l *lab, a, b string) { checkNoNamespace(a)(t, l, a, b) }},
		{"link-create/created", nil, []string{"link", "create", "A", "B", "--subnet", "10.86.0.0/30"}, func(t *testing.T, l *lab, a, b string) {
			if n := count(l, "link", "ls"); n != 0 {
				t.Errorf("%d links recorded after rollback, want 0", n)
			}
			checkNSLinks(t, l, a, []string{"lo"})
			checkNSLinks(t, l, b, []string{"lo"})
			l.must("link", "create", a, b, "--subnet", "10.86.0.0/30")
			l.mustPing(a, "10.86.0.2")
		}},
		{"link-rm/deleted", func(l *lab, a, b string) { l.must("link", "create", a, b, "--subnet", "10.86.0.0/30") },
			[]string{"link", "rm", "A", "B"}, func(t *testing.T, l *lab, a, b string) {
				if n := count(l, "link", "ls"); n != 0 {
					t.Errorf("%d links recorded after the finished rm, want 0", n)
				}
				checkNSLinks(t, l, a, []string{"lo"})
				checkNSLinks(t, l, b, []string{"lo"})
			}},
		{"tap-create/created", nil, []string{"tap", "create", "tapc", "--net", "t"}, func(t *testing.T, l *lab, a, b string) {
			if n := count(l, "tap", "ls"); n != 0 {
				t.Errorf("%d TAPs recorded after rollback, want 0", n)
			}
			if slices.Contains(l.hostLinks(), "tapc") {
				t.Errorf("TAP device tapc left in the host")
			}
			// Its lease was freed: the next TAP gets the same address.
			out := l.must("tap", "create", "tapc", "--net", "t")
			if !strings.Contains(out, "10.87.0.2") {
				t.Errorf("TAP after rollback: %q, want the freed 10.87.0.2", out)
			}
		}},
		{"tap-rm/deleted", func(l *lab, a, b string) { l.must("tap", "create", "tapc", "--net", "t") },
			[]string{"tap", "rm", "tapc"}, func(t *testing.T, l *lab, a, b string) {
				if n := count(l, "tap", "ls"); n != 0 {
					t.Errorf("%d TAPs recorded after the finished rm, want 0", n)
				}
				if slices.Contains(l.hostLinks(), "tapc") {
					t.Errorf("TAP device tapc left in the host")
				}
			}},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.point, "/", "-"), func(t *testing.T) {
			l := newLab(t)
			a, b := l.ns("a"), l.ns("b")
			l.must("net", "create", "t", "--subnet", "10.87.0.0/24")
			if c.setup != nil {
				c.setup(l, a, b)
			}
			args := slices.Clone(c.run)
			for i, s := range args {
				switch s {
				case "A":
					args[i] = a
				case "B":
					args[i] = b
				}
			}
			if _, err := l.runEnv([]string{"NSNET_CRASH_AT=" + c.point}, args...); err == nil || !strings.Contains(err.Error(), "signal: killed") {
				t.Fatalf("crash point %s not reached: %v", c.point, err)
			}
			if out := l.must("gc"); !strings.Contains(out, "interrupted") {
				t.Errorf("gc output %q does not report the recovery", out)
			}
			c.check(t, l, a, b)
			if out := l.must("gc"); strings.Contains(out, "interrupted") {
				t.Errorf("a second gc still recovers something: %q", out)
			}
		})
	}
}

// checkNoNamespace checks that name is neither mounted nor recorded.
func checkNoNamespace(name string) func(t *testing.T, l *lab, a, b string) {
	return func(t *testing.T, l *lab, a, b string) {
		t.Helper()
		if strings.Contains(l.fixture("ip", "netns", "list"), name) {
			t.Errorf("namespace %s is still mounted", name)
		}
		if strings.Contains(l.must("ns", "ls"), name) {
			t.Errorf("namespace %s is still recorded", name)
		}
	}
}
