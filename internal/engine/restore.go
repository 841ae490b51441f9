package engine

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"

	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/netns"
	"github.com/nsnet/nsnet/internal/plumb"
	"github.com/nsnet/nsnet/internal/store"
	"github.com/vishvananda/netlink"
)

// Restore brings back what the store records after a reboot, or after any
// host namespace was made anew under the same path: the namespaces nsnet
// made are made again (empty, as after ns create), each host namespace
// whose inode changed is adopted as the host of the networks and links
// recorded there, and GC then rebuilds their bridges, firewall tables,
// members, published ports, TAPs and links. Memberships of namespaces nsnet
// did not make, and that are gone, are removed as gc removes them. A host
// namespace already holding another state directory's table is not
// adopted. It says what it did.
func (m *Manager) Restore() ([]string, error) {
	done, err := m.remakeNamespaces()
	if err != nil {
		return done, err
	}
	adopted, err := m.adoptHosts()
	done = append(done, adopted...)
	if err != nil {
		return done, err
	}
	more, err := m.GC()
	return append(done, more...), err
}

// remakeNamespaces makes every namespace nsnet made and that is gone
// again: the originals first, then the names that share them.
func (m *Manager) remakeNamespaces() ([]string, error) {
	var nss []store.Namespace
	if err := m.st.View(func(tx *store.Tx) (err error) {
		nss, err = tx.Namespaces()
		return err
	}); err != nil {
		return nil, err
	}
	sort.SliceStable(nss, func(i, j int) bool { return nss[i].Shares == "" && nss[j].Shares != "" })
	var done []string
	for _, n := range nss {
		if m.nsExists(n.Name) {
			continue
		}
		if n.Shares == "" {
			if err := m.buildNamespace(n.Name); err != nil {
				return done, fmt.Errorf("namespace %q: make it again: %w", n.Name, err)
			}
			done = append(done, fmt.Sprintf("made namespace %s again", n.Name))
			continue
		}
		if !m.nsExists(n.Shares) {
			continue // gc forgets it
		}
		if err := netns.Share(n.Name, n.Shares); err != nil {
			return done, fmt.Errorf("namespace %q: share %q again: %w", n.Name, n.Shares, err)
		}
		done = append(done, fmt.Sprintf("made namespace %s again, sharing %s", n.Name, n.Shares))
	}
	return done, nil
}

