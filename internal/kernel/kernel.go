// Package kernel gives nsnet a netlink handle and sysctl access bound to one
// network namespace, so callers never switch their own thread's namespace.
package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"unicode"
	"unsafe"

	mdnetlink "github.com/mdlayher/netlink"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/nsnet/nsnet/internal/netns"
)

// NS is one network namespace as nsnet works on it.
type NS struct {
	// Path is the namespace file; empty means the namespace nsnet runs in.
	Path string
	fd   netns.Handle
	// NL is a netlink handle whose sockets live in the namespace.
	NL *netlink.Handle
	// current: NL makes its sockets where the process runs (Current).
	current bool
}

// Open binds a handle to the namespace at path ("" for nsnet's own).
func Open(path string) (*NS, error) {
	fd, err := netns.Open(path)
	if err != nil {
		return nil, err
	}
	h, err := netlink.NewHandleAt(vnetns.NsHandle(fd), unix.NETLINK_ROUTE)
	if err != nil {
		fd.Close()
		return nil, fmt.Errorf("netlink in namespace %s: %w", describe(path), err)
	}
	return &NS{Path: path, fd: fd, NL: h}, nil
}

// Current binds a handle to the calling process's own namespace without
// entering it: its netlink requests use fresh sockets where the process
// runs, so it needs no privilege to read, and changes only what the
// process's capabilities allow. Unit tests use it as a host that nsnet
// only looks at.
func Current() (*NS, error) {
	fd, err := netns.Open("/proc/self/ns/net")
	if err != nil {
		return nil, err
	}
	return &NS{fd: fd, NL: &netlink.Handle{}, current: true}, nil
}

// Listener is a socket of the namespace that holds a local port: a TCP
// socket listening, or a UDP socket bound and not connected. Addr is the
// unspecified address for a socket bound to every address.
type Listener struct {
	Proto uint8 // unix.IPPROTO_TCP or unix.IPPROTO_UDP
	Addr  netip.Addr
	Port  uint16
	// V6Only says an IPv6 socket takes no IPv4 (IPV6_V6ONLY, nginx's
	// default for [::]): bound to ::, it does not hold the IPv4 port.
	V6Only bool
}

// Listeners lists the namespace's listening sockets of both families,
// through socket diagnostics (what `ss -lntu` reads): TCP sockets in
// LISTEN, UDP sockets with no peer. It reads the dump itself, because the
// netlink library's does not return IPV6_V6ONLY, and it asks the kernel
// for listening TCP sockets only rather than every connection.
func (n *NS) Listeners() ([]Listener, error) {
	c, err := n.dial(unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("socket diagnostics in namespace %s: %w", describe(n.Path), err)
	}
	defer c.Close()
	var out []Listener
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		for _, proto := range []uint8{unix.IPPROTO_TCP, unix.IPPROTO_UDP} {
			// inet_diag_req_v2: family, protocol, extensions, padding, the
			// states wanted, then an empty socket id (48 bytes).
			req := make([]byte, 56)
			req[0], req[1] = fam, proto
			states := uint32(1 << tcpListen)
			if proto == unix.IPPROTO_UDP {
				states = ^uint32(0)
			}
			binary.NativeEndian.PutUint32(req[4:8], states)
			msgs, err := dumpConsistent(c, mdnetlink.Message{
				Header: mdnetlink.Header{Type: unix.SOCK_DIAG_BY_FAMILY, Flags: mdnetlink.Request | mdnetlink.Dump},
				Data:   req,
			})
			if err != nil {
				return nil, fmt.Errorf("list sockets: %w", err)
			}
			for _, m := range msgs {
				if l, ok := parseListener(proto, m.Data); ok {
					out = append(out, l)
				}
			}
		}
	}
	return out, nil
}

