package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// snapshot captures everything a failed command must leave unchanged.
func (l *lab) snapshot() string {
	l.t.Helper()
	var b strings.Builder
	for _, args := range [][]string{{"net", "ls", "-o", "json"}, {"ns", "ls", "-o", "json"}} {
		b.WriteString(l.must(args...))
	}
	b.WriteString(l.fixture("ip", "-n", l.host, "-br", "link"))
	b.WriteString(l.fixture("ip", "-n", l.host, "-br", "addr"))
	b.WriteString(l.fixture("ip", "netns", "exec", l.host, "nft", "list", "ruleset"))
	b.WriteString(l.fixture("ip", "netns", "list"))
	return b.String()
}

func TestBadInput(t *testing.T) {
	l := newLab(t)
	l.addOutside() // puts a host route to 203.0.113.0/24
	a, b := l.ns("a"), l.ns("b")
	l.must("net", "create", "base", "--subnet", "10.70.0.0/16")
	l.must("net", "connect", "base", a)
	l.must("net", "create", "tiny", "--subnet", "10.71.0.0/30")
	l.must("net", "connect", "tiny", a)
	l.fixture("ip", "-n", l.host, "link", "add", "foreignbr", "type", "bridge")
	l.fixture("ip", "-n", l.host, "link", "add", "fport", "type", "veth", "peer", "name", "fpeer")
	l.fixture("ip", "-n", l.host, "link", "set", "fport", "master", "foreignbr")
	l.must("tap", "create", "tap0", "--net", "base")
	l.must("link", "create", a, b, "--subnet", "10.79.0.0/30")
	pub := l.ns("pub")
	l.must("net", "connect", "base", pub, "-p", "8080:80")
	l.must("net", "create", "sealed", "--subnet", "10.77.0.0/24", "--internal")
	long := strings.Repeat("x", 65)

	tests := []struct {
		name string
		args []string
		want string // in the one-line error
	}{
		{"invalid CIDR", []string{"net", "create", "n1", "--subnet", "10.0.0/24"}, `invalid subnet "10.0.0/24"`},
		{"not a CIDR", []string{"net", "create", "n1", "--subnet", "banana"}, `invalid subnet "banana"`},
		{"subnet /31", []string{"net", "create", "n1", "--subnet", "10.9.0.0/31"}, "too small"},
		{"subnet with host bits", []string{"net", "create", "n1", "--subnet", "10.9.0.5/24"}, "has host bits set; did you mean 10.9.0.0/24?"},
		{"subnet too wide", []string{"net", "create", "n1", "--subnet", "0.0.0.0/0"}, "wider than /8"},
		{"namespace called host", []string{"ns", "create", "host"}, "stands for the host namespace"},
		{"subnet /32", []string{"net", "create", "n1", "--subnet", "10.9.0.0/32"}, "too small"},
		{"subnet /127", []string{"net", "create", "n1", "--subnet", "fd00:9::/127"}, "too small"},
		{"subnet /128", []string{"net", "create", "n1", "--subnet", "fd00:9::/128"}, "too small"},
		{"overlaps network", []string{"net", "create", "n1", "--subnet", "10.70.5.0/24"}, `overlaps network "base"`},
		{"overlaps host route", []string{"net", "create", "n1", "--subnet", "203.0.113.128/25"}, "overlaps the host route to 203.0.113.0/24"},
		{"duplicate network", []string{"net", "create", "base", "--subnet", "10.72.0.0/24"}, "already exists"},
		{"duplicate namespace", []string{"ns", "create", a}, "already exists"},
		{"empty name", []string{"ns", "create", ""}, "name is empty"},
		{"long name", []string{"ns", "create", long}, "the limit is 64"},
		{"slash in name", []string{"ns", "create", "a/b"}, "contains '/'"},
		{"space in name", []string{"ns", "create", "a b"}, "whitespace"},
		{"tab in network name", []string{"net", "create", "a\tb", "--subnet", "10.73.0.0/24"}, "whitespace"},
		{"unknown network", []string{"net", "connect", "nope", b}, `network "nope": no such network`},
		{"unknown namespace", []string{"net", "connect", "base", "nope"}, `namespace "nope": no such namespace`},
		{"unknown network rm", []string{"net", "rm", "nope"}, "no such network"},
		{"unknown namespace rm", []string{"ns", "rm", "nope"}, "no such namespace"},
		{"ip outside subnet", []string{"net", "connect", "base", b, "--ip", "10.99.0.5"}, "outside subnet"},
		{"ip is network", []string{"net", "connect", "base", b, "--ip", "10.70.0.0"}, "network address"},
		{"ip is gateway", []string{"net", "connect", "base", b, "--ip", "10.70.0.1"}, "is the gateway"},
		{"ip is broadcast", []string{"net", "connect", "base", b, "--ip", "10.70.255.255"}, "broadcast address"},
		{"ip leased", []string{"net", "connect", "base", b, "--ip", "10.70.0.2"}, "already leased"},
		{"ip not an address", []string{"net", "connect", "base", b, "--ip", "ten"}, "not an IP address"},
		{"ip6 without v6 subnet", []string{"net", "connect", "base", b, "--ip6", "fd00::5"}, "no subnet of its family"},
		{"bridge name too long", []string{"net", "create", "n1", "--subnet", "10.74.0.0/24", "--bridge-name", "abcdefghijklmnop"}, "the limit is 15"},
		{"bridge name held", []string{"net", "create", "n1", "--subnet", "10.74.0.0/24", "--bridge-name", "foreignbr"}, "held by a device nsnet did not create"},
		{"bridge name of another network", []string{"net", "create", "n1", "--subnet", "10.74.0.0/24", "--bridge-name", "nsbr-base"}, `already used by network "base"`},
		{"exhausted subnet", []string{"net", "connect", "tiny", b}, "no free address"},
		{"connect twice", []string{"net", "connect", "base", a}, "already connected"},
		{"disconnect not member", []string{"net", "disconnect", "base", b}, "not connected"},
		{"network with members", []string{"net", "rm", "base"}, "has 2 member(s) and 1 TAP device(s)"}, // a, pub and tap0
		{"gateway outside subnet", []string{"net", "create", "n1", "--subnet", "10.75.0.0/24", "--gateway", "10.76.0.1"}, "outside subnet"},
		{"unknown driver", []string{"net", "create", "n1", "--subnet", "10.75.0.0/24", "--driver", "warp"}, `driver "warp" is not supported`},
		{"bad mtu", []string{"net", "create", "n1", "--subnet", "10.75.0.0/24", "--mtu", "20"}, "MTU 20"},
		{"two v4 subnets", []string{"net", "create", "n1", "--subnet", "10.75.0.0/24", "--subnet", "10.76.0.0/24"}, "at most one IPv4"},
		{"bad ifname", []string{"net", "connect", "base", b, "--ifname", "eth 0"}, "whitespace"},
		{"missing host netns", []string{"--host-netns", "no-such-host", "net", "create", "n1", "--subnet", "10.77.0.0/24"}, `host namespace "no-such-host": no such namespace`},
		{"bad output format", []string{"net", "ls", "-o", "yaml"}, `output format "yaml"`},
		{"port 0", []string{"net", "connect", "base", b, "-p", "0:80"}, "0 is outside 1..65535"},
		{"port above 65535", []string{"net", "connect", "base", b, "-p", "8081:65536"}, "65536 is outside 1..65535"},
		{"reversed range", []string{"net", "connect", "base", b, "-p", "9000-8990:80-90"}, "is reversed"},
		{"ranges of different lengths", []string{"net", "connect", "base", b, "-p", "9000-9002:80-81"}, "host range has 3 ports, member range 2"},
		{"unknown protocol", []string{"net", "connect", "base", b, "-p", "53:53/icmp"}, `unknown protocol "icmp"`},
		{"invalid host ip", []string{"net", "connect", "base", b, "-p", "300.1.1.1:80:80"}, `invalid host address "300.1.1.1"`},
		{"non-local host ip", []string{"net", "connect", "base", b, "-p", "192.0.2.99:80:80"}, "192.0.2.99 is not an address of the host"},
		{"host port taken", []string{"net", "connect", "base", b, "-p", "8080:81"}, `host port tcp/8080 is already published by the member "` + pub + `" of network "base"`},
		{"host port taken on one address", []string{"net", "connect", "base", b, "-p", uplinkHost + ":8080:81"}, "already published"},
		{"ports on an internal network", []string{"net", "connect", "sealed", b, "-p", "8081:80"}, "is internal"},
		{"alias equal to a member's name", []string{"net", "connect", "base", b, "--alias", pub}, "is the name of another member"},
		{"alias equal to a member's name with a dot", []string{"net", "connect", "base", b, "--alias", strings.ToUpper(pub) + "."}, "is the name of another member"},
		{"alias that is no DNS name", []string{"net", "connect", "base", b, "--alias", "*"}, "not a DNS name"},
		{"dns upstream not an address", []string{"net", "create", "d1", "--subnet", "10.76.0.0/24", "--dns-upstream", "dns.example"}, `--dns-upstream "dns.example" is not an IP address`},
		{"dns on macvlan", []string{"net", "create", "mv", "--driver", "macvlan", "--parent", "uplink", "--subnet", "192.0.2.0/24", "--dns"}, "DNS needs an address for the resolver"},
		{"link to itself", []string{"link", "create", a, a}, "two different namespaces"},
		{"link overlapping the host's network", []string{"link", "create", b, "host", "--subnet", "10.70.0.0/30"}, `overlaps network "base"`},
		{"link overlapping a member's network", []string{"link", "create", pub, b, "--subnet", "10.70.9.0/30"}, `overlaps network "base"`},
		{"empty state directory", []string{"--state-dir", "", "net", "ls"}, "--state-dir is empty"},
		{"exec without a command", []string{"exec", a, "--"}, "usage: nsnet exec NAME -- CMD"},
		{"link with three names", []string{"link", "create", a, "host", "--name", "x,y,z"}, "want IF1,IF2"},
		{"default route from an internal network", []string{"net", "connect", "sealed", b, "--default-route"}, "gives its members no default route"},
		{"loopback subnet", []string{"net", "create", "n1", "--subnet", "127.0.0.0/24"}, "is loopback"},
		{"IPv4-mapped subnet", []string{"net", "create", "n1", "--subnet", "::ffff:10.79.0.0/120"}, "is IPv4-mapped"},
		{"IPv6 with a small MTU", []string{"net", "create", "n1", "--subnet", "fd00:79::/64", "--mtu", "1000"}, "below IPv6's minimum"},
		{"nat and no-nat", []string{"net", "create", "n1", "--subnet", "10.79.0.0/24", "--nat", "--no-nat"}, "contradict"},
		{"ip range not a CIDR", []string{"net", "create", "n1", "--subnet", "10.79.0.0/24", "--ip-range", "10.79.0.5"}, `invalid --ip-range "10.79.0.5"`},
		{"ip range outside the subnet", []string{"net", "create", "n1", "--subnet", "10.79.0.0/24", "--ip-range", "10.80.0.0/28"}, "is not inside a subnet"},
		{"aux address without a name", []string{"net", "create", "n1", "--subnet", "10.79.0.0/24", "--aux-address", "10.79.0.9"}, `invalid --aux-address "10.79.0.9" (want NAME=IP`},
		{"aux address name twice", []string{"net", "create", "n1", "--subnet", "10.79.0.0/24", "--aux-address", "r=10.79.0.9", "--aux-address", "r=10.79.0.10"}, `the name "r" is given twice`},
		{"aux address is the gateway", []string{"net", "create", "n1", "--subnet", "10.79.0.0/24", "--aux-address", "r=10.79.0.1"}, "is the network's gateway"},
		{"link twice", []string{"link", "create", b, a}, "already linked"},
		{"link addrs in two subnets", []string{"link", "create", a, "host", "--addr", a + "=10.78.0.1/24", "--addr", "host=10.78.1.1/24"}, "not in one subnet"},
		{"link addrs collide", []string{"link", "create", a, "host", "--addr", a + "=10.78.0.1/24", "--addr", "host=10.78.0.1/24"}, "both ends would have"},
		{"link unknown namespace", []string{"link", "create", a, "nope"}, "no such namespace"},
		{"routed subnet overlaps", []string{"net", "create", "r1", "--driver", "routed", "--subnet", "10.70.9.0/24"}, `overlaps network "base"`},
		{"macvlan parent missing", []string{"net", "create", "mv", "--driver", "macvlan", "--parent", "nope0", "--subnet", "192.0.2.0/24"}, "parent nope0 does not exist"},
		{"macvlan parent is a bridge port", []string{"net", "create", "mv", "--driver", "macvlan", "--parent", "fport", "--subnet", "192.0.2.0/24"}, "is a port of another device"},
		{"macvlan parent is nsnet's", []string{"net", "create", "mv", "--driver", "macvlan", "--parent", "nsbr-base", "--subnet", "192.0.2.0/24"}, "nsnet's own device"},
		{"tap name taken by a tap", []string{"tap", "create", "tap0", "--net", "tiny"}, "already used by TAP device tap0"},
		{"tap name taken by a device", []string{"tap", "create", "uplink", "--net", "base"}, "already exists in the host"},
		{"share unknown namespace", []string{"ns", "create", "s1", "--share", "nope"}, `cannot share "nope"`},
		{"share onto existing name", []string{"ns", "create", b, "--share", a}, "already exists"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := l.snapshot()
			_, err := l.run(tt.args...)
			if err == nil {
				t.Fatalf("nsnet %q succeeded, want error containing %q", tt.args, tt.want)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error = %q, want it to contain %q", msg, tt.want)
			}
			stderr := msg[strings.Index(msg, ": ")+2:]
			if strings.Count(stderr, "\n") > 0 || !strings.HasPrefix(stderr, "nsnet: ") {
				t.Errorf("stderr = %q, want one line starting with 'nsnet: '", stderr)
			}
			if after := l.snapshot(); after != before {
				t.Errorf("failed command changed state:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// With -o json an error is one JSON object on stderr, naming the object
// and the reason (issue 10, item 27); a reader of a read-only state
// directory still reads it (item 25).
func TestErrorsAsJSON(t *testing.T) {
	l := newLab(t)
	_, err := l.run("net", "inspect", "nope", "-o", "json")
	if err == nil {
		t.Fatal("inspect of an unknown network succeeded")
	}
	_, stderr, _ := strings.Cut(err.Error(), ": ")
	var e struct{ Error, Object, Reason string }
	if jerr := json.Unmarshal([]byte(stderr), &e); jerr != nil || e.Object != `network "nope"` || e.Reason != "no such network" || !strings.Contains(e.Error, "no such network") {
		t.Errorf("stderr %q: %+v, %v; want a JSON error naming network \"nope\"", stderr, e, jerr)
	}

	l.must("net", "create", "ro", "--subnet", "10.0.50.0/24")
	l.fixture("mount", "--bind", "-o", "ro", l.state, l.state)
	defer l.fixture("umount", l.state)
	if err := os.WriteFile(filepath.Join(l.state, "probe"), nil, 0o600); err == nil {
		t.Fatal("the state directory is still writable")
	}
	if out, err := l.run("net", "ls"); err != nil || !strings.Contains(out, "ro") {
		t.Errorf("net ls on a read-only state directory: %q, %v", out, err)
	}
}

// As another user than root, nsnet says it needs root instead of a bare
// "permission denied" (issue 10, item 26).
func TestNotRoot(t *testing.T) {
	l := newLab(t)
	l.must("net", "ls") // the state directory exists, root's own
	out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", nsnetBin, "--state-dir", l.state, "net", "ls").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "run it as root, or with CAP_NET_ADMIN and CAP_SYS_ADMIN") {
		t.Errorf("nsnet as nobody: %v, %q; want it to say it needs root", err, out)
	}
}
