package store

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nsnet/nsnet/internal/ipam"
)

// allocate mirrors how the manager leases the first free address.
func allocate(t *testing.T, tx *Tx, network string, p netip.Prefix, owner string) netip.Addr {
	t.Helper()
	from := tx.FreeHint(network, ipam.FirstUsable(p))
	a, err := ipam.FirstFree(p, from, tx.LeasedFrom(network, from))
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.SetFreeHint(network, a.Next()); err != nil {
		t.Fatal(err)
	}
	if err := tx.PutLease(network, a, MemberOwner(network, owner)); err != nil {
		t.Fatal(err)
	}
	return a
}

func TestLeasesFirstFree(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	p := netip.MustParsePrefix("10.0.0.0/24")
	p6 := netip.MustParsePrefix("fd00::/64")
	steps := []struct {
		op   string // alloc, alloc6, put, del
		addr string // for put and del; for alloc, the address expected
	}{
		{"put", "10.0.0.1"}, // the gateway
		{"alloc", "10.0.0.2"},
		{"alloc", "10.0.0.3"},
		{"put", "10.0.0.50"}, // a requested address does not move the hint
		{"alloc", "10.0.0.4"},
		{"alloc6", "fd00::1"},
		{"del", "10.0.0.3"},
		{"alloc", "10.0.0.3"}, // the freed lower address comes back first
		{"alloc", "10.0.0.5"},
		{"del", "10.0.0.2"},
		{"del", "10.0.0.4"},
		{"alloc", "10.0.0.2"},
		{"alloc", "10.0.0.4"},
		{"alloc", "10.0.0.6"},
		{"alloc6", "fd00::2"},
	}
	for i, st := range steps {
		err := s.Update(func(tx *Tx) error {
			switch st.op {
			case "put":
				return tx.PutLease("n", netip.MustParseAddr(st.addr), MemberOwner("n", "x"))
			case "del":
				return tx.DeleteLease("n", netip.MustParseAddr(st.addr))
			case "alloc", "alloc6":
				subnet := p
				if st.op == "alloc6" {
					subnet = p6
				}
				if got := allocate(t, tx, "n", subnet, "x"); got.String() != st.addr {
					t.Errorf("step %d: allocated %s, want %s", i, got, st.addr)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	s.View(func(tx *Tx) error {
		for a := range tx.LeasedFrom("n", netip.MustParseAddr("10.0.0.0")) {
			got = append(got, a.String())
		}
		return nil
	})
	want := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.50"}
	if !slices.Equal(got, want) {
		t.Errorf("leases = %v, want %v", got, want)
	}
}

func TestJournal(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	a := Op{ID: NewOpID(), Kind: OpConnect, Network: "n", Namespace: "a", HostIf: "nsv1"}
	b := Op{ID: NewOpID(), Kind: OpDisconnect, Network: "n", Namespace: "b"}
	for _, o := range []Op{a, b} {
		if err := s.Begin(o); err != nil {
			t.Fatal(err)
		}
	}
	ops, err := s.Pending()
	if err != nil || len(ops) != 2 {
		t.Fatalf("Pending() = %v, %v; want 2 ops", ops, err)
	}
	if err := s.End(a); err != nil {
		t.Fatal(err)
	}
	ops, _ = s.Pending()
	if len(ops) != 1 || ops[0].Namespace != "b" {
		t.Errorf("after End: %+v, want only b's op", ops)
	}
}

// An empty store file is refused, not taken for a new store (issue 10,
// item 16).
func TestEmptyStoreRefused(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	s.Close()
	if err := os.Truncate(filepath.Join(dir, FileName), 0); err != nil {
		t.Fatal(err)
	}
	for _, ro := range []bool{false, true} {
		if _, err := Open(dir, ro); !errors.Is(err, ErrEmpty) {
			t.Errorf("open (read-only %v) of an empty store: %v, want ErrEmpty", ro, err)
		}
	}
}

// A new store is made under another name and renamed: a crash while it is
// made leaves that file, never an empty nsnet.db that every later command
// would refuse as truncated; the next open starts over.
func TestCreateIsWhole(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName+".new"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, false)
	if err != nil {
		t.Fatalf("open over a crashed creation: %v", err)
	}
	if !s.hasBuckets() {
		t.Error("the new store lacks its buckets")
	}
	s.Close()
	if _, err := os.Stat(filepath.Join(dir, FileName+".new")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the temporary file stays: %v", err)
	}
}

// A command waiting for the lock gets it as soon as the holder lets go,
// and gives up at its deadline (issue 10, item 34).
func TestLockWait(t *testing.T) {
	dir := t.TempDir()
	holder := mustOpen(t, dir)
	if _, err := OpenTimeout(dir, false, 100*time.Millisecond); err == nil || !strings.Contains(err.Error(), "held it for over") {
		t.Fatalf("open while held: %v, want a timeout", err)
	}
	released := make(chan time.Time, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		released <- time.Now()
		holder.Close()
	}()
	s, err := OpenTimeout(dir, false, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if took := time.Since(<-released); took > 2*time.Second {
		t.Errorf("the waiter took %s after the release", took)
	}
}

// A summary holds what whole-host decisions read, and survives the round
// trip; a store from before summaries gets them when opened for writing.
func TestSummaries(t *testing.T) {
	nets := []Network{
		{Name: "plain", Driver: "bridge", Subnets: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24")}},
		{Name: "all", Driver: "routed", HostNetns: "/run/netns/h", HostIno: 4026532001, Subnets: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16"), netip.MustParsePrefix("fd00:2::/64")},
			NAT: true, Internal: true, NoIsolate: true, DNS: true, NoHostFirewall: true, Options: map[string]string{"bridge-name": "br0", "parent": "eth0"}},
	}
	dir := t.TempDir()
	s := mustOpen(t, dir)
	if err := s.Update(func(tx *Tx) error {
		for _, n := range nets {
			n.Gateways = []netip.Addr{netip.MustParseAddr("10.0.0.1")} // not summarised
			if err := tx.PutNetwork(n); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	check := func(when string, want []Network) {
		t.Helper()
		var got []Network
		if err := s.View(func(tx *Tx) (err error) { got, err = tx.Summaries(); return err }); err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(want, func(a, b Network) int { return strings.Compare(a.Name, b.Name) })
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: summaries\n%+v\nwant\n%+v", when, got, want)
		}
	}
	check("after PutNetwork", slices.Clone(nets))
	// Hosts reads the same fields from the summaries alone, each once.
	type host struct {
		path string
		ino  uint64
	}
	var hosts []host
	s.View(func(tx *Tx) error {
		return tx.Hosts(func(p string, ino uint64) { hosts = append(hosts, host{p, ino}) })
	})
	slices.SortFunc(hosts, func(a, b host) int { return strings.Compare(a.path, b.path) })
	if want := []host{{"", 0}, {"/run/netns/h", 4026532001}}; !reflect.DeepEqual(hosts, want) {
		t.Errorf("Hosts: %+v, want %+v", hosts, want)
	}
	if err := s.Update(func(tx *Tx) error { return tx.DeleteNetwork("plain") }); err != nil {
		t.Fatal(err)
	}
	check("after DeleteNetwork", slices.Clone(nets[1:]))

	// A store of before: the bucket goes, and the next open remakes it.
	if err := s.Update(func(tx *Tx) error { return tx.tx.DeleteBucket(bSummaries) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = mustOpen(t, dir)
	defer s.Close()
	check("after reopening an older store", slices.Clone(nets[1:]))
}

// The change log names the networks and memberships each commit wrote,
// since a given generation, and says when it cannot reach back that far.
func TestChanges(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	gen := func() (g uint64) {
		s.View(func(tx *Tx) error { g = tx.Generation(); return nil })
		return g
	}
	// A membership shows as network/namespace.
	changes := func(since uint64) (names []string, ok bool) {
		var ch []Change
		s.View(func(tx *Tx) error { ch, ok = tx.Changes(since); return nil })
		for _, c := range ch {
			if c.Namespace != "" {
				c.Network += "/" + c.Namespace
			}
			names = append(names, c.Network)
		}
		slices.Sort(names)
		return
	}
	before := gen()
	if _, ok := changes(before); ok {
		t.Error("a log that has not begun claims to be complete")
	}
	put := func(fn func(tx *Tx) error) {
		t.Helper()
		if err := s.Update(fn); err != nil {
			t.Fatal(err)
		}
	}
	put(func(tx *Tx) error { return tx.PutNetwork(Network{Name: "a"}) })
	first := gen()
	put(func(tx *Tx) error { return tx.PutNamespace(Namespace{Name: "x"}) }) // no network
	put(func(tx *Tx) error {
		if err := tx.PutAttachment(Attachment{Network: "b", Namespace: "x"}); err != nil {
			return err
		}
		return tx.PutNetwork(Network{Name: "c"})
	})
	put(func(tx *Tx) error { return tx.DeleteAttachment("a", "x") })
	put(func(tx *Tx) error { return tx.DeleteAttachment("a", "x") }) // the same change again
	// An entry from before memberships were logged on their own names the
	// network alone: a reader takes it as the network changed.
	put(func(tx *Tx) error { tx.markChanged("old"); return nil })
	for _, tt := range []struct {
		since uint64
		want  []string
		ok    bool
	}{
		{before - 1, nil, false}, // a copy older than the log
		{before, []string{"a", "a/x", "b/x", "c", "old"}, true},
		{first, []string{"a/x", "b/x", "c", "old"}, true},
		{first + 1, []string{"a/x", "b/x", "c", "old"}, true},
		{first + 2, []string{"a/x", "old"}, true},
		{gen(), nil, true},
		{gen() + 5, nil, false}, // a copy of another, newer file
	} {
		names, ok := changes(tt.since)
		if ok != tt.ok || (ok && !slices.Equal(names, tt.want)) {
			t.Errorf("Changes(%d) = %v, %v; want %v, %v", tt.since, names, ok, tt.want, tt.ok)
		}
	}
}

// An agent from before memberships were logged on their own reads every
// field of an entry as a network name: a membership's entry must name its
// network as such, so that such a reader reads that network whole.
func TestChangesReadByOlderReader(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	var since uint64
	if err := s.Update(func(tx *Tx) error { return tx.PutNetwork(Network{Name: "n"}) }); err != nil {
		t.Fatal(err)
	}
	s.View(func(tx *Tx) error { since = tx.Generation(); return nil })
	if err := s.Update(func(tx *Tx) error {
		for _, ns := range []string{"x", "y"} {
			if err := tx.PutAttachment(Attachment{Network: "n", Namespace: ns}); err != nil {
				return err
			}
		}
		return tx.PutAttachment(Attachment{Network: "m", Namespace: "x"})
	}); err != nil {
		t.Fatal(err)
	}
	s.View(func(tx *Tx) error {
		var old []string
		c := tx.tx.Bucket(bChanges).Cursor()
		for k, v := c.Seek(genKey(since + 1)); len(k) == 8; k, v = c.Next() {
			old = append(old, strings.Split(string(v), "\x00")...)
		}
		for _, net := range []string{"n", "m"} {
			if !slices.Contains(old, net) {
				t.Errorf("an older reader finds no network %q in %q", net, old)
			}
		}
		return nil
	})
}

// AttachmentsOf finds a namespace's memberships by the end of their keys:
// a namespace whose name ends another's is not taken for it.
func TestAttachmentsOf(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	if err := s.Update(func(tx *Tx) error {
		for _, a := range [][2]string{{"n1", "a"}, {"n1", "ab"}, {"n2", "b"}, {"n2", "a"}, {"n3", "xa"}} {
			if err := tx.PutAttachment(Attachment{Network: a[0], Namespace: a[1]}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for ns, want := range map[string][]string{"a": {"n1", "n2"}, "ab": {"n1"}, "b": {"n2"}, "xa": {"n3"}, "x": nil, "": nil} {
		var got []string
		if err := s.View(func(tx *Tx) error {
			atts, err := tx.AttachmentsOf(ns)
			for _, a := range atts {
				got = append(got, a.Network)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("AttachmentsOf(%q) = %v, want %v", ns, got, want)
		}
	}
}

// DNSMembers finds a DNS network with members past networks without DNS
// that have members, and ignores DNS networks without any.
func TestDNSMembers(t *testing.T) {
	steps := []struct {
		do   func(tx *Tx) error
		want bool
	}{
		{func(tx *Tx) error { return nil }, false},
		{func(tx *Tx) error { return tx.PutNetwork(Network{Name: "z-dns", DNS: true}) }, false},
		{func(tx *Tx) error {
			if err := tx.PutNetwork(Network{Name: "a-plain"}); err != nil {
				return err
			}
			for _, ns := range []string{"m1", "m2", "m3"} {
				if err := tx.PutAttachment(Attachment{Network: "a-plain", Namespace: ns}); err != nil {
					return err
				}
			}
			return nil
		}, false},
		{func(tx *Tx) error { return tx.PutAttachment(Attachment{Network: "z-dns", Namespace: "m1"}) }, true},
		{func(tx *Tx) error { return tx.DeleteAttachment("z-dns", "m1") }, false},
	}
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	for i, st := range steps {
		if err := s.Update(st.do); err != nil {
			t.Fatal(err)
		}
		var got bool
		if err := s.View(func(tx *Tx) (err error) { got, err = tx.DNSMembers(); return err }); err != nil {
			t.Fatal(err)
		}
		if got != st.want {
			t.Errorf("step %d: DNSMembers = %v, want %v", i, got, st.want)
		}
	}
}

// Overlap finds another network's subnet that overlaps, on the same host
// only, either way round, in both families.
func TestOverlap(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	pp := func(ps ...string) (out []netip.Prefix) {
		for _, p := range ps {
			out = append(out, netip.MustParsePrefix(p))
		}
		return out
	}
	if err := s.Update(func(tx *Tx) error {
		for _, n := range []Network{
			{Name: "a", HostNetns: "/h1", Subnets: pp("10.1.0.0/24", "fd00:1::/64")},
			{Name: "b", HostNetns: "/h1", Subnets: pp("10.2.0.0/16")},
			{Name: "c", HostNetns: "/h2", Subnets: pp("10.3.0.0/24")},
		} {
			if err := tx.PutNetwork(n); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		host, subnets, want string
	}{
		{"/h1", "10.1.0.128/25", "a 10.1.0.128/25 10.1.0.0/24"},
		{"/h1", "10.0.0.0/8", "a 10.0.0.0/8 10.1.0.0/24"},
		{"/h1", "192.0.2.0/24 10.2.9.0/24", "b 10.2.9.0/24 10.2.0.0/16"},
		{"/h1", "fd00:1::/48", "a fd00:1::/48 fd00:1::/64"},
		{"/h1", "10.3.0.0/24", ""},
		{"/h2", "10.3.0.0/16", "c 10.3.0.0/16 10.3.0.0/24"},
		{"/h2", "10.1.0.0/24", ""},
		{"/h3", "10.0.0.0/8", ""},
	} {
		var got string
		if err := s.View(func(tx *Tx) error {
			name, mine, theirs, found, err := tx.Overlap(tt.host, pp(strings.Fields(tt.subnets)...))
			if found {
				got = fmt.Sprintf("%s %s %s", name, mine, theirs)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("Overlap(%s, %s) = %q, want %q", tt.host, tt.subnets, got, tt.want)
		}
	}
}

// mustOpen opens the store in dir for writing, or ends the test.
func mustOpen(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
