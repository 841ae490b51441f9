package engine

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/nsnet/nsnet/internal/crash"
	"github.com/nsnet/nsnet/internal/driver"
	"github.com/nsnet/nsnet/internal/drivers"
	"github.com/nsnet/nsnet/internal/firewall"
	"github.com/nsnet/nsnet/internal/ipam"
	"github.com/nsnet/nsnet/internal/netns"
	"github.com/nsnet/nsnet/internal/store"
)

// DefaultDriver is the driver of a network made without --driver.
const DefaultDriver = drivers.Default

// DriverNames lists the drivers `net create --driver` takes.
func DriverNames() []string { return drivers.Names() }

// NetworkSpec is what `net create` asks for.
type NetworkSpec struct {
	Name     string
	Driver   string
	Subnets  []netip.Prefix
	Gateways []netip.Addr
	NoNAT    bool
	// NAT asks a routed network for masquerade, which it lacks by default.
	NAT      bool
	Internal bool
	MTU      int
	// Options are the driver's own settings, by flag name (bridge-name,
	// parent).
	Options map[string]string
	// NoHostFirewall keeps nsnet from adding accepts to other tables'
	// forward chains that drop.
	NoHostFirewall bool
	// NoIsolate lets members reach other networks' members directly.
	NoIsolate bool
	// DNS is nil for the driver's default: on where the driver gives the
	// host an address for a resolver.
	DNS          *bool
	DNSUpstreams []netip.Addr
	// IPRanges limit the addresses handed out without an explicit one,
	// one per family (Docker's --ip-range).
	IPRanges []netip.Prefix
	// AuxAddresses are kept from members, by name (Docker's
	// --aux-address).
	AuxAddresses map[string]netip.Addr
	// HostNetns is the path of the namespace the network lives in; empty
	// means the manager's host (Config.HostNetns). Labs use it to put
	// networks on the hosts they simulate.
	HostNetns string
	// Cluster makes the network this host's part of a cluster network
	// (package cluster decides its members' addresses).
	Cluster *store.ClusterNet
}

// CreateNetwork validates spec, builds it in the host namespace and records it.
func (m *Manager) CreateNetwork(spec NetworkSpec) (NetworkInfo, error) {
	n, d, err := m.planNetwork(spec)
	if err != nil {
		return NetworkInfo{}, fmt.Errorf("network %q: %w", spec.Name, err)
	}
	err = m.transact(func(tx *store.Tx) (store.Op, error) {
		op := store.Op{Kind: store.OpNetCreate, Driver: n.Driver, Network: n.Name, HostNetns: n.HostNetns, Device: d.Device(n), Subnets: n.Subnets}
		if err := m.checkNetworkFree(tx, d, n); err != nil {
			return op, err
		}
		h, err := m.host(n.HostNetns)
		if err != nil {
			return op, err
		}
		op.HostIno, err = inode(h)
		return op, err
	}, func(tx *store.Tx, op store.Op) error {
		crash.Point("net-create/recorded")
		if err := m.buildNetwork(tx, d, &n); err != nil {
			return err
		}
		crash.Point("net-create/built")
		if err := tx.PutNetwork(n); err != nil {
			return err
		}
		for i, gw := range n.Gateways {
			if gatewayIn(n.Subnets[i], gw) {
				if err := tx.PutLease(n.Name, gw, store.GatewayOwner(n.Name)); err != nil {
					return err
				}
			}
		}
		for name, a := range n.AuxAddresses {
			if err := tx.PutLease(n.Name, a, store.AuxOwner(n.Name, name)); err != nil {
				return err
			}
		}
		if op.Device == "" {
			return nil
		}
		return tx.ReserveIfName(op.Device, store.NetworkOwner(n.Name))
	}, func(op store.Op) error { return m.unbuild(nil, op) })
	if err != nil {
		return NetworkInfo{}, fmt.Errorf("network %q: %w", spec.Name, err)
	}
	return networkInfo(n, nil), nil
}

// PlanNetwork checks spec as CreateNetwork would before it looks at the
// store or the kernel, and returns the network it would record: with the
// gateways and options the driver chose.
func (m *Manager) PlanNetwork(spec NetworkSpec) (store.Network, error) {
	n, _, err := m.planNetwork(spec)
	return n, err
}

