package doctor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/nsnet/nsnet/internal/firewall"
	"github.com/nsnet/nsnet/internal/nftrace"
)

// Live is what a real probe from FROM did, as the kernel's nftables
// trace saw it in each namespace of the path.
type Live struct {
	// Probe says what was sent.
	Probe string `json:"probe"`
	// Answered: the probe got its answer (an echo reply, a connection).
	Answered bool `json:"answered"`
	// Refused: a TCP reset or an ICMP port unreachable came back.
	Refused bool `json:"refused,omitempty"`
	// Inconclusive: no answer, which the probe's protocol allows (UDP).
	Inconclusive bool `json:"inconclusive,omitempty"`
	// Outcome says what came back, or did not.
	Outcome string `json:"outcome"`
	// Steps are the probe's and its answer's passes through each
	// namespace, in path order: the hooks, the rules that decided.
	Steps []Step `json:"steps"`
	// Notes are what went wrong with the trace itself (a namespace that
	// could not be traced, events lost, a table not removed).
	Notes []string `json:"notes,omitempty"`
}

// liveWait bounds a probe: the answer comes within it or not at all.
const liveWait = 2 * time.Second

// traceTable names the trace tables of this run: one run's tables never
// meet another's, and a table left by a killed run says whose it was.
func traceTable() string { return fmt.Sprintf("%s%d", tracePrefix, os.Getpid()) }

const tracePrefix = "nsnet-doctor-"

// probe is the live probe's socket and what identifies its packets.
type probe struct {
	match nftrace.Match
	fd    int
	pc    *icmp.PacketConn
	id    int
	six   bool
}

// live sends a real probe from FROM to dst (an ICMP echo, or with a port
// a TCP connect or a UDP datagram), with the kernel tracing it in every
// namespace the static walk crossed, and puts what it saw in r.
func (w *world) live(r *Report, from *place, dst netip.Addr, proto string, port uint16) {
	lv := &Live{}
	r.Live = lv
	pr, err := openProbe(from, dst, proto)
	if err != nil {
		lv.Outcome = "no probe sent: " + err.Error()
		lv.Notes = append(lv.Notes, lv.Outcome)
		return
	}
	defer pr.close()

	// The namespaces to trace: those the static walk named, in its order.
	var order []*place
	addPlace := func(p *place) {
		if p != nil && !slices.Contains(order, p) {
			order = append(order, p)
		}
	}
	addPlace(from)
	for _, s := range append(slices.Clone(r.Forward), r.Reply...) {
		addPlace(w.byName[s.Where])
	}
	addPlace(w.owner(dst))
	// The host too, off the walk's steps where it only bridges (a lab's
	// underlay) or where the walk stopped before it (nsnet's isolation):
	// its passes are placed by the interface they came in on.
	walked := len(order)
	addPlace(w.byName[hostName])
	name := traceTable()
	tracers := make([]*nftrace.Tracer, len(order))
	// Runs killed mid-probe left their tables, wherever they traced.
	for _, p := range w.places {
		if stale, err := nftrace.RemoveStale(int(p.ns.Fd()), tracePrefix); err != nil {
			lv.Notes = append(lv.Notes, fmt.Sprintf("%s: %v", p.name, err))
		} else if len(stale) > 0 {
			lv.Notes = append(lv.Notes, fmt.Sprintf("%s: removed trace tables %s, left by a run that was killed", p.name, strings.Join(stale, ", ")))
		}
	}
	for i, p := range order {
		t, err := nftrace.Start(int(p.ns.Fd()), name, pr.match)
		if err != nil {
			lv.Notes = append(lv.Notes, fmt.Sprintf("%s not traced: %v", p.name, err))
			continue
		}
		tracers[i] = t
	}
	defer func() {
		for i, t := range tracers {
			if t == nil {
				continue
			}
			if err := t.Stop(); err != nil {
				lv.Notes = append(lv.Notes, fmt.Sprintf("%s: %v (remove it: %s)", order[i].name, err, execIn(order[i], "nft delete table inet "+name)))
			}
		}
	}()

	res := pr.run(from, dst, proto, port)
	lv.Probe, lv.Outcome, lv.Answered, lv.Refused, lv.Inconclusive = res.what, res.outcome, res.answered, res.refused, res.inconclusive
	// The answer's last events are read a moment after it arrives.
	time.Sleep(50 * time.Millisecond)

	var all []located
	for i, t := range tracers {
		if t == nil {
			continue
		}
		evs, err := t.Events()
		if errors.Is(err, nftrace.ErrLost) {
			lv.Notes = append(lv.Notes, fmt.Sprintf("%s: %v", order[i].name, err))
		}
		for _, e := range evs {
			all = append(all, located{p: order[i], rank: i, e: e})
		}
	}
	lv.Steps = w.liveSteps(all, order, walked, pr)
	w.liveVerdict(r, lv, dst)
}

