// Package macvlan puts members straight on a parent interface's segment
// (Docker's macvlan driver): each member's macvlan device, in bridge mode,
// is born inside its namespace, and the host has nothing of the network:
// no address, no firewall, no resolver.
package macvlan

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/nsnet/nsnet/internal/crash"
	"github.com/nsnet/nsnet/internal/driver"
	"github.com/nsnet/nsnet/internal/ipam"
	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/plumb"
	"github.com/nsnet/nsnet/internal/store"
)

// OptParent is the option (and flag) naming the parent interface.
const OptParent = "parent"

// Driver is the macvlan driver.
type Driver struct{}

// Name implements driver.Driver.
func (Driver) Name() string { return "macvlan" }

// Caps implements driver.Driver: members are on the LAN, not behind the
// host.
func (Driver) Caps() driver.Capabilities { return driver.Capabilities{DNS: driver.NoDNS} }

// Options implements driver.Driver.
func (Driver) Options() []driver.Option {
	return []driver.Option{{Name: OptParent, Usage: "parent interface of a macvlan network"}}
}

// Plan implements driver.Driver. A macvlan network may have no gateway:
// members then have no default route, and its slot stays zero.
func (Driver) Plan(spec driver.Spec, n *store.Network) error {
	parent := spec.Options[OptParent]
	if parent == "" {
		return fmt.Errorf("the macvlan driver needs --parent")
	}
	if err := kernel.ValidateIfName(parent); err != nil {
		return fmt.Errorf("parent: %w", err)
	}
	if spec.Internal || spec.NAT {
		return fmt.Errorf("--internal and --nat are for bridge and routed networks")
	}
	n.NAT = false
	for _, p := range spec.Subnets {
		var gw netip.Addr
		for _, g := range spec.Gateways {
			if g.Is4() == p.Addr().Is4() {
				if err := ipam.CheckHost(p, g); err != nil {
					return fmt.Errorf("gateway %s: %w", g, err)
				}
				gw = g
			}
		}
		n.Gateways = append(n.Gateways, gw)
	}
	n.Options = map[string]string{OptParent: parent}
	return nil
}

// Device implements driver.Driver: the parent is not the network's own.
func (Driver) Device(store.Network) string { return "" }

// Check implements driver.Driver: the parent must exist, not be a bridge
// port (its frames belong to the bridge), and not be a device nsnet made.
func (Driver) Check(h *kernel.NS, n store.Network, taken func(string) (string, bool)) error {
	name := n.Options[OptParent]
	l, err := h.LinkByName(name)
	if err != nil {
		return err
	}
	if l == nil {
		return fmt.Errorf("parent %s does not exist in the host namespace", name)
	}
	if owner, ok := taken(name); ok {
		return fmt.Errorf("parent %s is nsnet's own device (%s)", name, owner)
	}
	if strings.HasPrefix(l.Attrs().Alias, "nsnet ") {
		return fmt.Errorf("parent %s is nsnet's own device", name)
	}
	if l.Attrs().MasterIndex != 0 {
		return fmt.Errorf("parent %s is a port of another device (a bridge or bond); use that device instead", name)
	}
	// The parent's own LAN is the point of a macvlan network: its routes
	// do not count, others' do.
	return plumb.CheckRoutes(h, n.Subnets, name)
}

// Reserved implements driver.Driver: the host's own addresses on the
// parent's segment, which a member must never be given.
func (Driver) Reserved(h *kernel.NS, n store.Network) ([]netip.Addr, error) {
	l, err := h.LinkByName(n.Options[OptParent])
	if err != nil || l == nil {
		return nil, err
	}
	addrs, err := kernel.Retry(func() ([]netlink.Addr, error) { return h.NL.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("read addresses of %s: %w", n.Options[OptParent], err)
	}
	var out []netip.Addr
	for _, a := range addrs {
		if p, ok := kernel.ToPrefix(a.IPNet); ok {
			for _, s := range n.Subnets {
				if s.Contains(p.Addr()) {
					out = append(out, p.Addr())
				}
			}
		}
	}
	return out, nil
}

// Build implements driver.Driver: members hang off the parent; the host
// needs nothing.
func (Driver) Build(*kernel.NS, store.Network) error { return nil }

// Unbuild implements driver.Driver.
func (Driver) Unbuild(*kernel.NS, store.Op) error { return nil }

// Plug implements driver.Driver: the member's macvlan, born inside its
// namespace under its final name.
func (Driver) Plug(h, ns *kernel.NS, n store.Network, a store.Attachment, defaultRoute bool) error {
	name := n.Options[OptParent]
	parent, err := h.LinkByName(name)
	if err != nil {
		return err
	}
	if parent == nil {
		return fmt.Errorf("parent %s of network %q is gone", name, n.Name)
	}
	mv := &netlink.Macvlan{
		LinkAttrs: netlink.LinkAttrs{Name: a.IfName, ParentIndex: parent.Attrs().Index, MTU: n.MTU, TxQLen: -1, Namespace: netlink.NsFd(int(ns.Fd()))},
		Mode:      netlink.MACVLAN_MODE_BRIDGE,
	}
	if err := h.NL.LinkAdd(mv); err != nil {
		return fmt.Errorf("create macvlan %s on %s: %w", a.IfName, name, err)
	}
	crash.Point("connect/veth-created")
	peer, err := plumb.MemberUp(ns, a.IfName, a.Namespace, a.Addrs)
	if err != nil {
		return err
	}
	crash.Point("connect/addressed")
	for _, gw := range n.Gateways {
		if gw.IsValid() {
			if err := plumb.DefaultRouteVia(ns, peer, gw, defaultRoute, false); err != nil {
				return fmt.Errorf("default route in %s via %s: %w", a.Namespace, gw, err)
			}
		}
	}
	return nil
}

// Unplug implements driver.Driver: the member's device lives only inside
// its namespace; it goes if the namespace and the device are still there.
func (Driver) Unplug(_ *kernel.NS, op store.Op) error {
	if op.IfName == "" {
		return nil
	}
	ns, err := plumb.OpenLiveNamespace(op.Namespace)
	if err != nil || ns == nil {
		return err
	}
	defer ns.Close()
	return plumb.DeleteLink(ns, op.IfName, "macvlan", op.Namespace)
}

// DefaultRoute implements driver.Driver: via the gateways it has.
func (Driver) DefaultRoute(ns *kernel.NS, n store.Network, a store.Attachment) error {
	return plumb.DefaultRoutesVia(ns, a.IfName, n.Gateways, false)
}

// Repair implements driver.Driver: a member whose macvlan is gone is
// plugged anew; otherwise its addresses and default routes are put back.
func (d Driver) Repair(h *kernel.NS, n store.Network, a store.Attachment) (string, error) {
	ns, err := plumb.OpenLiveNamespace(a.Namespace)
	if err != nil || ns == nil {
		return "", err
	}
	defer ns.Close()
	dev, err := ns.LinkByName(a.IfName)
	if err != nil {
		return "", err
	}
	if dev == nil {
		return "plugged anew (its macvlan was gone)", d.Plug(h, ns, n, a, false)
	}
	if _, err := plumb.MemberUp(ns, a.IfName, a.Namespace, a.Addrs); err != nil {
		return "", err
	}
	return "", d.DefaultRoute(ns, n, a)
}

var _ driver.Driver = Driver{}
