// Package bridge is nsnet's default driver, the Docker bridge of articles
// 001 and 002: a Linux bridge in the host holding the network's gateway
// addresses, members on veths whose host ends are its ports, NAT to the
// outside unless turned off.
package bridge

import (
	"fmt"
	"hash/fnv"
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/nsnet/nsnet/internal/crash"
	"github.com/nsnet/nsnet/internal/driver"
	"github.com/nsnet/nsnet/internal/ipam"
	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/plumb"
	"github.com/nsnet/nsnet/internal/store"
)

// OptBridge is the option (and flag) naming the bridge.
const OptBridge = "bridge-name"

// Driver is the bridge driver.
type Driver struct{}

// Name implements driver.Driver.
func (Driver) Name() string { return "bridge" }

// Caps implements driver.Driver.
func (Driver) Caps() driver.Capabilities {
	return driver.Capabilities{HostEnd: true, Firewall: true, Ports: true, Taps: true, Internal: true, DNS: driver.DNSAtGateway}
}

// Options implements driver.Driver.
func (Driver) Options() []driver.Option {
	return []driver.Option{{Name: OptBridge, Usage: "name of the bridge (default nsbr-NAME)", Device: true}}
}

// Plan implements driver.Driver: the gateway is the subnet's first usable
// address unless given, and the bridge is called nsbr-NAME unless named.
func (d Driver) Plan(spec driver.Spec, n *store.Network) error {
	n.NAT = !spec.NoNAT && !spec.Internal
	for _, p := range spec.Subnets {
		gw := ipam.FirstUsable(p)
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
	name := spec.Options[OptBridge]
	if name == "" {
		name = bridgeName(spec.Name)
	}
	if err := kernel.ValidateIfName(name); err != nil {
		return fmt.Errorf("bridge name: %w", err)
	}
	n.Options = map[string]string{OptBridge: name}
	return nil
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

// Device implements driver.Driver: the bridge.
func (Driver) Device(n store.Network) string { return n.Options[OptBridge] }

// Check implements driver.Driver: the bridge's name must be free.
func (d Driver) Check(h *kernel.NS, n store.Network, taken func(string) (string, bool)) error {
	name := d.Device(n)
	if owner, ok := taken(name); ok {
		return fmt.Errorf("bridge name %s is already used by %s", name, owner)
	}
	if l, err := h.LinkByName(name); err != nil {
		return err
	} else if l != nil {
		return fmt.Errorf("bridge name %s is held by a device nsnet did not create (a %s)", name, l.Type())
	}
	return plumb.CheckRoutes(h, n.Subnets, "")
}

// Reserved implements driver.Driver: the bridge's addresses are nsnet's.
func (Driver) Reserved(*kernel.NS, store.Network) ([]netip.Addr, error) { return nil, nil }

// Build implements driver.Driver: the bridge with its gateway addresses.
func (d Driver) Build(h *kernel.NS, n store.Network) error {
	name := d.Device(n)
	l, err := h.LinkByName(name)
	if err != nil {
		return err
	}
	if l == nil {
		// A fixed MAC keeps the bridge's address from following its
		// lowest-numbered port, which would stale members' neighbour caches.
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: n.MTU, HardwareAddr: plumb.RandomMAC(), TxQLen: -1}}
		if err := h.NL.LinkAdd(br); err != nil {
			return fmt.Errorf("create bridge %s: %w", name, err)
		}
		l = br
	} else if l.Type() != "bridge" {
		return fmt.Errorf("device %s is a %s, not a bridge", name, l.Type())
	}
	crash.Point("net-create/bridge-created")
	if err := h.NL.LinkSetAlias(l, "nsnet network "+n.Name); err != nil {
		return fmt.Errorf("label bridge %s: %w", name, err)
	}
	// A bridge has no carrier until its first member comes up; IPv6 then
	// restarts on it, and while its link-local address sits in DAD the
	// first forwarded IPv6 connection is lost (seen: ~2 s). nsnet already
	// guarantees its addresses are unique, and the link-local one derives
	// from a random MAC.
	if err := h.SetSysctls(kernel.Sysctl{Key: "net/ipv6/conf/" + name + "/accept_dad", Value: "0"}); err != nil {
		return fmt.Errorf("configure bridge %s: %w", name, err)
	}
	for i, gw := range n.Gateways {
		if err := h.NL.AddrReplace(l, kernel.AddrFor(gw, n.Subnets[i].Bits())); err != nil {
			return fmt.Errorf("gateway %s on %s: %w", gw, name, err)
		}
	}
	if err := plumb.Up(h, l); err != nil {
		return err
	}
	if n.Internal {
		return nil
	}
	// The host reaching a published port on 127.0.0.1 sends through the
	// bridge with a loopback source; the input rules keep members from
	// using the same door to the host's loopback services.
	if err := h.SetSysctls(kernel.Sysctl{Key: "net/ipv4/conf/" + name + "/route_localnet", Value: "1"}); err != nil {
		return err
	}
	return plumb.Forwarding(h, n.Subnets)
}

