package bench

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nsnet/nsnet/internal/netns"
)

// ScaleResult is one measure of the networks-per-host section (issue 11):
// the same command early and late, or on a small host and a large one.
type ScaleResult struct {
	What string `json:"what"`
	// Base is the command on the small side (the first networks, a host
	// with one network); Large the same on the large side.
	Base  Summary `json:"base"`
	Large Summary `json:"large"`
	Err   string  `json:"error,omitempty"`
}

// scaleSubnet is network i's subnet: 10.(100+i/250).(i%250).0/24, room
// for 5,000 networks.
func scaleSubnet(i int) string {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + i/250), byte(i % 250), 0}), 24).String()
}

// runScale makes n isolated bridge networks with NAT and DNS on one host,
// one command a network, and compares the first ten creates with the last
// ten; then times connect and disconnect of a namespace on that host
// against a host with a single network; then makes n more networks, each
// with a member publishing one port, and compares the first ten connects
// with the last ten. Every command is a process of its own, as a user or
// a script runs it.
func (r *runner) runScale(n int) ([]ScaleResult, int64) {
	const window = 10
	var out []ScaleResult
	fail := func(what string, err error) []ScaleResult {
		return append(out, ScaleResult{What: what, Err: err.Error()})
	}
	t := nsnetTool{}
	small, err := newHost("scale-small", r.bin, r.stateRoot)
	if err != nil {
		return fail("(setup)", err), 0
	}
	defer small.close()
	large, err := newHost("scale-large", r.bin, r.stateRoot)
	if err != nil {
		return fail("(setup)", err), 0
	}
	defer large.close()

	var first, last []Sample
	for i := range n {
		_, s, err := large.run(t.nsnet(large, "net", "create", "s"+strconv.Itoa(i), "--subnet", scaleSubnet(i)))
		if err != nil {
			return fail(fmt.Sprintf("net create of network %d", i+1), err), 0
		}
		if i < window {
			first = append(first, s)
		}
		if i >= n-window {
			last = append(last, s)
		}
	}
	out = append(out, ScaleResult{What: fmt.Sprintf("net create: networks 1-%d, and %d-%d", window, n-window+1, n), Base: summarize(first), Large: summarize(last)})
	r.logf("  net create: first %s, last %s", roundDur(summarize(first).Median), roundDur(summarize(last).Median))

	// Connect and disconnect on a host with one network and on the large
	// one; the member joins the first network (DNS on, so the agent serves
	// it, and on the large host every other network too).
	if _, _, err := small.run(t.nsnet(small, "net", "create", "s0", "--subnet", scaleSubnet(0))); err != nil {
		return fail("net create on the small host", err), 0
	}
	var conn, disc [2][]Sample
	for k, h := range []*host{small, large} {
		// A resident member keeps the agent up, as on a host in use: with
		// no member left on any DNS network the agent exits, and the next
		// connect would pay for starting a resolver per network.
		resident := newMember(fmt.Sprintf("sr%d-", k), 0)
		if err := createNetns(resident.NS, false); err != nil {
			return fail("member namespace", err), 0
		}
		defer netns.Delete(resident.NS)
		if _, _, err := h.run(t.nsnet(h, "net", "connect", "s0", resident.NS)); err != nil {
			return fail("net connect of the resident member", err), 0
		}
		for j := range 2 * window {
			m := newMember(fmt.Sprintf("sc%d-", k), j)
			if err := createNetns(m.NS, false); err != nil {
				return fail("member namespace", err), 0
			}
			_, c, err := h.run(t.nsnet(h, "net", "connect", "s0", m.NS))
			if err == nil {
				var d Sample
				_, d, err = h.run(t.nsnet(h, "net", "disconnect", "s0", m.NS))
				disc[k] = append(disc[k], d)
			}
			netns.Delete(m.NS)
			if err != nil {
				return fail("net connect", err), 0
			}
			conn[k] = append(conn[k], c)
		}
	}
	out = append(out,
		ScaleResult{What: fmt.Sprintf("net connect: host with 1 network, and with %d", n), Base: summarize(conn[0]), Large: summarize(conn[1])},
		ScaleResult{What: fmt.Sprintf("net disconnect: host with 1 network, and with %d", n), Base: summarize(disc[0]), Large: summarize(disc[1])})
	r.logf("  net connect: 1 network %s, %d networks %s", roundDur(summarize(conn[0]).Median), n, roundDur(summarize(conn[1]).Median))

	// n more networks, each with a member that publishes one port. The
	// members are a few namespaces, each in many networks.
	const holders = 10
	var names []string
	for j := range holders {
		m := newMember("sp-", j)
		if err := createNetns(m.NS, false); err != nil {
			return fail("member namespace", err), 0
		}
		names = append(names, m.NS)
	}
	defer func() {
		for _, ns := range names {
			netns.Delete(ns)
		}
	}()
	first, last = nil, nil
	for i := range n {
		name := "p" + strconv.Itoa(i)
		if _, _, err := large.run(t.nsnet(large, "net", "create", name, "--subnet", scaleSubnet(n+i), "--dns=false")); err != nil {
			return fail(fmt.Sprintf("net create of ported network %d", i+1), err), 0
		}
		_, s, err := large.run(t.nsnet(large, "net", "connect", name, names[i%holders], "-p", fmt.Sprintf("%d:80", 20000+i)))
		if err != nil {
			return fail(fmt.Sprintf("net connect -p of ported network %d", i+1), err), 0
		}
		if i < window {
			first = append(first, s)
		}
		if i >= n-window {
			last = append(last, s)
		}
	}
	out = append(out, ScaleResult{What: fmt.Sprintf("net connect -p: ports 1-%d, and %d-%d (networks %d-%d)", window, n-window+1, n, 2*n-window+1, 2*n), Base: summarize(first), Large: summarize(last)})
	r.logf("  net connect -p: first %s, last %s", roundDur(summarize(first).Median), roundDur(summarize(last).Median))
	return out, agentPeak(filepath.Join(large.dir, "nsnet"))
}

// agentPeak reads the peak resident set of the agent serving stateDir.
func agentPeak(stateDir string) int64 {
	raw, err := os.ReadFile(filepath.Join(stateDir, "agent.pid"))
	if err != nil {
		return 0
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%s/status", strings.TrimSpace(string(raw))))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kib, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kib
		}
	}
	return 0
}
