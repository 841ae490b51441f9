// Package doctor says why two endpoints cannot talk. It reads the kernel's
// state over netlink in every namespace the path crosses (addresses,
// routes as `ip route get` chooses them, links with their state and
// master, neighbours, forwarding sysctls, other tables' forward chains)
// and walks the packet hop by hop, there and back, stopping at the first
// step that fails with the cause, the kernel object that shows it, and the
// fix. It changes nothing.
package doctor

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nsnet/nsnet/internal/firewall"
	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/netns"
)

// ErrUsage: the endpoints or the port cannot be understood.
var ErrUsage = errors.New("bad usage")

// Step is one thing the packet does, or the check that stops it.
type Step struct {
	N int `json:"n"`
	// Where is the namespace ("host" for the host's).
	Where string `json:"where"`
	What  string `json:"what"`
	OK    bool   `json:"ok"`
	// Cause, Evidence and Fix are set on the step that fails: one
	// sentence, the kernel object that shows it, and what to do.
	Cause    string `json:"cause,omitempty"`
	Evidence string `json:"evidence,omitempty"`
	Fix      string `json:"fix,omitempty"`

	// masq is the address a host masqueraded the packet to here.
	masq netip.Addr
	// repeat counts the live probe's retries that passed the same way.
	repeat int
	// dnat is where the host's published port sends the packet on.
	dnat netip.AddrPort
	// oif and pktDst are, for a live step, the interface the packet
	// left by and its destination then (after any NAT).
	oif    int
	pktDst netip.Addr
}

// Report is the whole diagnosis.
type Report struct {
	From    string `json:"from"`
	To      string `json:"to"`
	Src     string `json:"src,omitempty"`
	Dst     string `json:"dst,omitempty"`
	Port    string `json:"port,omitempty"`
	Forward []Step `json:"forward"`
	Reply   []Step `json:"reply,omitempty"`
	OK      bool   `json:"ok"`
	// Cause repeats the failing step's cause.
	Cause string `json:"cause,omitempty"`
	// Live is the real probe's trace, with --live.
	Live *Live `json:"live,omitempty"`
}

// Member is what doctor needs to know of nsnet's records: a namespace's
// memberships, for isolation and names.
type Member struct {
	Network   string
	Namespace string
	Addrs     []netip.Addr
	Aliases   []string
	// Isolated says the network is isolated from other networks; NAT
	// that it masquerades what leaves its host; Closed that nsnet admits
	// into it from outside its host only published ports and replies (a
	// bridge network with NAT, not internal).
	Isolated, NAT, Closed bool
	// Host is the network's host namespace path: isolation is between
	// networks of one host.
	Host string
}

// Input is what to diagnose.
type Input struct {
	From, To string
	// Port is "N/tcp" or "N/udp", or empty.
	Port string
	// HostPath is the host namespace ("" for the one doctor runs in).
	HostPath string
	// Members are nsnet's memberships.
	Members []Member
	// PublishedPort says whether the host publishes the port, and to
	// which member, for a TO that is the host.
	PublishedPort func(proto string, port uint16) (Published, bool)
	// Live also sends a real probe and follows it with the kernel's
	// nftables trace; the only mode that changes anything (trace tables
	// it removes afterwards).
	Live bool
}

// Published is a member's port that the host publishes: a packet to the
// host's port is DNATed to one of the member's addresses, at Port.
type Published struct {
	Member string
	Addrs  []netip.Addr
	Port   uint16
}

// place is a namespace doctor reads.
type place struct {
	name string
	ns   *kernel.NS
	// ino identifies the namespace (nsnet's records name hosts by path).
	ino uint64
	// addrs are its addresses, by interface name.
	addrs map[netip.Addr]string
}

type world struct {
	places []*place
	byName map[string]*place
	in     Input
}

func (w *world) close() {
	for _, p := range w.places {
		p.ns.Close()
	}
}

const hostName = "host"

func open(in Input) (*world, error) {
	w := &world{byName: map[string]*place{}, in: in}
	add := func(name, path string) error {
		ns, err := kernel.Open(path)
		if err != nil {
			return err
		}
		p := &place{name: name, ns: ns, ino: netns.PathInode(path), addrs: map[netip.Addr]string{}}
		addrs, err := kernel.Retry(func() ([]netlink.Addr, error) { return ns.NL.AddrList(nil, netlink.FAMILY_ALL) })
		if err != nil {
			ns.Close()
			return fmt.Errorf("addresses in %s: %w", name, err)
		}
		links, _ := kernel.Retry(func() ([]netlink.Link, error) { return ns.NL.LinkList() })
		names := map[int]string{}
		for _, l := range links {
			names[l.Attrs().Index] = l.Attrs().Name
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
				p.addrs[ip.Unmap()] = names[a.LinkIndex]
			}
		}
		w.places = append(w.places, p)
		w.byName[name] = p
		return nil
	}
	if err := add(hostName, in.HostPath); err != nil {
		return nil, err
	}
	names, err := netns.List()
	if err != nil {
		return nil, err
	}
	hostIno := netns.PathInode(in.HostPath)
	for _, n := range names {
		if netns.PathInode(netns.Path(n)) == hostIno {
			continue // the host under its name
		}
		if err := add(n, netns.Path(n)); err != nil {
			continue // gone meanwhile
		}
	}
	return w, nil
}

// owner finds the namespace holding address a.
func (w *world) owner(a netip.Addr) *place {
	for _, p := range w.places {
		if _, ok := p.addrs[a]; ok {
			return p
		}
	}
	return nil
}

// endpoint resolves FROM or TO to a namespace and, for TO, an address.
func (w *world) endpoint(s string, from *place) (*place, netip.Addr, error) {
	if _, err := netip.ParsePrefix(s); err == nil {
		return nil, netip.Addr{}, fmt.Errorf("%w: %q is a subnet: give one address", ErrUsage, s)
	}
	if a, err := netip.ParseAddr(s); err == nil {
		p := w.owner(a)
		return p, a, nil // p nil: outside what doctor sees
	}
	if p, ok := w.byName[s]; ok {
		return p, netip.Addr{}, nil
	}
	if from == nil {
		return nil, netip.Addr{}, fmt.Errorf("%w: %q is no namespace, host or address", ErrUsage, s)
	}
	// A name, resolved as FROM's resolver would: nsnet's DNS answers the
	// members and aliases of the networks FROM is in.
	mine := map[string]bool{}
	for _, m := range w.in.Members {
		if m.Namespace == from.name {
			mine[m.Network] = true
		}
	}
	want := strings.TrimSuffix(strings.ToLower(s), ".")
	for _, m := range w.in.Members {
		if !mine[m.Network] {
			continue
		}
		if strings.EqualFold(m.Namespace, want) || slices.ContainsFunc(m.Aliases, func(a string) bool { return strings.EqualFold(a, want) }) {
			if len(m.Addrs) > 0 {
				return w.byName[m.Namespace], m.Addrs[0], nil
			}
		}
	}
	return nil, netip.Addr{}, &nameError{name: s, from: from.name}
}

// isMember says whether p is a member of some nsnet network.
func (w *world) isMember(p *place) bool {
	return slices.ContainsFunc(w.in.Members, func(m Member) bool { return m.Namespace == p.name })
}

type nameError struct{ name, from string }

func (e *nameError) Error() string {
	return fmt.Sprintf("%s's resolver does not know %q: no member or alias of that name on a network %s is in", e.from, e.name, e.from)
}

