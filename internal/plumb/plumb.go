// Package plumb is the kernel plumbing every driver, link and TAP shares:
// veth pairs born in their target namespace, bridge ports, member
// interfaces brought up with IPv6 kept quiet, default routes, gateway
// neighbours and forwarding sysctls. Keeping one copy of each step keeps
// their fixes in one place (a bridge port that hits the kernel's port limit
// says "full" whoever made it).
package plumb

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nsnet/nsnet/internal/crash"
	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/netns"
	"github.com/nsnet/nsnet/internal/store"
)

// ErrFull reports a bridge that has as many ports as the kernel allows.
var ErrFull = errors.New("full")

// MaxBridgePorts is the most ports the kernel lets one bridge have: port
// numbers are 10 bits wide and port 0 is reserved. The kernel enforces it
// (EXFULL); nsnet only names it in the error.
const MaxBridgePorts = 1023

// in6AddrGenModeNone stops the kernel from generating a link-local address.
const in6AddrGenModeNone = 1

// NoIPv6 keeps a device nsnet owns in the host, still down, out of IPv6,
// and writes the sysctls more with the same namespace switch. With IPv6
// off, the device never gets the multicast route (ff00::/8) the kernel
// gives every device with IPv6 when it comes up; one per member in the
// host's table, which every link change walks whole, made the kernel's
// own share of a connect grow with the host's members (issue 11). No
// address generation besides, so that if IPv6 is switched back on for
// every device (net.ipv6.conf.all), it still has no link-local address
// and sends no DAD, router solicitation or MLD traffic.
func NoIPv6(ns *kernel.NS, l netlink.Link, more ...kernel.Sysctl) error {
	name := l.Attrs().Name
	if err := ns.NL.LinkSetIP6AddrGenMode(l, in6AddrGenModeNone); err != nil {
		return fmt.Errorf("configure %s: %w", name, err)
	}
	off := kernel.Sysctl{Key: "net/ipv6/conf/" + name + "/disable_ipv6", Value: "1"}
	if err := ns.SetSysctls(append(slices.Clip(more), off)...); err != nil {
		return fmt.Errorf("configure %s: %w", name, err)
	}
	return nil
}

// FreeName checks a requested interface name, or finds the first free
// prefixN (eth0, eth1, … for members; veth0, … for links).
func FreeName(ns *kernel.NS, want, prefix string) (string, error) {
	if want != "" {
		if err := kernel.ValidateIfName(want); err != nil {
			return "", err
		}
		if l, err := ns.LinkByName(want); err != nil {
			return "", err
		} else if l != nil {
			return "", fmt.Errorf("the namespace already has an interface %s", want)
		}
		return want, nil
	}
	for i := 0; i < 1000; i++ {
		name := fmt.Sprintf("%s%d", prefix, i)
		l, err := ns.LinkByName(name)
		if err != nil {
			return "", err
		}
		if l == nil {
			return name, nil
		}
	}
	return "", fmt.Errorf("no free %sN interface name in the namespace", prefix)
}

// Veth creates a member's veth: the host end in h, under a MAC chosen here
// (so that a routed member can be told it without asking the kernel), and
// the peer born inside the member's namespace under its final name, since
// moving a device between namespaces is slow. alias labels the host end.
func Veth(h, ns *kernel.NS, hostIf, ifName string, mtu int, alias string) (*netlink.Veth, error) {
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: hostIf, MTU: mtu, TxQLen: -1, HardwareAddr: RandomMAC()},
		PeerName:  ifName, PeerNamespace: netlink.NsFd(int(ns.Fd())),
	}
	if err := h.NL.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("create veth %s: %w", hostIf, err)
	}
	crash.Point("connect/veth-created")
	if err := h.NL.LinkSetAlias(veth, alias); err != nil {
		return nil, fmt.Errorf("label %s: %w", hostIf, err)
	}
	return veth, nil
}

// Bridge returns the bridge called name in h, or an error saying it is
// missing.
func Bridge(h *kernel.NS, name, network string) (netlink.Link, error) {
	br, err := h.LinkByName(name)
	if err != nil {
		return nil, err
	}
	if br == nil {
		return nil, fmt.Errorf("bridge %s of network %q is missing (run nsnet gc)", name, network)
	}
	return br, nil
}

