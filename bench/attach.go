package bench

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/vishvananda/netlink"
)

// AttachResult is one tool's attach and teardown series at one N.
type AttachResult struct {
	Tool     string  `json:"tool"`
	N        int     `json:"n"`
	Connect  Summary `json:"connect"`
	Teardown Summary `json:"teardown"`
	// ProcsPerAttach is how many processes one attach ran.
	ProcsPerAttach int `json:"procs_per_attach"`
	// Check says what the checks after attaching and after tearing down
	// found; Err is the first failure, if any.
	Check string `json:"check"`
	Err   string `json:"error,omitempty"`
	// Elapsed is the wall time of the whole run, setup and checks included.
	Elapsed time.Duration `json:"elapsed_ns"`
}

// attachKind is one kind of network the attach benchmark connects
// members to: the tools that contend, where members' addresses come from,
// what the outside routes back, and what is checked once all are attached.
type attachKind struct {
	// title starts the progress lines; hostPrefix the host namespaces'
	// names, so two kinds never share a host.
	title, hostPrefix string
	tools             []toolInfo
	// addr is member i's address, for the tools that take one from the
	// caller (by hand, floor, netavark).
	addr func(i int) netip.Addr
	// routesBack are the subnets the outside routes back via the host's
	// uplink (none where the host masquerades).
	routesBack []netip.Prefix
	// checks run in order after every member is attached; each says what
	// it found.
	checks []attachCheck
}

// attachCheck checks the members a tool attached in host h.
type attachCheck func(h *host, tool Tool, members []member) (found string, err error)

// bridgeKind is section 1: a bridge network with a gateway and masquerade.
var bridgeKind = attachKind{
	title: "attach/teardown", hostPrefix: "h", tools: attachTools, addr: memberAddr,
	checks: []attachCheck{checkBridgeMembers, checkBridgeNAT},
}

// runAttach builds a fresh host, attaches every member with the tool, one
// timed operation each, checks the result, then detaches them all in the
// same order, one timed operation each.
func (r *runner) runAttach(kind attachKind, ti toolInfo, members []member) (res AttachResult) {
	start := time.Now()
	res = AttachResult{Tool: ti.key, N: len(members)}
	defer func() { res.Elapsed = time.Since(start) }()
	fail := func(err error) AttachResult {
		if res.Err == "" {
			res.Err = err.Error()
		}
		r.logf("  %s N=%d: %v", ti.key, len(members), err)
		return res
	}
	h, err := newHost(fmt.Sprintf("%s-%s-%d", kind.hostPrefix, ti.key, len(members)), r.bin, r.stateRoot)
	if err != nil {
		return fail(err)
	}
	defer h.close()
	if err := h.addOutside(kind.routesBack...); err != nil {
		return fail(err)
	}
	tool := ti.make()
	if err := tool.Setup(h); err != nil {
		return fail(fmt.Errorf("setup: %w", err))
	}
	var conn, down []Sample
	attached := 0
	for _, m := range members {
		s, err := tool.Attach(h, m)
		if err != nil {
			fail(fmt.Errorf("attach %s: %w", m.NS, err))
			break
		}
		conn = append(conn, s)
		attached++
	}
	if len(conn) > 0 {
		res.ProcsPerAttach = conn[0].Procs
	}
	var checks []string
	if attached == len(members) {
		for _, check := range kind.checks {
			found, err := check(h, tool, members)
			if err != nil {
				fail(fmt.Errorf("after attaching: %w", err))
				continue
			}
			checks = append(checks, found)
		}
	}
	for _, m := range members[:attached] {
		s, err := tool.Detach(h, m)
		if err != nil {
			fail(fmt.Errorf("detach %s: %w", m.NS, err))
			break
		}
		down = append(down, s)
	}
	left, err := scrubMembers(members)
	switch {
	case err != nil:
		fail(fmt.Errorf("after teardown: %w", err))
	case left > 0:
		fail(fmt.Errorf("teardown left %d interfaces in members' namespaces", left))
	default:
		checks = append(checks, "members clean after teardown")
	}
	res.Connect, res.Teardown = summarize(conn), summarize(down)
	res.Check = joinChecks(checks)
	return res
}

func joinChecks(c []string) string {
	s := ""
	for i, x := range c {
		if i > 0 {
			s += "; "
		}
		s += x
	}
	return s
}

func checkBridgeMembers(_ *host, _ Tool, members []member) (string, error) {
	if err := checkAttached(members); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d members addressed with a default route", len(members)), nil
}

func checkBridgeNAT(h *host, _ Tool, members []member) (string, error) {
	if err := checkNAT(h, members[0]); err != nil {
		return "", err
	}
	return "masqueraded TCP to the outside", nil
}

// checkAttached verifies, through netlink, that every member has an
// address in the bench subnet on a link that is up and a default route.
func checkAttached(members []member) error {
	for _, m := range members {
		if err := checkMember(m); err != nil {
			return fmt.Errorf("%s: %w", m.NS, err)
		}
	}
	return nil
}

func checkMember(m member) error {
	h, err := nlHandle(m.NS)
	if err != nil {
		return err
	}
	defer h.Close()
	addrs, err := kernel.Retry(func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	found := false
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && benchSubnet.Contains(ip.Unmap()) {
			l, err := h.LinkByIndex(a.LinkIndex)
			if err != nil {
				return fmt.Errorf("link of %s: %w", ip, err)
			}
			if l.Attrs().Flags&net.FlagUp == 0 {
				return fmt.Errorf("%s is down", l.Attrs().Name)
			}
			found = true
		}
	}
	if !found {
		return fmt.Errorf("no address in %s", benchSubnet)
	}
	routes, err := kernel.Retry(func() ([]netlink.Route, error) { return h.RouteList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() {
			if gw, ok := netip.AddrFromSlice(r.Gw); ok && gw.Unmap() == benchGateway {
				return nil
			}
		}
	}
	return fmt.Errorf("no default route via %s", benchGateway)
}

// checkNAT makes a TCP round trip from the member to the outside and checks
// that the outside saw the host's address, not the member's.
func checkNAT(h *host, m member) error {
	_, peer, err := roundTrips(m.NS, h.outside, netip.AddrPortFrom(outsideAddr, 7001), 3)
	if err != nil {
		return fmt.Errorf("TCP from %s to the outside: %w", m.NS, err)
	}
	if peer != uplinkHost {
		return fmt.Errorf("the outside saw %s, want the masqueraded %s", peer, uplinkHost)
	}
	return nil
}

// scrubMembers deletes every interface but lo from the members' namespaces
// and says how many there were, so one tool's leftovers never reach the
// next tool.
func scrubMembers(members []member) (int, error) {
	left := 0
	var errs []error
	for _, m := range members {
		h, err := nlHandle(m.NS)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		links, err := kernel.Retry(h.LinkList)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: list links: %w", m.NS, err))
		}
		for _, l := range links {
			if l.Attrs().Name == "lo" {
				continue
			}
			left++
			if err := h.LinkDel(l); err != nil {
				errs = append(errs, fmt.Errorf("%s: delete %s: %w", m.NS, l.Attrs().Name, err))
			}
		}
		h.Close()
	}
	return left, errors.Join(errs...)
}
