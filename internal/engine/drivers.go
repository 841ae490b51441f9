package engine

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nsnet/nsnet/internal/crash"
	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/store"
)

// checkParent refuses a macvlan parent that is missing, is a bridge port
// (its frames belong to the bridge), or is a device nsnet made.
func checkParent(tx *store.Tx, h *kernel.NS, name string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return err
	}
	if l == nil {
		return fmt.Errorf("parent %s does not exist in the host namespace", name)
	}
	if owner, ok := tx.IfNameOwner(name); ok {
		return fmt.Errorf("parent %s is nsnet's own device (%s)", name, describeOwner(owner))
	}
	if strings.HasPrefix(l.Attrs().Alias, "nsnet ") {
		return fmt.Errorf("parent %s is nsnet's own device", name)
	}
	if l.Attrs().MasterIndex != 0 {
		return fmt.Errorf("parent %s is a port of another device (a bridge or bond); use that device instead", name)
	}
	return nil
}

// plug wires a member to its network with the driver's own device.
func (m *Manager) plug(h, ns *kernel.NS, n store.Network, a store.Attachment, defaultRoute bool) error {
	switch n.Driver {
	case DriverRouted:
		return m.plugRouted(h, ns, n, a, defaultRoute)
	case DriverMacvlan:
		return m.plugMacvlan(h, ns, n, a, defaultRoute)
	}
	return m.plugVeth(h, ns, n, a, defaultRoute)
}

// plugRouted gives the member a veth whose host end has no address of its
// own: it answers ARP for 169.254.1.1 by proxy (and NDP for fe80::1), and
// the host reaches the member through a /32 (/128) route on it.
func (m *Manager) plugRouted(h, ns *kernel.NS, n store.Network, a store.Attachment, defaultRoute bool) error {
	veth, err := makeVeth(h, ns, n, a)
	if err != nil {
		return err
	}
	has6 := false
	var sysctls []kernel.Sysctl
	for _, p := range a.Addrs {
		// The kernel delays proxy answers by up to 0.8 s unless told not to.
		if p.Addr().Is4() {
			sysctls = append(sysctls,
				kernel.Sysctl{Key: "net/ipv4/conf/" + a.HostIf + "/route_localnet", Value: "1"},
				kernel.Sysctl{Key: "net/ipv4/conf/" + a.HostIf + "/proxy_arp", Value: "1"},
				kernel.Sysctl{Key: "net/ipv4/neigh/" + a.HostIf + "/proxy_delay", Value: "0"})
		} else {
			has6 = true
			// The proxy's neighbour advertisements need the host end's
			// own link-local address usable at once.
			sysctls = append(sysctls,
				kernel.Sysctl{Key: "net/ipv6/conf/" + a.HostIf + "/proxy_ndp", Value: "1"},
				kernel.Sysctl{Key: "net/ipv6/neigh/" + a.HostIf + "/proxy_delay", Value: "0"},
				kernel.Sysctl{Key: "net/ipv6/conf/" + a.HostIf + "/accept_dad", Value: "0"})
		}
	}
	if !has6 {
		if err := h.NL.LinkSetIP6AddrGenMode(veth, in6AddrGenModeNone); err != nil {
			return fmt.Errorf("configure %s: %w", a.HostIf, err)
		}
	}
	if err := h.SetSysctls(sysctls...); err != nil {
		return fmt.Errorf("configure %s: %w", a.HostIf, err)
	}
	if has6 {
		proxy := &netlink.Neigh{LinkIndex: veth.Index, Family: netlink.FAMILY_V6, Flags: netlink.NTF_PROXY, IP: routedGateway6.AsSlice()}
		if err := h.NL.NeighSet(proxy); err != nil {
			return fmt.Errorf("proxy NDP for %s on %s: %w", routedGateway6, a.HostIf, err)
		}
	}
	if err := h.NL.LinkSetUp(veth); err != nil {
		return fmt.Errorf("bring up %s: %w", a.HostIf, err)
	}
	peer, err := m.memberUp(ns, a)
	if err != nil {
		return err
	}
	crash.Point("connect/addressed")
	for _, p := range a.Addrs {
		host := &netlink.Route{LinkIndex: veth.Index, Dst: kernel.PrefixNet(netip.PrefixFrom(p.Addr(), p.Addr().BitLen())), Scope: netlink.SCOPE_LINK}
		if err := h.NL.RouteReplace(host); err != nil {
			return fmt.Errorf("host route to %s: %w", p.Addr(), err)
		}
		gw := routedGatewayFor(p.Addr())
		if err := gatewayNeighbour(ns, peer, gw, veth.Attrs().HardwareAddr); err != nil {
			return fmt.Errorf("neighbour %s in %s: %w", gw, a.Namespace, err)
		}
		if p.Addr().Is4() {
			onlink := &netlink.Route{LinkIndex: peer.Attrs().Index, Dst: kernel.PrefixNet(netip.PrefixFrom(gw, 32)), Scope: netlink.SCOPE_LINK}
			if err := ns.NL.RouteReplace(onlink); err != nil {
				return fmt.Errorf("route to %s in %s: %w", gw, a.Namespace, err)
			}
		}
		if err := defaultRouteVia(ns, peer, gw, defaultRoute); err != nil {
			return fmt.Errorf("default route in %s: %w", a.Namespace, err)
		}
	}
	return nil
}

