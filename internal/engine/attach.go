package engine

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"

	"github.com/nsnet/nsnet/internal/crash"
	"github.com/nsnet/nsnet/internal/driver"
	"github.com/nsnet/nsnet/internal/drivers"
	"github.com/nsnet/nsnet/internal/firewall"
	"github.com/nsnet/nsnet/internal/ipam"
	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/netns"
	"github.com/nsnet/nsnet/internal/plumb"
	"github.com/nsnet/nsnet/internal/store"
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
	// DefaultRoute moves the namespace's default route to this network.
	DefaultRoute bool
	// Ports are published on the host.
	Ports []store.PortMap
	// Aliases are further names the network's resolver answers for.
	Aliases []string
	// Force publishes ports that a socket of the host already holds,
	// taking them over for connections from outside.
	Force bool
	// ContainerID records the runtime's container of a CNI ADD.
	ContainerID string
	// Clustered says package cluster chose IPv4 from this host's blocks;
	// a cluster network takes members only so.
	Clustered bool
}

// Connect joins a namespace to a network.
func (m *Manager) Connect(spec ConnectSpec) (MemberInfo, error) {
	a, err := m.connect(spec)
	if err != nil {
		return MemberInfo{}, fmt.Errorf("connect %s to %s: %w", spec.Namespace, spec.Network, err)
	}
	return memberInfo(a), nil
}

func (m *Manager) connect(spec ConnectSpec) (store.Attachment, error) {
	if !m.nsExists(spec.Namespace) {
		if err := netns.ValidateName(spec.Namespace); err != nil {
			return store.Attachment{}, fmt.Errorf("namespace %q: %w", spec.Namespace, err)
		}
		return store.Attachment{}, fmt.Errorf("namespace %q: %w", spec.Namespace, errNoNamespace)
	}
	ns, err := m.openNamespace(spec.Namespace)
	if err != nil {
		return store.Attachment{}, err
	}
	defer ns.Close()

	var n store.Network
	var d driver.Driver
	var h *kernel.NS
	a := store.Attachment{Network: spec.Network, Namespace: spec.Namespace, IfName: spec.IfName, ContainerID: spec.ContainerID}
	err = m.transact(func(tx *store.Tx) (store.Op, error) {
		var ok bool
		var err error
		n, ok, err = tx.Network(spec.Network)
		if err != nil {
			return store.Op{}, err
		}
		if !ok {
			return store.Op{}, fmt.Errorf("network %q: %w", spec.Network, ErrNoNetwork)
		}
		if d, err = drivers.Of(n); err != nil {
			return store.Op{}, err
		}
		if n.Cluster != nil && len(spec.Ports) > 0 {
			return store.Op{}, fmt.Errorf("network %q: published ports are not offered on cluster networks", n.Name)
		}
		if n.Cluster != nil && !spec.Clustered {
			// An address of this host's blocks, known locally: no etcd.
			// Without one (blocks full, or an address elsewhere asked
			// for), nsnet-cluster claims a block or says why not.
			a4, ok := clusterAddr(tx, n, spec.IPv4)
			if !ok || spec.IPv6.IsValid() {
				return store.Op{}, fmt.Errorf("network %q: %w", spec.Network, ErrClusterNetwork)
			}
			spec.IPv4 = a4
		}
		if spec.DefaultRoute && n.Internal {
			return store.Op{}, fmt.Errorf("network %q is internal: it gives its members no default route", n.Name)
		}
		caps := d.Caps()
		if _, ok, err := tx.Attachment(n.Name, spec.Namespace); err != nil {
			return store.Op{}, err
		} else if ok {
			return store.Op{}, errorf(ErrExists, "namespace %q is already connected to network %q", spec.Namespace, n.Name)
		}
		if h, err = m.host(n.HostNetns); err != nil {
			return store.Op{}, err
		}
		if a.IfName, err = plumb.FreeName(ns, spec.IfName, "eth"); err != nil {
			return store.Op{}, err
		}
		reserved, err := d.Reserved(h, n)
		if err != nil {
			return store.Op{}, err
		}
		if a.Addrs, err = leaseAddrs(tx, n, spec, reserved); err != nil {
			return store.Op{}, err
		}
		if caps.HostRoutes {
			for i, p := range a.Addrs {
				a.Addrs[i] = netip.PrefixFrom(p.Addr(), p.Addr().BitLen())
			}
		}
		if caps.HostEnd {
			if a.HostIf, err = pickHostIf(tx, h, n.Name, spec.Namespace); err != nil {
				return store.Op{}, err
			}
		}
		if err := checkPorts(tx, h, n, caps, a, spec.Ports, spec.Force); err != nil {
			return store.Op{}, err
		}
		aliases, err := checkAliases(tx, n, a.Namespace, spec.Aliases)
		if err != nil {
			return store.Op{}, err
		}
		a.Ports, a.Aliases = spec.Ports, aliases
		var routes []store.Route
		if spec.DefaultRoute {
			if routes, err = plumb.DefaultRoutes(ns); err != nil {
				return store.Op{}, fmt.Errorf("read default routes in %s: %w", a.Namespace, err)
			}
		}
		ino, err := inode(h)
		if err != nil {
			return store.Op{}, err
		}
		return store.Op{Kind: store.OpConnect, Driver: n.Driver, Network: n.Name, Namespace: a.Namespace,
			HostNetns: n.HostNetns, HostIno: ino, HostIf: a.HostIf, IfName: a.IfName, Addrs: a.Addrs, Ports: a.Ports, Routes: routes}, nil
	}, func(tx *store.Tx, op store.Op) error {
		crash.Point("connect/recorded")
		if err := d.Plug(h, ns, n, a, spec.DefaultRoute); err != nil {
			return err
		}
		if ports := expandPorts(a.Ports, a.Addrs); len(ports) > 0 {
			// The first published port of a host brings the DNAT chains.
			if !tx.HostHasPorts(n.HostNetns) {
				nets, err := hostNetworks(tx, n.HostNetns, "")
				if err != nil {
					return err
				}
				if err := m.syncHost(h, nets, true, &firewall.Changes{}); err != nil {
					return err
				}
			}
			fw, err := m.firewall(h)
			if err != nil {
				return err
			}
			if err := fw.Publish(ports, nil); err != nil {
				return err
			}
			if err := recordPorts(tx, n.HostNetns, n.Name, a.Namespace, a.Ports); err != nil {
				return err
			}
		}
		if err := m.setResolver(a.Namespace, n, true); err != nil {
			return err
		}
		crash.Point("connect/plugged")
		for _, p := range a.Addrs {
			if err := tx.PutLease(n.Name, p.Addr(), store.MemberOwner(n.Name, a.Namespace)); err != nil {
				return err
			}
		}
		if a.HostIf != "" {
			if err := tx.ReserveIfName(a.HostIf, store.MemberOwner(n.Name, a.Namespace)); err != nil {
				return err
			}
		}
		return tx.PutAttachment(a)
	}, func(op store.Op) error {
		return errors.Join(m.unpublish(op), m.unplug(op), m.setResolver(a.Namespace, n, false), m.restoreRoutes(op), m.resyncPorts(op))
	})
	return a, err
}

