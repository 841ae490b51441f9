package engine

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/netns"
	"github.com/nsnet/nsnet/internal/nstest"
	"github.com/nsnet/nsnet/internal/plumb"
	"github.com/nsnet/nsnet/internal/store"
)

func TestMain(m *testing.M) { nstest.Main(m) }

// hostLab makes a fresh namespace to stand for the host and a manager bound
// to it with a private state directory.
func hostLab(tb testing.TB, name string) *Manager {
	tb.Helper()
	nstest.Require(tb)
	if err := netns.Create(name); err != nil {
		tb.Fatal(err)
	}
	m, err := Open(Config{StateDir: tb.TempDir(), HostNetns: netns.Path(name)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		m.Close()
		netns.Delete(name)
	})
	return m
}

func members(tb testing.TB, m *Manager, prefix string, n int) []string {
	tb.Helper()
	var names []string
	for i := range n {
		name := fmt.Sprintf("%s%d", prefix, i)
		if err := m.CreateNamespace(name, ""); err != nil {
			tb.Fatal(err)
		}
		names = append(names, name)
	}
	tb.Cleanup(func() {
		for _, n := range names {
			m.RemoveNamespace(n)
		}
	})
	return names
}

// TestBridgePortLimit fills a bridge to the kernel's limit of 1023 ports;
// the next connect must fail with a clear error and leave nothing behind.
func TestBridgePortLimit(t *testing.T) {
	m := hostLab(t, "limit-host")
	if _, err := m.CreateNetwork(NetworkSpec{Name: "big", Subnets: []netip.Prefix{netip.MustParsePrefix("10.128.0.0/20")}}); err != nil {
		t.Fatal(err)
	}
	names := members(t, m, "lim", plumb.MaxBridgePorts+1)
	for _, n := range names[:plumb.MaxBridgePorts] {
		if _, err := m.Connect(ConnectSpec{Network: "big", Namespace: n}); err != nil {
			t.Fatalf("connect %s: %v", n, err)
		}
	}
	_, err := m.Connect(ConnectSpec{Network: "big", Namespace: names[plumb.MaxBridgePorts]})
	if err == nil || !strings.Contains(err.Error(), "is full") || !errors.Is(err, ErrFull) {
		t.Fatalf("connect past the limit: %v, want a 'network is full' error", err)
	}
	info, err := m.Network("big")
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Members) != plumb.MaxBridgePorts {
		t.Errorf("members = %d, want %d", len(info.Members), plumb.MaxBridgePorts)
	}
	// The refused connect left nothing: no veth in the host or in the
	// namespace, and nothing in the journal.
	h, err := kernel.Open(netns.Path("limit-host"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	links, err := h.NL.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	veths := 0
	for _, l := range links {
		if l.Type() == "veth" {
			veths++
		}
	}
	if veths != plumb.MaxBridgePorts {
		t.Errorf("host has %d veths, want %d", veths, plumb.MaxBridgePorts)
	}
	last, err := kernel.Open(netns.Path(names[plumb.MaxBridgePorts]))
	if err != nil {
		t.Fatal(err)
	}
	defer last.Close()
	if inside, _ := last.NL.LinkList(); len(inside) != 1 {
		t.Errorf("the refused namespace has %d links, want only lo", len(inside))
	}
	if ops, err := m.st.Pending(); err != nil || len(ops) != 0 {
		t.Errorf("journal after the refused connect: %v %v", ops, err)
	}
	if err := m.RemoveNetwork("big", true); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkConnect measures `net connect` (and its disconnect) on a network
// that already has N members, in process, store commits included: bridge
// IPv4, bridge dual-stack, and routed IPv4.
// It reports the median and 95th percentile per operation; run with
//
//	go test ./manager -run '^$' -bench Connect -benchtime 200x
func BenchmarkConnect(b *testing.B) {
	for _, stack := range []string{"ipv4", "dual", "routed"} {
		for _, n := range []int{10, 100, 1000} {
			b.Run(fmt.Sprintf("%s/N=%d", stack, n), func(b *testing.B) {
				benchConnect(b, stack, n)
			})
		}
	}
}

func benchConnect(b *testing.B, stack string, n int) {
	host := fmt.Sprintf("bench-%s-%d", stack, n)
	m := hostLab(b, host)
	subnets := []netip.Prefix{netip.MustParsePrefix("10.200.0.0/20")}
	if stack == "dual" {
		subnets = append(subnets, netip.MustParsePrefix("fd00:200::/64"))
	}
	spec := NetworkSpec{Name: "bench", Subnets: subnets}
	if stack == "routed" {
		spec.Driver = "routed"
	}
	if _, err := m.CreateNetwork(spec); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.RemoveNetwork("bench", true) })
	for _, name := range members(b, m, host+"-m", n) {
		if _, err := m.Connect(ConnectSpec{Network: "bench", Namespace: name}); err != nil {
			b.Fatal(err)
		}
	}
	extra := members(b, m, host+"-x", 1)[0]
	connects := make([]time.Duration, 0, b.N)
	disconnects := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := m.Connect(ConnectSpec{Network: "bench", Namespace: extra}); err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		if err := m.Disconnect("bench", extra); err != nil {
			b.Fatal(err)
		}
		connects = append(connects, mid.Sub(start))
		disconnects = append(disconnects, time.Since(mid))
	}
	b.StopTimer()
	b.ReportMetric(percentile(connects, 50), "connect-p50-ms")
	b.ReportMetric(percentile(connects, 95), "connect-p95-ms")
	b.ReportMetric(percentile(disconnects, 50), "disconnect-p50-ms")
	b.ReportMetric(percentile(disconnects, 95), "disconnect-p95-ms")
}