// parseListener reads an inet_diag_msg: family, state, timer, retrans,
// then the socket id (source port big-endian at 4, destination port at
// 6, source address at 8, 16 bytes), 72 bytes in all; attributes follow.
// A UDP socket with a peer is not a listener.
func parseListener(proto uint8, b []byte) (Listener, bool) {
	if len(b) < 72 || binary.BigEndian.Uint16(b[6:8]) != 0 {
		return Listener{}, false
	}
	l := Listener{Proto: proto, Port: binary.BigEndian.Uint16(b[4:6])}
	if b[0] == unix.AF_INET {
		l.Addr = netip.AddrFrom4([4]byte(b[8:12]))
	} else {
		l.Addr = netip.AddrFrom16([16]byte(b[8:24])).Unmap()
	}
	if ad, err := mdnetlink.NewAttributeDecoder(b[72:]); err == nil {
		for ad.Next() {
			if ad.Type() == inetDiagSKV6Only {
				l.V6Only = ad.Uint8() == 1
			}
		}
	}
	return l, true
}

// inetDiagSKV6Only is INET_DIAG_SKV6ONLY (linux/inet_diag.h), the
// attribute the kernel gives every IPv6 socket in a dump.
const inetDiagSKV6Only = 11

// tcpListen is TCP_LISTEN in the kernel's socket states.
const tcpListen = 10

// dial opens a netlink socket of family inside the namespace.
func (n *NS) dial(family int) (*mdnetlink.Conn, error) {
	cfg := &mdnetlink.Config{}
	if !n.current {
		cfg.NetNS = int(n.fd)
	}
	return mdnetlink.Dial(family, cfg)
}

// dumpConsistent runs a dump again while the kernel says it changed
// under it (as Retry does for the netlink library's dumps).
func dumpConsistent(c *mdnetlink.Conn, req mdnetlink.Message) ([]mdnetlink.Message, error) {
	for range 10 {
		msgs, err := c.Execute(req)
		if err != nil || !slices.ContainsFunc(msgs, func(m mdnetlink.Message) bool { return m.Header.Flags&mdnetlink.DumpInterrupted != 0 }) {
			return msgs, err
		}
	}
	return nil, errors.New("the dump kept changing under it")
}

// Rule is a policy routing rule as `ip rule` shows it.
type Rule struct {
	Priority uint32
	Src, Dst netip.Prefix // invalid: all
	Table    uint32
	// Action is "lookup", "goto", "nop", "blackhole", "unreachable" or
	// "prohibit".
	Action string
}

// Rules lists the namespace's policy routing rules, both families. The
// netlink library's rule list does not read a rule's action back (it
// shows a prohibit rule as a lookup of table 0), so this reads the dump
// itself: fib_rule_hdr, then attributes.
func (n *NS) Rules() ([]Rule, error) {
	c, err := n.dial(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink in namespace %s: %w", describe(n.Path), err)
	}
	defer c.Close()
	msgs, err := dumpConsistent(c, mdnetlink.Message{
		Header: mdnetlink.Header{Type: unix.RTM_GETRULE, Flags: mdnetlink.Request | mdnetlink.Dump},
		Data:   make([]byte, 12), // fib_rule_hdr, family AF_UNSPEC: both
	})
	if err != nil {
		return nil, fmt.Errorf("list policy rules: %w", err)
	}
	actions := map[byte]string{unix.FR_ACT_TO_TBL: "lookup", unix.FR_ACT_GOTO: "goto", unix.FR_ACT_NOP: "nop",
		unix.FR_ACT_BLACKHOLE: "blackhole", unix.FR_ACT_UNREACHABLE: "unreachable", unix.FR_ACT_PROHIBIT: "prohibit"}
	var out []Rule
	for _, m := range msgs {
		if len(m.Data) < 12 {
			continue
		}
		// family, dst_len, src_len, tos, table, res1, res2, action, flags.
		h := m.Data
		r := Rule{Table: uint32(h[4]), Action: actions[h[7]]}
		if r.Action == "" {
			r.Action = fmt.Sprintf("action %d", h[7])
		}
		ad, err := mdnetlink.NewAttributeDecoder(h[12:])
		if err != nil {
			continue
		}
		prefix := func(bits byte) netip.Prefix {
			a, ok := netip.AddrFromSlice(ad.Bytes())
			if !ok {
				return netip.Prefix{}
			}
			return netip.PrefixFrom(a, int(bits))
		}
		for ad.Next() {
			switch ad.Type() {
			case unix.FRA_PRIORITY:
				r.Priority = ad.Uint32()
			case unix.FRA_TABLE:
				r.Table = ad.Uint32()
			case unix.FRA_DST:
				r.Dst = prefix(h[1])
			case unix.FRA_SRC:
				r.Src = prefix(h[2])
			}
		}
		out = append(out, r)
	}
	return out, nil
}

