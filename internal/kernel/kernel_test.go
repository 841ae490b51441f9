package kernel

import (
	"net"
	"net/netip"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nsnet/nsnet/internal/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m) }

// Listeners sees each kind of socket it is asked about, and only those:
// TCP listening, UDP bound without a peer, IPv6 only or not; not a TCP
// connection, nor a connected UDP socket.
func TestListeners(t *testing.T) {
	nstest.Require(t)
	ns, err := Current()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if lo, err := ns.NL.LinkByName("lo"); err != nil || ns.NL.LinkSetUp(lo) != nil {
		t.Fatalf("lo: %v", err)
	}
	closeAfter := func(c interface{ Close() error }, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
	l4, err := net.Listen("tcp4", "127.0.0.1:7001")
	closeAfter(l4, err)
	l6, err := net.Listen("tcp6", "[::]:7002") // Go sets IPV6_V6ONLY here
	closeAfter(l6, err)
	ld, err := net.Listen("tcp", ":7003") // dual stack
	closeAfter(ld, err)
	u, err := net.ListenPacket("udp4", "127.0.0.1:7004")
	closeAfter(u, err)
	conn, err := net.Dial("tcp4", "127.0.0.1:7001")
	closeAfter(conn, err)
	cu, err := net.Dial("udp4", "127.0.0.1:7004")
	closeAfter(cu, err)

	got, err := ns.Listeners()
	if err != nil {
		t.Fatal(err)
	}
	want := []Listener{
		{Proto: unix.IPPROTO_TCP, Addr: netip.MustParseAddr("127.0.0.1"), Port: 7001},
		{Proto: unix.IPPROTO_TCP, Addr: netip.IPv6Unspecified(), Port: 7002, V6Only: true},
		{Proto: unix.IPPROTO_TCP, Addr: netip.IPv6Unspecified(), Port: 7003},
		{Proto: unix.IPPROTO_UDP, Addr: netip.MustParseAddr("127.0.0.1"), Port: 7004},
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("Listeners lacks %+v: %+v", w, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("Listeners: %d sockets, want %d (a connection or a connected UDP socket listed?): %+v", len(got), len(want), got)
	}
}
