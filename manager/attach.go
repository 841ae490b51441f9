package manager

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/nsnet/nsnet/crash"
	"github.com/nsnet/nsnet/ipam"
	"github.com/nsnet/nsnet/kernel"
	"github.com/nsnet/nsnet/netns"
	"github.com/nsnet/nsnet/store"
)

// ConnectSpec is what `net connect` asks for.
type ConnectSpec struct {
	Network   string
	Namespace string
	// IPv4 and IPv6 request specific addresses; zero values mean the
	// first free one.
	IPv4, IPv6 netip.Addr
	// IfName is the interface inside the namespace; empty means the first
	// free ethN.
	IfName string
}

// in6AddrGenModeNone stops the kernel from generating a link-local address.
const in6AddrGenModeNone = 1

// Connect joins a namespace to a network.
func (m *Manager) Connect(spec ConnectSpec) (store.Attachment, error) {
	a, err := m.connect(spec)
	if err != nil {
		return a, fmt.Errorf("connect %s to %s: %w", spec.Namespace, spec.Network, err)
	}
	return a, nil
}

func (m *Manager) connect(spec ConnectSpec) (store.Attachment, error) {
	if !netns.Exists(spec.Namespace) {
		if err := netns.ValidateName(spec.Namespace); err != nil {
			return store.Attachment{}, fmt.Errorf("namespace %q: %w", spec.Namespace, err)
		}
		return store.Attachment{}, fmt.Errorf("namespace %q: %w", spec.Namespace, netns.ErrNotExist)
	}
	ns, err := kernel.Open(netns.Path(spec.Namespace))
	if err != nil {
		return store.Attachment{}, err
	}
	defer ns.Close()

	var n store.Network
	var h *kernel.NS
	a := store.Attachment{Network: spec.Network, Namespace: spec.Namespace, IfName: spec.IfName, State: store.StateCreating}
	op := m.op(store.OpConnect, spec.Network, spec.Namespace)
	err = m.st.Update(func(tx *store.Tx) error {
		var ok bool
		var err error
		n, ok, err = tx.Network(spec.Network)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("network %q: no such network", spec.Network)
		}
		if _, ok, err := tx.Attachment(n.Name, spec.Namespace); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("namespace %q is already connected to network %q", spec.Namespace, n.Name)
		}
		if c := tx.MemberCount(n.Name); c >= MaxBridgePorts {
			return fmt.Errorf("network %q is full: bridge %s has %d ports, the kernel's limit", n.Name, n.Bridge, c)
		}
		if h, err = m.host(n.HostNetns); err != nil {
			return err
		}
		if a.IfName, err = pickIfName(ns, spec.IfName); err != nil {
			return err
		}
		if a.Addrs, err = leaseAddrs(tx, n, spec); err != nil {
			return err
		}
		if a.HostIf, err = pickHostIf(tx, h, n.Name, spec.Namespace); err != nil {
			return err
		}
		for _, p := range a.Addrs {
			if err := tx.PutLease(n.Name, p.Addr(), spec.Namespace); err != nil {
				return err
			}
		}
		if err := tx.ReserveIfName(a.HostIf, ownerAttachment(n.Name, spec.Namespace)); err != nil {
			return err
		}
		if err := tx.PutAttachment(a); err != nil {
			return err
		}
		return tx.PutOp(op)
	})
	if err != nil {
		return a, err
	}
	crash.Point("connect/recorded")
	if err := m.plugVeth(h, ns, n, a); err != nil {
		if rerr := m.teardownAttachment(n.Name, spec.Namespace, op); rerr != nil {
			err = errors.Join(err, fmt.Errorf("roll back: %w", rerr))
		}
		return a, err
	}
	crash.Point("connect/plugged")
	a.State = store.StateReady
	err = m.st.Update(func(tx *store.Tx) error {
		if err := tx.PutAttachment(a); err != nil {
			return err
		}
		return tx.DeleteOp(op)
	})
	return a, err
}

// pickIfName checks a requested interface name or finds the first free ethN.
func pickIfName(ns *kernel.NS, want string) (string, error) {
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
		name := fmt.Sprintf("eth%d", i)
		l, err := ns.LinkByName(name)
		if err != nil {
			return "", err
		}
		if l == nil {
			return name, nil
		}
	}
	return "", errors.New("no free ethN interface name in the namespace")
}