// located is a trace event and the namespace it came from.
type located struct {
	p    *place
	rank int // the namespace's place on the path
	e    nftrace.Event
}

func openProbe(from *place, dst netip.Addr, proto string) (*probe, error) {
	pr := &probe{fd: -1, six: dst.Is6(), id: os.Getpid() & 0xffff}
	pr.match.Magic = rand.Uint32()
	if proto == "" {
		network, addr := "ip4:icmp", "0.0.0.0"
		if pr.six {
			network, addr = "ip6:ipv6-icmp", "::"
		}
		err := from.ns.Do(func() (err error) { pr.pc, err = icmp.ListenPacket(network, addr); return err })
		if err != nil {
			return nil, fmt.Errorf("ICMP socket in %s: %w", from.name, err)
		}
		return pr, nil
	}
	family, typ, pn := unix.AF_INET, unix.SOCK_STREAM, uint8(unix.IPPROTO_TCP)
	if pr.six {
		family = unix.AF_INET6
	}
	if proto == "udp" {
		typ, pn = unix.SOCK_DGRAM, unix.IPPROTO_UDP
	}
	err := from.ns.Do(func() (err error) {
		pr.fd, err = unix.Socket(family, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s socket in %s: %w", proto, from.name, err)
	}
	// Bound now, so that the trace can match its port before it sends.
	var sa unix.Sockaddr = &unix.SockaddrInet4{}
	if pr.six {
		sa = &unix.SockaddrInet6{}
	}
	if err := unix.Bind(pr.fd, sa); err != nil {
		pr.close()
		return nil, fmt.Errorf("bind the probe's socket: %w", err)
	}
	got, err := unix.Getsockname(pr.fd)
	if err != nil {
		pr.close()
		return nil, fmt.Errorf("the probe's port: %w", err)
	}
	switch s := got.(type) {
	case *unix.SockaddrInet4:
		pr.match.Port = uint16(s.Port)
	case *unix.SockaddrInet6:
		pr.match.Port = uint16(s.Port)
	}
	pr.match.Proto = pn
	return pr, nil
}

func (pr *probe) close() {
	if pr.pc != nil {
		pr.pc.Close()
	}
	if pr.fd >= 0 {
		// Reset rather than leave a connection open at TO.
		_ = unix.SetsockoptLinger(pr.fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		unix.Close(pr.fd)
	}
}

// result is what came of a probe.
type result struct {
	what, outcome                   string
	answered, refused, inconclusive bool
}

// sendFailed words an error of the probe's own sending: the kernel of
// FROM refused it (no route, typically).
func sendFailed(from *place, err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return fmt.Sprintf("%s could not send it: %s", from.name, errno.Error())
	}
	return fmt.Sprintf("%s could not send it: %v", from.name, err)
}

// run sends the probe and waits for its answer.
func (pr *probe) run(from *place, dst netip.Addr, proto string, port uint16) result {
	if pr.pc != nil {
		return pr.ping(from, dst)
	}
	var sa unix.Sockaddr
	if pr.six {
		sa = &unix.SockaddrInet6{Port: int(port), Addr: dst.As16()}
	} else {
		sa = &unix.SockaddrInet4{Port: int(port), Addr: dst.As4()}
	}
	what := fmt.Sprintf("%s from port %d to %s", strings.ToUpper(proto), pr.match.Port, netip.AddrPortFrom(dst, port))
	if proto == "tcp" {
		if err := unix.Connect(pr.fd, sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
			return result{what: what, outcome: sendFailed(from, err)}
		}
		fds := []unix.PollFd{{Fd: int32(pr.fd), Events: unix.POLLOUT}}
		n, err := pollRetry(fds, liveWait)
		if err != nil || n == 0 {
			return result{what: what, outcome: fmt.Sprintf("no answer to the SYN within %s", liveWait)}
		}
		soerr, _ := unix.GetsockoptInt(pr.fd, unix.SOL_SOCKET, unix.SO_ERROR)
		switch e := unix.Errno(soerr); {
		case soerr == 0:
			return result{what: what, outcome: "connection established", answered: true}
		case e == unix.ECONNREFUSED:
			return result{what: what, outcome: "refused by a TCP reset (nothing listens at that address and port, or a firewall rejects)", refused: true}
		default:
			return result{what: what, outcome: "connect failed: " + e.Error()}
		}
	}
	if err := unix.Connect(pr.fd, sa); err != nil {
		return result{what: what, outcome: sendFailed(from, err)}
	}
	if _, err := unix.Write(pr.fd, []byte("nsnet doctor probe\n")); err != nil {
		return result{what: what, outcome: sendFailed(from, err)}
	}
	fds := []unix.PollFd{{Fd: int32(pr.fd), Events: unix.POLLIN}}
	if n, err := pollRetry(fds, liveWait); err != nil || n == 0 {
		return result{what: what, outcome: fmt.Sprintf("no answer within %s (a UDP service need not answer)", liveWait), inconclusive: true}
	}
	buf := make([]byte, 64)
	if _, err := unix.Read(pr.fd, buf); err != nil {
		if errors.Is(err, unix.ECONNREFUSED) {
			return result{what: what, outcome: "refused by an ICMP port unreachable (nothing listens at that address and port, or a firewall rejects)", refused: true}
		}
		return result{what: what, outcome: "receive failed: " + err.Error()}
	}
	return result{what: what, outcome: "answered", answered: true}
}

func pollRetry(fds []unix.PollFd, d time.Duration) (int, error) {
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return 0, nil
		}
		n, err := unix.Poll(fds, int(left.Milliseconds())+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return n, err
	}
}

// ping sends up to three echo requests, 500 ms apart, and waits for the
// reply that carries the probe's payload.
func (pr *probe) ping(from *place, dst netip.Addr) result {
	var typ, replyType icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	protoNum := 1
	if pr.six {
		typ, replyType, protoNum = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply, 58
	}
	what := fmt.Sprintf("ICMP echo request to %s", dst)
	data := binary.BigEndian.AppendUint32(nil, pr.match.Magic)
	data = append(data, "nsnet doctor"...)
	start := time.Now()
	deadline := start.Add(liveWait)
	buf := make([]byte, 1500)
	for seq := 1; seq <= 3; seq++ {
		b, err := (&icmp.Message{Type: typ, Body: &icmp.Echo{ID: pr.id, Seq: seq, Data: data}}).Marshal(nil)
		if err != nil {
			return result{what: what, outcome: "build the echo request: " + err.Error()}
		}
		if _, err := pr.pc.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			return result{what: what, outcome: sendFailed(from, err)}
		}
		until := time.Now().Add(500 * time.Millisecond)
		if seq == 3 || until.After(deadline) {
			until = deadline
		}
		for {
			_ = pr.pc.SetReadDeadline(until)
			n, peer, err := pr.pc.ReadFrom(buf)
			if err != nil {
				break // this try's time is up
			}
			m, err := icmp.ParseMessage(protoNum, buf[:n])
			if err != nil {
				continue
			}
			switch body := m.Body.(type) {
			case *icmp.Echo:
				if m.Type == replyType && body.ID == pr.id && len(body.Data) >= 4 && binary.BigEndian.Uint32(body.Data) == pr.match.Magic {
					return result{what: what, outcome: fmt.Sprintf("echo reply after %s", time.Since(start).Round(10*time.Microsecond)), answered: true}
				}
			case *icmp.DstUnreach:
				if quotedTag(body.Data, pr.six) == pr.match.Magic {
					by := peer.String()
					if a, err := netip.ParseAddr(by); err == nil {
						if _, mine := from.addrs[a.Unmap()]; mine {
							// The kernel of FROM itself: its next hop never
							// answered ARP or neighbour discovery.
							return result{what: what, outcome: fmt.Sprintf("%s's own kernel reports %s unreachable (ICMP %v code %d): its next hop never answered ARP or neighbour discovery", from.name, dst, m.Type, m.Code)}
						}
					}
					return result{what: what, outcome: fmt.Sprintf("destination unreachable (ICMP %v, code %d) from %s", m.Type, m.Code, by)}
				}
			}
		}
		if time.Now().After(deadline) {
			break
		}
	}
	return result{what: what, outcome: fmt.Sprintf("no echo reply within %s", liveWait)}
}

