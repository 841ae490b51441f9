package firewall

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// TestRules checks which chains each host state gets, and that the rules
// turn on connection tracking only when something needs it: a chain costs
// every packet at its hook, and conntrack every forwarded packet.
func TestRules(t *testing.T) {
	routed := Network{Name: "rt", Subnets: []netip.Prefix{netip.MustParsePrefix("10.99.0.0/24")}, Isolate: true}
	bridge := Network{Name: "br", Bridge: "nsbr-br", Subnets: []netip.Prefix{netip.MustParsePrefix("10.88.0.0/24")}, Masquerade: true, Isolate: true}
	plain := Network{Name: "pl", Bridge: "nsbr-pl", Subnets: []netip.Prefix{netip.MustParsePrefix("10.77.0.0/24")}, Isolate: true}
	internal := Network{Name: "in", Bridge: "nsbr-in", Subnets: []netip.Prefix{netip.MustParsePrefix("10.66.0.0/24")}, Internal: true}
	open := routed
	open.Isolate = false
	tests := []struct {
		name    string
		host    Host
		chains  []string
		tracked bool
	}{
		{"lone routed network", Host{Networks: []Network{routed}}, []string{"input"}, false},
		{"routed without isolation", Host{Networks: []Network{open}}, []string{"input"}, false},
		{"routed with a port", Host{Networks: []Network{routed}, Ports: true}, []string{"input", "output", "postrouting", "prerouting"}, true},
		{"two isolated networks, no NAT", Host{Networks: []Network{routed, plain}}, []string{"forward", "input"}, false},
		{"isolated and open", Host{Networks: []Network{routed, open}}, []string{"input"}, false},
		{"bridge with masquerade", Host{Networks: []Network{bridge}}, []string{"forward", "input", "postrouting"}, true},
		{"bridge and routed", Host{Networks: []Network{bridge, routed}}, []string{"forward", "input", "postrouting"}, true},
		{"internal", Host{Networks: []Network{internal}}, []string{"forward", "input"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &Firewall{table: &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}}
			rules := f.rules(tt.host)
			var chains []string
			tracked := false
			for name, rs := range rules {
				if len(rs) > 0 {
					chains = append(chains, name)
				}
				if name != chainForward && name != chainInput && len(rs) > 0 {
					tracked = true // NAT chains track connections
				}
				for _, r := range rs {
					for _, e := range r.exprs {
						if _, ok := e.(*expr.Ct); ok {
							tracked = true
						}
					}
				}
			}
			slices.Sort(chains)
			if !slices.Equal(chains, tt.chains) {
				t.Errorf("chains = %v, want %v", chains, tt.chains)
			}
			if tracked != tt.tracked {
				t.Errorf("connection tracking = %v, want %v", tracked, tt.tracked)
			}
			for _, c := range []string{chainForward, chainInput} {
				rs := rules[c]
				fast := len(rs) > 0 && isFastPath(rs[0])
				if want := tt.tracked && len(rs) > 0; fast != want {
					t.Errorf("chain %s starts with the established fast path = %v, want %v", c, fast, want)
				}
			}
		})
	}
}

func isFastPath(r rule) bool {
	ct, ok := r.exprs[0].(*expr.Ct)
	return ok && ct.Key == expr.CtKeySTATE
}