// Diagnose walks the path from FROM to TO and back.
func Diagnose(in Input) (Report, error) {
	r := Report{From: in.From, To: in.To, Port: in.Port}
	proto, port, err := parsePort(in.Port)
	if err != nil {
		return r, err
	}
	w, err := open(in)
	if err != nil {
		return r, err
	}
	defer w.close()
	from, _, err := w.endpoint(in.From, nil)
	if err != nil {
		return r, err
	}
	if from == nil {
		return r, fmt.Errorf("%w: FROM %s is an address no namespace holds; give a namespace", ErrUsage, in.From)
	}
	dst, err := w.static(&r, from, proto, port)
	if err != nil {
		return r, err
	}
	if in.Live && dst.IsValid() && r.Dst != "" {
		w.live(&r, from, dst, proto, port)
	}
	return r, nil
}

// static walks the path from the kernel's state alone, and returns TO's
// address when it could tell it.
func (w *world) static(r *Report, from *place, proto string, port uint16) (netip.Addr, error) {
	in := w.in
	to, dst, err := w.endpoint(in.To, from)
	var ne *nameError
	if errors.As(err, &ne) {
		fix := fmt.Sprintf("connect %s to a network of the name's owner (nsnet net connect NET %s), or give an address", from.name, from.name)
		if !w.isMember(from) {
			fix = fmt.Sprintf("%s is on no nsnet network, whose resolvers answer members' names: give an address", from.name)
		}
		r.Forward = []Step{{N: 1, Where: from.name, What: "resolve " + in.To, Cause: ne.Error(), Fix: fix}}
		r.Cause = ne.Error()
		return dst, nil
	}
	if err != nil {
		return dst, err
	}
	if !dst.IsValid() {
		if dst, err = w.addressOf(to, from); err != nil {
			s := Step{N: 1, Where: to.name, What: "address of " + to.name, Cause: err.Error(), Fix: fmt.Sprintf("nsnet net connect NET %s, or give an address", to.name)}
			r.Forward, r.Cause = []Step{s}, s.Cause
			return dst, nil
		}
	}
	r.Dst = dst.String()
	if to == from {
		r.Forward = []Step{{N: 1, Where: from.name, What: "same namespace: delivered locally", OK: true}}
		if proto != "" {
			s := w.checkPort(to, dst, proto, port, 2)
			r.Forward = append(r.Forward, s)
			if !s.OK {
				r.Cause = s.Cause
				return dst, nil
			}
		}
		r.OK = true
		return dst, nil
	}
	if s, ok := w.isolated(from, to); ok {
		r.Forward = []Step{s}
		r.Cause = s.Cause
		return dst, nil
	}
	if s, ok := w.closedFromOutside(from, dst); ok {
		r.Forward = []Step{s}
		r.Cause = s.Cause
		return dst, nil
	}
	src, steps, last := w.walk(from, dst, netip.Addr{})
	// The answer comes from dst, or from the member behind a published port.
	answerFrom := dst
	if src.IsValid() {
		r.Src = src.String()
	}
	r.Forward = steps
	if last == nil || !steps[len(steps)-1].OK {
		r.Cause = steps[len(steps)-1].Cause
		return dst, nil
	}
	if proto != "" {
		s := w.checkPort(last, dst, proto, port, len(steps)+1)
		r.Forward = append(r.Forward, s)
		if !s.OK {
			r.Cause = s.Cause
			return dst, nil
		}
		if s.dnat.IsValid() {
			// A published port: the host forwards the packet to the
			// member, whose answer goes back through the host's
			// conntrack (the walk back starts at the member).
			member, ok := w.followDNAT(r, last, src, s.dnat, proto)
			if !ok {
				return dst, nil
			}
			last, answerFrom = member, s.dnat.Addr()
		}
	}
	// The reply, from what the packet reached back to the source it had
	// when it got there (the host's own address if it was masqueraded).
	back := src
	for _, s := range steps {
		if s.masq.IsValid() {
			back = s.masq
		}
	}
	_, reply, end := w.walk(last, back, answerFrom)
	r.Reply = reply
	if end == nil || !reply[len(reply)-1].OK {
		// The hop that has no way back, which may be past the first, and
		// the one that sent the reply there.
		at, prev := last, (*place)(nil)
		if q := w.byName[reply[len(reply)-1].Where]; q != nil {
			at = q
		}
		for i := len(reply) - 2; i >= 0; i-- {
			if q := w.byName[reply[i].Where]; q != nil && q != at {
				prev = q
				break
			}
		}
		w.explainNoWayBack(&reply[len(reply)-1], at, prev, back)
		r.Cause = reply[len(reply)-1].Cause
		return dst, nil
	}
	if back != src {
		// The masquerading host hands the reply on to the member.
		_, more, end2 := w.walk(end, src, netip.Addr{})
		for _, st := range more {
			st.N = len(r.Reply) + 1
			r.Reply = append(r.Reply, st)
		}
		if end2 == nil || !r.Reply[len(r.Reply)-1].OK {
			r.Cause = r.Reply[len(r.Reply)-1].Cause
			return dst, nil
		}
	}
	r.OK = true
	return dst, nil
}

func parsePort(s string) (string, uint16, error) {
	if s == "" {
		return "", 0, nil
	}
	num, proto, _ := strings.Cut(s, "/")
	if proto == "" {
		proto = "tcp"
	}
	var p uint16
	if _, err := fmt.Sscan(num, &p); err != nil || p == 0 || (proto != "tcp" && proto != "udp") {
		return "", 0, fmt.Errorf("%w: port %q: want N, N/tcp or N/udp", ErrUsage, s)
	}
	return proto, p, nil
}

// addressOf picks the address of namespace to that from would use: one
// in a subnet from is on, else any.
func (w *world) addressOf(to, from *place) (netip.Addr, error) {
	var any netip.Addr
	for a := range to.addrs {
		if !a.Is4() {
			continue
		}
		if !any.IsValid() || a.Less(any) {
			any = a
		}
		for fa := range from.addrs {
			if w.sameLAN(from, fa, a) {
				return a, nil
			}
		}
	}
	if !any.IsValid() {
		return any, fmt.Errorf("%s has no IPv4 address to reach it at", to.name)
	}
	return any, nil
}

func (w *world) sameLAN(p *place, mine, other netip.Addr) bool {
	link, err := p.ns.NL.LinkByName(p.addrs[mine])
	if err != nil {
		return false
	}
	addrs, _ := kernel.Retry(func() ([]netlink.Addr, error) { return p.ns.NL.AddrList(link, netlink.FAMILY_V4) })
	for _, a := range addrs {
		if pfx, ok := kernel.ToPrefix(a.IPNet); ok && pfx.Masked().Contains(other) && pfx.Bits() < 32 {
			return true
		}
	}
	return false
}

// isolated reports nsnet's isolation between the two, an expected drop.
func (w *world) isolated(from, to *place) (Step, bool) {
	if to == nil {
		return Step{}, false // an address no namespace holds
	}
	nets := func(ns string) map[string]Member {
		out := map[string]Member{}
		for _, m := range w.in.Members {
			if m.Namespace == ns {
				out[m.Network] = m
			}
		}
		return out
	}
	a, b := nets(from.name), nets(to.name)
	if len(a) == 0 || len(b) == 0 {
		return Step{}, false
	}
	for n := range a {
		if _, ok := b[n]; ok {
			return Step{}, false // a shared network
		}
	}
	for n, m := range a {
		for o, mo := range b {
			if m.Host == mo.Host && (m.Isolated || mo.Isolated) {
				return Step{N: 1, Where: from.name, What: fmt.Sprintf("%s (network %s) to %s (network %s)", from.name, n, to.name, o),
					Cause:    fmt.Sprintf("nsnet isolates network %s from network %s: their members do not reach each other (an expected drop)", n, o),
					Evidence: "table inet nsnet, set same4/isolated4 (nft list table inet nsnet)",
					Fix:      fmt.Sprintf("nsnet net connect %s %s (join %s to %s's network), or publish a port of %s", o, from.name, from.name, to.name, to.name)}, true
			}
		}
	}
	return Step{}, false
}

