// Package store keeps nsnet's desired state in one embedded bbolt file under
// the state directory, and a journal of operations in flight beside it.
// bbolt's file lock makes a Store exclusive to one process at a time, so each
// nsnet command runs as one critical section and any operation it finds in
// the journal belongs to a process that died.
package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"golang.org/x/sys/unix"
)

// Network is a network as the user asked for it.
type Network struct {
	Name     string         `json:"name"`
	Driver   string         `json:"driver"`
	Subnets  []netip.Prefix `json:"subnets"`
	Gateways []netip.Addr   `json:"gateways"`
	NAT      bool           `json:"nat"`
	Internal bool           `json:"internal"`
	MTU      int            `json:"mtu,omitempty"`
	// Options are the driver's own settings, by flag name (the bridge
	// driver's bridge-name, the macvlan driver's parent).
	Options map[string]string `json:"options,omitempty"`
	// NoHostFirewall keeps nsnet out of other tables' forward chains.
	NoHostFirewall bool `json:"no_host_firewall,omitempty"`
	// NoIsolate lets members reach other networks' members directly.
	NoIsolate bool `json:"no_isolate,omitempty"`
	// DNS runs a resolver for members; DNSUpstreams replace the host's
	// resolv.conf servers for other names.
	DNS          bool         `json:"dns"`
	DNSUpstreams []netip.Addr `json:"dns_upstreams,omitempty"`
	// IPRanges limit the addresses handed out without --ip, one per
	// family at most (Docker's --ip-range).
	IPRanges []netip.Prefix `json:"ip_ranges,omitempty"`
	// AuxAddresses are addresses of the segment kept from members, by
	// name (Docker's --aux-address: a router, a printer, the host's own).
	AuxAddresses map[string]netip.Addr `json:"aux_addresses,omitempty"`
	// ForwardAccepts are the other tables' forward chains, with policy
	// drop, into which nsnet inserted accept rules for this network.
	ForwardAccepts []ChainRef `json:"forward_accepts,omitempty"`
	// HostNetns is the namespace file of the host the network lives in;
	// empty means the namespace nsnet ran in when it created the network.
	HostNetns string `json:"host_netns,omitempty"`
	// HostIno identifies that namespace: a path can come to mean another
	// one (a reused PID in /proc/PID/ns/net, a name deleted and made anew).
	HostIno uint64 `json:"host_ino,omitempty"`
	// Cluster is set for this host's part of a cluster network (`net
	// create --scope cluster`): the backend that joins the hosts.
	Cluster *ClusterNet `json:"cluster,omitempty"`
	Created time.Time   `json:"created"`
}

// ClusterNet is what a host keeps of a cluster network; etcd holds the
// rest (blocks, hosts).
type ClusterNet struct {
	Backend string `json:"backend"`
	// BlockBits is the prefix length of the blocks hosts claim.
	BlockBits int `json:"block_bits"`
	// VNI is the vxlan backend's network identifier.
	VNI int `json:"vni,omitempty"`
	// Blocks are the blocks this host holds of the network's subnet: its
	// members' addresses come from them without asking etcd.
	Blocks []netip.Prefix `json:"blocks,omitempty"`
}

// UnmarshalJSON reads a network record, moving the driver settings that
// records written before drivers had options kept as fields of their own.
func (n *Network) UnmarshalJSON(raw []byte) error {
	type plain Network
	var rec struct {
		plain
		Bridge string `json:"bridge"`
		Parent string `json:"parent"`
	}
	if err := json.Unmarshal(raw, &rec); err != nil {
		return err
	}
	*n = Network(rec.plain)
	for k, v := range map[string]string{"bridge-name": rec.Bridge, "parent": rec.Parent} {
		if v != "" {
			if n.Options == nil {
				n.Options = map[string]string{}
			}
			n.Options[k] = v
		}
	}
	return nil
}

// ChainRef names an nftables chain of another table.
type ChainRef struct {
	Family string `json:"family"`
	Table  string `json:"table"`
	Chain  string `json:"chain"`
}

