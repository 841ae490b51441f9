package firewall

import (
	"fmt"

	"github.com/google/nftables"
)

// SetForwardPolicy gives the namespace at nsFd a FORWARD policy of its
// own, as `iptables -P FORWARD DROP` (or ACCEPT) does with iptables-nft:
// chain FORWARD of tables ip filter and ip6 filter, hooked at forward,
// made if missing. A lab host uses it to play a host whose firewall
// drops what it forwards (article 003's node02); nsnet's networks there
// then get their accepts as on any such host.
func SetForwardPolicy(nsFd int, drop bool) error {
	c, err := nftables.New(nftables.WithNetNSFd(nsFd))
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	policy := nftables.ChainPolicyAccept
	if drop {
		policy = nftables.ChainPolicyDrop
	}
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6} {
		t := c.AddTable(&nftables.Table{Family: fam, Name: "filter"})
		c.AddChain(&nftables.Chain{
			Name: "FORWARD", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &policy,
		})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("set FORWARD policy: %w", err)
	}
	return nil
}
