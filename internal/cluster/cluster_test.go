package cluster

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		bad  bool
	}{
		{in: "etcd://10.0.0.1:2379", want: []string{"http://10.0.0.1:2379"}},
		{in: "etcd://a:1,b:2", want: []string{"http://a:1", "http://b:2"}},
		{in: "etcds://a:2379", want: []string{"https://a:2379"}},
		{in: "http://a:2379", bad: true},
		{in: "etcd://", bad: true},
		{in: "etcd://a", bad: true},
		{in: "etcd://a:1/x", bad: true},
		{in: "a:2379", bad: true},
	} {
		got, err := ParseURL(tc.in)
		if tc.bad {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("ParseURL(%q) = %v, %v; want ErrInvalid", tc.in, got, err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParseURL(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestBlocksOf(t *testing.T) {
	for _, tc := range []struct {
		subnet string
		bits   int
		n      int
		first  string
		last   string
	}{
		{"10.244.0.0/16", 26, 1024, "10.244.0.0/26", "10.244.255.192/26"},
		{"10.0.0.0/24", 24, 1, "10.0.0.0/24", "10.0.0.0/24"},
		{"10.0.0.5/30", 30, 1, "10.0.0.4/30", "10.0.0.4/30"},
	} {
		var got []netip.Prefix
		for p := range blocksOf(netip.MustParsePrefix(tc.subnet), tc.bits) {
			got = append(got, p)
		}
		if len(got) != tc.n || got[0].String() != tc.first || got[len(got)-1].String() != tc.last {
			t.Errorf("blocksOf(%s, %d): %d blocks, %v … %v", tc.subnet, tc.bits, len(got), got[0], got[len(got)-1])
		}
	}
}

func TestFree(t *testing.T) {
	b := []Block{{Prefix: netip.MustParsePrefix("10.0.0.0/30")}, {Prefix: netip.MustParsePrefix("10.0.0.8/30")}}
	used := map[netip.Addr]bool{}
	var got []string
	for a := free(b, used); a.IsValid(); a = free(b, used) {
		used[a] = true
		got = append(got, a.String())
	}
	// A block's first address is the host's own.
	want := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.9", "10.0.0.10", "10.0.0.11"}
	if !slices.Equal(got, want) {
		t.Errorf("free handed out %v, want %v", got, want)
	}
}