// plugMacvlan creates the member's macvlan (bridge mode) on the parent,
// born inside the member's namespace under its final name.
func (m *Manager) plugMacvlan(h, ns *kernel.NS, n store.Network, a store.Attachment, defaultRoute bool) error {
	parent, err := h.LinkByName(n.Parent)
	if err != nil {
		return err
	}
	if parent == nil {
		return fmt.Errorf("parent %s of network %q is gone", n.Parent, n.Name)
	}
	mv := &netlink.Macvlan{
		LinkAttrs: netlink.LinkAttrs{Name: a.IfName, ParentIndex: parent.Attrs().Index, MTU: n.MTU, TxQLen: -1, Namespace: netlink.NsFd(int(ns.Fd()))},
		Mode:      netlink.MACVLAN_MODE_BRIDGE,
	}
	if err := h.NL.LinkAdd(mv); err != nil {
		return fmt.Errorf("create macvlan %s on %s: %w", a.IfName, n.Parent, err)
	}
	crash.Point("connect/veth-created")
	peer, err := m.memberUp(ns, a)
	if err != nil {
		return err
	}
	crash.Point("connect/addressed")
	for i, gw := range n.Gateways {
		if gw.IsValid() {
			if err := defaultRouteVia(ns, peer, gw, defaultRoute); err != nil {
				return fmt.Errorf("default route in %s via %s: %w", a.Namespace, n.Gateways[i], err)
			}
		}
	}
	return nil
}

// memberUp configures the member's interface inside its namespace:
// IPv6 kept quiet, addresses, up.
func (m *Manager) memberUp(ns *kernel.NS, a store.Attachment) (netlink.Link, error) {
	peer, err := ns.LinkByName(a.IfName)
	if err != nil {
		return nil, err
	}
	if peer == nil {
		return nil, fmt.Errorf("interface %s vanished from namespace %s", a.IfName, a.Namespace)
	}
	if err := quietIPv6(ns, peer, a); err != nil {
		return nil, fmt.Errorf("configure %s in %s: %w", a.IfName, a.Namespace, err)
	}
	for _, p := range a.Addrs {
		if err := ns.NL.AddrReplace(peer, kernel.AddrFor(p.Addr(), p.Bits())); err != nil {
			return nil, fmt.Errorf("address %s on %s: %w", p, a.IfName, err)
		}
	}
	if err := ns.NL.LinkSetUp(peer); err != nil {
		return nil, fmt.Errorf("bring up %s in %s: %w", a.IfName, a.Namespace, err)
	}
	return peer, nil
}

// defaultRouteVia points the namespace's default route of gw's family at
// gw: always when replace is set (connect --default-route), otherwise only
// if the namespace has none yet, so the first network joined keeps it.
func defaultRouteVia(ns *kernel.NS, link netlink.Link, gw netip.Addr, replace bool) error {
	if !replace {
		routes, err := kernel.Retry(func() ([]netlink.Route, error) {
			return ns.NL.RouteListFiltered(kernel.Family(gw), &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		})
		if err != nil {
			return err
		}
		for _, r := range routes {
			if d, ok := kernel.ToPrefix(r.Dst); !ok || d.Bits() == 0 {
				return nil
			}
		}
	}
	r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw.AsSlice(), Dst: kernel.PrefixNet(netip.PrefixFrom(unspecified(gw), 0))}
	if gw.Is4() && gw == routedGateway4 {
		r.Flags = int(netlink.FLAG_ONLINK)
	}
	return ns.NL.RouteReplace(r)
}

