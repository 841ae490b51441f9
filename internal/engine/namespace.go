package engine

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nsnet/nsnet/internal/crash"
	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/netns"
	"github.com/nsnet/nsnet/internal/plumb"
	"github.com/nsnet/nsnet/internal/store"
)

// CreateNamespace makes a named network namespace with only lo, up, or,
// with share set, a second name for the namespace called share (Docker's
// --network container:SHARE, a Kubernetes pod).
func (m *Manager) CreateNamespace(name, share string) error {
	if err := netns.ValidateName(name); err != nil {
		return fmt.Errorf("namespace %q: %w", name, err)
	}
	if name == HostName {
		return fmt.Errorf("namespace %q: the name stands for the host namespace in links", name)
	}
	if share != "" && !netns.Exists(share) {
		return fmt.Errorf("namespace %q: cannot share %q: %w", name, share, netns.ErrNotExist)
	}
	// A namespace of that name deleted behind nsnet's back is forgotten
	// first, as gc would: the name is free again.
	var vanished bool
	if err := m.st.View(func(tx *store.Tx) error {
		_, ok, err := tx.Namespace(name)
		vanished = ok && !m.nsExists(name)
		return err
	}); err != nil {
		return fmt.Errorf("namespace %q: %w", name, err)
	}
	if vanished {
		if err := m.forgetNamespace(name); err != nil {
			return fmt.Errorf("namespace %q: forget the one deleted behind nsnet's back: %w", name, err)
		}
	}
	err := m.transact(func(tx *store.Tx) (store.Op, error) {
		if _, ok, err := tx.Namespace(name); err != nil {
			return store.Op{}, err
		} else if ok || netns.Exists(name) {
			return store.Op{}, errorf(ErrExists, "a namespace with this name already exists")
		}
		return store.Op{Kind: store.OpNSCreate, Namespace: name}, nil
	}, func(tx *store.Tx, op store.Op) error {
		crash.Point("ns-create/recorded")
		if share != "" {
			if err := netns.Share(name, share); err != nil {
				return err
			}
			if err := m.shareEtc(name, share); err != nil {
				return err
			}
		} else if err := m.buildNamespace(name); err != nil {
			return err
		}
		crash.Point("ns-create/created")
		return tx.PutNamespace(store.Namespace{Name: name, Shares: share, Created: time.Now().UTC()})
	}, func(op store.Op) error { return unmountNamespace(op.Namespace) })
	if err != nil {
		return fmt.Errorf("namespace %q: %w", name, err)
	}
	return nil
}

func (m *Manager) buildNamespace(name string) error {
	if err := netns.Create(name); err != nil {
		return err
	}
	ns, err := kernel.Open(netns.Path(name))
	if err != nil {
		return err
	}
	defer ns.Close()
	lo, err := ns.LinkByName("lo")
	if err != nil {
		return err
	}
	if lo == nil {
		return errors.New("no lo in the new namespace")
	}
	if err := ns.NL.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	return nil
}

