// Package firewall keeps nsnet's nftables state: one table of its own,
// "inet nsnet", changed in one netlink transaction per call. Every rule it
// adds carries a comment naming the network that owns it, so removing a
// network removes exactly its rules. The only rules it ever puts in another
// table are narrowly scoped accepts in forward chains whose policy is drop
// (see OpenForward), tagged the same way.
package firewall

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// TableName is nsnet's table, in the inet family.
const TableName = "nsnet"

const (
	chainPostrouting = "postrouting"
	chainForward     = "forward"
	chainInput       = "input"
	chainDNS         = "dns-prerouting"
	// Chains holding only static rules, rebuilt whole on every SetNetwork.
	chainPrerouting = "prerouting"
	chainOutput     = "output"
	chainPortsPost  = "ports-postrouting"
	tagPrefix       = "nsnet:network="
	tagStatic       = "nsnet:ports"
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
	// DNSRedirect, when valid, is where members' DNS queries to the routed
	// gateway 169.254.1.1:53 go: the agent's resolver on the host.
	DNSRedirect netip.AddrPort
}

// routedGateway is the link-local gateway of routed networks.
var routedGateway = netip.MustParseAddr("169.254.1.1")

// Firewall is a connection to nftables in one network namespace.
type Firewall struct {
	conn  *nftables.Conn
	table *nftables.Table
}

// New connects to nftables in the namespace open as nsFd; a negative nsFd
// means the namespace of the calling process.
func New(nsFd int) (*Firewall, error) {
	var opts []nftables.ConnOption
	if nsFd >= 0 {
		opts = append(opts, nftables.WithNetNSFd(nsFd))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return &Firewall{conn: c, table: &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}}, nil
}

func (f *Firewall) chain(name string, typ nftables.ChainType, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
	accept := nftables.ChainPolicyAccept
	return &nftables.Chain{Name: name, Table: f.table, Type: typ, Hooknum: hook, Priority: prio, Policy: &accept}
}

// chains are the chains holding per-network rules.
func (f *Firewall) chains() (post, fwd, in, dns *nftables.Chain) {
	return f.chain(chainPostrouting, nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource),
		f.chain(chainForward, nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriorityFilter),
		f.chain(chainInput, nftables.ChainTypeFilter, nftables.ChainHookInput, nftables.ChainPriorityFilter),
		f.chain(chainDNS, nftables.ChainTypeNAT, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest)
}

// staticChains hold the port-publishing rules every network shares.
func (f *Firewall) staticChains() (pre, out, post *nftables.Chain) {
	return f.chain(chainPrerouting, nftables.ChainTypeNAT, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest),
		f.chain(chainOutput, nftables.ChainTypeNAT, nftables.ChainHookOutput, nftables.ChainPriorityNATDest),
		f.chain(chainPortsPost, nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource)
}

// ensureBase queues the table, its chains, maps and sets, and rebuilds the
// static rules; all of it may be repeated.
func (f *Firewall) ensureBase() {
	f.conn.AddTable(f.table)
	post, fwd, in, dns := f.chains()
	pre, out, ppost := f.staticChains()
	for _, c := range []*nftables.Chain{post, fwd, in, dns, pre, out, ppost} {
		f.conn.AddChain(c)
	}
	host4, any4, host6, any6 := f.portMaps()
	iso4, iso6 := f.isolationSets()
	for _, s := range []*nftables.Set{host4, any4, host6, any6, iso4, iso6} {
		f.conn.AddSet(s, nil)
	}
	tag := userdata.AppendString(nil, userdata.TypeComment, tagStatic)
	for _, c := range []*nftables.Chain{pre, out, ppost} {
		f.conn.FlushChain(c)
	}
	// Packets of established connections skip the per-network checks: a
	// connection is only established if its first packet passed them.
	// This keeps nsnet's cost per forwarded packet to one conntrack test.
	if !f.hasFastPath(fwd) {
		for _, c := range []*nftables.Chain{fwd, in} {
			f.conn.InsertRule(&nftables.Rule{Table: f.table, Chain: c, UserData: tag, Exprs: []expr.Any{
				&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
					Mask: binaryutilNative32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: make([]byte, 4)},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
				&expr.Verdict{Kind: expr.VerdictAccept},
			}})
		}
	}
	for _, r := range dnatRules(host4, any4, host6, any6) {
		f.conn.AddRule(&nftables.Rule{Table: f.table, Chain: pre, UserData: tag, Exprs: r})
		f.conn.AddRule(&nftables.Rule{Table: f.table, Chain: out, UserData: tag, Exprs: r})
	}
	// The host reaching a published port on 127.0.0.1 must not leave with
	// a loopback source.
	f.conn.AddRule(&nftables.Rule{Table: f.table, Chain: ppost, UserData: tag, Exprs: concat(
		dnatted(true), matchAddr(netip.MustParsePrefix("127.0.0.0/8"), true, expr.CmpOpEq, true), []expr.Any{&expr.Masq{}})})
}

