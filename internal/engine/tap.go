package engine

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/nsnet/nsnet/internal/crash"
	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/store"
)

// TapSpec is what `tap create` asks for.
type TapSpec struct {
	Name    string
	Network string
	// IP reserves a specific IPv4 address for the guest.
	IP netip.Addr
}

func ownerTap(name string) string { return "tap\x00" + name }

// tapLeaseOwner holds a TAP's guest addresses in the network's leases.
func tapLeaseOwner(name string) string { return "tap:" + name }

// CreateTap makes a persistent TAP device on a bridge network, with an
// address reserved for the guest that will open it (a VM started with
// -netdev tap,ifname=NAME,script=no).
func (m *Manager) CreateTap(spec TapSpec) (store.Tap, error) {
	d := store.Tap{Name: spec.Name, Network: spec.Network}
	var n store.Network
	var h *kernel.NS
	err := m.transact(func(tx *store.Tx) (store.Op, error) {
		if err := kernel.ValidateIfName(spec.Name); err != nil {
			return store.Op{}, err
		}
		var ok bool
		var err error
		if n, ok, err = tx.Network(spec.Network); err != nil {
			return store.Op{}, err
		} else if !ok {
			return store.Op{}, fmt.Errorf("network %q: no such network", spec.Network)
		}
		if n.Driver != DriverBridge {
			return store.Op{}, fmt.Errorf("network %q is a %s network; TAP devices join bridge networks", n.Name, n.Driver)
		}
		if owner, ok := tx.IfNameOwner(spec.Name); ok {
			return store.Op{}, fmt.Errorf("name %s is already used by %s", spec.Name, describeOwner(owner))
		}
		if h, err = m.host(n.HostNetns); err != nil {
			return store.Op{}, err
		}
		if l, err := h.LinkByName(spec.Name); err != nil {
			return store.Op{}, err
		} else if l != nil {
			return store.Op{}, fmt.Errorf("a %s device called %s already exists in the host", l.Type(), spec.Name)
		}
		if d.Addrs, err = leaseAddrs(tx, n, ConnectSpec{Network: n.Name, IPv4: spec.IP}); err != nil {
			return store.Op{}, err
		}
		return store.Op{Kind: store.OpTapCreate, Network: n.Name, HostNetns: n.HostNetns, HostIf: d.Name, Addrs: d.Addrs}, nil
	}, func(tx *store.Tx, op store.Op) error {
		if err := makeTap(h, n, d); err != nil {
			return err
		}
		crash.Point("tap-create/created")
		for _, p := range d.Addrs {
			if err := tx.PutLease(n.Name, p.Addr(), tapLeaseOwner(d.Name)); err != nil {
				return err
			}
		}
		if err := tx.ReserveIfName(d.Name, ownerTap(d.Name)); err != nil {
			return err
		}
		return tx.PutTap(d)
	}, m.unplugTap)
	if err != nil {
		return d, fmt.Errorf("tap %s: %w", spec.Name, err)
	}
	return d, nil
}

// makeTap creates the persistent TAP in the host and puts it on the bridge.
// TUNSETIFF acts in the calling thread's namespace, hence the switch.
func makeTap(h *kernel.NS, n store.Network, d store.Tap) error {
	br, err := h.LinkByName(n.Bridge)
	if err != nil {
		return err
	}
	if br == nil {
		return fmt.Errorf("bridge %s of network %q is missing (run nsnet gc)", n.Bridge, n.Name)
	}
	tap := &netlink.Tuntap{
		LinkAttrs: netlink.LinkAttrs{Name: d.Name, MTU: n.MTU, TxQLen: -1},
		Mode:      netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_NO_PI | netlink.TUNTAP_ONE_QUEUE,
	}
	err = h.Do(func() error { return netlink.LinkAdd(tap) })
	for _, f := range tap.Fds {
		f.Close() // the guest opens it; until then it has no carrier
	}
	if err != nil {
		return fmt.Errorf("create TAP %s: %w", d.Name, err)
	}
	l, err := h.LinkByName(d.Name)
	if err != nil {
		return err
	}
	if l == nil {
		return fmt.Errorf("TAP %s vanished", d.Name)
	}
	if err := h.NL.LinkSetIP6AddrGenMode(l, in6AddrGenModeNone); err != nil {
		return fmt.Errorf("configure %s: %w", d.Name, err)
	}
	if err := h.NL.LinkSetAlias(l, "nsnet "+n.Name+" tap "+d.Name); err != nil {
		return fmt.Errorf("label %s: %w", d.Name, err)
	}
	if err := h.NL.LinkSetMaster(l, br); err != nil {
		return fmt.Errorf("attach %s to bridge %s: %w", d.Name, n.Bridge, err)
	}
	if err := h.NL.LinkSetUp(l); err != nil {
		return fmt.Errorf("bring up %s: %w", d.Name, err)
	}
	return nil
}

// unplugTap deletes the TAP device, if it is still there.
func (m *Manager) unplugTap(op store.Op) error {
	h, err := m.liveHost(op.HostNetns)
	if err != nil || h == nil {
		return err
	}
	return deleteLink(h, op.HostIf, "tuntap", "the host")
}

// RemoveTap deletes a TAP device and frees its guest's addresses.
func (m *Manager) RemoveTap(name string) error {
	err := m.transact(func(tx *store.Tx) (store.Op, error) {
		d, ok, err := tx.Tap(name)
		if err != nil {
			return store.Op{}, err
		}
		if !ok {
			return store.Op{}, errors.New("no such TAP device")
		}
		n, _, err := tx.Network(d.Network)
		if err != nil {
			return store.Op{}, err
		}
		return store.Op{Kind: store.OpTapRemove, Network: d.Network, HostNetns: n.HostNetns, HostIf: name, Addrs: d.Addrs}, nil
	}, func(tx *store.Tx, op store.Op) error {
		if err := m.unplugTap(op); err != nil {
			return err
		}
		crash.Point("tap-rm/deleted")
		return forgetTap(tx, op)
	}, nil)
	if err != nil {
		return fmt.Errorf("tap %s: %w", name, err)
	}
	return nil
}

func forgetTap(tx *store.Tx, op store.Op) error {
	for _, p := range op.Addrs {
		if owner, ok := tx.LeaseOwner(op.Network, p.Addr()); ok && owner == tapLeaseOwner(op.HostIf) {
			if err := tx.DeleteLease(op.Network, p.Addr()); err != nil {
				return err
			}
		}
	}
	if owner, ok := tx.IfNameOwner(op.HostIf); ok && owner == ownerTap(op.HostIf) {
		if err := tx.ReleaseIfName(op.HostIf); err != nil {
			return err
		}
	}
	return tx.DeleteTap(op.HostIf)
}

// Taps lists every TAP device.
func (m *Manager) Taps() ([]store.Tap, error) {
	var out []store.Tap
	err := m.st.View(func(tx *store.Tx) (err error) { out, err = tx.Taps(); return err })
	if out == nil {
		out = []store.Tap{}
	}
	return out, err
}
