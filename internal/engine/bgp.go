package engine

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/netns"
	"github.com/nsnet/nsnet/internal/store"
)

// ErrInvalid: a setting the user gave cannot be used (a BGP ASN of 0, a
// router id that is not IPv4).
var ErrInvalid = errors.New("invalid")

// hostName is how messages name a host.
func hostName(host string) string {
	switch {
	case host == "":
		return "this host"
	case filepath.Dir(host) == netns.Dir:
		return "host " + filepath.Base(host)
	}
	return "host " + host
}

// notLab refuses a change by hand to a speaker a lab set: the lab's next
// apply would undo it, and until then the lab's mesh is broken.
func notLab(tx *store.Tx, host string) error {
	c, ok, err := tx.BGP(host)
	if err != nil || !ok || c.Lab == "" {
		return err
	}
	return errorf(ErrInUse, "bgp: %s's BGP belongs to lab %s; change the lab's file and apply it", hostName(host), c.Lab)
}

// hostAddrs lists a host's own addresses of global scope.
func (m *Manager) hostAddrs(host string) ([]netip.Addr, error) {
	h, err := m.host(host)
	if err != nil {
		return nil, err
	}
	addrs, err := kernel.Retry(func() ([]netlink.Addr, error) { return h.NL.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("list the host's addresses: %w", err)
	}
	var out []netip.Addr
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && a.Scope == unix.RT_SCOPE_UNIVERSE {
			out = append(out, ip.Unmap())
		}
	}
	return out, nil
}

// SetBGP makes host (a namespace file; "" for the manager's own) a BGP
// speaker, or changes its settings (its peers stay). A router id left zero
// is the host's first IPv4 address; a hold time left zero, BGP's 90
// seconds.
func (m *Manager) SetBGP(host string, c store.BGP) (store.BGP, error) {
	c, err := m.checkBGP(host, c)
	if err != nil {
		return c, err
	}
	err = m.st.Update(func(tx *store.Tx) error {
		if err := notLab(tx, c.HostNetns); err != nil {
			return err
		}
		old, ok, err := tx.BGP(c.HostNetns)
		if err != nil {
			return err
		}
		if ok {
			c.Peers = old.Peers
			if c.Lab == "" {
				c.Lab = old.Lab
			}
		}
		return tx.PutBGP(c)
	})
	return c, err
}

// PutBGP sets host's speaker whole, its peers included (for labs).
func (m *Manager) PutBGP(host string, c store.BGP) error {
	peers := c.Peers
	c, err := m.checkBGP(host, c)
	if err != nil {
		return err
	}
	addrs, err := m.hostAddrs(c.HostNetns)
	if err != nil {
		return err
	}
	seen := map[netip.Addr]bool{}
	for _, p := range peers {
		if err := m.checkPeer(c.HostNetns, addrs, p); err != nil {
			return err
		}
		if seen[p.Address] {
			return errorf(ErrExists, "bgp peer %s: given twice", p.Address)
		}
		seen[p.Address] = true
	}
	c.Peers = peers
	return m.st.Update(func(tx *store.Tx) error { return tx.PutBGP(c) })
}

func (m *Manager) checkBGP(host string, c store.BGP) (store.BGP, error) {
	if host == "" {
		host = m.cfg.HostNetns
	}
	c.HostNetns = host
	if c.ASN == 0 {
		return c, errorf(ErrInvalid, "bgp set: asn 0 is reserved; give one from 1 to 4294967295 (64512-65534 and 4200000000-4294967294 are private)")
	}
	if c.HoldTime != 0 && c.HoldTime < 3 {
		return c, errorf(ErrInvalid, "bgp set: --hold-time %d: must be at least 3 seconds (0: the default, 90)", c.HoldTime)
	}
	addrs, err := m.hostAddrs(host)
	if err != nil {
		return c, err
	}
	if c.RouterID.IsValid() && !c.RouterID.Is4() {
		return c, errorf(ErrInvalid, "bgp set: --router-id %s: must be an IPv4 address", c.RouterID)
	}
	if !c.RouterID.IsValid() {
		for _, a := range addrs {
			if a.Is4() {
				c.RouterID = a
				break
			}
		}
		if !c.RouterID.IsValid() {
			return c, errorf(ErrInvalid, "bgp set: %s has no IPv4 address to take the router id from; give --router-id", hostName(host))
		}
	}
	if c.Listen.IsValid() && !slices.Contains(addrs, c.Listen) {
		return c, errorf(ErrInvalid, "bgp set: --listen %s is not one of %s's addresses", c.Listen, hostName(host))
	}
	return c, nil
}

