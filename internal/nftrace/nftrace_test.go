package nftrace

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	vnl "github.com/vishvananda/netlink"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/nsnet/nsnet/internal/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m) }

func attr(typ uint16, data []byte) netlink.Attribute { return netlink.Attribute{Type: typ, Data: data} }

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// traceMsg builds a trace message as the kernel sends one.
func traceMsg(t *testing.T, family byte, attrs ...netlink.Attribute) netlink.Message {
	t.Helper()
	b, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		t.Fatal(err)
	}
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_TRACE)},
		Data:   append([]byte{family, 0, 0, 0}, b...),
	}
}

func TestDecode(t *testing.T) {
	verdict := func(code int32, chain string) netlink.Attribute {
		inner := []netlink.Attribute{attr(unix.NFTA_VERDICT_CODE, be32(uint32(code)))}
		if chain != "" {
			inner = append(inner, attr(unix.NFTA_VERDICT_CHAIN, append([]byte(chain), 0)))
		}
		b, _ := netlink.MarshalAttributes(inner)
		return netlink.Attribute{Type: unix.NFTA_TRACE_VERDICT | unix.NLA_F_NESTED, Data: b}
	}
	ip4 := make([]byte, 20)
	ip4[0], ip4[9] = 0x45, unix.IPPROTO_TCP
	copy(ip4[12:], []byte{10, 0, 0, 2})
	copy(ip4[16:], []byte{198, 51, 100, 10})
	tcp := make([]byte, 20)
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 80)
	tcp[13] = 0x02 // SYN
	cases := []struct {
		name  string
		msg   netlink.Message
		want  string
		check func(Event) bool
	}{
		{"a rule that drops", traceMsg(t, byte(nftables.TableFamilyIPv4),
			attr(unix.NFTA_TRACE_TABLE, []byte("filter\x00")), attr(unix.NFTA_TRACE_CHAIN, []byte("FORWARD\x00")),
			attr(unix.NFTA_TRACE_TYPE, be32(unix.NFT_TRACETYPE_RULE)), attr(unix.NFTA_TRACE_RULE_HANDLE, binary.BigEndian.AppendUint64(nil, 7)),
			verdict(nfDrop, ""), attr(unix.NFTA_TRACE_ID, be32(99)),
			attr(unix.NFTA_TRACE_NETWORK_HEADER, ip4), attr(unix.NFTA_TRACE_TRANSPORT_HEADER, tcp)),
			"ip filter FORWARD: rule handle 7: drop",
			func(e Event) bool {
				return e.ID == 99 && e.Packet.Src == netip.MustParseAddr("10.0.0.2") && e.Packet.DstPort == 80 && e.Packet.TCPFlags == 0x02
			}},
		{"a jump", traceMsg(t, byte(nftables.TableFamilyINet),
			attr(unix.NFTA_TRACE_TABLE, []byte("nsnet\x00")), attr(unix.NFTA_TRACE_CHAIN, []byte("forward\x00")),
			attr(unix.NFTA_TRACE_TYPE, be32(unix.NFT_TRACETYPE_RULE)), attr(unix.NFTA_TRACE_RULE_HANDLE, binary.BigEndian.AppendUint64(nil, 3)),
			verdict(unix.NFT_JUMP, "isolate")),
			"inet nsnet forward: rule handle 3: jump isolate", nil},
		{"a chain's policy", traceMsg(t, byte(nftables.TableFamilyBridge),
			attr(unix.NFTA_TRACE_TABLE, []byte("b\x00")), attr(unix.NFTA_TRACE_CHAIN, []byte("fwd\x00")),
			attr(unix.NFTA_TRACE_TYPE, be32(unix.NFT_TRACETYPE_POLICY)), attr(unix.NFTA_TRACE_POLICY, be32(nfAccept)),
			attr(unix.NFTA_TRACE_IIF, be32(4)), attr(unix.NFTA_TRACE_OIF, be32(5))),
			"bridge b fwd: policy accept", func(e Event) bool { return e.IIF == 4 && e.OIF == 5 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, ok := Decode(c.msg)
			if !ok || e.String() != c.want || (c.check != nil && !c.check(e)) {
				t.Errorf("Decode: %v %q %+v; want %q", ok, e.String(), e, c.want)
			}
		})
	}
	if _, ok := Decode(netlink.Message{Header: netlink.Header{Type: 1}}); ok {
		t.Error("Decode took a message that is no trace event")
	}
}

