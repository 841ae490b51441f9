// Package ipam decides which addresses of a subnet members may have: the
// first free one, or a requested one checked for the reason it cannot be had.
// It is pure arithmetic; the leases themselves live in the store.
package ipam

import (
	"fmt"
	"iter"
	"net/netip"
)

// MinBridgeBits returns the longest prefix a bridge network may use in the
// family of p: a network, a gateway and at least one member (IPv4 also needs
// a broadcast address).
func MinBridgeBits(p netip.Prefix) int {
	if p.Addr().Is4() {
		return 30
	}
	return 126
}

// special are the address blocks no network of hosts can use, with why.
var special = []struct {
	p   netip.Prefix
	why string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "is \"this network\" (RFC 1122), not addressable"},
	{netip.MustParsePrefix("127.0.0.0/8"), "is loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "is link-local, which the kernel does not route (and nsnet's routed gateway 169.254.1.1 is in it)"},
	{netip.MustParsePrefix("224.0.0.0/4"), "is multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "is reserved (class E) and broadcast"},
	{netip.MustParsePrefix("::/8"), "is reserved (unspecified, loopback and IPv4-mapped addresses)"},
	{netip.MustParsePrefix("fe80::/10"), "is link-local, which the kernel does not route"},
	{netip.MustParsePrefix("ff00::/8"), "is multicast"},
	{netip.MustParsePrefix("fd6e:736e:6574::/48"), "is nsnet's own (its routed networks' IPv6 resolver fd6e:736e:6574::53 is in it)"},
}

// CheckSubnet says why p cannot be a network's subnet, if it cannot: an
// IPv4-mapped IPv6 prefix, or one overlapping a block of special use.
func CheckSubnet(p netip.Prefix) error {
	if p.Addr().Is4In6() {
		return fmt.Errorf("subnet %s is IPv4-mapped IPv6; give the IPv4 subnet", p)
	}
	for _, s := range special {
		if p.Overlaps(s.p) {
			return fmt.Errorf("subnet %s %s (%s)", p, s.why, s.p)
		}
	}
	return nil
}

// Network returns the subnet's first address.
func Network(p netip.Prefix) netip.Addr { return p.Masked().Addr() }

// Last returns the subnet's last address (IPv4's broadcast).
func Last(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(a)*8; i++ {
		a[i/8] |= 0x80 >> (i % 8)
	}
	out, _ := netip.AddrFromSlice(a)
	return out
}

// FirstUsable is the first address a host may hold: the default gateway.
func FirstUsable(p netip.Prefix) netip.Addr { return Network(p).Next() }

// LastUsable is the last address a host may hold. In IPv6 the last address
// is usable; in IPv4 it is the broadcast.
func LastUsable(p netip.Prefix) netip.Addr {
	if p.Addr().Is4() {
		return Last(p).Prev()
	}
	return Last(p)
}

// CheckHost reports why a cannot be a host address in p, other than being
// leased already.
func CheckHost(p netip.Prefix, a netip.Addr) error {
	switch {
	case !p.Contains(a):
		return fmt.Errorf("%s is outside subnet %s", a, p)
	case a == Network(p):
		return fmt.Errorf("%s is the network address of %s", a, p)
	case p.Addr().Is4() && a == Last(p):
		return fmt.Errorf("%s is the broadcast address of %s", a, p)
	}
	return nil
}

// RangeFirst returns the first address of range r that a host in subnet
// p may hold, or the zero Addr if r holds none.
func RangeFirst(p, r netip.Prefix) netip.Addr {
	a := r.Masked().Addr()
	if a.Less(FirstUsable(p)) {
		a = FirstUsable(p)
	}
	if !r.Contains(a) || LastUsable(p).Less(a) {
		return netip.Addr{}
	}
	return a
}

// FirstFree returns the first usable address of p, at or above from, not in
// leased, which must yield the leased addresses of p's family in ascending
// order.
func FirstFree(p netip.Prefix, from netip.Addr, leased iter.Seq[netip.Addr]) (netip.Addr, error) {
	cand := FirstUsable(p)
	if cand.Less(from) {
		cand = from
	}
	last := LastUsable(p)
	for a := range leased {
		if a.Less(cand) {
			continue
		}
		if a != cand {
			break
		}
		cand = cand.Next()
		if last.Less(cand) {
			break
		}
	}
	if !cand.IsValid() || last.Less(cand) {
		return netip.Addr{}, fmt.Errorf("subnet %s has no free address", p)
	}
	return cand, nil
}
