package engine

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nsnet/nsnet/internal/driver"
	"github.com/nsnet/nsnet/internal/firewall"
	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/store"
)

var protocols = map[string]uint8{"tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP, "sctp": unix.IPPROTO_SCTP}

// ParsePort reads a -p value: [HOSTIP:]HOSTPORT[-END]:PORT[-END][/tcp|/udp|/sctp],
// with an IPv6 HOSTIP in brackets.
func ParsePort(s string) (store.PortMap, error) {
	var m store.PortMap
	rest, proto, found := strings.Cut(s, "/")
	m.Proto = "tcp"
	if found {
		if _, ok := protocols[proto]; !ok {
			return m, fmt.Errorf("published port %q: unknown protocol %q (use tcp, udp or sctp)", s, proto)
		}
		m.Proto = proto
	}
	if strings.HasPrefix(rest, "[") {
		ip, after, ok := strings.Cut(rest[1:], "]:")
		a, err := netip.ParseAddr(ip)
		if !ok || err != nil || !a.Is6() {
			return m, fmt.Errorf("published port %q: invalid host address %q", s, ip)
		}
		m.HostIP, rest = a, after
	}
	parts := strings.Split(rest, ":")
	switch {
	case len(parts) == 3 && !m.HostIP.IsValid():
		a, err := netip.ParseAddr(parts[0])
		if err != nil {
			return m, fmt.Errorf("published port %q: invalid host address %q", s, parts[0])
		}
		m.HostIP, parts = a, parts[1:]
	case len(parts) != 2:
		return m, fmt.Errorf("published port %q: want [HOSTIP:]HOSTPORT[-END]:PORT[-END][/PROTO]", s)
	}
	hlo, hhi, err := portRange(parts[0])
	if err != nil {
		return m, fmt.Errorf("published port %q: host port %w", s, err)
	}
	clo, chi, err := portRange(parts[1])
	if err != nil {
		return m, fmt.Errorf("published port %q: port %w", s, err)
	}
	if hhi-hlo != chi-clo {
		return m, fmt.Errorf("published port %q: host range has %d ports, member range %d", s, hhi-hlo+1, chi-clo+1)
	}
	m.HostPort, m.Port = uint16(hlo), uint16(clo)
	if hhi != hlo {
		m.HostEnd = uint16(hhi)
	}
	return m, nil
}

func portRange(s string) (lo, hi int, err error) {
	a, b, isRange := strings.Cut(s, "-")
	if lo, err = portNumber(a); err != nil {
		return 0, 0, err
	}
	hi = lo
	if isRange {
		if hi, err = portNumber(b); err != nil {
			return 0, 0, err
		}
		if hi < lo {
			return 0, 0, fmt.Errorf("range %s is reversed", s)
		}
	}
	return lo, hi, nil
}

func portNumber(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("%d is outside 1..65535", n)
	}
	return n, nil
}

// expandPorts lists the map entries a member's mappings need: one per port
// and per member address of the mapping's family.
func expandPorts(maps []store.PortMap, addrs []netip.Prefix) []firewall.Port {
	var out []firewall.Port
	for _, m := range maps {
		for _, a := range addrs {
			if m.HostIP.IsValid() && m.HostIP.Is4() != a.Addr().Is4() {
				continue
			}
			for i := 0; i < m.Count(); i++ {
				out = append(out, firewall.Port{HostIP: m.HostIP, Proto: protocols[m.Proto],
					HostPort: m.HostPort + uint16(i), Addr: a.Addr(), Port: m.Port + uint16(i)})
			}
		}
	}
	return out
}

