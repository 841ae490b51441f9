package engine

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/nsnet/nsnet/internal/crash"
	"github.com/nsnet/nsnet/internal/ipam"
	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/netns"
	"github.com/nsnet/nsnet/internal/plumb"
	"github.com/nsnet/nsnet/internal/store"
)

// HostName stands for the host namespace at either end of a link.
const HostName = "host"

// LinkSpec is what `link create` asks for.
type LinkSpec struct {
	NS1, NS2 string
	// Subnet gives both ends its first two usable addresses.
	Subnet netip.Prefix
	// Addr1 and Addr2 give each end its own address instead.
	Addr1, Addr2 netip.Prefix
	// If1 and If2 name the ends; empty means the first free vethN.
	If1, If2 string
	MTU      int
}

// openEnd binds a handle to one end of a link: a named namespace, or the
// host, checked to be the namespace the host's links were made in. The
// returned function releases it.
func (m *Manager) openEnd(name string) (*kernel.NS, func(), error) {
	if name == HostName {
		h, err := m.host(m.cfg.HostNetns)
		return h, func() {}, err // the manager keeps host handles
	}
	if !m.nsExists(name) {
		if err := netns.ValidateName(name); err != nil {
			return nil, nil, fmt.Errorf("namespace %q: %w", name, err)
		}
		return nil, nil, fmt.Errorf("namespace %q: %w", name, errNoNamespace)
	}
	ns, err := m.openNamespace(name)
	if err != nil {
		return nil, nil, err
	}
	return ns, ns.Close, nil
}

// CreateLink joins two namespaces with one veth pair, no host in between.
func (m *Manager) CreateLink(spec LinkSpec) (LinkInfo, error) {
	l, err := m.createLink(spec)
	if err != nil {
		return LinkInfo{}, fmt.Errorf("link %s-%s: %w", spec.NS1, spec.NS2, err)
	}
	return linkInfo(l), nil
}

func (m *Manager) createLink(spec LinkSpec) (store.Link, error) {
	l := store.Link{NS1: spec.NS1, NS2: spec.NS2, MTU: spec.MTU}
	if spec.NS1 == spec.NS2 {
		return l, errors.New("a link needs two different namespaces")
	}
	if spec.MTU != 0 && (spec.MTU < 68 || spec.MTU > 65535) {
		return l, fmt.Errorf("MTU %d is outside 68..65535", spec.MTU)
	}
	if spec.NS1 == HostName || spec.NS2 == HostName {
		l.HostNetns = m.cfg.HostNetns
	}
	var err error
	if l.Addrs1, l.Addrs2, err = linkAddrs(spec); err != nil {
		return l, err
	}
	ns1, close1, err := m.openEnd(spec.NS1)
	if err != nil {
		return l, err
	}
	defer close1()
	ns2, close2, err := m.openEnd(spec.NS2)
	if err != nil {
		return l, err
	}
	defer close2()
	// The host end, wherever the host is (the default one too), is
	// recorded by its inode as networks' hosts are.
	for _, end := range []struct {
		name string
		ns   *kernel.NS
	}{{spec.NS1, ns1}, {spec.NS2, ns2}} {
		if end.name == HostName {
			if l.HostIno, err = inode(end.ns); err != nil {
				return l, err
			}
		}
	}
	if l.If1, err = plumb.FreeName(ns1, spec.If1, "veth"); err != nil {
		return l, fmt.Errorf("%s: %w", spec.NS1, err)
	}
	if l.If2, err = plumb.FreeName(ns2, spec.If2, "veth"); err != nil {
		return l, fmt.Errorf("%s: %w", spec.NS2, err)
	}
	err = m.transact(func(tx *store.Tx) (store.Op, error) {
		if _, ok, err := tx.Link(spec.NS1, spec.NS2); err != nil {
			return store.Op{}, err
		} else if ok {
			return store.Op{}, errorf(ErrExists, "the two namespaces are already linked")
		}
		if err := m.checkLinkOverlap(tx, l); err != nil {
			return store.Op{}, err
		}
		return store.Op{Kind: store.OpLinkCreate, Namespace: spec.NS1, Peer: spec.NS2, IfName: l.If1, HostNetns: l.HostNetns, HostIno: l.HostIno}, nil
	}, func(tx *store.Tx, op store.Op) error {
		if err := plugLink(ns1, ns2, l); err != nil {
			return err
		}
		if l.HostIno != 0 {
			m.knowHost(l.HostNetns, l.HostIno)
		}
		return tx.PutLink(l)
	}, m.unlink)
	return l, err
}

