package engine

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nsnet/nsnet/internal/crash"
	"github.com/nsnet/nsnet/internal/firewall"
	"github.com/nsnet/nsnet/internal/ipam"
	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/netns"
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
	a := store.Attachment{Network: spec.Network, Namespace: spec.Namespace, IfName: spec.IfName}
	err = m.transact(func(tx *store.Tx) (store.Op, error) {
		var ok bool
		var err error
		n, ok, err = tx.Network(spec.Network)
		if err != nil {
			return store.Op{}, err
		}
		if !ok {
			return store.Op{}, fmt.Errorf("network %q: no such network", spec.Network)
		}
		if _, ok, err := tx.Attachment(n.Name, spec.Namespace); err != nil {
			return store.Op{}, err
		} else if ok {
			return store.Op{}, fmt.Errorf("namespace %q is already connected to network %q", spec.Namespace, n.Name)
		}
		if h, err = m.host(n.HostNetns); err != nil {
			return store.Op{}, err
		}
		if a.IfName, err = pickName(ns, spec.IfName, "eth"); err != nil {
			return store.Op{}, err
		}
		if a.Addrs, err = leaseAddrs(tx, n, spec); err != nil {
			return store.Op{}, err
		}
		if n.Driver == DriverRouted {
			for i, p := range a.Addrs {
				a.Addrs[i] = netip.PrefixFrom(p.Addr(), p.Addr().BitLen())
			}
		}
		if n.Driver != DriverMacvlan {
			if a.HostIf, err = pickHostIf(tx, h, n.Name, spec.Namespace); err != nil {
				return store.Op{}, err
			}
		}
		if err := checkPorts(tx, h, n, a, spec.Ports); err != nil {
			return store.Op{}, err
		}
		if err := checkAliases(tx, n, a.Namespace, spec.Aliases); err != nil {
			return store.Op{}, err
		}
		a.Ports, a.Aliases = spec.Ports, spec.Aliases
		var routes []store.Route
		if spec.DefaultRoute {
			if routes, err = defaultRoutes(ns); err != nil {
				return store.Op{}, fmt.Errorf("read default routes in %s: %w", a.Namespace, err)
			}
		}
		return store.Op{Kind: store.OpConnect, Network: n.Name, Namespace: a.Namespace,
			HostNetns: n.HostNetns, HostIf: a.HostIf, IfName: a.IfName, Addrs: a.Addrs, Ports: a.Ports, Routes: routes}, nil
	}, func(tx *store.Tx, op store.Op) error {
		crash.Point("connect/recorded")
		if err := m.plug(h, ns, n, a, spec.DefaultRoute); err != nil {
			return err
		}
		if ports := expandPorts(a.Ports, a.Addrs); len(ports) > 0 {
			// The first published port of a host brings the DNAT chains.
			if !tx.HostHasPorts(n.HostNetns) {
				nets, err := hostNetworks(tx, n.HostNetns, "")
				if err != nil {
					return err
				}
				if err := syncHost(h, nets, true); err != nil {
					return err
				}
			}
			fw, err := firewall.New(int(h.Fd()))
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
		if err := setResolver(a.Namespace, n, true); err != nil {
			return err
		}
		crash.Point("connect/plugged")
		for _, p := range a.Addrs {
			if err := tx.PutLease(n.Name, p.Addr(), a.Namespace); err != nil {
				return err
			}
		}
		if a.HostIf != "" {
			if err := tx.ReserveIfName(a.HostIf, ownerAttachment(n.Name, a.Namespace)); err != nil {
				return err
			}
		}
		return tx.PutAttachment(a)
	}, func(op store.Op) error {
		return errors.Join(m.unpublish(op), m.unplug(op), setResolver(a.Namespace, n, false), restoreRoutes(op), m.resyncPorts(op))
	})
	return a, err
}

// pickName checks a requested interface name, or finds the first free
// prefixN (eth0, eth1, … for members; veth0, … for links).
func pickName(ns *kernel.NS, want, prefix string) (string, error) {
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
				if owner == gatewayOwner {
					return nil, fmt.Errorf("address %s is the gateway of network %q", want, n.Name)
				}
				return nil, fmt.Errorf("address %s is already leased to %s", want, describeLeaseOwner(owner))
			}
			out = append(out, netip.PrefixFrom(want, p.Bits()))
			continue
		}
		from := tx.FreeHint(n.Name, ipam.FirstUsable(p))
		a, err := ipam.FirstFree(p, from, tx.LeasedFrom(n.Name, from))
		if err != nil {
			return nil, fmt.Errorf("network %q: %w", n.Name, err)
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
	return "", errors.New("no free host interface name")
}

// plugVeth creates the member's veth with its peer born inside the member's
// namespace (moving a device between namespaces is slow), then configures
// both ends. Each step may be repeated.
func (m *Manager) plugVeth(h, ns *kernel.NS, n store.Network, a store.Attachment, defaultRoute bool) error {
	br, err := h.LinkByName(n.Bridge)
	if err != nil {
		return err
	}
	if br == nil {
		return fmt.Errorf("bridge %s of network %q is missing (run nsnet gc)", n.Bridge, n.Name)
	}
	veth, err := makeVeth(h, ns, n, a)
	if err != nil {
		return err
	}
	// The host end needs no IPv6 of its own: without a link-local address
	// it sends no DAD, router solicitation or MLD traffic.
	if err := h.NL.LinkSetIP6AddrGenMode(veth, in6AddrGenModeNone); err != nil {
		return fmt.Errorf("configure %s: %w", a.HostIf, err)
	}
	if err := h.NL.LinkSetMasterByIndex(veth, br.Attrs().Index); err != nil {
		if errors.Is(err, unix.EXFULL) {
			// The kernel's count covers every port, TAPs included.
			return fmt.Errorf("network %q is full: bridge %s has %d ports, the kernel's limit", n.Name, n.Bridge, MaxBridgePorts)
		}
		return fmt.Errorf("attach %s to bridge %s: %w", a.HostIf, n.Bridge, err)
	}
	if err := h.NL.LinkSetUp(veth); err != nil {
		return fmt.Errorf("bring up %s: %w", a.HostIf, err)
	}
	peer, err := m.memberUp(ns, a)
	if err != nil {
		return err
	}
	crash.Point("connect/addressed")
	if n.Internal {
		return nil
	}
	for _, gw := range n.Gateways {
		if err := defaultRouteVia(ns, peer, gw, defaultRoute); err != nil {
			return fmt.Errorf("default route in %s: %w", a.Namespace, err)
		}
	}
	return nil
}

