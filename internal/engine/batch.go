package engine

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/nsnet/nsnet/internal/crash"
	"github.com/nsnet/nsnet/internal/firewall"
	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/netns"
	"github.com/nsnet/nsnet/internal/plumb"
	"github.com/nsnet/nsnet/internal/store"
	"golang.org/x/sys/unix"
)

// hostEndWait bounds how long RemoveNamespaces waits for the kernel to
// take the host ends away with their namespaces before deleting the rest
// itself (a namespace some process still holds keeps its veths).
const hostEndWait = 5 * time.Second

// stallWait is how long the count of host ends may stand still before
// the rest are taken for held alive.
const stallWait = 300 * time.Millisecond

// RemoveNamespaces removes many namespaces, each as RemoveNamespace would,
// but lets the kernel do the slow part in one batch: deleting a veth waits
// for the kernel's RCU grace periods, one delete at a time, while the
// namespaces' devices go together when the namespaces go. Their
// memberships are forgotten in one store transaction, the mounts removed,
// and it returns once every host end of theirs is gone. Namespaces that
// share a namespace with one that stays, or that have links, go one by
// one. Names not recorded are skipped.
func (m *Manager) RemoveNamespaces(names []string) error {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var batch, single []string
	mounts := mountsByInode()
	err := m.st.View(func(tx *store.Tx) error {
		links, err := tx.Links()
		if err != nil {
			return err
		}
		linked := map[string]bool{}
		for _, l := range links {
			linked[l.NS1], linked[l.NS2] = true, true
		}
		for _, name := range slices.Sorted(maps.Keys(want)) {
			if _, ok, err := tx.Namespace(name); err != nil {
				return err
			} else if !ok {
				continue
			}
			// Another name of the same namespace that stays keeps it
			// alive, with its devices: that one goes the slow way.
			shared := slices.ContainsFunc(mounts[name], func(o string) bool { return !want[o] })
			if linked[name] || shared {
				single = append(single, name)
			} else {
				batch = append(batch, name)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range single {
		if err := m.RemoveNamespace(name); err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
		}
	}
	if len(batch) == 0 {
		return errors.Join(errs...)
	}
	var ends map[string][]string
	err = m.transact(func(tx *store.Tx) (store.Op, error) {
		return store.Op{Kind: store.OpNSRemoveMany, Names: batch}, m.checkNotHosts(tx, batch)
	}, func(tx *store.Tx, op store.Op) error {
		var err error
		ends, err = m.removeMany(tx, op.Names)
		return err
	}, nil)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("remove %d namespaces: %w", len(batch), err))...)
	}
	if err := m.awaitHostEnds(ends); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// mountsByInode maps each named namespace to the other names of the same
// namespace, from one pass over the mounts (sharingName per name would
// read every mount for every name).
func mountsByInode() map[string][]string {
	names, _ := netns.List()
	byIno := map[[2]uint64][]string{}
	for _, n := range names {
		var st unix.Stat_t
		if unix.Stat(netns.Path(n), &st) == nil {
			k := [2]uint64{st.Dev, st.Ino}
			byIno[k] = append(byIno[k], n)
		}
	}
	out := map[string][]string{}
	for _, group := range byIno {
		for _, n := range group {
			for _, o := range group {
				if o != n {
					out[n] = append(out[n], o)
				}
			}
		}
	}
	return out
}

// checkNotHosts refuses namespaces that are the host of networks or
// links, as RemoveNamespace does.
func (m *Manager) checkNotHosts(tx *store.Tx, names []string) error {
	paths := map[string]string{}
	for _, n := range names {
		paths[netns.Path(n)] = n
	}
	nets, err := tx.Summaries()
	if err != nil {
		return err
	}
	for _, n := range nets {
		if name, ok := paths[n.HostNetns]; ok {
			return fmt.Errorf("namespace %q: %w", name, errorf(ErrInUse, "it is the host of network %s; remove it first", n.Name))
		}
	}
	return nil
}

// removeMany unmounts the namespaces and forgets them with their
// memberships; it may be repeated. It returns the host ends to wait for,
// by host namespace path.
func (m *Manager) removeMany(tx *store.Tx, names []string) (map[string][]string, error) {
	going := map[string]bool{}
	for _, n := range names {
		going[n] = true
	}
	all, err := tx.AllMembers()
	if err != nil {
		return nil, err
	}
	nets := map[string]store.Network{}
	var ops []store.Op
	for network, members := range all {
		for _, a := range members {
			if !going[a.Namespace] {
				continue
			}
			n, ok := nets[network]
			if !ok {
				if n, _, err = tx.Network(network); err != nil {
					return nil, err
				}
				nets[network] = n
			}
			ops = append(ops, store.Op{Kind: store.OpDisconnect, Driver: n.Driver, Network: network, Namespace: a.Namespace,
				HostNetns: n.HostNetns, HostIno: n.HostIno, HostIf: a.HostIf, IfName: a.IfName, Addrs: a.Addrs, Ports: a.Ports})
		}
	}
	ends := map[string][]string{}
	for _, op := range ops {
		if err := m.unpublish(op); err != nil {
			return nil, err
		}
		if op.HostIf != "" {
			ends[op.HostNetns] = append(ends[op.HostNetns], op.HostIf)
		}
	}
	for _, n := range names {
		if err := unmountNamespace(n); err != nil {
			return nil, err
		}
	}
	crash.Point("ns-rm-many/unmounted")
	hostsWithPorts := map[string]bool{}
	for _, op := range ops {
		if err := forgetAttachment(tx, op); err != nil {
			return nil, err
		}
		if len(op.Ports) > 0 {
			hostsWithPorts[op.HostNetns] = true
		}
	}
	for _, n := range names {
		if err := tx.DeleteNamespace(n); err != nil {
			return nil, err
		}
	}
	// The last published port of a host takes the DNAT chains along.
	for host := range hostsWithPorts {
		if tx.HostHasPorts(host) {
			continue
		}
		h, err := m.liveHost(host)
		if err != nil || h == nil {
			return nil, err
		}
		hn, err := hostNetworks(tx, host, "")
		if err != nil {
			return nil, err
		}
		if err := m.syncHost(h, hn, false, &firewall.Changes{}); err != nil {
			return nil, err
		}
	}
	return ends, nil
}

// awaitHostEnds waits until the kernel has removed the host ends of
// namespaces that went, and deletes those still there after hostEndWait:
// a returned removal is finished.
func (m *Manager) awaitHostEnds(ends map[string][]string) error {
	var errs []error
	for host, names := range ends {
		h, err := m.liveHost(host)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if h == nil {
			continue // the host went too, and everything in it
		}
		// The kernel takes namespaces down in batches, so the count
		// keeps falling while it works; when it stops falling, what is
		// left is held alive (a process in the namespace, a socket of
		// the agent's) and is deleted here.
		left := names
		progress := time.Now()
		for deadline := time.Now().Add(hostEndWait); len(left) > 0 && time.Now().Before(deadline) && time.Since(progress) < stallWait; {
			now, err := present(h, left)
			if err != nil {
				errs = append(errs, err)
				break
			}
			if len(now) < len(left) {
				progress = time.Now()
			}
			left = now
			if len(left) > 0 {
				time.Sleep(25 * time.Millisecond) // a dump takes the lock the teardown needs
			}
		}
		for _, name := range left {
			if err := plumb.DeleteHostEnd(h, name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// present lists which of names are devices in h.
func present(h *kernel.NS, names []string) ([]string, error) {
	links, err := kernel.Retry(h.NL.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	have := map[string]bool{}
	for _, l := range links {
		have[l.Attrs().Name] = true
	}
	var out []string
	for _, n := range names {
		if have[n] {
			out = append(out, n)
		}
	}
	return out, nil
}
