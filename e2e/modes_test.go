package e2e

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nsnet/nsnet/internal/netns"
)

// TestMacvlan puts members straight on a LAN segment: a parent veth in the
// host whose peer sits in a namespace standing for the LAN.
func TestMacvlan(t *testing.T) {
	l := newLab(t)
	lan := strings.TrimSuffix(l.host, "-host") + "-lan"
	l.fixture("ip", "netns", "add", lan)
	l.names = append(l.names, lan)
	l.fixture("ip", "-n", l.host, "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", lan)
	l.fixture("ip", "-n", l.host, "link", "set", "lan0", "up")
	l.fixture("ip", "-n", lan, "addr", "add", "192.0.2.1/24", "dev", "eth0")
	l.fixture("ip", "-n", lan, "link", "set", "eth0", "up")
	m1, m2 := l.ns("m1"), l.ns("m2")
	l.must("net", "create", "mv", "--driver", "macvlan", "--parent", "lan0", "--subnet", "192.0.2.0/24", "--gateway", "192.0.2.1")
	l.must("net", "connect", "mv", m1)
	l.must("net", "connect", "mv", m2)
	ip1, ip2 := l.addrOf("mv", m1, false), l.addrOf("mv", m2, false)
	if ip1 != "192.0.2.2" || ip2 != "192.0.2.3" {
		t.Errorf("addresses %s %s, want 192.0.2.2 and .3 (the gateway is the LAN's)", ip1, ip2)
	}
	if out := l.fixture("ip", "-n", m1, "-d", "link", "show", "eth0"); !strings.Contains(out, "macvlan mode bridge") {
		t.Errorf("member interface is not a bridge-mode macvlan:\n%s", out)
	}
	if _, err := execCommand("ip", "netns", "exec", lan, "ping", "-c1", "-W1", ip1); err != nil {
		t.Errorf("LAN cannot reach member: %v", err)
	}
	l.mustPing(m1, "192.0.2.1")
	l.mustPing(m1, ip2)
	if out := l.fixture("ip", "-n", m1, "route", "show", "default"); !strings.Contains(out, "via 192.0.2.1") {
		t.Errorf("member default route = %q", out)
	}
	l.must("net", "disconnect", "mv", m1)
	if out := l.fixture("ip", "-n", m1, "-br", "link"); strings.Contains(out, "eth0") {
		t.Errorf("macvlan left after disconnect:\n%s", out)
	}
	l.must("net", "rm", "--force", "mv")
}

// TestTap opens a TAP that nsnet put on a bridge network, as a VM would,
// and exchanges real frames with a member: an ARP request in, its reply out.
func TestTap(t *testing.T) {
	l := newLab(t)
	m := l.ns("m")
	l.must("net", "create", "vms", "--subnet", "10.20.0.0/24")
	l.must("net", "connect", "vms", m)
	l.must("tap", "create", "tap0", "--net", "vms", "--ip", "10.20.0.50")
	if _, err := l.run("net", "connect", "vms", l.ns("x"), "--ip", "10.20.0.50"); err == nil || !strings.Contains(err.Error(), "leased to TAP tap0") {
		t.Errorf("the guest's address was not reserved: %v", err)
	}
	if _, err := l.run("net", "rm", "vms"); err == nil || !strings.Contains(err.Error(), "1 member(s) and 1 TAP device(s)") {
		t.Errorf("net rm with a TAP on the network: %v", err)
	}
	var inspected struct {
		Taps []struct {
			Name  string   `json:"name"`
			Addrs []string `json:"addrs"`
		} `json:"taps"`
	}
	l.jsonOf(&inspected, "net", "inspect", "vms")
	if len(inspected.Taps) != 1 || inspected.Taps[0].Name != "tap0" || inspected.Taps[0].Addrs[0] != "10.20.0.50/24" {
		t.Errorf("net inspect shows TAPs %+v, want tap0 with 10.20.0.50/24", inspected.Taps)
	}
	member := netip.MustParseAddr(l.addrOf("vms", m, false))

	f := openTap(t, l.host, "tap0")
	defer f.Close()
	guestMAC := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x50}
	// The bridge learns of the TAP's carrier through linkwatch, up to a
	// second after the open; like a guest, ask again until answered.
	deadline := time.Now().Add(5 * time.Second)
	buf := make([]byte, 2048)
	got := false
	for !got && time.Now().Before(deadline) {
		if _, err := f.Write(arpRequest(guestMAC, netip.MustParseAddr("10.20.0.50"), member)); err != nil {
			t.Fatalf("write to TAP: %v", err)
		}
		f.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		n, err := f.Read(buf)
		if err != nil {
			continue
		}
		fr := buf[:n]
		if n >= 42 && binary.BigEndian.Uint16(fr[12:14]) == 0x0806 && binary.BigEndian.Uint16(fr[20:22]) == 2 &&
			bytes.Equal(fr[28:32], member.AsSlice()) && bytes.Equal(fr[0:6], guestMAC) {
			got = true
		}
	}
	if !got {
		t.Fatalf("no ARP reply from member %s came out of the TAP", member)
	}
	f.Close()
	l.must("tap", "rm", "tap0")
	if out := l.fixture("ip", "-n", l.host, "-br", "link"); strings.Contains(out, "tap0") {
		t.Errorf("TAP left after tap rm:\n%s", out)
	}
	l.must("net", "connect", "vms", l.ns("y"), "--ip", "10.20.0.50") // the lease is free again
}

