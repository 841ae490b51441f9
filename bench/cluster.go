package bench

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nsnet/nsnet/internal/netns"
)

// ClusterResult is the cluster section (issue 14): two hosts joined to a
// one-member etcd on one segment.
type ClusterResult struct {
	// Local and Cluster are `nsnet net connect` on a routed network of
	// host A alone, and on a cluster network (host-gw) of the same
	// driver, alternating, in the same run.
	Local   Summary `json:"local"`
	Cluster Summary `json:"cluster"`
	// Reach is from a connect on host A returning to host B having the
	// route to the member, for connects that each claim a new block.
	Reach Summary `json:"reach"`
	// VXLAN is the data path between members on A and B over the vxlan
	// backend; Hand the same topology built by hand.
	VXLAN, Hand DataPathResult
	Err         string `json:"error,omitempty"`
}

const etcdAddr = "198.51.100.10"

var (
	clusterHosts = []string{"clb-a", "clb-b"}
	clusterAddrs = []netip.Addr{netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")}
)

// clusterWorld is a switch namespace with a bridge, etcd, and two hosts
// on it, each a bench host with a state directory of its own.
type clusterWorld struct {
	hosts []*host
	etcd  *exec.Cmd
	url   string
}

func (r *runner) newClusterWorld() (*clusterWorld, error) {
	w := &clusterWorld{url: "etcd://" + etcdAddr + ":2379"}
	if r.bin.Etcd == "" {
		return w, fmt.Errorf("etcd is not installed (Debian etcd-server)")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(r.bin.NSNet), "nsnet-cluster")); err != nil {
		return w, fmt.Errorf("nsnet-cluster is not beside %s", r.bin.NSNet)
	}
	if err := createNetns("clb-sw", true); err != nil {
		return w, err
	}
	sw, err := nlHandle("clb-sw")
	if err != nil {
		return w, err
	}
	defer sw.Close()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0", Flags: net.FlagUp}}
	if err := sw.LinkAdd(br); err != nil {
		return w, err
	}
	plug := func(ns string, addr netip.Addr) error {
		fd, err := netns.Open(netns.Path(ns))
		if err != nil {
			return err
		}
		defer fd.Close()
		port := "p-" + ns
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: port, MasterIndex: br.Index, Flags: net.FlagUp}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(fd))}
		if err := sw.LinkAdd(v); err != nil {
			return fmt.Errorf("%s: %w", ns, err)
		}
		h, err := nlHandle(ns)
		if err != nil {
			return err
		}
		defer h.Close()
		eth, err := h.LinkByName("eth0")
		if err != nil {
			return err
		}
		if err := h.AddrAdd(eth, &netlink.Addr{IPNet: ipNet(addr, 24)}); err != nil {
			return err
		}
		return h.LinkSetUp(eth)
	}
	if err := createNetns("clb-etcd", true); err != nil {
		return w, err
	}
	if err := plug("clb-etcd", netip.MustParseAddr(etcdAddr)); err != nil {
		return w, err
	}
	for i, name := range clusterHosts {
		h, err := newHost(name, r.bin, r.stateRoot)
		if err != nil {
			return w, err
		}
		w.hosts = append(w.hosts, h)
		if err := plug(name, clusterAddrs[i]); err != nil {
			return w, err
		}
	}
	data := filepath.Join(w.hosts[0].dir, "etcd")
	u := "http://" + etcdAddr
	w.etcd = exec.Command("ip", "netns", "exec", "clb-etcd", r.bin.Etcd, "--name", "e1", "--data-dir", data,
		"--listen-client-urls", u+":2379", "--advertise-client-urls", u+":2379",
		"--listen-peer-urls", u+":2380", "--initial-advertise-peer-urls", u+":2380", "--initial-cluster", "e1="+u+":2380")
	if err := w.etcd.Start(); err != nil {
		return w, fmt.Errorf("start etcd: %w", err)
	}
	// etcd answers within a second or two of its start.
	var jerr error
	for range 100 {
		if _, jerr = w.nsnet(0, "host", "join", "--name", "a", "--ttl", "10"); jerr == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if jerr != nil {
		return w, jerr
	}
	if _, err := w.nsnet(1, "host", "join", "--name", "b", "--ttl", "10"); err != nil {
		return w, err
	}
	return w, nil
}