// Link is a veth pair straight between two namespaces.
type Link struct {
	// NS1 and NS2 are namespace names, or "host" for the host namespace.
	NS1    string         `json:"ns1"`
	NS2    string         `json:"ns2"`
	If1    string         `json:"if1"`
	If2    string         `json:"if2"`
	Addrs1 []netip.Prefix `json:"addrs1,omitempty"`
	Addrs2 []netip.Prefix `json:"addrs2,omitempty"`
	MTU    int            `json:"mtu,omitempty"`
	// HostNetns is the host namespace's file when either end is "host",
	// and HostIno identifies that namespace, as a network's does.
	HostNetns string `json:"host_netns,omitempty"`
	HostIno   uint64 `json:"host_ino,omitempty"`
}

// Tap is a persistent TAP device on a bridge network, for a virtual machine.
type Tap struct {
	Name    string         `json:"name"`
	Network string         `json:"network"`
	Addrs   []netip.Prefix `json:"addrs"`
}

// Namespace is a named network namespace nsnet created.
type Namespace struct {
	Name string `json:"name"`
	// Shares names the namespace this one was made to share, if any.
	Shares  string    `json:"shares,omitempty"`
	Created time.Time `json:"created"`
}

// Attachment is one namespace's membership of one network.
type Attachment struct {
	Network   string `json:"network"`
	Namespace string `json:"namespace"`
	// IfName is the interface inside the namespace.
	IfName string `json:"ifname"`
	// HostIf is the host end of the veth.
	HostIf string `json:"host_if,omitempty"`
	// Addrs are the member's addresses with the subnet's prefix length.
	Addrs []netip.Prefix `json:"addrs"`
	// Ports are the member's published ports.
	Ports []PortMap `json:"ports,omitempty"`
	// Aliases are further names the network's resolver answers for.
	Aliases []string `json:"aliases,omitempty"`
	// ContainerID is the runtime's container, for a membership made
	// through CNI (which keys it by container and IfName).
	ContainerID string `json:"container_id,omitempty"`
}

// PortMap publishes a range of a member's ports on the host.
type PortMap struct {
	// HostIP limits the mapping to one host address; zero means any.
	HostIP   netip.Addr `json:"host_ip,omitempty"`
	HostPort uint16     `json:"host_port"`
	HostEnd  uint16     `json:"host_end,omitempty"`
	Port     uint16     `json:"port"`
	Proto    string     `json:"proto"`
}

// Count is how many ports the mapping covers.
func (p PortMap) Count() int {
	if p.HostEnd == 0 {
		return 1
	}
	return int(p.HostEnd-p.HostPort) + 1
}

func (p PortMap) String() string {
	host := fmt.Sprint(p.HostPort)
	cont := fmt.Sprint(p.Port)
	if p.HostEnd != 0 {
		host = fmt.Sprintf("%d-%d", p.HostPort, p.HostEnd)
		cont = fmt.Sprintf("%d-%d", p.Port, int(p.Port)+p.Count()-1)
	}
	if p.HostIP.IsValid() {
		if p.HostIP.Is6() {
			host = "[" + p.HostIP.String() + "]:" + host
		} else {
			host = p.HostIP.String() + ":" + host
		}
	}
	return host + ":" + cont + "/" + p.Proto
}

var (
	bNetworks    = []byte("networks")
	bNamespaces  = []byte("namespaces")
	bAttachments = []byte("attachments")
	bLeases      = []byte("leases")
	bIfNames     = []byte("ifnames")
	bLinks       = []byte("links")
	bTaps        = []byte("taps")
	bPorts       = []byte("ports")
	bLabs        = []byte("labs")
	bBGP         = []byte("bgp")
	bCluster     = []byte("cluster")
	allBuckets   = [][]byte{bNetworks, bNamespaces, bAttachments, bLeases, bIfNames, bLinks, bTaps, bPorts, bSummaries, bLabs, bBGP, bCluster}
)