// leaseAddrs picks the member's addresses, one per subnet.
func leaseAddrs(tx *store.Tx, n store.Network, spec ConnectSpec) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, want := range []netip.Addr{spec.IPv4, spec.IPv6} {
		if want.IsValid() && !containsFamily(n.Subnets, want) {
			return nil, fmt.Errorf("address %s: network %q has no subnet of its family", want, n.Name)
		}
	}
	for _, p := range n.Subnets {
		want := spec.IPv4
		if p.Addr().Is6() {
			want = spec.IPv6
		}
		if want.IsValid() {
			if err := ipam.CheckHost(p, want); err != nil {
				return nil, fmt.Errorf("address %s: %w", want, err)
			}
			if owner, ok := tx.LeaseOwner(n.Name, want); ok {
				if owner == "(gateway)" {
					return nil, fmt.Errorf("address %s is the gateway of network %q", want, n.Name)
				}
				return nil, fmt.Errorf("address %s is already leased to namespace %q", want, owner)
			}
			out = append(out, netip.PrefixFrom(want, p.Bits()))
			continue
		}
		a, err := ipam.FirstFree(p, tx.LeasedFrom(n.Name, ipam.FirstUsable(p)))
		if err != nil {
			return nil, fmt.Errorf("network %q: %w", n.Name, err)
		}
		out = append(out, netip.PrefixFrom(a, p.Bits()))
	}
	return out, nil
}

// pickHostIf derives the host end's name, at most 15 characters, unused both
// in the store and in the host's kernel.
func pickHostIf(tx *store.Tx, h *kernel.NS, network, ns string) (string, error) {
	for attempt := 0; attempt < 64; attempt++ {
		f := fnv.New32a()
		fmt.Fprintf(f, "%s\x00%s\x00%d", network, ns, attempt)
		name := fmt.Sprintf("nsv%08x", f.Sum32())
		if _, taken := tx.IfNameOwner(name); taken {
			continue
		}
		l, err := h.LinkByName(name)
		if err != nil {
			return "", err
		}
		if l == nil {
			return name, nil
		}
	}
	return "", errors.New("no free host interface name")
}

// plugVeth creates the member's veth with its peer born inside the member's
// namespace (moving a device between namespaces is slow), then configures
// both ends. Each step may be repeated.
func (m *Manager) plugVeth(h, ns *kernel.NS, n store.Network, a store.Attachment) error {
	br, err := h.LinkByName(n.Bridge)
	if err != nil {
		return err
	}
	if br == nil {
		return fmt.Errorf("bridge %s of network %q is missing (run nsnet gc)", n.Bridge, n.Name)
	}
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: a.HostIf, MTU: n.MTU, TxQLen: -1},
		PeerName:  a.IfName, PeerNamespace: netlink.NsFd(int(ns.Fd())),
	}
	if err := h.NL.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s: %w", a.HostIf, err)
	}
	crash.Point("connect/veth-created")
	// The host end needs no IPv6 of its own: without a link-local address
	// it sends no DAD, router solicitation or MLD traffic.
	if err := h.NL.LinkSetIP6AddrGenMode(veth, in6AddrGenModeNone); err != nil {
		return fmt.Errorf("configure %s: %w", a.HostIf, err)
	}
	if err := h.NL.LinkSetAlias(veth, "nsnet "+n.Name+" "+a.Namespace); err != nil {
		return fmt.Errorf("label %s: %w", a.HostIf, err)
	}
	if err := h.NL.LinkSetMasterByIndex(veth, br.Attrs().Index); err != nil {
		return fmt.Errorf("attach %s to bridge %s: %w", a.HostIf, n.Bridge, err)
	}
	if err := h.NL.LinkSetUp(veth); err != nil {
		return fmt.Errorf("bring up %s: %w", a.HostIf, err)
	}
	peer, err := ns.LinkByName(a.IfName)
	if err != nil {
		return err
	}
	if peer == nil {
		return fmt.Errorf("interface %s vanished from namespace %s", a.IfName, a.Namespace)
	}
	if err := ns.SetSysctls(memberSysctls(a)...); err != nil {
		return fmt.Errorf("configure %s in %s: %w", a.IfName, a.Namespace, err)
	}
	for _, p := range a.Addrs {
		if err := ns.NL.AddrReplace(peer, kernel.AddrFor(p.Addr(), p.Bits())); err != nil {
			return fmt.Errorf("address %s on %s: %w", p, a.IfName, err)
		}
	}
	if err := ns.NL.LinkSetUp(peer); err != nil {
		return fmt.Errorf("bring up %s in %s: %w", a.IfName, a.Namespace, err)
	}
	crash.Point("connect/addressed")
	if n.Internal {
		return nil
	}
	for i, gw := range n.Gateways {
		if err := ensureDefaultRoute(ns, peer, gw, n.Subnets[i]); err != nil {
			return fmt.Errorf("default route in %s: %w", a.Namespace, err)
		}
	}
	return nil
}

