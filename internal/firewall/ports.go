package firewall

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/nsnet/nsnet/internal/ipam"
	"golang.org/x/sys/unix"
)

// Port is one published port: traffic to HostIP (any local address when
// zero) on HostPort goes to Addr:Port.
type Port struct {
	HostIP   netip.Addr
	Proto    uint8 // unix.IPPROTO_TCP, _UDP or _SCTP
	HostPort uint16
	Addr     netip.Addr
	Port     uint16
}

// The port maps: a key of (host address,) protocol and port gives the
// member's address and port. One static rule per map does the DNAT, so
// publishing a port is one map element, at the same cost however many
// exist.
const (
	mapHost4 = "ports4"     // ipv4_addr . inet_proto . inet_service
	mapAny4  = "ports4_any" // inet_proto . inet_service, for any local address
	mapHost6 = "ports6"
	mapAny6  = "ports6_any"
	// setIsolated4/6 hold the subnets of networks isolated from each other.
	setIsolated4 = "isolated4"
	setIsolated6 = "isolated6"
	// The bridges of NAT networks, closed to new connections from
	// anywhere else but through published ports. Interface names, not
	// subnets: an interval set costs every transaction that changes it a
	// walk of all its elements (Linux 6.18 rebuilds its lookup array), a
	// set of names does not.
	setClosed  = "closed"
	setBridges = "bridges"
)

func (f *Firewall) portMaps() (host4, any4, host6, any6 *nftables.Set) {
	mk := func(name string, key, val []nftables.SetDatatype) *nftables.Set {
		return &nftables.Set{
			Table: f.table, Name: name, IsMap: true, Concatenation: true,
			KeyType: nftables.MustConcatSetType(key...), DataType: nftables.MustConcatSetType(val...),
		}
	}
	p, s := nftables.TypeInetProto, nftables.TypeInetService
	host4 = mk(mapHost4, []nftables.SetDatatype{nftables.TypeIPAddr, p, s}, []nftables.SetDatatype{nftables.TypeIPAddr, s})
	any4 = mk(mapAny4, []nftables.SetDatatype{p, s}, []nftables.SetDatatype{nftables.TypeIPAddr, s})
	host6 = mk(mapHost6, []nftables.SetDatatype{nftables.TypeIP6Addr, p, s}, []nftables.SetDatatype{nftables.TypeIP6Addr, s})
	any6 = mk(mapAny6, []nftables.SetDatatype{p, s}, []nftables.SetDatatype{nftables.TypeIP6Addr, s})
	return
}

// bridgeSet holds the names of nsnet's bridges in the host: with the
// routed host ends (nsv*), the interfaces nsnet's members send from.
func (f *Firewall) bridgeSet() *nftables.Set {
	return ifnameSet(f.table, setBridges)
}

// closed reports whether n's subnets are closed to new connections from
// outside nsnet's networks: a NAT network on a bridge, as Docker 28's are.
// --no-nat and routed networks keep direct reachability by design.
func closed(n Network) bool { return n.Masquerade && n.Bridge != "" && !n.Internal }

func (f *Firewall) isolationSets() (v4, v6 *nftables.Set) {
	v4 = &nftables.Set{Table: f.table, Name: setIsolated4, Interval: true, KeyType: nftables.TypeIPAddr}
	v6 = &nftables.Set{Table: f.table, Name: setIsolated6, Interval: true, KeyType: nftables.TypeIP6Addr}
	return
}

