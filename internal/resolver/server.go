// Package resolver is nsnet's embedded DNS server: it answers the names of
// network members for clients in those networks and forwards every other
// query to upstream servers.
//
// What a client sees depends on its source address. It sees the members of
// every network whose subnets contain that address and, if the address
// belongs to a member, of every network that member (a namespace, known by
// its name) is in. Names are member names and their aliases, matched
// case-insensitively as absolute names: "red" and "red." are the same query
// and no search domain is needed. A, AAAA and ANY are answered from the
// member's addresses; PTR from the reverse of them. A name that exists for the
// client but has no address of the asked family gets NOERROR with no answer
// (NODATA), never NXDOMAIN, so that a stub resolver asking for both families
// keeps the one that exists.
//
// A client in none of the networks is REFUSED, whatever it asks: the
// resolver is not open to the world. Everything else, including the names
// of networks the client cannot see, is forwarded to the upstreams in order within an overall time budget; the
// client gets SERVFAIL rather than a timeout when none answers. Local
// negative answers carry no SOA on purpose: without one, clients do not cache
// them, so a member that connects is resolvable at once.
//
// The data is a Zone snapshot that the caller replaces with SetZone while the
// server runs; each query reads one snapshot, without locks.
package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// Defaults for the zero values of Config.
const (
	// DefaultUpstreamTimeout bounds the whole forwarding of one query, over
	// every upstream: short enough that a client's own timeout (5 s in glibc)
	// never fires first.
	DefaultUpstreamTimeout = time.Second
	// DefaultTTL is short so that clients which cache (nscd, systemd-resolved
	// inside a namespace) notice a disconnect soon.
	DefaultTTL = 5
)

// maxForwards bounds queries being forwarded at once. Each holds a goroutine
// and a socket for up to the upstream timeout; past the bound a client gets
// SERVFAIL at once, so a flood towards a dead upstream cannot exhaust the
// process.
const maxForwards = 1024

// ednsSize is the UDP payload size the resolver advertises in its own
// answers: the size DNS Flag Day 2020 settled on, which avoids fragmentation.
const ednsSize = 1232