// closedFromOutside reports nsnet's drop of a packet from outside a NAT
// network's host into the network: such networks are reached from
// outside only by their published ports, and by replies (as Docker's).
// Members of the host's networks and the host itself pass.
func (w *world) closedFromOutside(from *place, dst netip.Addr) (Step, bool) {
	inos := map[string]uint64{}
	ino := func(path string) uint64 {
		if v, ok := inos[path]; ok {
			return v
		}
		inos[path] = netns.PathInode(path)
		return inos[path]
	}
	for _, m := range w.in.Members {
		if !m.Closed || !slices.Contains(m.Addrs, dst) {
			continue
		}
		host := ino(m.Host)
		if from.ino == host {
			return Step{}, false
		}
		for _, o := range w.in.Members {
			if o.Namespace == from.name && ino(o.Host) == host {
				return Step{}, false // from a network of that host
			}
		}
		where := hostName
		for _, p := range w.places {
			if p.ino == host {
				where = p.name
			}
		}
		return Step{N: 1, Where: where, What: fmt.Sprintf("forward from %s into network %s", from.name, m.Network),
			Cause:    fmt.Sprintf("network %s has NAT: nsnet admits into it, from outside its host, only published ports and replies, and %s is on no network of that host (an expected drop)", m.Network, from.name),
			Evidence: "table inet nsnet, chain forward: the drop for the bridges in the closed set (nft list chain inet nsnet forward)",
			Fix:      fmt.Sprintf("publish the port (nsnet net connect %s %s -p HOSTPORT:PORT) and reach the host's address, or use a network without NAT (--nat=false, or routed) whose members the outside may reach", m.Network, m.Namespace)}, true
	}
	return Step{}, false
}

// walk follows a packet from p to dst, hop by hop, and returns the source
// address the first route chose, the steps, and the namespace it reached
// (nil if it did not).
func (w *world) walk(p *place, dst, src netip.Addr) (netip.Addr, []Step, *place) {
	return w.walkFrom(p, dst, src, 0)
}

// walkFrom is walk for a packet that p already forwards (first 1): one
// that came in and was DNATed there, rather than one p sends.
func (w *world) walkFrom(p *place, dst, src netip.Addr, first int) (netip.Addr, []Step, *place) {
	var steps []Step
	step := func(s Step) { s.N = len(steps) + 1; steps = append(steps, s) }
	fail := func(where, what, cause, evidence, fix string) (netip.Addr, []Step, *place) {
		step(Step{Where: where, What: what, Cause: cause, Evidence: evidence, Fix: fix})
		return src, steps, nil
	}
	seen := map[*place]bool{}
	// pktSrc is the packet's source as the next namespace sees it: the
	// masquerading address once a host masqueraded it.
	pktSrc := src
	for hop := first; hop < first+16; hop++ {
		if _, ok := p.addrs[dst]; ok {
			if s, ok := dropping(p, dst, nftables.ChainHookInput, "input"); !ok {
				step(s)
				return src, steps, nil
			} else if s.What != "" {
				step(s)
			}
			step(Step{Where: p.name, What: fmt.Sprintf("%s is local here: delivered", dst), OK: true})
			return src, steps, p
		}
		if hop == 0 {
			if s, ok := dropping(p, dst, nftables.ChainHookOutput, "output"); !ok {
				step(s)
				return src, steps, nil
			} else if s.What != "" {
				step(s)
			}
		}
		if seen[p] {
			return fail(p.name, "loop", fmt.Sprintf("the packet comes back to %s: a routing loop", p.name), "", "check the routes of the namespaces above")
		}
		seen[p] = true
		if hop > 0 {
			if s, ok := w.forwarding(p, dst); !ok {
				step(s)
				return src, steps, nil
			} else if s.What != "" {
				step(s)
			}
		}
		// A forwarded packet's source is not local here, which route get
		// refuses without an input interface: only the first hop has one.
		opts := &netlink.RouteGetOptions{}
		if hop == 0 {
			opts.SrcAddr = srcIP(src)
		}
		routes, err := p.ns.NL.RouteGetWithOptions(dst.AsSlice(), opts)
		if why := refusedRoute(err, routes); why != "" {
			return fail(p.name, "route to "+dst.String(), fmt.Sprintf("%s refuses to route to %s: %s", p.name, dst, why),
				routeDump(p)+"; "+ruleDump(p), fmt.Sprintf("remove it (%s rule del …, or %s route del …) if it is not meant for this traffic", ipIn(p), ipIn(p)))
		}
		if err != nil || len(routes) == 0 {
			if down := downLinks(p); hop > 0 && len(down) > 0 {
				down = down[:min(len(down), 3)]
				return fail(p.name, "route to "+dst.String(), fmt.Sprintf("%s has no route to %s, and its interfaces %s are down: a route through a down interface goes with it", p.name, dst, strings.Join(down, ", ")),
					routeDump(p), fmt.Sprintf("%s link set IF up for the one that carried it (nsnet gc restores nsnet's routes and host ends), or %s route add %s via NEXTHOP", ipIn(p), ipIn(p), dst))
			}
			if down := downLinks(p); hop == 0 && len(down) > 0 {
				return fail(p.name, "route to "+dst.String(), fmt.Sprintf("%s has no route to %s: its interface %s is down, and its routes went with it", p.name, dst, strings.Join(down, ", ")),
					routeDump(p), fmt.Sprintf("%s link set %s up (nsnet gc restores nsnet's members' routes)", ipIn(p), down[0]))
			}
			if hop == 0 {
				fix := fmt.Sprintf("%s route add %s via GATEWAY (or a default route)", ipIn(p), dst)
				if w.isMember(p) {
					fix = fmt.Sprintf("nsnet net connect NET %s --default-route, or: %s route add default via GATEWAY", p.name, ipIn(p))
				}
				return fail(p.name, "route to "+dst.String(), fmt.Sprintf("%s has no route to %s (no default route)", p.name, dst), routeDump(p), fix)
			}
			return fail(p.name, "route to "+dst.String(), fmt.Sprintf("%s has no route to %s", p.name, dst), routeDump(p),
				fmt.Sprintf("%s route add %s via NEXTHOP", ipIn(p), dst))
		}
		rt := routes[0]
		if !src.IsValid() {
			if a, ok := netip.AddrFromSlice(rt.Src); ok {
				src = a.Unmap()
			}
		}
		link, err := p.ns.NL.LinkByIndex(rt.LinkIndex)
		if err != nil {
			return fail(p.name, "route to "+dst.String(), fmt.Sprintf("the route's interface (index %d) is gone", rt.LinkIndex), "", "")
		}
		out := link.Attrs().Name
		via := dst
		if g, ok := netip.AddrFromSlice(rt.Gw); ok {
			via = g.Unmap()
		}
		desc := fmt.Sprintf("route to %s: dev %s", dst, out)
		if via != dst {
			desc = fmt.Sprintf("route to %s: via %s dev %s", dst, via, out)
		}
		if src.IsValid() {
			desc += " src " + src.String()
		}
		if link.Attrs().Flags&net.FlagUp == 0 {
			return fail(p.name, desc, fmt.Sprintf("interface %s in %s is down", out, p.name), linkState(link), fmt.Sprintf("%s link set %s up", ipIn(p), out))
		}
		// No carrier: for a veth, its other end is down (the kernel
		// shows LOWERLAYERDOWN once its link watcher has run).
		if link.Attrs().OperState == netlink.OperLowerLayerDown || link.Attrs().RawFlags&unix.IFF_LOWER_UP == 0 && link.Type() == "veth" {
			fix := "bring the veth's other end up (ip -n NS link set IF up)"
			cause := fmt.Sprintf("interface %s in %s is LOWERLAYERDOWN: the other end of its veth is down", out, p.name)
			if q, peer := w.peerOf(p, link); peer != nil {
				cause = fmt.Sprintf("interface %s in %s is LOWERLAYERDOWN: the other end of its veth, %s in %s, is down", out, p.name, peer.Attrs().Name, q.name)
				fix = fmt.Sprintf("%s link set %s up", ipIn(q), peer.Attrs().Name)
			}
			return fail(p.name, desc, cause, linkState(link), fix)
		}
		if link.Attrs().MasterIndex != 0 {
			if m, err := p.ns.NL.LinkByIndex(link.Attrs().MasterIndex); err == nil && m.Type() == "bridge" {
				return fail(p.name, desc, fmt.Sprintf("the route leaves by %s, a port of bridge %s: the bridge takes the replies (ARP too), so the neighbour stays INCOMPLETE", out, m.Attrs().Name),
					neighState(p, link, via), fmt.Sprintf("move the address and route from %s to the bridge: %s addr del ADDR dev %s; %s addr add ADDR dev %s", out, ipIn(p), out, ipIn(p), m.Attrs().Name))
			}
		}
		step(Step{Where: p.name, What: desc, OK: true})
		if hop > 0 {
			if s, ok := w.leaving(p, link, src); !ok {
				step(s)
				return src, steps, nil
			} else if s.What != "" {
				step(s)
				if s.masq.IsValid() {
					pktSrc = s.masq
				}
			}
		}
		next := w.owner(via)
		if next == nil && via.IsLinkLocalUnicast() && link.Type() == "veth" {
			// A link-local gateway (a routed network's, held on the
			// host's lo by every routed host): the veth's peer.
			next, _ = w.peerOf(p, link)
		}
		if s, ok := w.segment(p, link, via, next); !ok {
			step(s)
			return src, steps, nil
		}
		if next == nil && w.onLink(p, link, via) {
			return fail(p.name, fmt.Sprintf("next hop %s on %s", via, out), fmt.Sprintf("no namespace holds %s, the next hop on %s's segment: nothing will answer its %s", via, out, resolution(via)),
				neighState(p, link, via), fmt.Sprintf("check the address %s (a gateway removed from its bridge? nsnet gc puts nsnet's back)", via))
		}
		if next == nil {
			return fail(p.name, fmt.Sprintf("leaves by %s towards %s", out, via), fmt.Sprintf("the packet leaves %s by %s towards %s, beyond the namespaces doctor can see; it cannot follow it further", p.name, out, via), "", "run doctor from a namespace on the far side too")
		}
		if s, ok := answersARP(p, link, next, via); !ok {
			step(s)
			return src, steps, nil
		}
		if !pktSrc.IsValid() {
			pktSrc = src
		}
		if s, ok := w.reversePath(p, link, next, via, pktSrc); !ok {
			step(s)
			return src, steps, nil
		}
		if st := neighEntry(p, link, via); st == "INCOMPLETE" || st == "FAILED" {
			// The way there checked out, so the entry may be stale, left
			// by a fault since fixed: said, not taken for the cause.
			step(Step{Where: p.name, OK: true, What: fmt.Sprintf("neighbour entry of %s on %s is %s (stale? the way to %s checks out; ping once to refresh it)", via, out, st, next.name)})
		}
		p = next
	}
	return fail(p.name, "", "more than 16 hops", "", "")
}