// ErrEmpty reports a store file of no bytes, which a crash or a disk
// problem left: nsnet refuses to start afresh over it.
var ErrEmpty = errors.New("the file is empty (truncated?); nsnet will not start afresh over it, as the networks it recorded would be orphaned in the kernel: restore it from a backup, or move it away to start anew and remove the orphans (nsbr-*, nsv* devices, table inet nsnet) by hand")

// FileName is the store's file inside the state directory.
const FileName = "nsnet.db"

// LockTimeout bounds how long a command waits for another to finish.
const LockTimeout = 60 * time.Second

// Store is an open state file.
type Store struct {
	db   *bolt.DB
	dir  string
	lock *os.File
}

// lockName is nsnet's own lock beside the bbolt file. bbolt's lock retries
// every 50 ms, which a command would pay whenever the DNS agent reads; this
// one waits in the kernel, so waiting costs what the holder takes.
const lockName = "lock"

// Waiting, when set, is told once when a command has waited a second for
// another's lock, so that a user knows why nothing happens.
var Waiting func(dir string)

// acquire takes the state directory's lock, shared for readers.
func acquire(dir string, readOnly bool, timeout time.Duration) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil && readOnly {
		// A reader of a state directory it cannot write (read-only
		// media, another user's) can still take a shared lock.
		f, err = os.Open(filepath.Join(dir, lockName))
	}
	if err != nil {
		return nil, fmt.Errorf("state lock: %w", err)
	}
	how := unix.LOCK_EX
	if readOnly {
		how = unix.LOCK_SH
	}
	err = unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
	if err == nil {
		return f, nil
	}
	if !errors.Is(err, unix.EWOULDBLOCK) {
		f.Close()
		return nil, fmt.Errorf("state lock: %w", err)
	}
	// Wait in the kernel, not by polling: the kernel hands the lock to a
	// blocked waiter as it is released, where pollers race every newcomer
	// and, fifty processes at once, one can lose for a minute. The wait
	// has a deadline; past it, the waiting goroutine keeps the file until
	// its flock returns, and lets the lock go at once.
	got := make(chan error, 1)
	go func() {
		for {
			err := unix.Flock(int(f.Fd()), how)
			if !errors.Is(err, unix.EINTR) {
				got <- err
				return
			}
		}
	}()
	notice := time.NewTimer(time.Second)
	defer notice.Stop()
	expire := time.NewTimer(timeout)
	defer expire.Stop()
	for {
		select {
		case err := <-got:
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("state lock: %w", err)
			}
			return f, nil
		case <-notice.C:
			if Waiting != nil {
				Waiting(dir)
			}
		case <-expire.C:
			go func() {
				if <-got == nil {
					unix.Flock(int(f.Fd()), unix.LOCK_UN)
				}
				f.Close()
			}()
			return nil, fmt.Errorf("state store %s: another nsnet held it for over %s", dir, timeout)
		}
	}
}

// Open opens (creating if needed) the store in dir, waiting for any other
// nsnet process to release it. A read-only store shares the lock with other
// readers.
func Open(dir string, readOnly bool) (*Store, error) {
	return OpenTimeout(dir, readOnly, LockTimeout)
}

