package firewall

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/nsnet/nsnet/internal/nstest"
)

// firewaller is the method set callers use; the fake must keep it.
type firewaller interface {
	Sync(Host) error
	Publish(add, remove []Port) error
	OpenForward(Network) ([]ChainRef, error)
	CloseForward(name string) error
}

var (
	_ firewaller = (*Firewall)(nil)
	_ firewaller = (*Fake)(nil)
)

var (
	tcp, udp = uint8(unix.IPPROTO_TCP), uint8(unix.IPPROTO_UDP)
	addr     = netip.MustParseAddr
	prefix   = netip.MustParsePrefix

	pAny4  = Port{Proto: tcp, HostPort: 8080, Addr: addr("10.88.0.2"), Port: 80}
	pAny4b = Port{Proto: tcp, HostPort: 8080, Addr: addr("10.88.0.3"), Port: 80} // pAny4's key, another member
	pHost4 = Port{HostIP: addr("192.0.2.1"), Proto: tcp, HostPort: 8443, Addr: addr("10.88.0.2"), Port: 443}
	pAny6  = Port{Proto: udp, HostPort: 53, Addr: addr("fd00:88::2"), Port: 53}
	pHost6 = Port{HostIP: addr("2001:db8::1"), Proto: tcp, HostPort: 80, Addr: addr("fd00:88::2"), Port: 80}
	pMixed = Port{HostIP: addr("2001:db8::1"), Proto: tcp, HostPort: 80, Addr: addr("10.88.0.2"), Port: 80}

	netA = Network{Name: "a", Bridge: "nsbr-a", Subnets: []netip.Prefix{prefix("10.88.0.0/24"), prefix("fd00:88::/64")}, Masquerade: true, Isolate: true}
	netB = Network{Name: "b", Bridge: "nsbr-b", Subnets: []netip.Prefix{prefix("10.89.0.0/24")}, Isolate: true}
)

// step is one call: Sync when sync is set, Publish otherwise.
type step struct {
	sync        *Host
	add, remove []Port
	want        error // an errno the error must wrap, or nil
}

func syncs(h Host, want error) step               { return step{sync: &h, want: want} }
func publish(add, remove []Port, want error) step { return step{add: add, remove: remove, want: want} }
func ports(ps ...Port) []Port                     { return ps }

func (s step) String() string {
	if s.sync != nil {
		return fmt.Sprintf("Sync(%d networks, Ports %v, Published %v)", len(s.sync.Networks), s.sync.Ports, s.sync.Published)
	}
	return fmt.Sprintf("Publish(%v, %v)", s.add, s.remove)
}

func (s step) run(fw firewaller) error {
	if s.sync != nil {
		return fw.Sync(*s.sync)
	}
	return fw.Publish(s.add, s.remove)
}

