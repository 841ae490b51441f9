package bench

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/nsnet/nsnet/internal/netns"
)

// MembersResult is the members-per-host section (issue 11's second
// target): one host filling up with members, one `nsnet net connect`
// process each, beside the netlink floor filling a host of its own in
// step.
type MembersResult struct {
	// Bridges networks of PerNetwork members each, and one routed
	// network of PerNetwork members; Window is how many connects each
	// end of the run compares.
	Bridges    int `json:"bridges"`
	PerNetwork int `json:"per_network"`
	Window     int `json:"window"`
	// First and Last are the first and last Window connects.
	First      Summary `json:"nsnet_first"`
	Last       Summary `json:"nsnet_last"`
	FloorFirst Summary `json:"floor_first"`
	FloorLast  Summary `json:"floor_last"`
	// AgentKiB is the DNS agent's peak resident set at the end.
	AgentKiB int64         `json:"agent_peak_kib"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	Err      string        `json:"error,omitempty"`
}

// membersSubnet is network k's subnet: 10.(120+k).0.0/16, the routed
// network's being k = bridges.
func membersSubnet(k int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(120 + k), 0, 0}), 16)
}

// runMembers fills one host with bridges bridge networks (NAT and DNS, as
// `net create` makes them) and one routed network, perNet members each,
// connecting the members round-robin over the networks so that every
// network grows alike; the floor builds the same on a host of its own,
// one member after each of nsnet's. It compares the first window connects
// with the last.
func (r *runner) runMembers(bridges, perNet, window int) MembersResult {
	res := MembersResult{Bridges: bridges, PerNetwork: perNet, Window: window}
	start := time.Now()
	fail := func(what string, err error) MembersResult {
		res.Err = fmt.Sprintf("%s: %v", what, err)
		res.Elapsed = time.Since(start)
		return res
	}
	t := nsnetTool{}
	nh, err := newHost("members-nsnet", r.bin, r.stateRoot)
	if err != nil {
		return fail("setup", err)
	}
	defer nh.close()
	fh, err := newHost("members-floor", r.bin, r.stateRoot)
	if err != nil {
		return fail("setup", err)
	}
	defer fh.close()
	nets := bridges + 1
	for k := range nets {
		args := []string{"net", "create", "mn" + strconv.Itoa(k), "--subnet", membersSubnet(k).String()}
		if k == bridges {
			args = append(args, "--driver", "routed")
		}
		if _, _, err := nh.run(t.nsnet(nh, args...)); err != nil {
			return fail("net create", err)
		}
		if k < bridges {
			if err := fh.handBridge(fmt.Sprintf("fb%d", k), membersSubnet(k), membersSubnet(k).Addr().Next()); err != nil {
				return fail("floor bridge", err)
			}
		}
	}
	if err := enableForwarding(fh); err != nil {
		return fail("floor forwarding", err)
	}

	total := nets * perNet
	var made []string
	defer func() {
		// Unmounted, the namespaces go with their veths in the kernel's
		// own batches; deleting the veths one by one would take minutes.
		for _, ns := range made {
			netns.Delete(ns)
		}
	}()
	var first, last, floorFirst, floorLast []Sample
	for i := range total {
		k, j := i%nets, i/nets
		mns, fns := fmt.Sprintf("mm%05d", i), fmt.Sprintf("fm%05d", i)
		for _, ns := range []string{mns, fns} {
			if err := createNetns(ns, false); err != nil {
				return fail("member namespace", err)
			}
			made = append(made, ns)
		}
		_, s, err := nh.run(t.nsnet(nh, "net", "connect", "mn"+strconv.Itoa(k), mns))
		if err != nil {
			return fail(fmt.Sprintf("net connect of member %d", i+1), err)
		}
		// The floor's member gets the address nsnet's IPAM gives the
		// j-th member: the subnet's (j+2)-th.
		addr := nthHost(membersSubnet(k), j+1)
		hostIf := fmt.Sprintf("fh%05d", i)
		var c command
		if k < bridges {
			gw := membersSubnet(k).Addr().Next()
			c = cmd(r.bin.Floor, "attach", netns.Path(fns), fmt.Sprintf("fb%d", k), hostIf, "eth0", netip.PrefixFrom(addr, 16).String(), gw.String())
		} else {
			c = cmd(r.bin.Floor, "attach-routed", netns.Path(fns), hostIf, "eth0", netip.PrefixFrom(addr, 32).String(), routedGateway.String())
		}
		_, fs, err := fh.run(c)
		if err != nil {
			return fail(fmt.Sprintf("floor attach of member %d", i+1), err)
		}
		if i < window {
			first, floorFirst = append(first, s), append(floorFirst, fs)
		}
		if i >= total-window {
			last, floorLast = append(last, s), append(floorLast, fs)
		}
		if (i+1)%1000 == 0 {
			r.logf("  %d members: nsnet %s, floor %s", i+1, roundDur(s.Wall), roundDur(fs.Wall))
		}
	}
	// The last member of all (on the routed network) has its address;
	// from the last member of the last bridge network, the first member
	// of that network resolves to its own.
	if _, err := addrIn(fmt.Sprintf("mm%05d", total-1), membersSubnet(bridges)); err != nil {
		return fail("the last member", err)
	}
	if k := bridges - 1; k >= 0 {
		lastNS, firstNS := fmt.Sprintf("mm%05d", (perNet-1)*nets+k), fmt.Sprintf("mm%05d", k)
		want, err := addrIn(firstNS, membersSubnet(k))
		if err != nil {
			return fail("the first member", err)
		}
		got, err := lookupA(lastNS, membersSubnet(k).Addr().Next(), firstNS)
		if err != nil || got != want {
			return fail("DNS on the last bridge network", fmt.Errorf("%s asked for %s: %s (%v), want %s", lastNS, firstNS, got, err, want))
		}
	}
	res.First, res.Last = summarize(first), summarize(last)
	res.FloorFirst, res.FloorLast = summarize(floorFirst), summarize(floorLast)
	res.AgentKiB = agentPeak(filepath.Join(nh.dir, "nsnet"))
	res.Elapsed = time.Since(start)
	r.logf("  nsnet connect: first %d %s, last %d %s; floor %s, %s", window, roundDur(res.First.Median), window, roundDur(res.Last.Median),
		roundDur(res.FloorFirst.Median), roundDur(res.FloorLast.Median))
	return res
}

// lookupA asks server, from inside ns, for name's IPv4 address.
func lookupA(ns string, server netip.Addr, name string) (netip.Addr, error) {
	t, err := enterThread(ns)
	if err != nil {
		return netip.Addr{}, err
	}
	defer t.stop()
	var got netip.Addr
	t.do(func() {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeA)
		c := &dns.Client{Timeout: 2 * time.Second}
		var r *dns.Msg
		if r, _, err = c.Exchange(m, netip.AddrPortFrom(server, 53).String()); err != nil {
			return
		}
		for _, rr := range r.Answer {
			if a, ok := rr.(*dns.A); ok {
				got, _ = netip.AddrFromSlice(a.A.To4())
				return
			}
		}
		err = fmt.Errorf("no A record for %s in %v", name, r.Answer)
	})
	return got, err
}

func writeMembers(b *strings.Builder, res *Results) {
	m := res.Members
	if m == nil {
		return
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## 5b. Members per host\n\n")
	w("Issue 11's second target: %d bridge networks (NAT and DNS) and one routed network on one host, filled with %d members each, %d in all; each member is a namespace of its own joined by one `nsnet net connect` process, round-robin over the networks so that they grow alike. Beside it, in step, the netlink floor (`bench/cmd/floor attach` or `attach-routed`, one process each) fills a host of its own with the same topology. Medians of the first and the last %d connects, p95 in brackets. Target: the last within 1.5× of the first.\n\n",
		m.Bridges, m.PerNetwork, (m.Bridges+1)*m.PerNetwork, m.Window)
	if m.Err != "" {
		w("Failed: %s\n\n", mdEscape(m.Err))
		return
	}
	w("| | first %d | last %d | last ÷ first | peak RSS (max) |\n|---|---:|---:|---:|---:|\n", m.Window, m.Window)
	w("| nsnet net connect | %s (%s) | %s (%s) | %s | %s |\n", fmtDur(m.First.Median), fmtDur(m.First.P95), fmtDur(m.Last.Median), fmtDur(m.Last.P95),
		ratio(m.Last.Median, m.First.Median), fmtKiB(max(m.First.MaxRSSPeak, m.Last.MaxRSSPeak)))
	w("| netlink floor | %s (%s) | %s (%s) | %s | %s |\n", fmtDur(m.FloorFirst.Median), fmtDur(m.FloorFirst.P95), fmtDur(m.FloorLast.Median), fmtDur(m.FloorLast.P95),
		ratio(m.FloorLast.Median, m.FloorFirst.Median), fmtKiB(max(m.FloorFirst.MaxRSSPeak, m.FloorLast.MaxRSSPeak)))
	w("| nsnet ÷ floor | %s | %s | | |\n", ratio(m.First.Median, m.FloorFirst.Median), ratio(m.Last.Median, m.FloorLast.Median))
	if m.AgentKiB > 0 {
		w("\nThe DNS agent's peak resident set, serving all %d members: %s. The section took %s.\n", (m.Bridges+1)*m.PerNetwork, fmtKiB(m.AgentKiB), roundDur(m.Elapsed))
	}
	w("\n")
}
