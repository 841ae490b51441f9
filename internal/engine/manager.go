// Package engine carries out nsnet's operations. Each one records the
// desired state and an in-flight marker in the store, makes the kernel match
// in idempotent steps, then clears the marker. A marker found when the store
// is opened belongs to a process that died mid-way (the store is exclusive to
// one live process), and Recover finishes or rolls back its operation.
package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/nsnet/nsnet/internal/driver"
	"github.com/nsnet/nsnet/internal/drivers"
	"github.com/nsnet/nsnet/internal/firewall"
	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/netns"
	"github.com/nsnet/nsnet/internal/plumb"
	"github.com/nsnet/nsnet/internal/store"
)

// DefaultStateDir is where state lives unless told otherwise.
const DefaultStateDir = "/var/lib/nsnet"

// Config says where nsnet keeps state and which namespace is the host.
type Config struct {
	StateDir string
	// HostNetns is the path of the namespace treated as the host for new
	// networks; empty means the namespace nsnet runs in.
	HostNetns string
}

// Firewall is what the engine needs of nsnet's nftables state in one host
// namespace: *firewall.Firewall, or firewall.Fake in unit tests.
type Firewall interface {
	// Sync rebuilds the host's table from its whole state.
	Sync(firewall.Host) error
	// Add adds new networks' set elements alone when the table's rules
	// already serve them; false means Sync is needed.
	Add(firewall.Host) (bool, error)
	// Publish adds and removes port map elements.
	Publish(add, remove []firewall.Port) error
	// OpenForward inserts accepts for a network into other tables'
	// forward chains that drop; CloseForward removes them.
	OpenForward(firewall.Network) ([]firewall.ChainRef, error)
	CloseForward(network string) error
	// ForwardStale reports which networks' accepts there differ from
	// what OpenForward would make now.
	ForwardStale([]firewall.Network) (map[string]bool, error)
	// Owner names the state directory whose table the host has ("" for
	// none).
	Owner() (string, error)
}

// Manager is an open store plus the kernel handles an operation needs.
type Manager struct {
	cfg   Config
	st    *store.Store
	hosts map[string]*kernel.NS
	pid   int
	// recovered says what Open finished or rolled back; recoverErr what it
	// could not.
	recovered  []string
	recoverErr error
	// hostInos are the namespaces each host path stood for when networks
	// were made there.
	hostInos map[string]map[uint64]bool

	// The seams unit tests replace, so that the engine's logic runs with
	// fakes and no privileges: how a host's firewall, a host namespace
	// and a named namespace are opened, whether a namespace exists, and
	// where per-namespace files (resolv.conf) go.
	newFirewall   func(h *kernel.NS) (Firewall, error)
	openHost      func(path string) (*kernel.NS, error)
	openNamespace func(name string) (*kernel.NS, error)
	nsExists      func(name string) bool
	etcDir        string
}

// View reads the store, for records the engine keeps for others (labs).
func (m *Manager) View(fn func(*store.Tx) error) error { return m.st.View(fn) }

// Update changes the store, for records the engine keeps for others.
func (m *Manager) Update(fn func(*store.Tx) error) error { return m.st.Update(fn) }

// HostNetns is the path of the manager's host namespace ("" for its own).
func (m *Manager) HostNetns() string { return m.cfg.HostNetns }

// StateDir is the manager's state directory, made absolute.
func (m *Manager) StateDir() string { return m.cfg.StateDir }

// RecoverErr reports the interrupted operations Open could not recover.
func (m *Manager) RecoverErr() error { return m.recoverErr }

// Open opens the store for changes, waiting for other nsnet processes, and
// recovers whatever a dead one left half done.
func Open(cfg Config) (*Manager, error) {
	m, err := open(cfg, false)
	if err != nil {
		return nil, err
	}
	// An operation that cannot be recovered now (its namespace busy, a
	// file in the way) must not block unrelated commands: it stays in the
	// journal, RecoverErr says why, and gc reports it.
	m.recovered, m.recoverErr = m.Recover()
	return m, nil
}

// OpenReadOnly opens the store for reading alongside other readers.
func OpenReadOnly(cfg Config) (*Manager, error) { return open(cfg, true) }

