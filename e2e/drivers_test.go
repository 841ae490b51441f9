package e2e

import (
	"net"
	"strings"
	"testing"
)

// TestLink rebuilds article 001: two namespaces joined by one veth pair.
func TestLink(t *testing.T) {
	l := newLab(t)
	t1, t2, t3 := l.ns("test1"), l.ns("test2"), l.ns("test3")
	l.must("link", "create", t1, t2, "--subnet", "192.168.1.0/24")
	l.mustPing(t1, "192.168.1.2")
	l.mustPing(t2, "192.168.1.1")
	var info struct {
		Links []struct {
			NS1 string `json:"ns1"`
			If1 string `json:"if1"`
		} `json:"links"`
	}
	for _, ns := range []string{t1, t2} {
		l.jsonOf(&info, "ns", "inspect", ns)
		if len(info.Links) != 1 || info.Links[0].NS1 != t1 {
			t.Errorf("ns inspect %s links = %+v, want the link", ns, info.Links)
		}
	}
	// Either end may be the host; names and addresses may be given.
	l.must("link", "create", "host", t3, "--addr", "host=10.99.0.1/30", "--addr", t3+"=10.99.0.2/30", "--name", "to-t3,up0")
	l.mustPing(t3, "10.99.0.1")
	if out := l.fixture("ip", "-n", l.host, "addr", "show", "dev", "to-t3"); !strings.Contains(out, "10.99.0.1/30") {
		t.Errorf("host end = %s", out)
	}
	// Removing either namespace removes its links.
	l.must("ns", "rm", t2)
	var links []struct{ NS1, NS2 string }
	l.jsonOf(&links, "link", "ls")
	if len(links) != 1 {
		t.Errorf("links after ns rm = %+v, want only host-%s", links, t3)
	}
	if out := l.fixture("ip", "-n", t1, "-br", "link"); strings.Contains(out, "veth0") {
		t.Errorf("test1 still has its end:\n%s", out)
	}
	l.must("link", "rm", t3, "host")
	if out := l.fixture("ip", "-n", l.host, "-br", "link"); strings.Contains(out, "to-t3") {
		t.Errorf("host end left after link rm:\n%s", out)
	}
}

// TestRouted rebuilds article 003: members with /32 addresses routed by the
// host, and a second host on the uplink that routes the subnet via this one
// and sees the members' own source addresses.
func TestRouted(t *testing.T) {
	l := newLab(t)
	node2 := l.addOutside()
	l.fixture("ip", "-n", node2, "route", "add", "10.0.1.0/24", "via", uplinkHost)
	seen := listen(t, node2, net.JoinHostPort(server, "9000"))
	d1, d2 := l.ns("demo01"), l.ns("demo02")
	l.must("net", "create", "calico", "--driver", "routed", "--subnet", "10.0.1.0/24", "--subnet", "fd00:1::/64")
	l.must("net", "connect", "calico", d1)
	l.must("net", "connect", "calico", d2)
	ip1, ip2 := l.addrOf("calico", d1, false), l.addrOf("calico", d2, false)

	if out := l.fixture("ip", "-n", d1, "-4", "addr", "show", "dev", "eth0"); !strings.Contains(out, ip1+"/32") {
		t.Errorf("member address is not a /32:\n%s", out)
	}
	if out := l.fixture("ip", "-n", d1, "route", "show", "default"); !strings.Contains(out, "via 169.254.1.1") {
		t.Errorf("member default route = %q, want via 169.254.1.1", out)
	}
	if out := l.fixture("ip", "-n", l.host, "route", "show", ip1); !strings.Contains(out, ip1+" dev nsv") {
		t.Errorf("host route to member = %q", out)
	}
	if out := l.fixture("ip", "-n", l.host, "-br", "link"); strings.Contains(out, "nsbr") {
		t.Errorf("routed network made a bridge:\n%s", out)
	}
	l.mustPing(d1, ip2)
	l.mustPing(d2, ip1)
	l.mustPing(d1, l.addrOf("calico", d2, true))
	l.mustPing(d1, uplinkHost)
	if _, err := execCommand("ip", "netns", "exec", l.host, "ping", "-c1", "-W1", ip1); err != nil {
		t.Errorf("host cannot reach member: %v", err)
	}
	src, err := dial(d1, net.JoinHostPort(server, "9000"))
	if err != nil {
		t.Fatalf("member to second host: %v", err)
	}
	<-seen
	if src != ip1 {
		t.Errorf("second host saw source %s, want the member's own %s", src, ip1)
	}

	// With --nat the same trip is masqueraded.
	l.fixture("ip", "-n", node2, "route", "add", "10.0.2.0/24", "via", uplinkHost)
	d3 := l.ns("demo03")
	l.must("net", "create", "natted", "--driver", "routed", "--subnet", "10.0.2.0/24", "--nat")
	l.must("net", "connect", "natted", d3)
	src, err = dial(d3, net.JoinHostPort(server, "9000"))
	if err != nil {
		t.Fatalf("natted member to second host: %v", err)
	}
	<-seen
	if src != uplinkHost {
		t.Errorf("second host saw %s from a --nat routed member, want %s", src, uplinkHost)
	}
	l.must("net", "rm", "--force", "calico")
	l.must("net", "rm", "--force", "natted")
	if out := l.fixture("ip", "-n", l.host, "route"); strings.Contains(out, "10.0.1.") || strings.Contains(out, "nsv") {
		t.Errorf("member routes left in host:\n%s", out)
	}
}

// A macvlan network on the host's own LAN is its main use: the host's
// route to that LAN through the parent does not count as an overlap, and
// the host's own address there is never given to a member (issue 10,
// item 18).
func TestMacvlanOnHostLAN(t *testing.T) {
	l := newLab(t)
	l.addOutside() // the uplink 203.0.113.1/24, and the router .2 behind it
	m := l.ns("m")
	l.must("net", "create", "lan", "--driver", "macvlan", "--parent", "uplink", "--subnet", "203.0.113.0/24", "--gateway", uplinkOut, "--dns=false")
	l.must("net", "connect", "lan", m)
	if got := l.addrOf("lan", m, false); got != "203.0.113.3" {
		t.Errorf("member got %s, want 203.0.113.3 (.1 is the host's, .2 the gateway)", got)
	}
	if _, err := l.run("net", "connect", "lan", l.ns("n"), "--ip", uplinkHost); err == nil || !strings.Contains(err.Error(), "is the host's own") {
		t.Errorf("connect with the host's own address: %v, want it refused", err)
	}
	l.mustPing(m, uplinkOut)
	// Another network may still not take the host's LAN.
	if _, err := l.run("net", "create", "br", "--subnet", "203.0.113.0/24"); err == nil || !strings.Contains(err.Error(), "overlaps") {
		t.Errorf("a bridge network on the host's LAN: %v, want it refused", err)
	}
}