// resolution names how a next hop's link address is asked for.
func resolution(a netip.Addr) string {
	if a.Is6() {
		return "neighbour discovery"
	}
	return "ARP"
}

// answersARP checks that the next hop's interface answers ARP for via:
// not with ARP off (NOARP), nor told by arp_ignore=8 never to answer.
// A link without ARP on p's side uses static entries, and is left alone.
func answersARP(p *place, out netlink.Link, next *place, via netip.Addr) (Step, bool) {
	if !via.Is4() || out.Attrs().RawFlags&unix.IFF_NOARP != 0 || next.addrs[via] == "" {
		return Step{}, true
	}
	nl, err := next.ns.NL.LinkByName(next.addrs[via])
	if err != nil || nl.Attrs().Flags&net.FlagLoopback != 0 {
		return Step{}, true
	}
	name := nl.Attrs().Name
	what := fmt.Sprintf("%s's %s answers ARP for %s", next.name, name, via)
	if nl.Attrs().RawFlags&unix.IFF_NOARP != 0 {
		return Step{Where: next.name, What: what,
			Cause:    fmt.Sprintf("%s in %s has ARP off (NOARP): it never answers %s's ARP for %s", name, next.name, p.name, via),
			Evidence: linkState(nl) + " (NOARP); " + neighState(p, out, via),
			Fix:      fmt.Sprintf("%s link set %s arp on", ipIn(next), name)}, false
	}
	ignore := 0
	for _, dev := range []string{"all", name} {
		var v []byte
		if err := next.ns.Do(func() (err error) { v, err = os.ReadFile("/proc/sys/net/ipv4/conf/" + dev + "/arp_ignore"); return err }); err == nil {
			var n int
			if _, err := fmt.Sscan(strings.TrimSpace(string(v)), &n); err == nil {
				ignore = max(ignore, n)
			}
		}
	}
	if ignore == 8 {
		return Step{Where: next.name, What: what,
			Cause:    fmt.Sprintf("%s in %s never answers ARP: arp_ignore is 8", name, next.name),
			Evidence: fmt.Sprintf("net.ipv4.conf.%s.arp_ignore (or .all) = 8; %s", name, neighState(p, out, via)),
			Fix:      execIn(next, fmt.Sprintf("sysctl -w net.ipv4.conf.%s.arp_ignore=0 net.ipv4.conf.all.arp_ignore=0", name))}, false
	}
	return Step{}, true
}

// reversePath checks next's reverse-path filter: with rp_filter=1
// (strict), a packet from src coming in on an interface that is not the
// one next would route src back by is dropped before any firewall.
func (w *world) reversePath(p *place, out netlink.Link, next *place, via, src netip.Addr) (Step, bool) {
	if !src.Is4() || next.addrs[src] != "" {
		return Step{}, true
	}
	var in netlink.Link
	if out.Type() == "veth" {
		if q, peer := w.peerOf(p, out); q == next {
			in = peer
			// A bridge port's packets come in, for IP, on the bridge.
			if m := peer.Attrs().MasterIndex; m != 0 {
				if br, err := next.ns.NL.LinkByIndex(m); err == nil {
					in = br
				}
			}
		}
	}
	if in == nil {
		l, err := next.ns.NL.LinkByName(next.addrs[via])
		if err != nil {
			return Step{}, true
		}
		in = l
	}
	rp := 0
	for _, dev := range []string{"all", in.Attrs().Name} {
		var v []byte
		if err := next.ns.Do(func() (err error) { v, err = os.ReadFile("/proc/sys/net/ipv4/conf/" + dev + "/rp_filter"); return err }); err == nil {
			var n int
			if _, err := fmt.Sscan(strings.TrimSpace(string(v)), &n); err == nil {
				rp = max(rp, n)
			}
		}
	}
	if rp != 1 {
		return Step{}, true
	}
	routes, err := next.ns.NL.RouteGet(src.AsSlice())
	if err != nil || len(routes) == 0 || routes[0].LinkIndex == in.Attrs().Index {
		return Step{}, true
	}
	back := fmt.Sprintf("ifindex %d", routes[0].LinkIndex)
	if l, err := next.ns.NL.LinkByIndex(routes[0].LinkIndex); err == nil {
		back = l.Attrs().Name
	}
	name := in.Attrs().Name
	return Step{Where: next.name, What: fmt.Sprintf("reverse-path filter of %s for %s", name, src),
		Cause:    fmt.Sprintf("%s drops packets from %s that come in on %s: strict reverse-path filtering (rp_filter=1), and its route back to %s leaves by %s", next.name, src, name, src, back),
		Evidence: fmt.Sprintf("net.ipv4.conf.%s.rp_filter (or .all) = 1; %s route get %s: dev %s", name, ipIn(next), src, back),
		Fix:      execIn(next, fmt.Sprintf("sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.%s.rp_filter=2", name)) + fmt.Sprintf(" (loose), or route %s back by %s", src, name)}, false
}

