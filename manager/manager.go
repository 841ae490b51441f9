// Package manager carries out nsnet's operations. Each one records the
// desired state and an in-flight marker in the store, makes the kernel match
// in idempotent steps, then clears the marker. A marker found when the store
// is opened belongs to a process that died mid-way (the store is exclusive to
// one live process), and Recover finishes or rolls back its operation.
package manager

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/nsnet/nsnet/netns"

	"github.com/nsnet/nsnet/kernel"
	"github.com/nsnet/nsnet/store"
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

// Manager is an open store plus the kernel handles an operation needs.
type Manager struct {
	cfg   Config
	st    *store.Store
	hosts map[string]*kernel.NS
	pid   int
}

// Open opens the store for changes, waiting for other nsnet processes, and
// recovers whatever a dead one left half done.
func Open(cfg Config) (*Manager, error) {
	m, err := open(cfg, false)
	if err != nil {
		return nil, err
	}
	if _, err := m.Recover(); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// OpenReadOnly opens the store for reading alongside other readers.
func OpenReadOnly(cfg Config) (*Manager, error) { return open(cfg, true) }

func open(cfg Config, readOnly bool) (*Manager, error) {
	if cfg.StateDir == "" {
		cfg.StateDir = DefaultStateDir
	}
	st, err := store.Open(cfg.StateDir, readOnly)
	if err != nil {
		return nil, err
	}
	return &Manager{cfg: cfg, st: st, hosts: map[string]*kernel.NS{}, pid: os.Getpid()}, nil
}

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
	h, err := kernel.Open(path)
	if err != nil {
		return nil, fmt.Errorf("host namespace %s: %w", path, err)
	}
	m.hosts[path] = h
	return h, nil
}

func (m *Manager) op(kind, network, ns string) store.Op {
	return store.Op{Kind: kind, Network: network, Namespace: ns, PID: m.pid, Started: time.Now().UTC()}
}

// Recover finishes or rolls back every operation a dead process left in
// flight and says what it did. Every step it takes is idempotent.
func (m *Manager) Recover() ([]string, error) {
	var ops []store.Op
	if err := m.st.View(func(tx *store.Tx) (err error) { ops, err = tx.Ops(); return err }); err != nil {
		return nil, err
	}
	// Memberships first, so networks and namespaces lose their members
	// before they go.
	sort.SliceStable(ops, func(i, j int) bool { return rank(ops[i].Kind) < rank(ops[j].Kind) })
	var done []string
	var errs []error
	for _, o := range ops {
		var err error
		verb := "rolled back"
		switch o.Kind {
		case store.OpConnect, store.OpDisconnect:
			err = m.teardownAttachment(o.Network, o.Namespace, o)
		case store.OpNetCreate, store.OpNetRemove:
			err = m.teardownNetwork(o.Network, o)
		case store.OpNSCreate, store.OpNSRemove:
			err = m.teardownNamespace(o.Namespace, o)
		default:
			err = fmt.Errorf("unknown operation kind %q", o.Kind)
		}
		if o.Kind == store.OpDisconnect || o.Kind == store.OpNetRemove || o.Kind == store.OpNSRemove {
			verb = "finished"
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("recover interrupted %s: %w", describeOp(o), err))
			continue
		}
		done = append(done, fmt.Sprintf("%s interrupted %s (pid %d)", verb, describeOp(o), o.PID))
	}
	return done, errors.Join(errs...)
}

func rank(kind string) int {
	switch kind {
	case store.OpConnect, store.OpDisconnect:
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
	}
	return fmt.Sprintf("%s of namespace %s", o.Kind, o.Namespace)
}

// GC recovers interrupted operations, then removes memberships whose
// namespace was deleted behind nsnet's back (by `ip netns del`, say), with
// their veths and leases.
func (m *Manager) GC() ([]string, error) {
	done, err := m.Recover()
	if err != nil {
		return done, err
	}
	var orphans []store.Attachment
	err = m.st.View(func(tx *store.Tx) error {
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
				if !netns.Exists(a.Namespace) {
					orphans = append(orphans, a)
				}
			}
		}
		return nil
	})
	if err != nil {
		return done, err
	}
	for _, a := range orphans {
		op := m.op(store.OpDisconnect, a.Network, a.Namespace)
		if err := m.st.Update(func(tx *store.Tx) error { return tx.PutOp(op) }); err != nil {
			return done, err
		}
		if err := m.teardownAttachment(a.Network, a.Namespace, op); err != nil {
			return done, fmt.Errorf("remove membership of vanished namespace %s in %s: %w", a.Namespace, a.Network, err)
		}
		done = append(done, fmt.Sprintf("removed membership of vanished namespace %s in network %s", a.Namespace, a.Network))
	}
	return done, nil
}