// quotedTag reads the tag of the echo request an ICMP error quotes: the
// original IP header, the echo's 8-byte header, then its payload. Errors
// about other packets (an earlier run's) are not this probe's answer.
func quotedTag(data []byte, six bool) uint32 {
	hl := 40
	if !six {
		if len(data) < 1 {
			return 0
		}
		hl = int(data[0]&0x0f) * 4
	}
	if len(data) < hl+12 {
		return 0
	}
	return binary.BigEndian.Uint32(data[hl+8 : hl+12])
}

// pass is one packet's way through one namespace: its trace events.
type pass struct {
	p      *place
	rank   int
	events []nftrace.Event
	reply  bool
}

// liveSteps turns the trace into steps: one per packet and namespace,
// the probe's in path order, then its answer's in reverse path order.
// order[:walked] are the static walk's places, in its order.
func (w *world) liveSteps(all []located, order []*place, walked int, pr *probe) []Step {
	slices.SortStableFunc(all, func(a, b located) int {
		if c := a.rank - b.rank; c != 0 {
			return c
		}
		return a.e.Seq - b.e.Seq
	})
	var passes []*pass
	// A packet is known by the kernel's trace id, which changes where
	// its input interface does (a bridge passing it up), and by its
	// header's bytes 4-7 (an echo's id and sequence, a TCP sequence
	// number), which NAT leaves alone.
	type key struct {
		rank  int
		reply bool
		flow  uint32
	}
	byKey := map[key]*pass{}
	for _, l := range all {
		if pk := l.e.Packet; pk.Proto == unix.IPPROTO_TCP && pk.TCPFlags&(tcpSYN|tcpRST) == 0 {
			continue // past the handshake: the connection was made
		}
		k := key{rank: l.rank, reply: isAnswer(l.e.Packet, pr), flow: l.e.Packet.Flow}
		ps := byKey[k]
		if ps == nil {
			ps = &pass{p: l.p, rank: 2 * l.rank, reply: k.reply}
			byKey[k] = ps
			passes = append(passes, ps)
		}
		ps.events = append(ps.events, l.e)
	}
	// The walk's own places are in its order; a place off it (the host
	// bridging a lab's underlay) goes right after the place its packet
	// came from, found by the veth it came in on.
	for _, ps := range passes {
		if ps.rank/2 < walked {
			continue
		}
		for _, e := range ps.events {
			if e.IIF == 0 {
				continue
			}
			if l, err := ps.p.ns.NL.LinkByIndex(e.IIF); err == nil {
				if q, _ := w.peerOf(ps.p, l); q != nil {
					if i := slices.Index(order, q); i >= 0 && i < walked {
						ps.rank = 2*i + 1
						if ps.reply {
							ps.rank = 2*i - 1
						}
					}
				}
			}
			break
		}
	}
	slices.SortStableFunc(passes, func(a, b *pass) int {
		switch {
		case a.reply != b.reply:
			if a.reply {
				return 1
			}
			return -1
		case a.reply:
			return b.rank - a.rank
		}
		return a.rank - b.rank
	})
	var steps []Step
	seen := map[string]int{}
	for _, ps := range passes {
		s := describePass(ps)
		key := s.Where + "\x00" + s.What
		if i, ok := seen[key]; ok {
			steps[i].repeat++
			continue // a retry of the probe, the same way
		}
		seen[key] = len(steps)
		steps = append(steps, s)
	}
	for i := range steps {
		steps[i].N = i + 1
		if steps[i].repeat > 0 {
			steps[i].What += fmt.Sprintf(" (×%d)", steps[i].repeat+1)
		}
	}
	return steps
}

