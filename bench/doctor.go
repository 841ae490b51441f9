package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nsnet/nsnet/internal/netns"
)

// DoctorResult is the doctor section (issue 16): `nsnet doctor` across
// three namespaces (a member, the host, the outside) on a host with N
// members and P published ports.
type DoctorResult struct {
	Members int     `json:"members"`
	Ports   int     `json:"ports"`
	Doctor  Summary `json:"doctor"`
	// Live is doctor --live on the same path: the probe and its trace.
	Live Summary `json:"live"`
	Err  string  `json:"error,omitempty"`
}

// runDoctor builds the lab with `nsnet apply`, publishes ports host port
// range on one member, and times doctor from the first member to the
// outside and back, rounds times.
func (r *runner) runDoctor(n, ports, rounds int) DoctorResult {
	res := DoctorResult{Members: n, Ports: ports}
	fail := func(err error) DoctorResult {
		res.Err = err.Error()
		r.logf("  doctor: %v", err)
		return res
	}
	r.logf("doctor: %d members, %d published ports, %d rounds", n, ports, rounds)
	h, err := newHost("doctor", r.bin, r.stateRoot)
	if err != nil {
		return fail(err)
	}
	defer h.close()
	if err := h.addOutside(); err != nil {
		return fail(err)
	}
	members := labMembers(n)
	defer func() {
		for _, m := range members {
			netns.Delete(m.NS)
		}
	}()
	var b strings.Builder
	fmt.Fprintf(&b, "name: doctor\nnetworks:\n  bench: {subnet: %s, gateway: %s}\nnamespaces:\n", benchSubnet, benchGateway)
	for i, m := range members {
		if i == n-1 && ports > 0 {
			fmt.Fprintf(&b, "  %s: {networks: {bench: {ports: [\"20000-%d:20000-%d/tcp\"]}}}\n", m.NS, 20000+ports-1, 20000+ports-1)
			continue
		}
		fmt.Fprintf(&b, "  %s: {networks: [bench]}\n", m.NS)
	}
	p := filepath.Join(h.dir, "doctor.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		return fail(err)
	}
	if _, _, err := h.run(nsnetTool{}.nsnet(h, "apply", "-f", p)); err != nil {
		return fail(err)
	}
	var samples []Sample
	for range rounds {
		out, s, err := h.run(nsnetTool{}.nsnet(h, "doctor", members[0].NS, outsideAddr.String()))
		if err != nil {
			return fail(fmt.Errorf("doctor: %w: %s", err, out))
		}
		samples = append(samples, s)
	}
	res.Doctor = summarize(samples)
	r.logf("  doctor median %s, peak RSS %s", roundDur(res.Doctor.Median), fmtKiB(res.Doctor.MaxRSSPeak))
	samples = nil
	for range rounds {
		out, s, err := h.run(nsnetTool{}.nsnet(h, "doctor", "--live", members[0].NS, outsideAddr.String()))
		if err != nil {
			return fail(fmt.Errorf("doctor --live: %w: %s", err, out))
		}
		samples = append(samples, s)
	}
	res.Live = summarize(samples)
	r.logf("  doctor --live median %s, peak RSS %s", roundDur(res.Live.Median), fmtKiB(res.Live.MaxRSSPeak))
	if _, _, err := h.run(nsnetTool{}.nsnet(h, "destroy", "--lab", "doctor")); err != nil {
		return fail(err)
	}
	return res
}

func writeDoctor(b *strings.Builder, res *Results) {
	if res.Doctor == nil {
		return
	}
	d := res.Doctor
	fmt.Fprintf(b, "## 7. doctor\n\n")
	fmt.Fprintf(b, "Issue 16: `nsnet doctor MEMBER OUTSIDE-ADDRESS`, a path across three namespaces (a member, the host, the outside) there and back, on a host with %d members on one bridge network and %d published ports, %d runs. Target: under 1 s.\n\n", d.Members, d.Ports, d.Doctor.Count)
	if d.Err != "" {
		fmt.Fprintf(b, "Failed: %s\n\n", mdEscape(d.Err))
		return
	}
	fmt.Fprintf(b, "| measure | median | p95 | peak RSS |\n|---|---:|---:|---:|\n| doctor | %s | %s | %s |\n", fmtDur(d.Doctor.Median), fmtDur(d.Doctor.P95), fmtKiB(d.Doctor.MaxRSSPeak))
	if d.Live.Count > 0 {
		fmt.Fprintf(b, "| doctor --live (probe answered, traced in 3 namespaces) | %s | %s | %s |\n", fmtDur(d.Live.Median), fmtDur(d.Live.P95), fmtKiB(d.Live.MaxRSSPeak))
	}
	b.WriteString("\n")
}
