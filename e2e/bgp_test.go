package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nsnet/nsnet/internal/nstest"
)

// Underlay addresses between the lab's host and a router (documentation
// ranges).
const (
	rtrHost4 = "203.0.113.1"
	rtrPeer4 = "203.0.113.2"
	rtrHost6 = "2001:db8::1"
	rtrPeer6 = "2001:db8::2"
	// What the router announces of its own, with an address in it on its lo.
	rtrNet4  = "198.51.100.0/24"
	rtrAddr4 = "198.51.100.1"
	rtrNet6  = "2001:db8:beef::/48"
	rtrAddr6 = "2001:db8:beef::1"
)

type bgpShow []struct {
	Host   string `json:"host"`
	Status *struct {
		Error string `json:"error"`
		Peers []struct {
			Address  string `json:"address"`
			State    string `json:"state"`
			Received int    `json:"received"`
		} `json:"peers"`
		Announced []string `json:"announced"`
		Learned   []struct {
			Prefix string `json:"prefix"`
			Error  string `json:"error"`
		} `json:"learned"`
		Ignored []struct {
			Prefix string `json:"prefix"`
			Reason string `json:"reason"`
		} `json:"ignored"`
	} `json:"status"`
}

// addRouter wires a namespace standing for a router the user already runs
// to the lab's host: 203.0.113.2/24 and 2001:db8::2/64 on the underlay,
// and 198.51.100.1 and 2001:db8:beef::1 on its lo.
func (l *lab) addRouter(short string) string {
	l.t.Helper()
	r := strings.TrimSuffix(l.host, "-host") + "-" + short
	l.fixture("ip", "netns", "add", r)
	l.names = append(l.names, r)
	l.fixture("ip", "-n", l.host, "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", r)
	l.fixture("ip", "-n", l.host, "addr", "add", rtrHost4+"/24", "dev", "up0")
	l.fixture("ip", "-n", l.host, "addr", "add", rtrHost6+"/64", "dev", "up0", "nodad")
	l.fixture("ip", "-n", l.host, "link", "set", "up0", "up")
	l.fixture("ip", "-n", r, "link", "set", "lo", "up")
	l.fixture("ip", "-n", r, "addr", "add", rtrPeer4+"/24", "dev", "eth0")
	l.fixture("ip", "-n", r, "addr", "add", rtrPeer6+"/64", "dev", "eth0", "nodad")
	l.fixture("ip", "-n", r, "addr", "add", rtrAddr4+"/32", "dev", "lo")
	l.fixture("ip", "-n", r, "addr", "add", rtrAddr6+"/128", "dev", "lo")
	l.fixture("ip", "-n", r, "link", "set", "eth0", "up")
	l.fixture("ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	return r
}

// daemon starts a router's process in namespace ns, in the foreground,
// and ends it (by its pid) with the test.
func daemon(t *testing.T, ns string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	log, err := os.Create(filepath.Join(t.TempDir(), filepath.Base(args[0])+".out"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", args[0], err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			out, _ := os.ReadFile(log.Name())
			t.Logf("%s output:\n%s", args[0], out)
		}
	})
	return cmd
}

// waitFor polls cond up to timeout; it returns how long it took.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func (l *lab) routes(ns string, args ...string) string {
	l.t.Helper()
	out4 := l.fixture(append([]string{"ip", "-n", ns, "route", "show"}, args...)...)
	out6 := l.fixture(append([]string{"ip", "-n", ns, "-6", "route", "show"}, args...)...)
	return out4 + out6
}

func (l *lab) bgpShow() bgpShow {
	l.t.Helper()
	var s bgpShow
	l.jsonOf(&s, "bgp", "show")
	return s
}

func (l *lab) established(n int) func() bool {
	return func() bool {
		s := l.bgpShow()
		if len(s) != 1 || s[0].Status == nil {
			return false
		}
		up := 0
		for _, p := range s[0].Status.Peers {
			if p.State == "established" {
				up++
			}
		}
		return up == n
	}
}

