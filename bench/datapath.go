package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/netns"
)

// roundTrips opens a TCP listener at addr inside serverNS, connects from
// clientNS and makes n one-byte request/response round trips, timing each.
// It returns the times and the client address the server saw.
func roundTrips(clientNS, serverNS string, addr netip.AddrPort, n int) ([]time.Duration, netip.Addr, error) {
	return roundTripsVia(clientNS, serverNS, addr, addr, n)
}

// roundTripsVia is roundTrips with the client dialing addr and the server
// listening on listen, for paths that rewrite the destination.
func roundTripsVia(clientNS, serverNS string, addr, listen netip.AddrPort, n int) ([]time.Duration, netip.Addr, error) {
	srv, err := enterThread(serverNS)
	if err != nil {
		return nil, netip.Addr{}, err
	}
	defer srv.stop()
	cli, err := enterThread(clientNS)
	if err != nil {
		return nil, netip.Addr{}, err
	}
	defer cli.stop()

	var ln *net.TCPListener
	srv.do(func() {
		var l net.Listener
		if l, err = net.Listen("tcp", listen.String()); err == nil {
			ln = l.(*net.TCPListener)
		}
	})
	if err != nil {
		return nil, netip.Addr{}, fmt.Errorf("listen on %s in %s: %w", listen, serverNS, err)
	}
	defer ln.Close()
	deadline := time.Now().Add(60 * time.Second)
	ln.SetDeadline(deadline)
	type accepted struct {
		peer netip.Addr
		err  error
	}
	acc := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			acc <- accepted{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(deadline)
		acc <- accepted{peer: c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()}
		buf := make([]byte, 1)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()

	var c net.Conn
	cli.do(func() { c, err = net.DialTimeout("tcp", addr.String(), 5*time.Second) })
	if err != nil {
		return nil, netip.Addr{}, fmt.Errorf("connect from %s to %s: %w", clientNS, addr, err)
	}
	defer c.Close()
	c.SetDeadline(deadline)
	a := <-acc
	if a.err != nil {
		return nil, netip.Addr{}, fmt.Errorf("accept: %w", a.err)
	}
	rtts := make([]time.Duration, 0, n)
	buf := []byte{'x'}
	for range n {
		t0 := time.Now()
		if _, err := c.Write(buf); err != nil {
			return rtts, a.peer, fmt.Errorf("round trip: %w", err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return rtts, a.peer, fmt.Errorf("round trip: %w", err)
		}
		rtts = append(rtts, time.Since(t0))
	}
	return rtts, a.peer, nil
}

// iperf runs an iperf3 server in serverNS and a client in clientNS for the
// given seconds and returns the received throughput in Gbit/s.
func (r *runner) iperf(clientNS, serverNS string, addr netip.Addr, seconds int) (float64, error) {
	srv, err := enterThread(serverNS)
	if err != nil {
		return 0, err
	}
	defer srv.stop()
	cli, err := enterThread(clientNS)
	if err != nil {
		return 0, err
	}
	defer cli.stop()
	server, err := srv.start(cmd(r.bin.IPerf3, "-s", "-B", addr.String(), "-p", "5201"))
	if err != nil {
		return 0, err
	}
	var out []byte
	// The server needs a moment to listen; the client is retried a bounded
	// number of times while the connection is refused.
	for attempt := 0; ; attempt++ {
		out, _, err = cli.run(cmd(r.bin.IPerf3, "-c", addr.String(), "-p", "5201", "-t", itoa(seconds), "-J"))
		refused := strings.Contains(string(out), "unable to connect") || (err != nil && strings.Contains(err.Error(), "unable to connect"))
		if !refused || attempt == 80 {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	// The client's report carries the server's numbers too; the server
	// (this program's own child) is stopped by its pid.
	server.stop()
	if err != nil {
		return 0, fmt.Errorf("iperf3 client: %w", err)
	}
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return 0, fmt.Errorf("iperf3 output: %w", err)
	}
	if res.Error != "" || res.End.SumReceived.BitsPerSecond <= 0 {
		return 0, fmt.Errorf("iperf3 measured nothing: %s", res.Error)
	}
	return res.End.SumReceived.BitsPerSecond / 1e9, nil
}

func itoa(i int) string { return fmt.Sprint(i) }

// DataPathResult is one topology built one way.
type DataPathResult struct {
	Case string `json:"case"`
	Impl string `json:"impl"`
	// Gbps are the iperf3 runs' received throughputs.
	Gbps []float64 `json:"gbps,omitempty"`
	// RTT summarizes every request/response round trip of every run.
	RTT Summary `json:"rtt"`
	// Peer is the source address the server saw.
	Peer string `json:"peer,omitempty"`
	Err  string `json:"error,omitempty"`

	rtts []time.Duration
}

// dpCase is one data-path topology, and how to build it by hand and with
// nsnet. A builder gets a topology whose host has an uplink to the outside
// and two fresh namespaces, a (the client) and b.
type dpCase struct {
	key, label, path string
	// subnet holds the members' addresses.
	subnet netip.Prefix
	// nat says the outside must see the host's uplink address rather than
	// the client's own; routeBack that the outside routes the subnet back
	// via the host instead.
	nat, routeBack bool
	hand, nsnet    func(r *runner, t *dpTopo) error
}

var dpCases = []dpCase{
	{key: "veth", label: "veth pair", path: "member ↔ member", subnet: pairSubnet, hand: handPair, nsnet: nsnetPair},
	{key: "bridge", label: "bridge network", path: "member ↔ member", subnet: benchSubnet, hand: handBridgeNet, nsnet: nsnetBridgeNet},
	{key: "bridge-nat", label: "bridge network with NAT", path: "member → outside", subnet: benchSubnet, nat: true, hand: handBridgeNet, nsnet: nsnetBridgeNet},
	{key: "routed", label: "routed network (no NAT)", path: "member → outside", subnet: routedSubnet, routeBack: true, hand: handRouted, nsnet: nsnetRouted},
}

var dpImpls = []struct{ key, label string }{{"hand", "by hand (ip/nft)"}, {"nsnet", "nsnet"}}

// dpTopo is a built topology: where the client and the server run.
type dpTopo struct {
	h              *host
	a, b           string
	client, server string
	addr           netip.Addr
}

func (t *dpTopo) close() {
	netns.Delete(t.a)
	netns.Delete(t.b)
	t.h.close()
}

// buildTopo builds one case one way in a fresh host namespace.
func (r *runner) buildTopo(c dpCase, impl string) (*dpTopo, error) {
	h, err := newHost("dp-"+impl+"-"+c.key, r.bin, r.stateRoot)
	if err != nil {
		return nil, err
	}
	t := &dpTopo{h: h, a: h.name + "-a", b: h.name + "-b"}
	err = func() error {
		for _, ns := range []string{t.a, t.b} {
			if err := createNetns(ns, true); err != nil {
				return err
			}
		}
		var back []netip.Prefix
		if c.routeBack {
			back = append(back, c.subnet)
		}
		if err := h.addOutside(back...); err != nil {
			return err
		}
		build := c.hand
		if impl == "nsnet" {
			build = c.nsnet
		}
		if err := build(r, t); err != nil {
			return err
		}
		t.client = t.a
		if c.path == "member → outside" {
			t.server, t.addr = h.outside, outsideAddr
			return nil
		}
		t.server = t.b
		t.addr, err = addrIn(t.b, c.subnet)
		return err
	}()
	if err != nil {
		t.close()
		return nil, fmt.Errorf("%s %s: %w", impl, c.key, err)
	}
	return t, nil
}

// handPair is article 001: one veth pair straight between a and b.
func handPair(r *runner, t *dpTopo) error {
	ip := r.bin.IP
	pa, pb := netip.PrefixFrom(nthHost(pairSubnet, 0), pairSubnet.Bits()), netip.PrefixFrom(nthHost(pairSubnet, 1), pairSubnet.Bits())
	_, err := t.h.runAll(
		cmd(ip, "link", "add", "veth0", "netns", t.a, "type", "veth", "peer", "name", "veth0", "netns", t.b),
		cmd(ip, "-n", t.a, "addr", "add", pa.String(), "dev", "veth0"),
		cmd(ip, "-n", t.b, "addr", "add", pb.String(), "dev", "veth0"),
		cmd(ip, "-n", t.a, "link", "set", "veth0", "up"),
		cmd(ip, "-n", t.b, "link", "set", "veth0", "up"),
	)
	return err
}

func nsnetPair(r *runner, t *dpTopo) error {
	_, _, err := t.h.run(nsnetTool{}.nsnet(t.h, "link", "create", t.a, t.b, "--subnet", pairSubnet.String()))
	return err
}

// handBridgeNet is article 000: a bridge with the gateway, masquerade, and
// both namespaces attached with the article's commands.
func handBridgeNet(r *runner, t *dpTopo) error {
	if err := t.h.handBridge("br0", benchSubnet, benchGateway); err != nil {
		return err
	}
	for i, ns := range []string{t.a, t.b} {
		m := newMember("x", i)
		if _, err := t.h.runAll(handAttachCmds(r.bin, "br0", m.HostIf, "eth0", ns,
			netip.PrefixFrom(m.Addr, benchSubnet.Bits()), benchGateway)...); err != nil {
			return err
		}
	}
	return nil
}

func nsnetBridgeNet(r *runner, t *dpTopo) error {
	n := nsnetTool{}
	if err := n.Setup(t.h); err != nil {
		return err
	}
	for i, ns := range []string{t.a, t.b} {
		if _, err := n.Attach(t.h, member{Index: i, NS: ns}); err != nil {
			return err
		}
	}
	return nil
}

// handRouted is article 003 (Calico's model): the member has a /32 and a
// default route via 169.254.1.1 on its veth; the host end has no address,
// answers ARP for the gateway by proxy, and routes the /32 to the veth.
func handRouted(r *runner, t *dpTopo) error {
	_, err := t.h.runAll(append([]command{cmd(r.bin.Sysctl, "-q", "-w", "net.ipv4.ip_forward=1")},
		handRoutedCmds(r.bin, "rt0", "eth0", t.a, nthHost(routedSubnet, 0))...)...)
	return err
}

// handRoutedCmds are article 003's steps for one member, forwarding aside:
// a veth whose peer is born in the member's namespace, proxy ARP without
// delay on the host end (the kernel otherwise waits up to 0.8 s before
// answering), the host end up with the /32 route to the member, then the
// member's /32, link, on-link route to the gateway and default route.
func handRoutedCmds(b *Binaries, hostIf, peer, ns string, addr netip.Addr) []command {
	ip, a := b.IP, addr.String()+"/32"
	gw := routedGateway.String()
	return []command{
		cmd(ip, "link", "add", hostIf, "type", "veth", "peer", "name", peer, "netns", ns),
		cmd(b.Sysctl, "-q", "-w", "net.ipv4.conf."+hostIf+".proxy_arp=1", "net.ipv4.neigh."+hostIf+".proxy_delay=0"),
		cmd(ip, "link", "set", hostIf, "up"),
		cmd(ip, "route", "add", a, "dev", hostIf),
		cmd(ip, "-n", ns, "addr", "add", a, "dev", peer),
		cmd(ip, "-n", ns, "link", "set", peer, "up"),
		cmd(ip, "-n", ns, "route", "add", gw, "dev", peer, "scope", "link"),
		cmd(ip, "-n", ns, "route", "add", "default", "via", gw, "dev", peer),
	}
}

func nsnetRouted(r *runner, t *dpTopo) error {
	n := nsnetTool{}
	if _, _, err := t.h.run(n.nsnet(t.h, "net", "create", "rt", "--driver", "routed", "--subnet", routedSubnet.String())); err != nil {
		return err
	}
	_, _, err := t.h.run(n.nsnet(t.h, "net", "connect", "rt", t.a))
	return err
}

// addrIn finds the namespace's address in subnet.
func addrIn(ns string, subnet netip.Prefix) (netip.Addr, error) {
	h, err := nlHandle(ns)
	if err != nil {
		return netip.Addr{}, err
	}
	defer h.Close()
	addrs, err := kernel.Retry(func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%s: list addresses: %w", ns, err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && subnet.Contains(ip.Unmap()) {
			return ip.Unmap(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("%s has no address in %s", ns, subnet)
}

// runDataPath builds every case both ways, then measures them in rounds,
// alternating which way goes first, so slow drifts of the machine hit both
// alike.
func (r *runner) runDataPath() []DataPathResult {
	type slot struct {
		c    dpCase
		impl string
		topo *dpTopo
		res  *DataPathResult
	}
	var slots []*slot
	var out []*DataPathResult
	for _, c := range dpCases {
		for _, im := range dpImpls {
			res := &DataPathResult{Case: c.key, Impl: im.key}
			out = append(out, res)
			t, err := r.buildTopo(c, im.key)
			if err != nil {
				res.Err = err.Error()
				r.logf("  data path %s %s: %v", c.key, im.key, err)
				continue
			}
			slots = append(slots, &slot{c: c, impl: im.key, topo: t, res: res})
		}
	}
	defer func() {
		for _, s := range slots {
			s.topo.close()
		}
	}()
	for rep := 0; rep < r.cfg.DataRepeats; rep++ {
		order := slices.Clone(slots)
		if rep%2 == 1 {
			slices.Reverse(order)
		}
		for _, s := range order {
			if s.res.Err != "" {
				continue
			}
			if err := r.measurePath(s.c, s.topo, s.res); err != nil {
				s.res.Err = err.Error()
				r.logf("  data path %s %s: %v", s.c.key, s.impl, err)
			}
		}
	}
	results := make([]DataPathResult, len(out))
	for i, res := range out {
		res.RTT = summarizeDurations(res.rtts)
		results[i] = *res
	}
	return results
}

func (r *runner) measurePath(c dpCase, t *dpTopo, res *DataPathResult) error {
	gbps, err := r.iperf(t.client, t.server, t.addr, r.cfg.DataSeconds)
	if err != nil {
		return err
	}
	res.Gbps = append(res.Gbps, gbps)
	rtts, peer, err := roundTrips(t.client, t.server, netip.AddrPortFrom(t.addr, 7002), r.cfg.RRCount+rrWarmup)
	if err != nil {
		return err
	}
	res.rtts = append(res.rtts, rtts[rrWarmup:]...)
	res.Peer = peer.String()
	if c.nat && peer != uplinkHost {
		return fmt.Errorf("the server saw %s, want the masqueraded %s", peer, uplinkHost)
	}
	if !c.nat && peer == uplinkHost {
		return fmt.Errorf("the server saw the masqueraded %s on a path without NAT", peer)
	}
	return nil
}

// rrWarmup round trips are made and dropped before timing.
const rrWarmup = 200

func summarizeDurations(d []time.Duration) Summary {
	s := make([]Sample, len(d))
	for i, x := range d {
		s[i].Wall = x
	}
	return summarize(s)
}
