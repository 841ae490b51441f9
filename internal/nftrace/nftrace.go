// Package nftrace follows chosen packets through one network namespace
// with the kernel's own nftables trace (`meta nftrace`, what `nft monitor
// trace` shows): it adds a table of its own whose first chains mark the
// packets to follow, listens for the kernel's trace events, and removes
// the table when done. The trace bit does not survive a namespace
// crossing (a veth scrubs it), so a path is followed with one Tracer per
// namespace.
package nftrace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nsnet/nsnet/internal/firewall"
)

// Match says which packets to follow: ICMP and ICMPv6 whose bytes 8-11
// after the ICMP header's start (the echo payload's first four) are
// Magic, and, when Port is set, TCP or UDP (Proto) to or from that port.
type Match struct {
	Magic uint32
	Proto uint8 // unix.IPPROTO_TCP or unix.IPPROTO_UDP, with Port
	Port  uint16
}

// Event is one trace event: a packet met a rule that decided, returned
// from a chain, or fell to a base chain's policy.
type Event struct {
	// Seq orders the events of one Tracer as the kernel sent them.
	Seq int
	// At is when the event was read.
	At time.Time
	// ID is the kernel's identity of the packet within the namespace.
	ID     uint32
	Family string // ip, ip6, inet, bridge, arp, netdev
	Table  string
	Chain  string
	// Kind is "rule", "policy" or "return".
	Kind    string
	Handle  uint64 // the rule's handle, for Kind "rule"
	Verdict string // accept, drop, continue, jump CHAIN, goto CHAIN, return, queue, stolen
	IIF     int
	OIF     int
	// Ours says the event is from the Tracer's own table.
	Ours bool
	// Packet is what the network and transport headers said when the
	// event was sent (after any NAT already applied).
	Packet Packet
}

// Packet is the part of a traced packet's headers a path needs.
type Packet struct {
	Src, Dst netip.Addr
	Proto    uint8
	// ICMPType is the ICMP or ICMPv6 type; SrcPort and DstPort are TCP
	// or UDP's; TCPFlags the TCP flags byte.
	ICMPType         uint8
	SrcPort, DstPort uint16
	TCPFlags         uint8
	// Flow is the transport header's bytes 4-7: an echo's identifier
	// and sequence number, a TCP segment's sequence number. NAT leaves
	// it alone, so it follows one packet across namespaces.
	Flow uint32
	// Tag is an ICMP message's bytes 8-11: an echo's first four bytes
	// of payload, which Match.Magic is compared with.
	Tag uint32
}

// Matches says whether a traced packet is one m follows: every table's
// marks set the same trace bit, so another run's packets are traced too.
func (m Match) Matches(p Packet) bool {
	switch p.Proto {
	case unix.IPPROTO_ICMP, unix.IPPROTO_ICMPV6:
		return p.Tag == m.Magic
	case unix.IPPROTO_TCP, unix.IPPROTO_UDP:
		return m.Port != 0 && p.Proto == m.Proto && (p.SrcPort == m.Port || p.DstPort == m.Port)
	}
	return false
}

// ErrLost says the kernel dropped trace events: the socket's buffer
// overflowed, and the trace has gaps.
var ErrLost = errors.New("trace events lost (socket buffer overflow)")

// Tracer follows matching packets in one namespace.
type Tracer struct {
	conn   *netlink.Conn
	nft    *nftables.Conn
	tables []*nftables.Table
	name   string
	match  Match

	mu     sync.Mutex
	events []Event
	lost   bool
	done   chan struct{}
}

// priority puts the marking chains before every other hook user (raw is
// -300, conntrack -200) and the observing ones just after them or last.
const (
	prioMark  = -400
	prioFirst = -399
	prioLast  = 1000
)

