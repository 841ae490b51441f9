package bench

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"

	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/vishvananda/netlink"
)

// routedKind is section 1b: article 003's routed network (Calico's model),
// no bridge and no NAT. The tools that take an address from the caller give
// members the ones host-local would, from the subnet's second on (it keeps
// the first for the CNI ptp plugin's gateway). The outside routes the
// subnet back via the host, as a peer of a routed host would.
var routedKind = attachKind{
	title: "routed attach/teardown", hostPrefix: "r", tools: routedTools,
	addr:       func(i int) netip.Addr { return nthHost(routedNet, i+1) },
	routesBack: []netip.Prefix{routedNet},
	checks:     []attachCheck{checkRoutedMembers, checkRoutedNoNAT},
}

// routedTools are the contenders for routed attach and teardown, nsnet
// first. Their keys are the ones section 1 uses for the same tool family,
// so -tools selects both sections alike. Netavark has no routed driver
// (1.4 has bridge and macvlan) and is not among them.
var routedTools = []toolInfo{
	{"nsnet", "nsnet", "`nsnet net connect rt NS` / `nsnet net disconnect rt NS`, one process each, on a network made beforehand with `nsnet net create rt --driver routed --subnet " + routedNet.String() + "`",
		func() Tool { return nsnetRoutedTool{} }},
	{"iproute2", "ip by hand", "article 003's 8 commands (`ip link add vhNNNN type veth peer name eth0 netns NS`, `sysctl -w net.ipv4.conf.vhNNNN.proxy_arp=1 net.ipv4.neigh.vhNNNN.proxy_delay=0`, `ip link set vhNNNN up`, `ip route add ADDR/32 dev vhNNNN`, then `ip -n NS addr add ADDR/32 dev eth0 / link set eth0 up / route add 169.254.1.1 dev eth0 scope link / route add default via 169.254.1.1 dev eth0`) / `ip link del vhNNNN`; forwarding is switched on beforehand",
		func() Tool { return handRoutedTool{} }},
	{"cni", "CNI ptp plugin", "`/usr/lib/cni/ptp` with host-local IPAM over " + routedNet.String() + " (default route) and ipMasq off, CNI_COMMAND=ADD/DEL, config on stdin, one process per call (plus its host-local child)",
		func() Tool { return ptpTool{} }},
	{"floor", "netlink floor", "`bench/cmd/floor attach-routed`: one Go process, only the netlink requests the topology needs plus the two sysctl writes to `/proc/sys`; `floor detach` deletes the host end; forwarding is switched on beforehand",
		func() Tool { return floorRoutedTool{} }},
}

// --- nsnet ---------------------------------------------------------------

type nsnetRoutedTool struct{}

func (nsnetRoutedTool) Key() string { return "nsnet" }

func (nsnetRoutedTool) Setup(h *host) error {
	_, _, err := h.run(nsnetTool{}.nsnet(h, "net", "create", "rt", "--driver", "routed", "--subnet", routedNet.String()))
	return err
}

func (nsnetRoutedTool) Attach(h *host, m member) (Sample, error) {
	_, s, err := h.run(nsnetTool{}.nsnet(h, "net", "connect", "rt", m.NS))
	return s, err
}

func (nsnetRoutedTool) Detach(h *host, m member) (Sample, error) {
	_, s, err := h.run(nsnetTool{}.nsnet(h, "net", "disconnect", "rt", m.NS))
	return s, err
}

// --- by hand ---------------------------------------------------------------

type handRoutedTool struct{}

func (handRoutedTool) Key() string { return "iproute2" }

// Setup switches forwarding on once, as the article does before any
// member: it is the host's, not a member's.
func (handRoutedTool) Setup(h *host) error { return enableForwarding(h) }

func (handRoutedTool) Attach(h *host, m member) (Sample, error) {
	return h.runAll(handRoutedCmds(h.bin, m.HostIf, "eth0", m.NS, m.Addr)...)
}

// Detach deletes the host end; the peer, and the /32 route on the host
// end, go with it.
func (handRoutedTool) Detach(h *host, m member) (Sample, error) {
	_, s, err := h.run(cmd(h.bin.IP, "link", "del", m.HostIf))
	return s, err
}

func enableForwarding(h *host) error {
	_, _, err := h.run(cmd(h.bin.Sysctl, "-q", "-w", "net.ipv4.ip_forward=1"))
	return err
}

// --- floor -----------------------------------------------------------------

type floorRoutedTool struct{}

func (floorRoutedTool) Key() string { return "floor" }

func (floorRoutedTool) Setup(h *host) error { return enableForwarding(h) }

func (floorRoutedTool) Attach(h *host, m member) (Sample, error) {
	_, s, err := h.run(cmd(h.bin.Floor, "attach-routed", m.path(), m.HostIf, "eth0",
		netip.PrefixFrom(m.Addr, 32).String(), routedGateway.String()))
	return s, err
}

func (floorRoutedTool) Detach(h *host, m member) (Sample, error) {
	_, s, err := h.run(cmd(h.bin.Floor, "detach", m.HostIf))
	return s, err
}

// --- CNI ptp -----------------------------------------------------------------

// ptpTool invokes the CNI ptp plugin, the reference plugins' routed model,
// as a runtime does for a one-plugin configuration. It cannot build the
// article's topology: the plugin adds IPAM's routes before its own on-link
// route to the gateway, so a link-local gateway such as 169.254.1.1 fails
// with "network is unreachable" at the default route. It runs with
// host-local's own gateway instead, the subnet's first address, which ptp
// puts as a /32 on every host end (so the host answers ARP for it itself,
// with no proxy); the member's address keeps the subnet's prefix length,
// with the on-link route to the subnet replaced by one via the gateway.
// Every packet still goes through the host, and nothing is masqueraded.
type ptpTool struct{}