// scenarios are what the kernel answers; TestFake holds the fake to them
// and TestFakeMatchesKernel the real firewall.
var scenarios = []struct {
	name      string
	steps     []step
	table     bool
	published []Port // in the order Fake.Published gives
}{
	{"publish before any sync", []step{publish(ports(pAny4), nil, unix.ENOENT)}, false, nil},
	{"remove before any sync", []step{publish(nil, ports(pAny4), unix.ENOENT)}, false, nil},
	{"nothing to publish needs no table", []step{publish(nil, nil, nil)}, false, nil},
	{"publish and remove every kind", []step{
		syncs(Host{Networks: []Network{netA}, Ports: true}, nil),
		publish(ports(pAny6, pHost6, pAny4, pHost4), nil, nil),
		publish(nil, ports(pAny6), nil),
	}, true, ports(pAny4, pHost4, pHost6)},
	{"the maps exist without Ports", []step{
		syncs(Host{Networks: []Network{netA}}, nil),
		publish(ports(pAny4), nil, nil),
	}, true, ports(pAny4)},
	{"publishing again unchanged", []step{
		syncs(Host{Networks: []Network{netA}, Ports: true}, nil),
		publish(ports(pAny4), nil, nil),
		publish(ports(pAny4, pAny4), nil, nil),
	}, true, ports(pAny4)},
	{"a published key to another member", []step{
		syncs(Host{Networks: []Network{netA}, Ports: true}, nil),
		publish(ports(pAny4), nil, nil),
		publish(ports(pAny4b), nil, unix.EEXIST),
	}, true, ports(pAny4)},
	{"one key twice in a call", []step{
		syncs(Host{Networks: []Network{netA}, Ports: true}, nil),
		publish(ports(pHost4, pAny4, pAny4b), nil, unix.EEXIST),
	}, true, nil},
	{"removing an absent port", []step{
		syncs(Host{Networks: []Network{netA}, Ports: true}, nil),
		publish(ports(pAny4), nil, nil),
		publish(nil, ports(pAny6), unix.ENOENT),
	}, true, ports(pAny4)},
	{"a failed call changes nothing", []step{
		syncs(Host{Networks: []Network{netA}, Ports: true}, nil),
		publish(ports(pAny4), nil, nil),
		publish(ports(pAny6), ports(pAny4, pHost6), unix.ENOENT),
	}, true, ports(pAny4)},
	{"a remove matches the key alone", []step{
		syncs(Host{Networks: []Network{netA}, Ports: true}, nil),
		publish(ports(pAny4), nil, nil),
		publish(nil, ports(pAny4b), nil),
	}, true, nil},
	{"removals come first", []step{
		syncs(Host{Networks: []Network{netA}, Ports: true}, nil),
		publish(ports(pAny4), nil, nil),
		publish(ports(pAny4b), ports(pAny4), nil),
	}, true, ports(pAny4b)},
	{"host address and member of different families", []step{
		syncs(Host{Networks: []Network{netA}, Ports: true}, nil),
		publish(ports(pMixed), nil, unix.EINVAL),
	}, true, nil},
	{"sync without Published keeps the ports", []step{
		syncs(Host{Networks: []Network{netA}, Ports: true}, nil),
		publish(ports(pAny4, pAny6), nil, nil),
		syncs(Host{Networks: []Network{netA, netB}, Ports: true}, nil),
	}, true, ports(pAny4, pAny6)},
	{"sync with Published replaces the ports", []step{
		syncs(Host{Networks: []Network{netA}, Ports: true}, nil),
		publish(ports(pAny4), nil, nil),
		syncs(Host{Networks: []Network{netA}, Ports: true, Published: ports(pHost6, pHost4)}, nil),
	}, true, ports(pHost4, pHost6)},
	{"sync with empty Published empties the maps", []step{
		syncs(Host{Networks: []Network{netA}, Ports: true}, nil),
		publish(ports(pAny4), nil, nil),
		syncs(Host{Networks: []Network{netA}, Ports: true, Published: []Port{}}, nil),
	}, true, nil},
	{"sync with conflicting Published", []step{
		syncs(Host{Networks: []Network{netA}, Ports: true}, nil),
		publish(ports(pHost4), nil, nil),
		syncs(Host{Networks: []Network{netA}, Ports: true, Published: ports(pAny4, pAny4b)}, unix.EEXIST),
	}, true, nil},
	{"no networks, no table", []step{
		syncs(Host{Networks: []Network{netA}, Ports: true}, nil),
		publish(ports(pAny4), nil, nil),
		syncs(Host{Ports: true, Published: ports(pAny6)}, nil),
		publish(nil, ports(pAny4), unix.ENOENT),
	}, false, nil},
	{"a new table starts empty", []step{
		syncs(Host{Networks: []Network{netA}, Ports: true}, nil),
		publish(ports(pAny4), nil, nil),
		syncs(Host{}, nil),
		syncs(Host{Networks: []Network{netA}, Ports: true}, nil),
	}, true, nil},
	{"overlapping isolated subnets", []step{
		syncs(Host{Networks: []Network{netA, {Name: "wide", Bridge: "nsbr-w", Subnets: []netip.Prefix{prefix("10.0.0.0/8")}, Isolate: true}}}, unix.EEXIST),
	}, false, nil},
	{"a refused sync keeps the table", []step{
		syncs(Host{Networks: []Network{netA}, Ports: true}, nil),
		publish(ports(pAny4), nil, nil),
		syncs(Host{Networks: []Network{netA, {Name: "v6", Bridge: "nsbr-6", Subnets: []netip.Prefix{prefix("fd00:88::/48")}, Isolate: true}}}, unix.EEXIST),
	}, true, ports(pAny4)},
	{"equal isolated subnets", []step{
		syncs(Host{Networks: []Network{netB, {Name: "twin", Bridge: "nsbr-t", Subnets: netB.Subnets, Isolate: true}}}, nil),
	}, true, nil},
	{"overlap with a network that is not isolated", []step{
		syncs(Host{Networks: []Network{netA, {Name: "open", Bridge: "nsbr-o", Subnets: []netip.Prefix{prefix("10.0.0.0/8")}}}}, nil),
	}, true, nil},
	{"another state directory's last network leaves the table alone", []step{
		syncs(Host{Networks: []Network{netA}, Owner: "/var/lib/one"}, nil),
		syncs(Host{Owner: "/var/lib/two"}, ErrOwned),
	}, true, nil},
	{"overlapping NAT networks", []step{
		syncs(Host{Networks: []Network{netA, {Name: "wide", Bridge: "nsbr-w", Subnets: []netip.Prefix{prefix("10.0.0.0/8")}, Masquerade: true}}}, unix.EEXIST),
	}, false, nil},
}