// TCP flags the trace keeps: the handshake, and a reset.
const (
	tcpSYN = 0x02
	tcpRST = 0x04
)

// isAnswer says whether a traced packet goes back towards FROM: an echo
// reply, or a packet from the probe's peer port to its own.
func isAnswer(p nftrace.Packet, pr *probe) bool {
	switch p.Proto {
	case unix.IPPROTO_ICMP:
		return p.ICMPType == 0
	case unix.IPPROTO_ICMPV6:
		return p.ICMPType == 129
	}
	return p.DstPort == pr.match.Port && p.SrcPort != pr.match.Port
}

// describePass spells one packet's way through one namespace: where it
// came in and went out, the NAT it met, and the rules that decided; a
// drop or a reject makes the step fail. A packet sent again the same
// way (a TCP SYN retransmitted) is counted, not repeated.
func describePass(ps *pass) Step {
	var hooks, decided []string
	var iif, oif, sent int
	var drop *nftrace.Event
	firstPkt, lastPkt := ps.events[0].Packet, ps.events[0].Packet
	for i, e := range ps.events {
		if e.IIF != 0 && iif == 0 {
			iif = e.IIF
		}
		if e.OIF != 0 {
			oif = e.OIF
		}
		lastPkt = e.Packet
		if e.Ours {
			// One policy event per hook (the kernel also reports entering
			// each chain, as a rule event without a handle).
			if e.Kind == "policy" && !strings.HasPrefix(e.Chain, "mark-") {
				h := hookName(e)
				if len(hooks) > 0 && h == hooks[0] {
					sent++
				}
				if sent == 0 {
					hooks = append(hooks, h)
				}
			}
			continue
		}
		if strings.HasPrefix(e.Table, tracePrefix) {
			continue // another doctor run's trace table
		}
		if e.Kind == "rule" && e.Verdict == "continue" {
			continue // a rule that only counted, logged or marked
		}
		if !slices.Contains(decided, e.String()) {
			decided = append(decided, e.String())
		}
		if e.Verdict == "drop" && drop == nil {
			drop = &ps.events[i]
		}
	}
	s := Step{Where: ps.p.name, OK: drop == nil, oif: oif, pktDst: lastPkt.Dst}
	what := packetName(firstPkt)
	if iif != 0 {
		what += ", in " + linkName(ps.p, iif)
	}
	if oif != 0 {
		what += ", out " + linkName(ps.p, oif)
	}
	if len(hooks) > 0 {
		what += ", hooks " + strings.Join(hooks, " > ")
	}
	if lastPkt.Src != firstPkt.Src && lastPkt.Src.IsValid() {
		what += fmt.Sprintf(", source NATed to %s", lastPkt.Src)
	}
	if lastPkt.Dst != firstPkt.Dst && lastPkt.Dst.IsValid() {
		what += fmt.Sprintf(", destination NATed to %s", lastPkt.Dst)
	}
	if len(decided) > 0 {
		what += "; " + strings.Join(decided, "; ")
	}
	if sent > 0 {
		what += fmt.Sprintf(" (sent %d times)", sent+1)
	}
	s.What = what
	if drop != nil {
		chain := fmt.Sprintf("%s %s %s", drop.Family, drop.Table, drop.Chain)
		verb := "dropped"
		if rejects(ps.p, drop) {
			verb = "rejected"
			s.What = strings.Replace(s.What, drop.String(), drop.String()+" (reject)", 1)
		}
		by := fmt.Sprintf("rule handle %d of chain %s", drop.Handle, chain)
		fix := fmt.Sprintf("%s shows it; delete it (nft delete rule %s handle %d) or insert an accept before it", execIn(ps.p, "nft -a list chain "+chain), chain, drop.Handle)
		if drop.Kind == "policy" {
			by = fmt.Sprintf("the policy drop of chain %s (no rule accepted it)", chain)
			fix = fmt.Sprintf("%s, or a narrower accept (nft -a list chain %s shows the chain)", execIn(ps.p, fmt.Sprintf("nft insert rule %s accept", chain)), chain)
		}
		if drop.Table == firewall.TableName {
			fix = "a rule of nsnet's own table: the networks are isolated, a NAT network is reached from outside only by its published ports, or the port is not published (nsnet net inspect); nsnet gc rebuilds the table if it was changed by hand"
		}
		s.Cause = fmt.Sprintf("the probe was %s in %s by %s", verb, ps.p.name, by)
		s.Evidence = "nft trace: " + drop.String()
		s.Fix = fix
	}
	return s
}