// hasFastPath reports whether the chain already starts with nsnet's
// established-connection accept (chains that do not exist yet do not).
func (f *Firewall) hasFastPath(c *nftables.Chain) bool {
	rules, err := f.conn.GetRules(f.table, c)
	if err != nil || len(rules) == 0 {
		return false
	}
	return bytes.Equal(rules[0].UserData, userdata.AppendString(nil, userdata.TypeComment, tagStatic))
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

// SetNetwork replaces the rules of n.Name with the ones n asks for, creating
// the table and chains if needed, in one transaction.
func (f *Firewall) SetNetwork(n Network) error {
	post, fwd, in, dns := f.chains()
	f.ensureBase()
	if _, err := f.deleteTagged(n.Name); err != nil && !errors.Is(err, errNoTable) {
		return err
	}
	tag := Tag(n.Name)
	if n.DNSRedirect.IsValid() {
		for _, p := range n.Subnets {
			if !p.Addr().Is4() {
				continue
			}
			for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
				f.conn.AddRule(&nftables.Rule{Table: f.table, Chain: dns, UserData: tag, Exprs: concat(
					matchAddr(p, true, expr.CmpOpEq, true),
					matchAddr(netip.PrefixFrom(routedGateway, 32), false, expr.CmpOpEq, false),
					[]expr.Any{
						&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
						&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
						&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
						&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(53)},
						&expr.Immediate{Register: 1, Data: n.DNSRedirect.Addr().AsSlice()},
						&expr.Immediate{Register: 2, Data: be16(n.DNSRedirect.Port())},
						&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
					})})
			}
		}
	}
	for _, p := range n.Subnets {
		// Hairpin: a member reaching a published port of its own network
		// through the host must see the reply come back the same way.
		f.conn.AddRule(&nftables.Rule{Table: f.table, Chain: post, UserData: tag, Exprs: concat(
			dnatted(true), matchAddr(p, true, expr.CmpOpEq, true), matchAddr(p, false, expr.CmpOpEq, false), []expr.Any{&expr.Masq{}})})
		if p.Addr().Is4() {
			// route_localnet opens 127.0.0.0/8 to members; close it.
			// (A published port's reply to the host's 127.0.0.1 is let by.)
			f.conn.AddRule(&nftables.Rule{Table: f.table, Chain: in, UserData: tag, Exprs: concat(dnatted(false),
				matchAddr(p, true, expr.CmpOpEq, true), matchAddr(netip.MustParsePrefix("127.0.0.0/8"), false, expr.CmpOpEq, false),
				[]expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}})})
		}
		if n.Isolate {
			iso4, iso6 := f.isolationSets()
			set := iso4
			if p.Addr().Is6() {
				set = iso6
			}
			if err := f.conn.SetAddElements(set, intervalElements(p)); err != nil {
				return err
			}
			drop := concat(dnatted(false), matchAddr(p, true, expr.CmpOpEq, true),
				matchSet(p.Addr().Is6(), set), matchAddr(p, false, expr.CmpOpNeq, false),
				[]expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}})
			f.conn.AddRule(&nftables.Rule{Table: f.table, Chain: fwd, UserData: tag, Exprs: drop})
			f.conn.AddRule(&nftables.Rule{Table: f.table, Chain: in, UserData: tag, Exprs: drop})
		}
	}
	if n.Masquerade {
		for _, p := range n.Subnets {
			// Traffic that stays within the network keeps its source.
			stay := matchIfname(expr.MetaKeyOIFNAME, expr.CmpOpNeq, n.Bridge)
			if n.Bridge == "" {
				stay = matchAddr(p, false, expr.CmpOpNeq, false)
			}
			f.conn.AddRule(&nftables.Rule{Table: f.table, Chain: post, UserData: tag,
				Exprs: concat(matchAddr(p, true, expr.CmpOpEq, true), stay, []expr.Any{&expr.Masq{}})})
		}
	}
	if n.Internal {
		drop := []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}
		f.conn.AddRule(&nftables.Rule{Table: f.table, Chain: fwd, UserData: tag,
			Exprs: concat(matchIfname(expr.MetaKeyIIFNAME, expr.CmpOpEq, n.Bridge), matchIfname(expr.MetaKeyOIFNAME, expr.CmpOpNeq, n.Bridge), drop)})
		f.conn.AddRule(&nftables.Rule{Table: f.table, Chain: fwd, UserData: tag,
			Exprs: concat(matchIfname(expr.MetaKeyOIFNAME, expr.CmpOpEq, n.Bridge), matchIfname(expr.MetaKeyIIFNAME, expr.CmpOpNeq, n.Bridge), drop)})
	}
	if err := f.conn.Flush(); err != nil {
		return fmt.Errorf("nftables rules for network %s: %w", n.Name, err)
	}
	return nil
}

