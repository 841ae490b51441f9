// Package firewall keeps nsnet's nftables state in a host namespace: the
// table "inet nsnet", rebuilt by Sync from the host's whole state in one
// netlink transaction, and while routed networks have DNS a one-rule
// "arp nsnet" table. Rules carry a comment naming the network they serve,
// or nsnet:shared. The only rules it ever puts in another table are
// narrowly scoped accepts in forward chains whose policy is drop (see
// OpenForward), tagged the same way.
package firewall

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// TableName is nsnet's table, in the inet family.
const TableName = "nsnet"

const (
	chainPrerouting  = "prerouting"
	chainOutput      = "output"
	chainForward     = "forward"
	chainInput       = "input"
	chainPostrouting = "postrouting"
	tagPrefix        = "nsnet:network="
	tagStatic        = "nsnet:shared"
	// chainOwner holds one rule whose comment names the table's state
	// directory; nothing jumps to it.
	chainOwner  = "owner"
	ownerPrefix = "nsnet:state="
	// rulesPrefix marks the owner chain's rule whose comment is the
	// fingerprint of the rules the last Sync wrote. nsnet before the
	// needs record read "nsnet:rules=" and trusted any table that had
	// one to hold its own sets: it finds no fingerprint under this name,
	// so an older binary run on this table rebuilds it whole rather than
	// fill sets its rules need and this layout does not have.
	rulesPrefix = "nsnet:fingerprint="
	// needsPrefix marks the owner chain's rule whose comment records what
	// the rules were made for (needs).
	needsPrefix = "nsnet:needs="
)

// Network is what the firewall must do for one network.
type Network struct {
	Name string
	// Bridge is the network's interface in the host namespace; empty for
	// a routed network, whose members each have their own.
	Bridge  string
	Subnets []netip.Prefix
	// Masquerade rewrites the source of traffic from the subnets that
	// leaves through any interface other than Bridge.
	Masquerade bool
	// Internal drops forwarded traffic into or out of Bridge.
	Internal bool
	// Isolate keeps the network's members from other isolated networks'
	// members and gateways, except through published ports.
	Isolate bool
}

// Host is everything nsnet's table must do in one host namespace. The
// table is a function of it alone, so Sync can rebuild it at any time.
type Host struct {
	// Networks are the host's bridge and routed networks.
	Networks []Network
	// Ports says some port is published in this host.
	Ports bool
	// Published, when not nil, is every port published in this host:
	// Sync then refills the port maps with exactly these (after someone
	// deleted the table, say). When nil the maps keep their elements.
	Published []Port
	// Owner names the state directory whose networks these are; the
	// table records it, and Sync refuses a host another one owns.
	Owner string
	// LocalDNS, when valid, is the link-local gateway the host holds on
	// its lo for routed members (their ARP, and their DNS), which only
	// routed members may reach.
	LocalDNS netip.Addr
	// LocalDNS6, when valid, is the routed networks' IPv6 resolver
	// address on the host's lo, kept from all but routed members too.
	LocalDNS6 netip.Addr
	// Changes, when not nil, says which networks were added and removed
	// since the last Sync (the removed ones as they were): Sync then
	// changes only their set elements, at a cost that does not grow with
	// the number of networks. Nil rebuilds every set from Networks.
	Changes *Changes
}

// Changes are the networks a Sync adds to and removes from the sets.
type Changes struct {
	Added, Removed []Network
}

// HostIfPrefix starts the name of every host end of a member's veth.
const HostIfPrefix = "nsv"

// Firewall is a connection to nftables in one network namespace.
type Firewall struct {
	conn  *nftables.Conn
	table *nftables.Table
}

// New connects to nftables in the namespace open as nsFd; a negative nsFd
// means the namespace of the calling process.
func New(nsFd int) (*Firewall, error) {
	opts := []nftables.ConnOption{nftables.WithSockOptions(BigBuffers)}
	if nsFd >= 0 {
		opts = append(opts, nftables.WithNetNSFd(nsFd))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return &Firewall{conn: c, table: &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}}, nil
}

