package bench

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/nsnet/nsnet/internal/netns"
)

// portTools are the contenders for published ports, nsnet first.
var portTools = []string{"nsnet", "cni", "netavark", "nsnet-cni"}

// PortResult is one tool attaching one member with K ports published.
type PortResult struct {
	Tool  string `json:"tool"`
	Ports int    `json:"ports"`
	// Attach and Teardown time the whole attach with K ports published
	// (for CNI: bridge then portmap; for netavark: one setup) and its
	// undoing.
	Attach   Summary `json:"attach"`
	Teardown Summary `json:"teardown"`
	// PerPort is (median attach with K ports − median attach with none) / K.
	PerPort        time.Duration `json:"per_port_ns"`
	Check          string        `json:"check,omitempty"`
	NotImplemented bool          `json:"not_implemented,omitempty"`
	Skipped        string        `json:"skipped,omitempty"`
	Err            string        `json:"error,omitempty"`
}

// firstHostPort is where published host ports start; the member listens
// on the same port numbers.
const firstHostPort = 10000

func portList(k int) []portMapping {
	ps := make([]portMapping, k)
	for i := range ps {
		ps[i] = portMapping{Host: uint16(firstHostPort + i), Container: uint16(firstHostPort + i)}
	}
	return ps
}

// repeatsFor is how many times K ports are published and withdrawn.
func (r *runner) repeatsFor(k int) int {
	switch {
	case r.cfg.Smoke:
		return 2
	case k <= 10:
		return 5
	case k <= 100:
		return 3
	}
	return 1
}

// runPorts measures, for each tool, one member attached with 0, 1, … K
// published ports. The sweep for a tool stops growing once the next attach
// and teardown, extrapolated from the last ones, would take longer than
// the budget, and says so.
func (r *runner) runPorts() []PortResult {
	var out []PortResult
	for _, key := range portTools {
		if !r.wantTool(key) {
			continue
		}
		out = append(out, r.runPortsFor(key)...)
	}
	return out
}

func (r *runner) runPortsFor(key string) []PortResult {
	ti, _ := toolByKey(key)
	var out []PortResult
	failAll := func(from int, msg string, notImpl bool) []PortResult {
		for _, k := range r.cfg.PortCounts[from:] {
			out = append(out, PortResult{Tool: key, Ports: k, Err: msg, NotImplemented: notImpl})
		}
		return out
	}
	h, err := newHost("p-"+key, r.bin, r.stateRoot)
	if err != nil {
		return failAll(0, err.Error(), false)
	}
	defer h.close()
	if err := h.addOutside(); err != nil {
		return failAll(0, err.Error(), false)
	}
	m := newMember("pm-"+key+"-", 0)
	if err := createNetns(m.NS, true); err != nil {
		return failAll(0, err.Error(), false)
	}
	defer netns.Delete(m.NS)
	tool, ok := ti.make().(Publisher)
	if !ok {
		return failAll(0, "the tool cannot publish ports", false)
	}
	if err := tool.Setup(h); err != nil {
		return failAll(0, "setup: "+err.Error(), false)
	}
	var base time.Duration
	// stop says why the sweep does not go on to larger counts.
	var stop string
	for i, k := range r.cfg.PortCounts {
		res := PortResult{Tool: key, Ports: k}
		if stop != "" {
			res.Skipped = stop
			out = append(out, res)
			continue
		}
		if projected, from, ok := projectPorts(out, k); ok && r.cfg.PortBudget > 0 && projected > r.cfg.PortBudget {
			stop = fmt.Sprintf("with %d ports one attach and teardown took %s, so %d ports would take about %s, over the %s budget",
				from.Ports, roundDur(from.Attach.Median+from.Teardown.Median), k, roundDur(projected), r.cfg.PortBudget)
			res.Skipped = stop
			out = append(out, res)
			continue
		}
		var up, down []Sample
		for rep := 0; rep < r.repeatsFor(k); rep++ {
			s, err := tool.AttachPublishing(h, m, portList(k))
			if errors.Is(err, errNotImplemented) {
				return failAll(i, "", true)
			}
			if err != nil {
				res.Err = fmt.Sprintf("attach with %d ports: %v", k, err)
				break
			}
			up = append(up, s)
			if rep == 0 && k > 0 {
				if err := checkPublished(h, m, portList(k)); err != nil {
					res.Err = err.Error()
				} else {
					res.Check = "outside reached the member through the first and last published ports"
				}
			}
			d, err := tool.Detach(h, m)
			if err != nil {
				res.Err = fmt.Sprintf("teardown with %d ports: %v", k, err)
				break
			}
			down = append(down, d)
			if res.Err != "" {
				break
			}
		}
		if left, err := scrubMembers([]member{m}); (err != nil || left > 0) && res.Err == "" {
			res.Err = fmt.Sprintf("teardown left %d interfaces (%v)", left, err)
		}
		if res.Err != "" {
			stop = fmt.Sprintf("it failed with %d ports", k)
		}
		res.Attach, res.Teardown = summarize(up), summarize(down)
		r.logf("  %-9s %5d ports: attach median %-10s teardown median %s", key, k, roundDur(res.Attach.Median), roundDur(res.Teardown.Median))
		if k == 0 {
			base = res.Attach.Median
		} else if len(up) > 0 {
			res.PerPort = (res.Attach.Median - base) / time.Duration(k)
		}
		if res.Err != "" {
			r.logf("  ports %s K=%d: %s", key, k, res.Err)
		}
		out = append(out, res)
	}
	return out
}

// checkPublished connects from the outside to the host's uplink address on
// the first and last published ports and expects the member to answer.
func checkPublished(h *host, m member, ports []portMapping) error {
	for _, p := range []portMapping{ports[0], ports[len(ports)-1]} {
		_, _, err := roundTripsVia(h.outside, m.NS, netip.AddrPortFrom(uplinkHost, p.Host), netip.AddrPortFrom(netip.IPv4Unspecified(), p.Container), 2)
		if err != nil {
			return fmt.Errorf("published port %d: %w", p.Host, err)
		}
	}
	return nil
}

func roundDur(d time.Duration) time.Duration {
	switch {
	case d > time.Second:
		return d.Round(10 * time.Millisecond)
	case d > time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(100 * time.Nanosecond)
}

// projectPorts estimates one attach and teardown with k ports from the
// last two counts measured: a power law through them, its exponent held
// between 1 (linear) and 2 (tools that reread a growing rule set for every
// rule they add). It returns the estimate and the count it started from.
func projectPorts(rs []PortResult, k int) (time.Duration, PortResult, bool) {
	var m []PortResult
	for _, r := range rs {
		if r.Ports > 0 && r.Err == "" && r.Skipped == "" && r.Attach.Count > 0 {
			m = append(m, r)
		}
	}
	if len(m) == 0 {
		return 0, PortResult{}, false
	}
	last := m[len(m)-1]
	cost := func(r PortResult) float64 { return float64(r.Attach.Median + r.Teardown.Median) }
	exp := 1.0
	if len(m) >= 2 {
		prev := m[len(m)-2]
		if cost(prev) > 0 && last.Ports > prev.Ports {
			exp = math.Log(cost(last)/cost(prev)) / math.Log(float64(last.Ports)/float64(prev.Ports))
			exp = min(max(exp, 1), 2)
		}
	}
	return time.Duration(cost(last) * math.Pow(float64(k)/float64(last.Ports), exp)), last, true
}
