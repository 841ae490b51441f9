package engine

import (
	"crypto/rand"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/nsnet/nsnet/internal/crash"
	"github.com/nsnet/nsnet/internal/firewall"
	"github.com/nsnet/nsnet/internal/ipam"
	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/netns"
	"github.com/nsnet/nsnet/internal/store"
)

// Drivers: how members are wired to a network.
const (
	// DriverBridge is the default: a Linux bridge with a gateway on it.
	DriverBridge = "bridge"
	// DriverRouted gives each member a veth to the host and a /32 (/128)
	// route, with no bridge: pure L3, as Calico does.
	DriverRouted = "routed"
	// DriverMacvlan puts members straight on a parent interface's segment.
	DriverMacvlan = "macvlan"
)

// Link-local gateways of routed networks, answered by proxy ARP/NDP.
var (
	routedGateway4 = netip.MustParseAddr("169.254.1.1")
	routedGateway6 = netip.MustParseAddr("fe80::1")
)

// MaxBridgePorts is the most ports the kernel lets one bridge have: port
// numbers are 10 bits wide and port 0 is reserved. The kernel enforces it
// (EXFULL); nsnet only names it in the error.
const MaxBridgePorts = 1023

// NetworkSpec is what `net create` asks for.
type NetworkSpec struct {
	Name       string
	Driver     string
	Subnets    []netip.Prefix
	Gateways   []netip.Addr
	BridgeName string
	NoNAT      bool
	// NAT asks a routed network for masquerade, which it lacks by default.
	NAT      bool
	Internal bool
	MTU      int
	// Parent is the macvlan driver's parent interface.
	Parent string
	// NoHostFirewall keeps nsnet from adding accepts to other tables'
	// forward chains that drop.
	NoHostFirewall bool
	// NoIsolate lets members reach other networks' members directly.
	NoIsolate bool
	// DNS is nil for the driver's default: on, but for macvlan networks,
	// where the host has no address for a resolver.
	DNS          *bool
	DNSUpstreams []netip.Addr
}

// ownerNetwork is how the store marks a host interface name a network holds.
func ownerNetwork(name string) string { return "network\x00" + name }

func ownerAttachment(network, ns string) string { return "member\x00" + network + "\x00" + ns }

// CreateNetwork validates spec, builds it in the host namespace and records it.
func (m *Manager) CreateNetwork(spec NetworkSpec) (store.Network, error) {
	n, err := m.planNetwork(spec)
	if err != nil {
		return store.Network{}, fmt.Errorf("network %q: %w", spec.Name, err)
	}
	err = m.transact(func(tx *store.Tx) (store.Op, error) {
		op := store.Op{Kind: store.OpNetCreate, Network: n.Name, HostNetns: n.HostNetns, Bridge: n.Bridge, Subnets: n.Subnets}
		return op, m.checkNetworkFree(tx, n)
	}, func(tx *store.Tx, op store.Op) error {
		crash.Point("net-create/recorded")
		if err := m.buildNetwork(tx, &n); err != nil {
			return err
		}
		crash.Point("net-create/built")
		if err := tx.PutNetwork(n); err != nil {
			return err
		}
		for i, gw := range n.Gateways {
			if gatewayIn(n.Subnets[i], gw) {
				if err := tx.PutLease(n.Name, gw, gatewayOwner); err != nil {
					return err
				}
			}
		}
		if n.Bridge == "" {
			return nil
		}
		return tx.ReserveIfName(n.Bridge, ownerNetwork(n.Name))
	}, func(op store.Op) error { return m.unbuild(nil, op) })
	if err != nil {
		return store.Network{}, fmt.Errorf("network %q: %w", spec.Name, err)
	}
	return n, nil
}

// gatewayOwner holds a network's gateway addresses in its leases.
const gatewayOwner = "(gateway)"

