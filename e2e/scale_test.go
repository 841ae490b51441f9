package e2e

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

// A thousand isolated NAT networks with DNS on one host (issue 11): the
// 23rd used to fail ("no buffer space available"). A random sample of
// them gets members; every pair of those is isolated, every member
// resolves its network's other member, every published port is reachable
// from outside, and the table's rules do not grow with the networks.
// Timing is the benchmark's business (make bench, section 5), not this
// test's.
func TestThousandNetworks(t *testing.T) {
	const n = 1000
	l := newLab(t)
	out := l.addOutside()
	subnet := func(i int) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + i/250), byte(i % 250), 0}), 24)
	}
	for i := range n {
		l.must("net", "create", fmt.Sprintf("n%d", i), "--subnet", subnet(i).String())
	}
	rng := rand.New(rand.NewPCG(11, 1000))
	sample := rng.Perm(n)[:6]
	type member struct {
		net, a, b string // two members of one network
		ip        string // a's address
		port      int
	}
	var ms []member
	for k, i := range sample {
		m := member{net: fmt.Sprintf("n%d", i), a: l.ns(fmt.Sprintf("a%d", k)), b: l.ns(fmt.Sprintf("b%d", k)), port: 30000 + k}
		l.must("net", "connect", m.net, m.a, "-p", fmt.Sprintf("%d:80", m.port))
		l.must("net", "connect", m.net, m.b)
		m.ip = l.addrOf(m.net, m.a, false)
		listen(t, m.a, "0.0.0.0:80")
		ms = append(ms, m)
	}
	for _, m := range ms {
		if got, err := l.getent(m.b, m.a); err != nil || !strings.HasPrefix(got, m.ip+" ") {
			t.Errorf("getent %s in %s (network %s) = %q, %v; want %s", m.a, m.b, m.net, got, err, m.ip)
		}
		if _, err := dial(out, fmt.Sprintf("%s:%d", uplinkHost, m.port)); err != nil {
			t.Errorf("published port %d of %s (network %s) from outside: %v", m.port, m.a, m.net, err)
		}
		l.mustPing(m.b, m.ip)
	}
	for i, m := range ms {
		other := ms[(i+1)%len(ms)]
		l.mustNotPing(m.a, other.ip)
		if _, err := l.getent(m.a, other.a); err == nil {
			t.Errorf("%s (network %s) resolves %s of network %s", m.a, m.net, other.a, other.net)
		}
	}
	rules := l.fixture("ip", "netns", "exec", l.host, "nft", "list", "chain", "inet", "nsnet", "forward")
	if c := strings.Count(rules, "nsnet:shared"); c > 10 {
		t.Errorf("the forward chain has %d rules with %d networks; want them shared:\n%s", c, n, rules)
	}
}
