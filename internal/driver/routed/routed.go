// Package routed is the pure-L3 driver of article 003, Calico's model: no
// bridge, each member on its own veth with a /32 (/128) address, the host
// routing to it through the host end, which answers for the link-local
// gateway (169.254.1.1, fe80::1) by proxy. No NAT unless asked.
package routed

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/nsnet/nsnet/internal/crash"
	"github.com/nsnet/nsnet/internal/driver"
	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/plumb"
	"github.com/nsnet/nsnet/internal/store"
)

// Driver is the routed driver.
type Driver struct{}

// Name implements driver.Driver.
func (Driver) Name() string { return "routed" }

// Caps implements driver.Driver.
func (Driver) Caps() driver.Capabilities {
	return driver.Capabilities{HostEnd: true, HostRoutes: true, Firewall: true, Ports: true, DNS: driver.DNSLinkLocal}
}

// Options implements driver.Driver: a routed network has none.
func (Driver) Options() []driver.Option { return nil }

// Plan implements driver.Driver.
func (Driver) Plan(spec driver.Spec, n *store.Network) error {
	if spec.Internal {
		return fmt.Errorf("--internal is for bridge networks")
	}
	if len(spec.Gateways) > 0 {
		return fmt.Errorf("a routed network's gateway is link-local (%s, %s); --gateway does not apply", driver.LinkLocal4, driver.LinkLocal6)
	}
	n.NAT = spec.NAT && !spec.NoNAT
	for _, p := range spec.Subnets {
		n.Gateways = append(n.Gateways, gateway(p.Addr()))
	}
	return nil
}

// gateway is a routed member's gateway for its address a.
func gateway(a netip.Addr) netip.Addr {
	if a.Is6() {
		return driver.LinkLocal6
	}
	return driver.LinkLocal4
}

// Device implements driver.Driver: a routed network has none.
func (Driver) Device(store.Network) string { return "" }

// Check implements driver.Driver: no host route may cover the subnet,
// but for a host's part of a cluster network, whose subnet spans the
// hosts: routes to the other hosts' blocks of it are expected (the
// cluster's keeper or BGP put them there), and etcd keeps the subnet the
// cluster's alone.
func (Driver) Check(h *kernel.NS, n store.Network, _ func(string) (string, bool)) error {
	if n.Cluster != nil {
		return nil
	}
	return plumb.CheckRoutes(h, n.Subnets, "")
}

// Reserved implements driver.Driver: members' addresses are routed to
// them alone.
func (Driver) Reserved(*kernel.NS, store.Network) ([]netip.Addr, error) { return nil, nil }

// Build implements driver.Driver: the host forwards.
func (Driver) Build(h *kernel.NS, n store.Network) error { return plumb.Forwarding(h, n.Subnets) }

// Unbuild implements driver.Driver: forwarding stays on, as other
// networks or the admin may need it.
func (Driver) Unbuild(*kernel.NS, store.Op) error { return nil }

