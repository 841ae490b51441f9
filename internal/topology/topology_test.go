package topology

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	l, err := Parse("lab.yaml", []byte(`name: two
hosts:
  node01:
    networks:
      pods: {driver: routed, subnet: [10.0.1.0/24, "fd00:1::/64"]}
    namespaces:
      demo01: {networks: {pods: {ip: 10.0.1.2, ip6: "fd00:1::2", ports: "8080:80", aliases: [web]}}}
      demo02: {networks: [pods]}
      side: {share: demo01}
  node02:
    firewall: {forward: drop}
underlay:
  subnet: 198.51.100.0/24
  addresses: {node02: 198.51.100.2}
  routing: static
links:
  - endpoints: [demo01:l0, node02]
    subnet: 192.0.2.0/30
`))
	if err != nil {
		t.Fatal(err)
	}
	if l.Name != "two" || len(l.Hosts) != 2 || l.Hosts[1].Forward != "drop" {
		t.Fatalf("lab: %+v", l)
	}
	n := l.Host("node01").Network("pods")
	if n == nil || len(n.Subnets) != 2 || n.Driver != "routed" {
		t.Fatalf("network: %+v", n)
	}
	m := l.Hosts[0].Namespaces[0].Networks[0]
	if m.IP != netip.MustParseAddr("10.0.1.2") || m.IP6 != netip.MustParseAddr("fd00:1::2") || len(m.Ports) != 1 || m.Aliases[0] != "web" {
		t.Errorf("membership: %+v", m)
	}
	if got := l.Hosts[0].Namespaces[1].Networks[0].Network; got != "pods" {
		t.Errorf("list membership: %q", got)
	}
	// node02 took .2; node01 gets the first free after the gateway's .1.
	if got := l.Underlay.Addresses; got["node01"] != netip.MustParseAddr("198.51.100.3") || got["node02"] != netip.MustParseAddr("198.51.100.2") {
		t.Errorf("underlay addresses: %v", got)
	}
	if k := l.Links[0]; k.Ends[0] != (Endpoint{"demo01", "l0"}) || k.Ends[1] != (Endpoint{"node02", ""}) {
		t.Errorf("link: %+v", k)
	}
	if got := l.NetworkName("node01", "pods"); got != "node01.pods" {
		t.Errorf("store name: %q", got)
	}
}