// checkPorts refuses mappings the network cannot carry or another member
// holds, in the transaction that will record them.
func checkPorts(tx *store.Tx, h *kernel.NS, n store.Network, caps driver.Capabilities, a store.Attachment, maps []store.PortMap, force bool) error {
	if len(maps) == 0 {
		return nil
	}
	switch {
	case n.Internal:
		return fmt.Errorf("network %q is internal: nothing outside it could reach a published port", n.Name)
	case !caps.Ports:
		return fmt.Errorf("network %q is a %s network: its members are on the LAN, not behind the host", n.Name, n.Driver)
	}
	var local []netlink.Addr
	for _, m := range maps {
		if !m.HostIP.IsValid() {
			continue
		}
		if !containsFamily(a.Addrs, m.HostIP) {
			return fmt.Errorf("published port %s: the member has no address of its family", m)
		}
		if local == nil {
			var err error
			if local, err = kernel.Retry(func() ([]netlink.Addr, error) { return h.NL.AddrList(nil, netlink.FAMILY_ALL) }); err != nil {
				return fmt.Errorf("read host addresses: %w", err)
			}
		}
		if !hasAddr(local, m.HostIP) {
			return fmt.Errorf("published port %s: %s is not an address of the host", m, m.HostIP)
		}
	}
	seen := map[string]bool{}
	for _, m := range maps {
		for i := 0; i < m.Count(); i++ {
			port := m.HostPort + uint16(i)
			key := fmt.Sprintf("%s/%d/%s", m.Proto, port, m.HostIP)
			if seen[key] {
				return errorf(ErrExists, "published port %s/%d is given twice", m.Proto, port)
			}
			seen[key] = true
			if owner, ok := tx.PortHolder(n.HostNetns, m.Proto, port, m.HostIP); ok {
				return errorf(ErrInUse, "host port %s/%d is already published by %s", m.Proto, port, owner)
			}
		}
	}
	if force {
		return nil
	}
	return checkListeners(h, maps)
}

// checkListeners refuses a mapping whose host port a socket of the host
// already holds: published, the port would be taken from that service
// (sshd, a database) for every connection DNAT sees, from outside and
// from the host's own 127.0.0.1 alike. A mapping to one host address
// collides with a service on that address or on all of them.
func checkListeners(h *kernel.NS, maps []store.PortMap) error {
	var held []kernel.Listener
	for _, m := range maps {
		if protocols[m.Proto] != unix.IPPROTO_TCP && protocols[m.Proto] != unix.IPPROTO_UDP {
			continue // SCTP: not listed by socket diagnostics
		}
		if held == nil {
			var err error
			if held, err = h.Listeners(); err != nil {
				return fmt.Errorf("read the host's listening sockets: %w", err)
			}
			if held == nil {
				held = []kernel.Listener{}
			}
		}
		for _, l := range held {
			if l.Proto != protocols[m.Proto] || int(l.Port) < int(m.HostPort) || int(l.Port) >= int(m.HostPort)+m.Count() {
				continue
			}
			if m.HostIP.IsValid() && !l.Addr.IsUnspecified() && l.Addr != m.HostIP {
				continue
			}
			where := "every address"
			if !l.Addr.IsUnspecified() {
				where = l.Addr.String()
			}
			return errorf(ErrInUse, "host port %s/%d is held by a service of the host (listening on %s); publish another port, or use --force to take it over", m.Proto, l.Port, where)
		}
	}
	return nil
}

func hasAddr(list []netlink.Addr, a netip.Addr) bool {
	for _, l := range list {
		if p, ok := kernel.ToPrefix(l.IPNet); ok && p.Addr() == a {
			return true
		}
	}
	return false
}

// recordPorts indexes the member's host ports.
func recordPorts(tx *store.Tx, host, network, ns string, maps []store.PortMap) error {
	for _, m := range maps {
		for i := 0; i < m.Count(); i++ {
			if err := tx.PutPort(host, m.Proto, m.HostPort+uint16(i), m.HostIP, store.MemberOwner(network, ns)); err != nil {
				return err
			}
		}
	}
	return nil
}

// forgetPorts frees the member's host ports.
func forgetPorts(tx *store.Tx, host, network, ns string, maps []store.PortMap) error {
	for _, m := range maps {
		for i := 0; i < m.Count(); i++ {
			port := m.HostPort + uint16(i)
			if owner, ok := tx.PortHolder(host, m.Proto, port, m.HostIP); ok && owner == store.MemberOwner(network, ns) {
				if err := tx.DeletePort(host, m.Proto, port, m.HostIP); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// unpublish removes a member's map entries. A crash may have left some
// never added, and one missing entry fails a whole batch, so a failed batch
// is retried entry by entry.
func (m *Manager) unpublish(op store.Op) error {
	ports := expandPorts(op.Ports, op.Addrs)
	if len(ports) == 0 {
		return nil
	}
	h, err := m.opHost(op)
	if err != nil || h == nil {
		return err
	}
	fw, err := m.firewall(h)
	if err != nil {
		return err
	}
	if err := fw.Publish(nil, ports); err == nil || !errors.Is(err, unix.ENOENT) {
		return err
	}
	for _, p := range ports {
		fw, err := m.firewall(h)
		if err != nil {
			return err
		}
		if err := fw.Publish(nil, []firewall.Port{p}); err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
	}
	return nil
}
