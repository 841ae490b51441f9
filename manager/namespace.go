package manager

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/nsnet/nsnet/crash"
	"github.com/nsnet/nsnet/kernel"
	"github.com/nsnet/nsnet/netns"
	"github.com/nsnet/nsnet/store"
)

// CreateNamespace makes a named network namespace with only lo, up.
func (m *Manager) CreateNamespace(name string) error {
	if err := netns.ValidateName(name); err != nil {
		return fmt.Errorf("namespace %q: %w", name, err)
	}
	err := m.transact(func(tx *store.Tx) (store.Op, error) {
		if _, ok, err := tx.Namespace(name); err != nil {
			return store.Op{}, err
		} else if ok || netns.Exists(name) {
			return store.Op{}, errors.New("a namespace with this name already exists")
		}
		return store.Op{Kind: store.OpNSCreate, Namespace: name}, nil
	}, func(tx *store.Tx, op store.Op) error {
		crash.Point("ns-create/recorded")
		if err := m.buildNamespace(name); err != nil {
			return err
		}
		return tx.PutNamespace(store.Namespace{Name: name, Created: time.Now().UTC()})
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
	err := m.st.View(func(tx *store.Tx) error {
		_, ok, err := tx.Namespace(name)
		if err != nil {
			return err
		}
		if !ok {
			if netns.Exists(name) {
				return errors.New("not created by nsnet; remove it with the tool that made it")
			}
			return netns.ErrNotExist
		}
		atts, err = tx.AttachmentsOf(name)
		return err
	})
	if err != nil {
		return fmt.Errorf("namespace %q: %w", name, err)
	}
	for _, a := range atts {
		if err := m.Disconnect(a.Network, name); err != nil {
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
		return tx.DeleteNamespace(name)
	}, nil)
	if err != nil {
		return fmt.Errorf("namespace %q: %w", name, err)
	}
	return nil
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
		nets, err := tx.Networks()
		if err != nil {
			return err
		}
		for _, n := range nets {
			members, err := tx.Members(n.Name)
			if err != nil {
				return err
			}
			for _, a := range members {
				if s, ok := byName[a.Namespace]; ok {
					s.Networks = append(s.Networks, n.Name)
				}
			}
		}
		return nil
	})
	for _, n := range names {
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
	Name       string             `json:"name"`
	Managed    bool               `json:"managed"`
	Interfaces []Interface        `json:"interfaces"`
	Routes     []Route            `json:"routes"`
	Networks   []store.Attachment `json:"networks"`
}

// Namespace inspects one namespace: its kernel state and its memberships.
func (m *Manager) Namespace(name string) (NamespaceInfo, error) {
	info := NamespaceInfo{Name: name, Interfaces: []Interface{}, Routes: []Route{}, Networks: []store.Attachment{}}
	if !netns.Exists(name) {
		return info, fmt.Errorf("namespace %q: %w", name, netns.ErrNotExist)
	}
	err := m.st.View(func(tx *store.Tx) error {
		_, ok, err := tx.Namespace(name)
		info.Managed = ok
		if err != nil {
			return err
		}
		atts, err := tx.AttachmentsOf(name)
		info.Networks = append(info.Networks, atts...)
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