// rejects says whether the rule behind a drop event rejects (answers
// with a reset or an ICMP error) rather than drops: the trace reports
// both as drop.
func rejects(p *place, e *nftrace.Event) bool {
	if e.Kind != "rule" {
		return false
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(p.ns.Fd())))
	if err != nil {
		return false
	}
	tables, err := c.ListTables()
	if err != nil {
		return false
	}
	for _, t := range tables {
		if t.Name != e.Table || firewall.FamilyName(t.Family) != e.Family {
			continue
		}
		rules, err := c.GetRules(t, &nftables.Chain{Name: e.Chain, Table: t})
		if err != nil {
			return false
		}
		for _, r := range rules {
			if r.Handle != e.Handle {
				continue
			}
			for _, x := range r.Exprs {
				switch v := x.(type) {
				case *expr.Reject:
					return true
				case *expr.Target:
					return v.Name == "REJECT"
				}
			}
		}
	}
	return false
}

// hookName names the hook of one of the tracer's own chains.
func hookName(e nftrace.Event) string {
	if e.Family == "bridge" {
		return "bridge " + e.Chain
	}
	return e.Chain
}

func linkName(p *place, index int) string {
	if l, err := p.ns.NL.LinkByIndex(index); err == nil {
		return l.Attrs().Name
	}
	return fmt.Sprintf("ifindex %d", index)
}