// matchSet looks the destination address up in an isolation set.
func matchSet(v6 bool, s *nftables.Set) []expr.Any {
	off, size := uint32(16), uint32(4)
	if v6 {
		off, size = 24, 16
	}
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: size},
		&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
	}
}

// RemoveNetwork deletes the rules of the network called name and its
// subnets' isolation entries, and the table once no network has rules left
// in it. Missing rules and entries are not an error.
func (f *Firewall) RemoveNetwork(name string, subnets []netip.Prefix) error {
	remaining, err := f.deleteTagged(name)
	if errors.Is(err, errNoTable) {
		return nil
	}
	if err != nil {
		return err
	}
	if remaining == 0 {
		f.conn.DelTable(f.table)
	} else if err := f.unisolate(subnets); err != nil {
		return err
	}
	if err := f.conn.Flush(); err != nil {
		return fmt.Errorf("remove nftables rules of network %s: %w", name, err)
	}
	return nil
}

var errNoTable = errors.New("no nsnet table")

// unisolate queues removal of the subnets' entries from the isolation
// sets, those that are there: a batch deleting a missing one would fail.
func (f *Firewall) unisolate(subnets []netip.Prefix) error {
	iso4, iso6 := f.isolationSets()
	for _, set := range []*nftables.Set{iso4, iso6} {
		have, err := f.conn.GetSetElements(set)
		if err != nil {
			return fmt.Errorf("read nftables set %s: %w", set.Name, err)
		}
		present := map[string]bool{}
		for _, e := range have {
			present[string(e.Key)] = true
		}
		for _, p := range subnets {
			if p.Addr().Is6() != (set == iso6) {
				continue
			}
			els := intervalElements(p)
			if !present[string(els[0].Key)] {
				continue
			}
			if err := f.conn.SetDeleteElements(set, els); err != nil {
				return err
			}
		}
	}
	return nil
}

// deleteTagged queues deletion of the rules tagged for name and counts the
// rules of other networks. Only nsnet's own chains are read.
func (f *Firewall) deleteTagged(name string) (others int, err error) {
	tag := Tag(name)
	if _, err := f.conn.ListTableOfFamily(TableName, nftables.TableFamilyINet); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return 0, errNoTable
		}
		return 0, fmt.Errorf("look up nftables table %s: %w", TableName, err)
	}
	post, fwd, in, dns := f.chains()
	for _, c := range []*nftables.Chain{post, fwd, in, dns} {
		rules, err := f.conn.GetRules(f.table, c)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("read nftables chain %s %s: %w", TableName, c.Name, err)
		}
		static := userdata.AppendString(nil, userdata.TypeComment, tagStatic)
		for _, r := range rules {
			switch {
			case bytes.Equal(r.UserData, tag):
				if err := f.conn.DelRule(r); err != nil {
					return 0, err
				}
			case !bytes.Equal(r.UserData, static):
				others++
			}
		}
	}
	return others, nil
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
