package firewall

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"
)

// ChainRef names a chain of another table.
type ChainRef struct {
	Family nftables.TableFamily
	Table  string
	Chain  string
}

// FamilyName spells a table family as nft does.
func FamilyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyBridge:
		return "bridge"
	case nftables.TableFamilyARP:
		return "arp"
	case nftables.TableFamilyNetdev:
		return "netdev"
	}
	return fmt.Sprintf("family-%d", f)
}

// forwardChains lists the base chains of other tables hooked at forward;
// with dropping set, only those whose policy is drop. An accept in nsnet's
// own table cannot override a drop in another, so these are the chains
// that would silently eat nsnet's forwarded traffic.
func (f *Firewall) forwardChains(dropping bool) ([]*nftables.Chain, error) {
	chains, err := f.conn.ListChains()
	if err != nil {
		return nil, fmt.Errorf("list nftables chains: %w", err)
	}
	var out []*nftables.Chain
	for _, c := range chains {
		if c.Table.Name == TableName && c.Table.Family == nftables.TableFamilyINet {
			continue
		}
		switch c.Table.Family {
		case nftables.TableFamilyIPv4, nftables.TableFamilyIPv6, nftables.TableFamilyINet:
		default:
			continue
		}
		if c.Hooknum == nil || *c.Hooknum != *nftables.ChainHookForward {
			continue
		}
		if dropping && (c.Policy == nil || *c.Policy != nftables.ChainPolicyDrop) {
			continue
		}
		out = append(out, c)
	}
	return out, nil
}

// OpenForward finds other tables' forward chains whose policy is drop and
// inserts, at their head, accepts for the network's traffic only: what
// enters its bridge, and what leaves it but, for a NAT network, only
// replies and published ports (what nsnet's own table lets in too); for a
// routed network what comes from or goes to its subnets. It returns the
// chains it changed.
func (f *Firewall) OpenForward(n Network) ([]ChainRef, error) {
	chains, err := f.forwardChains(true)
	if err != nil {
		return nil, err
	}
	tag := Tag(n.Name)
	accept := []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictAccept}}
	var refs []ChainRef
	for _, c := range chains {
		matches := forwardMatches(c, n)
		if len(matches) == 0 {
			continue
		}
		for _, m := range matches {
			f.conn.InsertRule(&nftables.Rule{Table: c.Table, Chain: c, UserData: tag, Exprs: concat(m, accept)})
		}
		refs = append(refs, ChainRef{Family: c.Table.Family, Table: c.Table.Name, Chain: c.Name})
	}
	if len(refs) == 0 {
		return nil, nil
	}
	if err := f.conn.Flush(); err != nil {
		return nil, fmt.Errorf("accept network %s in host forward chains: %w", n.Name, err)
	}
	return refs, nil
}

// forwardMatches are the matches of the accepts OpenForward puts into
// chain c for network n.
func forwardMatches(c *nftables.Chain, n Network) [][]expr.Any {
	var matches [][]expr.Any
	if n.Bridge != "" {
		in := matchIfname(expr.MetaKeyOIFNAME, expr.CmpOpEq, n.Bridge)
		matches = append(matches, matchIfname(expr.MetaKeyIIFNAME, expr.CmpOpEq, n.Bridge))
		if !n.Masquerade {
			return append(matches, in)
		}
		if iptables(c.Table.Family) {
			return append(matches,
				concat(in, []expr.Any{xtConntrack(xtStateEstablished | xtStateRelated)}),
				concat(in, []expr.Any{xtConntrack(xtStateDNAT)}))
		}
		return append(matches, concat(in, established()), concat(in, dnatted(true)))
	}
	for _, p := range n.Subnets {
		fam := c.Table.Family
		if fam == nftables.TableFamilyIPv4 && p.Addr().Is6() || fam == nftables.TableFamilyIPv6 && p.Addr().Is4() {
			continue
		}
		inet := fam == nftables.TableFamilyINet
		matches = append(matches, matchAddr(p, true, expr.CmpOpEq, inet), matchAddr(p, false, expr.CmpOpEq, inet))
	}
	return matches
}

// iptables reports whether tables of family fam are the ones iptables-nft
// manages (ip filter, ip6 filter). Rules nsnet puts there must be ones
// iptables can read back, or `iptables -S` refuses the whole chain ("is
// incompatible, use 'nft' tool"): conntrack is then the xt match iptables
// itself uses, not nftables' ct expression.
func iptables(fam nftables.TableFamily) bool {
	return fam == nftables.TableFamilyIPv4 || fam == nftables.TableFamilyIPv6
}

// States of xt_conntrack's --ctstate (linux/netfilter/xt_conntrack.h):
// a connection's ctinfo bit, and the virtual DNAT state (its original
// destination differs from its reply source).
const (
	xtConntrackFlagState = 1 << 0
	xtStateEstablished   = 1 << 1
	xtStateRelated       = 1 << 2
	xtStateDNAT          = 1 << 7
)

// xtConntrack is iptables' `-m conntrack --ctstate` for the states given.
func xtConntrack(states uint16) *expr.Match {
	info := &xt.ConntrackMtinfo3{}
	info.MatchFlags = xtConntrackFlagState
	info.StateMask = states
	return &expr.Match{Name: "conntrack", Rev: 3, Info: info}
}

// ForwardStale reports which of nets have accepts in other tables'
// forward chains that differ from what OpenForward would make now: a chain
// whose policy turned to drop lacks them, one that no longer drops (or a
// rule someone deleted) has the wrong number. A caller re-opens only
// those, so that nsnet's own changes to those chains, which it watches,
// do not set off another round. Each chain is read once, whatever the
// number of networks.
func (f *Firewall) ForwardStale(nets []Network) (map[string]bool, error) {
	chains, err := f.forwardChains(false)
	if err != nil {
		return nil, err
	}
	byTag := make(map[string]string, len(nets))
	for _, n := range nets {
		byTag[string(Tag(n.Name))] = n.Name
	}
	stale := map[string]bool{}
	for _, c := range chains {
		rules, err := f.conn.GetRules(c.Table, c)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read chain %s %s %s: %w", FamilyName(c.Table.Family), c.Table.Name, c.Name, err)
		}
		have := map[string]int{}
		for _, r := range rules {
			if name, ok := byTag[string(r.UserData)]; ok {
				have[name]++
			}
		}
		drops := c.Policy != nil && *c.Policy == nftables.ChainPolicyDrop
		for _, n := range nets {
			want := 0
			if drops {
				want = len(forwardMatches(c, n))
			}
			if have[n.Name] != want {
				stale[n.Name] = true
			}
		}
	}
	return stale, nil
}

// CloseForward deletes the network's accepts from every other table's
// forward chain, wherever they are, in one transaction. Chains and tables
// that vanished meanwhile are skipped.
func (f *Firewall) CloseForward(name string) error {
	chains, err := f.forwardChains(false)
	if err != nil {
		return err
	}
	tag := Tag(name)
	n := 0
	for _, c := range chains {
		rules, err := f.conn.GetRules(c.Table, c)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read chain %s %s %s: %w", FamilyName(c.Table.Family), c.Table.Name, c.Name, err)
		}
		for _, r := range rules {
			if bytes.Equal(r.UserData, tag) {
				if err := f.conn.DelRule(r); err != nil {
					return err
				}
				n++
			}
		}
	}
	if n == 0 {
		return nil
	}
	if err := f.conn.Flush(); err != nil {
		return fmt.Errorf("remove accepts of network %s from host forward chains: %w", name, err)
	}
	return nil
}
