package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nsnet/nsnet/internal/driver"
	"github.com/nsnet/nsnet/internal/drivers"
	"github.com/nsnet/nsnet/internal/firewall"
	"github.com/nsnet/nsnet/internal/ipam"
	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/netns"
	"github.com/nsnet/nsnet/internal/store"
	"golang.org/x/sys/unix"
)

// The tests in this file run the engine's logic without root: the host and
// members are the test's own namespace, which nsnet only reads (through
// kernel.Current), the firewall is firewall.Fake, and the driver is
// fakeDriver, which records what it was asked to do instead of doing it.

// fakeDriver is a bridge-like driver that touches no kernel.
type fakeDriver struct {
	mu sync.Mutex
	// plugged holds members plugged and not unplugged, by namespace.
	plugged   map[string]store.Attachment
	built     map[string]bool
	repaired  []string
	failPlug  error
	unplugged []string
}

func (*fakeDriver) Name() string { return "fake" }

func (*fakeDriver) Caps() driver.Capabilities {
	return driver.Capabilities{HostEnd: true, Firewall: true, Ports: true, DNS: driver.DNSAtGateway}
}

func (*fakeDriver) Options() []driver.Option { return nil }

func (*fakeDriver) Plan(spec driver.Spec, n *store.Network) error {
	n.NAT = !spec.NoNAT
	for _, p := range spec.Subnets {
		n.Gateways = append(n.Gateways, ipam.FirstUsable(p))
	}
	return nil
}

func (*fakeDriver) Device(store.Network) string { return "" }

func (*fakeDriver) Reserved(*kernel.NS, store.Network) ([]netip.Addr, error) { return nil, nil }

func (*fakeDriver) Check(*kernel.NS, store.Network, func(string) (string, bool)) error { return nil }

func (d *fakeDriver) Build(_ *kernel.NS, n store.Network) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.built[n.Name] = true
	return nil
}

func (d *fakeDriver) Unbuild(_ *kernel.NS, op store.Op) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.built, op.Network)
	return nil
}

func (d *fakeDriver) Plug(_, _ *kernel.NS, _ store.Network, a store.Attachment, _ bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	// Like a real driver, a failure may come after the device exists.
	d.plugged[a.Namespace] = a
	return d.failPlug
}

func (d *fakeDriver) Unplug(h *kernel.NS, op store.Op) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	// Undo works from the journal's names alone: they must be the ones
	// the member was plugged with.
	if a, ok := d.plugged[op.Namespace]; ok && (a.HostIf != op.HostIf || a.IfName != op.IfName || fmt.Sprint(a.Addrs) != fmt.Sprint(op.Addrs) || op.Driver != "fake" || h == nil) {
		return fmt.Errorf("unplug of %s with names %s/%s %v (driver %q, host %v), plugged as %s/%s %v", op.Namespace, op.HostIf, op.IfName, op.Addrs, op.Driver, h != nil, a.HostIf, a.IfName, a.Addrs)
	}
	delete(d.plugged, op.Namespace)
	d.unplugged = append(d.unplugged, op.Namespace)
	return nil
}

func (*fakeDriver) DefaultRoute(*kernel.NS, store.Network, store.Attachment) error { return nil }

func (d *fakeDriver) Repair(_ *kernel.NS, _ store.Network, a store.Attachment) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.repaired = append(d.repaired, a.Namespace)
	return "", nil
}

// unit is a manager wired to fakes, and the namespaces that "exist".
type unit struct {
	*Manager
	fw  *firewall.Fake
	drv *fakeDriver
	ns  map[string]bool
}