// plugLink makes link l's veth between ns1 and ns2, with its addresses,
// and returns once IPv6 works over it.
func plugLink(ns1, ns2 *kernel.NS, l store.Link) error {
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: l.If1, MTU: l.MTU, TxQLen: -1, Namespace: netlink.NsFd(int(ns1.Fd()))},
		PeerName:  l.If2, PeerNamespace: netlink.NsFd(int(ns2.Fd())),
	}
	if err := ns1.NL.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s/%s: %w", l.If1, l.If2, err)
	}
	crash.Point("link-create/created")
	for _, end := range []struct {
		ns        *kernel.NS
		name, who string
		addrs     []netip.Prefix
	}{{ns1, l.If1, l.NS1, l.Addrs1}, {ns2, l.If2, l.NS2, l.Addrs2}} {
		// A link given no addresses keeps its IPv6 link-local one:
		// that is all the user has to reach the other end by.
		if len(end.addrs) == 0 {
			if err := upByName(end.ns, end.name); err != nil {
				return err
			}
			continue
		}
		if _, err := plumb.MemberUp(end.ns, end.name, end.who, end.addrs); err != nil {
			return err
		}
	}
	// IPv6 works over the link once both ends are ready; a command
	// that returns has finished.
	for _, end := range []struct {
		ns    *kernel.NS
		name  string
		addrs []netip.Prefix
	}{{ns1, l.If1, l.Addrs1}, {ns2, l.If2, l.Addrs2}} {
		if slices.ContainsFunc(end.addrs, func(p netip.Prefix) bool { return p.Addr().Is6() }) {
			if err := plumb.WaitIPv6(end.ns, end.name, 3*time.Second); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkLinkOverlap refuses link addresses that overlap a network an end
// is in: the host's networks for a host end, the networks a namespace is a
// member of for the others. The end would route the network's addresses
// over the link, or take a member's address.
func (m *Manager) checkLinkOverlap(tx *store.Tx, l store.Link) error {
	var mine []netip.Prefix
	for _, p := range append(slices.Clone(l.Addrs1), l.Addrs2...) {
		mine = append(mine, p.Masked())
	}
	if len(mine) == 0 {
		return nil
	}
	nets, err := tx.Summaries()
	if err != nil {
		return err
	}
	for _, n := range nets {
		relevant := (l.NS1 == HostName || l.NS2 == HostName) && n.HostNetns == l.HostNetns
		for _, end := range []string{l.NS1, l.NS2} {
			if end == HostName || relevant {
				continue
			}
			if _, ok, err := tx.Attachment(n.Name, end); err != nil {
				return err
			} else if ok {
				relevant = true
			}
		}
		if !relevant {
			continue
		}
		for _, p := range mine {
			for _, q := range n.Subnets {
				if p.Overlaps(q) {
					return errorf(ErrInUse, "subnet %s overlaps network %q (%s)", p, n.Name, q)
				}
			}
		}
	}
	return nil
}

// linkAddrs decides both ends' addresses: the first two usable of a subnet
// (both of a /31), or the two given, which must share one subnet.
func linkAddrs(spec LinkSpec) ([]netip.Prefix, []netip.Prefix, error) {
	if spec.Subnet.IsValid() && (spec.Addr1.IsValid() || spec.Addr2.IsValid()) {
		return nil, nil, errors.New("give --subnet or --addr, not both")
	}
	if spec.Subnet.IsValid() {
		p := spec.Subnet.Masked()
		if p.Bits() == p.Addr().BitLen() {
			return nil, nil, fmt.Errorf("subnet %s has room for one address, a link needs two", p)
		}
		a := ipam.FirstUsable(p)
		if p.Bits() == p.Addr().BitLen()-1 {
			a = p.Addr() // a /31 or /127 uses both addresses (RFC 3021)
		}
		b := a.Next()
		return []netip.Prefix{netip.PrefixFrom(a, p.Bits())}, []netip.Prefix{netip.PrefixFrom(b, p.Bits())}, nil
	}
	if spec.Addr1.IsValid() != spec.Addr2.IsValid() {
		return nil, nil, errors.New("--addr is needed for both ends or neither")
	}
	if !spec.Addr1.IsValid() {
		return nil, nil, nil
	}
	if spec.Addr1.Masked() != spec.Addr2.Masked() {
		return nil, nil, fmt.Errorf("addresses %s and %s are not in one subnet", spec.Addr1, spec.Addr2)
	}
	if spec.Addr1.Addr() == spec.Addr2.Addr() {
		return nil, nil, fmt.Errorf("both ends would have %s", spec.Addr1.Addr())
	}
	for _, p := range []netip.Prefix{spec.Addr1, spec.Addr2} {
		if p.Bits() < p.Addr().BitLen()-1 {
			if err := ipam.CheckHost(p.Masked(), p.Addr()); err != nil {
				return nil, nil, fmt.Errorf("address %s: %w", p, err)
			}
		}
	}
	return []netip.Prefix{spec.Addr1}, []netip.Prefix{spec.Addr2}, nil
}

// RemoveLink deletes the link between two namespaces.
func (m *Manager) RemoveLink(a, b string) error {
	err := m.transact(func(tx *store.Tx) (store.Op, error) {
		l, ok, err := tx.Link(a, b)
		if err != nil {
			return store.Op{}, err
		}
		if !ok {
			return store.Op{}, errorf(ErrNotFound, "no such link")
		}
		return store.Op{Kind: store.OpLinkRemove, Namespace: l.NS1, Peer: l.NS2, IfName: l.If1, HostNetns: l.HostNetns, HostIno: l.HostIno}, nil
	}, func(tx *store.Tx, op store.Op) error {
		if err := m.unlink(op); err != nil {
			return err
		}
		crash.Point("link-rm/deleted")
		return tx.DeleteLink(a, b)
	}, nil)
	if err != nil {
		return fmt.Errorf("link %s-%s: %w", a, b, err)
	}
	return nil
}

// unlink deletes a link's first end (and so the pair), if still there. A
// host that is gone, or whose path now leads to another namespace, took
// its end with it: a veth of the same name there is someone else's.
func (m *Manager) unlink(op store.Op) error {
	if op.Namespace == HostName {
		h, err := m.opHost(op)
		if err != nil || h == nil {
			return err
		}
		return plumb.DeleteLink(h, op.IfName, "veth", "the host")
	}
	ns, err := m.openLiveNamespace(op.Namespace)
	if err != nil || ns == nil {
		return err // a namespace that is gone took its end, and the pair
	}
	defer ns.Close()
	return plumb.DeleteLink(ns, op.IfName, "veth", op.Namespace)
}

// Links lists every link.
func (m *Manager) Links() ([]LinkInfo, error) {
	out := []LinkInfo{}
	err := m.st.View(func(tx *store.Tx) error {
		links, err := tx.Links()
		for _, l := range links {
			out = append(out, linkInfo(l))
		}
		return err
	})
	return out, err
}

// upByName brings up the interface called name in ns.
func upByName(ns *kernel.NS, name string) error {
	dev, err := ns.LinkByName(name)
	if err != nil {
		return err
	}
	if dev == nil {
		return fmt.Errorf("interface %s vanished", name)
	}
	return plumb.Up(ns, dev)
}