// Unbuild implements driver.Driver. The bridge's name was checked free
// when the network was made and is reserved in the store since, so a
// bridge by that name is the network's own.
func (Driver) Unbuild(h *kernel.NS, op store.Op) error {
	if op.Device == "" {
		return nil
	}
	return plumb.DeleteLink(h, op.Device, "bridge", "the host")
}

// Plug implements driver.Driver: a veth whose host end is a port of the
// bridge, and the member's default route via the gateway.
func (d Driver) Plug(h, ns *kernel.NS, n store.Network, a store.Attachment, defaultRoute bool) error {
	br, err := plumb.Bridge(h, d.Device(n), n.Name)
	if err != nil {
		return err
	}
	veth, err := plumb.Veth(h, ns, a.HostIf, a.IfName, n.MTU, "nsnet "+n.Name+" "+a.Namespace)
	if err != nil {
		return err
	}
	if err := plumb.NoIPv6(h, veth); err != nil {
		return err
	}
	if err := plumb.BridgePort(h, veth, br, n.Name); err != nil {
		return err
	}
	// Only a member with published ports can reach itself through a DNAT;
	// hairpin on every port would also reflect each member's broadcasts.
	if len(a.Ports) > 0 {
		if err := plumb.Hairpin(h, veth); err != nil {
			return err
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
	if n.Internal {
		return nil
	}
	for _, gw := range n.Gateways {
		if err := plumb.DefaultRouteVia(ns, peer, gw, defaultRoute, false); err != nil {
			return fmt.Errorf("default route in %s: %w", a.Namespace, err)
		}
	}
	return nil
}

// Unplug implements driver.Driver: the member's veth goes.
func (Driver) Unplug(h *kernel.NS, op store.Op) error { return plumb.DeleteHostEnd(h, op.HostIf) }

// DefaultRoute implements driver.Driver: via the gateways, unless the
// network is internal.
func (Driver) DefaultRoute(ns *kernel.NS, n store.Network, a store.Attachment) error {
	if n.Internal {
		return nil
	}
	return plumb.DefaultRoutesVia(ns, a.IfName, n.Gateways, false)
}

// Repair implements driver.Driver: a member whose veth is gone is plugged
// anew; one whose host end left the bridge goes back on it.
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
	br, err := plumb.Bridge(h, d.Device(n), n.Name)
	if err != nil {
		return "", err
	}
	var did string
	if hostEnd.Attrs().MasterIndex != br.Attrs().Index {
		if err := plumb.BridgePort(h, hostEnd, br, n.Name); err != nil {
			return "", err
		}
		did = "put back on its bridge"
	}
	if len(a.Ports) > 0 {
		if err := plumb.Hairpin(h, hostEnd); err != nil {
			return "", err
		}
	}
	if err := plumb.Up(h, hostEnd); err != nil {
		return "", err
	}
	if _, err := plumb.MemberUp(ns, a.IfName, a.Namespace, a.Addrs); err != nil {
		return "", err
	}
	return did, d.DefaultRoute(ns, n, a)
}

var _ driver.Driver = Driver{}