func open(cfg Config, readOnly bool) (*Manager, error) {
	if cfg.StateDir == "" {
		cfg.StateDir = DefaultStateDir
	}
	// The table records its state directory; a relative path would not
	// name one directory.
	if abs, err := filepath.Abs(cfg.StateDir); err == nil {
		cfg.StateDir = abs
	}
	st, err := store.Open(cfg.StateDir, readOnly)
	if err != nil {
		return nil, err
	}
	m := &Manager{cfg: cfg, st: st, hosts: map[string]*kernel.NS{}, pid: os.Getpid(), hostInos: map[string]map[uint64]bool{},
		newFirewall:   func(h *kernel.NS) (Firewall, error) { return firewall.New(int(h.Fd())) },
		openHost:      kernel.Open,
		openNamespace: plumb.OpenNamespace,
		nsExists:      netns.Exists,
		etcDir:        netns.EtcDir,
	}
	err = st.View(func(tx *store.Tx) error {
		if err := tx.Hosts(m.knowHost); err != nil {
			return err
		}
		links, err := tx.Links()
		for _, l := range links {
			if l.NS1 == HostName || l.NS2 == HostName {
				m.knowHost(l.HostNetns, l.HostIno)
			}
		}
		return err
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	return m, nil
}

// knowHost records that objects were made in the host namespace at path
// while it was the one with inode ino.
func (m *Manager) knowHost(path string, ino uint64) {
	if ino == 0 {
		return // made before nsnet recorded hosts' inodes
	}
	if m.hostInos[path] == nil {
		m.hostInos[path] = map[uint64]bool{}
	}
	m.hostInos[path][ino] = true
}

// firewall connects to nftables in host h.
func (m *Manager) firewall(h *kernel.NS) (Firewall, error) { return m.newFirewall(h) }

// Close releases kernel handles and the store.
func (m *Manager) Close() error {
	for _, h := range m.hosts {
		h.Close()
	}
	return m.st.Close()
}

// host returns a handle on the host namespace at path.
func (m *Manager) host(path string) (*kernel.NS, error) {
	if h, ok := m.hosts[path]; ok {
		return h, nil
	}
	h, err := m.openHost(path)
	if err != nil {
		return nil, fmt.Errorf("host namespace %s: %w", path, err)
	}
	if want := m.hostInos[path]; len(want) > 0 {
		ino, err := h.Fd().Inode()
		if err == nil && !want[ino] {
			err = errHostReplaced
		}
		if err != nil {
			h.Close()
			return nil, fmt.Errorf("host namespace %s: %w", describeHost(path), err)
		}
	}
	m.hosts[path] = h
	return h, nil
}

// errHostReplaced means a host path now leads to another namespace than
// the one nsnet's networks were made in: that one is gone, and this one
// is not nsnet's to change.
var errHostReplaced = errors.New("it is not the namespace nsnet's networks were made in any more (deleted and made anew, or rebooted?); nsnet restore rebuilds them in it, nsnet net rm forgets them")

func describeHost(path string) string {
	if path == "" {
		return "(the one nsnet runs in)"
	}
	return path
}

// liveHost returns a handle on the host namespace at path, or nil if that
// namespace is gone, and everything nsnet made in it with it: the undo and
// teardown paths then have nothing left to do there.
func (m *Manager) liveHost(path string) (*kernel.NS, error) {
	h, err := m.host(path)
	if plumb.Gone(err) || errors.Is(err, errHostReplaced) {
		return nil, nil
	}
	return h, err
}

// opHost returns a handle on the host namespace an operation changed, or
// nil if it is gone or its path now leads to another namespace: either way
// nothing of the operation's is there to undo.
func (m *Manager) opHost(op store.Op) (*kernel.NS, error) {
	h, err := m.liveHost(op.HostNetns)
	if err != nil || h == nil || op.HostIno == 0 {
		return h, err
	}
	ino, err := h.Fd().Inode()
	if err != nil {
		return nil, fmt.Errorf("host namespace %s: %w", describeHost(op.HostNetns), err)
	}
	if ino != op.HostIno {
		return nil, nil
	}
	return h, nil
}

// inode identifies the namespace behind h.
func inode(h *kernel.NS) (uint64, error) {
	ino, err := h.Fd().Inode()
	if err != nil {
		return 0, fmt.Errorf("host namespace %s: %w", describeHost(h.Path), err)
	}
	return ino, nil
}

// Recover finishes or rolls back every operation a dead process left in the
// journal and says what it did. An operation whose store transaction
// committed had made all its kernel changes; one whose transaction did not
// is undone (create, connect) or carried to its end (remove, disconnect)
// from the names its journal entry holds. Every step is idempotent.
func (m *Manager) Recover() ([]string, error) {
	ops, err := m.st.Pending()
	if err != nil {
		return nil, err
	}
	// Memberships first, so networks and namespaces lose their members
	// before they go.
	sort.SliceStable(ops, func(i, j int) bool { return rank(ops[i].Kind) < rank(ops[j].Kind) })
	var done []string
	var errs []error
	for _, o := range ops {
		verb, err := m.recoverOp(o)
		if err == nil {
			err = m.st.End(o)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("recover interrupted %s: %w", describeOp(o), err))
			continue
		}
		done = append(done, fmt.Sprintf("%s interrupted %s (pid %d)", verb, describeOp(o), o.PID))
	}
	return done, errors.Join(errs...)
}

func (m *Manager) recoverOp(o store.Op) (string, error) {
	var committed bool
	err := m.st.View(func(tx *store.Tx) (err error) {
		switch o.Kind {
		case store.OpConnect, store.OpDisconnect:
			_, committed, err = tx.Attachment(o.Network, o.Namespace)
		case store.OpNetCreate, store.OpNetRemove:
			_, committed, err = tx.Network(o.Network)
		case store.OpNSCreate, store.OpNSRemove:
			_, committed, err = tx.Namespace(o.Namespace)
		case store.OpLinkCreate, store.OpLinkRemove:
			_, committed, err = tx.Link(o.Namespace, o.Peer)
		case store.OpTapCreate, store.OpTapRemove:
			_, committed, err = tx.Tap(o.HostIf)
		}
		return err
	})
	if err != nil {
		return "", err
	}
	switch o.Kind {
	case store.OpConnect:
		if committed {
			return "completed", nil
		}
		return "rolled back", errors.Join(m.unpublish(o), m.unplug(o), m.forgetResolver(o), m.restoreRoutes(o), m.resyncPorts(o))
	case store.OpNetCreate:
		if committed {
			return "completed", nil
		}
		return "rolled back", m.unbuild(nil, o)
	case store.OpNSCreate:
		if committed {
			return "completed", nil
		}
		return "rolled back", unmountNamespace(o.Namespace)
	case store.OpDisconnect:
		if err := errors.Join(m.unpublish(o), m.unplug(o), m.forgetResolver(o)); err != nil {
			return "", err
		}
		if err := m.st.Update(func(tx *store.Tx) error { return forgetAttachment(tx, o) }); err != nil {
			return "", err
		}
		return "finished", m.resyncPorts(o)
	case store.OpNetRemove:
		if err := m.unbuild(nil, o); err != nil {
			return "", err
		}
		return "finished", m.st.Update(func(tx *store.Tx) error { return forgetNetwork(tx, o) })
	case store.OpLinkCreate:
		if committed {
			return "completed", nil
		}
		return "rolled back", m.unlink(o)
	case store.OpLinkRemove:
		if err := m.unlink(o); err != nil {
			return "", err
		}
		return "finished", m.st.Update(func(tx *store.Tx) error { return tx.DeleteLink(o.Namespace, o.Peer) })
	case store.OpTapCreate:
		if committed {
			return "completed", nil
		}
		return "rolled back", m.unplugTap(o)
	case store.OpTapRemove:
		if err := m.unplugTap(o); err != nil {
			return "", err
		}
		return "finished", m.st.Update(func(tx *store.Tx) error { return forgetTap(tx, o) })
	case store.OpNSRemove:
		if err := unmountNamespace(o.Namespace); err != nil {
			return "", err
		}
		return "finished", m.st.Update(func(tx *store.Tx) error { return tx.DeleteNamespace(o.Namespace) })
	case store.OpNSRemoveMany:
		var ends map[string][]string
		if err := m.st.Update(func(tx *store.Tx) (err error) {
			ends, err = m.removeMany(tx, o.Names)
			return err
		}); err != nil {
			return "", err
		}
		return "finished", m.awaitHostEnds(ends)
	}
	return "", fmt.Errorf("unknown operation kind %q", o.Kind)
}

func rank(kind string) int {
	switch kind {
	case store.OpConnect, store.OpDisconnect, store.OpLinkCreate, store.OpLinkRemove, store.OpTapCreate, store.OpTapRemove:
		return 0
	case store.OpNetCreate, store.OpNetRemove:
		return 1
	}
	return 2
}

func describeOp(o store.Op) string {
	switch o.Kind {
	case store.OpConnect:
		return fmt.Sprintf("connect of %s to %s", o.Namespace, o.Network)
	case store.OpDisconnect:
		return fmt.Sprintf("disconnect of %s from %s", o.Namespace, o.Network)
	case store.OpNetCreate, store.OpNetRemove:
		return fmt.Sprintf("%s of network %s", o.Kind, o.Network)
	case store.OpLinkCreate, store.OpLinkRemove:
		return fmt.Sprintf("%s between %s and %s", o.Kind, o.Namespace, o.Peer)
	case store.OpTapCreate, store.OpTapRemove:
		return fmt.Sprintf("%s of TAP %s", o.Kind, o.HostIf)
	case store.OpNSRemoveMany:
		return fmt.Sprintf("removal of %d namespaces (%s ...)", len(o.Names), o.Names[0])
	}
	return fmt.Sprintf("%s of namespace %s", o.Kind, o.Namespace)
}

// transact runs one operation as one store transaction: plan validates and
// decides every name (changing only the transaction), the journal records
// the resulting op, apply makes the kernel changes and records them, and the
// transaction commits only if all that succeeded. If apply fails, undo (when
// not nil) reverses whatever apply may have done.
func (m *Manager) transact(plan func(*store.Tx) (store.Op, error), apply func(*store.Tx, store.Op) error, undo func(store.Op) error) error {
	var op store.Op
	begun := false
	err := m.st.Update(func(tx *store.Tx) error {
		var err error
		if op, err = plan(tx); err != nil {
			return err
		}
		op.ID, op.PID, op.Started = store.NewOpID(), m.pid, time.Now().UTC()
		if err := m.st.Begin(op); err != nil {
			return err
		}
		begun = true
		return apply(tx, op)
	})
	if !begun {
		return err
	}
	if err != nil && undo == nil {
		// A remove or disconnect that failed half-way stays journaled, so
		// that the next command or gc carries it to its end.
		return fmt.Errorf("%w (nsnet gc finishes it)", err)
	}
	if err != nil {
		if uerr := undo(op); uerr != nil {
			// Leave the journal entry: the next command or gc retries.
			return errors.Join(err, fmt.Errorf("undo (run nsnet gc): %w", uerr))
		}
	}
	if eerr := m.st.End(op); eerr != nil {
		return errors.Join(err, eerr)
	}
	return err
}

// GC recovers interrupted operations, then removes memberships whose
// namespace was deleted behind nsnet's back (by `ip netns del`, say), with
// their veths and leases.
func (m *Manager) GC() ([]string, error) {
	done, err := m.Recover()
	done = append(m.recovered, done...)
	if err != nil {
		return done, err
	}
	m.recoverErr = nil
	// A namespace nsnet made whose name was removed while a --share name
	// still holds it lives on under that name: its memberships pass there
	// before vanished namespaces' memberships are removed below.
	var gone []string
	if err := m.st.View(func(tx *store.Tx) error {
		nss, err := tx.Namespaces()
		for _, n := range nss {
			if !m.nsExists(n.Name) {
				gone = append(gone, n.Name)
			}
		}
		return err
	}); err != nil {
		return done, err
	}
	for _, name := range gone {
		heir, err := m.passToSharer(name)
		if err != nil {
			return done, err
		}
		if heir != "" {
			done = append(done, fmt.Sprintf("namespace %s was deleted behind nsnet's back; its memberships and links pass to %s, which holds the same namespace", name, heir))
		}
	}
	var orphans []store.Attachment
	err = m.st.View(func(tx *store.Tx) error {
		all, err := tx.AllMembers()
		for _, members := range all {
			for _, a := range members {
				if !m.nsExists(a.Namespace) {
					orphans = append(orphans, a)
				}
			}
		}
		return err
	})
	if err != nil {
		return done, err
	}
	for _, a := range orphans {
		if err := m.Disconnect(a.Network, a.Namespace); err != nil {
			return done, fmt.Errorf("remove membership of vanished namespace %s in %s: %w", a.Namespace, a.Network, err)
		}
		done = append(done, fmt.Sprintf("removed membership of vanished namespace %s in network %s", a.Namespace, a.Network))
	}
	// Rebuild every host's table and routed DNS address, and let each
	// driver repair its members (routed members' gateway entries), in
	// case someone deleted or changed them.
	var nets []store.Network
	var members map[string][]store.Attachment
	var taps []store.Tap
	if err := m.st.View(func(tx *store.Tx) (err error) {
		if nets, err = tx.Networks(); err != nil {
			return err
		}
		if taps, err = tx.Taps(); err != nil {
			return err
		}
		members, err = tx.AllMembers()
		return err
	}); err != nil {
		return done, err
	}
	// What cannot be repaired is named and the rest carries on.
	var errs []error
	rebuilt := map[string]bool{}
	// Which networks' accepts in each host's other forward chains need
	// putting right, read once per host.
	stale := map[string]map[string]bool{}
	for _, n := range nets {
		if !rebuilt[n.HostNetns] {
			rebuilt[n.HostNetns] = true
			if err := m.resyncHost(n.HostNetns, ""); err != nil {
				errs = append(errs, fmt.Errorf("rebuild host namespace %s: %w", describeHost(n.HostNetns), err))
			}
			if h, err := m.liveHost(n.HostNetns); err == nil && h != nil {
				var here []store.Network
				for _, o := range nets {
					if o.HostNetns == n.HostNetns {
						here = append(here, o)
					}
				}
				if stale[n.HostNetns], err = m.staleForward(h, here); err != nil {
					errs = append(errs, fmt.Errorf("read host namespace %s's forward chains: %w", describeHost(n.HostNetns), err))
				}
			}
		}
		did, err := m.repair(n, members[n.Name], taps, stale[n.HostNetns])
		done = append(done, did...)
		if err != nil {
			errs = append(errs, fmt.Errorf("repair network %s: %w", n.Name, err))
		}
	}
	var links []store.Link
	var nss []store.Namespace
	if err := m.st.View(func(tx *store.Tx) (err error) {
		if links, err = tx.Links(); err != nil {
			return err
		}
		nss, err = tx.Namespaces()
		return err
	}); err != nil {
		return done, errors.Join(append(errs, err)...)
	}
	var kept []store.Link
	for _, l := range links {
		if (l.NS1 != HostName && !m.nsExists(l.NS1)) || (l.NS2 != HostName && !m.nsExists(l.NS2)) {
			if err := m.RemoveLink(l.NS1, l.NS2); err != nil {
				errs = append(errs, err)
				continue
			}
			done = append(done, fmt.Sprintf("removed link %s-%s of a vanished namespace", l.NS1, l.NS2))
			continue
		}
		kept = append(kept, l)
	}
	did, err := m.repairLinks(kept)
	done = append(done, did...)
	errs = append(errs, err)
	for _, n := range nss {
		if !m.nsExists(n.Name) {
			if err := m.forgetNamespace(n.Name); err != nil {
				errs = append(errs, err)
				continue
			}
			done = append(done, fmt.Sprintf("forgot namespace %s, deleted behind nsnet's back", n.Name))
		}
	}
	return done, errors.Join(errs...)
}

// repair makes network n's host and members what the store says, as far
// as it can be rebuilt from the store: the driver rebuilds the network's
// own devices and addresses, the host's other tables get their accepts
// again, and each member whose namespace is there its devices, addresses,
// routes and resolv.conf. It says what it restored.
func (m *Manager) repair(n store.Network, members []store.Attachment, taps []store.Tap, stale map[string]bool) ([]string, error) {
	d, err := drivers.Of(n)
	if err != nil {
		return nil, err
	}
	h, err := m.liveHost(n.HostNetns)
	if err != nil {
		return nil, err
	}
	if h == nil {
		return []string{fmt.Sprintf("cannot repair network %s: its host namespace %s is gone or made anew (after a reboot, nsnet restore rebuilds it there; nsnet net rm %s forgets it)", n.Name, describeHost(n.HostNetns), n.Name)}, nil
	}
	var done []string
	if dev := d.Device(n); dev != "" {
		if l, err := h.LinkByName(dev); err != nil {
			return done, err
		} else if l == nil {
			done = append(done, fmt.Sprintf("rebuilt %s of network %s (it was gone)", dev, n.Name))
		}
	}
	if err := d.Build(h, n); err != nil {
		return done, err
	}
	if did, err := m.reopenForward(h, d, n, stale); err != nil {
		return done, err
	} else if did != "" {
		done = append(done, did)
	}
	did, err := m.repairTaps(h, n, taps)
	done = append(done, did...)
	if err != nil {
		return done, err
	}
	for _, a := range members {
		did, err := d.Repair(h, n, a)
		if err != nil {
			return done, fmt.Errorf("member %s: %w", a.Namespace, err)
		}
		if did != "" {
			done = append(done, fmt.Sprintf("member %s of network %s: %s", a.Namespace, n.Name, did))
		}
		if m.nsExists(a.Namespace) {
			if err := m.setResolver(a.Namespace, n, true); err != nil {
				return done, err
			}
		}
	}
	return done, nil
}

// RecheckForward puts right the accepts of host's networks in the host's
// other tables' forward chains (the agent calls it when that ruleset
// changed) and says what it changed.
func (m *Manager) RecheckForward(host string) ([]string, error) {
	var nets []store.Network
	if err := m.st.View(func(tx *store.Tx) error {
		// Whole records: reopenForward compares the accepts recorded.
		all, err := tx.Networks()
		for _, n := range all {
			if n.HostNetns == host {
				nets = append(nets, n)
			}
		}
		return err
	}); err != nil {
		return nil, err
	}
	h, err := m.liveHost(host)
	if err != nil || h == nil {
		return nil, err
	}
	stale, err := m.staleForward(h, nets)
	if err != nil {
		return nil, err
	}
	var done []string
	var errs []error
	for _, n := range nets {
		d, err := drivers.Of(n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		did, err := m.reopenForward(h, d, n, stale)
		if err != nil {
			errs = append(errs, fmt.Errorf("network %s: %w", n.Name, err))
		} else if did != "" {
			done = append(done, did)
		}
	}
	return done, errors.Join(errs...)
}

// staleForward reads, once for all of nets (a host's), which networks'
// accepts in the host's other forward chains need putting right.
func (m *Manager) staleForward(h *kernel.NS, nets []store.Network) (map[string]bool, error) {
	fw, err := m.firewall(h)
	if err != nil {
		return nil, err
	}
	var fns []firewall.Network
	for _, n := range nets {
		fns = append(fns, firewallNetwork(n))
	}
	stale, err := fw.ForwardStale(fns)
	if stale == nil {
		stale = map[string]bool{}
	}
	return stale, err
}

// reopenForward puts the network's accepts into other tables' forward
// chains that drop as they are now: a chain whose policy turned to drop
// since the network was made gets them, one that went loses its record.
//
// stale, when not nil, says which networks of the host need it (read once
// for them all by ForwardStale); nil asks for n alone.
func (m *Manager) reopenForward(h *kernel.NS, d driver.Driver, n store.Network, stale map[string]bool) (string, error) {
	if !d.Caps().Firewall || n.Internal || n.NoHostFirewall {
		return "", nil
	}
	fw, err := m.firewall(h)
	if err != nil {
		return "", err
	}
	if stale == nil {
		if stale, err = fw.ForwardStale([]firewall.Network{firewallNetwork(n)}); err != nil {
			return "", err
		}
	}
	if !stale[n.Name] {
		return "", nil
	}
	if err := fw.CloseForward(n.Name); err != nil {
		return "", err
	}
	refs, err := fw.OpenForward(firewallNetwork(n))
	if err != nil {
		return "", err
	}
	var now []store.ChainRef
	for _, r := range refs {
		now = append(now, store.ChainRef{Family: firewall.FamilyName(r.Family), Table: r.Table, Chain: r.Chain})
	}
	if slices.Equal(now, n.ForwardAccepts) {
		return "", nil
	}
	err = m.st.Update(func(tx *store.Tx) error {
		cur, ok, err := tx.Network(n.Name)
		if err != nil || !ok {
			return err
		}
		cur.ForwardAccepts = now
		return tx.PutNetwork(cur)
	})
	return fmt.Sprintf("network %s: accepts in the host's dropping forward chains now %v (were %v)", n.Name, now, n.ForwardAccepts), err
}
