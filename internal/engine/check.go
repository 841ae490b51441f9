package engine

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/nsnet/nsnet/internal/drivers"
	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/store"
)

// ErrBroken: the kernel does not hold what the store says it should.
var ErrBroken = errors.New("not as recorded")

// CheckMember verifies, without changing anything, that a membership is
// whole: its lease, its interface in the namespace with its addresses and
// a default route (unless the network is internal), its host end, and the
// network's firewall table in the host. It is CNI's CHECK; gc repairs
// what it finds.
func (m *Manager) CheckMember(network, ns string) error {
	var n store.Network
	var a store.Attachment
	err := m.st.View(func(tx *store.Tx) error {
		var ok bool
		var err error
		if n, ok, err = tx.Network(network); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("network %q: %w", network, ErrNoNetwork)
		}
		if a, ok, err = tx.Attachment(network, ns); err != nil {
			return err
		} else if !ok {
			return errorf(ErrNotFound, "namespace %q is not connected to network %q", ns, network)
		}
		for _, p := range a.Addrs {
			if owner, ok := tx.LeaseOwner(network, p.Addr()); !ok || owner != store.MemberOwner(network, ns) {
				return errorf(ErrBroken, "address %s of %s in network %s is not leased to it", p.Addr(), ns, network)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	nsh, err := m.openNamespace(ns)
	if err != nil {
		return fmt.Errorf("namespace %q: %w", ns, err)
	}
	defer nsh.Close()
	l, err := nsh.LinkByName(a.IfName)
	if err != nil {
		return err
	}
	if l == nil {
		return errorf(ErrBroken, "namespace %q has no interface %s", ns, a.IfName)
	}
	if l.Attrs().OperState == netlink.OperDown || l.Attrs().Flags&1 == 0 {
		return errorf(ErrBroken, "interface %s of %s is down", a.IfName, ns)
	}
	have, err := kernel.Retry(func() ([]netlink.Addr, error) { return nsh.NL.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return fmt.Errorf("addresses of %s in %s: %w", a.IfName, ns, err)
	}
	for _, p := range a.Addrs {
		found := false
		for _, h := range have {
			if q, ok := kernel.ToPrefix(h.IPNet); ok && q == p {
				found = true
			}
		}
		if !found {
			return errorf(ErrBroken, "interface %s of %s lacks its address %s", a.IfName, ns, p)
		}
	}
	if !n.Internal {
		for _, p := range a.Addrs {
			fam := kernel.Family(p.Addr())
			routes, err := nsh.Routes(fam)
			if err != nil {
				return fmt.Errorf("routes of %s: %w", ns, err)
			}
			found := false
			for _, r := range routes {
				if (!r.Dst.IsValid() || r.Dst.Bits() == 0) && r.Oif == l.Attrs().Index {
					found = true
				}
			}
			if !found {
				return errorf(ErrBroken, "namespace %q has no default route through %s for %s", ns, a.IfName, familyName(p.Addr()))
			}
		}
	}
	d, err := drivers.Of(n)
	if err != nil {
		return err
	}
	h, err := m.liveHost(n.HostNetns)
	if err != nil {
		return err
	}
	if h == nil {
		return errorf(ErrBroken, "the host namespace %s of network %s is gone", describeHost(n.HostNetns), n.Name)
	}
	if d.Caps().HostEnd {
		end, err := h.LinkByName(a.HostIf)
		if err != nil {
			return err
		}
		if end == nil {
			return errorf(ErrBroken, "the host end %s of %s is gone", a.HostIf, ns)
		}
		if dev := d.Device(n); dev != "" {
			br, err := h.LinkByName(dev)
			if err != nil {
				return err
			}
			if br == nil || end.Attrs().MasterIndex != br.Attrs().Index {
				return errorf(ErrBroken, "the host end %s of %s is not on bridge %s", a.HostIf, ns, dev)
			}
		}
	}
	return m.checkTable(h, n)
}

// NetworkStatus says whether a network can take members: its host is
// there, with its device and nsnet's firewall table. It is CNI's STATUS.
func (m *Manager) NetworkStatus(network string) error {
	n, err := m.Network(network)
	if err != nil {
		return err
	}
	h, err := m.liveHost(n.Host)
	if err != nil {
		return err
	}
	if h == nil {
		return errorf(ErrBroken, "the host namespace %s of network %s is gone", describeHost(n.Host), n.Name)
	}
	if n.Bridge != "" {
		br, err := h.LinkByName(n.Bridge)
		if err != nil {
			return err
		}
		if br == nil {
			return errorf(ErrBroken, "bridge %s of network %s is gone (nsnet gc rebuilds it)", n.Bridge, n.Name)
		}
	}
	var rec store.Network
	if err := m.st.View(func(tx *store.Tx) (err error) {
		rec, _, err = tx.Network(network)
		return err
	}); err != nil {
		return err
	}
	return m.checkTable(h, rec)
}

// checkTable verifies that the host has nsnet's table, this state
// directory's, where a network needs one.
func (m *Manager) checkTable(h *kernel.NS, n store.Network) error {
	d, err := drivers.Of(n)
	if err != nil || !d.Caps().Firewall {
		return err
	}
	fw, err := m.firewall(h)
	if err != nil {
		return err
	}
	owner, err := fw.Owner()
	if err != nil {
		return err
	}
	if owner != m.cfg.StateDir {
		return errorf(ErrBroken, "the host has no nftables table of nsnet's for network %s (nsnet gc rebuilds it)", n.Name)
	}
	return nil
}

func familyName(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}