// ipIn spells an ip command for namespace p; exec a command run in it.
func ipIn(p *place) string {
	if p.name == hostName {
		return "ip"
	}
	return "ip -n " + p.name
}

func execIn(p *place, cmd string) string {
	if p.name == hostName {
		return cmd
	}
	return "ip netns exec " + p.name + " " + cmd
}

// peerOf finds the namespace and link at the other end of veth l of p:
// the namespace whose id, as p numbers namespaces, is l's link namespace
// (IFLA_LINK_NETNSID), and there the link with l's peer index (IFLA_LINK).
func (w *world) peerOf(p *place, l netlink.Link) (*place, netlink.Link) {
	for _, q := range w.places {
		id := -1
		if q != p {
			var err error
			if id, err = p.ns.NL.GetNetNsIdByFd(int(q.ns.Fd())); err != nil || id < 0 {
				continue
			}
		}
		if id != l.Attrs().NetNsID {
			continue
		}
		if o, err := q.ns.NL.LinkByIndex(l.Attrs().ParentIndex); err == nil {
			return q, o
		}
	}
	return nil, nil
}

// onLink says whether via is on one of link's own subnets.
func (w *world) onLink(p *place, link netlink.Link, via netip.Addr) bool {
	addrs, _ := kernel.Retry(func() ([]netlink.Addr, error) { return p.ns.NL.AddrList(link, netlink.FAMILY_ALL) })
	for _, a := range addrs {
		if pfx, ok := kernel.ToPrefix(a.IPNet); ok && pfx.Bits() < pfx.Addr().BitLen() && pfx.Masked().Contains(via) {
			return true
		}
	}
	return false
}

// segment checks the layer-2 way from p's veth link to the next hop: the
// veth's other end, and where that end is a bridge port, the bridge and
// the port towards the next hop's namespace.
func (w *world) segment(p *place, link netlink.Link, via netip.Addr, next *place) (Step, bool) {
	if link.Type() != "veth" {
		return Step{}, true
	}
	q, peer := w.peerOf(p, link)
	if q == nil || peer == nil {
		return Step{}, true
	}
	if peer.Attrs().Flags&net.FlagUp == 0 {
		return Step{Where: q.name, What: fmt.Sprintf("the other end of %s", link.Attrs().Name),
			Cause:    fmt.Sprintf("%s, the other end of %s's %s, is down in %s", peer.Attrs().Name, p.name, link.Attrs().Name, q.name),
			Evidence: linkState(peer), Fix: fmt.Sprintf("%s link set %s up (nsnet gc does it for nsnet's)", ipIn(q), peer.Attrs().Name)}, false
	}
	if peer.Attrs().MasterIndex == 0 {
		return Step{}, true
	}
	br, err := q.ns.NL.LinkByIndex(peer.Attrs().MasterIndex)
	if err != nil || br.Type() != "bridge" {
		return Step{}, true
	}
	// Down, the bridge passes nothing on, not even to its own address.
	if br.Attrs().Flags&net.FlagUp == 0 {
		return Step{Where: q.name, What: "bridge " + br.Attrs().Name,
			Cause:    fmt.Sprintf("bridge %s in %s is down: nothing crosses it", br.Attrs().Name, q.name),
			Evidence: linkState(br), Fix: fmt.Sprintf("%s link set %s up (nsnet gc does it for nsnet's)", ipIn(q), br.Attrs().Name)}, false
	}
	if next == nil || next == q {
		return Step{}, true
	}
	// The port towards next: the other end of next's interface holding via.
	nl, err := next.ns.NL.LinkByName(next.addrs[via])
	if err != nil || nl.Type() != "veth" {
		return Step{}, true
	}
	if nq, port := w.peerOf(next, nl); nq == q && port != nil {
		switch {
		case port.Attrs().Flags&net.FlagUp == 0:
			return Step{Where: q.name, What: fmt.Sprintf("bridge port %s towards %s", port.Attrs().Name, next.name),
				Cause:    fmt.Sprintf("%s, %s's port on bridge %s, is down", port.Attrs().Name, next.name, br.Attrs().Name),
				Evidence: linkState(port), Fix: fmt.Sprintf("%s link set %s up (nsnet gc does it for nsnet's)", ipIn(q), port.Attrs().Name)}, false
		case port.Attrs().MasterIndex != br.Attrs().Index:
			return Step{Where: q.name, What: fmt.Sprintf("bridge port %s towards %s", port.Attrs().Name, next.name),
				Cause:    fmt.Sprintf("%s, %s's end, is not on bridge %s", port.Attrs().Name, next.name, br.Attrs().Name),
				Evidence: linkState(port), Fix: fmt.Sprintf("%s link set %s master %s (nsnet gc does it for nsnet's)", ipIn(q), port.Attrs().Name, br.Attrs().Name)}, false
		}
		if s, ok := fdbTowards(q, br, port, nl, next); !ok {
			return s, false
		}
	}
	return Step{}, true
}

// fdbTowards checks the bridge's forwarding entry for the next hop's MAC
// address: a sticky one that points at another port sends the frames
// where the next hop is not, for good.
func fdbTowards(q *place, br, port, nextIf netlink.Link, next *place) (Step, bool) {
	mac := nextIf.Attrs().HardwareAddr
	if len(mac) == 0 {
		return Step{}, true
	}
	fdb, err := kernel.Retry(func() ([]netlink.Neigh, error) { return q.ns.NL.NeighList(0, unix.AF_BRIDGE) })
	if err != nil {
		return Step{}, true
	}
	for _, e := range fdb {
		// A learned or plain static entry moves to the port the address
		// is next heard from; a sticky one stays where it points.
		if e.MasterIndex != br.Attrs().Index || e.HardwareAddr.String() != mac.String() || e.LinkIndex == port.Attrs().Index || e.Flags&netlink.NTF_STICKY == 0 {
			continue
		}
		other := fmt.Sprintf("ifindex %d", e.LinkIndex)
		if l, err := q.ns.NL.LinkByIndex(e.LinkIndex); err == nil {
			other = l.Attrs().Name
		}
		return Step{Where: q.name, What: fmt.Sprintf("bridge %s forwarding entry for %s (%s)", br.Attrs().Name, mac, next.name),
			Cause:    fmt.Sprintf("bridge %s sends frames for %s, %s's address, to port %s, not to %s where %s is: a %s sticky forwarding entry, which learning does not move", br.Attrs().Name, mac, next.name, other, port.Attrs().Name, next.name, fdbKind(e.State)),
			Evidence: fmt.Sprintf("bridge fdb show br %s: %s dev %s master %s %s sticky", br.Attrs().Name, mac, other, br.Attrs().Name, fdbKind(e.State)),
			Fix:      execIn(q, fmt.Sprintf("bridge fdb del %s dev %s master", mac, other))}, false
	}
	return Step{}, true
}

// fdbKind names a bridge forwarding entry's kind as bridge fdb shows it.
func fdbKind(state int) string {
	switch {
	case state&netlink.NUD_PERMANENT != 0:
		return "permanent"
	case state&netlink.NUD_NOARP != 0:
		return "static"
	}
	return "learned"
}

func srcIP(a netip.Addr) net.IP {
	if !a.IsValid() {
		return nil
	}
	return a.AsSlice()
}