func startBird(t *testing.T, l *lab, r string) (birdc func(args ...string) string) {
	t.Helper()
	dir := t.TempDir()
	// Short waits after an error, so that a restarted nsnet speaker is
	// taken back at once (BIRD's defaults are a minute and more).
	conf := fmt.Sprintf(`router id %[1]s;
log stderr all;
protocol device {}
protocol kernel k4 { ipv4 { export all; import none; }; }
protocol kernel k6 { ipv6 { export all; import none; }; }
protocol static s4 { ipv4; route %[3]s blackhole; route 10.0.1.0/24 blackhole; }
protocol static s6 { ipv6; route %[4]s blackhole; }
template bgp nsnet { error wait time 1, 2; connect delay time 1; connect retry time 2; hold time 3; }
protocol bgp n4 from nsnet { local %[1]s as 64513; neighbor %[2]s as 64512; ipv4 { import all; export all; }; }
protocol bgp n6 from nsnet { local %[5]s as 64513; neighbor %[6]s as 64512; ipv6 { import all; export all; }; }
`, rtrPeer4, rtrHost4, rtrNet4, rtrNet6, rtrPeer6, rtrHost6)
	if err := os.WriteFile(filepath.Join(dir, "bird.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "bird.ctl")
	daemon(t, r, "bird", "-f", "-c", filepath.Join(dir, "bird.conf"), "-s", sock)
	return func(args ...string) string {
		out, _ := exec.Command("birdc", append([]string{"-s", sock}, args...)...).CombinedOutput()
		return string(out)
	}
}

// birdLab is a lab with a router running BIRD on its uplink.
func birdLab(t *testing.T) (l *lab, router string, birdc func(args ...string) string) {
	t.Helper()
	nstest.Require(t)
	if _, err := exec.LookPath("bird"); err != nil {
		t.Skip("BIRD 2 (Debian bird2) is not installed")
	}
	l = newLab(t)
	router = l.addRouter("bird")
	return l, router, startBird(t, l, router)
}

func TestBGPBird(t *testing.T) {
	l, r, birdc := birdLab(t)

	l.must("net", "create", "pods", "--driver", "routed", "--subnet", "10.0.1.0/24", "--subnet", "fd00:1::/64")
	a, b := l.ns("a"), l.ns("b")
	l.must("net", "connect", "pods", a, "--ip", "10.0.1.2", "--ip6", "fd00:1::2")
	l.must("bgp", "set", "--asn", "64512", "--router-id", rtrHost4, "--hold-time", "3")
	l.must("bgp", "peer", "add", rtrPeer4, "--asn", "64513")
	l.must("bgp", "peer", "add", rtrPeer6, "--asn", "64513")
	waitFor(t, 20*time.Second, "both sessions established", l.established(2))

	// BIRD learns the member's routes and puts them in its kernel.
	waitFor(t, 5*time.Second, "BIRD learns 10.0.1.2/32", func() bool {
		return strings.Contains(birdc("show", "route", "for", "10.0.1.2"), "10.0.1.2/32")
	})
	waitFor(t, 5*time.Second, "BIRD's kernel routes the member", func() bool {
		rs := l.routes(r)
		return strings.Contains(rs, "10.0.1.2 via "+rtrHost4) && strings.Contains(rs, "fd00:1::2 via "+rtrHost6)
	})
	// nsnet learns BIRD's prefixes and installs them (proto 111), but not
	// one that overlaps its own network.
	waitFor(t, 5*time.Second, "nsnet installs BIRD's prefixes", func() bool {
		rs := l.routes(l.host, "proto", "111")
		return strings.Contains(rs, rtrNet4+" via "+rtrPeer4) && strings.Contains(rs, rtrNet6+" via "+rtrPeer6)
	})
	if rs := l.routes(l.host, "proto", "111"); strings.Contains(rs, "10.0.1.0/24") {
		t.Errorf("nsnet installed BIRD's 10.0.1.0/24, which overlaps its own network:\n%s", rs)
	}
	show := l.bgpShow()
	ignored := false
	for _, ig := range show[0].Status.Ignored {
		ignored = ignored || ig.Prefix == "10.0.1.0/24" && strings.Contains(ig.Reason, "pods")
	}
	if !ignored {
		t.Errorf("bgp show does not report 10.0.1.0/24 as ignored: %+v", show[0].Status)
	}

	// The router reaches the member by its own address, and sees the
	// member's own address as the source; both families.
	seen := listen(t, r, rtrAddr4+":8080")
	if src, err := dial(a, rtrAddr4+":8080"); err != nil || src != "10.0.1.2" {
		t.Errorf("member to the router's address: source %q, %v; want 10.0.1.2", src, err)
	}
	<-seen
	seen6 := listen(t, r, "["+rtrAddr6+"]:8080")
	if src, err := dial(a, "["+rtrAddr6+"]:8080"); err != nil || src != "fd00:1::2" {
		t.Errorf("member to the router's IPv6 address: source %q, %v; want fd00:1::2", src, err)
	}
	<-seen6
	seenA := listen(t, a, "10.0.1.2:8080")
	if src, err := dial(r, "10.0.1.2:8080"); err != nil || src != rtrPeer4 {
		t.Errorf("router to the member: source %q, %v; want %s", src, err, rtrPeer4)
	}
	<-seenA

	// A connect announces, a disconnect withdraws.
	l.must("net", "connect", "pods", b, "--ip", "10.0.1.3")
	took := waitFor(t, 5*time.Second, "BIRD learns b's route", func() bool {
		return strings.Contains(l.routes(r), "10.0.1.3 via")
	})
	t.Logf("connect to the route in BIRD's kernel: %v", took)
	l.must("net", "disconnect", "pods", b)
	took = waitFor(t, 5*time.Second, "BIRD drops b's route", func() bool {
		return !strings.Contains(l.routes(r), "10.0.1.3 via")
	})
	t.Logf("disconnect to the route gone from BIRD's kernel: %v", took)

	// The agent (and with it the speaker) killed: the next command
	// starts them again, the sessions come back, and the routes stay.
	stopAgent(l)
	l.must("net", "ls")
	waitFor(t, 20*time.Second, "sessions back after the agent was killed", l.established(2))
	waitFor(t, 5*time.Second, "routes back after the agent was killed", func() bool {
		return strings.Contains(l.routes(l.host, "proto", "111"), rtrNet4) && strings.Contains(l.routes(r), "10.0.1.2 via")
	})

	// BGP off: everything withdrawn and removed before the command returns.
	l.must("bgp", "off")
	if rs := l.routes(l.host, "proto", "111"); strings.TrimSpace(rs) != "" {
		t.Errorf("routes of nsnet's BGP left after bgp off:\n%s", rs)
	}
	waitFor(t, 5*time.Second, "BIRD drops the member's route after bgp off", func() bool {
		return !strings.Contains(l.routes(r), "10.0.1.2 via")
	})
	if s := l.bgpShow(); len(s) != 0 {
		t.Errorf("bgp show after off: %+v", s)
	}
}

func TestBGPPeerDies(t *testing.T) {
	l, r, birdc := birdLab(t)
	l.must("net", "create", "pods", "--driver", "routed", "--subnet", "10.0.1.0/24")
	l.must("bgp", "set", "--asn", "64512", "--hold-time", "3")
	l.must("bgp", "peer", "add", rtrPeer4, "--asn", "64513")
	waitFor(t, 20*time.Second, "session established", l.established(1))
	waitFor(t, 5*time.Second, "BIRD's prefix installed", func() bool {
		return strings.Contains(l.routes(l.host, "proto", "111"), rtrNet4)
	})
	// --aggregate: the subnet instead of the members, with a blackhole
	// for it on the host.
	l.must("bgp", "set", "--asn", "64512", "--hold-time", "3", "--aggregate")
	waitFor(t, 20*time.Second, "session back after the change", l.established(1))
	waitFor(t, 5*time.Second, "BIRD learns the aggregate", func() bool {
		return strings.Contains(birdc("show", "route", "protocol", "n4"), "10.0.1.0/24")
	})
	if rs := l.routes(l.host, "proto", "111"); !strings.Contains(rs, "blackhole 10.0.1.0/24") {
		t.Errorf("no blackhole for the aggregated subnet:\n%s", rs)
	}
	// The peer goes silent (its link down: no FIN, no NOTIFICATION): its
	// routes leave the kernel after the hold time, 3 s.
	l.fixture("ip", "-n", r, "link", "set", "eth0", "down")
	took := waitFor(t, 15*time.Second, "BIRD's prefix removed after the hold time", func() bool {
		return !strings.Contains(l.routes(l.host, "proto", "111"), rtrNet4)
	})
	t.Logf("peer silent to its routes gone: %v (hold time 3 s)", took)
	l.fixture("ip", "-n", r, "link", "set", "eth0", "up")
	waitFor(t, 30*time.Second, "BIRD's prefix back with the link", func() bool {
		return strings.Contains(l.routes(l.host, "proto", "111"), rtrNet4)
	})
	// The peer's process dies (SIGKILL): the kernel resets the session
	// and its routes leave at once.
	for _, p := range pidsIn(t, r, "bird") {
		syscall.Kill(p, syscall.SIGKILL)
	}
	took = waitFor(t, 10*time.Second, "BIRD's prefix removed", func() bool {
		return !strings.Contains(l.routes(l.host, "proto", "111"), rtrNet4)
	})
	if rs := l.routes(l.host, "proto", "111"); !strings.Contains(rs, "blackhole 10.0.1.0/24") {
		t.Errorf("the aggregate's blackhole went with the peer:\n%s", rs)
	}
	t.Logf("peer killed to its routes gone: %v", took)
}

// pidsIn lists the processes called name in namespace ns (which this
// test made).
func pidsIn(t *testing.T, ns, name string) []int {
	t.Helper()
	out, _ := exec.Command("ip", "netns", "pids", ns).Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		var pid int
		fmt.Sscan(f, &pid)
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(comm)) == name {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestBGPFRR(t *testing.T) {
	nstest.Require(t)
	if _, err := os.Stat("/usr/lib/frr/bgpd"); err != nil {
		t.Skip("FRR (Debian frr) is not installed")
	}
	l := newLab(t)
	r := l.addRouter("frr")
	dir := t.TempDir()
	// FRR drops its privileges to user frr, which must reach its files.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	conf := map[string]string{
		"zebra.conf":   "hostname frr\n",
		"staticd.conf": "ip route " + rtrNet4 + " blackhole\n",
		"bgpd.conf": `router bgp 64513
 bgp router-id ` + rtrPeer4 + `
 no bgp ebgp-requires-policy
 neighbor ` + rtrHost4 + ` remote-as 64512
 neighbor ` + rtrHost4 + ` timers 1 3
 neighbor ` + rtrHost4 + ` timers connect 1
 address-family ipv4 unicast
  redistribute static
 exit-address-family
`,
	}
	for name, text := range conf {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"zebra", "staticd", "bgpd"} {
		daemon(t, r, "/usr/lib/frr/"+d, "-f", filepath.Join(dir, d+".conf"), "-i", filepath.Join(dir, d+".pid"),
			"-z", filepath.Join(dir, "zserv.api"), "--vty_socket", dir, "-u", "frr", "-g", "frr", "--log", "stdout")
		if d == "zebra" {
			waitFor(t, 5*time.Second, "zebra's socket", func() bool {
				_, err := os.Stat(filepath.Join(dir, "zserv.api"))
				return err == nil
			})
		}
	}

	l.must("net", "create", "pods", "--driver", "routed", "--subnet", "10.0.1.0/24")
	a := l.ns("a")
	l.must("net", "connect", "pods", a, "--ip", "10.0.1.2")
	l.must("bgp", "set", "--asn", "64512", "--hold-time", "3")
	l.must("bgp", "peer", "add", rtrPeer4, "--asn", "64513")
	waitFor(t, 20*time.Second, "session with FRR established", l.established(1))
	waitFor(t, 5*time.Second, "FRR's kernel routes the member", func() bool {
		return strings.Contains(l.routes(r), "10.0.1.2 nhid") || strings.Contains(l.routes(r), "10.0.1.2 via "+rtrHost4)
	})
	waitFor(t, 5*time.Second, "nsnet installs FRR's prefix", func() bool {
		return strings.Contains(l.routes(l.host, "proto", "111"), rtrNet4+" via "+rtrPeer4)
	})
	seen := listen(t, r, rtrAddr4+":8080")
	if src, err := dial(a, rtrAddr4+":8080"); err != nil || src != "10.0.1.2" {
		t.Errorf("member to FRR's address: source %q, %v; want 10.0.1.2", src, err)
	}
	<-seen
	l.must("net", "disconnect", "pods", a)
	waitFor(t, 5*time.Second, "FRR drops the member's route", func() bool {
		return !strings.Contains(l.routes(r), "10.0.1.2 ")
	})
	l.must("bgp", "off")
	if rs := l.routes(l.host, "proto", "111"); strings.TrimSpace(rs) != "" {
		t.Errorf("routes left after bgp off:\n%s", rs)
	}
}

func TestBGPBadInput(t *testing.T) {
	l := newLab(t)
	l.fixture("ip", "-n", l.host, "link", "add", "up0", "type", "veth", "peer", "name", "up1")
	l.fixture("ip", "-n", l.host, "addr", "add", rtrHost4+"/24", "dev", "up0")
	// Before bgp set.
	if _, err := l.run("bgp", "peer", "add", rtrPeer4, "--asn", "64513"); err == nil || !strings.Contains(err.Error(), "bgp set") {
		t.Errorf("peer add before bgp set: %v", err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bgp", "set", "--asn", "0"}, "asn \"0\""},
		{[]string{"bgp", "set", "--asn", "4294967296"}, "asn \"4294967296\""},
		{[]string{"bgp", "set", "--asn", "x"}, "asn \"x\""},
		{[]string{"bgp", "set"}, "--asn is required"},
		{[]string{"bgp", "set", "--asn", "64512", "--router-id", "2001:db8::1"}, "must be an IPv4 address"},
		{[]string{"bgp", "set", "--asn", "64512", "--router-id", "nope"}, "not an IP address"},
		{[]string{"bgp", "set", "--asn", "64512", "--listen", "192.0.2.99"}, "not one of"},
	} {
		if _, err := l.run(tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("nsnet %s: %v; want an error with %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
	if s := l.bgpShow(); len(s) != 0 {
		t.Fatalf("bad bgp set changed something: %+v", s)
	}
	l.must("bgp", "set", "--asn", "64512")
	l.must("bgp", "peer", "add", rtrPeer4, "--asn", "64513")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bgp", "peer", "add", "not-an-ip", "--asn", "1"}, "not an IP address"},
		{[]string{"bgp", "peer", "add", rtrHost4, "--asn", "1"}, "own addresses"},
		{[]string{"bgp", "peer", "add", rtrPeer4, "--asn", "64513"}, "already a peer"},
		{[]string{"bgp", "peer", "add", "192.0.2.7"}, "--asn is required"},
		{[]string{"bgp", "peer", "add", "192.0.2.7", "--asn", "0"}, "asn \"0\""},
		{[]string{"bgp", "peer", "rm", "192.0.2.8"}, "no such peer"},
	} {
		if _, err := l.run(tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("nsnet %s: %v; want an error with %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
	s := l.bgpShow()
	if len(s) != 1 || s[0].Status == nil || len(s[0].Status.Peers) != 1 {
		t.Fatalf("bgp show after bad peers: %+v", s)
	}
	// A password needs TCP MD5 in the kernel: taken where it has it, and
	// refused with a message that says so where it has not.
	if _, err := l.run("bgp", "peer", "add", "192.0.2.9", "--asn", "64513", "--password", "secret"); err != nil &&
		!strings.Contains(err.Error(), "TCP MD5") {
		t.Errorf("peer with a password: %v", err)
	}
	l.must("bgp", "off")
	if out, err := json.Marshal(l.bgpShow()); err != nil || string(out) != "[]" {
		t.Errorf("bgp show after off: %s", out)
	}
}

// Three hosts in a full iBGP mesh from a lab file: every member reaches
// every other by its own address, across node03's FORWARD policy drop.
func TestExampleBGPThreeHosts(t *testing.T) {
	l := newLab(t)
	t.Cleanup(func() { l.speakerLogs() })
	names := []string{"node01", "node02", "node03", "bgp01", "bgp02", "bgp03"}
	l.destroyAfter("bgp-mesh", names...)
	file := example("005-bgp-three-hosts.yaml")
	l.apply(file)
	members := map[string]string{"bgp01": "10.0.1.2", "bgp02": "10.0.2.2", "bgp03": "10.0.3.2"}
	hosts := map[string]string{"node01": "198.51.100.2", "node02": "198.51.100.3", "node03": "198.51.100.4"}
	waitFor(t, 30*time.Second, "every host installs the others' members", func() bool {
		for h := range hosts {
			rs := l.routes(h, "proto", "111")
			for m, a := range members {
				if !strings.Contains(m, h[len(h)-1:]) && !strings.Contains(rs, a+" via") {
					return false
				}
			}
		}
		return true
	})
	// bgp show reports a change within a tenth of a second or so.
	var show bgpShow
	waitFor(t, 5*time.Second, "bgp show: every session established", func() bool {
		l.jsonOf(&show, "bgp", "show")
		for _, s := range show {
			if s.Status == nil || len(s.Status.Peers) != 2 || s.Status.Peers[0].State != "established" || s.Status.Peers[1].State != "established" {
				return false
			}
		}
		return true
	})
	if len(show) != 3 {
		t.Fatalf("bgp show: %d hosts, want 3: %+v", len(show), show)
	}
	for _, s := range show {
		if s.Status == nil || len(s.Status.Peers) != 2 || s.Status.Peers[0].State != "established" || s.Status.Peers[1].State != "established" {
			t.Errorf("host %s: %+v", s.Host, s.Status)
		}
	}
	seen := map[string]<-chan string{}
	for to, dst := range members {
		seen[to] = listen(t, to, dst+":9000")
	}
	for from, src := range members {
		for to, dst := range members {
			if from == to {
				continue
			}
			got, err := dial(from, dst+":9000")
			if err != nil {
				t.Errorf("%s to %s: %v", from, to, err)
				continue
			}
			<-seen[to]
			if got != src {
				t.Errorf("%s saw %s from %s, want its own address %s", to, got, from, src)
			}
		}
	}
	if rs := l.fixture("ip", "-n", "node01", "route", "show", "10.0.3.2"); !strings.Contains(rs, "via "+hosts["node03"]) || !strings.Contains(rs, "proto 111") {
		t.Errorf("node01's route to bgp03: %q", rs)
	}
	l.assertNoChanges(file, names...)
	l.must("destroy", "--lab", "bgp-mesh")
	l.assertGone(names...)
	if _, err := os.Stat(filepath.Join(l.state, "bgp", "node01.json")); err == nil {
		t.Errorf("node01's speaker still reports after destroy")
	}
}

// speakerLogs shows the lab's BGP speakers' logs when the test failed.
func (l *lab) speakerLogs() {
	if !l.t.Failed() {
		return
	}
	logs, _ := filepath.Glob(filepath.Join(l.state, "bgp", "*.log"))
	for _, p := range logs {
		raw, _ := os.ReadFile(p)
		l.t.Logf("%s:\n%s", p, raw)
	}
}
