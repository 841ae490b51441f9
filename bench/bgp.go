package bench

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/netns"
)

// BGPResult is the BGP section (issue 13): nsnet's speaker peering with
// BIRD 2 over a veth, in simulated hosts.
type BGPResult struct {
	// Routes is how many routes BIRD announces to nsnet; Small the
	// smaller run the per-route cost is compared with.
	Routes int `json:"routes"`
	Small  int `json:"small"`
	// Learn is from the first learned route in nsnet's host kernel to the
	// last; Floor the same routes installed by an in-process netlink loop
	// in the same run. SmallLearn is Learn for Small routes.
	Learn      time.Duration `json:"learn_ns"`
	SmallLearn time.Duration `json:"small_learn_ns"`
	Floor      time.Duration `json:"floor_ns"`
	// SpeakerKiB is nsnet-bgp's peak resident set with Routes learned.
	SpeakerKiB int64 `json:"speaker_peak_kib"`
	// Announce is from `nsnet net connect` returning to the member's
	// route in BIRD's kernel; Connect the connect command itself.
	Announce Summary `json:"announce"`
	Connect  Summary `json:"connect"`
	Err      string  `json:"error,omitempty"`
}

var (
	bgpPeer    = netip.MustParseAddr("198.51.100.2")
	bgpLearned = netip.MustParsePrefix("100.64.0.0/10")
)

// runBGP starts BIRD in a router namespace on the host's uplink, lets it
// announce routes /32s, and times nsnet learning them; then connects
// rounds members to a routed network and times each announcement to
// BIRD's kernel.
func (r *runner) runBGP(routes, rounds int) BGPResult {
	res := BGPResult{Routes: routes, Small: max(routes/10, 1)}
	fail := func(err error) BGPResult {
		res.Err = err.Error()
		r.logf("  bgp: %v", err)
		return res
	}
	r.logf("bgp: BIRD announces %d and %d routes; %d connects announced", res.Small, routes, rounds)
	bird := r.bin.Bird
	if bird == "" {
		return fail(fmt.Errorf("BIRD 2 is not installed (Debian bird2)"))
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(r.bin.NSNet), "nsnet-bgp")); err != nil {
		return fail(fmt.Errorf("nsnet-bgp is not beside %s", r.bin.NSNet))
	}
	floor, err := r.routeFloor(routes)
	if err != nil {
		return fail(fmt.Errorf("floor: %w", err))
	}
	res.Floor = floor
	for i, n := range []int{res.Small, routes} {
		learn, kib, err := r.bgpLearn(bird, n)
		if err != nil {
			return fail(err)
		}
		if i == 0 {
			res.SmallLearn = learn
			continue
		}
		res.Learn, res.SpeakerKiB = learn, kib
	}
	ann, conn, err := r.bgpAnnounce(bird, rounds)
	if err != nil {
		return fail(err)
	}
	res.Announce, res.Connect = ann, conn
	r.logf("  learn %d routes: %s (floor %s); %d routes: %s; speaker peak RSS %s; announce median %s",
		routes, roundDur(res.Learn), roundDur(res.Floor), res.Small, roundDur(res.SmallLearn), fmtKiB(res.SpeakerKiB), roundDur(res.Announce.Median))
	return res
}

func learnedAddr(i int) netip.Addr {
	b := bgpLearned.Addr().As4()
	binary.BigEndian.PutUint32(b[:], binary.BigEndian.Uint32(b[:])+uint32(i)+1)
	return netip.AddrFrom4(b)
}