// BridgePort makes l a port of bridge br. The kernel's port limit counts
// every port, TAPs and veths alike, and comes back as ErrFull.
func BridgePort(h *kernel.NS, l, br netlink.Link, network string) error {
	if err := h.NL.LinkSetMasterByIndex(l, br.Attrs().Index); err != nil {
		if errors.Is(err, unix.EXFULL) {
			return fmt.Errorf("network %q is %w: bridge %s has %d ports, the kernel's limit", network, ErrFull, br.Attrs().Name, MaxBridgePorts)
		}
		return fmt.Errorf("attach %s to bridge %s: %w", l.Attrs().Name, br.Attrs().Name, err)
	}
	return nil
}

// Hairpin lets the bridge send frames back out of the port l they came
// in on. A member that reaches its own published port needs it when
// br_netfilter is loaded (bridge-nf-call-iptables=1, as on any Docker
// host): the DNAT back to the member then happens in the bridge, which
// would otherwise drop a frame bound for the port it came from.
func Hairpin(h *kernel.NS, l netlink.Link) error {
	if err := h.NL.LinkSetHairpin(l, true); err != nil {
		return fmt.Errorf("hairpin on bridge port %s: %w", l.Attrs().Name, err)
	}
	return nil
}

// Tap creates a persistent TAP device in h, with no IPv6 of its own and
// labelled alias; the guest that opens it brings its carrier. TUNSETIFF
// acts in the calling thread's namespace, hence the switch.
func Tap(h *kernel.NS, name string, mtu int, alias string) (netlink.Link, error) {
	tap := &netlink.Tuntap{
		LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu, TxQLen: -1},
		Mode:      netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_NO_PI | netlink.TUNTAP_ONE_QUEUE,
	}
	err := h.Do(func() error { return netlink.LinkAdd(tap) })
	for _, f := range tap.Fds {
		f.Close() // the guest opens it; until then it has no carrier
	}
	if err != nil {
		return nil, fmt.Errorf("create TAP %s: %w", name, err)
	}
	l, err := h.LinkByName(name)
	if err != nil {
		return nil, err
	}
	if l == nil {
		return nil, fmt.Errorf("TAP %s vanished", name)
	}
	if err := NoIPv6(h, l); err != nil {
		return nil, err
	}
	if err := h.NL.LinkSetAlias(l, alias); err != nil {
		return nil, fmt.Errorf("label %s: %w", name, err)
	}
	return l, nil
}

// Up brings l up in ns.
func Up(ns *kernel.NS, l netlink.Link) error {
	if err := ns.NL.LinkSetUp(l); err != nil {
		return fmt.Errorf("bring up %s: %w", l.Attrs().Name, err)
	}
	return nil
}

// MemberUp configures the interface called ifName inside ns (where is
// its owner, for errors): IPv6 kept quiet, addrs, up.
func MemberUp(ns *kernel.NS, ifName, where string, addrs []netip.Prefix) (netlink.Link, error) {
	peer, err := ns.LinkByName(ifName)
	if err != nil {
		return nil, err
	}
	if peer == nil {
		return nil, fmt.Errorf("interface %s vanished from namespace %s", ifName, where)
	}
	if err := quietIPv6(ns, peer, ifName, addrs); err != nil {
		return nil, fmt.Errorf("configure %s in %s: %w", ifName, where, err)
	}
	for _, p := range addrs {
		if err := ns.NL.AddrReplace(peer, kernel.AddrFor(p.Addr(), p.Bits())); err != nil {
			return nil, fmt.Errorf("address %s on %s: %w", p, ifName, err)
		}
	}
	if err := ns.NL.LinkSetUp(peer); err != nil {
		return nil, fmt.Errorf("bring up %s in %s: %w", ifName, where, err)
	}
	return peer, nil
}

// quietIPv6 keeps a new member from flooding the bridge: each frame a port
// sends to an unknown multicast group is copied to every other port, so DAD
// probes and router solicitations would make every connect cost O(ports).
// IPv4-only members generate no IPv6 address at all (a netlink attribute,
// no thread switch); dual-stack members keep their link-local address but
// skip DAD and router solicitation, which only sysctls can say.
func quietIPv6(ns *kernel.NS, peer netlink.Link, ifName string, addrs []netip.Prefix) error {
	for _, p := range addrs {
		if p.Addr().Is6() {
			base := "net/ipv6/conf/" + ifName + "/"
			return ns.SetSysctls(kernel.Sysctl{Key: base + "accept_dad", Value: "0"}, kernel.Sysctl{Key: base + "accept_ra", Value: "0"})
		}
	}
	return ns.NL.LinkSetIP6AddrGenMode(peer, in6AddrGenModeNone)
}

