// Package e2e drives the nsnet binary against the real kernel inside the
// private namespaces nstest provides. Every test builds its own lab: a named
// namespace that nsnet treats as the host (--host-netns), its own state
// directory, and where needed an "outside" namespace behind the host's
// default route, holding only documentation addresses.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nsnet/nsnet/internal/netns"
	"github.com/nsnet/nsnet/internal/nstest"
)

var nsnetBin string

func TestMain(m *testing.M) {
	if nstest.Isolated() || os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "nsnet-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		nsnetBin = filepath.Join(dir, "nsnet")
		nstest.Cleanup = func() { os.RemoveAll(dir) }
		if nstest.Isolated() {
			// nsnet-bgp (the BGP speaker) and nsnet-cluster go beside
			// nsnet, where nsnet and its agent look for them.
			out, err := exec.Command("go", "build", "-tags", "nsnetcrash", "-o", dir+"/", "github.com/nsnet/nsnet/cmd/nsnet", "github.com/nsnet/nsnet/cmd/nsnet-bgp", "github.com/nsnet/nsnet/cmd/nsnet-cluster").CombinedOutput()
			if err != nil {
				fmt.Fprintf(os.Stderr, "FAIL: build nsnet: %v\n%s", err, out)
				os.Exit(1)
			}
		}
	}
	nstest.Main(m)
}

// Documentation addresses for the simulated outside world.
const (
	uplinkHost = "203.0.113.1"
	uplinkOut  = "203.0.113.2"
	server     = "198.51.100.10"
)

type lab struct {
	t     *testing.T
	host  string // name of the namespace nsnet treats as the host
	state string
	names []string
}

func newLab(t *testing.T) *lab {
	t.Helper()
	nstest.Require(t)
	l := &lab{t: t, host: t.Name() + "-host", state: t.TempDir()}
	if len(l.host) > 40 {
		l.host = l.host[len(l.host)-40:]
	}
	// Cut short, a name may start with the "-" of a "/": ip and nsnet
	// would take it for a flag.
	l.host = strings.TrimLeft(strings.ReplaceAll(l.host, "/", "-"), "-_")
	l.fixture("ip", "netns", "add", l.host)
	l.fixture("ip", "-n", l.host, "link", "set", "lo", "up")
	// A DNS agent of the lab's is gone before its state directory is
	// removed, or it writes there meanwhile (cleanups run last first).
	t.Cleanup(func() { stopAgent(l) })
	t.Cleanup(func() {
		for _, n := range l.names {
			exec.Command("ip", "netns", "del", n).Run()
		}
		exec.Command("ip", "netns", "del", l.host).Run()
	})
	return l
}