// Config is the static configuration of a Server.
type Config struct {
	// Listen are the addresses to serve on, UDP and TCP each. Port 53 in
	// production; port 0 picks a free port, the same for UDP and TCP (see
	// Server.ListenAddrs). An IPv6 address listens on IPv6 only.
	Listen []netip.AddrPort
	// Upstreams receive the queries the resolver cannot answer, tried in
	// order. Empty means such queries get SERVFAIL at once.
	Upstreams []netip.AddrPort
	// UpstreamTimeout is the budget for forwarding one query over all
	// upstreams; zero means DefaultUpstreamTimeout.
	UpstreamTimeout time.Duration
	// TTL of the answers about members, in seconds; zero means DefaultTTL.
	TTL uint32
	// Logf, if set, receives failures that clients only see as SERVFAIL or
	// silence: every upstream failing, a reply that could not be sent.
	Logf func(format string, args ...any)
	// Dial, if set, makes the connections to upstreams; nsnet's agent uses
	// it to open them inside the host namespace the resolver serves.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Server is a running (or ready to run) resolver. Its methods are safe for
// concurrent use.
type Server struct {
	cfg   Config
	zone  atomic.Pointer[table]
	ctx   context.Context // canceled by Close, ending forwards in flight
	stop  context.CancelFunc
	slots chan struct{} // forwarding semaphore

	mu      sync.Mutex
	started bool
	closed  bool
	// removes take the sockets off the poller; release closes them.
	removes []func()
	release func()
	addrs   []netip.AddrPort
	wg      sync.WaitGroup // queries and TCP connections being served

	connMu sync.Mutex
	conns  map[net.Conn]struct{} // TCP connections being served; nil before Start and after Close
}

// New checks cfg and returns a Server with an empty zone. It does not listen
// yet; see Start.
func New(cfg Config) (*Server, error) {
	for _, ap := range cfg.Listen {
		if !ap.Addr().IsValid() {
			return nil, fmt.Errorf("resolver: invalid listen address %s", ap)
		}
	}
	for _, ap := range cfg.Upstreams {
		if !ap.Addr().IsValid() || ap.Port() == 0 {
			return nil, fmt.Errorf("resolver: invalid upstream %s", ap)
		}
	}
	if cfg.UpstreamTimeout < 0 {
		return nil, fmt.Errorf("resolver: negative upstream timeout %s", cfg.UpstreamTimeout)
	}
	if cfg.UpstreamTimeout == 0 {
		cfg.UpstreamTimeout = DefaultUpstreamTimeout
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	cfg.Listen = append([]netip.AddrPort(nil), cfg.Listen...)
	cfg.Upstreams = append([]netip.AddrPort(nil), cfg.Upstreams...)
	s := &Server{cfg: cfg, slots: make(chan struct{}, maxForwards)}
	s.ctx, s.stop = context.WithCancel(context.Background())
	s.zone.Store(&table{})
	return s, nil
}

// SetZone replaces what the server answers, atomically: queries that start
// after it returns see z. Names that cannot be DNS names (see Member) are
// left out and named in the error; the rest of z is in effect even then.
func (s *Server) SetZone(z Zone) error {
	c, err := Compile(z)
	s.SetCompiled(c)
	return err
}

// Compiled is a Zone made ready for lookups, which many servers may share.
type Compiled struct{ t *table }

// Compile prepares z for SetCompiled. Names that are not DNS names are
// left out, and said so in the error; the rest is usable.
func Compile(z Zone) (Compiled, error) {
	t, bad := compile(z)
	if len(bad) > 0 {
		return Compiled{t}, fmt.Errorf("resolver: left out names that are not DNS names: %s", strings.Join(bad, ", "))
	}
	return Compiled{t}, nil
}

// SetCompiled replaces what the server answers for with c, at once: the
// agent compiles a host's zone once and hands it to every resolver of
// that host, where SetZone would compile it again for each.
func (s *Server) SetCompiled(c Compiled) {
	if c.t == nil {
		c.t = &table{}
	}
	s.zone.Store(c.t)
}

// Start binds every listen address for UDP and TCP and serves them in the
// background. If any address cannot be bound, it releases the others and
// returns an error naming that address.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return errors.New("resolver: start: server is closed")
	case s.started:
		return errors.New("resolver: start: already started")
	case len(s.cfg.Listen) == 0:
		return errors.New("resolver: start: no listen addresses")
	}
	var (
		pcs   []net.PacketConn
		lns   []net.Listener
		addrs []netip.AddrPort
	)
	release := func() {
		for _, pc := range pcs {
			pc.Close()
		}
		for _, l := range lns {
			l.Close()
		}
	}
	for _, ap := range s.cfg.Listen {
		pc, l, bound, err := listenPair(ap)
		if err != nil {
			release()
			return fmt.Errorf("resolver: listen on %s: %w", ap, err)
		}
		pcs, lns, addrs = append(pcs, pc), append(lns, l), append(addrs, bound)
	}
	p, err := getPoller()
	if err != nil {
		release()
		return err
	}
	// Before the first socket is watched: a connection may come at once.
	s.connMu.Lock()
	s.conns = map[net.Conn]struct{}{}
	s.connMu.Unlock()
	var removes []func()
	for i := range pcs {
		udp := pcs[i].(*net.UDPConn)
		tcp := lns[i].(*net.TCPListener)
		urc, err1 := udp.SyscallConn()
		trc, err2 := tcp.SyscallConn()
		err := errors.Join(err1, err2)
		for _, w := range []struct {
			rc    syscall.RawConn
			ready func([]byte)
		}{{urc, s.udpReady(udp, urc)}, {trc, s.tcpReady(trc)}} {
			if err != nil {
				break
			}
			var remove func()
			if remove, err = p.add(w.rc, w.ready); err == nil {
				removes = append(removes, remove)
			}
		}
		if err != nil {
			// What the sockets already watched took in ends with them.
			s.removes, s.release = removes, release
			s.shutdown()
			return fmt.Errorf("resolver: serve %s: %w", addrs[i], err)
		}
	}
	s.started, s.removes, s.release, s.addrs = true, removes, release, addrs
	return nil
}

// listenPair binds ap for UDP and TCP on the same port. With port 0 the
// kernel picks the UDP port, which may be taken for TCP: then it tries again.
func listenPair(ap netip.AddrPort) (net.PacketConn, net.Listener, netip.AddrPort, error) {
	udp, tcp := "udp4", "tcp4"
	if ap.Addr().Is6() && !ap.Addr().Is4In6() {
		udp, tcp = "udp6", "tcp6"
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	tries := 1
	if ap.Port() == 0 {
		tries = 16
	}
	var err error
	for range tries {
		var pc *net.UDPConn
		pc, err = net.ListenUDP(udp, net.UDPAddrFromAddrPort(ap))
		if err != nil {
			return nil, nil, netip.AddrPort{}, fmt.Errorf("udp: %w", err)
		}
		bound := netip.AddrPortFrom(ap.Addr(), uint16(pc.LocalAddr().(*net.UDPAddr).Port))
		var l *net.TCPListener
		l, err = net.ListenTCP(tcp, net.TCPAddrFromAddrPort(bound))
		if err == nil {
			return pc, l, bound, nil
		}
		pc.Close()
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return nil, nil, netip.AddrPort{}, fmt.Errorf("tcp: %w", err)
}

// ListenAddrs returns the addresses the server serves on, with the ports
// actually bound; nil before Start.
func (s *Server) ListenAddrs() []netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]netip.AddrPort(nil), s.addrs...)
}

// Close stops serving: it ends forwards in flight, closes every listener and
// connection, and returns once all of the server's goroutines have ended. A
// closed Server cannot be started again.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.stop()
	s.shutdown()
	s.addrs = nil
	return nil
}