// leaseAddrs picks the member's addresses, one per subnet, never one of
// reserved (the host's own on a segment it shares with the network: those
// are leased to the host as they are met, so later searches skip them).
func leaseAddrs(tx *store.Tx, n store.Network, spec ConnectSpec, reserved []netip.Addr) ([]netip.Prefix, error) {
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
			if slices.Contains(reserved, want) {
				return nil, errorf(ErrInUse, "address %s is the host's own on network %q's segment", want, n.Name)
			}
			if owner, ok := tx.LeaseOwner(n.Name, want); ok {
				if owner.Kind == store.OwnerGateway {
					return nil, errorf(ErrInUse, "address %s is the gateway of network %q", want, n.Name)
				}
				return nil, errorf(ErrInUse, "address %s is already leased to %s", want, describeLeaseOwner(owner))
			}
			out = append(out, netip.PrefixFrom(want, p.Bits()))
			continue
		}
		// Without --ip-range the whole subnet is the range.
		rng, start := p, ipam.FirstUsable(p)
		for _, r := range n.IPRanges {
			if p.Contains(r.Addr()) {
				rng, start = r, ipam.RangeFirst(p, r)
			}
		}
		var a netip.Addr
		for range len(reserved) + 1 {
			from := tx.FreeHint(n.Name, start)
			var err error
			if a, err = ipam.FirstFree(p, from, tx.LeasedFrom(n.Name, from)); err == nil && !rng.Contains(a) {
				err = fmt.Errorf("ip range %s has no free address", rng)
			}
			if err != nil {
				return nil, fmt.Errorf("network %q: %w", n.Name, errorf(ErrFull, "%v", err))
			}
			if !slices.Contains(reserved, a) {
				break
			}
			if err := tx.PutLease(n.Name, a, store.HostOwner(n.Name)); err != nil {
				return nil, err
			}
			if err := tx.SetFreeHint(n.Name, a.Next()); err != nil {
				return nil, err
			}
		}
		// Everything below a is leased and a is about to be: the next
		// search may start above it. The transaction undoes this if the
		// connect fails.
		if err := tx.SetFreeHint(n.Name, a.Next()); err != nil {
			return nil, err
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
		name := fmt.Sprintf("%s%08x", firewall.HostIfPrefix, f.Sum32())
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
	return "", errorf(ErrFull, "no free host interface name")
}