// Plug implements driver.Driver. The host end has no address of its own:
// the host holds 169.254.1.1 on its lo while routed networks exist, so it
// answers members' ARP for it as for any address of its own (proxy ARP
// would answer only while the host had a route to it through another
// interface, a default route say), and NDP for fe80::1 by proxy. Members
// also get a permanent neighbour entry for their gateway, so they never
// ask. The host reaches a member through a /32 (/128) route on its host
// end.
func (Driver) Plug(h, ns *kernel.NS, n store.Network, a store.Attachment, defaultRoute bool) error {
	veth, err := plumb.Veth(h, ns, a.HostIf, a.IfName, n.MTU, "nsnet "+n.Name+" "+a.Namespace)
	if err != nil {
		return err
	}
	has6 := false
	var sysctls []kernel.Sysctl
	for _, p := range a.Addrs {
		if p.Addr().Is4() {
			sysctls = append(sysctls, kernel.Sysctl{Key: "net/ipv4/conf/" + a.HostIf + "/route_localnet", Value: "1"})
		} else {
			// The kernel delays proxy answers by up to 0.8 s unless told
			// not to.
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
		if err := plumb.NoIPv6(h, veth, sysctls...); err != nil {
			return err
		}
	} else if err := h.SetSysctls(sysctls...); err != nil {
		return fmt.Errorf("configure %s: %w", a.HostIf, err)
	}
	if has6 {
		proxy := &netlink.Neigh{LinkIndex: veth.Index, Family: netlink.FAMILY_V6, Flags: netlink.NTF_PROXY, IP: driver.LinkLocal6.AsSlice()}
		if err := h.NL.NeighSet(proxy); err != nil {
			return fmt.Errorf("proxy NDP for %s on %s: %w", driver.LinkLocal6, a.HostIf, err)
		}
	}
	if err := plumb.Up(h, veth); err != nil {
		return err
	}
	peer, err := plumb.MemberUp(ns, a.IfName, a.Namespace, a.Addrs)
	if err != nil {
		return err
	}
	crash.Point("connect/addressed")
	for _, p := range a.Addrs {
		host := &netlink.Route{LinkIndex: veth.Index, Dst: kernel.PrefixNet(netip.PrefixFrom(p.Addr(), p.Addr().BitLen())), Scope: netlink.SCOPE_LINK}
		if err := h.NL.RouteReplace(host); err != nil {
			return fmt.Errorf("host route to %s: %w", p.Addr(), err)
		}
		gw := gateway(p.Addr())
		// A permanent entry with the host end's MAC: the member never
		// asks, and the host needs no ARP answer for an address it may
		// own, whatever its arp_ignore says.
		if err := plumb.Neighbour(ns, peer, gw, veth.Attrs().HardwareAddr); err != nil {
			return fmt.Errorf("neighbour %s in %s: %w", gw, a.Namespace, err)
		}
		if err := gatewayRoutes(ns, peer, n, a, gw); err != nil {
			return err
		}
		if err := plumb.DefaultRouteVia(ns, peer, gw, defaultRoute, gw.Is4()); err != nil {
			return fmt.Errorf("default route in %s: %w", a.Namespace, err)
		}
	}
	return nil
}

// Unplug implements driver.Driver: the member's veth goes, and the host
// routes with it.
func (Driver) Unplug(h *kernel.NS, op store.Op) error { return plumb.DeleteHostEnd(h, op.HostIf) }

// DefaultRoute implements driver.Driver: via the link-local gateways,
// on-link for IPv4.
func (Driver) DefaultRoute(ns *kernel.NS, n store.Network, a store.Attachment) error {
	var gws []netip.Addr
	for _, p := range a.Addrs {
		gws = append(gws, gateway(p.Addr()))
	}
	return plumb.DefaultRoutesVia(ns, a.IfName, gws, true)
}

// Repair implements driver.Driver: a member whose veth is gone is plugged
// anew; otherwise its host routes, addresses, default routes and the
// permanent neighbour entries for its gateway (which someone may have
// flushed, or an older nsnet never made) are put back.
func (d Driver) Repair(h *kernel.NS, n store.Network, a store.Attachment) (string, error) {
	ns, err := plumb.OpenLiveNamespace(a.Namespace)
	if err != nil || ns == nil {
		return "", err
	}
	defer ns.Close()
	hostEnd, err := plumb.HostEnd(h, ns, a.HostIf, a.IfName, a.Namespace)
	if err != nil {
		return "", err
	}
	if hostEnd == nil {
		return "plugged anew (its veth was gone)", d.Plug(h, ns, n, a, false)
	}
	if err := plumb.Up(h, hostEnd); err != nil {
		return "", err
	}
	peer, err := plumb.MemberUp(ns, a.IfName, a.Namespace, a.Addrs)
	if err != nil {
		return "", err
	}
	for _, p := range a.Addrs {
		host := &netlink.Route{LinkIndex: hostEnd.Attrs().Index, Dst: kernel.PrefixNet(netip.PrefixFrom(p.Addr(), p.Addr().BitLen())), Scope: netlink.SCOPE_LINK}
		if err := h.NL.RouteReplace(host); err != nil {
			return "", fmt.Errorf("host route to %s: %w", p.Addr(), err)
		}
		gw := gateway(p.Addr())
		if err := plumb.Neighbour(ns, peer, gw, hostEnd.Attrs().HardwareAddr); err != nil {
			return "", fmt.Errorf("neighbour %s of %s in network %s: %w", gw, a.Namespace, n.Name, err)
		}
		if err := gatewayRoutes(ns, peer, n, a, gw); err != nil {
			return "", err
		}
	}
	return "", d.DefaultRoute(ns, n, a)
}

// gatewayRoutes gives a member the routes to its gateway gw that do not
// depend on its default route being ours: 169.254.1.1 on-link, and the
// IPv6 resolver via fe80::1 when the network has DNS, so a member whose
// default route is on another network still reaches our resolver.
func gatewayRoutes(ns *kernel.NS, peer netlink.Link, n store.Network, a store.Attachment, gw netip.Addr) error {
	var r *netlink.Route
	switch {
	case gw.Is4():
		r = &netlink.Route{LinkIndex: peer.Attrs().Index, Dst: kernel.PrefixNet(netip.PrefixFrom(gw, 32)), Scope: netlink.SCOPE_LINK}
	case n.DNS:
		r = &netlink.Route{LinkIndex: peer.Attrs().Index, Dst: kernel.PrefixNet(netip.PrefixFrom(driver.HostDNS6, 128)), Gw: gw.AsSlice()}
	default:
		return nil
	}
	if err := ns.NL.RouteReplace(r); err != nil {
		return fmt.Errorf("route to %s in %s: %w", r.Dst, a.Namespace, err)
	}
	return nil
}

var _ driver.Driver = Driver{}