func checkErr(t *testing.T, s step, err error) {
	t.Helper()
	switch {
	case s.want == nil && err != nil:
		t.Fatalf("%v: %v", s, err)
	case s.want != nil && !errors.Is(err, s.want):
		t.Fatalf("%v = %v, want an error wrapping %v", s, err, s.want)
	}
}

func TestFake(t *testing.T) {
	for _, tt := range scenarios {
		t.Run(tt.name, func(t *testing.T) {
			f := NewFake()
			for _, s := range tt.steps {
				checkErr(t, s, s.run(f))
			}
			if got := len(f.Host().Networks) > 0; got != tt.table {
				t.Errorf("table exists = %v, want %v", got, tt.table)
			}
			if got := f.Published(); !slices.Equal(got, tt.published) {
				t.Errorf("published = %v\nwant %v", got, tt.published)
			}
		})
	}
}

// TestFakeMatchesKernel runs the scenarios against nftables, so that the
// fake's answers stay the kernel's.
func TestFakeMatchesKernel(t *testing.T) {
	nstest.Require(t)
	for _, tt := range scenarios {
		t.Run(tt.name, func(t *testing.T) {
			fw := cleanFirewall(t)
			for _, s := range tt.steps {
				checkErr(t, s, s.run(fw))
			}
			table, err := fw.hasTable(fw.table)
			if err != nil {
				t.Fatal(err)
			}
			if table != tt.table {
				t.Errorf("table exists = %v, want %v", table, tt.table)
			}
			if got := kernelPorts(t, fw); !slices.Equal(got, tt.published) {
				t.Errorf("published = %v\nwant %v", got, tt.published)
			}
		})
	}
}

// cleanFirewall connects to the test's namespace with no nsnet tables in
// it, and removes them again when the test ends.
func cleanFirewall(t testing.TB) *Firewall {
	t.Helper()
	fw, err := New(-1)
	if err != nil {
		t.Fatal(err)
	}
	if err := fw.Sync(Host{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := fw.Sync(Host{}); err != nil {
			t.Error(err)
		}
	})
	return fw
}

// kernelPorts reads the port maps back into Ports, ordered as
// Fake.Published orders them.
func kernelPorts(t *testing.T, fw *Firewall) []Port {
	t.Helper()
	if ok, err := fw.hasTable(fw.table); err != nil || !ok {
		if err != nil {
			t.Fatal(err)
		}
		return nil
	}
	var out []Port
	host4, any4, host6, any6 := fw.portMaps()
	for _, m := range []*nftables.Set{any4, host4, any6, host6} {
		els, err := fw.conn.GetSetElements(m)
		if err != nil {
			t.Fatalf("read map %s: %v", m.Name, err)
		}
		for _, e := range els {
			p, err := decodeElement(m.Name, e)
			if err != nil {
				t.Fatalf("map %s: %v", m.Name, err)
			}
			out = append(out, p)
		}
	}
	f := NewFake()
	f.table = true
	if err := f.Publish(out, nil); err != nil {
		t.Fatalf("the kernel's map elements: %v", err)
	}
	return f.Published()
}