// Start begins following packets matching m in the namespace open at
// nsFd, in a table named name (one per doctor run, so that two runs do
// not meet). The listener is joined before the table exists, so that no
// marked packet goes unreported.
func Start(nsFd int, name string, m Match) (*Tracer, error) {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: nsFd})
	if err != nil {
		return nil, fmt.Errorf("trace listener: %w", err)
	}
	if err := conn.JoinGroup(unix.NFNLGRP_NFTRACE); err != nil {
		conn.Close()
		return nil, fmt.Errorf("trace listener: join the trace group: %w", err)
	}
	// A busy table makes many events per packet; losing some is
	// reported, never fatal.
	_ = conn.SetReadBuffer(4 << 20)
	nft, err := nftables.New(nftables.WithNetNSFd(nsFd))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("nftables: %w", err)
	}
	t := &Tracer{conn: conn, nft: nft, name: name, match: m, done: make(chan struct{})}
	go t.read()
	if err := t.install(m); err != nil {
		t.Stop()
		return nil, err
	}
	return t, nil
}

// install adds the inet table (marking at prerouting and output, and an
// empty chain at each hook whose policy event shows the packet there)
// and a bridge table that shows bridged packets at their ports.
func (t *Tracer) install(m Match) error {
	inet := t.nft.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: t.name})
	t.tables = append(t.tables, inet)
	chain := func(tab *nftables.Table, name string, hook *nftables.ChainHook, prio int) *nftables.Chain {
		return t.nft.AddChain(&nftables.Chain{Table: tab, Name: name, Type: nftables.ChainTypeFilter,
			Hooknum: hook, Priority: nftables.ChainPriorityRef(nftables.ChainPriority(prio))})
	}
	mark := func(c *nftables.Chain) {
		for _, exprs := range matchExprs(m) {
			exprs = append(exprs,
				&expr.Immediate{Register: 1, Data: []byte{1}},
				&expr.Meta{Key: expr.MetaKeyNFTRACE, SourceRegister: true, Register: 1})
			t.nft.AddRule(&nftables.Rule{Table: c.Table, Chain: c, Exprs: exprs})
		}
	}
	mark(chain(inet, "mark-prerouting", nftables.ChainHookPrerouting, prioMark))
	mark(chain(inet, "mark-output", nftables.ChainHookOutput, prioMark))
	chain(inet, "prerouting", nftables.ChainHookPrerouting, prioFirst)
	chain(inet, "output", nftables.ChainHookOutput, prioFirst)
	chain(inet, "input", nftables.ChainHookInput, prioLast)
	chain(inet, "forward", nftables.ChainHookForward, prioLast)
	chain(inet, "postrouting", nftables.ChainHookPostrouting, prioLast)
	if err := t.nft.Flush(); err != nil {
		return fmt.Errorf("add trace table inet %s: %w", t.name, err)
	}
	// Bridged packets never reach the inet hooks of the bridge's
	// namespace; a bridge table shows them crossing. Not every kernel
	// has bridge tables: the trace goes on without.
	br := t.nft.AddTable(&nftables.Table{Family: nftables.TableFamilyBridge, Name: t.name})
	mark(chain(br, "mark-prerouting", nftables.ChainHookPrerouting, prioMark))
	chain(br, "prerouting", nftables.ChainHookPrerouting, prioFirst)
	chain(br, "forward", nftables.ChainHookForward, prioLast)
	if err := t.nft.Flush(); err == nil {
		t.tables = append(t.tables, br)
	}
	return nil
}

// matchExprs are the rules' matches, one list per rule.
func matchExprs(m Match) [][]expr.Any {
	l4 := func(proto uint8) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		}
	}
	magic := binary.BigEndian.AppendUint32(nil, m.Magic)
	var out [][]expr.Any
	for _, p := range []uint8{unix.IPPROTO_ICMP, unix.IPPROTO_ICMPV6} {
		out = append(out, append(l4(p),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 8, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: magic}))
	}
	if m.Port != 0 {
		port := binary.BigEndian.AppendUint16(nil, m.Port)
		for _, off := range []uint32{0, 2} { // source, destination
			out = append(out, append(l4(m.Proto),
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: 2},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: port}))
		}
	}
	return out
}