// planNetwork checks everything about spec that does not need the store,
// and asks the driver for its share.
func (m *Manager) planNetwork(spec NetworkSpec) (store.Network, driver.Driver, error) {
	if err := netns.ValidateName(spec.Name); err != nil {
		return store.Network{}, nil, err
	}
	d, err := drivers.Lookup(spec.Driver)
	if err != nil {
		return store.Network{}, nil, err
	}
	if len(spec.Subnets) == 0 {
		return store.Network{}, nil, errors.New("a --subnet is required")
	}
	switch {
	case spec.NAT && spec.NoNAT:
		return store.Network{}, nil, errors.New("--nat and --no-nat contradict each other")
	case spec.Internal && spec.NAT:
		return store.Network{}, nil, errors.New("--internal networks reach nothing outside, so --nat contradicts it")
	}
	n := store.Network{
		Name: spec.Name, Driver: d.Name(), Internal: spec.Internal,
		MTU: spec.MTU, HostNetns: cmp.Or(spec.HostNetns, m.cfg.HostNetns), Created: time.Now().UTC(), NoHostFirewall: spec.NoHostFirewall,
		NoIsolate: spec.NoIsolate, Cluster: spec.Cluster,
	}
	caps := d.Caps()
	n.DNS = caps.DNS != driver.NoDNS
	if spec.DNS != nil {
		n.DNS = *spec.DNS
	}
	if n.DNS && caps.DNS == driver.NoDNS {
		return n, nil, fmt.Errorf("DNS needs an address for the resolver, and a %s network gives the host none; use --dns=false", d.Name())
	}
	if len(spec.DNSUpstreams) > 0 && !n.DNS {
		return n, nil, errors.New("--dns-upstream needs DNS on")
	}
	n.DNSUpstreams = spec.DNSUpstreams
	if spec.MTU != 0 && (spec.MTU < 68 || spec.MTU > 65535) {
		return n, nil, fmt.Errorf("MTU %d is outside 68..65535", spec.MTU)
	}
	var seen4, seen6 bool
	for _, p := range spec.Subnets {
		if p.Addr().Is6() && spec.MTU != 0 && spec.MTU < 1280 {
			return n, nil, fmt.Errorf("MTU %d is below IPv6's minimum of 1280, and subnet %s is IPv6", spec.MTU, p)
		}
		if p != p.Masked() {
			return n, nil, fmt.Errorf("subnet %s has host bits set; did you mean %s?", p, p.Masked())
		}
		if min := map[bool]int{true: 8, false: 48}[p.Addr().Is4()]; p.Bits() < min {
			return n, nil, fmt.Errorf("subnet %s is wider than /%d; it would take over the host's routing", p, min)
		}
		if err := ipam.CheckSubnet(p); err != nil {
			return n, nil, err
		}
		if p.Addr().Is4() && seen4 || p.Addr().Is6() && seen6 {
			return n, nil, fmt.Errorf("subnet %s: at most one IPv4 and one IPv6 subnet", p)
		}
		seen4, seen6 = seen4 || p.Addr().Is4(), seen6 || p.Addr().Is6()
		if p.Bits() > ipam.MinBridgeBits(p) {
			return n, nil, fmt.Errorf("subnet %s is too small for a bridge network (the longest prefix is /%d)", p, ipam.MinBridgeBits(p))
		}
		n.Subnets = append(n.Subnets, p)
	}
	for _, g := range spec.Gateways {
		if !containsFamily(n.Subnets, g) {
			return n, nil, fmt.Errorf("gateway %s: no subnet of its family", g)
		}
	}
	ds := driver.Spec{Name: n.Name, Subnets: n.Subnets, Gateways: spec.Gateways, NAT: spec.NAT, NoNAT: spec.NoNAT, Internal: spec.Internal, Options: map[string]string{}}
	keys := slices.Sorted(maps.Keys(spec.Options))
	for _, k := range keys {
		if v := spec.Options[k]; v != "" {
			if !slices.ContainsFunc(d.Options(), func(o driver.Option) bool { return o.Name == k }) {
				if owner, ok := drivers.OptionOwner(k); ok {
					return n, nil, fmt.Errorf("--%s is for the %s driver", k, owner.Name())
				}
				return n, nil, fmt.Errorf("--%s is not an option of any driver", k)
			}
			ds.Options[k] = v
		}
	}
	if err := d.Plan(ds, &n); err != nil {
		return n, nil, err
	}
	// Drivers say why they refuse --internal; this is the net for one
	// that does not.
	if spec.Internal && !caps.Internal {
		return n, nil, fmt.Errorf("--internal is not for %s networks", d.Name())
	}
	if len(n.Gateways) != len(n.Subnets) {
		return n, nil, fmt.Errorf("driver %s planned %d gateways for %d subnets", d.Name(), len(n.Gateways), len(n.Subnets))
	}
	if err := planAddresses(spec, &n); err != nil {
		return n, nil, err
	}
	return n, d, nil
}

