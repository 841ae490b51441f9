package store

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Op is an operation in flight: written to the journal before its first
// kernel change and removed after its store transaction commits. It carries
// every name needed to undo or finish its kernel changes without the store.
//
// The journal is not fsynced on purpose. It guards against a process that
// dies (the page cache keeps what write returned), while a power loss also
// wipes the kernel state it describes: network namespaces, links and rules
// do not survive a reboot.
type Op struct {
	// ID names the operation's journal entry, unique to it, so that two
	// operations in flight never share an entry whatever they are about.
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// Driver is the driver of the network the operation is about.
	Driver    string `json:"driver,omitempty"`
	Network   string `json:"network,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	HostNetns string `json:"host_netns,omitempty"`
	// HostIno identifies the host namespace the operation changed, so
	// that its undo never touches another namespace the path has come to
	// mean (zero: not recorded).
	HostIno uint64 `json:"host_ino,omitempty"`
	HostIf  string `json:"host_if,omitempty"`
	// IfName is the interface inside Namespace (a macvlan member's only
	// device, or a link's first end).
	IfName string `json:"ifname,omitempty"`
	// Peer is a link's second namespace.
	Peer string `json:"peer,omitempty"`
	// Device is the host device a network owns (its bridge).
	Device string         `json:"bridge,omitempty"`
	Addrs  []netip.Prefix `json:"addrs,omitempty"`
	// Subnets are a network's, for undoing its isolation entries.
	Subnets []netip.Prefix `json:"subnets,omitempty"`
	// Ports are a member's published ports, for unpublishing them.
	Ports []PortMap `json:"ports,omitempty"`
	// Routes are the member's default routes before a connect that
	// replaces them, to put back if the connect is undone.
	Routes []Route `json:"routes,omitempty"`
	// Names are the namespaces of a batch removal.
	Names   []string  `json:"names,omitempty"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
}

// Route is a default route through a gateway on a named interface.
type Route struct {
	Gateway  netip.Addr `json:"gateway"`
	Dev      string     `json:"dev"`
	Priority int        `json:"priority,omitempty"`
	Onlink   bool       `json:"onlink,omitempty"`
}

// Operation kinds.
const (
	OpNetCreate  = "net-create"
	OpNetRemove  = "net-rm"
	OpConnect    = "connect"
	OpDisconnect = "disconnect"
	OpNSCreate   = "ns-create"
	OpNSRemove   = "ns-rm"
	// OpNSRemoveMany removes the namespaces in Names at once.
	OpNSRemoveMany = "ns-rm-many"
	OpLinkCreate   = "link-create"
	OpLinkRemove   = "link-rm"
	OpTapCreate    = "tap-create"
	OpTapRemove    = "tap-rm"
)

func (s *Store) journalPath(o Op) string {
	return filepath.Join(s.dir, "journal", o.ID+".json")
}

// NewOpID returns a fresh operation id.
func NewOpID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Begin records o as in flight; o must have an ID (NewOpID).
func (s *Store) Begin(o Op) error {
	if o.ID == "" {
		return fmt.Errorf("journal %s: operation without an id", o.Kind)
	}
	raw, err := json.Marshal(o)
	if err != nil {
		return err
	}
	p := s.journalPath(o)
	if err := os.WriteFile(p, raw, 0o600); err != nil {
		return fmt.Errorf("journal %s: %w", o.Kind, err)
	}
	return nil
}

// End records o as finished.
func (s *Store) End(o Op) error {
	if err := os.Remove(s.journalPath(o)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("journal %s: %w", o.Kind, err)
	}
	return nil
}

// Pending lists the operations in flight, oldest first. An entry torn by a
// crash while it was written described no kernel change yet, and is dropped.
func (s *Store) Pending() ([]Op, error) {
	dir := filepath.Join(s.dir, "journal")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	var ops []Op
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		raw, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read journal: %w", err)
		}
		var o Op
		if json.Unmarshal(raw, &o) != nil {
			if err := os.Remove(p); err != nil {
				return nil, fmt.Errorf("drop torn journal entry: %w", err)
			}
			continue
		}
		// The entry's name is its id (entries written before ops had ids
		// are named by a hash of what they were about).
		o.ID = strings.TrimSuffix(e.Name(), ".json")
		ops = append(ops, o)
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].Started.Before(ops[j].Started) })
	return ops, nil
}