// RemoveNamespace disconnects a namespace from every network, then deletes it.
func (m *Manager) RemoveNamespace(name string) error {
	var atts []store.Attachment
	var links []store.Link
	err := m.st.View(func(tx *store.Tx) error {
		_, ok, err := tx.Namespace(name)
		if err != nil {
			return err
		}
		if !ok {
			if netns.Exists(name) {
				return errors.New("not created by nsnet; remove it with the tool that made it")
			}
			return errNoNamespace
		}
		// A namespace that plays the host for networks or links holds
		// their bridges, rules and host ends: removing it would orphan
		// them in the store.
		var hosted []string
		nets, err := tx.Summaries()
		if err != nil {
			return err
		}
		// By path, and by inode for a path spelt another way
		// (/var/run/netns/NAME).
		// Another name of the same namespace (--share) keeps it alive.
		var ino uint64
		if h, err := netns.Open(netns.Path(name)); err == nil {
			ino, _ = h.Inode()
			h.Close()
		}
		if ino != 0 && sharingName(name) != "" {
			ino = 0
		}
		for _, n := range nets {
			if n.HostNetns == netns.Path(name) || (ino != 0 && n.HostIno == ino) {
				hosted = append(hosted, "network "+n.Name)
			}
		}
		hostLinks, err := tx.Links()
		if err != nil {
			return err
		}
		for _, l := range hostLinks {
			if l.HostNetns == netns.Path(name) || (ino != 0 && l.HostIno == ino) {
				hosted = append(hosted, "link "+l.NS1+"-"+l.NS2)
			}
		}
		if len(hosted) > 0 {
			return errorf(ErrInUse, "it is the host of %s; remove those first (with --host-netns %s)", strings.Join(hosted, ", "), name)
		}
		atts, links, err = membershipsOf(tx, name)
		return err
	})
	if err != nil {
		return fmt.Errorf("namespace %q: %w", name, err)
	}
	if heir := sharingName(name); heir != "" {
		// Another name holds the same namespace, which lives on with its
		// interfaces: its memberships, links and files pass to that name.
		if err := m.inheritEtc(name, heir); err != nil {
			return fmt.Errorf("namespace %q: pass its files to %q: %w", name, heir, err)
		}
		err := m.st.Update(func(tx *store.Tx) error {
			if err := m.bequeath(tx, name, heir); err != nil {
				return err
			}
			// What could not pass (heir already had it) goes below.
			var err error
			atts, links, err = membershipsOf(tx, name)
			return err
		})
		if err != nil {
			return fmt.Errorf("namespace %q: pass memberships to %q: %w", name, heir, err)
		}
	}
	for _, a := range atts {
		if err := m.Disconnect(a.Network, name); err != nil {
			return err
		}
	}
	for _, l := range links {
		if err := m.RemoveLink(l.NS1, l.NS2); err != nil {
			return err
		}
	}
	err = m.transact(func(*store.Tx) (store.Op, error) {
		return store.Op{Kind: store.OpNSRemove, Namespace: name}, nil
	}, func(tx *store.Tx, op store.Op) error {
		crash.Point("ns-rm/recorded")
		if err := unmountNamespace(name); err != nil {
			return err
		}
		crash.Point("ns-rm/unmounted")
		return tx.DeleteNamespace(name)
	}, nil)
	if err != nil {
		return fmt.Errorf("namespace %q: %w", name, err)
	}
	return nil
}

// sharingName returns another name under which the namespace called name
// is mounted, or "".
func sharingName(name string) string {
	var st unix.Stat_t
	if unix.Stat(netns.Path(name), &st) != nil {
		return ""
	}
	names, _ := netns.List()
	for _, other := range names {
		var ost unix.Stat_t
		if other != name && unix.Stat(netns.Path(other), &ost) == nil && ost.Dev == st.Dev && ost.Ino == st.Ino {
			return other
		}
	}
	return ""
}

// bequeath re-records name's memberships and links under heir. A
// membership heir already has in the same network stays heir's, and the
// one it would replace stays name's, to be disconnected.
func (m *Manager) bequeath(tx *store.Tx, name, heir string) error {
	atts, err := tx.AttachmentsOf(name)
	if err != nil {
		return err
	}
	for _, a := range atts {
		if _, dup, err := tx.Attachment(a.Network, heir); err != nil || dup {
			continue
		}
		if err := tx.DeleteAttachment(a.Network, name); err != nil {
			return err
		}
		a.Namespace = heir
		for _, p := range a.Addrs {
			if err := tx.PutLease(a.Network, p.Addr(), store.MemberOwner(a.Network, heir)); err != nil {
				return err
			}
		}
		if a.HostIf != "" {
			if err := tx.ReserveIfName(a.HostIf, store.MemberOwner(a.Network, heir)); err != nil {
				return err
			}
		}
		n, _, err := tx.Network(a.Network)
		if err != nil {
			return err
		}
		if err := recordPorts(tx, n.HostNetns, a.Network, heir, a.Ports); err != nil {
			return err
		}
		if err := tx.PutAttachment(a); err != nil {
			return err
		}
		if err := m.setResolver(heir, n, true); err != nil {
			return err
		}
	}
	links, err := tx.Links()
	if err != nil {
		return err
	}
	for _, l := range links {
		if l.NS1 != name && l.NS2 != name {
			continue
		}
		other := l.NS2
		if l.NS2 == name {
			other = l.NS1
		}
		if _, dup, err := tx.Link(heir, other); err != nil || dup || other == heir {
			continue
		}
		if err := tx.DeleteLink(l.NS1, l.NS2); err != nil {
			return err
		}
		if l.NS1 == name {
			l.NS1 = heir
		} else {
			l.NS2 = heir
		}
		if err := tx.PutLink(l); err != nil {
			return err
		}
	}
	return nil
}