func (t *Tracer) read() {
	defer close(t.done)
	seq := 0
	// The kernel puts the packet's headers in the first event of each
	// chain it traces; the chain's later events carry the packet's id
	// alone.
	last := map[uint32]Packet{}
	for {
		msgs, err := t.conn.Receive()
		if err != nil {
			if errors.Is(err, unix.ENOBUFS) {
				t.mu.Lock()
				t.lost = true
				t.mu.Unlock()
				continue
			}
			return // closed
		}
		now := time.Now()
		for _, m := range msgs {
			ev, ok := Decode(m)
			if !ok {
				continue
			}
			if ev.Packet.Src.IsValid() {
				last[ev.ID] = ev.Packet
			} else {
				ev.Packet = last[ev.ID]
			}
			if !t.match.Matches(ev.Packet) {
				continue // another run's probe, or an unknown packet
			}
			seq++
			ev.Seq, ev.At = seq, now
			ev.Ours = ev.Table == t.name
			t.mu.Lock()
			t.events = append(t.events, ev)
			t.mu.Unlock()
		}
	}
}

// Events returns the events of the matching packets so far, and ErrLost
// if some were lost.
func (t *Tracer) Events() ([]Event, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var err error
	if t.lost {
		err = ErrLost
	}
	return append([]Event(nil), t.events...), err
}

// Stop removes the Tracer's tables and stops listening. It returns the
// error of a table it could not remove, naming it.
func (t *Tracer) Stop() error {
	var errs []error
	for _, tab := range t.tables {
		t.nft.DelTable(tab)
		if err := t.nft.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("remove trace table %s %s: %w", firewall.FamilyName(tab.Family), tab.Name, err))
		}
	}
	t.tables = nil
	t.nft.CloseLasting()
	t.conn.Close()
	<-t.done
	return errors.Join(errs...)
}

// RemoveStale removes the tables, in the namespace open at nsFd, that a
// run killed before it could remove its own left: those named prefix
// followed by the pid of a process that is gone. It returns their names.
func RemoveStale(nsFd int, prefix string) ([]string, error) {
	c, err := nftables.New(nftables.WithNetNSFd(nsFd))
	if err != nil {
		return nil, err
	}
	tables, err := c.ListTables()
	if err != nil {
		return nil, fmt.Errorf("list nftables tables: %w", err)
	}
	var gone []string
	for _, t := range tables {
		pid, err := strconv.Atoi(strings.TrimPrefix(t.Name, prefix))
		if !strings.HasPrefix(t.Name, prefix) || err != nil || pid <= 0 || unix.Kill(pid, 0) != unix.ESRCH {
			continue
		}
		c.DelTable(t)
		gone = append(gone, firewall.FamilyName(t.Family)+" "+t.Name)
	}
	if len(gone) == 0 {
		return nil, nil
	}
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("remove stale trace tables %v: %w", gone, err)
	}
	return gone, nil
}

// Decode reads one netlink message as a trace event.
func Decode(m netlink.Message) (Event, bool) {
	if m.Header.Type != netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_TRACE) || len(m.Data) < 4 {
		return Event{}, false
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return Event{}, false
	}
	ad.ByteOrder = binary.BigEndian
	ev := Event{Family: firewall.FamilyName(nftables.TableFamily(m.Data[0]))}
	var nh, th []byte
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_TRACE_TABLE:
			ev.Table = ad.String()
		case unix.NFTA_TRACE_CHAIN:
			ev.Chain = ad.String()
		case unix.NFTA_TRACE_RULE_HANDLE:
			ev.Handle = ad.Uint64()
		case unix.NFTA_TRACE_TYPE:
			ev.Kind = map[uint32]string{unix.NFT_TRACETYPE_POLICY: "policy", unix.NFT_TRACETYPE_RETURN: "return", unix.NFT_TRACETYPE_RULE: "rule"}[ad.Uint32()]
		case unix.NFTA_TRACE_VERDICT:
			ad.Nested(func(nd *netlink.AttributeDecoder) error {
				var code int32
				var target string
				for nd.Next() {
					switch nd.Type() {
					case unix.NFTA_VERDICT_CODE:
						code = int32(nd.Uint32())
					case unix.NFTA_VERDICT_CHAIN:
						target = nd.String()
					}
				}
				ev.Verdict = verdictName(code, target)
				return nil
			})
		case unix.NFTA_TRACE_POLICY:
			ev.Verdict = verdictName(int32(ad.Uint32()), "")
		case unix.NFTA_TRACE_ID:
			ev.ID = ad.Uint32()
		case unix.NFTA_TRACE_IIF:
			ev.IIF = int(ad.Uint32())
		case unix.NFTA_TRACE_OIF:
			ev.OIF = int(ad.Uint32())
		case unix.NFTA_TRACE_NETWORK_HEADER:
			nh = ad.Bytes()
		case unix.NFTA_TRACE_TRANSPORT_HEADER:
			th = ad.Bytes()
		}
	}
	if ad.Err() != nil {
		return Event{}, false
	}
	ev.Packet = parsePacket(nh, th)
	return ev, true
}

