package firewall

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
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
		var matches [][]expr.Any
		if n.Bridge != "" {
			in := matchIfname(expr.MetaKeyOIFNAME, expr.CmpOpEq, n.Bridge)
			matches = append(matches, matchIfname(expr.MetaKeyIIFNAME, expr.CmpOpEq, n.Bridge))
			if n.Masquerade {
				matches = append(matches, concat(in, established()), concat(in, dnatted(true)))
			} else {
				matches = append(matches, in)
			}
		} else {
			for _, p := range n.Subnets {
				fam := c.Table.Family
				if fam == nftables.TableFamilyIPv4 && p.Addr().Is6() || fam == nftables.TableFamilyIPv6 && p.Addr().Is4() {
					continue
				}
				inet := fam == nftables.TableFamilyINet
				matches = append(matches, matchAddr(p, true, expr.CmpOpEq, inet), matchAddr(p, false, expr.CmpOpEq, inet))
			}
		}
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