// dnatRules are the static rules of the prerouting and output chains, as
// `nft --debug=netlink` encodes
// `dnat ip to ip daddr . meta l4proto . th dport map @ports4` and friends:
// the key is concatenated into 4-byte registers, the lookup writes address
// and port into registers the NAT expression reads.
func dnatRules(host4, any4, host6, any6 *nftables.Set) [][]expr.Any {
	nfproto := func(p byte) []expr.Any {
		return []expr.Any{&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}}}
	}
	local := []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutilNative32(unix.RTN_LOCAL)},
	}
	// ::1 cannot be DNATed (a loopback source may not leave lo); the
	// agent's proxy serves it, so the rules must leave it alone.
	notLoopback6 := matchAddr(netip.PrefixFrom(netip.IPv6Loopback(), 128), false, expr.CmpOpNeq, false)
	l4 := func(reg uint32) expr.Any { return &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg} }
	dport := func(reg uint32) expr.Any {
		return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
	}
	lookup := func(s *nftables.Set) expr.Any {
		return &expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: s.Name, SetID: s.ID}
	}
	nat := func(fam uint32, protoReg uint32) expr.Any {
		return &expr.NAT{Type: expr.NATTypeDestNAT, Family: fam, RegAddrMin: 1, RegProtoMin: protoReg, Specified: true}
	}
	return [][]expr.Any{
		concat(nfproto(unix.NFPROTO_IPV4), []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			l4(9), dport(10), lookup(host4), nat(unix.NFPROTO_IPV4, 9)}),
		concat(local, nfproto(unix.NFPROTO_IPV4), []expr.Any{l4(1), dport(9), lookup(any4), nat(unix.NFPROTO_IPV4, 9)}),
		concat(nfproto(unix.NFPROTO_IPV6), notLoopback6, []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16},
			l4(2), dport(13), lookup(host6), nat(unix.NFPROTO_IPV6, 2)}),
		concat(local, nfproto(unix.NFPROTO_IPV6), notLoopback6, []expr.Any{l4(1), dport(9), lookup(any6), nat(unix.NFPROTO_IPV6, 2)}),
	}
}

func binaryutilNative32(v uint32) []byte {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, v)
	return b
}

// pad4 lays a value out as nftables concatenations do: each field padded
// to a multiple of four bytes.
func pad4(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
		for len(out)%4 != 0 {
			out = append(out, 0)
		}
	}
	return out
}

func be16(v uint16) []byte { return []byte{byte(v >> 8), byte(v)} }

// element returns the map and element that publish p.
func (f *Firewall) element(p Port) (*nftables.Set, nftables.SetElement) {
	host4, any4, host6, any6 := f.portMaps()
	val := pad4(p.Addr.AsSlice(), be16(p.Port))
	switch {
	case p.HostIP.IsValid() && p.Addr.Is4():
		return host4, nftables.SetElement{Key: pad4(p.HostIP.AsSlice(), []byte{p.Proto}, be16(p.HostPort)), Val: val}
	case p.HostIP.IsValid():
		return host6, nftables.SetElement{Key: pad4(p.HostIP.AsSlice(), []byte{p.Proto}, be16(p.HostPort)), Val: val}
	case p.Addr.Is4():
		return any4, nftables.SetElement{Key: pad4([]byte{p.Proto}, be16(p.HostPort)), Val: val}
	}
	return any6, nftables.SetElement{Key: pad4([]byte{p.Proto}, be16(p.HostPort)), Val: val}
}

// elementChunk bounds the elements per netlink message: one message per
// element overflows the socket with acknowledgements (ENOBUFS at ~1000),
// and one for 10,000 would be too large a message. flushEvery bounds a
// transaction, which the kernel receives in one sendmsg.
const (
	elementChunk = 512
	flushEvery   = 4 * elementChunk
)

// Publish adds and removes published ports, in one transaction unless
// there are thousands. Its cost does not depend on how many ports are
// published already.
func (f *Firewall) Publish(add, remove []Port) error {
	queued := 0
	for _, batch := range []struct {
		ports []Port
		queue func(*nftables.Set, []nftables.SetElement) error
	}{{remove, f.conn.SetDeleteElements}, {add, f.conn.SetAddElements}} {
		bySet := map[string][]nftables.SetElement{}
		sets := map[string]*nftables.Set{}
		for _, p := range batch.ports {
			s, e := f.element(p)
			bySet[s.Name] = append(bySet[s.Name], e)
			sets[s.Name] = s
		}
		for name, els := range bySet {
			for len(els) > 0 {
				n := min(len(els), elementChunk)
				if err := batch.queue(sets[name], els[:n]); err != nil {
					return err
				}
				els = els[n:]
				if queued += n; queued >= flushEvery {
					if err := f.conn.Flush(); err != nil {
						return fmt.Errorf("nftables port maps: %w", err)
					}
					queued = 0
				}
			}
		}
	}
	if err := f.conn.Flush(); err != nil {
		return fmt.Errorf("nftables port maps: %w", err)
	}
	return nil
}

// intervalElements spells a prefix as an interval set does: its first
// address, and the first address past it marked as the interval's end.
func intervalElements(p netip.Prefix) []nftables.SetElement {
	els := []nftables.SetElement{{Key: p.Masked().Addr().AsSlice()}}
	if next := ipam.Last(p).Next(); next.IsValid() {
		els = append(els, nftables.SetElement{Key: next.AsSlice(), IntervalEnd: true})
	}
	return els
}