// memberSysctls keeps a new member from flooding the bridge: each frame a
// port sends to an unknown multicast group is copied to every other port,
// so DAD probes and router solicitations make every connect cost O(ports).
// IPv4-only members get no IPv6 at all, as Docker does; dual-stack members
// keep their link-local address but skip DAD and router solicitation.
func memberSysctls(a store.Attachment) []kernel.Sysctl {
	base := "net/ipv6/conf/" + a.IfName + "/"
	for _, p := range a.Addrs {
		if p.Addr().Is6() {
			return []kernel.Sysctl{{Key: base + "accept_dad", Value: "0"}, {Key: base + "accept_ra", Value: "0"}}
		}
	}
	return []kernel.Sysctl{{Key: base + "disable_ipv6", Value: "1"}}
}

// ensureDefaultRoute adds a default route via gw unless the namespace has
// one of that family already: the first network joined provides it.
func ensureDefaultRoute(ns *kernel.NS, link netlink.Link, gw netip.Addr, subnet netip.Prefix) error {
	routes, err := kernel.Retry(func() ([]netlink.Route, error) {
		return ns.NL.RouteListFiltered(kernel.Family(gw), &netlink.Route{Table: 254}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return err
	}
	for _, r := range routes {
		if d, ok := kernel.ToPrefix(r.Dst); !ok || d.Bits() == 0 {
			return nil
		}
	}
	return ns.NL.RouteReplace(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw.AsSlice(), Dst: kernel.PrefixNet(netip.PrefixFrom(unspecified(gw), 0))})
}

func unspecified(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

// Disconnect removes a namespace from a network.
func (m *Manager) Disconnect(network, ns string) error {
	op := m.op(store.OpDisconnect, network, ns)
	err := m.st.Update(func(tx *store.Tx) error {
		if _, ok, err := tx.Network(network); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("network %q: no such network", network)
		}
		a, ok, err := tx.Attachment(network, ns)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("namespace %q is not connected to network %q", ns, network)
		}
		a.State = store.StateRemoving
		if err := tx.PutAttachment(a); err != nil {
			return err
		}
		return tx.PutOp(op)
	})
	if err != nil {
		return fmt.Errorf("disconnect %s from %s: %w", ns, network, err)
	}
	crash.Point("disconnect/recorded")
	if err := m.teardownAttachment(network, ns, op); err != nil {
		return fmt.Errorf("disconnect %s from %s: %w", ns, network, err)
	}
	return nil
}

// teardownAttachment deletes a member's veth and forgets the membership,
// its leases and its interface name. Deleting the host end takes the peer
// and any route through it with it.
func (m *Manager) teardownAttachment(network, ns string, op store.Op) error {
	var a store.Attachment
	var n store.Network
	var found bool
	err := m.st.View(func(tx *store.Tx) (err error) {
		if a, found, err = tx.Attachment(network, ns); err != nil || !found {
			return err
		}
		n, _, err = tx.Network(network)
		return err
	})
	if err != nil {
		return err
	}
	if found && a.HostIf != "" {
		h, err := m.host(n.HostNetns)
		if err != nil {
			return err
		}
		l, err := h.LinkByName(a.HostIf)
		if err != nil {
			return err
		}
		if l != nil && l.Type() == "veth" {
			if err := h.NL.LinkDel(l); err != nil {
				return fmt.Errorf("delete veth %s: %w", a.HostIf, err)
			}
		}
		crash.Point("disconnect/veth-deleted")
	}
	return m.st.Update(func(tx *store.Tx) error {
		if found {
			for _, p := range a.Addrs {
				if owner, ok := tx.LeaseOwner(network, p.Addr()); ok && owner == ns {
					if err := tx.DeleteLease(network, p.Addr()); err != nil {
						return err
					}
				}
			}
			if owner, ok := tx.IfNameOwner(a.HostIf); ok && owner == ownerAttachment(network, ns) {
				if err := tx.ReleaseIfName(a.HostIf); err != nil {
					return err
				}
			}
			if err := tx.DeleteAttachment(network, ns); err != nil {
				return err
			}
		}
		return tx.DeleteOp(op)
	})
}