// elementsPerMessage keeps a message's element list well inside a netlink
// attribute's 64 KiB (an element of a concatenated range is about 80
// bytes).
const elementsPerMessage = 256

// receiveBuffer is the netlink socket's receive buffer. The kernel
// answers every message of a transaction before nsnet reads any answer,
// and counts each answer at the size of a whole buffer page: at the
// default (about 200 KiB) a few hundred messages overflow it, and the
// transaction fails with "no buffer space available" though the kernel
// applied it. 32 MiB holds the answers to tens of thousands.
const receiveBuffer = 32 << 20

// BigBuffers sets the socket's buffers past the system's rmem_max and
// wmem_max, which root may (SO_RCVBUFFORCE, SO_SNDBUFFORCE), or else as
// far as those allow. A transaction is sent in one sendmsg, which fails
// with "message too long" past the send buffer (a full rebuild of a
// thousand networks is about a megabyte).
func BigBuffers(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var rerr, werr error
	if err := raw.Control(func(fd uintptr) {
		rerr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, receiveBuffer)
		werr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, receiveBuffer)
	}); err != nil {
		return err
	}
	if rerr != nil {
		if err := c.SetReadBuffer(receiveBuffer); err != nil {
			return err
		}
	}
	if werr != nil {
		return c.SetWriteBuffer(receiveBuffer)
	}
	return nil
}

func (f *Firewall) chain(name string, typ nftables.ChainType, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
	accept := nftables.ChainPolicyAccept
	return &nftables.Chain{Name: name, Table: f.table, Type: typ, Hooknum: hook, Priority: prio, Policy: &accept}
}

// chains are every chain the table may have, in the order Sync builds
// them.
func (f *Firewall) chains() []*nftables.Chain {
	return []*nftables.Chain{
		f.chain(chainPrerouting, nftables.ChainTypeNAT, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest),
		f.chain(chainOutput, nftables.ChainTypeNAT, nftables.ChainHookOutput, nftables.ChainPriorityNATDest),
		f.chain(chainForward, nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriorityFilter),
		f.chain(chainInput, nftables.ChainTypeFilter, nftables.ChainHookInput, nftables.ChainPriorityFilter),
		f.chain(chainPostrouting, nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource),
	}
}

// rule is one rule of a chain, with the comment it carries.
type rule struct {
	tag   []byte
	exprs []expr.Any
}

// needs is what the table's shared rules depend on: rules is a function
// of it alone. The owner chain records it beside the rules' fingerprint,
// so that a network whose needs the table already meets is added by its
// set elements alone, without the host's other networks (Add).
type needs struct {
	// isolated counts the isolated networks, up to 2: with one there is
	// no other to keep out.
	isolated                 int
	has4, has6, iso4, iso6   bool
	masq4, masq6             bool
	closed                   bool
	internal, tracked, ports bool
	localDNS, localDNS6      netip.Addr
}

// needsOf works out what h's networks and ports need of the rules.
func needsOf(h Host) needs {
	r := needs{ports: h.Ports, tracked: h.Ports, localDNS: h.LocalDNS, localDNS6: h.LocalDNS6}
	for _, n := range h.Networks {
		if n.Isolate {
			r.isolated = min(r.isolated+1, 2)
		}
		r.tracked = r.tracked || n.Masquerade
		for _, p := range n.Subnets {
			v6 := p.Addr().Is6()
			r.has4, r.has6 = r.has4 || !v6, r.has6 || v6
			if n.Isolate {
				r.iso4, r.iso6 = r.iso4 || !v6, r.iso6 || v6
			}
			if n.Masquerade {
				r.masq4, r.masq6 = r.masq4 || !v6, r.masq6 || v6
			}
		}
		r.closed = r.closed || closed(n) && len(n.Subnets) > 0
		r.internal = r.internal || n.Internal && n.Bridge != ""
	}
	return r
}