// decodeElement reverses Firewall.element.
func decodeElement(mapName string, e nftables.SetElement) (Port, error) {
	size := 4
	if strings.HasPrefix(mapName, "ports6") {
		size = 16
	}
	k, v := e.Key, e.Val
	var p Port
	if !strings.HasSuffix(mapName, "_any") {
		if len(k) < size {
			return p, fmt.Errorf("key %x too short", k)
		}
		p.HostIP, _ = netip.AddrFromSlice(k[:size])
		k = k[size:]
	}
	if len(k) != 8 || len(v) != size+4 {
		return p, fmt.Errorf("element %x : %x has the wrong size", e.Key, e.Val)
	}
	p.Proto = k[0]
	p.HostPort = uint16(k[4])<<8 | uint16(k[5])
	p.Addr, _ = netip.AddrFromSlice(v[:size])
	p.Port = uint16(v[size])<<8 | uint16(v[size+1])
	return p, nil
}

func TestFakeSyncRecordsHost(t *testing.T) {
	f := NewFake()
	n := netA
	n.Subnets = slices.Clone(netA.Subnets)
	h := Host{Networks: []Network{n}, Ports: true, LocalDNS: addr("169.254.1.1")}
	if err := f.Sync(h); err != nil {
		t.Fatal(err)
	}
	h.Networks[0].Subnets[0] = prefix("10.1.0.0/24") // the caller's slices stay the caller's
	got := f.Host()
	if got.Networks[0].Subnets[0] != prefix("10.88.0.0/24") || !got.Ports || got.LocalDNS != addr("169.254.1.1") || got.Published != nil {
		t.Errorf("Host() = %+v", got)
	}
	got.Networks[0].Name = "changed"
	if f.Host().Networks[0].Name != "a" {
		t.Error("Host() shares its networks with the fake")
	}
	if err := f.Sync(Host{Networks: []Network{netA}, Published: []Port{}}); err != nil {
		t.Fatal(err)
	}
	if got := f.Host(); got.Published == nil || got.Ports {
		t.Errorf("Host() = %+v, want Ports off and Published empty, not nil", got)
	}
}

