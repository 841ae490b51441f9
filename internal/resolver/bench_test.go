package resolver

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/nsnet/nsnet/internal/nstest"
)

// BenchmarkResolve measures a member lookup over UDP on loopback, from query
// sent to answer read, in a zone of 20 networks of 50 members. It reports
// the median and 99th percentile of single queries besides the mean.
func BenchmarkResolve(b *testing.B) {
	nstest.Require(b) // binds ports: only inside the private namespaces
	zone := benchZone()
	// The client is 127.0.0.1: put loopback in the network being asked about.
	zone.Networks[7].Subnets = append(zone.Networks[7].Subnets, netip.MustParsePrefix("127.0.0.0/8"))

	s, err := New(Config{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.SetZone(zone); err != nil {
		b.Fatal(err)
	}
	if err := s.Start(); err != nil {
		b.Fatal(err)
	}
	defer s.Close()

	c := &dns.Client{Timeout: 2 * time.Second}
	conn, err := c.Dial(s.ListenAddrs()[0].String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	m := new(dns.Msg)
	m.SetQuestion("m7-25.", dns.TypeA)

	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		r, _, err := c.ExchangeWithConn(m, conn)
		lat = append(lat, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
		if len(r.Answer) != 1 {
			b.Fatalf("answer %v", r.Answer)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "median-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}

// benchZone is 20 networks of 50 members, each with an alias.
func benchZone() Zone {
	var zone Zone
	for n := range 20 {
		net := Network{Name: fmt.Sprintf("net%d", n), Subnets: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(n), 0, 0}), 16)}}
		for m := range 50 {
			net.Members = append(net.Members, Member{
				Name:    fmt.Sprintf("m%d-%d", n, m),
				Aliases: []string{fmt.Sprintf("alias%d-%d", n, m)},
				Addrs:   []netip.Addr{netip.AddrFrom4([4]byte{10, byte(n), 0, byte(m + 2)})},
			})
		}
		zone.Networks = append(zone.Networks, net)
	}
	return zone
}

// BenchmarkLookup is the in-process part of answering a member: finding the
// client's networks and the name's addresses, without sockets.
func BenchmarkLookup(b *testing.B) {
	t, _ := compile(benchZone())
	client := netip.MustParseAddr("10.7.0.9")
	b.ReportAllocs()
	for b.Loop() {
		if _, _, found := t.lookup("m7-25.", t.visible(client)); !found {
			b.Fatal("not found")
		}
	}
}