// covers says whether rules made for r serve o as well: o needs nothing
// r lacks. Isolation counts, since the networks o adds come on top of
// those r was made for.
func (r needs) covers(o needs) bool {
	u := r
	u.isolated = min(r.isolated+o.isolated, 2)
	u.has4, u.has6, u.iso4, u.iso6 = u.has4 || o.has4, u.has6 || o.has6, u.iso4 || o.iso4, u.iso6 || o.iso6
	u.masq4, u.masq6, u.closed = u.masq4 || o.masq4, u.masq6 || o.masq6, u.closed || o.closed
	u.internal, u.tracked, u.ports = u.internal || o.internal, u.tracked || o.tracked, u.ports || o.ports
	if o.localDNS.IsValid() && o.localDNS != r.localDNS || o.localDNS6.IsValid() && o.localDNS6 != r.localDNS6 {
		return false
	}
	return u == r
}

// needNames name needs' flags in the owner chain's comment, in order.
var needNames = []string{"v4", "v6", "iso4", "iso6", "masq4", "masq6", "closed", "internal", "ct", "ports"}

func (r *needs) flags() []*bool {
	return []*bool{&r.has4, &r.has6, &r.iso4, &r.iso6, &r.masq4, &r.masq6, &r.closed, &r.internal, &r.tracked, &r.ports}
}

// layout numbers the sets' layout (netSets). A table whose needs record
// names another was made by another nsnet, and its sets may not hold
// every network: Sync rebuilds it whole, and Add leaves it to Sync.
const layout = "layout=3"

// String encodes r for the owner chain's comment, to be read by people
// as well as by parseNeeds: "layout=3 iso=2 v4 masq4 ct dns=169.254.1.1".
func (r needs) String() string {
	words := []string{layout, "iso=" + strconv.Itoa(r.isolated)}
	for i, on := range r.flags() {
		if *on {
			words = append(words, needNames[i])
		}
	}
	if r.localDNS.IsValid() {
		words = append(words, "dns="+r.localDNS.String())
	}
	if r.localDNS6.IsValid() {
		words = append(words, "dns6="+r.localDNS6.String())
	}
	return strings.Join(words, " ")
}

// parseNeeds reads what String wrote.
func parseNeeds(s string) (needs, bool) {
	var r needs
	words := strings.Fields(s)
	if len(words) == 0 || words[0] != layout {
		return needs{}, false
	}
	words = words[1:]
	if len(words) == 0 || len(words[0]) != 5 || !strings.HasPrefix(words[0], "iso=") || words[0][4] < '0' || words[0][4] > '2' {
		return needs{}, false
	}
	r.isolated = int(words[0][4] - '0')
	flags := r.flags()
	for _, w := range words[1:] {
		if i := slices.Index(needNames, w); i >= 0 {
			*flags[i] = true
			continue
		}
		key, val, _ := strings.Cut(w, "=")
		a, err := netip.ParseAddr(val)
		switch {
		case err != nil:
			return needs{}, false
		case key == "dns":
			r.localDNS = a
		case key == "dns6":
			r.localDNS6 = a
		default:
			return needs{}, false
		}
	}
	return r, true
}