// explainNoWayBack names why a reply has no route back to a member's
// address: the member's network is not masqueraded (by design, or the
// rule is gone), and TO's side has no route to its subnet.
func (w *world) explainNoWayBack(s *Step, at, prev *place, src netip.Addr) {
	if !strings.HasPrefix(s.What, "route to") || s.OK {
		return
	}
	where := at.name
	if prev != nil {
		where = fmt.Sprintf("%s (where %s's routes send it)", at.name, prev.name)
	}
	for _, m := range w.in.Members {
		if !slices.Contains(m.Addrs, src) {
			continue
		}
		if m.NAT {
			s.Cause = fmt.Sprintf("%s has no route back to %s: network %s should masquerade it on the way out, and did not (its masquerade is missing)", where, src, m.Network)
			s.Fix = "nsnet gc (rebuilds nsnet's table and its masquerade), or check the host's nat chains"
		} else {
			s.Cause = fmt.Sprintf("%s has no route back to %s: network %s is not masqueraded (its members keep their own addresses), so %s must route %s's subnet via the host of %s", where, src, m.Network, at.name, m.Network, m.Namespace)
			s.Fix = fmt.Sprintf("ip -n %s route add SUBNET-OF-%s via HOST-ADDRESS (routing: static in a lab), or masquerade the network (--nat)", at.name, m.Network)
			if prev != nil {
				s.Fix = fmt.Sprintf("ip -n %s route add SUBNET-OF-%s via HOST-ADDRESS, so that it goes straight to the host of %s (routing: static in a lab); or the same in %s; or masquerade the network (--nat)", prev.name, m.Network, m.Namespace, at.name)
			}
		}
		return
	}
}

// forwarding checks that p forwards: the sysctl, and other tables'
// forward chains that drop.
func (w *world) forwarding(p *place, dst netip.Addr) (Step, bool) {
	key := "net/ipv4/ip_forward"
	if dst.Is6() {
		key = "net/ipv6/conf/all/forwarding"
	}
	var v []byte
	err := p.ns.Do(func() (err error) { v, err = os.ReadFile("/proc/sys/" + key); return err })
	if err == nil && strings.TrimSpace(string(v)) == "0" {
		return Step{Where: p.name, What: "forward", Cause: fmt.Sprintf("%s does not forward: %s is 0", p.name, strings.ReplaceAll(key, "/", ".")),
			Evidence: strings.ReplaceAll(key, "/", ".") + " = 0", Fix: execIn(p, fmt.Sprintf("sysctl -w %s=1", strings.ReplaceAll(key, "/", ".")))}, false
	}
	chains := chainsAt(p, dst, nftables.ChainHookForward)
	for _, ch := range chains {
		if !ch.policyDrop() || len(ch.rules) > 0 {
			continue
		}
		return Step{Where: p.name, What: "forward",
			Cause:    fmt.Sprintf("chain %s drops what %s forwards (policy drop, no rule)", ch, p.name),
			Evidence: fmt.Sprintf("table %s %s, chain %s: hook forward, policy drop, 0 rules", ch.family, ch.Table.Name, ch.Name),
			Fix:      execIn(p, fmt.Sprintf("nft insert rule %s %s daddr %s accept", ch, map[bool]string{true: "ip", false: "ip6"}[dst.Is4()], dst)) + " (or iptables -P FORWARD ACCEPT); nsnet inserts such accepts for its own networks unless --no-host-firewall"}, false
	}
	return unevaluated(p, chains, "forward"), true
}

// unevaluated is a note on the chains at a hook whose rules may drop the
// packet: doctor reads chains and policies, not rules, so it says where
// to look, and that --live will tell. Zero when there are none.
func unevaluated(p *place, chains []chain, hook string) Step {
	var parts []string
	for _, ch := range chains {
		accepts, drops := 0, 0
		for _, r := range ch.rules {
			if strings.Contains(string(r.UserData), "nsnet:network=") {
				accepts++
			}
			if dropsOrRejects(r) {
				drops++
			}
		}
		switch {
		case ch.policyDrop() && len(ch.rules) > 0:
			parts = append(parts, fmt.Sprintf("chain %s has policy drop and %d rules (%d of them nsnet's accepts)", ch, len(ch.rules), accepts))
		case drops > 0:
			parts = append(parts, fmt.Sprintf("chain %s has rules that drop or reject (%d)", ch, drops))
		}
	}
	if len(parts) == 0 {
		return Step{}
	}
	return Step{Where: p.name, OK: true,
		What: fmt.Sprintf("at %s's %s, %s; doctor does not evaluate rules: if the packet dies here, they are why (--live shows whether they take it)", p.name, hook, strings.Join(parts, "; "))}
}

// dropsOrRejects says whether a rule ends in drop or reject.
func dropsOrRejects(r *nftables.Rule) bool {
	for _, e := range r.Exprs {
		switch v := e.(type) {
		case *expr.Verdict:
			if v.Kind == expr.VerdictDrop {
				return true
			}
		case *expr.Reject:
			return true
		}
	}
	return false
}

// dropping checks p's chains at hook for dst's family: one with policy
// drop and no rule stops every packet; others whose rules may drop it
// give a note (OK, with What set).
func dropping(p *place, dst netip.Addr, hook *nftables.ChainHook, what string) (Step, bool) {
	chains := chainsAt(p, dst, hook)
	for _, ch := range chains {
		if !ch.policyDrop() || len(ch.rules) > 0 {
			continue
		}
		return Step{Where: p.name, What: what,
			Cause:    fmt.Sprintf("chain %s drops every packet at %s's %s (policy drop, no rule)", ch, p.name, what),
			Evidence: fmt.Sprintf("table %s %s, chain %s: hook %s, policy drop, 0 rules", ch.family, ch.Table.Name, ch.Name, what),
			Fix:      execIn(p, fmt.Sprintf("nft add rule %s accept", ch)) + " (or a narrower accept)"}, false
	}
	return unevaluated(p, chains, what), true
}

// chain is a base chain of another table than nsnet's, with its rules.
type chain struct {
	*nftables.Chain
	family string
	rules  []*nftables.Rule
}

// String spells the chain as nft commands take it: FAMILY TABLE CHAIN.
func (c chain) String() string { return c.family + " " + c.Table.Name + " " + c.Name }

func (c chain) policyDrop() bool {
	return c.Policy != nil && *c.Policy == nftables.ChainPolicyDrop
}

// chainsAt lists p's base chains at hook that see dst's family, other
// than nsnet's own, with their rules.
func chainsAt(p *place, dst netip.Addr, hook *nftables.ChainHook) []chain {
	c, err := nftables.New(nftables.WithNetNSFd(int(p.ns.Fd())))
	if err != nil {
		return nil
	}
	chains, err := c.ListChains()
	if err != nil {
		return nil
	}
	var out []chain
	for _, ch := range chains {
		if ch.Hooknum == nil || *ch.Hooknum != *hook || ch.Table.Family == nftables.TableFamilyBridge || ch.Table.Family == nftables.TableFamilyNetdev || ch.Table.Family == nftables.TableFamilyARP {
			continue
		}
		if ch.Table.Name == firewall.TableName && ch.Table.Family == nftables.TableFamilyINet {
			continue
		}
		if strings.HasPrefix(ch.Table.Name, tracePrefix) {
			continue // a trace table of a live run
		}
		if dst.Is4() && ch.Table.Family == nftables.TableFamilyIPv6 || dst.Is6() && ch.Table.Family == nftables.TableFamilyIPv4 {
			continue // another family's packets
		}
		rules, _ := c.GetRules(ch.Table, ch)
		out = append(out, chain{Chain: ch, family: firewall.FamilyName(ch.Table.Family), rules: rules})
	}
	return out
}