// shareEtc makes /etc/netns/NAME lead to /etc/netns/OTHER: the two names
// are one namespace, so what `nsnet exec` and `ip netns exec` mount there
// (resolv.conf) is the same, and stays so as memberships change.
func (m *Manager) shareEtc(name, other string) error {
	target := filepath.Join(m.etcDir, other)
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	p := filepath.Join(m.etcDir, name)
	if err := os.RemoveAll(p); err != nil {
		return err
	}
	if err := os.Symlink(other, p); err != nil {
		return fmt.Errorf("share %s: %w", p, err)
	}
	return nil
}

// inheritEtc gives heir, a name sharing name's namespace, name's
// /etc/netns files before name goes: a link to them becomes them.
func (m *Manager) inheritEtc(name, heir string) error {
	p := filepath.Join(m.etcDir, heir)
	if fi, err := os.Lstat(p); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		return nil
	}
	if err := os.Remove(p); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(m.etcDir, name), p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// sharedNames lists name and the names recorded as sharing its namespace
// (or the one it shares), name first.
func sharedNames(tx *store.Tx, name string) ([]string, error) {
	recs, err := tx.Namespaces()
	if err != nil {
		return nil, err
	}
	root := name
	for _, r := range recs {
		if r.Name == name && r.Shares != "" {
			root = r.Shares
		}
	}
	out := []string{name}
	for _, r := range recs {
		if r.Name != name && (r.Name == root || r.Shares == root) {
			out = append(out, r.Name)
		}
	}
	return out, nil
}

// membershipsOf lists the networks and links the namespace called name is
// in.
func membershipsOf(tx *store.Tx, name string) ([]store.Attachment, []store.Link, error) {
	atts, err := tx.AttachmentsOf(name)
	if err != nil {
		return nil, nil, err
	}
	all, err := tx.Links()
	var links []store.Link
	for _, l := range all {
		if l.NS1 == name || l.NS2 == name {
			links = append(links, l)
		}
	}
	return atts, links, err
}

// forgetNamespace drops what nsnet keeps of a namespace that was deleted
// behind its back (`ip netns del`): its memberships (with their host ends,
// leases and ports), its links, its record and its /etc/netns files.
func (m *Manager) forgetNamespace(name string) error {
	var atts []store.Attachment
	var links []store.Link
	if err := m.st.View(func(tx *store.Tx) (err error) {
		atts, links, err = membershipsOf(tx, name)
		return err
	}); err != nil {
		return err
	}
	for _, a := range atts {
		if err := m.Disconnect(a.Network, a.Namespace); err != nil {
			return err
		}
	}
	for _, l := range links {
		if err := m.RemoveLink(l.NS1, l.NS2); err != nil {
			return err
		}
	}
	if err := m.st.Update(func(tx *store.Tx) error { return tx.DeleteNamespace(name) }); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(m.etcDir, name)); err != nil {
		return fmt.Errorf("remove %s: %w", filepath.Join(m.etcDir, name), err)
	}
	return nil
}