// rules computes the table's rules for what the networks need, by chain
// name.
//
// Every base chain costs each packet that passes its hook, and any ct
// expression or NAT chain turns on connection tracking for the whole
// namespace, which costs every forwarded packet more (about 1.5 µs per
// round trip on the project's VM). So a chain exists only when it has a
// rule, and rules look at conntrack only when something needs it: a
// routed network with no published ports, NAT or second isolated network
// leaves the forwarding path untouched.
func (f *Firewall) rules(need needs) map[string][]rule {
	out := map[string][]rule{}
	add := func(chain string, tag []byte, parts ...[]expr.Any) {
		out[chain] = append(out[chain], rule{tag: tag, exprs: concat(parts...)})
	}
	static := userdata.AppendString(nil, userdata.TypeComment, tagStatic)
	drop := []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}
	masq := []expr.Any{&expr.Masq{}}

	// What the networks need, by family: the rules are shared and look
	// the networks up in the sets (netSets), one rule per need.
	isolated, tracked, internal := need.isolated, need.tracked, need.internal
	has4, has6, anyIso4, anyIso6 := need.has4, need.has6, need.iso4, need.iso6
	masq4, masq6 := need.masq4, need.masq6
	ns := f.netSets()
	// Only published ports are DNATed; without them the exceptions for
	// DNATed connections would match nothing, and cost conntrack.
	notDNATed := func() []expr.Any {
		if need.ports {
			return dnatted(false)
		}
		return nil
	}

	for _, a := range []netip.Addr{need.localDNS, need.localDNS6} {
		if !a.IsValid() {
			continue
		}
		// 169.254.1.1 (and its IPv6 peer) is on the host's lo for routed
		// members' DNS; from any other interface it is nobody's business.
		add(chainInput, static, matchAddr(netip.PrefixFrom(a, a.BitLen()), false, expr.CmpOpEq, true),
			[]expr.Any{
				&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname("lo")},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte(HostIfPrefix)},
			}, drop)
	}
	if need.ports {
		host4, any4, host6, any6 := f.portMaps()
		for _, r := range dnatRules(host4, any4, host6, any6) {
			add(chainPrerouting, static, r)
			add(chainOutput, static, r)
		}
		// The host reaching a published port on 127.0.0.1 must not leave
		// with a loopback source.
		add(chainPostrouting, static, dnatted(true), matchAddr(netip.MustParsePrefix("127.0.0.0/8"), true, expr.CmpOpEq, true), masq)
	}
	// NAT networks are reached from outside only through their published
	// ports, or by replies (accepted first, as established): a host that
	// routes to their subnets gets no further, as with Docker 28's bridge.
	// What counts is the interface a packet comes in on, not its source
	// address, which an outside host may forge: nsnet's bridges and
	// routed host ends may (isolation decides between networks), and the
	// host itself does not pass here. A packet bound for a NAT network
	// leaves through its bridge: one rule for both families, whatever the
	// number of networks.
	if need.closed {
		add(chainForward, static, notDNATed(), lookupIfname(expr.MetaKeyOIFNAME, ns.closed, false), notFromNsnet(ns.bridges), drop)
	}
	if has4 {
		// route_localnet opens 127.0.0.0/8 to members; close it to what
		// comes in on nsnet's bridges and routed host ends. (A published
		// port's reply to the host's 127.0.0.1 is DNATed, and let by.)
		loopback := matchAddr(netip.MustParsePrefix("127.0.0.0/8"), false, expr.CmpOpEq, true)
		add(chainInput, static, notDNATed(), loopback, lookupIfname(expr.MetaKeyIIFNAME, ns.bridges, false), drop)
		add(chainInput, static, notDNATed(), loopback, []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte(HostIfPrefix)},
		}, drop)
	}
	for _, fam := range []struct {
		v6, has, iso, masq     bool
		iso4or6, same, masqSet *nftables.Set
	}{
		{false, has4, anyIso4, masq4, ns.iso4, ns.same4, ns.masq4},
		{true, has6, anyIso6, masq6, ns.iso6, ns.same6, ns.masq6},
	} {
		if !fam.has {
			continue
		}
		proto := matchProto(map[bool]byte{false: unix.NFPROTO_IPV4, true: unix.NFPROTO_IPV6}[fam.v6])
		// Isolated networks' members reach neither each other nor each
		// other's gateways, but for published ports. With one isolated
		// network there is no other to keep out.
		if fam.iso && isolated > 1 {
			r := concat(notDNATed(), proto, lookupAddr(fam.v6, true, fam.iso4or6, false),
				lookupAddr(fam.v6, false, fam.iso4or6, false), lookupPair(fam.v6, fam.same, true), drop)
			add(chainForward, static, r)
			add(chainInput, static, r)
		}
		if need.ports {
			// Hairpin: a member reaching a published port of its own
			// network through the host must see the reply come back the
			// same way.
			add(chainPostrouting, static, dnatted(true), proto, lookupPair(fam.v6, fam.same, false), masq)
		}
		if fam.masq {
			// Traffic that stays within the network keeps its source.
			add(chainPostrouting, static, proto, lookupAddr(fam.v6, true, fam.masqSet, false), lookupPair(fam.v6, fam.same, true), masq)
		}
	}
	if internal {
		// Internal networks' bridges: nothing forwarded in or out.
		add(chainForward, static, lookupIfname(expr.MetaKeyIIFNAME, ns.internal, false), lookupIfnamePair(ns.internalPairs, true), drop)
		add(chainForward, static, lookupIfname(expr.MetaKeyOIFNAME, ns.internal, false), lookupIfnamePair(ns.internalPairs, true), drop)
	}
	if tracked {
		// Packets of established connections skip the per-network checks:
		// a connection is only established if its first packet passed
		// them. Conntrack is on anyway, so this costs one test.
		accept := concat(established(), []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}})
		for _, c := range []string{chainForward, chainInput} {
			if len(out[c]) > 0 {
				out[c] = append([]rule{{tag: static, exprs: accept}}, out[c]...)
			}
		}
	}
	return out
}