// DefaultRouteVia points the namespace's default route of gw's family at
// gw: always when replace is set (connect --default-route), otherwise only
// if the namespace has none yet, so the first network joined keeps it.
// onlink says gw is not in any of the link's subnets.
func DefaultRouteVia(ns *kernel.NS, link netlink.Link, gw netip.Addr, replace, onlink bool) error {
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
	r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw.AsSlice(), Dst: kernel.PrefixNet(netip.PrefixFrom(Unspecified(gw), 0))}
	if onlink {
		r.Flags = int(netlink.FLAG_ONLINK)
	}
	return ns.NL.RouteReplace(r)
}

// WaitIPv6 waits, up to timeout, until IPv6 on the interface called
// ifName in ns is ready: it has its link-local address. Until then the
// kernel neither sends nor answers neighbour discovery there, and the
// kernel makes that address only once the link's carrier news has gone
// through its link watch, which batches events up to a second apart.
func WaitIPv6(ns *kernel.NS, ifName string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for wait := 500 * time.Microsecond; ; wait = min(2*wait, 20*time.Millisecond) {
		l, err := ns.LinkByName(ifName)
		if err != nil || l == nil {
			return err
		}
		addrs, err := kernel.Retry(func() ([]netlink.Addr, error) { return ns.NL.AddrList(l, netlink.FAMILY_V6) })
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if a.IP.IsLinkLocalUnicast() && a.Flags&unix.IFA_F_TENTATIVE == 0 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("IPv6 on %s was not ready within %s", ifName, timeout)
		}
		time.Sleep(wait)
	}
}

// DefaultRoutesVia gives the namespace a default route through each valid
// gateway in gws, on the interface called ifName, for every family it has
// none of. onlink marks IPv4 gateways outside the interface's subnets.
func DefaultRoutesVia(ns *kernel.NS, ifName string, gws []netip.Addr, onlink bool) error {
	l, err := ns.LinkByName(ifName)
	if err != nil || l == nil {
		return err
	}
	for _, gw := range gws {
		if !gw.IsValid() {
			continue
		}
		if err := DefaultRouteVia(ns, l, gw, false, onlink && gw.Is4()); err != nil {
			return fmt.Errorf("default route via %s: %w", gw, err)
		}
	}
	return nil
}

// DefaultRoutes lists the namespace's default routes through a gateway,
// of both families, with their interfaces' names.
func DefaultRoutes(ns *kernel.NS) ([]store.Route, error) {
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

// RestoreRoutes puts back default routes, those whose interface is still
// there; routes still there (of another metric) stay as they are.
func RestoreRoutes(ns *kernel.NS, routes []store.Route, where string) error {
	var errs []error
	for _, r := range routes {
		l, err := ns.LinkByName(r.Dev)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if l == nil {
			continue
		}
		route := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: r.Gateway.AsSlice(), Priority: r.Priority,
			Dst: kernel.PrefixNet(netip.PrefixFrom(Unspecified(r.Gateway), 0))}
		if r.Onlink {
			route.Flags = int(netlink.FLAG_ONLINK)
		}
		if err := ns.NL.RouteAdd(route); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("restore default route via %s dev %s in %s: %w", r.Gateway, r.Dev, where, err))
		}
	}
	return errors.Join(errs...)
}

// Neighbour gives ns a permanent neighbour entry for ip on peer, with mac:
// the member never has to ask.
func Neighbour(ns *kernel.NS, peer netlink.Link, ip netip.Addr, mac net.HardwareAddr) error {
	return ns.NL.NeighSet(&netlink.Neigh{LinkIndex: peer.Attrs().Index, Family: kernel.Family(ip),
		State: netlink.NUD_PERMANENT, IP: ip.AsSlice(), HardwareAddr: mac})
}