func parsePacket(nh, th []byte) Packet {
	var p Packet
	switch {
	case len(nh) >= 20 && nh[0]>>4 == 4:
		p.Proto = nh[9]
		p.Src = netip.AddrFrom4([4]byte(nh[12:16]))
		p.Dst = netip.AddrFrom4([4]byte(nh[16:20]))
	case len(nh) >= 40 && nh[0]>>4 == 6:
		p.Proto = nh[6] // the next header; extension headers are rare here
		p.Src = netip.AddrFrom16([16]byte(nh[8:24]))
		p.Dst = netip.AddrFrom16([16]byte(nh[24:40]))
	}
	if len(th) >= 8 {
		p.Flow = binary.BigEndian.Uint32(th[4:8])
	}
	if len(th) >= 12 {
		p.Tag = binary.BigEndian.Uint32(th[8:12])
	}
	switch p.Proto {
	case unix.IPPROTO_ICMP, unix.IPPROTO_ICMPV6:
		if len(th) >= 1 {
			p.ICMPType = th[0]
		}
	case unix.IPPROTO_TCP, unix.IPPROTO_UDP:
		if len(th) >= 4 {
			p.SrcPort = binary.BigEndian.Uint16(th[0:2])
			p.DstPort = binary.BigEndian.Uint16(th[2:4])
		}
		if p.Proto == unix.IPPROTO_TCP && len(th) >= 14 {
			p.TCPFlags = th[13]
		}
	}
	return p
}

// The netfilter verdicts (linux/netfilter.h), which x/sys/unix lacks.
const (
	nfDrop = iota
	nfAccept
	nfStolen
	nfQueue
	nfRepeat
)

func verdictName(code int32, target string) string {
	switch code {
	case nfDrop:
		return "drop"
	case nfAccept:
		return "accept"
	case nfStolen:
		return "stolen"
	case nfQueue:
		return "queue"
	case nfRepeat:
		return "repeat"
	case unix.NFT_CONTINUE:
		return "continue"
	case unix.NFT_BREAK:
		return "break"
	case unix.NFT_JUMP:
		return "jump " + target
	case unix.NFT_GOTO:
		return "goto " + target
	case unix.NFT_RETURN:
		return "return"
	}
	// Queue verdicts carry their queue number in the high bits.
	if code&0xff == nfQueue {
		return "queue"
	}
	return fmt.Sprintf("verdict %d", code)
}

// String spells the event as one line: where it was and what decided.
func (e Event) String() string {
	if e.Kind == "policy" {
		return fmt.Sprintf("%s %s %s: policy %s", e.Family, e.Table, e.Chain, e.Verdict)
	}
	if e.Kind == "return" {
		return fmt.Sprintf("%s %s %s: return", e.Family, e.Table, e.Chain)
	}
	return fmt.Sprintf("%s %s %s: rule handle %d: %s", e.Family, e.Table, e.Chain, e.Handle, e.Verdict)
}