// established matches packets of established connections and related
// ones (ICMP errors): ct state established,related.
func established() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutilNative32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// Sync makes nsnet's table what h asks for, in one transaction: chains
// that h needs are created and refilled, the others deleted, and the
// isolation sets refilled. Port maps keep their elements. With no network
// left, the table goes.
func (f *Firewall) Sync(h Host) error {
	have, err := f.chainNames()
	if err != nil {
		return err
	}
	haveARP, err := f.hasTable(f.arpTable())
	if err != nil {
		return err
	}
	if len(h.Networks) == 0 {
		if have == nil && !haveARP {
			return nil
		}
		// The last network of one state directory going must not take
		// another's table with it.
		if owner, err := f.Owner(); err != nil {
			return err
		} else if err := checkOwner(owner, h.Owner); err != nil {
			return err
		}
		if have != nil {
			f.conn.DelTable(f.table)
		}
		if haveARP {
			f.conn.DelTable(f.arpTable())
		}
		if err := f.conn.Flush(); err != nil {
			return fmt.Errorf("delete nftables table %s: %w", TableName, err)
		}
		return nil
	}
	owner, print, recorded, err := f.ownerChain()
	if err != nil {
		return err
	} else if err := checkOwner(owner, h.Owner); err != nil {
		return err
	}
	// Only a table of this layout (its needs record says so) holds the
	// sets that Changes add to: one an older nsnet made is rebuilt whole.
	_, current := parseNeeds(recorded)
	incremental := h.Changes != nil && have != nil && current
	need := needsOf(h)
	rules := f.rules(need)
	want := fingerprint(rules)
	// Deleting a rule costs the transaction an RCU grace period (about
	// 10 ms here): an incremental Sync leaves the chains alone when the
	// rules they need are the ones they have, as the fingerprint kept in
	// the owner chain says (and the needs recorded there are these). A
	// full Sync rewrites everything.
	keepRules := incremental && print == want && recorded == need.String() && owner == h.Owner
	for _, c := range f.chains() {
		keepRules = keepRules && have[c.Name] == (len(rules[c.Name]) > 0)
	}
	if !incremental || h.LocalDNS.IsValid() != haveARP {
		f.syncARP(h.LocalDNS, haveARP)
	}
	ns := f.netSets()
	var old []*nftables.Set
	if !incremental && have != nil {
		if old, err = f.conn.GetSets(f.table); err != nil {
			return fmt.Errorf("read nftables table %s: %w", TableName, err)
		}
	}
	if have != nil && !current {
		// An older layout's network sets are made anew, not refilled:
		// a set's key type and user data are fixed when it is made
		// (layout 2's ifname sets lacked the byte order nft lists them
		// by). Their elements are all rewritten below anyway; the rules
		// that use them go first, in this same transaction.
		for name := range have {
			f.conn.FlushChain(&nftables.Chain{Name: name, Table: f.table})
		}
		for _, s := range old {
			if slices.ContainsFunc(ns.all(), func(k *nftables.Set) bool { return k.Name == s.Name }) {
				f.conn.DelSet(s)
			}
		}
	}
	f.conn.AddTable(f.table)
	if !keepRules {
		c := &nftables.Chain{Name: chainOwner, Table: f.table}
		f.conn.AddChain(c)
		if have[chainOwner] {
			f.conn.FlushChain(c)
		}
		if h.Owner != "" {
			f.conn.AddRule(&nftables.Rule{Table: f.table, Chain: c, UserData: userdata.AppendString(nil, userdata.TypeComment, ownerPrefix+h.Owner),
				Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictReturn}}})
		}
		for _, comment := range []string{rulesPrefix + want, needsPrefix + need.String()} {
			f.conn.AddRule(&nftables.Rule{Table: f.table, Chain: c, UserData: userdata.AppendString(nil, userdata.TypeComment, comment),
				Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictReturn}}})
		}
	}
	host4, any4, host6, any6 := f.portMaps()
	sets := append([]*nftables.Set{host4, any4, host6, any6}, ns.all()...)
	for _, s := range sets {
		if err := f.conn.AddSet(s, nil); err != nil {
			return fmt.Errorf("nftables set %s: %w", s.Name, err)
		}
	}
	if h.Published != nil {
		for _, s := range []*nftables.Set{host4, any4, host6, any6} {
			f.conn.FlushSet(s)
		}
	}
	if !incremental {
		for _, s := range ns.all() {
			f.conn.FlushSet(s)
		}
	}
	if incremental {
		if err := f.changeElements(ns, h.Changes.Removed, true); err != nil {
			return err
		}
		if err := f.changeElements(ns, h.Changes.Added, false); err != nil {
			return err
		}
	} else if err := f.changeElements(ns, h.Networks, false); err != nil {
		return err
	}
	known := map[string]bool{}
	for _, c := range f.chains() {
		if keepRules {
			break
		}
		known[c.Name] = true
		rs := rules[c.Name]
		if len(rs) == 0 {
			if have[c.Name] {
				f.conn.FlushChain(c)
				f.conn.DelChain(c)
			}
			continue
		}
		f.conn.AddChain(c)
		if have[c.Name] {
			f.conn.FlushChain(c)
		}
		for _, r := range rs {
			f.conn.AddRule(&nftables.Rule{Table: f.table, Chain: c, UserData: r.tag, Exprs: r.exprs})
		}
	}
	// Chains of an older layout go too, and then its sets, which only
	// its rules used.
	for name := range have {
		if !keepRules && !known[name] && name != chainOwner {
			c := &nftables.Chain{Name: name, Table: f.table}
			f.conn.FlushChain(c)
			f.conn.DelChain(c)
		}
	}
	for _, s := range old {
		if !slices.ContainsFunc(sets, func(k *nftables.Set) bool { return k.Name == s.Name }) {
			f.conn.DelSet(s)
		}
	}
	if err := f.conn.Flush(); err != nil {
		if incremental {
			// The sets were not what the changes assumed (someone
			// edited them, say): rebuild them whole. The failed
			// transaction changed nothing.
			h.Changes = nil
			return f.Sync(h)
		}
		return fmt.Errorf("nftables table %s: %w", TableName, err)
	}
	if len(h.Published) > 0 {
		return f.Publish(h.Published, nil)
	}
	return nil
}