func (m *Manager) checkPeer(host string, addrs []netip.Addr, p store.BGPPeer) error {
	if p.ASN == 0 {
		return errorf(ErrInvalid, "bgp peer %s: asn 0 is reserved; give one from 1 to 4294967295", p.Address)
	}
	if !p.Address.IsValid() || p.Address.IsUnspecified() || p.Address.IsMulticast() || p.Address.IsLoopback() {
		return errorf(ErrInvalid, "bgp peer %s: not a unicast address", p.Address)
	}
	if slices.Contains(addrs, p.Address) {
		return errorf(ErrInvalid, "bgp peer %s: that is one of %s's own addresses", p.Address, hostName(host))
	}
	if p.Password != "" {
		if err := m.checkTCPMD5(host, p.Address); err != nil {
			return fmt.Errorf("bgp peer %s: --password: %w", p.Address, err)
		}
	}
	return nil
}

// BGPPeerAdd adds a neighbour to host's speaker.
func (m *Manager) BGPPeerAdd(host string, p store.BGPPeer) error {
	p.Address = p.Address.Unmap()
	addrs, err := m.hostAddrs(host)
	if err != nil {
		return err
	}
	if err := m.checkPeer(host, addrs, p); err != nil {
		return err
	}
	return m.st.Update(func(tx *store.Tx) error {
		if err := notLab(tx, host); err != nil {
			return err
		}
		c, ok, err := tx.BGP(host)
		if err != nil {
			return err
		}
		if !ok {
			return errorf(ErrNotFound, "bgp peer %s: %s has no BGP yet; run `nsnet bgp set --asn N` first", p.Address, hostName(host))
		}
		for _, q := range c.Peers {
			if q.Address == p.Address {
				return errorf(ErrExists, "bgp peer %s: already a peer (AS %d); remove it first to change it", p.Address, q.ASN)
			}
		}
		c.Peers = append(c.Peers, p)
		return tx.PutBGP(c)
	})
}

// BGPPeerRemove removes a neighbour of host's speaker.
func (m *Manager) BGPPeerRemove(host string, a netip.Addr) error {
	a = a.Unmap()
	return m.st.Update(func(tx *store.Tx) error {
		if err := notLab(tx, host); err != nil {
			return err
		}
		c, ok, err := tx.BGP(host)
		if err != nil {
			return err
		}
		if !ok {
			return errorf(ErrNotFound, "bgp peer %s: %s has no BGP", a, hostName(host))
		}
		i := slices.IndexFunc(c.Peers, func(p store.BGPPeer) bool { return p.Address == a })
		if i < 0 {
			return errorf(ErrNotFound, "bgp peer %s: no such peer", a)
		}
		c.Peers = slices.Delete(c.Peers, i, i+1)
		return tx.PutBGP(c)
	})
}

// BGPOff turns host's speaker off; off is false when it had none. The
// speaker withdraws, removes its routes and exits by itself: see
// bgp.WaitStopped. A lab's speaker is refused unless lab is its lab.
func (m *Manager) BGPOff(host, lab string) (off bool, err error) {
	err = m.st.Update(func(tx *store.Tx) error {
		if c, ok, err := tx.BGP(host); err == nil && ok && c.Lab != lab {
			return notLab(tx, host)
		}
		_, ok, err := tx.BGP(host)
		if err != nil || !ok {
			return err
		}
		off = true
		return tx.DeleteBGP(host)
	})
	return off, err
}

