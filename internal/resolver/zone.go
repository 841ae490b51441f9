package resolver

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Member is one namespace's entry in one network: the names it answers to and
// its addresses in that network.
//
// Name and Aliases are served only if they are DNS host names: labels of
// ASCII letters, digits, '-' and '_', 1 to 63 characters each, separated by
// dots (an alias such as "db.internal" is one name, asked for in full).
// Matching ignores case.
type Member struct {
	// Name is the namespace name. It also identifies the member across
	// networks: a client that owns an address of Name in one network sees
	// every network Name belongs to.
	Name    string
	Aliases []string
	// Addrs are the member's addresses in this network, IPv4 and IPv6 mixed.
	Addrs []netip.Addr
}

// Network is one nsnet network as the resolver sees it.
type Network struct {
	Name string
	// Subnets scope the network: a client whose source address falls in one
	// of them sees the network's members.
	Subnets []netip.Prefix
	Members []Member
}

// Zone is everything the resolver answers for. The caller builds a new Zone
// for each change and hands it to Server.SetZone; the resolver never modifies
// it.
type Zone struct {
	Networks []Network
}

// netTable is one network compiled for lookups, immutable once built. A
// change to a network compiles that network alone: compiling a host's
// whole zone at every change cost a connect 18 ms on a host of ten
// thousand members (issue 11).
type netTable struct {
	name    string
	subnets []netip.Prefix
	// names maps a lowercased FQDN, a member's name or alias, to its
	// addresses.
	names map[string]addrSet
	// ptrs maps a member address to the members (FQDNs) that own it.
	ptrs map[netip.Addr][]string
	// members are the members' FQDNs, sorted, for the host's index of
	// members in more than one network.
	members []string
}

type addrSet struct{ v4, v6 []netip.Addr }

// table is a host's networks ready for lookups. It is immutable once
// built, so that queries read it without locks while SetCompiled swaps in
// a successor; tables made one after another share what did not change.
type table struct {
	nets []*netTable
	// bySubnet indexes the networks by subnet, and lengths are the prefix
	// lengths in use: scan looks an address up once per length instead of
	// testing every subnet (a thousand networks made compile O(n²)).
	bySubnet map[netip.Prefix][]int
	lengths  []int
	// multi maps each member in more than one network to all of them: a
	// client that owns an address of such a member sees every network
	// the member is in. Members of one network, the usual case, are not
	// in it, so that it stays small however many members a host has.
	multi map[string][]int
}

// compileNet builds the lookup table of one network. Names that cannot be
// DNS names are left out (and returned), so that one odd namespace name
// does not take the resolver down for every other member.
func compileNet(n Network) (*netTable, []string) {
	t := &netTable{
		name:    n.Name,
		names:   make(map[string]addrSet, len(n.Members)),
		ptrs:    make(map[netip.Addr][]string, len(n.Members)),
		members: make([]string, 0, len(n.Members)),
	}
	for _, p := range n.Subnets {
		if p.IsValid() && !slices.Contains(t.subnets, p.Masked()) {
			t.subnets = append(t.subnets, p.Masked())
		}
	}
	var bad []string
	for _, m := range n.Members {
		if !validName(m.Name) {
			bad = append(bad, fmt.Sprintf("%q (network %s)", m.Name, n.Name))
			continue
		}
		v4, v6 := splitFamilies(m.Addrs)
		key := fqdnKey(m.Name)
		t.addName(key, v4, v6)
		for _, a := range m.Aliases {
			if !validName(a) {
				bad = append(bad, fmt.Sprintf("alias %q of %s (network %s)", a, m.Name, n.Name))
				continue
			}
			t.addName(fqdnKey(a), v4, v6)
		}
		for _, fam := range [2][]netip.Addr{v4, v6} {
			for _, a := range fam {
				if !slices.Contains(t.ptrs[a], key) {
					t.ptrs[a] = append(t.ptrs[a], key)
				}
			}
		}
		t.members = append(t.members, key)
	}
	// Sorted (lowercasing and the trailing dot can reorder the store's
	// order by namespace), so that a Host finds who joined or left by
	// walking two lists.
	slices.Sort(t.members)
	t.members = slices.Compact(t.members)
	return t, bad
}