// routedGatewayFor is a routed member's gateway for its address a.
func routedGatewayFor(a netip.Addr) netip.Addr {
	if a.Is6() {
		return routedGateway6
	}
	return routedGateway4
}

// gatewayNeighbour gives a routed member a permanent neighbour entry for
// its gateway, with the host end's MAC: the member never has to ask, and
// the host needs no ARP answer for an address it may own (whatever its
// arp_ignore says).
func gatewayNeighbour(ns *kernel.NS, peer netlink.Link, gw netip.Addr, mac net.HardwareAddr) error {
	return ns.NL.NeighSet(&netlink.Neigh{LinkIndex: peer.Attrs().Index, Family: kernel.Family(gw),
		State: netlink.NUD_PERMANENT, IP: gw.AsSlice(), HardwareAddr: mac})
}

// repairRouted gives a routed member back its gateway neighbour entries,
// which someone may have flushed (or an older nsnet never made). A member
// whose namespace or devices are gone is left to the rest of gc.
func (m *Manager) repairRouted(a store.Attachment, host string) error {
	h, err := m.liveHost(host)
	if err != nil || h == nil {
		return err
	}
	hostEnd, err := h.LinkByName(a.HostIf)
	if err != nil || hostEnd == nil {
		return err
	}
	ns, err := openLiveNamespace(a.Namespace)
	if err != nil || ns == nil {
		return err
	}
	defer ns.Close()
	peer, err := ns.LinkByName(a.IfName)
	if err != nil || peer == nil {
		return err
	}
	for _, p := range a.Addrs {
		gw := routedGatewayFor(p.Addr())
		if err := gatewayNeighbour(ns, peer, gw, hostEnd.Attrs().HardwareAddr); err != nil {
			return fmt.Errorf("neighbour %s of %s in network %s: %w", gw, a.Namespace, a.Network, err)
		}
	}
	return nil
}

// defaultRoutes lists the namespace's default routes through a gateway,
// of both families, with their interfaces' names.
func defaultRoutes(ns *kernel.NS) ([]store.Route, error) {
	routes, err := kernel.Retry(func() ([]netlink.Route, error) {
		return ns.NL.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, err
	}
	var out []store.Route
	for _, r := range routes {
		d, ok := kernel.ToPrefix(r.Dst)
		gw, gok := netip.AddrFromSlice(r.Gw)
		if (ok && d.Bits() != 0) || !gok {
			continue
		}
		l, err := ns.NL.LinkByIndex(r.LinkIndex)
		if err != nil {
			return nil, fmt.Errorf("interface %d: %w", r.LinkIndex, err)
		}
		out = append(out, store.Route{Gateway: gw.Unmap(), Dev: l.Attrs().Name, Priority: r.Priority, Onlink: r.Flags&int(netlink.FLAG_ONLINK) != 0})
	}
	return out, nil
}

// restoreRoutes puts back the default routes an undone connect replaced,
// those whose interface is still there; routes still there (of another
// metric, which the connect left alone) stay as they are. The new default
// route went with the connect's own device.
func restoreRoutes(op store.Op) error {
	if len(op.Routes) == 0 {
		return nil
	}
	ns, err := openLiveNamespace(op.Namespace)
	if err != nil || ns == nil {
		return err
	}
	defer ns.Close()
	var errs []error
	for _, r := range op.Routes {
		l, err := ns.LinkByName(r.Dev)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if l == nil {
			continue
		}
		route := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: r.Gateway.AsSlice(), Priority: r.Priority,
			Dst: kernel.PrefixNet(netip.PrefixFrom(unspecified(r.Gateway), 0))}
		if r.Onlink {
			route.Flags = int(netlink.FLAG_ONLINK)
		}
		if err := ns.NL.RouteAdd(route); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("restore default route via %s dev %s in %s: %w", r.Gateway, r.Dev, op.Namespace, err))
		}
	}
	return errors.Join(errs...)
}

// unplugMember deletes a member device that lives only inside its
// namespace (a macvlan), if the namespace and the device are still there.
func unplugMember(op store.Op) error {
	if op.IfName == "" {
		return nil
	}
	ns, err := openLiveNamespace(op.Namespace)
	if err != nil || ns == nil {
		return err
	}
	defer ns.Close()
	return deleteLink(ns, op.IfName, "macvlan", op.Namespace)
}