// planNetwork checks everything about spec that does not need the store.
func (m *Manager) planNetwork(spec NetworkSpec) (store.Network, error) {
	if err := netns.ValidateName(spec.Name); err != nil {
		return store.Network{}, err
	}
	driver := spec.Driver
	if driver == "" {
		driver = DriverBridge
	}
	switch driver {
	case DriverBridge, DriverRouted, DriverMacvlan:
	default:
		return store.Network{}, fmt.Errorf("driver %q is not supported (supported: bridge, routed, macvlan)", driver)
	}
	if len(spec.Subnets) == 0 {
		return store.Network{}, errors.New("a --subnet is required")
	}
	n := store.Network{
		Name: spec.Name, Driver: driver, NAT: !spec.NoNAT && !spec.Internal, Internal: spec.Internal,
		MTU: spec.MTU, HostNetns: m.cfg.HostNetns, Created: time.Now().UTC(), NoHostFirewall: spec.NoHostFirewall,
		NoIsolate: spec.NoIsolate,
	}
	switch driver {
	case DriverRouted:
		n.NAT = spec.NAT && !spec.NoNAT
		if spec.Internal {
			return n, errors.New("--internal is for bridge networks")
		}
		if len(spec.Gateways) > 0 {
			return n, errors.New("a routed network's gateway is link-local (169.254.1.1, fe80::1); --gateway does not apply")
		}
	case DriverMacvlan:
		n.NAT, n.Parent = false, spec.Parent
		if spec.Parent == "" {
			return n, errors.New("the macvlan driver needs --parent")
		}
		if err := kernel.ValidateIfName(spec.Parent); err != nil {
			return n, fmt.Errorf("parent: %w", err)
		}
		if spec.Internal || spec.NAT {
			return n, errors.New("--internal and --nat are for bridge and routed networks")
		}
	}
	n.DNS = driver != DriverMacvlan
	if spec.DNS != nil {
		n.DNS = *spec.DNS
	}
	if n.DNS && driver == DriverMacvlan {
		return n, errors.New("DNS needs an address for the resolver, and a macvlan network gives the host none; use --dns=false")
	}
	if len(spec.DNSUpstreams) > 0 && !n.DNS {
		return n, errors.New("--dns-upstream needs DNS on")
	}
	n.DNSUpstreams = spec.DNSUpstreams
	if driver != DriverMacvlan && spec.Parent != "" {
		return n, errors.New("--parent is for the macvlan driver")
	}
	if driver != DriverBridge && spec.BridgeName != "" {
		return n, errors.New("--bridge-name is for the bridge driver")
	}
	if spec.MTU != 0 && (spec.MTU < 68 || spec.MTU > 65535) {
		return n, fmt.Errorf("MTU %d is outside 68..65535", spec.MTU)
	}
	var seen4, seen6 bool
	for _, p := range spec.Subnets {
		if p != p.Masked() {
			return n, fmt.Errorf("subnet %s has host bits set; did you mean %s?", p, p.Masked())
		}
		if min := map[bool]int{true: 8, false: 48}[p.Addr().Is4()]; p.Bits() < min {
			return n, fmt.Errorf("subnet %s is wider than /%d; it would take over the host's routing", p, min)
		}
		if p.Addr().Is4() && seen4 || p.Addr().Is6() && seen6 {
			return n, fmt.Errorf("subnet %s: at most one IPv4 and one IPv6 subnet", p)
		}
		seen4, seen6 = seen4 || p.Addr().Is4(), seen6 || p.Addr().Is6()
		if p.Bits() > ipam.MinBridgeBits(p) {
			return n, fmt.Errorf("subnet %s is too small for a bridge network (the longest prefix is /%d)", p, ipam.MinBridgeBits(p))
		}
		n.Subnets = append(n.Subnets, p)
	}
	for _, g := range spec.Gateways {
		if !containsFamily(n.Subnets, g) {
			return n, fmt.Errorf("gateway %s: no subnet of its family", g)
		}
	}
	for _, p := range n.Subnets {
		var gw netip.Addr
		switch driver {
		case DriverBridge:
			gw = ipam.FirstUsable(p)
		case DriverRouted:
			gw = routedGateway4
			if p.Addr().Is6() {
				gw = routedGateway6
			}
		}
		for _, g := range spec.Gateways {
			if g.Is4() == p.Addr().Is4() {
				if err := ipam.CheckHost(p, g); err != nil {
					return n, fmt.Errorf("gateway %s: %w", g, err)
				}
				gw = g
			}
		}
		// A macvlan network may have no gateway: members then have no
		// default route. The slot keeps Gateways parallel to Subnets.
		n.Gateways = append(n.Gateways, gw)
	}
	if driver == DriverBridge {
		n.Bridge = spec.BridgeName
		if n.Bridge == "" {
			n.Bridge = bridgeName(n.Name)
		}
		if err := kernel.ValidateIfName(n.Bridge); err != nil {
			return n, fmt.Errorf("bridge name: %w", err)
		}
	}
	return n, nil
}