// makeVeth creates a member's veth, host end in the host and peer born
// inside the member's namespace, and labels the host end.
func makeVeth(h, ns *kernel.NS, n store.Network, a store.Attachment) (*netlink.Veth, error) {
	veth := &netlink.Veth{
		// The host end's MAC is chosen here so that a routed member can
		// be told it without asking the kernel.
		LinkAttrs: netlink.LinkAttrs{Name: a.HostIf, MTU: n.MTU, TxQLen: -1, HardwareAddr: randomMAC()},
		PeerName:  a.IfName, PeerNamespace: netlink.NsFd(int(ns.Fd())),
	}
	if err := h.NL.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("create veth %s: %w", a.HostIf, err)
	}
	crash.Point("connect/veth-created")
	if err := h.NL.LinkSetAlias(veth, "nsnet "+n.Name+" "+a.Namespace); err != nil {
		return nil, fmt.Errorf("label %s: %w", a.HostIf, err)
	}
	return veth, nil
}

// quietIPv6 keeps a new member from flooding the bridge: each frame a port
// sends to an unknown multicast group is copied to every other port, so DAD
// probes and router solicitations would make every connect cost O(ports).
// IPv4-only members generate no IPv6 address at all (a netlink attribute,
// no thread switch); dual-stack members keep their link-local address but
// skip DAD and router solicitation, which only sysctls can say.
func quietIPv6(ns *kernel.NS, peer netlink.Link, a store.Attachment) error {
	for _, p := range a.Addrs {
		if p.Addr().Is6() {
			base := "net/ipv6/conf/" + a.IfName + "/"
			return ns.SetSysctls(kernel.Sysctl{Key: base + "accept_dad", Value: "0"}, kernel.Sysctl{Key: base + "accept_ra", Value: "0"})
		}
	}
	return ns.NL.LinkSetIP6AddrGenMode(peer, in6AddrGenModeNone)
}

func unspecified(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
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
			return store.Op{}, fmt.Errorf("network %q: no such network", network)
		}
		a, ok, err := tx.Attachment(network, ns)
		if err != nil {
			return store.Op{}, err
		}
		if !ok {
			return store.Op{}, fmt.Errorf("namespace %q is not connected to network %q", ns, network)
		}
		return store.Op{Kind: store.OpDisconnect, Network: network, Namespace: ns,
			HostNetns: n.HostNetns, HostIf: a.HostIf, IfName: a.IfName, Addrs: a.Addrs, Ports: a.Ports}, nil
	}, func(tx *store.Tx, op store.Op) error {
		crash.Point("disconnect/recorded")
		if err := m.unpublish(op); err != nil {
			return err
		}
		if err := setResolver(ns, n, false); err != nil {
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
		h, err := m.liveHost(op.HostNetns)
		if err != nil || h == nil {
			return err
		}
		nets, err := hostNetworks(tx, op.HostNetns, "")
		if err != nil {
			return err
		}
		return syncHost(h, nets, false)
	}, nil)
	if err != nil {
		return fmt.Errorf("disconnect %s from %s: %w", ns, network, err)
	}
	return nil
}

// unplug deletes a member's veth. Deleting the host end takes the peer and
// every route through it along. The name was checked free in the host and
// reserved in the store before the veth was made, so a veth by that name is
// the member's own.
func (m *Manager) unplug(op store.Op) error {
	if op.HostIf == "" {
		return unplugMember(op)
	}
	h, err := m.liveHost(op.HostNetns)
	if err != nil || h == nil {
		return err
	}
	return deleteLink(h, op.HostIf, "veth", "the host")
}

// forgetAttachment drops a membership with its leases, published ports
// and host interface name.
func forgetAttachment(tx *store.Tx, op store.Op) error {
	if err := forgetPorts(tx, op.HostNetns, op.Network, op.Namespace, op.Ports); err != nil {
		return err
	}
	for _, p := range op.Addrs {
		if owner, ok := tx.LeaseOwner(op.Network, p.Addr()); ok && owner == op.Namespace {
			if err := tx.DeleteLease(op.Network, p.Addr()); err != nil {
				return err
			}
		}
	}
	if owner, ok := tx.IfNameOwner(op.HostIf); ok && owner == ownerAttachment(op.Network, op.Namespace) {
		if err := tx.ReleaseIfName(op.HostIf); err != nil {
			return err
		}
	}
	return tx.DeleteAttachment(op.Network, op.Namespace)
}

func describeLeaseOwner(owner string) string {
	if tap, ok := strings.CutPrefix(owner, "tap:"); ok {
		return fmt.Sprintf("TAP %s", tap)
	}
	return fmt.Sprintf("namespace %q", owner)
}