// leaving checks what a member's packet leaving its network through host
// p needs: a masquerade, when the member's network has NAT.
func (w *world) leaving(p *place, out netlink.Link, src netip.Addr) (Step, bool) {
	if !src.IsValid() || p.addrs[src] != "" {
		return Step{}, true // the namespace's own address
	}
	addrs, _ := kernel.Retry(func() ([]netlink.Addr, error) { return p.ns.NL.AddrList(out, netlink.FAMILY_ALL) })
	var mine netip.Addr
	for _, x := range addrs {
		pfx, ok := kernel.ToPrefix(x.IPNet)
		if !ok {
			continue
		}
		if pfx.Masked().Contains(src) {
			return Step{}, true // back onto the member's own segment
		}
		if pfx.Addr().Is4() == src.Is4() && !pfx.Addr().IsLinkLocalUnicast() {
			mine = pfx.Addr()
		}
	}
	by, to := natted(p, src)
	if to.IsValid() {
		mine = to // snat to a given address, not the interface's
	}
	for _, m := range w.in.Members {
		if !slices.Contains(m.Addrs, src) {
			continue
		}
		if by != "" {
			return Step{Where: p.name, What: "masquerade to " + mine.String() + " (" + by + ")", OK: true, masq: mine}, true
		}
		if !m.NAT {
			return Step{}, true // its own address, by design
		}
		return Step{Where: p.name, What: fmt.Sprintf("leaves by %s with source %s", out.Attrs().Name, src),
			Cause:    fmt.Sprintf("%s sends %s's packets out of %s unmasqueraded, though network %s has NAT: replies to %s will not find their way back", p.name, src, out.Attrs().Name, m.Network, src),
			Evidence: "no masquerade covering " + src.String() + " in " + p.name + "'s nftables (nft list ruleset)",
			Fix:      "nsnet gc (rebuilds nsnet's table with its masquerade)"}, false
	}
	// A namespace nsnet did not make: its own masquerade, if it has one.
	if by != "" && mine.IsValid() {
		return Step{Where: p.name, What: "masquerade to " + mine.String() + " (" + by + ")", OK: true, masq: mine}, true
	}
	return Step{}, true
}

// natted says how p masquerades src, or "": nsnet's set of masqueraded
// subnets, or another table's masquerade or SNAT rule at postrouting
// (whose matches doctor does not evaluate), and for an SNAT the address
// it rewrites to.
func natted(p *place, src netip.Addr) (string, netip.Addr) {
	c, err := nftables.New(nftables.WithNetNSFd(int(p.ns.Fd())))
	if err != nil {
		return "", netip.Addr{}
	}
	setName := "masq4"
	if src.Is6() {
		setName = "masq6"
	}
	tables, _ := c.ListTables()
	chains, _ := c.ListChains()
	for _, t := range tables {
		if t.Name == firewall.TableName && t.Family == nftables.TableFamilyINet {
			if set, err := c.GetSetByName(t, setName); err == nil && set != nil {
				els, _ := c.GetSetElements(set)
				// An interval is a start and an end (flagged, one past
				// the last address); the kernel lists them in any order.
				slices.SortFunc(els, func(a, b nftables.SetElement) int { return bytesCompare(a.Key, b.Key) })
				for i := 0; i+1 < len(els); i++ {
					lo, ok1 := netip.AddrFromSlice(els[i].Key)
					hi, ok2 := netip.AddrFromSlice(els[i+1].Key)
					if ok1 && ok2 && !els[i].IntervalEnd && lo.Compare(src) <= 0 && src.Compare(hi) < 0 {
						return "nsnet's set " + setName, netip.Addr{}
					}
				}
			}
			continue
		}
		if src.Is4() && t.Family == nftables.TableFamilyIPv6 || src.Is6() && t.Family == nftables.TableFamilyIPv4 {
			continue
		}
		for _, ch := range chains {
			if ch.Table.Name != t.Name || ch.Table.Family != t.Family || ch.Hooknum == nil || *ch.Hooknum != *nftables.ChainHookPostrouting {
				continue
			}
			rules, _ := c.GetRules(t, ch)
			for _, r := range rules {
				if ok, to := masquerades(r, src.Is4()); ok {
					return fmt.Sprintf("a rule of chain %s %s %s, assumed to cover it (doctor does not evaluate its matches)", firewall.FamilyName(t.Family), t.Name, ch.Name), to
				}
			}
		}
	}
	return "", netip.Addr{}
}

// masquerades says whether a rule masquerades or SNATs (nft's masquerade
// and snat, iptables-nft's MASQUERADE and SNAT targets), and for an SNAT
// the address it rewrites the source to, when the rule gives one.
func masquerades(r *nftables.Rule, v4 bool) (bool, netip.Addr) {
	regs := map[uint32][]byte{}
	for _, e := range r.Exprs {
		switch v := e.(type) {
		case *expr.Immediate:
			regs[v.Register] = v.Data
		case *expr.Masq:
			return true, netip.Addr{}
		case *expr.NAT:
			if v.Type == expr.NATTypeSourceNAT {
				a, _ := netip.AddrFromSlice(regs[v.RegAddrMin])
				return true, a.Unmap()
			}
		case *expr.Target:
			switch v.Name {
			case "MASQUERADE":
				return true, netip.Addr{}
			case "SNAT":
				return true, xtSNATAddr(v, v4)
			}
		}
	}
	return false, netip.Addr{}
}