func describe(path string) string {
	if path == "" {
		return "(own)"
	}
	return path
}

// Fd is the namespace's open file descriptor.
func (n *NS) Fd() netns.Handle { return n.fd }

// Close releases the handle and the namespace descriptor.
func (n *NS) Close() {
	n.NL.Close()
	n.fd.Close()
}

// Sysctl is one /proc/sys key, written with slashes (interface names may
// contain dots), and its value.
type Sysctl struct{ Key, Value string }

// SetSysctls writes the keys inside the namespace, with one thread switch
// for the lot. /proc/sys/net follows the writing thread's namespace.
func (n *NS) SetSysctls(s ...Sysctl) error {
	write := func() error {
		for _, kv := range s {
			p := filepath.Join("/proc/sys", kv.Key)
			if err := os.WriteFile(p, []byte(kv.Value), 0o644); err != nil {
				return fmt.Errorf("sysctl %s=%s: %w", kv.Key, kv.Value, err)
			}
		}
		return nil
	}
	if n.Path == "" {
		return write()
	}
	return netns.Do(n.fd, write)
}

// Do runs fn on a thread inside the namespace.
func (n *NS) Do(fn func() error) error { return netns.Do(n.fd, fn) }

// Retry runs a netlink dump again while the kernel reports that it changed
// under the dump, so callers never act on a partial list.
func Retry[T any](dump func() (T, error)) (T, error) {
	var v T
	var err error
	for range 10 {
		v, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}

// LinkByName finds a link, returning (nil, nil) if none has that name.
func (n *NS) LinkByName(name string) (netlink.Link, error) {
	l, err := n.NL.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up link %s: %w", name, err)
	}
	return l, nil
}

// AddrFor converts a host address and its subnet to netlink's form; IPv6
// addresses skip duplicate address detection, which nsnet's IPAM already
// guarantees and which would otherwise delay their use by seconds.
func AddrFor(a netip.Addr, bits int) *netlink.Addr {
	na := &netlink.Addr{IPNet: PrefixNet(netip.PrefixFrom(a, bits))}
	if a.Is6() {
		na.Flags = unix.IFA_F_NODAD
	}
	return na
}

// PrefixNet converts a prefix, keeping its host bits, to the net.IPNet
// netlink uses.
func PrefixNet(p netip.Prefix) *net.IPNet {
	a := p.Addr()
	return &net.IPNet{IP: a.AsSlice(), Mask: maskOf(a, p.Bits())}
}

func maskOf(a netip.Addr, bits int) []byte {
	size := 32
	if a.Is6() {
		size = 128
	}
	m := make([]byte, size/8)
	for i := 0; i < bits; i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}

// ToPrefix converts a netlink address to a netip.Prefix.
func ToPrefix(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// Family returns netlink's family constant for an address.
func Family(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

// ValidateIfName reports why name cannot name a network interface.
func ValidateIfName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("interface name is empty")
	case len(name) >= unix.IFNAMSIZ:
		return fmt.Errorf("interface name %q is %d characters, the limit is %d", name, len(name), unix.IFNAMSIZ-1)
	case name == "." || name == "..":
		return fmt.Errorf("interface name %q is reserved", name)
	case strings.ContainsAny(name, "/:"):
		return fmt.Errorf("interface name %q contains '/' or ':'", name)
	case strings.IndexFunc(name, unicode.IsSpace) >= 0:
		return fmt.Errorf("interface name %q contains whitespace", name)
	}
	return nil
}