// planAddresses checks and records the network's --ip-range and
// --aux-address settings.
func planAddresses(spec NetworkSpec, n *store.Network) error {
	subnetOf := func(a netip.Addr) (int, bool) {
		for i, p := range n.Subnets {
			if p.Contains(a) {
				return i, true
			}
		}
		return 0, false
	}
	var seen4, seen6 bool
	for _, r := range spec.IPRanges {
		if r != r.Masked() {
			return fmt.Errorf("--ip-range %s has host bits set; did you mean %s?", r, r.Masked())
		}
		i, ok := subnetOf(r.Addr())
		if !ok || r.Bits() < n.Subnets[i].Bits() {
			return fmt.Errorf("--ip-range %s is not inside a subnet of the network", r)
		}
		if r.Addr().Is4() && seen4 || r.Addr().Is6() && seen6 {
			return fmt.Errorf("--ip-range %s: at most one per family", r)
		}
		seen4, seen6 = seen4 || r.Addr().Is4(), seen6 || r.Addr().Is6()
		if !ipam.RangeFirst(n.Subnets[i], r).IsValid() {
			return fmt.Errorf("--ip-range %s holds no address a member could have", r)
		}
		n.IPRanges = append(n.IPRanges, r)
	}
	names := slices.Sorted(maps.Keys(spec.AuxAddresses))
	for _, name := range names {
		a := spec.AuxAddresses[name]
		if name == "" {
			return fmt.Errorf("--aux-address %s has no name (NAME=IP)", a)
		}
		i, ok := subnetOf(a)
		if !ok {
			return fmt.Errorf("--aux-address %s=%s is not inside a subnet of the network", name, a)
		}
		if err := ipam.CheckHost(n.Subnets[i], a); err != nil {
			return fmt.Errorf("--aux-address %s=%s: %w", name, a, err)
		}
		if a == n.Gateways[i] {
			return fmt.Errorf("--aux-address %s=%s is the network's gateway", name, a)
		}
		for _, other := range names {
			if other < name && spec.AuxAddresses[other] == a {
				return fmt.Errorf("--aux-address %s=%s: the address is already %q's", name, a, other)
			}
		}
		if n.AuxAddresses == nil {
			n.AuxAddresses = map[string]netip.Addr{}
		}
		n.AuxAddresses[name] = a
	}
	return nil
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

// checkNetworkFree checks n against the store and the host's kernel state.
func (m *Manager) checkNetworkFree(tx *store.Tx, d driver.Driver, n store.Network) error {
	if _, ok, err := tx.Network(n.Name); err != nil {
		return err
	} else if ok {
		return fmt.Errorf("a network with this name %w", ErrExists)
	}
	if other, p, q, found, err := tx.Overlap(n.HostNetns, n.Subnets); err != nil {
		return err
	} else if found {
		return errorf(ErrInUse, "subnet %s overlaps network %q (%s)", p, other, q)
	}
	h, err := m.host(n.HostNetns)
	if err != nil {
		return err
	}
	if fw, err := m.firewall(h); err != nil {
		return err
	} else if owner, err := fw.Owner(); err != nil {
		return err
	} else if owner != "" && owner != m.cfg.StateDir {
		return &firewall.OwnedError{Owner: owner}
	}
	taken := func(name string) (string, bool) {
		owner, ok := tx.IfNameOwner(name)
		return owner.String(), ok
	}
	return d.Check(h, n, taken)
}

// buildNetwork makes the host match a network; every step may be repeated.
// It records in n which host forward chains it opened.
func (m *Manager) buildNetwork(tx *store.Tx, d driver.Driver, n *store.Network) error {
	h, err := m.host(n.HostNetns)
	if err != nil {
		return err
	}
	if n.HostIno, err = h.Fd().Inode(); err != nil {
		return fmt.Errorf("host namespace %s: %w", describeHost(n.HostNetns), err)
	}
	if err := d.Build(h, *n); err != nil {
		return err
	}
	if !d.Caps().Firewall {
		return nil
	}
	if err := m.addToHost(tx, h, *n); err != nil {
		return err
	}
	if n.Internal || n.NoHostFirewall {
		return nil
	}
	fw, err := m.firewall(h)
	if err != nil {
		return err
	}
	refs, err := fw.OpenForward(firewallNetwork(*n))
	if err != nil {
		return err
	}
	for _, r := range refs {
		n.ForwardAccepts = append(n.ForwardAccepts, store.ChainRef{Family: firewall.FamilyName(r.Family), Table: r.Table, Chain: r.Chain})
	}
	return nil
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
			return ErrNoNetwork
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
		what := fmt.Sprintf("%d member(s)", len(members))
		if len(taps) > 0 {
			what += fmt.Sprintf(" and %d TAP device(s)", len(taps))
		}
		return errorf(ErrInUse, "network %q has %s; disconnect them or use --force", name, what)
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
		return store.Op{Kind: store.OpNetRemove, Driver: n.Driver, Network: name, HostNetns: n.HostNetns, HostIno: n.HostIno, Device: deviceOf(n), Subnets: n.Subnets}, nil
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

// unbuild removes a network's rules and devices from its host: the host
// is rebuilt for its other networks, read from tx or, when tx is nil, from
// the store.
func (m *Manager) unbuild(tx *store.Tx, op store.Op) error {
	h, err := m.opHost(op)
	if err != nil || h == nil {
		return err
	}
	d, err := drivers.ForOp(op)
	if err != nil {
		return err
	}
	if d.Caps().Firewall {
		if tx != nil {
			var nets []store.Network
			if nets, err = hostNetworks(tx, op.HostNetns, op.Network); err != nil {
				return err
			}
			// The network's record gives its elements; without it (an
			// undone create never recorded it) the table is rebuilt.
			var changes *firewall.Changes
			if n, ok, err := tx.Network(op.Network); err != nil {
				return err
			} else if ok {
				changes = &firewall.Changes{Removed: []firewall.Network{firewallNetwork(n)}}
			}
			err = m.syncHost(h, nets, tx.HostHasPorts(op.HostNetns), changes)
		} else {
			err = m.resyncHost(op.HostNetns, op.Network)
		}
		if err != nil {
			return err
		}
		fw, err := m.firewall(h)
		if err != nil {
			return err
		}
		if err := fw.CloseForward(op.Network); err != nil {
			return err
		}
	}
	crash.Point("net-rm/rules-removed")
	return d.Unbuild(h, op)
}

// forgetNetwork drops a network's record, leases and device name.
func forgetNetwork(tx *store.Tx, op store.Op) error {
	if owner, ok := tx.IfNameOwner(op.Device); ok && op.Device != "" && owner == store.NetworkOwner(op.Network) {
		if err := tx.ReleaseIfName(op.Device); err != nil {
			return err
		}
	}
	return tx.DeleteNetwork(op.Network)
}

// deviceOf is the host device network n owns, if any.
func deviceOf(n store.Network) string {
	d, err := drivers.Of(n)
	if err != nil {
		return ""
	}
	return d.Device(n)
}

// Networks lists every network.
func (m *Manager) Networks() ([]NetworkInfo, error) {
	out := []NetworkInfo{}
	err := m.st.View(func(tx *store.Tx) error {
		nets, err := tx.Networks()
		if err != nil {
			return err
		}
		all, err := tx.AllMembers()
		if err != nil {
			return err
		}
		taps, err := tx.Taps()
		for _, n := range nets {
			info := networkInfo(n, all[n.Name])
			for _, d := range taps {
				if d.Network == n.Name {
					info.Taps = append(info.Taps, tapInfo(d))
				}
			}
			out = append(out, info)
		}
		return err
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
			return ErrNoNetwork
		}
		members, err := tx.Members(name)
		if err != nil {
			return err
		}
		out = networkInfo(n, members)
		taps, err := tx.Taps()
		for _, d := range taps {
			if d.Network == name {
				out.Taps = append(out.Taps, tapInfo(d))
			}
		}
		return err
	})
	if err != nil {
		return out, fmt.Errorf("network %q: %w", name, err)
	}
	return out, nil
}