func newUnit(t *testing.T, names ...string) *unit {
	t.Helper()
	m, err := Open(Config{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	u := &unit{Manager: m, fw: firewall.NewFake(), drv: &fakeDriver{plugged: map[string]store.Attachment{}, built: map[string]bool{}}, ns: map[string]bool{}}
	for _, n := range names {
		u.ns[n] = true
	}
	drivers.Register(u.drv)
	m.newFirewall = func(*kernel.NS) (Firewall, error) { return u.fw, nil }
	m.openHost = func(string) (*kernel.NS, error) { return kernel.Current() }
	m.nsExists = func(name string) bool { return u.ns[name] }
	m.openNamespace = func(name string) (*kernel.NS, error) {
		if !u.ns[name] {
			return nil, fmt.Errorf("namespace %q: %w", name, netns.ErrNotExist)
		}
		return kernel.Current()
	}
	m.etcDir = t.TempDir()
	return u
}

// subnet is a benchmarking range (RFC 2544), which no machine routes.
var subnet = netip.MustParsePrefix("198.18.0.0/24")

func (u *unit) network(t *testing.T, name string) {
	t.Helper()
	if _, err := u.CreateNetwork(NetworkSpec{Name: name, Driver: "fake", Subnets: []netip.Prefix{subnet}}); err != nil {
		t.Fatal(err)
	}
}

func TestPlanNetwork(t *testing.T) {
	v4 := []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24")}
	dual := append(v4, netip.MustParsePrefix("fd00:1::/64"))
	no := false
	for _, tt := range []struct {
		name string
		spec NetworkSpec
		// want is the planned network's driver, gateways, NAT, DNS and
		// options, or wantErr a part of the error.
		want    string
		wantErr string
	}{
		{"bridge default", NetworkSpec{Subnets: v4}, "bridge [10.1.0.1] nat=true dns=true map[bridge-name:nsbr-n]", ""},
		{"bridge dual, named", NetworkSpec{Subnets: dual, Options: map[string]string{"bridge-name": "br9"}}, "bridge [10.1.0.1 fd00:1::1] nat=true dns=true map[bridge-name:br9]", ""},
		{"bridge gateway", NetworkSpec{Subnets: v4, Gateways: []netip.Addr{netip.MustParseAddr("10.1.0.254")}}, "bridge [10.1.0.254] nat=true dns=true map[bridge-name:nsbr-n]", ""},
		{"bridge internal", NetworkSpec{Subnets: v4, Internal: true}, "bridge [10.1.0.1] nat=false dns=true map[bridge-name:nsbr-n]", ""},
		{"bridge no-nat", NetworkSpec{Subnets: v4, NoNAT: true}, "bridge [10.1.0.1] nat=false dns=true map[bridge-name:nsbr-n]", ""},
		{"bridge with parent", NetworkSpec{Subnets: v4, Options: map[string]string{"parent": "eth0"}}, "", "--parent is for the macvlan driver"},
		{"routed with bridge name", NetworkSpec{Driver: "routed", Subnets: v4, Options: map[string]string{"bridge-name": "b"}}, "", "--bridge-name is for the bridge driver"},
		{"bridge name too long", NetworkSpec{Subnets: v4, Options: map[string]string{"bridge-name": "abcdefghijklmnop"}}, "", "the limit is 15"},
		{"routed", NetworkSpec{Driver: "routed", Subnets: dual}, "routed [169.254.1.1 fe80::1] nat=false dns=true map[]", ""},
		{"routed nat", NetworkSpec{Driver: "routed", Subnets: v4, NAT: true}, "routed [169.254.1.1] nat=true dns=true map[]", ""},
		{"routed internal", NetworkSpec{Driver: "routed", Subnets: v4, Internal: true}, "", "--internal is for bridge networks"},
		{"macvlan internal", NetworkSpec{Driver: "macvlan", Subnets: v4, Internal: true, DNS: &no, Options: map[string]string{"parent": "eth0"}}, "", "--internal and --nat are for bridge and routed networks"},
		{"routed gateway", NetworkSpec{Driver: "routed", Subnets: v4, Gateways: []netip.Addr{netip.MustParseAddr("10.1.0.1")}}, "", "--gateway does not apply"},
		{"macvlan", NetworkSpec{Driver: "macvlan", Subnets: v4, DNS: &no, Options: map[string]string{"parent": "eth0"}}, "macvlan [invalid IP] nat=false dns=false map[parent:eth0]", ""},
		{"macvlan gateway", NetworkSpec{Driver: "macvlan", Subnets: v4, DNS: &no, Gateways: []netip.Addr{netip.MustParseAddr("10.1.0.9")}, Options: map[string]string{"parent": "eth0"}}, "macvlan [10.1.0.9] nat=false dns=false map[parent:eth0]", ""},
		{"macvlan without parent", NetworkSpec{Driver: "macvlan", Subnets: v4, DNS: &no}, "", "needs --parent"},
		{"macvlan default dns", NetworkSpec{Driver: "macvlan", Subnets: v4, Options: map[string]string{"parent": "eth0"}}, "macvlan [invalid IP] nat=false dns=false map[parent:eth0]", ""},
		{"macvlan dns", NetworkSpec{Driver: "macvlan", Subnets: v4, DNS: new(bool), Options: map[string]string{"parent": "eth0"}}, "macvlan [invalid IP] nat=false dns=false map[parent:eth0]", ""},
		{"unknown driver", NetworkSpec{Driver: "warp", Subnets: v4}, "", `driver "warp" is not supported (supported: bridge, routed, macvlan`},
		{"no subnet", NetworkSpec{}, "", "a --subnet is required"},
		{"host bits", NetworkSpec{Subnets: []netip.Prefix{netip.MustParsePrefix("10.1.0.1/24")}}, "", "has host bits set"},
		{"two v4", NetworkSpec{Subnets: append(v4, netip.MustParsePrefix("10.2.0.0/24"))}, "", "at most one IPv4"},
		{"bad mtu", NetworkSpec{Subnets: v4, MTU: 20}, "", "MTU 20"},
		{"IPv6 mtu", NetworkSpec{Subnets: dual, MTU: 1000}, "", "MTU 1000 is below IPv6's minimum of 1280"},
		{"nat and no-nat", NetworkSpec{Subnets: v4, NAT: true, NoNAT: true}, "", "--nat and --no-nat contradict each other"},
		{"internal and nat", NetworkSpec{Subnets: v4, NAT: true, Internal: true}, "", "--nat contradicts it"},
		{"subnet 127.0.0.0/24", NetworkSpec{Subnets: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/24")}}, "", "is loopback"},
		{"subnet 224.0.0.0/24", NetworkSpec{Subnets: []netip.Prefix{netip.MustParsePrefix("224.0.0.0/24")}}, "", "is multicast"},
		{"subnet 0.0.0.0/8", NetworkSpec{Subnets: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/8")}}, "", "is \"this network\""},
		{"subnet 255.255.255.0/24", NetworkSpec{Subnets: []netip.Prefix{netip.MustParsePrefix("255.255.255.0/24")}}, "", "is reserved (class E)"},
		{"subnet 169.254.0.0/16", NetworkSpec{Subnets: []netip.Prefix{netip.MustParsePrefix("169.254.0.0/16")}}, "", "is link-local"},
		{"subnet 240.0.0.0/24", NetworkSpec{Subnets: []netip.Prefix{netip.MustParsePrefix("240.0.0.0/24")}}, "", "is reserved (class E)"},
		{"subnet fe80::/64", NetworkSpec{Subnets: []netip.Prefix{netip.MustParsePrefix("fe80::/64")}}, "", "is link-local"},
		{"subnet ::/64", NetworkSpec{Subnets: []netip.Prefix{netip.MustParsePrefix("::/64")}}, "", "is reserved"},
		{"subnet ff02::/64", NetworkSpec{Subnets: []netip.Prefix{netip.MustParsePrefix("ff02::/64")}}, "", "is multicast"},
		{"subnet in nsnet's resolver block", NetworkSpec{Subnets: []netip.Prefix{netip.MustParsePrefix("fd6e:736e:6574:1::/64")}}, "", "is nsnet's own"},
		{"ip range outside", NetworkSpec{Subnets: v4, IPRanges: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/28")}}, "", "--ip-range 10.2.0.0/28 is not inside a subnet"},
		{"ip range wider than the subnet", NetworkSpec{Subnets: v4, IPRanges: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, "", "is not inside a subnet"},
		{"ip range host bits", NetworkSpec{Subnets: v4, IPRanges: []netip.Prefix{netip.MustParsePrefix("10.1.0.129/25")}}, "", "has host bits set"},
		{"two ip ranges of a family", NetworkSpec{Subnets: v4, IPRanges: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/28"), netip.MustParsePrefix("10.1.0.128/28")}}, "", "at most one per family"},
		{"ip range of the network address", NetworkSpec{Subnets: v4, IPRanges: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/32")}}, "", "holds no address a member could have"},
		{"aux address outside", NetworkSpec{Subnets: v4, AuxAddresses: map[string]netip.Addr{"r": netip.MustParseAddr("10.2.0.1")}}, "", "--aux-address r=10.2.0.1 is not inside a subnet"},
		{"aux address broadcast", NetworkSpec{Subnets: v4, AuxAddresses: map[string]netip.Addr{"r": netip.MustParseAddr("10.1.0.255")}}, "", "is the broadcast address"},
		{"aux address gateway", NetworkSpec{Subnets: v4, AuxAddresses: map[string]netip.Addr{"r": netip.MustParseAddr("10.1.0.1")}}, "", "is the network's gateway"},
		{"aux address twice", NetworkSpec{Subnets: v4, AuxAddresses: map[string]netip.Addr{"a": netip.MustParseAddr("10.1.0.9"), "b": netip.MustParseAddr("10.1.0.9")}}, "", `--aux-address b=10.1.0.9: the address is already "a"'s`},
		{"aux address without a name", NetworkSpec{Subnets: v4, AuxAddresses: map[string]netip.Addr{"": netip.MustParseAddr("10.1.0.9")}}, "", "has no name"},
		{"subnet ::ffff:10.79.0.0/120", NetworkSpec{Subnets: []netip.Prefix{netip.MustParsePrefix("::ffff:10.79.0.0/120")}}, "", "is IPv4-mapped"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.Name = "n"
			n, d, err := (&Manager{}).planNetwork(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := fmt.Sprintf("%s %v nat=%v dns=%v %v", d.Name(), n.Gateways, n.NAT, n.DNS, n.Options)
			if got != tt.want {
				t.Errorf("planned %s\nwant    %s", got, tt.want)
			}
		})
	}
	if _, _, err := (&Manager{}).planNetwork(NetworkSpec{Name: "n", Driver: "warp", Subnets: v4}); !errors.Is(err, driver.ErrUnknown) {
		t.Errorf("unknown driver: %v, want driver.ErrUnknown", err)
	}
}

func TestConnectUndo(t *testing.T) {
	for _, tt := range []struct {
		name string
		// breaks makes the connect fail at one step.
		breaks func(u *unit)
		// undoFails: the cause also breaks the undo, which then stays in
		// the journal for gc, run once the cause is gone.
		undoFails bool
	}{
		{"driver fails", func(u *unit) { u.drv.failPlug = errors.New("boom") }, false},
		{"publish fails", func(u *unit) { u.fw.FailPublish = errors.New("boom") }, true},
		{"resolv.conf fails after the ports", func(u *unit) {
			// A file where the namespace's directory should be.
			os.WriteFile(filepath.Join(u.etcDir, "b"), nil, 0o644)
		}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u := newUnit(t, "a", "b")
			u.network(t, "n")
			if _, err := u.Connect(ConnectSpec{Network: "n", Namespace: "a", Ports: []PortMap{{HostPort: 8080, Port: 80, Proto: "tcp"}}}); err != nil {
				t.Fatal(err)
			}
			before := u.fw.Published()
			tt.breaks(u)
			_, err := u.Connect(ConnectSpec{Network: "n", Namespace: "b", Ports: []PortMap{{HostPort: 9090, Port: 90, Proto: "tcp"}}})
			if err == nil {
				t.Fatal("connect succeeded")
			}
			if ops, _ := u.st.Pending(); (len(ops) == 1) != tt.undoFails {
				t.Fatalf("journal after the failed connect: %+v", ops)
			}
			u.drv.failPlug, u.fw.FailPublish = nil, nil
			os.Remove(filepath.Join(u.etcDir, "b"))
			if tt.undoFails {
				if err == nil || !strings.Contains(err.Error(), "run nsnet gc") {
					t.Errorf("err = %v, want it to send the user to gc", err)
				}
				if done, err := u.GC(); err != nil || len(done) != 1 || !strings.Contains(done[0], "rolled back interrupted connect of b to n") {
					t.Fatalf("gc: %q, %v", done, err)
				}
			}
			if _, ok := u.drv.plugged["b"]; ok {
				t.Error("the driver's devices for b were not unplugged")
			}
			if got := u.fw.Published(); fmt.Sprint(got) != fmt.Sprint(before) {
				t.Errorf("published ports after the undo: %v, want %v", got, before)
			}
			if ops, _ := u.st.Pending(); len(ops) != 0 {
				t.Errorf("journal after the undo: %+v", ops)
			}
			if _, err := os.Stat(filepath.Join(u.etcDir, "b", "resolv.conf")); err == nil {
				t.Error("b kept a resolv.conf")
			}
			info, err := u.Network("n")
			if err != nil || len(info.Members) != 1 {
				t.Fatalf("members after the undo: %+v, %v", info.Members, err)
			}
			// b's address and port were not kept: a retry gets the next
			// address and the same port.
			a, err := u.Connect(ConnectSpec{Network: "n", Namespace: "b", Ports: []PortMap{{HostPort: 9090, Port: 90, Proto: "tcp"}}})
			if err != nil {
				t.Fatal(err)
			}
			if want := "198.18.0.3/24"; fmt.Sprint(a.Addrs) != "["+want+"]" {
				t.Errorf("retry got %v, want %s", a.Addrs, want)
			}
		})
	}
}

func TestGCRepairs(t *testing.T) {
	u := newUnit(t, "a", "b")
	u.network(t, "n")
	for _, ns := range []string{"a", "b"} {
		if _, err := u.Connect(ConnectSpec{Network: "n", Namespace: ns, Ports: []PortMap{{HostPort: map[string]uint16{"a": 8080, "b": 8081}[ns], Port: 80, Proto: "tcp"}}}); err != nil {
			t.Fatal(err)
		}
	}
	// Someone deletes nsnet's table, and namespace b behind nsnet's back.
	if err := u.fw.Sync(firewall.Host{}); err != nil {
		t.Fatal(err)
	}
	delete(u.ns, "b")
	done, err := u.GC()
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != 1 || !strings.Contains(done[0], "vanished namespace b") {
		t.Errorf("gc said %q", done)
	}
	h := u.fw.Host()
	if len(h.Networks) != 1 || h.Networks[0].Name != "n" || !h.Ports {
		t.Errorf("table after gc: %+v", h)
	}
	if got := fmt.Sprint(u.fw.Published()); !strings.Contains(got, "8080") || strings.Contains(got, "8081") {
		t.Errorf("published after gc: %s, want a's port only", got)
	}
	if len(u.drv.unplugged) != 1 || u.drv.unplugged[0] != "b" {
		t.Errorf("unplugged %v, want [b]", u.drv.unplugged)
	}
	if len(u.drv.repaired) != 1 || u.drv.repaired[0] != "a" {
		t.Errorf("repaired %v, want [a]", u.drv.repaired)
	}
	// b's address is free again.
	u.ns["b"] = true
	a, err := u.Connect(ConnectSpec{Network: "n", Namespace: "b"})
	if err != nil || a.Addrs[0].Addr() != netip.MustParseAddr("198.18.0.3") {
		t.Errorf("reconnect: %+v, %v", a, err)
	}
	// A second gc finds nothing to do.
	if done, err := u.GC(); err != nil || len(done) != 0 {
		t.Errorf("second gc: %q, %v", done, err)
	}
}

func TestPortConflicts(t *testing.T) {
	tcp := func(host, port uint16) PortMap { return PortMap{HostPort: host, Port: port, Proto: "tcp"} }
	for _, tt := range []struct {
		name  string
		ports []PortMap
		kind  error
		msg   string
	}{
		{"same port", []PortMap{tcp(8080, 81)}, ErrInUse, `host port tcp/8080 is already published by the member "a" of network "n"`},
		{"inside a range", []PortMap{{HostPort: 8070, HostEnd: 8090, Port: 70, Proto: "tcp"}}, ErrInUse, "host port tcp/8080"},
		{"given twice", []PortMap{tcp(9000, 80), tcp(9000, 81)}, ErrExists, "published port tcp/9000 is given twice"},
		{"other protocol", []PortMap{{HostPort: 8080, Port: 80, Proto: "udp"}}, nil, ""},
		{"free port", []PortMap{tcp(8081, 80)}, nil, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u := newUnit(t, "a", "b")
			u.network(t, "n")
			if _, err := u.Connect(ConnectSpec{Network: "n", Namespace: "a", Ports: []PortMap{tcp(8080, 80)}}); err != nil {
				t.Fatal(err)
			}
			_, err := u.Connect(ConnectSpec{Network: "n", Namespace: "b", Ports: tt.ports})
			if tt.kind == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tt.kind) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want %v containing %q", err, tt.kind, tt.msg)
			}
			if _, ok := u.drv.plugged["b"]; ok {
				t.Error("a refused connect reached the driver")
			}
			// The refusal is nsnet's own, before the kernel's: the maps
			// still hold a's port alone, and b holds no lease.
			want := []firewall.Port{{Proto: unix.IPPROTO_TCP, HostPort: 8080, Addr: netip.MustParseAddr("198.18.0.2"), Port: 80}}
			if got := u.fw.Published(); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("port maps after the refusal: %v, want %v", got, want)
			}
			u.st.View(func(tx *store.Tx) error {
				if owner, ok := tx.LeaseOwner("n", netip.MustParseAddr("198.18.0.3")); ok {
					t.Errorf("198.18.0.3 leased to %v after the refusal", owner)
				}
				return nil
			})
		})
	}
}

// A subnet overlapping another network of the host is refused by nsnet
// itself, whatever the driver would say, and leaves nothing behind
// (issue 10, item 33).
func TestSubnetOverlapRefused(t *testing.T) {
	for _, p := range []string{"198.18.0.0/24", "198.18.0.128/25", "198.18.0.0/16"} {
		t.Run(p, func(t *testing.T) {
			u := newUnit(t)
			u.network(t, "n")
			_, err := u.CreateNetwork(NetworkSpec{Name: "m", Driver: "fake", Subnets: []netip.Prefix{netip.MustParsePrefix(p)}})
			if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), `overlaps network "n" (198.18.0.0/24)`) {
				t.Fatalf("err = %v, want ErrInUse naming network n", err)
			}
			if u.drv.built["m"] {
				t.Error("the refused network was built")
			}
			if _, err := u.Network("m"); !errors.Is(err, ErrNotFound) {
				t.Errorf("the refused network is recorded: %v", err)
			}
		})
	}
}

func TestSentinels(t *testing.T) {
	u := newUnit(t, "a")
	u.network(t, "n")
	_, err := u.CreateNetwork(NetworkSpec{Name: "n", Driver: "fake", Subnets: []netip.Prefix{netip.MustParsePrefix("198.19.0.0/24")}})
	if !errors.Is(err, ErrExists) {
		t.Errorf("second network n: %v, want ErrExists", err)
	}
	if _, err := u.Connect(ConnectSpec{Network: "nope", Namespace: "a"}); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `network "nope": no such network`) {
		t.Errorf("unknown network: %v", err)
	}
	if _, err := u.Connect(ConnectSpec{Network: "n", Namespace: "ghost"}); !errors.Is(err, ErrNotFound) || !errors.Is(err, netns.ErrNotExist) {
		t.Errorf("unknown namespace: %v", err)
	}
	if _, err := u.Connect(ConnectSpec{Network: "n", Namespace: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Connect(ConnectSpec{Network: "n", Namespace: "a"}); !errors.Is(err, ErrExists) {
		t.Errorf("connect twice: %v", err)
	}
	if err := u.RemoveNetwork("n", false); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "has 1 member(s);") {
		t.Errorf("rm with members: %v", err)
	}
	u.ns["b"] = true
	if _, err := u.Connect(ConnectSpec{Network: "n", Namespace: "b", IPv4: netip.MustParseAddr("198.18.0.1")}); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "is the gateway") {
		t.Errorf("gateway address: %v", err)
	}
	if _, err := u.Connect(ConnectSpec{Network: "n", Namespace: "b", IPv4: netip.MustParseAddr("198.18.0.2")}); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), `already leased to namespace "a"`) {
		t.Errorf("leased address: %v", err)
	}

	if err := u.Disconnect("n", "b"); !errors.Is(err, ErrNotFound) {
		t.Errorf("disconnect of a non-member: %v", err)
	}
}

// The CLI's JSON is the API's view, not the store's record: the same keys
// as before for what users see, nothing of what nsnet keeps for itself.
func TestViewsJSON(t *testing.T) {
	created := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name string
		n    store.Network
		want string
	}{
		{"bridge", store.Network{Name: "a", Driver: "bridge", Subnets: []netip.Prefix{subnet}, Gateways: []netip.Addr{netip.MustParseAddr("198.18.0.1")},
			NAT: true, DNS: true, Options: map[string]string{"bridge-name": "nsbr-a"}, HostNetns: "/run/netns/h", HostIno: 4026532000, Created: created},
			`{"name":"a","driver":"bridge","subnets":["198.18.0.0/24"],"gateways":["198.18.0.1"],"bridge":"nsbr-a","nat":true,"internal":false,"dns":true,"host_netns":"/run/netns/h","created":"2026-11-29T00:00:00Z","members":[]}`},
		{"macvlan", store.Network{Name: "m", Driver: "macvlan", Subnets: []netip.Prefix{subnet}, Gateways: []netip.Addr{{}},
			NoIsolate: true, NoHostFirewall: true, Options: map[string]string{"parent": "eth0"}, HostIno: 7, Created: created},
			`{"created":"2026-11-29T00:00:00Z","dns":false,"driver":"macvlan","gateways":[""],"internal":false,"members":[],"name":"m","nat":false,"no_host_firewall":true,"no_isolate":true,"parent":"eth0","subnets":["198.18.0.0/24"]}`},
		{"routed", store.Network{Name: "r", Driver: "routed", Subnets: []netip.Prefix{subnet}, Gateways: []netip.Addr{netip.MustParseAddr("169.254.1.1")}, DNS: true, Created: created},
			`{"name":"r","driver":"routed","subnets":["198.18.0.0/24"],"gateways":["169.254.1.1"],"nat":false,"internal":false,"dns":true,"created":"2026-11-29T00:00:00Z","members":[]}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := jsonOf(networkInfo(tt.n, nil))
			if err != nil {
				t.Fatal(err)
			}
			if raw != tt.want {
				t.Errorf("JSON\n%s\nwant\n%s", raw, tt.want)
			}
		})
	}
	l, err := jsonOf(linkInfo(store.Link{NS1: "host", NS2: "a", If1: "v0", If2: "v1", HostNetns: "/run/netns/h", HostIno: 9}))
	if err != nil || l != `{"ns1":"host","if1":"v0","ns2":"a","if2":"v1","host_netns":"/run/netns/h"}` {
		t.Errorf("link JSON %s, %v", l, err)
	}
}

// A journal entry written by an older nsnet (no id, no driver) is still
// rolled back: its driver is found from its names.
func TestRecoverLegacyEntry(t *testing.T) {
	u := newUnit(t, "a")
	u.network(t, "n")
	legacy := `{"kind":"connect","network":"n","namespace":"a","host_if":"nsvdeadbeef","ifname":"eth0","addrs":["198.18.0.9/24"],"pid":1,"started":"2026-01-01T00:00:00Z"}`
	if err := os.WriteFile(filepath.Join(u.cfg.StateDir, "journal", "00000000000000aa.json"), []byte(legacy), 0o600); err != nil {
		t.Fatal(err)
	}
	done, err := u.GC()
	if err != nil || len(done) != 1 || !strings.Contains(done[0], "rolled back interrupted connect of a to n") {
		t.Fatalf("gc: %q, %v", done, err)
	}
	if ops, _ := u.st.Pending(); len(ops) != 0 {
		t.Errorf("journal after gc: %+v", ops)
	}
}

func jsonOf(v any) (string, error) {
	raw, err := json.Marshal(v)
	return string(raw), err
}

func TestAliases(t *testing.T) {
	for _, tt := range []struct {
		aliases []string
		want    string // the stored aliases, or a part of the error
		kind    error
	}{
		{[]string{"web2", "Api.Example."}, "[web2 api.example]", nil},
		{[]string{"web."}, `alias "web." is already an alias of "a"`, ErrInUse},
		{[]string{"WEB"}, `alias "WEB" is already an alias of "a"`, ErrInUse},
		{[]string{"a."}, `alias "a." is the name of another member`, ErrInUse},
		{[]string{"b."}, "is the member's own name", nil},
		{[]string{"x", "X."}, "is given twice", ErrExists},
		{[]string{"*"}, "not a DNS name", nil},
		{[]string{"-web"}, "starts or ends with '-'", nil},
		{[]string{"we_b"}, "not a letter, digit or '-'", nil},
		{[]string{"a..b"}, "every label has 1 to 63 characters", nil},
		{[]string{"."}, "not a DNS name", nil},
		{[]string{strings.Repeat("x", 64)}, "every label has 1 to 63 characters", nil},
	} {
		t.Run(strings.Join(tt.aliases, ","), func(t *testing.T) {
			u := newUnit(t, "a", "b")
			u.network(t, "n")
			if _, err := u.Connect(ConnectSpec{Network: "n", Namespace: "a", Aliases: []string{"web"}}); err != nil {
				t.Fatal(err)
			}
			m, err := u.Connect(ConnectSpec{Network: "n", Namespace: "b", Aliases: tt.aliases})
			if strings.HasPrefix(tt.want, "[") {
				if err != nil || fmt.Sprint(m.Aliases) != tt.want {
					t.Fatalf("aliases %v, %v; want %s", m.Aliases, err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || (tt.kind != nil && !errors.Is(err, tt.kind)) {
				t.Fatalf("err = %v, want %q (%v)", err, tt.want, tt.kind)
			}
		})
	}
}

// A host port that a service of the host holds is not taken over without
// --force, alone or inside a range (issue 10, item 2).
func TestPortsHeldByTheHost(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	udp, err := net.ListenPacket("udp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	tp := uint16(tcp.Addr().(*net.TCPAddr).Port)
	up := uint16(udp.LocalAddr().(*net.UDPAddr).Port)
	for _, tt := range []struct {
		name  string
		ports []PortMap
		force bool
		want  string
	}{
		{"tcp port", []PortMap{{HostPort: tp, Port: 80, Proto: "tcp"}}, false, fmt.Sprintf("host port tcp/%d is held by a service of the host (listening on 127.0.0.1)", tp)},
		{"range over it", []PortMap{{HostPort: tp - 1, HostEnd: tp + 1, Port: 1000, Proto: "tcp"}}, false, fmt.Sprintf("host port tcp/%d is held", tp)},
		{"udp port", []PortMap{{HostPort: up, Port: 53, Proto: "udp"}}, false, fmt.Sprintf("host port udp/%d is held by a service of the host (listening on every address)", up)},
		{"other protocol", []PortMap{{HostPort: tp, Port: 80, Proto: "udp"}}, false, ""},
		{"forced", []PortMap{{HostPort: tp, Port: 80, Proto: "tcp"}}, true, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u := newUnit(t, "a")
			u.network(t, "n")
			_, err := u.Connect(ConnectSpec{Network: "n", Namespace: "a", Ports: tt.ports, Force: tt.force})
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if len(u.fw.Published()) != 0 {
				t.Errorf("a refused port was published: %v", u.fw.Published())
			}
		})
	}
}

// Two state directories on one host: the second is refused at its first
// network, and the first's table is untouched (issue 10, item 6).
func TestSecondStoreRefused(t *testing.T) {
	first := newUnit(t, "a")
	first.network(t, "one")
	second := newUnit(t)
	second.fw = first.fw
	second.newFirewall = func(*kernel.NS) (Firewall, error) { return first.fw, nil }
	_, err := second.CreateNetwork(NetworkSpec{Name: "two", Driver: "fake", Subnets: []netip.Prefix{netip.MustParsePrefix("198.19.0.0/24")}})
	var owned *firewall.OwnedError
	if !errors.As(err, &owned) || owned.Owner != first.cfg.StateDir {
		t.Fatalf("second store's net create: %v, want it refused naming %s", err, first.cfg.StateDir)
	}
	if h := first.fw.Host(); len(h.Networks) != 1 || h.Networks[0].Name != "one" || h.Owner != first.cfg.StateDir {
		t.Errorf("the first store's table after the refusal: %+v", h)
	}
}

// --ip-range bounds the addresses handed out without --ip, while --ip may
// still pick one outside it; --aux-address keeps its address from both
// (issue 10, item 18).
func TestIPRangeAndAuxAddresses(t *testing.T) {
	u := newUnit(t, "a", "b", "c", "d", "e")
	_, err := u.CreateNetwork(NetworkSpec{Name: "n", Driver: "fake", Subnets: []netip.Prefix{subnet},
		IPRanges:     []netip.Prefix{netip.MustParsePrefix("198.18.0.128/30")},
		AuxAddresses: map[string]netip.Addr{"router": netip.MustParseAddr("198.18.0.129"), "printer": netip.MustParseAddr("198.18.0.20")}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ns, ip, want, wantErr string
	}{
		{ns: "a", want: "198.18.0.128/24"},
		{ns: "b", want: "198.18.0.130/24"}, // .129 is the router's
		{ns: "c", want: "198.18.0.131/24"},
		{ns: "d", wantErr: "ip range 198.18.0.128/30 has no free address"},
		{ns: "d", ip: "198.18.0.20", wantErr: `address 198.18.0.20 is already leased to the auxiliary address "printer"`},
		{ns: "e", ip: "198.18.0.50", want: "198.18.0.50/24"},
	} {
		spec := ConnectSpec{Network: "n", Namespace: c.ns}
		if c.ip != "" {
			spec.IPv4 = netip.MustParseAddr(c.ip)
		}
		a, err := u.Connect(spec)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("connect %s: %v, want %q", c.ns, err, c.wantErr)
			}
			if c.ip == "" && !errors.Is(err, ErrFull) {
				t.Errorf("connect %s: %v, want ErrFull", c.ns, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("connect %s: %v", c.ns, err)
		}
		if got := fmt.Sprint(a.Addrs); got != "["+c.want+"]" {
			t.Errorf("connect %s got %s, want %s", c.ns, got, c.want)
		}
	}
	n, err := u.Network("n")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(n.IPRanges, n.AuxAddresses) != "[198.18.0.128/30] map[printer:198.18.0.20 router:198.18.0.129]" {
		t.Errorf("inspect shows %v %v", n.IPRanges, n.AuxAddresses)
	}
}