// OpenTimeout is Open with its own bound on the wait for the lock.
func OpenTimeout(dir string, readOnly bool, timeout time.Duration) (*Store, error) {
	p := filepath.Join(dir, FileName)
	if readOnly {
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			readOnly = false // first use: create it
		}
	}
	if !readOnly {
		if err := os.MkdirAll(filepath.Join(dir, "journal"), 0o700); err != nil {
			return nil, fmt.Errorf("state directory %s: %w", dir, err)
		}
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("state directory %s: %w", dir, err)
	}
	lock, err := acquire(dir, readOnly, timeout)
	if err != nil {
		return nil, err
	}
	// bbolt takes an empty file for a new store. nsnet's never is one (it
	// is written whole when made), so an empty one was truncated: opening
	// it afresh would forget every network while their bridges, veths and
	// rules stay in the kernel.
	if fi, err := os.Stat(p); err == nil && fi.Size() == 0 {
		lock.Close()
		return nil, fmt.Errorf("state store %s: %w", p, ErrEmpty)
	} else if errors.Is(err, os.ErrNotExist) && !readOnly {
		if err := create(p); err != nil {
			lock.Close()
			return nil, fmt.Errorf("state store %s: %w", p, err)
		}
	}
	// The list of free pages is written with each commit (bbolt's
	// default): left out, every command's open walked the whole file to
	// rebuild it, a cost that grew with the store (issue 11).
	db, err := bolt.Open(p, 0o600, &bolt.Options{Timeout: timeout, ReadOnly: readOnly})
	if errors.Is(err, berrors.ErrTimeout) {
		lock.Close()
		return nil, fmt.Errorf("state store %s: another nsnet held it for over %s", p, timeout)
	}
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("state store %s: %w", p, err)
	}
	s := &Store{db: db, dir: dir, lock: lock}
	if !readOnly && !s.hasBuckets() {
		err := db.Update(func(tx *bolt.Tx) error {
			if tx.Bucket(bSummaries) == nil && tx.Bucket(bNetworks) != nil {
				if err := fillSummaries(tx); err != nil {
					return err
				}
			}
			for _, b := range allBuckets {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("state store %s: %w", p, err)
		}
	}
	return s, nil
}

// create makes a new store at p whole, under another name first, so that
// a crash while it is made leaves no empty file at p, which the next
// command would take for a truncated store and refuse.
func create(p string) error {
	tmp := p + ".new"
	os.Remove(tmp) // a crash's leftover
	db, err := bolt.Open(tmp, 0o600, nil)
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		return err
	}
	// The rename is durable once the directory is.
	d, err := os.Open(filepath.Dir(p))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// hasBuckets spares the usual open a commit, which costs two fdatasyncs.
func (s *Store) hasBuckets() bool {
	ok := true
	s.db.View(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			ok = ok && tx.Bucket(b) != nil
		}
		return nil
	})
	return ok
}

// Close releases the store and its lock.
func (s *Store) Close() error {
	err := s.db.Close()
	s.lock.Close()
	return err
}

// Update runs fn in one read-write transaction.
func (s *Store) Update(fn func(*Tx) error) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		t := &Tx{tx: tx}
		if err := fn(t); err != nil {
			return err
		}
		return t.logChanges()
	})
}

// View runs fn in one read-only transaction.
func (s *Store) View(fn func(*Tx) error) error {
	return s.db.View(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx}) })
}

// Tx is a transaction over nsnet's records.
type Tx struct {
	tx *bolt.Tx
	// changed are the networks and memberships this transaction wrote,
	// for the change log (see Changes).
	changed map[Change]bool
}

// markChanged notes that network's record changed.
func (t *Tx) markChanged(network string) { t.mark(Change{Network: network}) }

// markMember notes that ns's membership of network changed.
func (t *Tx) markMember(network, ns string) { t.mark(Change{Network: network, Namespace: ns}) }

func (t *Tx) mark(c Change) {
	if t.changed == nil {
		t.changed = map[Change]bool{}
	}
	t.changed[c] = true
}

// Generation numbers the store's state: it grows with every committed
// change, so a reader can tell whether it has seen a given one.
func (t *Tx) Generation() uint64 {
	if t.tx.Writable() {
		return uint64(t.tx.ID()) - 1
	}
	return uint64(t.tx.ID())
}

func (t *Tx) bucket(name []byte) *bolt.Bucket {
	return t.tx.Bucket(name)
}

func get[T any](t *Tx, bucket []byte, key string) (T, bool, error) {
	var v T
	b := t.bucket(bucket)
	if b == nil {
		return v, false, nil
	}
	raw := b.Get([]byte(key))
	if raw == nil {
		return v, false, nil
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, false, fmt.Errorf("decode %s/%q: %w", bucket, key, err)
	}
	return v, true, nil
}

