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
			rules := f.rules(needsOf(tt.host))
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

func TestNeedsRoundTrip(t *testing.T) {
	for _, h := range []Host{
		{},
		{Networks: []Network{bridgeNAT}},
		{Networks: []Network{bridgeNAT, bridgeDual, internalNet}, Ports: true},
		{Networks: []Network{routedDNS}, LocalDNS: addr("169.254.1.1"), LocalDNS6: addr("fd6e:736e:6574::53")},
	} {
		n := needsOf(h)
		got, ok := parseNeeds(n.String())
		if !ok || got != n {
			t.Errorf("parseNeeds(%q) = %+v, %v; want %+v", n.String(), got, ok, n)
		}
	}
	for _, bad := range []string{"", "iso=1", "layout=1 iso=1", "layout=2 iso=1", "layout=3 iso=3", "layout=3 v4", "layout=3 iso=1 v5", "layout=3 iso=0 dns=nowhere", "layout=3 iso=0 dnss=169.254.1.1", "layout=3 iso=12"} {
		if _, ok := parseNeeds(bad); ok {
			t.Errorf("parseNeeds(%q) accepted", bad)
		}
	}
}

func TestNeedsCovers(t *testing.T) {
	tests := []struct {
		name      string
		have, add Host
		want      bool
	}{
		{"another NAT network beside two isolated", Host{Networks: []Network{bridgeNAT, bridgeDual}}, Host{Networks: []Network{openNet}}, true},
		{"a third isolated network", Host{Networks: []Network{bridgeNAT, bridgeDual}}, Host{Networks: []Network{bridgeNAT}}, true},
		{"a second isolated network", Host{Networks: []Network{bridgeNAT}}, Host{Networks: []Network{bridgeNAT}}, false},
		{"a first IPv6 subnet", Host{Networks: []Network{bridgeNAT, openNet}}, Host{Networks: []Network{bridgeDual}}, false},
		{"an internal network", Host{Networks: []Network{bridgeNAT, bridgeDual}}, Host{Networks: []Network{internalNet}}, false},
		{"ports on a host without", Host{Networks: []Network{bridgeNAT, bridgeDual}}, Host{Networks: []Network{openNet}, Ports: true}, false},
		{"ports on a host with", Host{Networks: []Network{bridgeNAT, bridgeDual}, Ports: true}, Host{Networks: []Network{openNet}, Ports: true}, true},
		{"the routed resolver, new", Host{Networks: []Network{bridgeNAT, bridgeDual}}, Host{Networks: []Network{routedDNS}, LocalDNS: addr("169.254.1.1")}, false},
		{"the routed resolver, there", Host{Networks: []Network{routedDNS, bridgeDual}, LocalDNS: addr("169.254.1.1")}, Host{Networks: []Network{routedDNS}, LocalDNS: addr("169.254.1.1")}, true},
		{"nothing new to a routed host", Host{Networks: []Network{routedDNS, bridgeDual}, LocalDNS: addr("169.254.1.1")}, Host{Networks: []Network{openNet}}, true},
	}
	for _, tt := range tests {
		if got := needsOf(tt.have).covers(needsOf(tt.add)); got != tt.want {
			t.Errorf("%s: covers = %v, want %v", tt.name, got, tt.want)
		}
	}
}