func (w *clusterWorld) nsnet(i int, args ...string) (Sample, error) {
	h := w.hosts[i]
	out, s, err := h.run(nsnetTool{}.nsnet(h, append([]string{"--cluster", w.url}, args...)...))
	if err != nil {
		return s, fmt.Errorf("nsnet %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return s, nil
}

func (w *clusterWorld) close() {
	for _, h := range w.hosts {
		stopByLock(filepath.Join(h.dir, "nsnet", "cluster.lock"))
		stopByLock(filepath.Join(h.dir, "nsnet", "agent.pid"))
	}
	if w.etcd != nil && w.etcd.Process != nil {
		w.etcd.Process.Kill()
		w.etcd.Wait()
	}
	for _, h := range w.hosts {
		h.close()
	}
	netns.Delete("clb-etcd")
	netns.Delete("clb-sw")
}

// runCluster measures connects, reachability and the vxlan data path.
func (r *runner) runCluster(rounds int) ClusterResult {
	var res ClusterResult
	fail := func(err error) ClusterResult {
		res.Err = err.Error()
		r.logf("  cluster: %v", err)
		return res
	}
	r.logf("cluster: two hosts on one etcd, %d connects each way", rounds)
	w, err := r.newClusterWorld()
	defer w.close()
	if err != nil {
		return fail(err)
	}
	for _, args := range [][]string{
		{"net", "create", "loc", "--driver", "routed", "--subnet", "10.97.0.0/16"},
		{"net", "create", "cl", "--scope", "cluster", "--subnet", "10.96.0.0/16", "--backend", "host-gw"},
		{"net", "create", "fast", "--scope", "cluster", "--subnet", "10.94.0.0/16", "--block-size", "30", "--backend", "host-gw"},
		{"net", "create", "vx", "--scope", "cluster", "--subnet", "10.93.0.0/16", "--backend", "vxlan"},
	} {
		if _, err := w.nsnet(0, args...); err != nil {
			return fail(err)
		}
	}
	var members []string
	defer func() {
		for _, m := range members {
			netns.Delete(m)
		}
	}()
	newMember := func(name string) (string, error) {
		members = append(members, name)
		return name, createNetns(name, true)
	}
	// Connects, alternating local and cluster so drifts hit both.
	var loc, cl []Sample
	for i := range rounds {
		for _, x := range []struct {
			net string
			out *[]Sample
		}{{"loc", &loc}, {"cl", &cl}} {
			ns, err := newMember(fmt.Sprintf("clb-%s%02d", x.net, i))
			if err != nil {
				return fail(err)
			}
			s, err := w.nsnet(0, "net", "connect", x.net, ns)
			if err != nil {
				return fail(err)
			}
			*x.out = append(*x.out, s)
		}
	}
	res.Local, res.Cluster = summarize(loc), summarize(cl)
	// Reach: /30 blocks hold three members; every third connect claims a
	// block whose route host B must learn.
	bn, err := nlHandle(clusterHosts[1])
	if err != nil {
		return fail(err)
	}
	defer bn.Close()
	var reach []Sample
	for i := range 3 * rounds {
		ns, err := newMember(fmt.Sprintf("clb-fast%02d", i))
		if err != nil {
			return fail(err)
		}
		if _, err := w.nsnet(0, "net", "connect", "fast", ns); err != nil {
			return fail(err)
		}
		if i%3 != 0 {
			continue
		}
		addr, err := addrIn(ns, netip.MustParsePrefix("10.94.0.0/16"))
		if err != nil {
			return fail(err)
		}
		start := time.Now()
		for {
			rs, err := bn.RouteGet(addr.AsSlice())
			if err == nil && len(rs) > 0 && rs[0].Gw != nil && rs[0].Gw.Equal(clusterAddrs[0].AsSlice()) {
				break
			}
			if time.Since(start) > 10*time.Second {
				return fail(fmt.Errorf("host b has no route to %s 10 s after its connect", addr))
			}
			time.Sleep(time.Millisecond)
		}
		reach = append(reach, Sample{Wall: time.Since(start)})
	}
	res.Reach = summarize(reach)
	r.logf("  connects and reach done")
	if err := r.clusterDataPath(w, &res, newMember); err != nil {
		return fail(err)
	}
	r.logf("  connect: local %s, cluster %s; reach median %s; vxlan %.2f Gbps (by hand %.2f), RTT %s (by hand %s)",
		roundDur(res.Local.Median), roundDur(res.Cluster.Median), roundDur(res.Reach.Median),
		medianFloat(slices.Clone(res.VXLAN.Gbps)), medianFloat(slices.Clone(res.Hand.Gbps)), roundDur(res.VXLAN.RTT.Median), roundDur(res.Hand.RTT.Median))
	return res
}

// clusterDataPath connects a member on each host to the vxlan network,
// builds the same by hand (vxlan device, neighbour, FDB and route on each
// host; routed members) beside it, and measures both, alternating.
func (r *runner) clusterDataPath(w *clusterWorld, res *ClusterResult, newMember func(string) (string, error)) error {
	va, err := newMember("clb-va")
	if err != nil {
		return err
	}
	vb, err := newMember("clb-vb")
	if err != nil {
		return err
	}
	if _, err := w.nsnet(0, "net", "connect", "vx", va); err != nil {
		return err
	}
	if _, err := w.nsnet(1, "net", "connect", "vx", vb); err != nil {
		return err
	}
	vbAddr, err := addrIn(vb, netip.MustParsePrefix("10.93.0.0/16"))
	if err != nil {
		return err
	}
	ha, err := newMember("clb-ha")
	if err != nil {
		return err
	}
	hb, err := newMember("clb-hb")
	if err != nil {
		return err
	}
	hbAddr, err := r.handVXLAN(w, ha, hb)
	if err != nil {
		return fmt.Errorf("vxlan by hand: %w", err)
	}
	// Wait for the keepers' routes (the second block's claim).
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, _, err := roundTrips(va, vb, netip.AddrPortFrom(vbAddr, 7003), 1); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("vxlan: %s cannot reach %s", va, vbAddr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	res.VXLAN.Case, res.VXLAN.Impl, res.Hand.Case, res.Hand.Impl = "vxlan", "nsnet", "vxlan", "hand"
	for rep := range max(r.cfg.DataRepeats, 1) {
		order := []struct {
			client, server string
			addr           netip.Addr
			out            *DataPathResult
		}{{va, vb, vbAddr, &res.VXLAN}, {ha, hb, hbAddr, &res.Hand}}
		if rep%2 == 1 {
			slices.Reverse(order)
		}
		for _, o := range order {
			gbps, err := r.iperf(o.client, o.server, o.addr, r.cfg.DataSeconds)
			if err != nil {
				return fmt.Errorf("vxlan %s, %s to %s: %w", o.out.Impl, o.client, o.addr, err)
			}
			o.out.Gbps = append(o.out.Gbps, gbps)
			rtts, _, err := roundTrips(o.client, o.server, netip.AddrPortFrom(o.addr, 7002), r.cfg.RRCount+rrWarmup)
			if err != nil {
				return err
			}
			o.out.rtts = append(o.out.rtts, rtts[rrWarmup:]...)
		}
	}
	res.VXLAN.RTT, res.Hand.RTT = summarizeDurations(res.VXLAN.rtts), summarizeDurations(res.Hand.rtts)
	return nil
}

// handVXLAN builds, by hand over netlink, what the vxlan backend builds:
// a vxlan device per host (VNI 99, learning off, MTU 1450) with an
// address, the other's neighbour and FDB entries and a route to its
// member's /24 through it; a routed member on each host (/32, default via
// the link-local gateway). It returns b's member's address.
func (r *runner) handVXLAN(w *clusterWorld, a, b string) (netip.Addr, error) {
	type side struct {
		h      *netlink.Handle
		member string
		addr   netip.Addr // the member's
		inner  netip.Addr // the device's
		mac    net.HardwareAddr
		outer  netip.Addr
		vx     netlink.Link
	}
	sides := []*side{
		{member: a, addr: netip.MustParseAddr("10.92.0.2"), inner: netip.MustParseAddr("10.92.0.0"), outer: clusterAddrs[0]},
		{member: b, addr: netip.MustParseAddr("10.92.1.2"), inner: netip.MustParseAddr("10.92.1.0"), outer: clusterAddrs[1]},
	}
	for i, s := range sides {
		h, err := nlHandle(clusterHosts[i])
		if err != nil {
			return netip.Addr{}, err
		}
		defer h.Close()
		s.h = h
		eth, err := h.LinkByName("eth0")
		if err != nil {
			return netip.Addr{}, err
		}
		vx := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "hvx", MTU: 1450, Flags: net.FlagUp}, VxlanId: 99,
			VtepDevIndex: eth.Attrs().Index, SrcAddr: s.outer.AsSlice(), Port: 4789, Learning: false}
		if err := h.LinkAdd(vx); err != nil {
			return netip.Addr{}, err
		}
		if s.vx, err = h.LinkByName("hvx"); err != nil {
			return netip.Addr{}, err
		}
		if err := h.LinkSetUp(s.vx); err != nil {
			return netip.Addr{}, err
		}
		s.mac = s.vx.Attrs().HardwareAddr
		if err := h.AddrAdd(s.vx, &netlink.Addr{IPNet: ipNet(s.inner, 32)}); err != nil {
			return netip.Addr{}, err
		}
		// The member: article 003's steps, with a gateway of its own
		// (169.254.1.1 is nsnet's on this host, and nsnet's ARP table
		// answers for it on nsnet's host ends only), MTU as nsnet's.
		host := w.hosts[i]
		ip, gw, ma := r.bin.IP, "169.254.3.1", s.addr.String()+"/32"
		cmds := []command{
			cmd(r.bin.Sysctl, "-q", "-w", "net.ipv4.ip_forward=1"),
			cmd(ip, "link", "add", "hm0", "mtu", "1450", "type", "veth", "peer", "name", "eth0", "netns", s.member),
			// The gateway on the host end itself: proxy ARP would answer
			// only with a route to it elsewhere, and these hosts have no
			// default route.
			cmd(ip, "addr", "add", gw+"/32", "dev", "hm0"),
			cmd(ip, "link", "set", "hm0", "up"),
			cmd(ip, "route", "add", ma, "dev", "hm0"),
			cmd(ip, "-n", s.member, "link", "set", "eth0", "mtu", "1450"),
			cmd(ip, "-n", s.member, "addr", "add", ma, "dev", "eth0"),
			cmd(ip, "-n", s.member, "link", "set", "eth0", "up"),
			cmd(ip, "-n", s.member, "route", "add", gw, "dev", "eth0", "scope", "link"),
			cmd(ip, "-n", s.member, "route", "add", "default", "via", gw, "dev", "eth0"),
		}
		if _, err := host.runAll(cmds...); err != nil {
			return netip.Addr{}, err
		}
	}
	for i, s := range sides {
		o := sides[1-i]
		idx := s.vx.Attrs().Index
		if err := s.h.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_INET, State: netlink.NUD_PERMANENT, IP: o.inner.AsSlice(), HardwareAddr: o.mac}); err != nil {
			return netip.Addr{}, err
		}
		if err := s.h.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, State: netlink.NUD_PERMANENT, IP: o.outer.AsSlice(), HardwareAddr: o.mac}); err != nil {
			return netip.Addr{}, err
		}
		dst := netip.PrefixFrom(o.inner, 24)
		if err := s.h.RouteAdd(&netlink.Route{Dst: ipNet(dst.Addr(), 24), Gw: o.inner.AsSlice(), LinkIndex: idx, Flags: int(netlink.FLAG_ONLINK)}); err != nil {
			return netip.Addr{}, err
		}
	}
	return sides[1].addr, nil
}

