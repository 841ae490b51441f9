package engine

import (
	"fmt"
	"net/netip"

	"github.com/nsnet/nsnet/internal/crash"
	"github.com/nsnet/nsnet/internal/drivers"
	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/plumb"
	"github.com/nsnet/nsnet/internal/store"
)

// TapSpec is what `tap create` asks for.
type TapSpec struct {
	Name    string
	Network string
	// IP reserves a specific IPv4 address for the guest.
	IP netip.Addr
}

// CreateTap makes a persistent TAP device on a bridge network, with an
// address reserved for the guest that will open it (a VM started with
// -netdev tap,ifname=NAME,script=no).
func (m *Manager) CreateTap(spec TapSpec) (TapInfo, error) {
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
			return store.Op{}, fmt.Errorf("network %q: %w", spec.Network, ErrNoNetwork)
		}
		if !drivers.Caps(n).Taps {
			return store.Op{}, fmt.Errorf("network %q is a %s network; TAP devices join bridge networks", n.Name, n.Driver)
		}
		if owner, ok := tx.IfNameOwner(spec.Name); ok {
			return store.Op{}, errorf(ErrExists, "name %s is already used by %s", spec.Name, owner)
		}
		if h, err = m.host(n.HostNetns); err != nil {
			return store.Op{}, err
		}
		if l, err := h.LinkByName(spec.Name); err != nil {
			return store.Op{}, err
		} else if l != nil {
			return store.Op{}, errorf(ErrExists, "a %s device called %s already exists in the host", l.Type(), spec.Name)
		}
		if d.Addrs, err = leaseAddrs(tx, n, ConnectSpec{Network: n.Name, IPv4: spec.IP}, nil); err != nil {
			return store.Op{}, err
		}
		ino, err := inode(h)
		return store.Op{Kind: store.OpTapCreate, Driver: n.Driver, Network: n.Name, HostNetns: n.HostNetns, HostIno: ino, HostIf: d.Name, Addrs: d.Addrs}, err
	}, func(tx *store.Tx, op store.Op) error {
		if err := makeTap(h, n, d.Name); err != nil {
			return err
		}
		crash.Point("tap-create/created")
		for _, p := range d.Addrs {
			if err := tx.PutLease(n.Name, p.Addr(), store.TapOwner(n.Name, d.Name)); err != nil {
				return err
			}
		}
		if err := tx.ReserveIfName(d.Name, store.TapOwner(n.Name, d.Name)); err != nil {
			return err
		}
		return tx.PutTap(d)
	}, m.unplugTap)
	if err != nil {
		return TapInfo{}, fmt.Errorf("tap %s: %w", spec.Name, err)
	}
	return tapInfo(d), nil
}

// makeTap creates the persistent TAP in the host and makes it a port of
// the network's device.
func makeTap(h *kernel.NS, n store.Network, name string) error {
	br, err := plumb.Bridge(h, deviceOf(n), n.Name)
	if err != nil {
		return err
	}
	tap, err := plumb.Tap(h, name, n.MTU, "nsnet "+n.Name+" tap "+name)
	if err != nil {
		return err
	}
	if err := plumb.BridgePort(h, tap, br, n.Name); err != nil {
		return err
	}
	return plumb.Up(h, tap)
}

// unplugTap deletes the TAP device, if it is still there.
func (m *Manager) unplugTap(op store.Op) error {
	h, err := m.opHost(op)
	if err != nil || h == nil {
		return err
	}
	return plumb.DeleteLink(h, op.HostIf, "tuntap", "the host")
}

// RemoveTap deletes a TAP device and frees its guest's addresses.
func (m *Manager) RemoveTap(name string) error {
	err := m.transact(func(tx *store.Tx) (store.Op, error) {
		d, ok, err := tx.Tap(name)
		if err != nil {
			return store.Op{}, err
		}
		if !ok {
			return store.Op{}, errorf(ErrNotFound, "no such TAP device")
		}
		n, _, err := tx.Network(d.Network)
		if err != nil {
			return store.Op{}, err
		}
		return store.Op{Kind: store.OpTapRemove, Driver: n.Driver, Network: d.Network, HostNetns: n.HostNetns, HostIno: n.HostIno, HostIf: name, Addrs: d.Addrs}, nil
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
		if owner, ok := tx.LeaseOwner(op.Network, p.Addr()); ok && owner.Same(store.TapOwner(op.Network, op.HostIf)) {
			if err := tx.DeleteLease(op.Network, p.Addr()); err != nil {
				return err
			}
		}
	}
	if owner, ok := tx.IfNameOwner(op.HostIf); ok && owner.Same(store.TapOwner(op.Network, op.HostIf)) {
		if err := tx.ReleaseIfName(op.HostIf); err != nil {
			return err
		}
	}
	return tx.DeleteTap(op.HostIf)
}

// Taps lists every TAP device.
func (m *Manager) Taps() ([]TapInfo, error) {
	out := []TapInfo{}
	err := m.st.View(func(tx *store.Tx) error {
		taps, err := tx.Taps()
		for _, d := range taps {
			out = append(out, tapInfo(d))
		}
		return err
	})
	return out, err
}