// BGP reads host's speaker settings.
func (m *Manager) BGP(host string) (store.BGP, bool, error) {
	var c store.BGP
	var ok bool
	err := m.st.View(func(tx *store.Tx) (err error) { c, ok, err = tx.BGP(host); return err })
	return c, ok, err
}

// BGPs lists every host's speaker settings.
func (m *Manager) BGPs() ([]store.BGP, error) {
	var out []store.BGP
	err := m.st.View(func(tx *store.Tx) (err error) { out, err = tx.BGPs(); return err })
	return out, err
}

// checkTCPMD5 asks the host's kernel to take a TCP MD5 key for a, on a
// socket of its own that never connects: a kernel built without
// CONFIG_TCP_MD5SIG refuses, and a session with a password could never
// come up.
func (m *Manager) checkTCPMD5(host string, a netip.Addr) error {
	h, err := m.host(host)
	if err != nil {
		return err
	}
	return h.Do(func() error {
		fam := unix.AF_INET
		if a.Is6() {
			fam = unix.AF_INET6
		}
		fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		sig := unix.TCPMD5Sig{Keylen: 4}
		copy(sig.Key[:], "test")
		if a.Is4() {
			sig.Addr.Family = unix.AF_INET
			b := a.As4()
			copy(sig.Addr.Data[2:6], b[:])
		} else {
			sig.Addr.Family = unix.AF_INET6
			b := a.As16()
			copy(sig.Addr.Data[6:22], b[:])
		}
		if err := unix.SetsockoptTCPMD5Sig(fd, unix.IPPROTO_TCP, unix.TCP_MD5SIG, &sig); err != nil {
			if errors.Is(err, unix.ENOPROTOOPT) || errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("this kernel has no TCP MD5 signatures (CONFIG_TCP_MD5SIG), which BGP passwords need: %w", err)
			}
			return fmt.Errorf("set a TCP MD5 key: %w", err)
		}
		return nil
	})
}

// HostAddrs lists the host's own addresses of global scope.
func (m *Manager) HostAddrs() ([]netip.Addr, error) { return m.hostAddrs(m.cfg.HostNetns) }

// Joined reads this host's cluster membership, if it joined one.
func (m *Manager) Joined() (store.Joined, bool, error) {
	var j store.Joined
	var ok bool
	err := m.st.View(func(tx *store.Tx) (err error) { j, ok, err = tx.Joined(); return err })
	return j, ok, err
}

// SetJoined records (or, with ok false, forgets) this host's cluster
// membership.
func (m *Manager) SetJoined(j store.Joined, ok bool) error {
	return m.st.Update(func(tx *store.Tx) error {
		if !ok {
			return tx.DeleteJoined()
		}
		return tx.PutJoined(j)
	})
}

// LinkMTU is the MTU of the host's interface that holds address a.
func (m *Manager) LinkMTU(a netip.Addr) (int, error) {
	h, err := m.host(m.cfg.HostNetns)
	if err != nil {
		return 0, err
	}
	addrs, err := kernel.Retry(func() ([]netlink.Addr, error) { return h.NL.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return 0, fmt.Errorf("list the host's addresses: %w", err)
	}
	for _, x := range addrs {
		if ip, ok := netip.AddrFromSlice(x.IP); ok && ip.Unmap() == a {
			l, err := h.NL.LinkByIndex(x.LinkIndex)
			if err != nil {
				return 0, err
			}
			return l.Attrs().MTU, nil
		}
	}
	return 0, fmt.Errorf("address %s is on no interface of %s", a, hostName(m.cfg.HostNetns))
}