func put(t *Tx, bucket []byte, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return t.bucket(bucket).Put([]byte(key), raw)
}

func del(t *Tx, bucket []byte, key string) error {
	return t.bucket(bucket).Delete([]byte(key))
}

func list[T any](t *Tx, bucket []byte, prefix string) ([]T, error) {
	var out []T
	b := t.bucket(bucket)
	if b == nil {
		return nil, nil
	}
	c := b.Cursor()
	for k, raw := c.Seek([]byte(prefix)); k != nil && hasPrefix(k, prefix); k, raw = c.Next() {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("decode %s/%q: %w", bucket, k, err)
		}
		out = append(out, v)
	}
	return out, nil
}

func hasPrefix(k []byte, prefix string) bool {
	return len(k) >= len(prefix) && string(k[:len(prefix)]) == prefix
}

// Network returns the network called name.
func (t *Tx) Network(name string) (Network, bool, error) { return get[Network](t, bNetworks, name) }

// PutNetwork records n.
func (t *Tx) PutNetwork(n Network) error {
	t.markChanged(n.Name)
	if err := t.bucket(bSummaries).Put([]byte(n.Name), summarise(n)); err != nil {
		return err
	}
	return put(t, bNetworks, n.Name, n)
}

// DeleteNetwork forgets the network and every lease in it.
func (t *Tx) DeleteNetwork(name string) error {
	t.markChanged(name)
	if err := t.bucket(bLeases).DeleteBucket([]byte(name)); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
		return err
	}
	if err := t.bucket(bSummaries).Delete([]byte(name)); err != nil {
		return err
	}
	return del(t, bNetworks, name)
}

// Networks lists every network, sorted by name.
func (t *Tx) Networks() ([]Network, error) { return list[Network](t, bNetworks, "") }

// Namespace returns the namespace record called name.
func (t *Tx) Namespace(name string) (Namespace, bool, error) {
	return get[Namespace](t, bNamespaces, name)
}

// PutNamespace records n.
func (t *Tx) PutNamespace(n Namespace) error { return put(t, bNamespaces, n.Name, n) }

// DeleteNamespace forgets the namespace record.
func (t *Tx) DeleteNamespace(name string) error { return del(t, bNamespaces, name) }

// Namespaces lists every namespace record, sorted by name.
func (t *Tx) Namespaces() ([]Namespace, error) { return list[Namespace](t, bNamespaces, "") }

func attKey(network, ns string) string { return network + "\x00" + ns }

// Attachment returns ns's membership of network.
func (t *Tx) Attachment(network, ns string) (Attachment, bool, error) {
	return get[Attachment](t, bAttachments, attKey(network, ns))
}

// PutAttachment records a.
func (t *Tx) PutAttachment(a Attachment) error {
	t.markMember(a.Network, a.Namespace)
	return put(t, bAttachments, attKey(a.Network, a.Namespace), a)
}

// DeleteAttachment forgets a membership.
func (t *Tx) DeleteAttachment(network, ns string) error {
	t.markMember(network, ns)
	return del(t, bAttachments, attKey(network, ns))
}

// Members lists the attachments of one network, sorted by namespace.
func (t *Tx) Members(network string) ([]Attachment, error) {
	return list[Attachment](t, bAttachments, network+"\x00")
}

// AllMembers returns every network's attachments, by network, in one pass
// over the attachments.
func (t *Tx) AllMembers() (map[string][]Attachment, error) {
	all, err := list[Attachment](t, bAttachments, "")
	if err != nil {
		return nil, err
	}
	out := map[string][]Attachment{}
	for _, a := range all {
		out[a.Network] = append(out[a.Network], a)
	}
	return out, nil
}