// adoptHosts records, for every host path whose namespace is not the one
// nsnet's objects were made in, the namespace there now as their host.
func (m *Manager) adoptHosts() ([]string, error) {
	paths := make([]string, 0, len(m.hostInos))
	for p := range m.hostInos {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var done []string
	for _, path := range paths {
		h, err := m.openHost(path)
		if plumb.Gone(err) {
			done = append(done, fmt.Sprintf("cannot restore what was made in host namespace %s: it is gone (make it, then run nsnet restore again)", describeHost(path)))
			continue
		}
		if err != nil {
			return done, fmt.Errorf("host namespace %s: %w", describeHost(path), err)
		}
		ino, err := h.Fd().Inode()
		if err != nil || m.hostInos[path][ino] {
			h.Close()
			if err != nil {
				return done, fmt.Errorf("host namespace %s: %w", describeHost(path), err)
			}
			continue
		}
		err = m.checkAdoptable(h)
		h.Close()
		if err != nil {
			return done, fmt.Errorf("host namespace %s: %w", describeHost(path), err)
		}
		var names []string
		if err := m.st.Update(func(tx *store.Tx) error {
			nets, err := tx.Networks()
			if err != nil {
				return err
			}
			for _, n := range nets {
				if n.HostNetns == path {
					n.HostIno = ino
					names = append(names, "network "+n.Name)
					if err := tx.PutNetwork(n); err != nil {
						return err
					}
				}
			}
			links, err := tx.Links()
			if err != nil {
				return err
			}
			for _, l := range links {
				if l.HostNetns == path && l.HostIno != 0 {
					l.HostIno = ino
					names = append(names, "link "+l.NS1+"-"+l.NS2)
					if err := tx.PutLink(l); err != nil {
						return err
					}
				}
			}
			return nil
		}); err != nil {
			return done, err
		}
		m.hostInos[path] = map[uint64]bool{ino: true}
		if old := m.hosts[path]; old != nil {
			old.Close()
			delete(m.hosts, path)
		}
		done = append(done, fmt.Sprintf("adopted host namespace %s, made anew, for %v", describeHost(path), names))
	}
	return done, nil
}

// checkAdoptable refuses a new host namespace whose nsnet table another
// state directory owns.
func (m *Manager) checkAdoptable(h *kernel.NS) error {
	fw, err := m.firewall(h)
	if err != nil {
		return err
	}
	owner, err := fw.Owner()
	if err != nil {
		return err
	}
	if owner != "" && owner != m.cfg.StateDir {
		return fmt.Errorf("%w: another state directory's networks live there (%s)", ErrInUse, owner)
	}
	return nil
}

// repairTaps makes again the TAP devices of network n that are gone.
func (m *Manager) repairTaps(h *kernel.NS, n store.Network, taps []store.Tap) ([]string, error) {
	var done []string
	for _, t := range taps {
		if t.Network != n.Name {
			continue
		}
		l, err := h.LinkByName(t.Name)
		if err != nil {
			return done, err
		}
		if l != nil {
			continue
		}
		if err := makeTap(h, n, t.Name); err != nil {
			return done, fmt.Errorf("tap %s: %w", t.Name, err)
		}
		done = append(done, fmt.Sprintf("made TAP %s of network %s again", t.Name, n.Name))
	}
	return done, nil
}

// repairLinks makes again the veths of links whose two namespaces are
// there and whose veth is gone from both.
func (m *Manager) repairLinks(links []store.Link) ([]string, error) {
	var done []string
	var errs []error
	for _, l := range links {
		did, err := m.repairLink(l)
		if err != nil {
			errs = append(errs, fmt.Errorf("link %s-%s: %w", l.NS1, l.NS2, err))
		} else if did == "made again" {
			done = append(done, fmt.Sprintf("made link %s-%s again", l.NS1, l.NS2))
		} else if did != "" {
			done = append(done, fmt.Sprintf("%s link %s-%s", did, l.NS1, l.NS2))
		}
	}
	return done, errors.Join(errs...)
}

// repairLink makes a link whose veth is gone again, or gives ends that
// lost their addresses or went down their addresses and state back; it
// says what it did ("" for nothing).
func (m *Manager) repairLink(l store.Link) (string, error) {
	var ends [2]*kernel.NS
	for i, name := range []string{l.NS1, l.NS2} {
		if name == HostName {
			h, err := m.liveHost(l.HostNetns)
			if err != nil || h == nil {
				return "", err
			}
			ends[i] = h
			continue
		}
		ns, err := m.openLiveNamespace(name)
		if err != nil || ns == nil {
			return "", err
		}
		defer ns.Close()
		ends[i] = ns
	}
	var have [2]netlink.Link
	for i, ifName := range []string{l.If1, l.If2} {
		var err error
		if have[i], err = ends[i].LinkByName(ifName); err != nil {
			return "", err
		}
	}
	if have[0] == nil && have[1] == nil {
		return "made again", plugLink(ends[0], ends[1], l)
	}
	if have[0] == nil || have[1] == nil {
		return "", nil // half a veth cannot be: the kernel is still removing it
	}
	did := ""
	for i, end := range []struct {
		name, who string
		addrs     []netip.Prefix
	}{{l.If1, l.NS1, l.Addrs1}, {l.If2, l.NS2, l.Addrs2}} {
		got, err := kernel.Retry(func() ([]netlink.Addr, error) { return ends[i].NL.AddrList(have[i], netlink.FAMILY_ALL) })
		if err != nil {
			return "", err
		}
		whole := have[i].Attrs().Flags&net.FlagUp != 0
		for _, p := range end.addrs {
			whole = whole && slices.ContainsFunc(got, func(a netlink.Addr) bool { q, ok := kernel.ToPrefix(a.IPNet); return ok && q == p })
		}
		if whole {
			continue
		}
		if len(end.addrs) == 0 {
			if err := ends[i].NL.LinkSetUp(have[i]); err != nil {
				return "", err
			}
		} else if _, err := plumb.MemberUp(ends[i], end.name, end.who, end.addrs); err != nil {
			return "", err
		}
		did = "put back the addresses and state of"
	}
	return did, nil
}