// gatewayIn reports whether gw is a real address of subnet p that members
// must not be given.
func gatewayIn(p netip.Prefix, gw netip.Addr) bool { return gw.IsValid() && p.Contains(gw) }

func containsFamily(subnets []netip.Prefix, a netip.Addr) bool {
	for _, p := range subnets {
		if p.Addr().Is4() == a.Is4() {
			return true
		}
	}
	return false
}

// bridgeName derives a readable bridge name that fits in 15 characters.
func bridgeName(network string) string {
	if n := "nsbr-" + network; len(n) <= 15 {
		return n
	}
	h := fnv.New32a()
	h.Write([]byte(network))
	return fmt.Sprintf("nsbr-%08x", h.Sum32())
}

// checkNetworkFree checks n against the store and the host's kernel state.
func (m *Manager) checkNetworkFree(tx *store.Tx, n store.Network) error {
	if _, ok, err := tx.Network(n.Name); err != nil {
		return err
	} else if ok {
		return errors.New("a network with this name already exists")
	}
	nets, err := tx.Networks()
	if err != nil {
		return err
	}
	for _, other := range nets {
		if other.HostNetns != n.HostNetns {
			continue
		}
		for _, p := range n.Subnets {
			for _, q := range other.Subnets {
				if p.Overlaps(q) {
					return fmt.Errorf("subnet %s overlaps network %q (%s)", p, other.Name, q)
				}
			}
		}
	}
	h, err := m.host(n.HostNetns)
	if err != nil {
		return err
	}
	if n.Bridge != "" {
		if owner, ok := tx.IfNameOwner(n.Bridge); ok {
			return fmt.Errorf("bridge name %s is already used by %s", n.Bridge, describeOwner(owner))
		}
		if l, err := h.LinkByName(n.Bridge); err != nil {
			return err
		} else if l != nil {
			return fmt.Errorf("bridge name %s is held by a device nsnet did not create (a %s)", n.Bridge, l.Type())
		}
	}
	if n.Parent != "" {
		if err := checkParent(tx, h, n.Parent); err != nil {
			return err
		}
	}
	for _, p := range n.Subnets {
		routes, err := kernel.Retry(func() ([]netlink.Route, error) {
			return h.NL.RouteList(nil, kernel.Family(p.Addr()))
		})
		if err != nil {
			return fmt.Errorf("read host routes: %w", err)
		}
		for _, r := range routes {
			dst, ok := kernel.ToPrefix(r.Dst)
			if !ok || dst.Bits() == 0 || dst.Addr().IsLinkLocalUnicast() || dst.Addr().IsMulticast() {
				continue
			}
			if dst.Masked().Overlaps(p) {
				return fmt.Errorf("subnet %s overlaps the host route to %s", p, dst.Masked())
			}
		}
	}
	return nil
}

func describeOwner(owner string) string {
	var kind, a, b string
	parts := splitNUL(owner)
	if len(parts) > 0 {
		kind = parts[0]
	}
	if len(parts) > 1 {
		a = parts[1]
	}
	if len(parts) > 2 {
		b = parts[2]
	}
	switch kind {
	case "network":
		return fmt.Sprintf("network %q", a)
	case "member":
		return fmt.Sprintf("the member %q of network %q", b, a)
	case "tap":
		return fmt.Sprintf("TAP device %s", a)
	}
	return owner
}