func writeCluster(b *strings.Builder, res *Results) {
	if res.Cluster == nil {
		return
	}
	c := res.Cluster
	fmt.Fprintf(b, "## 9. Cluster networks\n\n")
	fmt.Fprintf(b, "Issue 14: two simulated hosts joined to a one-member etcd on one segment. *Connect* is `nsnet net connect` on host A, alternating between a routed network of A alone and a cluster network (host-gw, /26 blocks) of the same driver; *reach* is from a connect on A returning to host B having the route to the new member, for connects that each claim a new (/30) block; the vxlan data path is iperf3 and TCP round trips between members on A and B over the vxlan backend, and over the same topology built by hand (vxlan devices, neighbour, FDB and routes, routed members, MTU 1450), alternating. Targets: cluster connect within ×1.5 of local; reach under 1 s; vxlan within 5%% of by hand.\n\n")
	if c.Err != "" {
		fmt.Fprintf(b, "Failed: %s\n\n", mdEscape(c.Err))
		return
	}
	ratio := func(a, b time.Duration) string {
		if b <= 0 {
			return "–"
		}
		return fmt.Sprintf("×%.2f", float64(a)/float64(b))
	}
	fmt.Fprintf(b, "| measure | median | p95 | vs local |\n|---|---:|---:|---:|\n")
	fmt.Fprintf(b, "| connect, local routed network | %s | %s | |\n", fmtDur(c.Local.Median), fmtDur(c.Local.P95))
	fmt.Fprintf(b, "| connect, cluster network | %s | %s | %s |\n", fmtDur(c.Cluster.Median), fmtDur(c.Cluster.P95), ratio(c.Cluster.Median, c.Local.Median))
	fmt.Fprintf(b, "| connect on A → route on B (new block) | %s | %s | |\n\n", fmtDur(c.Reach.Median), fmtDur(c.Reach.P95))
	g, hg := medianFloat(slices.Clone(c.VXLAN.Gbps)), medianFloat(slices.Clone(c.Hand.Gbps))
	rel := func(a, b float64) string {
		if b == 0 {
			return "–"
		}
		return fmt.Sprintf("×%.3f", a/b)
	}
	fmt.Fprintf(b, "| vxlan data path | throughput | RTT median | RTT p95 |\n|---|---:|---:|---:|\n")
	fmt.Fprintf(b, "| by hand | %.2f Gbps | %s | %s |\n", hg, fmtDur(c.Hand.RTT.Median), fmtDur(c.Hand.RTT.P95))
	fmt.Fprintf(b, "| nsnet (vxlan backend) | %.2f Gbps (%s) | %s (%s) | %s |\n\n", g, rel(g, hg), fmtDur(c.VXLAN.RTT.Median), ratio(c.VXLAN.RTT.Median, c.Hand.RTT.Median), fmtDur(c.VXLAN.RTT.P95))
}