// AttachmentsOf lists the networks namespace ns has joined.
//
// Memberships are keyed by network, then namespace: the keys of every
// network are walked, and only the namespace's records decoded (decoding
// them all made a disconnect on a host of ten thousand members cost
// milliseconds more). Network names hold no NUL, so the key's first NUL
// is the separator.
func (t *Tx) AttachmentsOf(ns string) ([]Attachment, error) {
	b := t.bucket(bAttachments)
	if b == nil {
		return nil, nil
	}
	suffix := []byte("\x00" + ns)
	var out []Attachment
	c := b.Cursor()
	for k, raw := c.First(); k != nil; k, raw = c.Next() {
		if !bytes.HasSuffix(k, suffix) || bytes.IndexByte(k, 0) != len(k)-len(suffix) {
			continue
		}
		var a Attachment
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, fmt.Errorf("decode %s/%q: %w", bAttachments, k, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// IfNameOwner returns who reserved a host interface name, if anyone.
func (t *Tx) IfNameOwner(name string) (Owner, bool) {
	v := t.bucket(bIfNames).Get([]byte(name))
	if v == nil {
		return Owner{}, false
	}
	return decodeOwner("", v), true
}

// ReserveIfName records that owner holds the host interface name.
func (t *Tx) ReserveIfName(name string, owner Owner) error {
	return t.bucket(bIfNames).Put([]byte(name), owner.encode())
}

// ReleaseIfName frees a host interface name.
func (t *Tx) ReleaseIfName(name string) error { return t.bucket(bIfNames).Delete([]byte(name)) }

func leaseKey(a netip.Addr) []byte {
	if a.Is4() {
		return append([]byte{4}, a.AsSlice()...)
	}
	return append([]byte{6}, a.AsSlice()...)
}

func (t *Tx) leases(network string, create bool) (*bolt.Bucket, error) {
	if create {
		return t.bucket(bLeases).CreateBucketIfNotExists([]byte(network))
	}
	return t.bucket(bLeases).Bucket([]byte(network)), nil
}

// LeaseOwner returns who holds address a in network.
func (t *Tx) LeaseOwner(network string, a netip.Addr) (Owner, bool) {
	b, _ := t.leases(network, false)
	if b == nil {
		return Owner{}, false
	}
	v := b.Get(leaseKey(a))
	if v == nil {
		return Owner{}, false
	}
	return decodeOwner(network, v), true
}

// PutLease records that owner holds address a in network.
func (t *Tx) PutLease(network string, a netip.Addr, owner Owner) error {
	b, err := t.leases(network, true)
	if err != nil {
		return err
	}
	return b.Put(leaseKey(a), owner.encode())
}

// DeleteLease frees address a in network.
func (t *Tx) DeleteLease(network string, a netip.Addr) error {
	b, _ := t.leases(network, false)
	if b == nil {
		return nil
	}
	if err := b.Delete(leaseKey(a)); err != nil {
		return err
	}
	if h := b.Get(hintKey(a)); h != nil {
		if ha, ok := netip.AddrFromSlice(h); ok && a.Less(ha) {
			return b.Put(hintKey(a), a.AsSlice())
		}
	}
	return nil
}

// hintKey names, in a network's lease bucket, the lowest address of a's
// family that may be free: no address below it is. It sorts before every
// lease key.
func hintKey(a netip.Addr) []byte {
	if a.Is4() {
		return []byte{0, 4}
	}
	return []byte{0, 6}
}

// SetFreeHint records that no address of a's family below a is free.
func (t *Tx) SetFreeHint(network string, a netip.Addr) error {
	if !a.IsValid() {
		return nil
	}
	b, err := t.leases(network, true)
	if err != nil {
		return err
	}
	return b.Put(hintKey(a), a.AsSlice())
}

// FreeHint returns where a search for the first free address of from's
// family may start: from, or a higher address below which every one is
// leased. It keeps allocation from walking every lease.
func (t *Tx) FreeHint(network string, from netip.Addr) netip.Addr {
	b, _ := t.leases(network, false)
	if b == nil {
		return from
	}
	if h := b.Get(hintKey(from)); h != nil {
		if ha, ok := netip.AddrFromSlice(h); ok && from.Less(ha) {
			return ha
		}
	}
	return from
}

// LeasedFrom yields the leased addresses of network in from's family, in
// ascending order, starting at from.
func (t *Tx) LeasedFrom(network string, from netip.Addr) func(func(netip.Addr) bool) {
	return func(yield func(netip.Addr) bool) {
		b, _ := t.leases(network, false)
		if b == nil {
			return
		}
		start := leaseKey(from)
		c := b.Cursor()
		for k, _ := c.Seek(start); k != nil && k[0] == start[0]; k, _ = c.Next() {
			a, ok := netip.AddrFromSlice(k[1:])
			if !ok || !yield(a) {
				return
			}
		}
	}
}

// LinkKey names the link between two namespaces, whichever order they come in.
func LinkKey(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return a + "\x00" + b
}

// Link returns the link between namespaces a and b.
func (t *Tx) Link(a, b string) (Link, bool, error) { return get[Link](t, bLinks, LinkKey(a, b)) }

// PutLink records l.
func (t *Tx) PutLink(l Link) error { return put(t, bLinks, LinkKey(l.NS1, l.NS2), l) }

// DeleteLink forgets the link between a and b.
func (t *Tx) DeleteLink(a, b string) error { return del(t, bLinks, LinkKey(a, b)) }

// Links lists every link.
func (t *Tx) Links() ([]Link, error) { return list[Link](t, bLinks, "") }

// Tap returns the TAP device called name.
func (t *Tx) Tap(name string) (Tap, bool, error) { return get[Tap](t, bTaps, name) }

// PutTap records d.
func (t *Tx) PutTap(d Tap) error { return put(t, bTaps, d.Name, d) }

// DeleteTap forgets a TAP device.
func (t *Tx) DeleteTap(name string) error { return del(t, bTaps, name) }

// Taps lists every TAP device.
func (t *Tx) Taps() ([]Tap, error) { return list[Tap](t, bTaps, "") }

// portKey indexes a published host port: host namespace, protocol, port,
// then the host address (empty for any), so one prefix scan finds every
// holder of a port on one host.
func portKey(host, proto string, port uint16, hostIP netip.Addr) []byte {
	k := append([]byte(host+"\x00"+proto), 0, byte(port>>8), byte(port))
	if hostIP.IsValid() {
		k = append(k, hostIP.AsSlice()...)
	}
	return k
}

// PortHolder returns who holds a host port that a new mapping of hostIP
// (zero: any address) would collide with: the same address, or any address
// on either side.
func (t *Tx) PortHolder(host, proto string, port uint16, hostIP netip.Addr) (Owner, bool) {
	b := t.bucket(bPorts)
	prefix := portKey(host, proto, port, netip.Addr{})
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && len(k) >= len(prefix) && string(k[:len(prefix)]) == string(prefix); k, v = c.Next() {
		rest := k[len(prefix):]
		if !hostIP.IsValid() || len(rest) == 0 || string(rest) == string(hostIP.AsSlice()) {
			return decodeOwner("", v), true
		}
	}
	return Owner{}, false
}

// PutPort records that owner holds a host port.
func (t *Tx) PutPort(host, proto string, port uint16, hostIP netip.Addr, owner Owner) error {
	return t.bucket(bPorts).Put(portKey(host, proto, port, hostIP), owner.encode())
}

// DeletePort frees a host port.
func (t *Tx) DeletePort(host, proto string, port uint16, hostIP netip.Addr) error {
	return t.bucket(bPorts).Delete(portKey(host, proto, port, hostIP))
}

// HostHasPorts reports whether any port is published in the host
// namespace at host.
func (t *Tx) HostHasPorts(host string) bool {
	prefix := []byte(host + "\x00")
	k, _ := t.bucket(bPorts).Cursor().Seek(prefix)
	return k != nil && len(k) >= len(prefix) && string(k[:len(prefix)]) == string(prefix)
}

// HasPorts reports whether any host port is published.
func (t *Tx) HasPorts() bool {
	k, _ := t.bucket(bPorts).Cursor().First()
	return k != nil
}
