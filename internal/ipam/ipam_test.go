package ipam

import (
	"net/netip"
	"slices"
	"testing"
)

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, v := range s {
		out = append(out, netip.MustParseAddr(v))
	}
	return out
}

func TestFirstFree(t *testing.T) {
	tests := []struct {
		subnet  string
		from    string
		leased  []netip.Addr
		want    string
		wantErr bool
	}{
		{"10.0.0.0/24", "", nil, "10.0.0.1", false},
		{"10.0.0.0/24", "", addrs("10.0.0.1"), "10.0.0.2", false},
		{"10.0.0.0/24", "", addrs("10.0.0.1", "10.0.0.2", "10.0.0.4"), "10.0.0.3", false},
		{"10.0.0.0/30", "", addrs("10.0.0.1", "10.0.0.2"), "", true},
		{"10.0.0.0/30", "", addrs("10.0.0.1"), "10.0.0.2", false},
		{"fd00::/64", "", addrs("fd00::1"), "fd00::2", false},
		{"fd00::/126", "", addrs("fd00::1", "fd00::2", "fd00::3"), "", true},
		{"192.168.20.0/24", "", addrs("192.168.20.1", "192.168.20.200"), "192.168.20.2", false},
		{"10.0.0.0/24", "10.0.0.5", addrs("10.0.0.5", "10.0.0.6"), "10.0.0.7", false},
		{"10.0.0.0/24", "10.0.0.5", addrs("10.0.0.9"), "10.0.0.5", false},
		{"10.0.0.0/30", "10.0.0.3", nil, "", true},
	}
	for _, tt := range tests {
		var from netip.Addr
		if tt.from != "" {
			from = netip.MustParseAddr(tt.from)
		}
		got, err := FirstFree(netip.MustParsePrefix(tt.subnet), from, slices.Values(tt.leased))
		if (err != nil) != tt.wantErr {
			t.Errorf("FirstFree(%s, %v) error = %v, want error %v", tt.subnet, tt.leased, err, tt.wantErr)
			continue
		}
		if err == nil && got.String() != tt.want {
			t.Errorf("FirstFree(%s, %v) = %s, want %s", tt.subnet, tt.leased, got, tt.want)
		}
	}
}

func TestCheckHost(t *testing.T) {
	tests := []struct {
		subnet, addr string
		ok           bool
	}{
		{"10.0.0.0/24", "10.0.0.5", true},
		{"10.0.0.0/24", "10.0.0.0", false},
		{"10.0.0.0/24", "10.0.0.255", false},
		{"10.0.0.0/24", "10.0.1.5", false},
		{"fd00::/64", "fd00::ffff:ffff:ffff:ffff", true},
		{"fd00::/64", "fd00::", false},
	}
	for _, tt := range tests {
		err := CheckHost(netip.MustParsePrefix(tt.subnet), netip.MustParseAddr(tt.addr))
		if (err == nil) != tt.ok {
			t.Errorf("CheckHost(%s, %s) = %v, want ok=%v", tt.subnet, tt.addr, err, tt.ok)
		}
	}
}

func TestLast(t *testing.T) {
	for subnet, want := range map[string]string{
		"10.0.0.0/24":    "10.0.0.255",
		"10.0.0.77/30":   "10.0.0.79",
		"fd00:1::/64":    "fd00:1::ffff:ffff:ffff:ffff",
		"192.168.0.0/16": "192.168.255.255",
	} {
		if got := Last(netip.MustParsePrefix(subnet)); got.String() != want {
			t.Errorf("Last(%s) = %s, want %s", subnet, got, want)
		}
	}
}