// Route is what an overlap check needs of a route: where it leads, and
// through which interface.
type Route struct {
	Dst netip.Prefix
	Oif int
}

// Routes lists the destinations of the main table's routes of family
// (unix.AF_INET or AF_INET6), default, blackhole and unreachable routes
// included. It asks the kernel for the main table alone (strict dump
// checking) and decodes two attributes a route: a host with a thousand
// networks has a thousand routes in main and three times as many in local,
// which netlink.RouteList dumps and decodes whole, in milliseconds.
func (n *NS) Routes(family int) ([]Route, error) {
	var out []Route
	var err error
	for range 3 {
		out = nil
		if err = n.Do(func() error { return dumpRoutes(family, &out) }); !errors.Is(err, errDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("read routes: %w", err)
	}
	return out, nil
}

// dumpRoutes reads the main table's routes of family, in the calling
// thread's namespace, into out.
func dumpRoutes(family int, out *[]Route) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// Kernels before 4.20 lack strict checking: they dump every table,
	// and parseRoute keeps the main one.
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_GET_STRICT_CHK, 1); err != nil && !errors.Is(err, unix.ENOPROTOOPT) {
		return err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	req := make([]byte, unix.SizeofNlMsghdr+unix.SizeofRtMsg)
	*(*unix.NlMsghdr)(unsafe.Pointer(&req[0])) = unix.NlMsghdr{Len: uint32(len(req)), Type: unix.RTM_GETROUTE, Flags: unix.NLM_F_REQUEST | unix.NLM_F_DUMP, Seq: 1}
	*(*unix.RtMsg)(unsafe.Pointer(&req[unix.SizeofNlMsghdr])) = unix.RtMsg{Family: uint8(family), Table: unix.RT_TABLE_MAIN}
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 1<<16)
	for {
		k, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:k])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				if m.Header.Flags&unix.NLM_F_DUMP_INTR != 0 {
					return errDumpInterrupted
				}
				return nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if e := *(*int32)(unsafe.Pointer(&m.Data[0])); e != 0 {
						return unix.Errno(-e)
					}
				}
				return nil
			case unix.RTM_NEWROUTE:
				if r, ok := parseRoute(family, &m); ok {
					*out = append(*out, r)
				}
			}
		}
	}
}

// errDumpInterrupted: the routes changed during the dump.
var errDumpInterrupted = errors.New("routes changed while being read; try again")

func parseRoute(family int, m *syscall.NetlinkMessage) (Route, bool) {
	if len(m.Data) < unix.SizeofRtMsg {
		return Route{}, false
	}
	rtm := (*unix.RtMsg)(unsafe.Pointer(&m.Data[0]))
	if rtm.Table != unix.RT_TABLE_MAIN {
		return Route{}, false
	}
	r := Route{Dst: netip.PrefixFrom(netip.IPv4Unspecified(), 0)}
	if family == unix.AF_INET6 {
		r.Dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	}
	attrs, err := syscall.ParseNetlinkRouteAttr(m)
	if err != nil {
		return Route{}, false
	}
	for _, a := range attrs {
		switch a.Attr.Type {
		case unix.RTA_DST:
			if ip, ok := netip.AddrFromSlice(a.Value); ok {
				r.Dst = netip.PrefixFrom(ip, int(rtm.Dst_len))
			}
		case unix.RTA_OIF:
			if len(a.Value) == 4 {
				r.Oif = int(*(*uint32)(unsafe.Pointer(&a.Value[0])))
			}
		}
	}
	return r, true
}
