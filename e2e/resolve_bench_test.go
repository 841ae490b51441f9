package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// BenchmarkMemberResolve measures a name lookup as a member makes it:
// over its veth to the resolver in the agent, through the bridge.
//
//	go test ./e2e -run '^$' -bench MemberResolve -benchtime 2000x
func BenchmarkMemberResolve(b *testing.B) {
	l := newLabB(b)
	a, c := l.nsB(b, "a"), l.nsB(b, "c")
	l.mustB(b, "net", "create", "res", "--subnet", "10.0.61.0/24")
	l.mustB(b, "net", "connect", "res", a)
	l.mustB(b, "net", "connect", "res", c)
	time.Sleep(200 * time.Millisecond) // let the agent start
	var d []time.Duration
	b.ResetTimer()
	for range b.N {
		r, took, err := query(a, "10.0.61.1", "udp", c, dns.TypeA)
		if err != nil || len(r.Answer) != 1 {
			b.Fatalf("lookup: %v %v", r, err)
		}
		d = append(d, took)
	}
	b.StopTimer()
	slices.Sort(d)
	q := func(p int) float64 { return float64(d[(len(d)-1)*p/100]) / float64(time.Microsecond) }
	b.ReportMetric(q(50), "p50-µs")
	b.ReportMetric(q(90), "p90-µs")
	b.ReportMetric(q(99), "p99-µs")
	l.mustB(b, "net", "rm", "--force", "res")
}

// newLabB is newLab for a benchmark; only run and the B helpers below may
// be used on it (the others report through a *testing.T).
func newLabB(b *testing.B) *lab {
	l := &lab{host: fmt.Sprintf("bench-%d-host", time.Now().UnixNano()%100000), state: b.TempDir()}
	if out, err := execCommand("ip", "netns", "add", l.host); err != nil {
		b.Fatal(out, err)
	}
	execCommand("ip", "-n", l.host, "link", "set", "lo", "up")
	b.Cleanup(func() {
		for _, n := range l.names {
			execCommand("ip", "netns", "del", n)
		}
		execCommand("ip", "netns", "del", l.host)
	})
	return l
}

func (l *lab) mustB(b *testing.B, args ...string) string {
	out, err := l.run(args...)
	if err != nil {
		b.Fatalf("nsnet %v: %v", args, err)
	}
	return out
}

func (l *lab) nsB(b *testing.B, short string) string {
	name := l.host[:len(l.host)-5] + "-" + short
	l.mustB(b, "ns", "create", name)
	l.names = append(l.names, name)
	return name
}