// shutdown stops serving, with s.mu held: no new query or connection
// once the sockets are off the poller; the connections being served
// close, the queries in flight (their forwards cancelled by then, on
// Close) answer, and then the sockets close.
func (s *Server) shutdown() {
	for _, remove := range s.removes {
		remove()
	}
	s.connMu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.conns = nil
	s.connMu.Unlock()
	s.wg.Wait()
	if s.release != nil {
		s.release()
	}
	s.removes, s.release = nil, nil
}

func (s *Server) logf(format string, args ...any) {
	if s.cfg.Logf != nil {
		s.cfg.Logf(format, args...)
	}
}

// serveDNS answers one query.
func (s *Server) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	client, tcp := peer(w.RemoteAddr())
	resp := s.answer(req, client, tcp)
	if !tcp {
		// A forwarded answer fetched over TCP, or a member with many
		// addresses, may not fit the client's buffer: cut it and set TC so
		// that the client asks again over TCP.
		resp.Truncate(udpSize(req))
	} else {
		resp.Compress = true
	}
	if err := w.WriteMsg(resp); err != nil {
		s.logf("resolver: reply to %s: %v", w.RemoteAddr(), err)
	}
}

// answer returns the reply to req from client.
func (s *Server) answer(req *dns.Msg, client netip.Addr, tcp bool) *dns.Msg {
	if req.Opcode != dns.OpcodeQuery {
		return s.reply(req, dns.RcodeNotImplemented)
	}
	if len(req.Question) != 1 {
		return s.reply(req, dns.RcodeFormatError)
	}
	if opt := req.IsEdns0(); opt != nil && opt.Version() != 0 {
		return s.reply(req, dns.RcodeBadVers)
	}
	// Only the networks' own clients are served: a resolver that forwards
	// for anyone who can route to a gateway is an open resolver (an
	// amplifier, and a way in for cache poisoning).
	t := s.zone.Load()
	nets := t.visible(client)
	if len(nets) == 0 {
		return s.reply(req, dns.RcodeRefused)
	}
	if resp := s.local(req, t, nets); resp != nil {
		return resp
	}
	if resp := s.forward(req, tcp); resp != nil {
		return resp
	}
	return s.reply(req, dns.RcodeServerFailure)
}

// local answers req from the zone t, in the networks nets the client
// sees, or returns nil if the name is not a member's there.
func (s *Server) local(req *dns.Msg, t *table, nets []int) *dns.Msg {
	q := req.Question[0]
	if q.Qclass != dns.ClassINET {
		return nil
	}
	// Lowercasing copies only when the name has capitals.
	name := strings.ToLower(q.Name)
	hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: s.cfg.TTL}
	if q.Qtype == dns.TypePTR {
		if a, ok := parseReverse(name); ok {
			targets := t.ptr(a, nets)
			if len(targets) == 0 {
				return nil
			}
			resp := s.reply(req, dns.RcodeSuccess)
			hdr.Rrtype = dns.TypePTR
			for _, target := range targets {
				resp.Answer = append(resp.Answer, &dns.PTR{Hdr: hdr, Ptr: target})
			}
			return resp
		}
	}
	v4, v6, found := t.lookup(name, nets)
	if !found {
		return nil
	}
	resp := s.reply(req, dns.RcodeSuccess)
	if q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY {
		hdr.Rrtype = dns.TypeA
		for _, a := range v4 {
			b := a.As4()
			resp.Answer = append(resp.Answer, &dns.A{Hdr: hdr, A: net.IP(b[:])})
		}
	}
	if q.Qtype == dns.TypeAAAA || q.Qtype == dns.TypeANY {
		hdr.Rrtype = dns.TypeAAAA
		for _, a := range v6 {
			b := a.As16()
			resp.Answer = append(resp.Answer, &dns.AAAA{Hdr: hdr, AAAA: net.IP(b[:])})
		}
	}
	// Any other type, or no address of the family: NODATA.
	return resp
}

// reply starts the resolver's own reply to req with rcode.
func (s *Server) reply(req *dns.Msg, rcode int) *dns.Msg {
	resp := new(dns.Msg)
	resp.SetRcode(req, rcode)
	resp.Authoritative = rcode == dns.RcodeSuccess
	resp.RecursionAvailable = len(s.cfg.Upstreams) > 0
	// An EDNS client gets an OPT back (RFC 6891), which is also where
	// BADVERS's upper bits travel; the DO bit is echoed (RFC 3225).
	if opt := req.IsEdns0(); opt != nil {
		resp.SetEdns0(ednsSize, opt.Do())
	}
	return resp
}

// peer returns the client's address, as the zone's subnets write it, and
// whether it came over TCP.
func peer(a net.Addr) (netip.Addr, bool) {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap().WithZone(""), false
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap().WithZone(""), true
	}
	return netip.Addr{}, false
}

// udpSize is the largest UDP reply the client of req accepts.
func udpSize(req *dns.Msg) int {
	if opt := req.IsEdns0(); opt != nil && int(opt.UDPSize()) > dns.MinMsgSize {
		return int(opt.UDPSize())
	}
	return dns.MinMsgSize
}
