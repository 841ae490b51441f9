package resolver

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestUpstreams(t *testing.T) {
	tests := []struct {
		name string
		conf string
		want []string
	}{
		{"empty", "", nil},
		{"systemd stub", "# generated\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch example.test\n", []string{"127.0.0.53:53"}},
		{"mixed families in order", "nameserver 192.0.2.1\nnameserver 2001:db8::53\nnameserver ::1\nnameserver 192.0.2.2\n",
			[]string{"192.0.2.1:53", "[2001:db8::53]:53", "[::1]:53", "192.0.2.2:53"}},
		{"zone", "nameserver fe80::1%eth0\n", []string{"[fe80::1%eth0]:53"}},
		{"more than three", "nameserver 192.0.2.1\nnameserver 192.0.2.2\nnameserver 192.0.2.3\nnameserver 192.0.2.4\n",
			[]string{"192.0.2.1:53", "192.0.2.2:53", "192.0.2.3:53", "192.0.2.4:53"}},
		{"comments, junk and trailing fields", "#nameserver 192.0.2.9\n; nameserver 192.0.2.8\nnameserver\nnameserver banana\n  nameserver\t192.0.2.7  # main\nnameservers 192.0.2.6\n",
			[]string{"192.0.2.7:53"}},
		{"mapped IPv4", "nameserver ::ffff:192.0.2.5\n", []string{"192.0.2.5:53"}},
		{"no final newline", "nameserver 192.0.2.1", []string{"192.0.2.1:53"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "resolv.conf")
			if err := os.WriteFile(p, []byte(tc.conf), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := Upstreams(p)
			if err != nil {
				t.Fatal(err)
			}
			var want []netip.AddrPort
			for _, s := range tc.want {
				want = append(want, netip.MustParseAddrPort(s))
			}
			if !slices.Equal(got, want) {
				t.Errorf("Upstreams = %v, want %v", got, want)
			}
		})
	}
}

func TestUpstreamsMissingFile(t *testing.T) {
	_, err := Upstreams(filepath.Join(t.TempDir(), "absent"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Upstreams of a missing file: %v, want a not-exist error", err)
	}
}