// routeFloor installs n /32 routes via a neighbour with one netlink
// request each, as nsnet's speaker does, in a namespace of its own.
func (r *runner) routeFloor(n int) (time.Duration, error) {
	name := "bgpfloor"
	if err := createNetns(name, true); err != nil {
		return 0, err
	}
	defer netns.Delete(name)
	h, err := nlHandle(name)
	if err != nil {
		return 0, err
	}
	defer h.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "up0", Flags: net.FlagUp}, PeerName: "up1"}
	if err := h.LinkAdd(veth); err != nil {
		return 0, err
	}
	if err := h.AddrAdd(veth, &netlink.Addr{IPNet: ipNet(uplinkHost, uplinkSubnet.Bits())}); err != nil {
		return 0, err
	}
	link, err := h.LinkByName("up0")
	if err != nil {
		return 0, err
	}
	start := time.Now()
	for i := range n {
		rt := &netlink.Route{Dst: ipNet(learnedAddr(i), 32), Gw: bgpPeer.AsSlice(), LinkIndex: link.Attrs().Index,
			Flags: int(netlink.FLAG_ONLINK), Protocol: 111}
		if err := h.RouteReplace(rt); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// bgpWorld is a host with nsnet's BGP and a router namespace running
// BIRD on its uplink.
type bgpWorld struct {
	h      *host
	router string
	bird   *exec.Cmd
	hn, rn *netlink.Handle
}

func (r *runner) newBGPWorld(bird string, routes int) (*bgpWorld, error) {
	h, err := newHost("bgp", r.bin, r.stateRoot)
	if err != nil {
		return nil, err
	}
	w := &bgpWorld{h: h}
	if err := h.addOutside(); err != nil {
		w.close()
		return nil, err
	}
	w.router = h.outside
	if w.hn, err = nlHandle(h.name); err != nil {
		w.close()
		return nil, err
	}
	if w.rn, err = nlHandle(w.router); err != nil {
		w.close()
		return nil, err
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, "router id %s;\nprotocol device {}\nprotocol kernel { ipv4 { export all; import none; }; }\n", bgpPeer)
	fmt.Fprintf(&conf, "protocol bgp n { local %s as 64513; neighbor %s as 64512; connect delay time 1; ipv4 { import all; export all; }; }\n", bgpPeer, uplinkHost)
	conf.WriteString("protocol static { ipv4;\n")
	for i := range routes {
		fmt.Fprintf(&conf, " route %s/32 blackhole;\n", learnedAddr(i))
	}
	conf.WriteString("}\n")
	p := filepath.Join(h.dir, "bird.conf")
	if err := os.WriteFile(p, []byte(conf.String()), 0o644); err != nil {
		w.close()
		return nil, err
	}
	w.bird = exec.Command("ip", "netns", "exec", w.router, bird, "-f", "-c", p, "-s", filepath.Join(h.dir, "bird.ctl"))
	if err := w.bird.Start(); err != nil {
		w.close()
		return nil, fmt.Errorf("start bird: %w", err)
	}
	return w, nil
}

func (w *bgpWorld) nsnet(args ...string) error {
	out, _, err := w.h.run(nsnetTool{}.nsnet(w.h, args...))
	if err != nil {
		return fmt.Errorf("nsnet %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func (w *bgpWorld) close() {
	if w.h != nil && w.h.dir != "" {
		// The speaker is this run's: it ends with BGP off, else by pid.
		w.nsnet("bgp", "off")
		stopByLock(filepath.Join(w.h.dir, "nsnet", "bgp", "default.lock"))
		stopByLock(filepath.Join(w.h.dir, "nsnet", "agent.pid"))
	}
	if w.bird != nil {
		w.bird.Process.Kill()
		w.bird.Wait()
	}
	if w.hn != nil {
		w.hn.Close()
	}
	if w.rn != nil {
		w.rn.Close()
	}
	w.h.close()
}

// stopByLock kills the process whose pid a file of this run names.
func stopByLock(p string) {
	raw, err := os.ReadFile(p)
	if err != nil {
		return
	}
	if pid, err := strconv.Atoi(strings.TrimSpace(string(raw))); err == nil && pid > 0 {
		unix.Kill(pid, unix.SIGKILL)
	}
}

func countProto(h *netlink.Handle) int {
	rs, err := kernel.Retry(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: 111, Table: unix.RT_TABLE_MAIN},
			netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return -1
	}
	return len(rs)
}

// bgpLearn peers nsnet with a BIRD that announces n routes and returns
// the time from the first route in the host's kernel to the last, and the
// speaker's peak resident set.
func (r *runner) bgpLearn(bird string, n int) (time.Duration, int64, error) {
	w, err := r.newBGPWorld(bird, n)
	if err != nil {
		return 0, 0, err
	}
	defer w.close()
	if err := w.nsnet("bgp", "set", "--asn", "64512", "--router-id", uplinkHost.String()); err != nil {
		return 0, 0, err
	}
	if err := w.nsnet("bgp", "peer", "add", bgpPeer.String(), "--asn", "64513"); err != nil {
		return 0, 0, err
	}
	var first time.Time
	deadline := time.Now().Add(60 * time.Second)
	for {
		c := countProto(w.hn)
		if c > 0 && first.IsZero() {
			first = time.Now()
		}
		if c >= n {
			break
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("bgp: %d of %d routes learned after 60 s", c, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
	learn := time.Since(first)
	return learn, speakerPeak(filepath.Join(w.h.dir, "nsnet", "bgp", "default.lock")), nil
}

func speakerPeak(lock string) int64 {
	raw, err := os.ReadFile(lock)
	if err != nil {
		return 0
	}
	st, err := os.ReadFile("/proc/" + strings.TrimSpace(string(raw)) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(st), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			k, _ := strconv.ParseInt(f[1], 10, 64)
			return k
		}
	}
	return 0
}

// bgpAnnounce connects rounds members to a routed network and times,
// for each, from the connect's return to its route in BIRD's kernel.
func (r *runner) bgpAnnounce(bird string, rounds int) (Summary, Summary, error) {
	w, err := r.newBGPWorld(bird, 0)
	if err != nil {
		return Summary{}, Summary{}, err
	}
	defer w.close()
	for _, args := range [][]string{
		{"net", "create", "pods", "--driver", "routed", "--subnet", routedSubnet.String()},
		{"bgp", "set", "--asn", "64512", "--router-id", uplinkHost.String()},
		{"bgp", "peer", "add", bgpPeer.String(), "--asn", "64513"},
	} {
		if err := w.nsnet(args...); err != nil {
			return Summary{}, Summary{}, err
		}
	}
	members := make([]member, rounds)
	for i := range members {
		members[i] = newMember("bgpm", i)
		if err := createNetns(members[i].NS, true); err != nil {
			return Summary{}, Summary{}, err
		}
		defer netns.Delete(members[i].NS)
	}
	// The session first: a route announced before it is up waits for it.
	if err := w.nsnet("ns", "ls"); err != nil {
		return Summary{}, Summary{}, err
	}
	up := time.Now().Add(30 * time.Second)
	for !established(filepath.Join(w.h.dir, "nsnet")) {
		if time.Now().After(up) {
			return Summary{}, Summary{}, fmt.Errorf("bgp: no session with BIRD after 30 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var ann, conn []Sample
	for i, m := range members {
		addr := nthHost(routedSubnet, i+1)
		_, s, err := w.h.run(nsnetTool{}.nsnet(w.h, "net", "connect", "pods", m.NS, "--ip", addr.String()))
		if err != nil {
			return Summary{}, Summary{}, fmt.Errorf("connect %s: %w", m.NS, err)
		}
		start := time.Now()
		for {
			rs, err := w.rn.RouteGet(addr.AsSlice())
			if err == nil && len(rs) > 0 && rs[0].Gw != nil {
				break
			}
			if time.Since(start) > 10*time.Second {
				return Summary{}, Summary{}, fmt.Errorf("bgp: %s not at BIRD 10 s after connect", addr)
			}
			time.Sleep(time.Millisecond)
		}
		ann = append(ann, Sample{Wall: time.Since(start)})
		conn = append(conn, s)
	}
	return summarize(ann), summarize(conn), nil
}

func established(stateDir string) bool {
	raw, err := os.ReadFile(filepath.Join(stateDir, "bgp", "default.json"))
	return err == nil && strings.Contains(string(raw), `"state":"established"`)
}

func writeBGP(b *strings.Builder, res *Results) {
	if res.BGP == nil {
		return
	}
	g := res.BGP
	fmt.Fprintf(b, "## 8. BGP\n\n")
	fmt.Fprintf(b, "Issue 13: nsnet's speaker (nsnet-bgp, gobgp v4) peering over a veth with BIRD 2 in a router namespace. BIRD announces %d and then %d /32 routes; *learn* is from the first of them in the host's kernel (route protocol 111) to the last; the floor installs the same %d routes with one netlink request each, in-process, in the same run. Then %d members connect to a routed network, one `nsnet net connect` each; *announce* is from the command's return to the member's route in BIRD's kernel. Targets: %d routes in under 2 s at a constant cost per route; announce median under 1 s.\n\n",
		g.Small, g.Routes, g.Routes, g.Announce.Count, g.Routes)
	if g.Err != "" {
		fmt.Fprintf(b, "Failed: %s\n\n", mdEscape(g.Err))
		return
	}
	per := func(d time.Duration, n int) string {
		if n == 0 {
			return "–"
		}
		return fmt.Sprintf("%.1f µs", float64(d.Microseconds())/float64(n))
	}
	ratio := func(a, b time.Duration) string {
		if b <= 0 {
			return "–"
		}
		return fmt.Sprintf("×%.2f", float64(a)/float64(b))
	}
	fmt.Fprintf(b, "| measure | time | per route | vs floor |\n|---|---:|---:|---:|\n")
	fmt.Fprintf(b, "| learn %d routes | %s | %s | |\n", g.Small, fmtDur(g.SmallLearn), per(g.SmallLearn, g.Small))
	fmt.Fprintf(b, "| learn %d routes | %s | %s | %s |\n", g.Routes, fmtDur(g.Learn), per(g.Learn, g.Routes), ratio(g.Learn, g.Floor))
	fmt.Fprintf(b, "| floor, %d routes | %s | %s | |\n\n", g.Routes, fmtDur(g.Floor), per(g.Floor, g.Routes))
	fmt.Fprintf(b, "nsnet-bgp's peak resident set with %d routes learned: %s.\n\n", g.Routes, fmtKiB(g.SpeakerKiB))
	fmt.Fprintf(b, "| measure | median | p95 |\n|---|---:|---:|\n| connect (the command) | %s | %s |\n| connect return → route in BIRD's kernel | %s | %s |\n\n",
		fmtDur(g.Connect.Median), fmtDur(g.Connect.P95), fmtDur(g.Announce.Median), fmtDur(g.Announce.P95))
}
