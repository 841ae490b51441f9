package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/nsnet/nsnet/internal/netns"
)

// The kernel cannot DNAT connections to ::1 (IPv6 has no route_localnet:
// a loopback source may not leave lo), so the agent carries published
// ports on [::1] itself, as Docker's userland proxy does.

// proxyKey names one proxied host port.
type proxyKey struct {
	host  string
	proto string
	port  uint16
}

type proxy struct {
	target netip.AddrPort
	close  func()
}

// udpIdle is how long a UDP client's relay lives without traffic.
const udpIdle = 60 * time.Second

// startProxies listens on [::1]:port in the host namespace for each key
// of targets, all in one visit of that namespace, and relays to the
// target, creating its upstream sockets in the host namespace too. It
// returns the proxies it started and what it could not start.
func startProxies(host string, targets map[proxyKey]netip.AddrPort) (map[proxyKey]*proxy, error) {
	dial := dialIn(host)
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	type opened struct {
		ln net.Listener
		pc net.PacketConn
	}
	sockets := map[proxyKey]opened{}
	var errs []error
	err := inHost(host, func() error {
		for k := range targets {
			addr := net.JoinHostPort("::1", fmt.Sprint(k.port))
			var o opened
			var err error
			if k.proto == "tcp" {
				o.ln, err = net.Listen("tcp6", addr)
			} else {
				o.pc, err = net.ListenPacket("udp6", addr)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("proxy %s %s: %w", k.proto, addr, err))
				continue
			}
			sockets[k] = o
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := map[proxyKey]*proxy{}
	for k, o := range sockets {
		target := targets[k]
		if o.ln != nil {
			ln, conns := o.ln, &connSet{m: map[net.Conn]bool{}}
			go serveTCP(ln, dial, target, conns)
			out[k] = &proxy{target: target, close: func() { ln.Close(); conns.closeAll() }}
			continue
		}
		pc, stop := o.pc, make(chan struct{})
		go serveUDP(pc, dial, target, stop)
		out[k] = &proxy{target: target, close: func() { close(stop); pc.Close() }}
	}
	return out, errors.Join(errs...)
}

func inHost(host string, fn func() error) error {
	if host == "" {
		return fn()
	}
	h, err := netns.Open(host)
	if err != nil {
		return err
	}
	defer h.Close()
	return netns.Do(h, fn)
}

type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// connSet tracks a proxy's live connections, so that unpublishing a port
// ends the flows it carried.
type connSet struct {
	mu     sync.Mutex
	m      map[net.Conn]bool
	closed bool
}

func (s *connSet) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.m[c] = true
	return true
}

func (s *connSet) remove(c net.Conn) {
	s.mu.Lock()
	delete(s.m, c)
	s.mu.Unlock()
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.m {
		c.Close()
	}
}

func serveTCP(ln net.Listener, dial dialFunc, target netip.AddrPort, conns *connSet) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if !conns.add(c) {
			c.Close()
			return
		}
		go func() {
			defer conns.remove(c)
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			u, err := dial(ctx, "tcp", target.String())
			cancel()
			if err != nil {
				log.Printf("agent: proxy to %s: %v", target, err)
				return
			}
			defer u.Close()
			if !conns.add(u) {
				return
			}
			defer conns.remove(u)
			done := make(chan struct{}, 2)
			pipe := func(dst, src net.Conn) {
				io.Copy(dst, src)
				if tc, ok := dst.(*net.TCPConn); ok {
					tc.CloseWrite()
				}
				done <- struct{}{}
			}
			go pipe(u, c)
			go pipe(c, u)
			<-done
			<-done
		}()
	}
}

func serveUDP(pc net.PacketConn, dial dialFunc, target netip.AddrPort, stop chan struct{}) {
	var mu sync.Mutex
	sessions := map[string]net.Conn{}
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			mu.Lock()
			for _, s := range sessions {
				s.Close()
			}
			mu.Unlock()
			return
		}
		mu.Lock()
		s, ok := sessions[from.String()]
		if !ok {
			s, err = dial(context.Background(), "udp", target.String())
			if err != nil {
				mu.Unlock()
				log.Printf("agent: proxy to %s: %v", target, err)
				continue
			}
			sessions[from.String()] = s
			go func(client net.Addr, s net.Conn) {
				reply := make([]byte, 65535)
				for {
					s.SetReadDeadline(time.Now().Add(udpIdle))
					n, err := s.Read(reply)
					if err != nil {
						break
					}
					pc.WriteTo(reply[:n], client)
				}
				mu.Lock()
				delete(sessions, client.String())
				mu.Unlock()
				s.Close()
			}(from, s)
		}
		mu.Unlock()
		s.Write(buf[:n])
		select {
		case <-stop:
			return
		default:
		}
	}
}
