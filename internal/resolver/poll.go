package resolver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// One goroutine waits for every resolver's sockets (epoll), where a
// server of the DNS library per socket holds a goroutine each, blocked in
// a read or an accept. The agent runs a resolver per network: at a
// thousand networks that was two thousand goroutines, whose stacks the
// collector scanned at every cycle and whose memory pushed the agent past
// its limit (issue 11). A query, and a TCP connection, still get a
// goroutine of their own while they are served.

// poller is the process's one epoll loop over the resolvers' sockets.
type poller struct {
	epfd int
	mu   sync.Mutex
	next uint64
	regs map[uint64]func([]byte) // by registration id, the epoll event's data
	// buf is the one read buffer: handlers run one at a time, under mu,
	// and a query is decoded (copied) before the next read. One per
	// socket was 64 KiB a network, past the agent's memory limit.
	buf []byte
}

var (
	thePoller     *poller
	thePollerErr  error
	thePollerOnce sync.Once
)

func getPoller() (*poller, error) {
	thePollerOnce.Do(func() {
		fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			thePollerErr = fmt.Errorf("resolver: epoll: %w", err)
			return
		}
		thePoller = &poller{epfd: fd, regs: map[uint64]func([]byte){}, buf: make([]byte, dns.MaxMsgSize)}
		go thePoller.loop()
	})
	return thePoller, thePollerErr
}

func (p *poller) loop() {
	events := make([]unix.EpollEvent, 64)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			// Not expected on a valid epoll fd; go on rather than leave
			// every resolver deaf.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			// Held while the handler runs, so that remove (and so Close)
			// waits for a handler using the socket to finish.
			p.mu.Lock()
			if h := p.regs[id]; h != nil {
				h(p.buf)
			}
			p.mu.Unlock()
		}
	}
}

// add watches rc's socket for reading, calling ready (which must not
// block) with the poller's read buffer when there is something to read
// or accept; remove stops it.
func (p *poller) add(rc syscall.RawConn, ready func(buf []byte)) (remove func(), err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next++
	id := p.next
	var fd int
	ctlErr := rc.Control(func(f uintptr) {
		fd = int(f)
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
		err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
	})
	if err = errors.Join(ctlErr, err); err != nil {
		return nil, fmt.Errorf("resolver: watch socket: %w", err)
	}
	p.regs[id] = ready
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		// Before the socket closes: its number may be reused at once.
		rc.Control(func(f uintptr) { unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(f), nil) })
		delete(p.regs, id)
	}, nil
}

// udpReady reads every datagram waiting on pc and answers each in a
// goroutine of its own.
func (s *Server) udpReady(pc *net.UDPConn, rc syscall.RawConn) func([]byte) {
	return func(buf []byte) {
		// RawConn.Read holds the socket open while it reads; the function
		// returns true, so it never waits.
		rc.Read(func(fd uintptr) bool {
			for range 64 { // bounded: the next wakeup reads the rest
				n, from, err := unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
				if err != nil {
					return true
				}
				peer := sockaddrUDP(from)
				if peer == nil {
					continue
				}
				req := new(dns.Msg)
				if req.Unpack(buf[:n]) != nil || req.Response {
					continue // not a query: not answered, as the library did
				}
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					s.serveDNS(&udpWriter{conn: pc, peer: peer}, req)
				}()
			}
			return true
		})
	}
}

func sockaddrUDP(sa unix.Sockaddr) *net.UDPAddr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.UDPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
	case *unix.SockaddrInet6:
		ip := make(net.IP, 16)
		copy(ip, a.Addr[:])
		return &net.UDPAddr{IP: ip, Port: a.Port}
	}
	return nil
}

// tcpReady accepts every connection waiting on l and serves each in a
// goroutine of its own.
func (s *Server) tcpReady(rc syscall.RawConn) func([]byte) {
	return func([]byte) {
		// A listener's RawConn has no Read; Control holds the socket open
		// all the same while it runs.
		rc.Control(func(fd uintptr) {
			for range 64 {
				nfd, _, err := unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
				if err != nil {
					return
				}
				f := os.NewFile(uintptr(nfd), "dns-tcp")
				c, err := net.FileConn(f) // a duplicate, which the poller of package net serves
				f.Close()
				if err != nil {
					s.logf("resolver: accept: %v", err)
					continue
				}
				if !s.track(c) {
					c.Close()
					return
				}
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					defer s.untrack(c)
					s.serveTCP(c)
				}()
			}
		})
	}
}

// TCP timeouts, as the DNS library had them: the first query within 2 s,
// the next within 8 s of the last answer (RFC 7766's idle timeout).
const (
	tcpFirstQuery = 2 * time.Second
	tcpIdle       = 8 * time.Second
	tcpMaxQueries = 128
)

// serveTCP answers the queries of one TCP connection, each prefixed by
// its length, until the client stops, goes idle or the server closes.
func (s *Server) serveTCP(c net.Conn) {
	defer c.Close()
	w := &tcpWriter{conn: c}
	timeout := tcpFirstQuery
	for range tcpMaxQueries {
		c.SetReadDeadline(time.Now().Add(timeout))
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return
		}
		msg := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, msg); err != nil {
			return
		}
		req := new(dns.Msg)
		if req.Unpack(msg) != nil || req.Response {
			return
		}
		s.serveDNS(w, req)
		if w.closed {
			return
		}
		timeout = tcpIdle
	}
}

// track records an open TCP connection, for Close to end; false once the
// server is closing.
func (s *Server) track(c net.Conn) bool {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.conns == nil {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	delete(s.conns, c)
}

// writeTimeout bounds sending one answer.
const writeTimeout = 2 * time.Second

// writeMsg packs m and writes it as one answer.
func writeMsg(w io.Writer, m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// udpWriter answers one UDP query from the socket it came to.
type udpWriter struct {
	conn *net.UDPConn
	peer *net.UDPAddr
}

func (w *udpWriter) WriteMsg(m *dns.Msg) error { return writeMsg(w, m) }

func (w *udpWriter) Write(b []byte) (int, error) { return w.conn.WriteToUDP(b, w.peer) }
func (w *udpWriter) LocalAddr() net.Addr         { return w.conn.LocalAddr() }
func (w *udpWriter) RemoteAddr() net.Addr        { return w.peer }
func (w *udpWriter) Close() error                { return nil }
func (w *udpWriter) TsigStatus() error           { return nil }
func (w *udpWriter) TsigTimersOnly(bool)         {}
func (w *udpWriter) Hijack()                     {}

// tcpWriter answers on one TCP connection, each answer prefixed by its
// length.
type tcpWriter struct {
	conn   net.Conn
	closed bool
}

func (w *tcpWriter) WriteMsg(m *dns.Msg) error { return writeMsg(w, m) }

func (w *tcpWriter) Write(b []byte) (int, error) {
	if len(b) > dns.MaxMsgSize {
		return 0, fmt.Errorf("answer of %d bytes: too long for DNS over TCP", len(b))
	}
	w.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	out := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(b)), uint16(len(b)))
	if _, err := w.conn.Write(append(out, b...)); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (w *tcpWriter) LocalAddr() net.Addr  { return w.conn.LocalAddr() }
func (w *tcpWriter) RemoteAddr() net.Addr { return w.conn.RemoteAddr() }
func (w *tcpWriter) Close() error         { w.closed = true; return nil }
func (w *tcpWriter) TsigStatus() error    { return nil }
func (w *tcpWriter) TsigTimersOnly(bool)  {}
func (w *tcpWriter) Hijack()              {}
