package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// forward asks the upstreams for req and returns the first usable reply, or
// nil if there is none within the budget (the caller answers SERVFAIL). A
// client that came over TCP is forwarded over TCP; one that came over UDP is
// forwarded over UDP, then TCP if the reply is truncated.
func (s *Server) forward(req *dns.Msg, tcp bool) *dns.Msg {
	ups := s.cfg.Upstreams
	if len(ups) == 0 {
		return nil
	}
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		s.logf("resolver: %d queries already being forwarded, refusing %s", maxForwards, req.Question[0].Name)
		return nil
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.UpstreamTimeout)
	defer cancel()
	deadline, _ := ctx.Deadline()

	// The upstream sees an ID of ours, not the client's: the client picked
	// its ID for its own socket, and reusing it would make our replies a
	// little easier to spoof. The message is ours to change while we serve.
	id := req.Id
	req.Id = dns.Id()
	defer func() { req.Id = id }()

	var errs []error
	for i, up := range ups {
		// Each upstream gets a fair share of what is left, so that a dead
		// first upstream cannot eat the whole budget of the live ones after it.
		share := time.Until(deadline) / time.Duration(len(ups)-i)
		if share <= 0 {
			break
		}
		tctx, tcancel := context.WithTimeout(ctx, share)
		resp, err := s.exchange(tctx, req, up.String(), tcp)
		tcancel()
		if err == nil {
			// SERVFAIL and REFUSED speak for that upstream only (broken,
			// or not serving us); another may do better.
			switch resp.Rcode {
			case dns.RcodeServerFailure, dns.RcodeRefused:
				err = fmt.Errorf("%s: %s", up, dns.RcodeToString[resp.Rcode])
			default:
				resp.Id = id
				return resp
			}
		}
		errs = append(errs, err)
		if s.ctx.Err() != nil {
			return nil // closing
		}
	}
	if len(errs) == 0 {
		errs = append(errs, errors.New("no time left"))
	}
	s.logf("resolver: forward %s %s: %v", req.Question[0].Name, dns.TypeToString[req.Question[0].Qtype], errors.Join(errs...))
	return nil
}

// exchange asks one upstream.
func (s *Server) exchange(ctx context.Context, req *dns.Msg, addr string, tcp bool) (*dns.Msg, error) {
	if !tcp {
		resp, err := s.exchangeOver(ctx, "udp", req, addr)
		if err != nil || !resp.Truncated {
			return resp, err
		}
	}
	return s.exchangeOver(ctx, "tcp", req, addr)
}

// exchangeOver asks one upstream over one transport. The connection is
// closed when ctx ends, so that Close interrupts a forward instead of
// waiting for its deadline.
func (s *Server) exchangeOver(ctx context.Context, network string, req *dns.Msg, addr string) (*dns.Msg, error) {
	c := &dns.Client{Net: network}
	var conn *dns.Conn
	var err error
	if s.cfg.Dial != nil {
		var nc net.Conn
		if nc, err = s.cfg.Dial(ctx, network, addr); err == nil {
			conn = &dns.Conn{Conn: nc}
		}
	} else {
		conn, err = c.DialContext(ctx, addr)
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", network, addr, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	resp, _, err := c.ExchangeWithConnContext(ctx, req, conn)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("%s %s: %w", network, addr, err)
	}
	if q := req.Question[0]; len(resp.Question) > 0 {
		rq := resp.Question[0]
		if !strings.EqualFold(rq.Name, q.Name) || rq.Qtype != q.Qtype || rq.Qclass != q.Qclass {
			return nil, fmt.Errorf("%s %s: reply is for another question (%s)", network, addr, rq.Name)
		}
	}
	return resp, nil
}