func packetName(p nftrace.Packet) string {
	switch p.Proto {
	case unix.IPPROTO_ICMP, unix.IPPROTO_ICMPV6:
		kind := fmt.Sprintf("ICMP type %d", p.ICMPType)
		switch p.ICMPType {
		case 8, 128:
			kind = "echo request"
		case 0, 129:
			kind = "echo reply"
		}
		return fmt.Sprintf("%s %s > %s", kind, p.Src, p.Dst)
	case unix.IPPROTO_TCP:
		return fmt.Sprintf("TCP %s > %s [%s]", netip.AddrPortFrom(p.Src, p.SrcPort), netip.AddrPortFrom(p.Dst, p.DstPort), tcpFlags(p.TCPFlags))
	case unix.IPPROTO_UDP:
		return fmt.Sprintf("UDP %s > %s", netip.AddrPortFrom(p.Src, p.SrcPort), netip.AddrPortFrom(p.Dst, p.DstPort))
	}
	return fmt.Sprintf("protocol %d %s > %s", p.Proto, p.Src, p.Dst)
}

func tcpFlags(f uint8) string {
	var out []string
	for i, n := range []string{"FIN", "SYN", "RST", "PSH", "ACK"} {
		if f&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return strings.Join(out, ",")
}

// liveVerdict weighs the probe against the static walk: a drop or a
// reject in the trace is the cause, whatever the walk said; a probe that
// got nothing back though nothing dropped it is placed after the last
// namespace that saw it; an answer overrules a static verdict of broken.
func (w *world) liveVerdict(r *Report, lv *Live, dst netip.Addr) {
	for _, s := range lv.Steps {
		if !s.OK {
			if !r.OK && r.Cause != s.Cause {
				lv.Notes = append(lv.Notes, "the static walk found: "+r.Cause)
			}
			r.OK, r.Cause = false, s.Cause
			return
		}
	}
	switch {
	case lv.Answered:
		if !r.OK {
			lv.Notes = append(lv.Notes, "the live probe was answered, though the static walk found: "+r.Cause)
			r.OK, r.Cause = true, ""
		}
		return
	case lv.Inconclusive:
		return
	}
	s := Step{N: len(lv.Steps) + 1, What: "the probe's outcome: " + lv.Outcome}
	switch {
	case lv.Refused:
		// Who refused: TO, unless the trace shows a reset sent sooner.
		s.Where = r.To
		if p := w.owner(dst); p != nil {
			s.Where = p.name
		}
		s.Cause = "the live probe was " + lv.Outcome
		for _, st := range lv.Steps {
			if strings.Contains(st.What, "RST") && strings.Contains(st.What, "hooks output") {
				s.Where = st.Where
				s.Cause = fmt.Sprintf("the live probe was refused: %s sent a TCP reset (nothing listens at that address and port there, or a rule rejects)", st.Where)
				break
			}
		}
		s.Fix = "check the service's listening address and port in " + s.Where + " (ss -ltnu)"
	case len(lv.Steps) > 0:
		last := lv.Steps[len(lv.Steps)-1]
		s.Where = last.Where
		s.Cause = fmt.Sprintf("the live probe got nothing back (%s), and no firewall dropped it: it was last seen in %s (live step %d); what stops it there is outside nftables (a route, a neighbour, a device) or beyond the namespaces doctor sees", lv.Outcome, last.Where, last.N)
		w.unansweredNeighbour(&s, last)
	default:
		s.Where = r.From
		s.Cause = "the live probe got nothing back (" + lv.Outcome + "), and the trace saw nothing of it"
	}
	lv.Steps = append(lv.Steps, s)
	if r.OK {
		r.OK, r.Cause = false, s.Cause
	}
}

// unansweredNeighbour names the next hop that never answered ARP or
// neighbour discovery, where the probe was last seen leaving by an
// interface: the live probe has just asked, so its entry is fresh.
func (w *world) unansweredNeighbour(s *Step, last Step) {
	p := w.byName[last.Where]
	if p == nil || last.oif == 0 || !last.pktDst.IsValid() {
		return
	}
	link, err := p.ns.NL.LinkByIndex(last.oif)
	if err != nil {
		return
	}
	via := last.pktDst
	if routes, err := p.ns.NL.RouteGet(via.AsSlice()); err == nil && len(routes) > 0 {
		if g, ok := netip.AddrFromSlice(routes[0].Gw); ok {
			via = g.Unmap()
		}
	}
	if st := neighEntry(p, link, via); st == "INCOMPLETE" || st == "FAILED" {
		s.Cause = fmt.Sprintf("the probe left %s by %s towards %s, which never answered ARP or neighbour discovery (entry %s): the packet was never sent on", p.name, link.Attrs().Name, via, st)
		s.Evidence = neighState(p, link, via)
		s.Fix = fmt.Sprintf("check that the holder of %s is up on that segment and answers ARP (arp_ignore, arp_filter, a firewall dropping ARP)", via)
	}
}