// BenchmarkBridgePortFloor measures what the kernel alone charges to add
// one port to a bridge that has N ports (plain netlink, no nsnet code), so
// that nsnet's own cost per connect can be read off beside it.
func BenchmarkBridgePortFloor(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			host := fmt.Sprintf("floor-%d", n)
			nstest.Require(b)
			if err := netns.Create(host); err != nil {
				b.Fatal(err)
			}
			defer netns.Delete(host)
			h, err := kernel.Open(netns.Path(host))
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close()
			br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "floor0", TxQLen: -1}}
			if err := h.NL.LinkAdd(br); err != nil {
				b.Fatal(err)
			}
			for i := range n {
				v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("f%d", i), TxQLen: -1}, PeerName: fmt.Sprintf("fp%d", i)}
				if err := h.NL.LinkAdd(v); err != nil {
					b.Fatal(err)
				}
				if err := h.NL.LinkSetMasterByIndex(v, br.Index); err != nil {
					b.Fatal(err)
				}
			}
			x := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "fx", TxQLen: -1}, PeerName: "fxp"}
			if err := h.NL.LinkAdd(x); err != nil {
				b.Fatal(err)
			}
			var d []time.Duration
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				if err := h.NL.LinkSetMasterByIndex(x, br.Index); err != nil {
					b.Fatal(err)
				}
				d = append(d, time.Since(start))
				if err := h.NL.LinkSetNoMaster(x); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(percentile(d, 50), "enslave-p50-ms")
		})
	}
}

func percentile(d []time.Duration, p int) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[(len(s)-1)*p/100]) / float64(time.Millisecond)
}

// publishRuns tells BenchmarkPublish's calls apart: the framework calls a
// benchmark more than once, and namespace names must not collide.
var publishRuns int

// BenchmarkPublish publishes 10,000 ports, ten per connect (a bridge holds
// at most 1023 members), and reports the cost of a connect with ten ports
// when the first ten are published and when the last ten are, plus the
// cost of a connect without ports with none and with 10,000 published.
//
//	go test ./manager -run '^$' -bench Publish -benchtime 1x
func BenchmarkPublish(b *testing.B) {
	const perMember, total = 10, 10000
	publishRuns++
	run := publishRuns
	m := hostLab(b, fmt.Sprintf("publish-host%d", run))
	if _, err := m.CreateNetwork(NetworkSpec{Name: "pub", Subnets: []netip.Prefix{netip.MustParsePrefix("10.210.0.0/20")}}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.RemoveNetwork("pub", true) })
	plain := members(b, m, fmt.Sprintf("plain%d-", run), 1)[0]
	connectPlain := func() time.Duration {
		var d []time.Duration
		for range 21 {
			start := time.Now()
			if _, err := m.Connect(ConnectSpec{Network: "pub", Namespace: plain}); err != nil {
				b.Fatal(err)
			}
			d = append(d, time.Since(start))
			if err := m.Disconnect("pub", plain); err != nil {
				b.Fatal(err)
			}
		}
		return time.Duration(percentile(d, 50) * float64(time.Millisecond))
	}
	b.ResetTimer()
	for range b.N {
		before := connectPlain()
		names := members(b, m, fmt.Sprintf("pubm%d-%d-", run, len(b.Name())), total/perMember)
		var costs []time.Duration
		for i, n := range names {
			p := store.PortMap{HostPort: uint16(20000 + i*perMember), HostEnd: uint16(20000 + i*perMember + perMember - 1), Port: 8000, Proto: "tcp"}
			start := time.Now()
			if _, err := m.Connect(ConnectSpec{Network: "pub", Namespace: n, Ports: []store.PortMap{p}}); err != nil {
				b.Fatal(err)
			}
			costs = append(costs, time.Since(start))
		}
		after := connectPlain()
		first := costs[:50]
		last := costs[len(costs)-50:]
		b.ReportMetric(percentile(first, 50), "first-500-ports-p50-ms")
		b.ReportMetric(percentile(last, 50), "last-500-ports-p50-ms")
		b.ReportMetric(float64(before)/float64(time.Millisecond), "plain-connect-0-ports-ms")
		b.ReportMetric(float64(after)/float64(time.Millisecond), "plain-connect-10k-ports-ms")
		for _, n := range names {
			m.Disconnect("pub", n)
		}
	}
}

// BenchmarkCreateNetwork creates (and removes) one more isolated NAT
// network on a host that has N of them (issue 11, target 1): the cost of
// a change must not grow with the networks already there.
func BenchmarkCreateNetwork(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			m := hostLab(b, fmt.Sprintf("bench-nets-%d", n))
			subnet := func(i int) netip.Prefix {
				return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + i/250), byte(i % 250), 0}), 24)
			}
			for i := range n {
				if _, err := m.CreateNetwork(NetworkSpec{Name: fmt.Sprintf("n%d", i), Subnets: []netip.Prefix{subnet(i)}}); err != nil {
					b.Fatal(err)
				}
			}
			b.Cleanup(func() {
				for i := range n {
					m.RemoveNetwork(fmt.Sprintf("n%d", i), true)
				}
			})
			b.ResetTimer()
			for range b.N {
				if _, err := m.CreateNetwork(NetworkSpec{Name: "extra", Subnets: []netip.Prefix{netip.MustParsePrefix("10.99.0.0/24")}}); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := m.RemoveNetwork("extra", true); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