func (ptpTool) Key() string { return "cni" }

// Setup does nothing: ptp switches forwarding on itself, in every ADD.
func (ptpTool) Setup(h *host) error { return nil }

func (ptpTool) conf(h *host) []byte {
	conf := map[string]any{
		"cniVersion": "1.0.0", "name": "bench-routed", "type": "ptp", "ipMasq": false,
		"ipam": map[string]any{
			"type":    "host-local",
			"ranges":  [][]map[string]string{{{"subnet": routedNet.String()}}},
			"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
			"dataDir": filepath.Join(h.dir, "cni-ipam"),
		},
	}
	b, _ := json.Marshal(conf)
	return b
}

func (t ptpTool) Attach(h *host, m member) (Sample, error) {
	out, s, err := h.run(cniCommand(h, m, "ADD", "ptp", t.conf(h)))
	if err != nil {
		return s, err
	}
	var res struct {
		IPs []struct{ Address string } `json:"ips"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.IPs) == 0 {
		return s, fmt.Errorf("cni ptp ADD for %s returned no address: %.200s", m.NS, out)
	}
	return s, nil
}

func (t ptpTool) Detach(h *host, m member) (Sample, error) {
	_, s, err := h.run(cniCommand(h, m, "DEL", "ptp", t.conf(h)))
	return s, err
}

// memberShape is what ptp makes of a member (see ptpTool).
func (ptpTool) memberShape() routedShape {
	return routedShape{bits: routedNet.Bits(), gateway: nthHost(routedNet, 0)}
}

// --- checks ----------------------------------------------------------------

// routedShape is what a member of a routed network looks like: the prefix
// length of its address and its default gateway.
type routedShape struct {
	bits    int
	gateway netip.Addr
}

// articleShape is article 003's member: a /32 behind 169.254.1.1.
var articleShape = routedShape{bits: 32, gateway: routedGateway}

// memberShaper is a routed tool whose members are not shaped as in the
// article (the CNI ptp plugin).
type memberShaper interface{ memberShape() routedShape }

func shapeOf(tool Tool) routedShape {
	if s, ok := tool.(memberShaper); ok {
		return s.memberShape()
	}
	return articleShape
}

// checkRoutedMembers verifies, through netlink, that every member has its
// address on a link that is up, a default route via the gateway, and no
// on-link route into the subnet but to the gateway itself: what makes the
// network routed is that every packet between members goes through the
// host. It reads routes and addresses only, not neighbours or firewall
// rules, which the tools are free to differ in.
func checkRoutedMembers(_ *host, tool Tool, members []member) (string, error) {
	shape := shapeOf(tool)
	for _, m := range members {
		if err := checkRoutedMember(m, shape); err != nil {
			return "", fmt.Errorf("%s: %w", m.NS, err)
		}
	}
	return fmt.Sprintf("%d members with a /%d, a default route via %s and no on-link route into the subnet", len(members), shape.bits, shape.gateway), nil
}

func checkRoutedMember(m member, shape routedShape) error {
	h, err := nlHandle(m.NS)
	if err != nil {
		return err
	}
	defer h.Close()
	addrs, err := kernel.Retry(func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	found := false
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || !routedNet.Contains(ip.Unmap()) {
			continue
		}
		if bits, _ := a.Mask.Size(); bits != shape.bits {
			return fmt.Errorf("%s is a /%d, want a /%d", ip.Unmap(), bits, shape.bits)
		}
		l, err := h.LinkByIndex(a.LinkIndex)
		if err != nil {
			return fmt.Errorf("link of %s: %w", ip.Unmap(), err)
		}
		if l.Attrs().Flags&net.FlagUp == 0 {
			return fmt.Errorf("%s is down", l.Attrs().Name)
		}
		found = true
	}
	if !found {
		return fmt.Errorf("no address in %s", routedNet)
	}
	routes, err := kernel.Retry(func() ([]netlink.Route, error) { return h.RouteList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	hasDefault := false
	for _, r := range routes {
		gw, hasGw := netip.AddrFromSlice(r.Gw)
		if r.Dst == nil || r.Dst.IP.IsUnspecified() {
			hasDefault = hasDefault || hasGw && gw.Unmap() == shape.gateway
			continue
		}
		if hasGw || len(r.MultiPath) > 0 {
			continue
		}
		dst, ok := netip.AddrFromSlice(r.Dst.IP)
		if !ok {
			continue
		}
		bits, _ := r.Dst.Mask.Size()
		p := netip.PrefixFrom(dst.Unmap(), bits)
		if p.Overlaps(routedNet) && p != netip.PrefixFrom(shape.gateway, 32) {
			return fmt.Errorf("on-link route to %s: members would reach each other past the host", p)
		}
	}
	if !hasDefault {
		return fmt.Errorf("no default route via %s", shape.gateway)
	}
	return nil
}

// checkRoutedNoNAT makes a TCP round trip from member 0 to the outside,
// which routes the subnet back via the host, and checks that the outside
// saw the member's own address: a routed network does not masquerade.
func checkRoutedNoNAT(h *host, _ Tool, members []member) (string, error) {
	m := members[0]
	own, err := addrIn(m.NS, routedNet)
	if err != nil {
		return "", err
	}
	_, peer, err := roundTrips(m.NS, h.outside, netip.AddrPortFrom(outsideAddr, 7001), 3)
	if err != nil {
		return "", fmt.Errorf("TCP from %s to the outside: %w", m.NS, err)
	}
	if peer != own {
		return "", fmt.Errorf("the outside saw %s, want the member's own %s (no NAT)", peer, own)
	}
	return "TCP to the outside from the member's own address", nil
}