// passToSharer hands what nsnet keeps of name, whose mount was removed
// behind nsnet's back (`ip netns del`), to another name of the same
// namespace that is still there: one made with --share NAME (which then
// shares nothing), or the one NAME was made to share. The namespace lives
// on under it, with its interfaces, so the memberships, links and
// /etc/netns files are that name's now. It returns the heir, or "" if
// there is none.
func (m *Manager) passToSharer(name string) (string, error) {
	var heir string
	if err := m.st.View(func(tx *store.Tx) error {
		nss, err := tx.Namespaces()
		for _, n := range nss {
			switch {
			case heir != "":
			case n.Shares == name && m.nsExists(n.Name):
				heir = n.Name // a name made to share this one
			case n.Name == name && n.Shares != "" && m.nsExists(n.Shares):
				heir = n.Shares // the name this one was made to share
			}
		}
		return err
	}); err != nil || heir == "" {
		return "", err
	}
	if err := m.inheritEtc(name, heir); err != nil {
		return "", fmt.Errorf("namespace %q: pass its files to %q: %w", name, heir, err)
	}
	var others []string
	err := m.st.Update(func(tx *store.Tx) error {
		if err := m.bequeath(tx, name, heir); err != nil {
			return err
		}
		nss, err := tx.Namespaces()
		if err != nil {
			return err
		}
		for _, n := range nss {
			switch {
			case n.Name == heir:
				n.Shares = ""
			case n.Shares == name:
				n.Shares = heir
				others = append(others, n.Name)
			default:
				continue
			}
			if err := tx.PutNamespace(n); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("namespace %q: pass memberships to %q: %w", name, heir, err)
	}
	// The other sharers' /etc/netns entries led to name's, now heir's.
	for _, o := range others {
		if err := m.shareEtc(o, heir); err != nil {
			return "", fmt.Errorf("namespace %q: share %q's files: %w", o, heir, err)
		}
	}
	return heir, nil
}

// unmountNamespace removes a namespace's name and its /etc/netns files. The
// namespace itself goes when nothing else holds it.
func unmountNamespace(name string) error {
	if err := netns.Delete(name); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(netns.EtcDir, name)); err != nil {
		return fmt.Errorf("remove %s: %w", filepath.Join(netns.EtcDir, name), err)
	}
	return nil
}

// NamespaceSummary is one line of `ns ls`.
type NamespaceSummary struct {
	Name string `json:"name"`
	// Managed is false for namespaces made by another tool.
	Managed  bool     `json:"managed"`
	Networks []string `json:"networks"`
}

// Namespaces lists the named namespaces, nsnet's and others'.
func (m *Manager) Namespaces() ([]NamespaceSummary, error) {
	names, err := netns.List()
	if err != nil {
		return nil, err
	}
	byName := map[string]*NamespaceSummary{}
	var out []NamespaceSummary
	for _, n := range names {
		byName[n] = &NamespaceSummary{Name: n, Networks: []string{}}
	}
	err = m.st.View(func(tx *store.Tx) error {
		recs, err := tx.Namespaces()
		if err != nil {
			return err
		}
		for _, r := range recs {
			if s, ok := byName[r.Name]; ok {
				s.Managed = true
			}
		}
		all, err := tx.AllMembers()
		if err != nil {
			return err
		}
		for _, members := range all {
			for _, a := range members {
				if s, ok := byName[a.Namespace]; ok {
					s.Networks = append(s.Networks, a.Network)
				}
			}
		}
		// A --share name shows the networks of the namespace it names.
		for _, r := range recs {
			if r.Shares == "" {
				continue
			}
			s, t := byName[r.Name], byName[r.Shares]
			if s == nil || t == nil {
				continue
			}
			joined := append(slices.Clone(s.Networks), t.Networks...)
			slices.Sort(joined)
			s.Networks, t.Networks = slices.Compact(joined), slices.Clone(slices.Compact(joined))
		}
		return nil
	})
	for _, n := range names {
		sort.Strings(byName[n].Networks)
		out = append(out, *byName[n])
	}
	return out, err
}

// Interface is a link inside a namespace as `ns inspect` shows it.
type Interface struct {
	Name  string         `json:"name"`
	Type  string         `json:"type"`
	MAC   string         `json:"mac,omitempty"`
	MTU   int            `json:"mtu"`
	State string         `json:"state"`
	Addrs []netip.Prefix `json:"addrs"`
}

// Route is a route inside a namespace as `ns inspect` shows it.
type Route struct {
	Dst string `json:"dst"`
	Via string `json:"via,omitempty"`
	Dev string `json:"dev"`
}

// NamespaceInfo is what `ns inspect` shows.
type NamespaceInfo struct {
	Name       string       `json:"name"`
	Managed    bool         `json:"managed"`
	Interfaces []Interface  `json:"interfaces"`
	Routes     []Route      `json:"routes"`
	Networks   []MemberInfo `json:"networks"`
	Links      []LinkInfo   `json:"links"`
}

// Namespace inspects one namespace: its kernel state and its memberships.
func (m *Manager) Namespace(name string) (NamespaceInfo, error) {
	info := NamespaceInfo{Name: name, Interfaces: []Interface{}, Routes: []Route{}, Networks: []MemberInfo{}, Links: []LinkInfo{}}
	if !netns.Exists(name) {
		return info, fmt.Errorf("namespace %q: %w", name, errNoNamespace)
	}
	err := m.st.View(func(tx *store.Tx) error {
		_, ok, err := tx.Namespace(name)
		info.Managed = ok
		if err != nil {
			return err
		}
		// Every name of the namespace (--share) has its memberships.
		group, err := sharedNames(tx, name)
		if err != nil {
			return err
		}
		for _, g := range group {
			atts, err := tx.AttachmentsOf(g)
			if err != nil {
				return err
			}
			for _, a := range atts {
				info.Networks = append(info.Networks, memberInfo(a))
			}
		}
		links, err := tx.Links()
		for _, l := range links {
			if l.NS1 == name || l.NS2 == name {
				info.Links = append(info.Links, linkInfo(l))
			}
		}
		return err
	})
	if err != nil {
		return info, fmt.Errorf("namespace %q: %w", name, err)
	}
	ns, err := kernel.Open(netns.Path(name))
	if err != nil {
		return info, err
	}
	defer ns.Close()
	links, err := kernel.Retry(ns.NL.LinkList)
	if err != nil {
		return info, fmt.Errorf("namespace %q: list links: %w", name, err)
	}
	names := map[int]string{}
	for _, l := range links {
		at := l.Attrs()
		names[at.Index] = at.Name
		itf := Interface{Name: at.Name, Type: l.Type(), MTU: at.MTU, State: at.OperState.String(), Addrs: []netip.Prefix{}}
		if len(at.HardwareAddr) > 0 {
			itf.MAC = at.HardwareAddr.String()
		}
		addrs, err := kernel.Retry(func() ([]netlink.Addr, error) { return ns.NL.AddrList(l, netlink.FAMILY_ALL) })
		if err != nil {
			return info, fmt.Errorf("namespace %q: list addresses: %w", name, err)
		}
		for _, a := range addrs {
			if p, ok := kernel.ToPrefix(a.IPNet); ok {
				itf.Addrs = append(itf.Addrs, p)
			}
		}
		info.Interfaces = append(info.Interfaces, itf)
	}
	routes, err := kernel.Retry(func() ([]netlink.Route, error) { return ns.NL.RouteList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return info, fmt.Errorf("namespace %q: list routes: %w", name, err)
	}
	for _, r := range routes {
		rt := Route{Dst: "default", Dev: names[r.LinkIndex]}
		if p, ok := kernel.ToPrefix(r.Dst); ok && p.Bits() > 0 {
			rt.Dst = p.String()
		}
		if a, ok := netip.AddrFromSlice(r.Gw); ok {
			rt.Via = a.Unmap().String()
		}
		info.Routes = append(info.Routes, rt)
	}
	sort.SliceStable(info.Routes, func(i, j int) bool { return info.Routes[i].Dst == "default" && info.Routes[j].Dst != "default" })
	return info, nil
}

// openLiveNamespace is openNamespace for teardown paths: a namespace that
// is gone took everything nsnet made in it along, and gives nil, nil.
func (m *Manager) openLiveNamespace(name string) (*kernel.NS, error) {
	ns, err := m.openNamespace(name)
	if plumb.Gone(err) {
		return nil, nil
	}
	return ns, err
}