// openTap attaches to a persistent TAP in namespace ns, as QEMU does.
func openTap(t *testing.T, ns, name string) *os.File {
	t.Helper()
	h, err := netns.Open(netns.Path(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var fd int
	err = netns.Do(h, func() error {
		var err error
		fd, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		var req [unix.IFNAMSIZ + 64]byte
		copy(req[:], name)
		*(*uint16)(unsafe.Pointer(&req[unix.IFNAMSIZ])) = unix.IFF_TAP | unix.IFF_NO_PI
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(&req[0]))); errno != 0 {
			unix.Close(fd)
			return errno
		}
		return nil
	})
	if err != nil {
		t.Fatalf("open TAP %s: %v", name, err)
	}
	return os.NewFile(uintptr(fd), name)
}

func arpRequest(mac net.HardwareAddr, from, to netip.Addr) []byte {
	fr := make([]byte, 42)
	copy(fr[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(fr[6:12], mac)
	binary.BigEndian.PutUint16(fr[12:], 0x0806)
	binary.BigEndian.PutUint16(fr[14:], 1)      // Ethernet
	binary.BigEndian.PutUint16(fr[16:], 0x0800) // IPv4
	fr[18], fr[19] = 6, 4
	binary.BigEndian.PutUint16(fr[20:], 1) // request
	copy(fr[22:28], mac)
	copy(fr[28:32], from.AsSlice())
	copy(fr[38:42], to.AsSlice())
	return fr
}

// TestShareAndDefaultRoute covers Docker's container:OTHER mode and which
// network gives a namespace its default route.
func TestShareAndDefaultRoute(t *testing.T) {
	l := newLab(t)
	l.must("net", "create", "n1", "--subnet", "10.0.21.0/24")
	l.must("net", "create", "n2", "--subnet", "10.0.22.0/24")
	a := l.ns("a")
	b := strings.TrimSuffix(l.host, "-host") + "-b"
	l.must("ns", "create", b, "--share", a)
	l.must("net", "connect", "n1", a)
	var info struct {
		Interfaces []struct {
			Name  string   `json:"name"`
			Addrs []string `json:"addrs"`
		} `json:"interfaces"`
	}
	l.jsonOf(&info, "ns", "inspect", b)
	if len(info.Interfaces) != 2 || info.Interfaces[1].Name != "eth0" || len(info.Interfaces[1].Addrs) == 0 || info.Interfaces[1].Addrs[0] != "10.0.21.2/24" {
		t.Errorf("shared namespace interfaces = %+v, want a's eth0 10.0.21.2/24", info.Interfaces)
	}
	listen(t, a, "127.0.0.1:7000")
	if _, err := dial(b, "127.0.0.1:7000"); err != nil {
		t.Errorf("shared namespaces do not share localhost: %v", err)
	}
	// Both names are one namespace: the same resolver, the same networks
	// (issue 10, item 10).
	if out := l.must("exec", b, "--", "cat", "/etc/resolv.conf"); !strings.Contains(out, "nameserver 10.0.21.1") {
		t.Errorf("resolv.conf seen through the shared name:\n%s", out)
	}
	var nss []struct {
		Name     string   `json:"name"`
		Networks []string `json:"networks"`
	}
	l.jsonOf(&nss, "ns", "ls")
	for _, n := range nss {
		if (n.Name == a || n.Name == b) && (len(n.Networks) != 1 || n.Networks[0] != "n1") {
			t.Errorf("ns ls shows %s in %v, want [n1]", n.Name, n.Networks)
		}
	}

	// The first network joined keeps the default route...
	l.must("net", "connect", "n2", a)
	if r := l.fixture("ip", "-n", a, "route", "show", "default"); !strings.Contains(r, "via 10.0.21.1") {
		t.Errorf("default route after joining n2 = %q, want still via n1's 10.0.21.1", r)
	}
	// ...unless a connect asks for it.
	l.must("net", "disconnect", "n2", a)
	l.must("net", "connect", "n2", a, "--default-route")
	if r := l.fixture("ip", "-n", a, "route", "show", "default"); !strings.Contains(r, "via 10.0.22.1") || strings.Count(r, "default") != 1 {
		t.Errorf("default route after --default-route = %q, want only via 10.0.22.1", r)
	}
	// Leaving the network of the default route moves it to one still
	// joined (issue 10, item 19).
	l.must("net", "disconnect", "n2", a)
	if r := l.fixture("ip", "-n", a, "route", "show", "default"); !strings.Contains(r, "via 10.0.21.1") {
		t.Errorf("default route after leaving n2 = %q, want via n1's 10.0.21.1", r)
	}
	l.must("net", "connect", "n2", a, "--default-route")
	l.must("net", "rm", "--force", "n2")
	if r := l.fixture("ip", "-n", a, "route", "show", "default"); !strings.Contains(r, "via 10.0.21.1") {
		t.Errorf("default route after n2 went = %q, want via n1's 10.0.21.1", r)
	}

	// The namespace lives while either name does, memberships included.
	l.must("ns", "rm", a)
	l.mustPing(b, "10.0.21.1")
	if out := l.must("exec", b, "--", "cat", "/etc/resolv.conf"); !strings.Contains(out, "nameserver 10.0.21.1") {
		t.Errorf("resolv.conf of the remaining name after the first went:\n%s", out)
	}
	if n := l.network("n1"); len(n.Members) != 1 || n.Members[0].Namespace != b {
		t.Errorf("n1 members after removing %s = %+v, want %s", a, n.Members, b)
	}
	l.must("ns", "rm", b)
	if n := l.network("n1"); len(n.Members) != 0 {
		t.Errorf("n1 members after removing both names = %+v", n.Members)
	}
	if links := l.nsnetLinks(); len(links) != 1 { // n1's bridge (n2 went)
		t.Errorf("links left = %v, want only n1's bridge", links)
	}
}

// The original name of a shared namespace removed behind nsnet's back
// (ip netns del): the namespace lives on under the --share name, and gc
// passes the memberships there instead of cutting it off.
func TestShareOutlivesOriginal(t *testing.T) {
	l := newLab(t)
	l.must("net", "create", "n", "--subnet", "10.0.23.0/24")
	a := l.ns("a")
	b := strings.TrimSuffix(l.host, "-host") + "-b"
	c := strings.TrimSuffix(l.host, "-host") + "-c"
	l.must("ns", "create", b, "--share", a)
	l.must("ns", "create", c, "--share", a)
	l.names = append(l.names, b, c)
	l.must("net", "connect", "n", a)
	l.fixture("ip", "netns", "del", a)

	out := l.must("gc")
	if !strings.Contains(out, "pass to "+b) {
		t.Errorf("gc said:\n%s\nwant the memberships passed to %s", out, b)
	}
	var n network
	l.jsonOf(&n, "net", "inspect", "n")
	if len(n.Members) != 1 || n.Members[0].Namespace != b {
		t.Fatalf("members after gc: %+v, want %s alone", n.Members, b)
	}
	l.mustPing(b, "10.0.23.1")
	for _, ns := range []string{b, c} {
		if out := l.must("exec", ns, "--", "cat", "/etc/resolv.conf"); !strings.Contains(out, "nameserver 10.0.23.1") {
			t.Errorf("resolv.conf of %s:\n%s", ns, out)
		}
	}
	// And the other way: a --share name deleted while the name it shares
	// lives on.
	d := strings.TrimSuffix(l.host, "-host") + "-d"
	l.must("net", "create", "n2", "--subnet", "10.0.24.0/24")
	l.must("ns", "create", d, "--share", b)
	l.must("net", "connect", "n2", d)
	l.fixture("ip", "netns", "del", d)
	if out := l.must("gc"); !strings.Contains(out, d+" was deleted behind nsnet's back; its memberships and links pass to "+b) {
		t.Errorf("gc after the share name went:\n%s", out)
	}
	l.jsonOf(&n, "net", "inspect", "n2")
	if len(n.Members) != 1 || n.Members[0].Namespace != b {
		t.Errorf("members of n2 after gc: %+v, want %s", n.Members, b)
	}
	l.must("net", "rm", "n2", "--force")
	l.must("net", "disconnect", "n", b)
	if links := l.hostLinks(); len(links) != 2 { // lo and the bridge
		t.Errorf("host links after disconnect: %v", links)
	}
	l.must("ns", "rm", c)
	l.must("ns", "rm", b)
}