func (t *netTable) addName(key string, v4, v6 []netip.Addr) {
	if e, ok := t.names[key]; ok {
		// Two members of one network share this name (an alias
		// collision): answer with both, as a round-robin name would.
		// Appending to clipped slices copies, so the other member's own
		// names keep their addresses.
		t.names[key] = addrSet{appendNew(e.v4, v4), appendNew(e.v6, v6)}
		return
	}
	t.names[key] = addrSet{slices.Clip(v4), slices.Clip(v6)}
}

// compile builds the lookup table for a whole zone, its networks in the
// zone's order, and returns the names it left out.
func compile(z Zone) (*table, []string) {
	nets := make([]*netTable, len(z.Networks))
	var bad []string
	in := map[string][]int{}
	for i, n := range z.Networks {
		var b []string
		nets[i], b = compileNet(n)
		bad = append(bad, b...)
		for _, m := range nets[i].members {
			in[m] = append(in[m], i)
		}
	}
	multi := map[string][]int{}
	for m, ni := range in {
		if len(ni) > 1 {
			multi[m] = ni
		}
	}
	t := index(nets)
	t.multi = multi
	return t, bad
}

// index builds the subnet index of nets.
func index(nets []*netTable) *table {
	t := &table{nets: nets, bySubnet: make(map[netip.Prefix][]int, len(nets))}
	for ni, n := range nets {
		for _, p := range n.subnets {
			if !slices.Contains(t.bySubnet[p], ni) {
				t.bySubnet[p] = append(t.bySubnet[p], ni)
			}
			// IPv6 lengths are kept apart from IPv4's: 128+bits.
			if l := lengthKey(p); !slices.Contains(t.lengths, l) {
				t.lengths = append(t.lengths, l)
			}
		}
	}
	return t
}

// scan returns the networks whose subnets contain a, in ascending order.
func (t *table) scan(a netip.Addr) []int {
	a = a.Unmap()
	var nets []int
	for _, l := range t.lengths {
		if (l >= 256) != a.Is6() {
			continue
		}
		if p, err := a.Prefix(l % 256); err == nil {
			nets = append(nets, t.bySubnet[p]...)
		}
	}
	slices.Sort(nets)
	return slices.Compact(nets)
}

// lengthKey tells prefix lengths of the two families apart.
func lengthKey(p netip.Prefix) int {
	if p.Addr().Is6() {
		return 256 + p.Bits()
	}
	return p.Bits()
}

// visible returns the networks a client with source address a may see, in
// ascending order: those whose subnets contain a and, if a belongs to a
// member there, every network that member is in (a namespace in two
// networks sends from one address but belongs to both).
func (t *table) visible(a netip.Addr) []int {
	nets := t.scan(a)
	if len(t.multi) == 0 || len(nets) == 0 {
		return nets
	}
	a = a.Unmap().WithZone("")
	n := len(nets)
	for _, ni := range nets[:n] {
		for _, owner := range t.nets[ni].ptrs[a] {
			nets = append(nets, t.multi[owner]...)
		}
	}
	if len(nets) > n {
		slices.Sort(nets)
		nets = slices.Compact(nets)
	}
	return nets
}

// lookup returns the addresses of name (a lowercased FQDN) in the networks
// nets, and whether name exists there at all (a member with no address of a
// family still exists: the answer is NODATA, not NXDOMAIN).
func (t *table) lookup(name string, nets []int) (v4, v6 []netip.Addr, found bool) {
	for _, ni := range nets {
		e, ok := t.nets[ni].names[name]
		if !ok {
			continue
		}
		if !found {
			// The usual case, one network: share the table's slices
			// (callers only read them) instead of copying.
			v4, v6, found = e.v4, e.v6, true
			continue
		}
		v4 = appendNew(slices.Clip(v4), e.v4)
		v6 = appendNew(slices.Clip(v6), e.v6)
	}
	return v4, v6, found
}