// Disconnect removes a namespace from a network.
func (m *Manager) Disconnect(network, ns string) error {
	var n store.Network
	err := m.transact(func(tx *store.Tx) (store.Op, error) {
		var ok bool
		var err error
		n, ok, err = tx.Network(network)
		if err != nil {
			return store.Op{}, err
		}
		if !ok {
			return store.Op{}, fmt.Errorf("network %q: %w", network, ErrNoNetwork)
		}
		a, ok, err := tx.Attachment(network, ns)
		if err != nil {
			return store.Op{}, err
		}
		if !ok {
			return store.Op{}, errorf(ErrNotFound, "namespace %q is not connected to network %q", ns, network)
		}
		return store.Op{Kind: store.OpDisconnect, Driver: n.Driver, Network: network, Namespace: ns,
			HostNetns: n.HostNetns, HostIno: n.HostIno, HostIf: a.HostIf, IfName: a.IfName, Addrs: a.Addrs, Ports: a.Ports}, nil
	}, func(tx *store.Tx, op store.Op) error {
		crash.Point("disconnect/recorded")
		if err := m.unpublish(op); err != nil {
			return err
		}
		if err := m.setResolver(ns, n, false); err != nil {
			return err
		}
		if err := m.unplug(op); err != nil {
			return err
		}
		crash.Point("disconnect/veth-deleted")
		if err := forgetAttachment(tx, op); err != nil {
			return err
		}
		// The last published port of a host takes the DNAT chains along.
		if len(op.Ports) == 0 || tx.HostHasPorts(op.HostNetns) {
			return nil
		}
		h, err := m.opHost(op)
		if err != nil || h == nil {
			return err
		}
		nets, err := hostNetworks(tx, op.HostNetns, "")
		if err != nil {
			return err
		}
		return m.syncHost(h, nets, false, &firewall.Changes{})
	}, nil)
	if err != nil {
		return fmt.Errorf("disconnect %s from %s: %w", ns, network, err)
	}
	if err := m.keepDefaultRoute(ns); err != nil {
		return fmt.Errorf("disconnect %s from %s: done, but %w", ns, network, err)
	}
	return nil
}

// forgetAttachment drops a membership with its leases, published ports
// and host interface name.
func forgetAttachment(tx *store.Tx, op store.Op) error {
	if err := forgetPorts(tx, op.HostNetns, op.Network, op.Namespace, op.Ports); err != nil {
		return err
	}
	for _, p := range op.Addrs {
		if owner, ok := tx.LeaseOwner(op.Network, p.Addr()); ok && owner == store.MemberOwner(op.Network, op.Namespace) {
			if err := tx.DeleteLease(op.Network, p.Addr()); err != nil {
				return err
			}
		}
	}
	if owner, ok := tx.IfNameOwner(op.HostIf); ok && owner == store.MemberOwner(op.Network, op.Namespace) {
		if err := tx.ReleaseIfName(op.HostIf); err != nil {
			return err
		}
	}
	return tx.DeleteAttachment(op.Network, op.Namespace)
}

func describeLeaseOwner(owner store.Owner) string {
	switch owner.Kind {
	case store.OwnerTap:
		return fmt.Sprintf("TAP %s", owner.Name)
	case store.OwnerHost:
		return "the host"
	case store.OwnerAux:
		return fmt.Sprintf("the auxiliary address %q", owner.Name)
	}
	return fmt.Sprintf("namespace %q", owner.Name)
}

// keepDefaultRoute gives a namespace that left a network a default route
// through the networks it is still in, where the one it left took its
// route along (its device went): the first network by name that has a
// gateway of the family.
func (m *Manager) keepDefaultRoute(name string) error {
	var atts []store.Attachment
	nets := map[string]store.Network{}
	if err := m.st.View(func(tx *store.Tx) (err error) {
		if atts, err = tx.AttachmentsOf(name); err != nil {
			return err
		}
		for _, a := range atts {
			n, _, err := tx.Network(a.Network)
			if err != nil {
				return err
			}
			nets[a.Network] = n
		}
		return nil
	}); err != nil || len(atts) == 0 {
		return err
	}
	ns, err := m.openLiveNamespace(name)
	if err != nil || ns == nil {
		return err
	}
	defer ns.Close()
	for _, a := range atts {
		n := nets[a.Network]
		d, err := drivers.Of(n)
		if err != nil {
			return err
		}
		if err := d.DefaultRoute(ns, n, a); err != nil {
			return fmt.Errorf("default route of %s through network %s: %w", name, n.Name, err)
		}
	}
	return nil
}

// clusterAddr picks want, or the first free address, of the blocks this
// host holds of cluster network n; a block's first address is the host's
// own (its vxlan device's), never a member's.
func clusterAddr(tx *store.Tx, n store.Network, want netip.Addr) (netip.Addr, bool) {
	for _, b := range n.Cluster.Blocks {
		for a := b.Addr().Next(); b.Contains(a); a = a.Next() {
			if want.IsValid() && a != want {
				continue
			}
			if _, used := tx.LeaseOwner(n.Name, a); !used {
				return a, true
			}
		}
	}
	return netip.Addr{}, false
}

// AddClusterBlock records a block this host claimed of cluster network
// name, so that its addresses are handed out without asking etcd.
func (m *Manager) AddClusterBlock(name string, b netip.Prefix) error {
	return m.st.Update(func(tx *store.Tx) error {
		n, ok, err := tx.Network(name)
		if err != nil {
			return err
		}
		if !ok || n.Cluster == nil {
			return fmt.Errorf("network %q: %w", name, ErrNoNetwork)
		}
		if slices.Contains(n.Cluster.Blocks, b) {
			return nil
		}
		n.Cluster.Blocks = append(n.Cluster.Blocks, b)
		return tx.PutNetwork(n)
	})
}
