package firewall

import (
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"

	"github.com/nsnet/nsnet/internal/ipam"
)

// The sets that carry the networks. Every rule of the table is shared and
// looks networks up in these, so the table has the same rules for one
// network as for a thousand, and adding or removing a network changes set
// elements only (Host.Changes): a change costs the same whatever the
// number of networks, and its netlink transaction stays small.
const (
	// setSame4/6 hold one element per subnet, SUBNET . SUBNET: a packet
	// whose source and destination are in one network (concatenated
	// ranges, so one lookup answers "the same network?").
	setSame4 = "same4"
	setSame6 = "same6"
	// setMasq4/6 hold the subnets of networks that masquerade.
	setMasq4 = "masq4"
	setMasq6 = "masq6"
	// setInternal holds the bridges of --internal networks, and
	// setInternalPairs BRIDGE . BRIDGE for each, traffic that stays on it.
	setInternal      = "internal"
	setInternalPairs = "internal_pairs"
)

// netSets are the sets networks are elements of.
type netSets struct {
	iso4, iso6, same4, same6, masq4, masq6, bridges, closed, internal, internalPairs *nftables.Set
}

func (f *Firewall) netSets() netSets {
	addr := func(name string, v6 bool) *nftables.Set {
		t := nftables.TypeIPAddr
		if v6 {
			t = nftables.TypeIP6Addr
		}
		return &nftables.Set{Table: f.table, Name: name, Interval: true, KeyType: t}
	}
	pair := func(name string, v6 bool) *nftables.Set {
		t := nftables.TypeIPAddr
		if v6 {
			t = nftables.TypeIP6Addr
		}
		return &nftables.Set{Table: f.table, Name: name, Interval: true, Concatenation: true, KeyType: nftables.MustConcatSetType(t, t)}
	}
	iso4, iso6 := f.isolationSets()
	return netSets{
		iso4: iso4, iso6: iso6,
		same4: pair(setSame4, false), same6: pair(setSame6, true),
		masq4: addr(setMasq4, false), masq6: addr(setMasq6, true),
		bridges:       f.bridgeSet(),
		closed:        ifnameSet(f.table, setClosed),
		internal:      ifnameSet(f.table, setInternal),
		internalPairs: &nftables.Set{Table: f.table, Name: setInternalPairs, Concatenation: true, KeyType: nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIFName)},
	}
}

// ifnameSet is a set of interface names. nft reads an ifname key in host
// byte order, and only the set's user data says so: without it `nft list`
// prints every element as "".
func ifnameSet(t *nftables.Table, name string) *nftables.Set {
	return &nftables.Set{Table: t, Name: name, KeyType: nftables.TypeIFName, KeyByteOrder: binaryutil.NativeEndian}
}

func (s netSets) all() []*nftables.Set {
	return []*nftables.Set{s.iso4, s.iso6, s.same4, s.same6, s.masq4, s.masq6, s.bridges, s.closed, s.internal, s.internalPairs}
}

// setElements is what one network puts in each set.
type setElements map[*nftables.Set][]nftables.SetElement

// elements lists network n's elements, by set.
func (s netSets) elements(n Network) setElements {
	out := setElements{}
	add := func(set *nftables.Set, els ...nftables.SetElement) { out[set] = append(out[set], els...) }
	pick := func(v6 bool, v4s, v6s *nftables.Set) *nftables.Set {
		if v6 {
			return v6s
		}
		return v4s
	}
	for _, p := range n.Subnets {
		v6 := p.Addr().Is6()
		if n.Isolate {
			add(pick(v6, s.iso4, s.iso6), intervalElements(p)...)
		}
		if n.Masquerade {
			add(pick(v6, s.masq4, s.masq6), intervalElements(p)...)
		}
		first, last := p.Masked().Addr(), ipam.Last(p)
		add(pick(v6, s.same4, s.same6), nftables.SetElement{
			Key:    append(first.AsSlice(), first.AsSlice()...),
			KeyEnd: append(last.AsSlice(), last.AsSlice()...),
		})
	}
	if n.Bridge != "" {
		add(s.bridges, nftables.SetElement{Key: ifname(n.Bridge)})
		if closed(n) {
			add(s.closed, nftables.SetElement{Key: ifname(n.Bridge)})
		}
		if n.Internal {
			add(s.internal, nftables.SetElement{Key: ifname(n.Bridge)})
			add(s.internalPairs, nftables.SetElement{Key: append(ifname(n.Bridge), ifname(n.Bridge)...)})
		}
	}
	return out
}

// addrOffset is where the source address starts in the network header,
// and its length.
func addrOffset(v6 bool) (uint32, uint32) {
	if v6 {
		return 8, 16
	}
	return 12, 4
}

// lookupAddr looks the packet's source (or destination) address up in s;
// invert matches when it is not there.
func lookupAddr(v6, source bool, s *nftables.Set, invert bool) []expr.Any {
	off, size := addrOffset(v6)
	if !source {
		off += size
	}
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: size},
		&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID, Invert: invert},
	}
}

// lookupPair looks SOURCE . DESTINATION up in s, as nft encodes
// `ip saddr . ip daddr @s`: the key is laid out in consecutive 32-bit
// registers, the destination right after the source (register 9 is the
// second 32-bit register; 2 is the second 16-byte one).
func lookupPair(v6 bool, s *nftables.Set, invert bool) []expr.Any {
	off, size := addrOffset(v6)
	second := uint32(9)
	if v6 {
		second = 2
	}
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: size},
		&expr.Payload{DestRegister: second, Base: expr.PayloadBaseNetworkHeader, Offset: off + size, Len: size},
		&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID, Invert: invert},
	}
}

// lookupIfname looks the input (or output) interface's name up in s.
func lookupIfname(key expr.MetaKey, s *nftables.Set, invert bool) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID, Invert: invert},
	}
}

// lookupIfnamePair looks IIFNAME . OIFNAME up in s.
func lookupIfnamePair(s *nftables.Set, invert bool) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 2},
		&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID, Invert: invert},
	}
}