func TestParseFlat(t *testing.T) {
	l, err := Parse("f.yaml", []byte("name: flat\nnetworks:\n  lan: {subnet: 10.1.0.0/24}\nnamespaces:\n  a:\n  b: {networks: [lan]}\ntaps:\n  vm0: {network: lan}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Hosts) != 1 || l.Hosts[0].Name != "" || len(l.Hosts[0].Namespaces) != 2 || len(l.Hosts[0].Taps) != 1 {
		t.Fatalf("flat lab: %+v", l.Hosts[0])
	}
	if got := l.NetworkName("", "lan"); got != "lan" {
		t.Errorf("store name: %q", got)
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct{ name, file, want string }{
		{"syntax", "name: x\nnetworks: {a: [\n", "f.yaml:2:15: invalid YAML"},
		{"two documents", "name: x\n---\nname: y\n", "f.yaml: want exactly one YAML document"},
		{"unknown top key", "name: x\nnetwork: {}\n", "f.yaml:2:1: network: unknown key"},
		{"key twice", "name: x\nnamespaces:\n  a: {}\n  a: {}\n", "f.yaml:4:3: invalid YAML: mapping key \"a\" already defined"},
		{"not a mapping", "name: x\nnetworks: [a, b]\n", "f.yaml:2:11: networks: want a mapping"},
		{"bad bool", "name: x\nnetworks:\n  a: {subnet: 10.1.0.0/24, nat: maybe}\n", "f.yaml:3:33: networks.a.nat: want true or false"},
		{"bad number", "name: x\nnetworks:\n  a: {subnet: 10.1.0.0/24, mtu: big}\n", "f.yaml:3:33: networks.a.mtu: want a whole number"},
		{"bad cidr", "name: x\nnetworks:\n  a: {subnet: 10.1.0.0}\n", "f.yaml:3:15: networks.a.subnet: \"10.1.0.0\" is not an address with a prefix length"},
		{"no subnet", "name: x\nnetworks:\n  a: {}\n", "f.yaml:3:3: networks.a: a network needs a subnet"},
		{"hosts and flat", "name: x\nhosts: {h: {}}\nnetworks: {}\n", "f.yaml:3:1: networks: with hosts"},
		{"name host", "name: x\nnamespaces: {host: {}}\n", "f.yaml:2:14: namespaces.host: \"host\" stands for the lab's own host"},
		{"host and namespace", "name: x\nhosts:\n  h:\n    namespaces: {h: {}}\n", "f.yaml:4:18: hosts.h.namespaces.h: namespace \"h\" is declared twice"},
		{"family", "name: x\nnetworks:\n  a: {subnet: 10.1.0.0/24}\nnamespaces:\n  n: {networks: {a: {ip: \"fd00::1\"}}}\n", "f.yaml:5:22: namespaces.n.networks.a.ip: fd00::1 is not an IPv4 address"},
		{"joined twice", "name: x\nnetworks:\n  a: {subnet: 10.1.0.0/24}\nnamespaces:\n  n: {networks: [a, a]}\n", "f.yaml:5:21: namespaces.n.networks[1]: namespace n joins network a twice"},
		{"two default routes", "name: x\nnetworks:\n  a: {subnet: 10.1.0.0/24}\n  b: {subnet: 10.2.0.0/24}\nnamespaces:\n  n: {networks: {a: {default_route: true}, b: {default_route: true}}}\n", "namespaces.n.networks.b.default_route: namespace n has its default route on two networks"},
		{"share with networks", "name: x\nnetworks:\n  a: {subnet: 10.1.0.0/24}\nnamespaces:\n  m: {}\n  n: {share: m, networks: [a]}\n", "f.yaml:6:17: namespaces.n.networks: a namespace that shares m's network has no networks"},
		{"link to itself", "name: x\nnamespaces: {a: {}}\nlinks:\n  - endpoints: [a, a]\n", "links[0].endpoints: a link joins two different namespaces"},
		{"linked twice", "name: x\nnamespaces: {a: {}, b: {}}\nlinks:\n  - endpoints: [a, b]\n  - endpoints: [b, a]\n", "f.yaml:5:5: links[1]: a and b are linked twice"},
		{"link addresses", "name: x\nnamespaces: {a: {}, b: {}}\nlinks:\n  - endpoints: [a, b]\n    addresses: [10.0.0.1/30]\n", "links[0].addresses: want one address per endpoint"},
		{"underlay without hosts", "name: x\nunderlay: {subnet: 198.51.100.0/24}\n", "f.yaml:2:1: underlay: an underlay joins hosts"},
		{"underlay too small", "name: x\nhosts: {a: {}, b: {}, c: {}}\nunderlay: {subnet: 198.51.100.0/30}\n", "underlay.subnet: subnet 198.51.100.0/30 is too small for 3 hosts"},
		{"static overlap", "name: x\nhosts:\n  a: {networks: {p: {subnet: 10.0.0.0/16}}}\n  b: {networks: {p: {subnet: 10.0.1.0/24}}}\nunderlay: {subnet: 198.51.100.0/24, routing: static}\n", "hosts.b.networks.p.subnet: subnet 10.0.1.0/24 overlaps 10.0.0.0/16 of network p on host a"},
		{"underlay overlap", "name: x\nhosts:\n  a: {networks: {p: {subnet: 198.51.100.0/25}}}\nunderlay: {subnet: 198.51.100.0/24}\n", "hosts.a.networks.p.subnet: subnet 198.51.100.0/25 overlaps the underlay's"},
		{"bgp without asn", "name: x\nhosts:\n  a: {}\nunderlay: {subnet: 198.51.100.0/24, routing: bgp}\n", "underlay.routing: routing: bgp needs the hosts' AS number"},
		{"asn 0", "name: x\nhosts:\n  a: {}\nunderlay: {subnet: 198.51.100.0/24, routing: bgp, asn: 0}\n", "underlay.asn: want an AS number from 1 to 4294967295"},
		{"asn too big", "name: x\nhosts:\n  a: {bgp: {asn: 4294967296}}\n", "hosts.a.bgp.asn: want an AS number"},
		{"asn without bgp", "name: x\nhosts:\n  a: {}\nunderlay: {subnet: 198.51.100.0/24, asn: 64512}\n", "underlay.asn: asn is for routing: bgp"},
		{"host bgp without asn", "name: x\nhosts:\n  a: {bgp: {peers: [{address: 192.0.2.1, asn: 1}]}}\n", "hosts.a.bgp: a host's bgp needs an asn"},
		{"bgp router id", "name: x\nhosts:\n  a: {bgp: {asn: 1, router_id: '2001:db8::1'}}\n", "router id 2001:db8::1 must be an IPv4 address"},
		{"bgp peer twice", "name: x\nhosts:\n  a: {bgp: {asn: 1, peers: [{address: 192.0.2.1, asn: 2}, {address: 192.0.2.1, asn: 2}]}}\n", "hosts.a.bgp.peers[1].address: peer 192.0.2.1 is given twice"},
		{"bgp peer asn", "name: x\nhosts:\n  a: {bgp: {asn: 1, peers: [{address: 192.0.2.1}]}}\n", "hosts.a.bgp.peers[0]: a peer needs an asn"},
		{"forward", "name: x\nhosts:\n  a: {firewall: {forward: reject}}\n", "hosts.a.firewall.forward: want drop or accept"},
		{"tap network", "name: x\ntaps: {t0: {network: nope}}\n", "f.yaml:2:13: taps.t0.network: unknown network \"nope\""},
		{"lab name", "name: -x\n", "f.yaml:1:1: name: lab name \"-x\" is invalid"},
		{"alias", "name: x\nnetworks:\n  a: &n {subnet: 10.1.0.0/24}\n  b: *n\n", "f.yaml:4:6: networks.b: YAML aliases are not supported"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(c.file))
			if err == nil {
				t.Fatalf("no error, want %q", c.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not match ErrInvalid", err)
			}
			if msg := err.Error(); !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "f.yaml") {
				t.Errorf("error %q, want one line from f.yaml containing %q", msg, c.want)
			}
		})
	}
}