// changeElements queues the adding (or deleting) of nets' set elements.
func (f *Firewall) changeElements(ns netSets, nets []Network, del bool) error {
	// One message per set, in chunks: a netlink attribute holds at most
	// 64 KiB of elements.
	all := setElements{}
	for _, n := range nets {
		for set, els := range ns.elements(n) {
			all[set] = append(all[set], els...)
		}
	}
	for _, set := range ns.all() {
		els := all[set]
		for len(els) > 0 {
			chunk := els[:min(len(els), elementsPerMessage)]
			els = els[len(chunk):]
			var err error
			if del {
				err = f.conn.SetDeleteElements(set, chunk)
			} else {
				err = f.conn.SetAddElements(set, chunk)
			}
			if err != nil {
				return fmt.Errorf("nftables set %s: %w", set.Name, err)
			}
		}
	}
	return nil
}

// Add puts the set elements of h.Networks, networks new to the host, into
// the table in one transaction, when the rules it has already serve them:
// the needs recorded with its rules cover theirs (and h's ports and local
// DNS addresses), and the rules are those the needs make. It reads
// neither the host's other networks nor their elements, so its cost does
// not grow with them (issue 11: `net create` of a thousandth network).
// It returns false, having changed nothing, when the table must be synced
// whole (Sync with Changes): no table, one an older nsnet wrote, rules
// that a new need changes, or a transaction the kernel refused.
func (f *Firewall) Add(h Host) (bool, error) {
	have, err := f.chainNames()
	if err != nil || have == nil {
		return false, err
	}
	owner, print, recorded, err := f.ownerChain()
	if err != nil {
		return false, err
	} else if err := checkOwner(owner, h.Owner); err != nil {
		return false, err
	}
	need, ok := parseNeeds(recorded)
	if !ok || owner != h.Owner || !need.covers(needsOf(h)) {
		return false, nil
	}
	rules := f.rules(need)
	if fingerprint(rules) != print {
		return false, nil
	}
	for _, c := range f.chains() {
		if have[c.Name] != (len(rules[c.Name]) > 0) {
			return false, nil
		}
	}
	if haveARP, err := f.hasTable(f.arpTable()); err != nil {
		return false, err
	} else if haveARP != need.localDNS.IsValid() {
		return false, nil
	}
	if err := f.changeElements(f.netSets(), h.Networks, false); err != nil {
		return false, err
	}
	// A set missing, or of another type (someone edited the table): the
	// whole Sync mends it, and reports the error if it lasts. The failed
	// transaction changed nothing. (An element there already is no
	// failure: elements go in without NLM_F_EXCL.)
	return f.conn.Flush() == nil, nil
}