// Forwarding turns on forwarding in h for the families of subnets.
func Forwarding(h *kernel.NS, subnets []netip.Prefix) error {
	var s []kernel.Sysctl
	for _, p := range subnets {
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

// CheckRoutes refuses subnets that overlap a route of the host: the
// network would take over addresses the host reaches elsewhere. Routes on
// the device called lan (a macvlan's parent, whose segment the network
// shares) do not count.
func CheckRoutes(h *kernel.NS, subnets []netip.Prefix, lan string) error {
	lanIndex := -1
	if lan != "" {
		l, err := h.LinkByName(lan)
		if err != nil {
			return err
		}
		if l != nil {
			lanIndex = l.Attrs().Index
		}
	}
	for _, p := range subnets {
		routes, err := h.Routes(kernel.Family(p.Addr()))
		if err != nil {
			return fmt.Errorf("read host routes: %w", err)
		}
		for _, r := range routes {
			dst := r.Dst
			if dst.Bits() == 0 || dst.Addr().IsLinkLocalUnicast() || dst.Addr().IsMulticast() || r.Oif == lanIndex {
				continue
			}
			if dst.Masked().Overlaps(p) {
				return fmt.Errorf("subnet %s overlaps the host route to %s", p, dst.Masked())
			}
		}
	}
	return nil
}

// DeleteLink deletes the device called name in ns, if it is there. nsnet
// reserved or checked the name before making the device, so one by that
// name is nsnet's own if it is of the kind nsnet made (typ); a device of
// another kind is left alone, with an error.
func DeleteLink(ns *kernel.NS, name, typ, where string) error {
	l, err := ns.LinkByName(name)
	if err != nil || l == nil {
		return err
	}
	if l.Type() != typ {
		return fmt.Errorf("interface %s in %s is a %s, not the %s nsnet made", name, where, l.Type(), typ)
	}
	return deleteFound(ns, l, where)
}

// deleteFound deletes a device looked up before. One that went in between
// is no error: a veth does when the namespace of its other end is deleted,
// which the kernel finishes asynchronously after `ip netns del` returns.
func deleteFound(ns *kernel.NS, l netlink.Link, where string) error {
	if err := ns.NL.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete %s %s in %s: %w", l.Type(), l.Attrs().Name, where, err)
	}
	return nil
}

// DeleteHostEnd deletes a member's veth by its host end, which takes the
// peer and every route through it along; a host that is gone (nil) took
// them already. The name was checked free in the host and reserved in the
// store before the veth was made, so a veth by that name is the member's.
func DeleteHostEnd(h *kernel.NS, name string) error {
	if h == nil {
		return nil
	}
	return DeleteLink(h, name, "veth", "the host")
}

// HostEnd returns a member's host end for repair, or nil when its veth is
// gone: a veth pair dies whole, so whatever is left of the member's end is
// deleted too, and the member can be plugged anew.
func HostEnd(h, ns *kernel.NS, hostIf, ifName, where string) (netlink.Link, error) {
	hostEnd, err := h.LinkByName(hostIf)
	if err != nil || hostEnd != nil {
		return hostEnd, err
	}
	return nil, DeleteLink(ns, ifName, "veth", where)
}

// RandomMAC is a random unicast, locally administered MAC.
func RandomMAC() net.HardwareAddr {
	mac := make(net.HardwareAddr, 6)
	rand.Read(mac)
	mac[0] = mac[0]&0xfe | 0x02
	return mac
}

// Unspecified is the zero address of a's family.
func Unspecified(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

// Gone reports whether err means a namespace (and so everything inside it)
// no longer exists: nothing is left to undo there.
func Gone(err error) bool {
	return errors.Is(err, netns.ErrNotExist) || errors.Is(err, os.ErrNotExist)
}

// OpenNamespace binds a handle to a named namespace.
func OpenNamespace(name string) (*kernel.NS, error) {
	if !netns.Exists(name) {
		return nil, fmt.Errorf("namespace %q: %w", name, netns.ErrNotExist)
	}
	return kernel.Open(netns.Path(name))
}

// OpenLiveNamespace is OpenNamespace for teardown paths: a namespace that
// is gone took everything nsnet made in it along, and gives nil, nil.
func OpenLiveNamespace(name string) (*kernel.NS, error) {
	ns, err := OpenNamespace(name)
	if Gone(err) {
		return nil, nil
	}
	return ns, err
}

// RouteProto marks the routes nsnet installs between a lab's hosts, so
// that they are told apart from the host's own and removed by that mark
// (`ip route` shows "proto 110" unless /etc/iproute2/rt_protos names it).
const RouteProto netlink.RouteProtocol = 110

// StaticRoute routes dst via the gateway gw in host h, replacing a route
// to dst that is there already.
func StaticRoute(h *kernel.NS, dst netip.Prefix, gw netip.Addr) error {
	r := &netlink.Route{Dst: kernel.PrefixNet(dst), Gw: gw.AsSlice(), Protocol: RouteProto}
	if err := h.NL.RouteReplace(r); err != nil {
		return fmt.Errorf("route %s via %s: %w", dst, gw, err)
	}
	return nil
}

// DeleteStaticRoute removes nsnet's route to dst from host h; one that is
// gone already is no error.
func DeleteStaticRoute(h *kernel.NS, dst netip.Prefix) error {
	r := &netlink.Route{Dst: kernel.PrefixNet(dst), Protocol: RouteProto}
	if err := h.NL.RouteDel(r); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("remove route %s: %w", dst, err)
	}
	return nil
}