// ptr returns the member names (lowercased FQDNs) that own a in nets.
func (t *table) ptr(a netip.Addr, nets []int) []string {
	var out []string
	for _, ni := range nets {
		for _, target := range t.nets[ni].ptrs[a] {
			if !slices.Contains(out, target) {
				out = append(out, target)
			}
		}
	}
	return out
}

// splitFamilies normalises addresses (IPv4-mapped IPv6 to IPv4, zones
// dropped because A and AAAA records cannot carry them) and splits them by
// family, without duplicates.
func splitFamilies(addrs []netip.Addr) (v4, v6 []netip.Addr) {
	for _, a := range addrs {
		if !a.IsValid() {
			continue
		}
		a = a.Unmap().WithZone("")
		if a.Is4() {
			v4 = appendNew(v4, []netip.Addr{a})
		} else {
			v6 = appendNew(v6, []netip.Addr{a})
		}
	}
	return v4, v6
}

// appendNew appends the addresses of add that dst lacks.
func appendNew(dst, add []netip.Addr) []netip.Addr {
	for _, a := range add {
		if !slices.Contains(dst, a) {
			dst = append(dst, a)
		}
	}
	return dst
}

// fqdnKey is the map key for a name: lowercased, with one trailing dot, the
// form a query's name takes once lowercased.
func fqdnKey(name string) string {
	name = strings.ToLower(name)
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return name
}

// validName reports whether name (with or without a trailing dot) can be
// served: dot-separated labels of letters, digits, '-' and '_', each 1 to 63
// characters, 253 in all. Namespace names allow more than DNS does; anything
// else would need escaping on the wire and could never be asked for by a
// normal resolver.
func validName(name string) bool {
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 253 {
		return false
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
			default:
				return false
			}
		}
	}
	return true
}

// parseReverse turns a reverse-lookup name (lowercased FQDN under
// in-addr.arpa. or ip6.arpa.) into the address it names. Partial names (a
// whole reverse zone rather than one address) are not addresses.
func parseReverse(name string) (netip.Addr, bool) {
	if rest, ok := strings.CutSuffix(name, ".in-addr.arpa."); ok {
		var b [4]byte
		i := 3
		for label := range strings.SplitSeq(rest, ".") {
			if i < 0 || label == "" || len(label) > 3 || (len(label) > 1 && label[0] == '0') {
				return netip.Addr{}, false
			}
			v := 0
			for j := 0; j < len(label); j++ {
				c := label[j]
				if c < '0' || c > '9' {
					return netip.Addr{}, false
				}
				v = v*10 + int(c-'0')
			}
			if v > 255 {
				return netip.Addr{}, false
			}
			b[i] = byte(v)
			i--
		}
		if i != -1 {
			return netip.Addr{}, false
		}
		return netip.AddrFrom4(b), true
	}
	if rest, ok := strings.CutSuffix(name, ".ip6.arpa."); ok {
		// 32 nibbles, least significant first, separated by dots.
		if len(rest) != 63 {
			return netip.Addr{}, false
		}
		var b [16]byte
		for k := 0; k < 32; k++ {
			c := rest[2*k]
			if k < 31 && rest[2*k+1] != '.' {
				return netip.Addr{}, false
			}
			var v byte
			switch {
			case '0' <= c && c <= '9':
				v = c - '0'
			case 'a' <= c && c <= 'f':
				v = c - 'a' + 10
			default:
				return netip.Addr{}, false
			}
			pos := 31 - k // nibble index from the most significant end
			if pos%2 == 0 {
				b[pos/2] |= v << 4
			} else {
				b[pos/2] |= v
			}
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}