// checkOwner refuses a table that state directory have owns to state
// directory want (either empty: unknown, not refused).
func checkOwner(have, want string) error {
	if have != "" && want != "" && have != want {
		return fmt.Errorf("nftables table %s: %w", TableName, &OwnedError{Owner: have})
	}
	return nil
}

// OwnedError reports a host namespace whose nsnet table belongs to another
// state directory: two stores rebuilding one table would wipe each other's
// rules.
type OwnedError struct{ Owner string }

// ErrOwned matches every OwnedError.
var ErrOwned = errors.New("the host's nsnet table belongs to another state directory")

// Is makes errors.Is(err, ErrOwned) true for an OwnedError.
func (e *OwnedError) Is(target error) bool { return target == ErrOwned }

func (e *OwnedError) Error() string {
	return fmt.Sprintf("the host namespace is managed by the nsnet state directory %s; use that one (--state-dir %s), or another host namespace", e.Owner, e.Owner)
}

// Owner returns the state directory recorded in the host's table, or ""
// when there is no table or it records none (an older nsnet made it).
func (f *Firewall) Owner() (string, error) {
	owner, _, _, err := f.ownerChain()
	return owner, err
}

// ownerChain reads the owner chain: the state directory the table records,
// the fingerprint of the rules Sync last wrote, and the needs it recorded
// them for (as written; parseNeeds reads them).
func (f *Firewall) ownerChain() (owner, print, need string, err error) {
	rules, err := f.conn.GetRules(f.table, &nftables.Chain{Name: chainOwner, Table: f.table})
	if errors.Is(err, unix.ENOENT) {
		return "", "", "", nil
	}
	if err != nil {
		return "", "", "", fmt.Errorf("read nftables table %s: %w", TableName, err)
	}
	for _, r := range rules {
		c, _ := userdata.GetString(r.UserData, userdata.TypeComment)
		if v, ok := strings.CutPrefix(c, ownerPrefix); ok {
			owner = v
		} else if v, ok := strings.CutPrefix(c, rulesPrefix); ok {
			print = v
		} else if v, ok := strings.CutPrefix(c, needsPrefix); ok {
			need = v
		}
	}
	return owner, print, need, nil
}