// selfNS opens the test's own (private) network namespace.
func selfNS(t *testing.T) int {
	t.Helper()
	nstest.Require(t)
	fd, err := unix.Open("/proc/self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// The kernel's own trace of a ping to a local address: seen at output,
// dropped by a chain of another table at input, then nothing left of the
// tracer's table.
func TestTraceLocalPing(t *testing.T) {
	fd := selfNS(t)
	if lo, err := vnl.LinkByName("lo"); err != nil || vnl.LinkSetUp(lo) != nil {
		t.Fatalf("lo in the test namespace: %v", err)
	}
	// A chain of another table that drops what comes in.
	c, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		t.Fatal(err)
	}
	fw := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "fw"})
	drop := nftables.ChainPolicyDrop
	c.AddChain(&nftables.Chain{Table: fw, Name: "in", Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &drop})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	defer func() { c.DelTable(fw); _ = c.Flush() }()

	const magic = 0x6e736e74
	tr, err := Start(fd, "nsnet-doctor-test", Match{Magic: magic})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := icmp.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: os.Getpid() & 0xffff, Seq: 1, Data: binary.BigEndian.AppendUint32(nil, magic)}}
	b, _ := msg.Marshal(nil)
	// An unmarked ping first: it must not be traced.
	other := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: 1, Seq: 1, Data: []byte("none")}}
	ob, _ := other.Marshal(nil)
	if _, err := pc.WriteTo(ob, &net.IPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.WriteTo(b, &net.IPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		t.Fatal(err)
	}
	var evs []Event
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		evs, _ = tr.Events()
		if slices.ContainsFunc(evs, func(e Event) bool { return e.Table == "fw" }) {
			break
		}
	}
	if err := tr.Stop(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, e := range evs {
		lines = append(lines, e.String())
		if e.Packet.Proto == unix.IPPROTO_ICMP && e.Packet.ICMPType == 8 && e.Packet.Dst != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("event of another packet: %+v", e)
		}
	}
	all := strings.Join(lines, "\n")
	for _, want := range []string{"inet nsnet-doctor-test output: policy accept", "ip fw in: policy drop"} {
		if !strings.Contains(all, want) {
			t.Errorf("trace lacks %q:\n%s", want, all)
		}
	}
	if n := strings.Count(all, "ip fw in: policy drop"); n != 1 {
		t.Errorf("%d drops traced, want 1 (the unmarked ping traced too?):\n%s", n, all)
	}
	tables, _ := c.ListTables()
	for _, tab := range tables {
		if strings.HasPrefix(tab.Name, "nsnet-doctor") {
			t.Errorf("table %s left behind", tab.Name)
		}
	}
}

// A table of a run that is gone is removed; one of a live run is not.
func TestRemoveStale(t *testing.T) {
	fd := selfNS(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	c, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		t.Fatal(err)
	}
	mine := fmt.Sprintf("stale-%d", os.Getpid())
	gone := fmt.Sprintf("stale-%d", dead.Process.Pid)
	for _, n := range []string{mine, gone, "stale-x"} {
		c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: n})
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	removed, err := RemoveStale(fd, "stale-")
	if err != nil || len(removed) != 1 || removed[0] != "inet "+gone {
		t.Errorf("RemoveStale: %v, %v; want [inet %s]", removed, err, gone)
	}
	tables, _ := c.ListTables()
	var names []string
	for _, tab := range tables {
		names = append(names, tab.Name)
	}
	if !slices.Contains(names, mine) || !slices.Contains(names, "stale-x") || slices.Contains(names, gone) {
		t.Errorf("tables left: %v", names)
	}
}