func TestFakeFailures(t *testing.T) {
	boom := errors.New("boom")
	f := NewFake()
	f.DroppingForward = []ChainRef{{Family: nftables.TableFamilyIPv4, Table: "filter", Chain: "FORWARD"}}
	if err := f.Sync(Host{Networks: []Network{netA}, Ports: true}); err != nil {
		t.Fatal(err)
	}
	if err := f.Publish(ports(pAny4), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.OpenForward(netA); err != nil {
		t.Fatal(err)
	}
	f.FailSync, f.FailPublish, f.FailOpenForward, f.FailCloseForward = boom, boom, boom, boom
	calls := map[string]error{
		"Sync":         f.Sync(Host{}),
		"Publish":      f.Publish(nil, ports(pAny4)),
		"CloseForward": f.CloseForward(netA.Name),
	}
	refs, err := f.OpenForward(netB)
	calls["OpenForward"] = err
	for name, err := range calls {
		if err != boom {
			t.Errorf("%s = %v, want the injected error", name, err)
		}
	}
	if refs != nil {
		t.Errorf("a failed OpenForward returned %v", refs)
	}
	if len(f.Host().Networks) != 1 || !slices.Equal(f.Published(), ports(pAny4)) || len(f.Accepts()) != 1 || len(f.Accepts()["a"]) != 1 {
		t.Errorf("failed calls changed the state: host %+v, published %v, accepts %v", f.Host(), f.Published(), f.Accepts())
	}
	f.FailSync, f.FailPublish, f.FailOpenForward, f.FailCloseForward = nil, nil, nil, nil
	if err := f.Publish(nil, ports(pAny4)); err != nil {
		t.Errorf("after the failure is cleared: %v", err)
	}
}

var (
	fwdIP     = ChainRef{Family: nftables.TableFamilyIPv4, Table: "filter", Chain: "FORWARD"}
	fwdIP6    = ChainRef{Family: nftables.TableFamilyIPv6, Table: "filter", Chain: "FORWARD"}
	fwdINet   = ChainRef{Family: nftables.TableFamilyINet, Table: "fw", Chain: "forward"}
	fwdOwn    = ChainRef{Family: nftables.TableFamilyINet, Table: TableName, Chain: "forward"}
	fwdBridge = ChainRef{Family: nftables.TableFamilyBridge, Table: "br", Chain: "forward"}

	routed4 = Network{Name: "r4", Subnets: []netip.Prefix{prefix("10.99.0.0/24")}, Isolate: true}
	routed6 = Network{Name: "r6", Subnets: []netip.Prefix{prefix("fd00:99::/64")}, Isolate: true}
)

// forwardCases are which dropping chains get accepts for which network,
// as the kernel's chains in TestFakeForwardMatchesKernel get them.
var forwardCases = []struct {
	net  Network
	want []ChainRef
}{
	{netA, []ChainRef{fwdIP, fwdIP6, fwdINet}},
	{routed4, []ChainRef{fwdIP, fwdINet}},
	{routed6, []ChainRef{fwdIP6, fwdINet}},
	{Network{Name: "nothing"}, nil},
}

func TestFakeForward(t *testing.T) {
	f := NewFake()
	if refs, err := f.OpenForward(netA); refs != nil || err != nil {
		t.Fatalf("OpenForward with no dropping chain = %v, %v", refs, err)
	}
	f.DroppingForward = []ChainRef{fwdIP, fwdIP6, fwdINet, fwdOwn, fwdBridge}
	for _, tt := range forwardCases {
		refs, err := f.OpenForward(tt.net)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(refs, tt.want) {
			t.Errorf("OpenForward(%s) = %v, want %v", tt.net.Name, refs, tt.want)
		}
	}
	if _, err := f.OpenForward(routed4); err != nil {
		t.Fatal(err)
	}
	want := map[string][]ChainRef{netA.Name: {fwdIP, fwdIP6, fwdINet}, routed4.Name: {fwdIP, fwdINet, fwdIP, fwdINet}, routed6.Name: {fwdIP6, fwdINet}}
	if got := f.Accepts(); !equalAccepts(got, want) {
		t.Errorf("Accepts() = %v\nwant %v", got, want)
	}
	f.DroppingForward = nil // the user relaxed the policy: the accepts stay until closed
	for _, n := range []string{routed4.Name, "never-opened"} {
		if err := f.CloseForward(n); err != nil {
			t.Fatal(err)
		}
	}
	delete(want, routed4.Name)
	if got := f.Accepts(); !equalAccepts(got, want) {
		t.Errorf("after CloseForward, Accepts() = %v\nwant %v", got, want)
	}
}

func equalAccepts(a, b map[string][]ChainRef) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// TestFakeForwardMatchesKernel gives the real firewall the dropping
// chains the fake is told of, and checks it opens the same ones.
func TestFakeForwardMatchesKernel(t *testing.T) {
	nstest.Require(t)
	fw := cleanFirewall(t)
	nft(t, `
table ip filter { chain FORWARD { type filter hook forward priority filter; policy drop; }; }
table ip6 filter { chain FORWARD { type filter hook forward priority filter; policy drop; }; }
table inet fw { chain forward { type filter hook forward priority filter; policy drop; }; }
table inet open { chain forward { type filter hook forward priority filter; policy accept; }; }
table bridge br { chain forward { type filter hook forward priority filter; policy drop; }; }
`)
	t.Cleanup(func() {
		nft(t, "delete table ip filter; delete table ip6 filter; delete table inet fw; delete table inet open; delete table bridge br")
	})
	// nsnet's own forward chain is never opened.
	if err := fw.Sync(Host{Networks: []Network{netA, netB}}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range forwardCases {
		refs, err := fw.OpenForward(tt.net)
		if err != nil {
			t.Fatal(err)
		}
		sortRefs(refs)
		if want := slices.Clone(tt.want); !slices.Equal(refs, sortRefs(want)) {
			t.Errorf("OpenForward(%s) = %v, want %v", tt.net.Name, refs, want)
		}
		if got := tagged(t, fw, tt.net.Name); !slices.Equal(got, sortRefs(slices.Clone(tt.want))) {
			t.Errorf("chains with accepts for %s: %v, want %v", tt.net.Name, got, tt.want)
		}
	}
	for _, tt := range forwardCases {
		if err := fw.CloseForward(tt.net.Name); err != nil {
			t.Fatal(err)
		}
		if got := tagged(t, fw, tt.net.Name); got != nil {
			t.Errorf("after CloseForward, chains with accepts for %s: %v", tt.net.Name, got)
		}
	}
}

// tagged lists the forward chains holding rules tagged for the network.
func tagged(t *testing.T, fw *Firewall, network string) []ChainRef {
	t.Helper()
	chains, err := fw.forwardChains(false)
	if err != nil {
		t.Fatal(err)
	}
	var out []ChainRef
	for _, c := range chains {
		rules, err := fw.conn.GetRules(c.Table, c)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rules {
			if bytes.Equal(r.UserData, Tag(network)) {
				out = append(out, ChainRef{Family: c.Table.Family, Table: c.Table.Name, Chain: c.Name})
				break
			}
		}
	}
	return sortRefs(out)
}

func sortRefs(refs []ChainRef) []ChainRef {
	slices.SortFunc(refs, func(a, b ChainRef) int {
		return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
	})
	return refs
}

// nft runs an nft script in the test's namespace.
func nft(t *testing.T, script string) {
	t.Helper()
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
}

// ForwardStale says, on the kernel as on the fake, whether the accepts are
// what OpenForward would make now: after OpenForward no, once a chain's
// policy changed yes, after the round again no (issue 10, item 5).
func TestForwardStale(t *testing.T) {
	nstest.Require(t)
	fw := cleanFirewall(t)
	nft(t, `table ip filter { chain FORWARD { type filter hook forward priority filter; policy accept; }; }`)
	t.Cleanup(func() { nft(t, "delete table ip filter") })
	if err := fw.Sync(Host{Networks: []Network{netA}}); err != nil {
		t.Fatal(err)
	}
	filter := ChainRef{Family: nftables.TableFamilyIPv4, Table: "filter", Chain: "FORWARD"}
	fake := NewFake()
	steps := []struct {
		name   string
		policy string // "" keeps it
		reopen bool   // CloseForward and OpenForward
		want   bool
	}{
		{"nothing drops, nothing opened", "", false, false},
		{"policy turned to drop", "drop", false, true},
		{"opened", "", true, false},
		{"policy back to accept", "accept", false, true},
		{"closed again", "", true, false},
	}
	dropping := false
	for _, s := range steps {
		if s.policy != "" {
			dropping = s.policy == "drop"
			nft(t, "add chain ip filter FORWARD { policy "+s.policy+"; }")
			fake.DroppingForward = nil
			if s.policy == "drop" {
				fake.DroppingForward = []ChainRef{filter}
			}
		}
		for _, f := range []interface {
			CloseForward(string) error
			OpenForward(Network) ([]ChainRef, error)
			ForwardStale([]Network) (map[string]bool, error)
		}{fw, fake} {
			if s.reopen {
				if err := f.CloseForward(netA.Name); err != nil {
					t.Fatal(err)
				}
				if _, err := f.OpenForward(netA); err != nil {
					t.Fatal(err)
				}
			}
			if got, err := f.ForwardStale([]Network{netA, netB}); err != nil || got[netA.Name] != s.want || got[netB.Name] != dropping {
				// netB is never opened: stale while the chain drops.
				t.Errorf("%s: %T.ForwardStale = %v, %v; want %s stale %v, %s %v", s.name, f, got, err, netA.Name, s.want, netB.Name, dropping)
			}
		}
	}
}