// fingerprint identifies a table's rules: their chains, comments and
// expressions as the kernel receives them.
func fingerprint(rules map[string][]rule) string {
	h := sha256.New()
	for _, name := range slices.Sorted(maps.Keys(rules)) {
		fmt.Fprintf(h, "chain %s %d\n", name, len(rules[name]))
		for _, r := range rules[name] {
			h.Write(r.tag)
			for _, e := range r.exprs {
				b, err := expr.Marshal(byte(nftables.TableFamilyINet), e)
				if err != nil {
					fmt.Fprintf(h, "%T %v", e, err)
				}
				h.Write(b)
			}
			h.Write([]byte{0})
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// arpTable holds the one ARP rule nsnet needs; ARP has a family of its own.
func (f *Firewall) arpTable() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyARP, Name: TableName}
}

// syncARP queues the ARP table: while the routed gateway is a local
// address, the host would answer ARP for it on every interface (with the
// default arp_ignore), claiming 169.254.1.1 on the uplink's LAN too. Only
// routed host ends may answer, and their members have permanent entries
// anyway.
func (f *Firewall) syncARP(addr netip.Addr, have bool) {
	t := f.arpTable()
	if !addr.IsValid() {
		if have {
			f.conn.DelTable(t)
		}
		return
	}
	f.conn.AddTable(t)
	accept := nftables.ChainPolicyAccept
	// The ARP family numbers its hooks apart: NF_ARP_IN is 0, the value
	// the inet family calls prerouting.
	c := &nftables.Chain{Name: chainInput, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityFilter, Policy: &accept}
	f.conn.AddChain(c)
	if have {
		f.conn.FlushChain(c)
	}
	f.conn.AddRule(&nftables.Rule{Table: t, Chain: c, UserData: userdata.AppendString(nil, userdata.TypeComment, tagStatic), Exprs: []expr.Any{
		// The target protocol address of an Ethernet/IPv4 ARP packet.
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr.AsSlice()},
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte(HostIfPrefix)},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
}

// hasTable reports whether table t exists.
func (f *Firewall) hasTable(t *nftables.Table) (bool, error) {
	if _, err := f.conn.ListTableOfFamily(t.Name, t.Family); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("look up nftables table %s: %w", t.Name, err)
	}
	return true, nil
}

// chainNames lists the chains of nsnet's table; nil if there is no table.
func (f *Firewall) chainNames() (map[string]bool, error) {
	if ok, err := f.hasTable(f.table); err != nil || !ok {
		return nil, err
	}
	chains, err := f.conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list nftables chains: %w", err)
	}
	have := map[string]bool{}
	for _, c := range chains {
		if c.Table.Name == TableName {
			have[c.Name] = true
		}
	}
	return have, nil
}

// dnatted matches connections whose destination was rewritten (published
// ports), or with is=false those whose was not.
func dnatted(is bool) []expr.Any {
	op := expr.CmpOpNeq
	if !is {
		op = expr.CmpOpEq
	}
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutilNative32(0x20), Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: 1, Data: make([]byte, 4)},
	}
}

func concat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// matchAddr compares the source (or destination) address with p. withProto
// first checks the packet's family, which a table of the inet family needs.
// matchProto matches packets of one IP family (an NFPROTO_ value).
func matchProto(proto byte) []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}}}
}

// notFromNsnet matches a packet that came in on neither one of nsnet's
// bridges (set s) nor a routed member's host end.
func notFromNsnet(s *nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID, Invert: true},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte(HostIfPrefix)},
	}
}

func matchAddr(p netip.Prefix, source bool, op expr.CmpOp, withProto bool) []expr.Any {
	proto, off, size := byte(unix.NFPROTO_IPV4), uint32(12), uint32(4)
	if p.Addr().Is6() {
		proto, off, size = unix.NFPROTO_IPV6, 8, 16
	}
	if !source {
		off += size
	}
	mask := make([]byte, size)
	for i := 0; i < p.Bits(); i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	var out []expr.Any
	if withProto {
		out = append(out, &expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}})
	}
	return append(out,
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: size},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: size, Mask: mask, Xor: make([]byte, size)},
		&expr.Cmp{Op: op, Register: 1, Data: p.Masked().Addr().AsSlice()},
	)
}

// matchIfname compares the input or output interface name.
func matchIfname(key expr.MetaKey, op expr.CmpOp, name string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: ifname(name)},
	}
}

func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

// Tag is the comment nsnet puts on every rule it owns for a network.
func Tag(network string) []byte {
	return userdata.AppendString(nil, userdata.TypeComment, tagPrefix+network)
}