func splitNUL(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// buildNetwork makes the host match a network; every step may be repeated.
// It records in n which host forward chains it opened.
func (m *Manager) buildNetwork(tx *store.Tx, n *store.Network) error {
	h, err := m.host(n.HostNetns)
	if err != nil {
		return err
	}
	if n.HostIno, err = h.Fd().Inode(); err != nil {
		return fmt.Errorf("host namespace %s: %w", describeHost(n.HostNetns), err)
	}
	switch n.Driver {
	case DriverBridge:
		if err := m.buildBridge(h, *n); err != nil {
			return err
		}
	case DriverRouted:
		if err := enableForwarding(h, *n); err != nil {
			return err
		}
	case DriverMacvlan:
		return nil // members hang off the parent; the host needs nothing
	}
	nets, err := hostNetworks(tx, n.HostNetns, n.Name)
	if err != nil {
		return err
	}
	if err := syncHost(h, append(nets, *n), tx.HostHasPorts(n.HostNetns)); err != nil {
		return err
	}
	fw, err := firewall.New(int(h.Fd()))
	if err != nil {
		return err
	}
	rules := firewallNetwork(*n)
	if n.Internal || n.NoHostFirewall {
		return nil
	}
	refs, err := fw.OpenForward(rules)
	if err != nil {
		return err
	}
	for _, r := range refs {
		n.ForwardAccepts = append(n.ForwardAccepts, store.ChainRef{Family: firewall.FamilyName(r.Family), Table: r.Table, Chain: r.Chain})
	}
	return nil
}

func enableForwarding(h *kernel.NS, n store.Network) error {
	var s []kernel.Sysctl
	for _, p := range n.Subnets {
		if p.Addr().Is4() {
			s = append(s, kernel.Sysctl{Key: "net/ipv4/ip_forward", Value: "1"})
		} else {
			s = append(s, kernel.Sysctl{Key: "net/ipv6/conf/all/forwarding", Value: "1"})
		}
	}
	if err := h.SetSysctls(s...); err != nil {
		return fmt.Errorf("enable forwarding: %w", err)
	}
	return nil
}

// buildBridge makes the bridge and its gateway addresses.
func (m *Manager) buildBridge(h *kernel.NS, n store.Network) error {
	l, err := h.LinkByName(n.Bridge)
	if err != nil {
		return err
	}
	if l == nil {
		// A fixed MAC keeps the bridge's address from following its
		// lowest-numbered port, which would stale members' neighbour caches.
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.Bridge, MTU: n.MTU, HardwareAddr: randomMAC(), TxQLen: -1}}
		if err := h.NL.LinkAdd(br); err != nil {
			return fmt.Errorf("create bridge %s: %w", n.Bridge, err)
		}
		l = br
	} else if l.Type() != "bridge" {
		return fmt.Errorf("device %s is a %s, not a bridge", n.Bridge, l.Type())
	}
	crash.Point("net-create/bridge-created")
	if err := h.NL.LinkSetAlias(l, "nsnet network "+n.Name); err != nil {
		return fmt.Errorf("label bridge %s: %w", n.Bridge, err)
	}
	// A bridge has no carrier until its first member comes up; IPv6 then
	// restarts on it, and while its link-local address sits in DAD the
	// first forwarded IPv6 connection is lost (seen: ~2 s). nsnet already
	// guarantees its addresses are unique, and the link-local one derives
	// from a random MAC.
	if err := h.SetSysctls(kernel.Sysctl{Key: "net/ipv6/conf/" + n.Bridge + "/accept_dad", Value: "0"}); err != nil {
		return fmt.Errorf("configure bridge %s: %w", n.Bridge, err)
	}
	for i, gw := range n.Gateways {
		if err := h.NL.AddrReplace(l, kernel.AddrFor(gw, n.Subnets[i].Bits())); err != nil {
			return fmt.Errorf("gateway %s on %s: %w", gw, n.Bridge, err)
		}
	}
	if err := h.NL.LinkSetUp(l); err != nil {
		return fmt.Errorf("bring up %s: %w", n.Bridge, err)
	}
	if n.Internal {
		return nil
	}
	// The host reaching a published port on 127.0.0.1 sends through the
	// bridge with a loopback source; the input rules keep members from
	// using the same door to the host's loopback services.
	if err := h.SetSysctls(kernel.Sysctl{Key: "net/ipv4/conf/" + n.Bridge + "/route_localnet", Value: "1"}); err != nil {
		return err
	}
	return enableForwarding(h, n)
}

func randomMAC() net.HardwareAddr {
	mac := make(net.HardwareAddr, 6)
	rand.Read(mac)
	mac[0] = mac[0]&0xfe | 0x02 // unicast, locally administered
	return mac
}