// xtSNATAddr reads the first address of an iptables SNAT target, as the
// library decodes it (revision 0 for IPv4), or from the raw nf_nat_range
// of later revisions: the flags, then the address.
func xtSNATAddr(t *expr.Target, v4 bool) netip.Addr {
	var ip []byte
	switch info := t.Info.(type) {
	case *xt.NatIPv4MultiRangeCompat:
		if len(*info) > 0 {
			ip = (*info)[0].MinIP
		}
	case *xt.NatRange:
		ip = info.MinIP
	case *xt.NatRange2:
		ip = info.MinIP
	case *xt.Unknown:
		if n := map[bool]int{true: 4, false: 16}[v4]; len(*info) >= 4+n {
			ip = (*info)[4 : 4+n]
		}
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok || a.Unmap().IsUnspecified() {
		return netip.Addr{}
	}
	return a.Unmap()
}

// followDNAT walks a packet the host DNATed on to the member at to, and
// checks the member's port; it returns the member's namespace.
func (w *world) followDNAT(r *Report, host *place, src netip.Addr, to netip.AddrPort, proto string) (*place, bool) {
	_, more, member := w.walkFrom(host, to.Addr(), src, 1)
	for _, st := range more {
		st.N = len(r.Forward) + 1
		r.Forward = append(r.Forward, st)
	}
	if member == nil {
		r.Cause = r.Forward[len(r.Forward)-1].Cause
		return nil, false
	}
	s := w.checkPort(member, to.Addr(), proto, to.Port(), len(r.Forward)+1)
	r.Forward = append(r.Forward, s)
	if !s.OK {
		r.Cause = s.Cause
		return nil, false
	}
	return member, true
}

func (w *world) checkPort(p *place, dst netip.Addr, proto string, port uint16, n int) Step {
	ls, err := p.ns.Listeners()
	if err != nil {
		return Step{N: n, Where: p.name, What: "listeners", Cause: err.Error()}
	}
	pn := uint8(unix.IPPROTO_TCP)
	if proto == "udp" {
		pn = unix.IPPROTO_UDP
	}
	// nsnet's DNAT comes before any socket of the host's on that port.
	if p.name == hostName && w.in.PublishedPort != nil {
		if pub, ok := w.in.PublishedPort(proto, port); ok {
			for _, a := range pub.Addrs {
				if a.Is4() == dst.Is4() {
					to := netip.AddrPortFrom(a, pub.Port)
					return Step{N: n, Where: p.name, What: fmt.Sprintf("the host publishes %s/%d to %s: DNAT to %s", proto, port, pub.Member, to), OK: true, dnat: to}
				}
			}
			return Step{N: n, Where: p.name, What: fmt.Sprintf("%s/%d at %s", proto, port, dst),
				Cause:    fmt.Sprintf("the host publishes %s/%d to %s, which has no %s address", proto, port, pub.Member, map[bool]string{true: "IPv4", false: "IPv6"}[dst.Is4()]),
				Evidence: fmt.Sprintf("nsnet net inspect: %s's addresses %v", pub.Member, pub.Addrs),
				Fix:      "reach the host at an address of the member's family"}
		}
	}
	var elsewhere []string
	for _, l := range ls {
		if l.Proto != pn || l.Port != port {
			continue
		}
		// An IPv4 wildcard takes no IPv6; an IPv6 one takes both, unless
		// IPV6_V6ONLY.
		if l.Addr.IsUnspecified() && (l.Addr.Is6() && !(l.V6Only && dst.Is4()) || dst.Is4() && l.Addr.Is4()) || l.Addr == dst {
			return Step{N: n, Where: p.name, What: fmt.Sprintf("%s listens on %s/%d (%s)", p.name, proto, port, l.Addr), OK: true}
		}
		bound := l.Addr.String()
		if l.V6Only {
			bound += " (IPv6 only)"
		}
		elsewhere = append(elsewhere, bound)
	}
	if len(elsewhere) > 0 {
		return Step{N: n, Where: p.name, What: fmt.Sprintf("%s/%d at %s", proto, port, dst),
			Cause:    fmt.Sprintf("nothing listens on %s/%d at %s in %s: the port is bound only to %s", proto, port, dst, p.name, strings.Join(elsewhere, ", ")),
			Evidence: fmt.Sprintf("socket diagnostics (ss -ltnu) in %s: %s sockets on port %d at %s", p.name, proto, port, strings.Join(elsewhere, ", ")),
			Fix:      fmt.Sprintf("make the service in %s listen on %s or on every address", p.name, dst)}
	}
	s := Step{N: n, Where: p.name, What: fmt.Sprintf("%s/%d at %s", proto, port, dst),
		Cause:    fmt.Sprintf("nothing listens on %s/%d in %s", proto, port, p.name),
		Evidence: fmt.Sprintf("socket diagnostics (ss -ltnu) in %s: no %s socket on port %d", p.name, proto, port),
		Fix:      fmt.Sprintf("start the service in %s", p.name)}
	if p.name == hostName {
		s.Fix += fmt.Sprintf(", or publish a member's port: nsnet net connect NET NS -p %d:PORT/%s", port, proto)
	}
	return s
}

// downLinks lists p's interfaces, other than lo, that are down.
func downLinks(p *place) []string {
	links, _ := kernel.Retry(p.ns.NL.LinkList)
	var out []string
	for _, l := range links {
		if l.Attrs().Flags&net.FlagLoopback == 0 && l.Attrs().Flags&net.FlagUp == 0 {
			out = append(out, l.Attrs().Name)
		}
	}
	return out
}

// refusedRoute says why the kernel refuses to route, where a route or a
// policy rule says so (rather than no route at all): prohibit,
// unreachable, blackhole.
func refusedRoute(err error, routes []netlink.Route) string {
	switch {
	case errors.Is(err, unix.EACCES):
		return "a prohibit route or policy rule (administratively prohibited)"
	case errors.Is(err, unix.EHOSTUNREACH):
		return "an unreachable route or policy rule"
	case errors.Is(err, unix.EINVAL):
		return "a blackhole route or policy rule"
	case err == nil && len(routes) > 0:
		switch routes[0].Type {
		case unix.RTN_BLACKHOLE:
			return "a blackhole route"
		case unix.RTN_UNREACHABLE:
			return "an unreachable route"
		case unix.RTN_PROHIBIT:
			return "a prohibit route"
		}
	}
	return ""
}

// ruleDump lists p's policy routing rules other than the plain lookups
// of the local, main and default tables every namespace has.
func ruleDump(p *place) string {
	rules, err := p.ns.Rules()
	if err != nil {
		return "ip rule: " + err.Error()
	}
	var b []string
	for _, r := range rules {
		plain := !r.Src.IsValid() && !r.Dst.IsValid() && r.Action == "lookup"
		if plain && (r.Table == unix.RT_TABLE_LOCAL || r.Table == unix.RT_TABLE_MAIN || r.Table == unix.RT_TABLE_DEFAULT) {
			continue
		}
		from, to := "all", "all"
		if r.Src.IsValid() {
			from = r.Src.String()
		}
		if r.Dst.IsValid() {
			to = r.Dst.String()
		}
		action := r.Action
		if action == "lookup" {
			action = fmt.Sprintf("lookup %d", r.Table)
		}
		b = append(b, fmt.Sprintf("%d: from %s to %s %s", r.Priority, from, to, action))
	}
	if len(b) == 0 {
		return "ip rule: only the local, main and default lookups"
	}
	return "ip rule: " + strings.Join(b, "; ")
}

func routeDump(p *place) string {
	var b []string
	routes, _ := kernel.Retry(func() ([]netlink.Route, error) { return p.ns.NL.RouteList(nil, unix.AF_INET) })
	for _, r := range routes {
		dst := "default"
		if r.Dst != nil && !r.Dst.IP.IsUnspecified() {
			dst = r.Dst.String()
		}
		switch r.Type {
		case unix.RTN_BLACKHOLE:
			dst = "blackhole " + dst
		case unix.RTN_UNREACHABLE:
			dst = "unreachable " + dst
		case unix.RTN_PROHIBIT:
			dst = "prohibit " + dst
		}
		if r.Gw != nil {
			dst += " via " + r.Gw.String()
		}
		if l, err := p.ns.NL.LinkByIndex(r.LinkIndex); err == nil {
			dst += " dev " + l.Attrs().Name
		}
		b = append(b, dst)
	}
	if len(b) == 0 {
		return "ip route: (no routes)"
	}
	return "ip route: " + strings.Join(b, "; ")
}

func linkState(l netlink.Link) string {
	a := l.Attrs()
	return fmt.Sprintf("%s: flags %s, state %s", a.Name, a.Flags, a.OperState)
}

func neighEntry(p *place, l netlink.Link, a netip.Addr) string {
	fam := netlink.FAMILY_V4
	if a.Is6() {
		fam = netlink.FAMILY_V6
	}
	ns, _ := kernel.Retry(func() ([]netlink.Neigh, error) { return p.ns.NL.NeighList(l.Attrs().Index, fam) })
	for _, n := range ns {
		if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == a {
			return neighStateName(n.State)
		}
	}
	return ""
}

func neighState(p *place, l netlink.Link, a netip.Addr) string {
	st := neighEntry(p, l, a)
	if st == "" {
		st = "no entry"
	}
	return fmt.Sprintf("%s neigh show %s dev %s: %s", ipIn(p), a, l.Attrs().Name, st)
}

func neighStateName(s int) string {
	switch s {
	case netlink.NUD_INCOMPLETE:
		return "INCOMPLETE"
	case netlink.NUD_REACHABLE:
		return "REACHABLE"
	case netlink.NUD_STALE:
		return "STALE"
	case netlink.NUD_DELAY:
		return "DELAY"
	case netlink.NUD_PROBE:
		return "PROBE"
	case netlink.NUD_FAILED:
		return "FAILED"
	case netlink.NUD_PERMANENT:
		return "PERMANENT"
	case netlink.NUD_NOARP:
		return "NOARP"
	}
	return fmt.Sprintf("state %#x", s)
}

func bytesCompare(a, b []byte) int {
	x, _ := netip.AddrFromSlice(a)
	y, _ := netip.AddrFromSlice(b)
	return x.Compare(y)
}