// fixture runs a setup or observer command that is not nsnet.
func (l *lab) fixture(args ...string) string {
	l.t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// run runs nsnet with the lab's host and state, returning stdout, and an
// error holding stderr.
func (l *lab) run(args ...string) (string, error) {
	return l.runEnv(nil, args...)
}

func (l *lab) runEnv(env []string, args ...string) (string, error) {
	full := append([]string{"--state-dir", l.state, "--host-netns", l.host}, args...)
	cmd := exec.Command(nsnetBin, full...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func (l *lab) must(args ...string) string {
	l.t.Helper()
	out, err := l.run(args...)
	if err != nil {
		l.t.Fatalf("nsnet %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func (l *lab) jsonOf(v any, args ...string) {
	l.t.Helper()
	out := l.must(append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		l.t.Fatalf("nsnet %s: decode %q: %v", strings.Join(args, " "), out, err)
	}
}

// ns creates a namespace through nsnet, named uniquely for this test.
func (l *lab) ns(short string) string {
	l.t.Helper()
	name := fmt.Sprintf("%s-%s", strings.TrimSuffix(l.host, "-host"), short)
	if len(name) > 60 {
		name = name[len(name)-60:]
	}
	l.must("ns", "create", name)
	l.names = append(l.names, name)
	return name
}

// addOutside wires a namespace standing for the outside world to the host:
// the host's uplink 203.0.113.1/24, the outside router 203.0.113.2, and a
// server address 198.51.100.10 behind the host's default route.
func (l *lab) addOutside() string {
	l.t.Helper()
	out := strings.TrimSuffix(l.host, "-host") + "-out"
	l.fixture("ip", "netns", "add", out)
	l.names = append(l.names, out)
	l.fixture("ip", "-n", l.host, "link", "add", "uplink", "type", "veth", "peer", "name", "eth0", "netns", out)
	l.fixture("ip", "-n", l.host, "addr", "add", uplinkHost+"/24", "dev", "uplink")
	l.fixture("ip", "-n", l.host, "link", "set", "uplink", "up")
	l.fixture("ip", "-n", l.host, "route", "add", "default", "via", uplinkOut)
	l.fixture("ip", "-n", out, "link", "set", "lo", "up")
	l.fixture("ip", "-n", out, "addr", "add", uplinkOut+"/24", "dev", "eth0")
	l.fixture("ip", "-n", out, "addr", "add", server+"/32", "dev", "lo")
	l.fixture("ip", "-n", out, "link", "set", "eth0", "up")
	return out
}

// ping sends one echo request from ns (through nsnet exec) and reports
// whether a reply came.
func (l *lab) ping(ns, addr string) error {
	args := []string{"exec", ns, "--", "ping", "-c1", "-W1", addr}
	if strings.Contains(addr, ":") {
		args = []string{"exec", ns, "--", "ping", "-6", "-c1", "-W1", addr}
	}
	_, err := l.run(args...)
	return err
}

func (l *lab) mustPing(ns, addr string) {
	l.t.Helper()
	if err := l.ping(ns, addr); err != nil {
		l.t.Errorf("ping %s from %s: %v", addr, ns, err)
	}
}

func (l *lab) mustNotPing(ns, addr string) {
	l.t.Helper()
	if err := l.ping(ns, addr); err == nil {
		l.t.Errorf("ping %s from %s succeeded, want no reply", addr, ns)
	}
}

// listen starts a TCP server inside namespace ns that reports, for every
// connection, the source address it saw.
func listen(t *testing.T, ns, addr string) <-chan string {
	t.Helper()
	h, err := netns.Open(netns.Path(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var ln net.Listener
	if err := netns.Do(h, func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { ln.Close() })
	seen := make(chan string, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			fmt.Fprintf(c, "%s\n", host)
			c.Close()
			seen <- host
		}
	}()
	return seen
}

// dial connects from namespace ns and returns the source address the server
// reports having seen.
func dial(ns, addr string) (string, error) {
	return dialIn(ns, addr, 2*time.Second, func(c net.Conn) (string, error) {
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil && err != io.EOF {
			return "", err
		}
		return strings.TrimSpace(line), nil
	})
}

// dialIn connects over TCP from namespace ns and lets talk use the
// connection, all within timeout.
func dialIn(ns, addr string, timeout time.Duration, talk func(net.Conn) (string, error)) (string, error) {
	h, err := netns.Open(netns.Path(ns))
	if err != nil {
		return "", err
	}
	defer h.Close()
	var c net.Conn
	if err := netns.Do(h, func() (err error) {
		c, err = net.DialTimeout("tcp", addr, timeout)
		return err
	}); err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	return talk(c)
}

// hostLinks lists the link names in the lab's host namespace.
func (l *lab) hostLinks() []string {
	l.t.Helper()
	var links []struct {
		Name string `json:"ifname"`
	}
	if err := json.Unmarshal([]byte(l.fixture("ip", "-n", l.host, "-j", "link", "show")), &links); err != nil {
		l.t.Fatal(err)
	}
	var names []string
	for _, k := range links {
		names = append(names, k.Name)
	}
	return names
}

// nsnetLinks lists links in the host that nsnet made.
func (l *lab) nsnetLinks() []string {
	var out []string
	for _, n := range l.hostLinks() {
		if strings.HasPrefix(n, "nsv") || strings.HasPrefix(n, "nsbr") {
			out = append(out, n)
		}
	}
	return out
}

// nftTables lists the nftables tables in the lab's host, as nft sees them.
func (l *lab) nftTables() string {
	l.t.Helper()
	return strings.TrimSpace(l.fixture("ip", "netns", "exec", l.host, "nft", "list", "tables"))
}

type member struct {
	Network   string   `json:"network"`
	Namespace string   `json:"namespace"`
	IfName    string   `json:"ifname"`
	HostIf    string   `json:"host_if"`
	Addrs     []string `json:"addrs"`
}

type network struct {
	Name     string   `json:"name"`
	Subnets  []string `json:"subnets"`
	Gateways []string `json:"gateways"`
	Bridge   string   `json:"bridge"`
	Members  []member `json:"members"`
}

func (l *lab) network(name string) network {
	var n network
	l.jsonOf(&n, "net", "inspect", name)
	return n
}

// addrOf returns ns's address (without length) of the given family in net.
func (l *lab) addrOf(net, ns string, v6 bool) string {
	l.t.Helper()
	for _, m := range l.network(net).Members {
		if m.Namespace != ns {
			continue
		}
		for _, a := range m.Addrs {
			if strings.Contains(a, ":") == v6 {
				return strings.Split(a, "/")[0]
			}
		}
	}
	l.t.Fatalf("%s has no address in %s", ns, net)
	return ""
}