// RemoveNetwork deletes a network; with force it first disconnects members.
func (m *Manager) RemoveNetwork(name string, force bool) error {
	var n store.Network
	var members []store.Attachment
	var taps []string
	err := m.st.View(func(tx *store.Tx) error {
		var ok bool
		var err error
		if n, ok, err = tx.Network(name); err != nil {
			return err
		} else if !ok {
			return errors.New("no such network")
		}
		if members, err = tx.Members(name); err != nil {
			return err
		}
		all, err := tx.Taps()
		for _, d := range all {
			if d.Network == name {
				taps = append(taps, d.Name)
			}
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("network %q: %w", name, err)
	}
	if len(members)+len(taps) > 0 && !force {
		return fmt.Errorf("network %q has %d member(s); disconnect them or use --force", name, len(members)+len(taps))
	}
	for _, a := range members {
		if err := m.Disconnect(a.Network, a.Namespace); err != nil {
			return err
		}
	}
	for _, d := range taps {
		if err := m.RemoveTap(d); err != nil {
			return err
		}
	}
	err = m.transact(func(*store.Tx) (store.Op, error) {
		return store.Op{Kind: store.OpNetRemove, Network: name, HostNetns: n.HostNetns, Bridge: n.Bridge, Subnets: n.Subnets}, nil
	}, func(tx *store.Tx, op store.Op) error {
		crash.Point("net-rm/recorded")
		if err := m.unbuild(tx, op); err != nil {
			return err
		}
		return forgetNetwork(tx, op)
	}, nil)
	if err != nil {
		return fmt.Errorf("network %q: %w", name, err)
	}
	return nil
}

// unbuild removes a network's rules and bridge from its host: the host is
// rebuilt for its other networks, read from tx or, when tx is nil, from
// the store. The bridge's name was checked free when the network was made
// and is reserved in the store since, so a bridge by that name is the
// network's own.
func (m *Manager) unbuild(tx *store.Tx, op store.Op) error {
	h, err := m.liveHost(op.HostNetns)
	if err != nil || h == nil {
		return err
	}
	if tx != nil {
		nets, err := hostNetworks(tx, op.HostNetns, op.Network)
		if err != nil {
			return err
		}
		err = syncHost(h, nets, tx.HostHasPorts(op.HostNetns))
	} else {
		err = m.resyncHost(op.HostNetns, op.Network)
	}
	if err != nil {
		return err
	}
	fw, err := firewall.New(int(h.Fd()))
	if err != nil {
		return err
	}
	if err := fw.CloseForward(op.Network); err != nil {
		return err
	}
	crash.Point("net-rm/rules-removed")
	if op.Bridge == "" {
		return nil
	}
	return deleteLink(h, op.Bridge, "bridge", "the host")
}

// forgetNetwork drops a network's record, leases and bridge name.
func forgetNetwork(tx *store.Tx, op store.Op) error {
	if owner, ok := tx.IfNameOwner(op.Bridge); ok && op.Bridge != "" && owner == ownerNetwork(op.Network) {
		if err := tx.ReleaseIfName(op.Bridge); err != nil {
			return err
		}
	}
	return tx.DeleteNetwork(op.Network)
}

// NetworkInfo is a network with its members.
type NetworkInfo struct {
	store.Network
	Members []store.Attachment `json:"members"`
}

// Networks lists every network.
func (m *Manager) Networks() ([]NetworkInfo, error) {
	var out []NetworkInfo
	err := m.st.View(func(tx *store.Tx) error {
		nets, err := tx.Networks()
		if err != nil {
			return err
		}
		for _, n := range nets {
			members, err := tx.Members(n.Name)
			if err != nil {
				return err
			}
			out = append(out, NetworkInfo{Network: n, Members: members})
		}
		return nil
	})
	return out, err
}

// Network describes one network.
func (m *Manager) Network(name string) (NetworkInfo, error) {
	var out NetworkInfo
	err := m.st.View(func(tx *store.Tx) error {
		n, ok, err := tx.Network(name)
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("no such network")
		}
		out.Network = n
		out.Members, err = tx.Members(name)
		return err
	})
	if err != nil {
		return out, fmt.Errorf("network %q: %w", name, err)
	}
	return out, nil
}
