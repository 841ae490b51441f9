package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nsnet/nsnet/internal/nstest"
)

// world is several simulated hosts, each with a state directory of its
// own (as separate machines would have), and an etcd they share. A router
// namespace "clrt" holds the segment of etcd and of the machine nsnet runs
// on (198.51.100.0/24); the hosts are on it too (one L2 segment), or each
// on a segment of its own behind the router (routed).
type world struct {
	t     *testing.T
	hosts []*lab
	url   string
	etcd  []*exec.Cmd
	// etcdNS are the etcd members' namespaces.
	etcdNS []string
}

func newWorld(t *testing.T, hosts, etcdMembers int, routed bool, etcdTLS ...string) *world {
	t.Helper()
	nstest.Require(t)
	if _, err := exec.LookPath("etcd"); err != nil {
		t.Skip("etcd (Debian etcd-server) is not installed")
	}
	w := &world{t: t}
	fix := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	fix("ip", "netns", "add", "clrt")
	t.Cleanup(func() { exec.Command("ip", "netns", "del", "clrt").Run() })
	fix("ip", "-n", "clrt", "link", "set", "lo", "up")
	fix("ip", "netns", "exec", "clrt", "sysctl", "-qw", "net.ipv4.ip_forward=1")
	fix("ip", "-n", "clrt", "link", "add", "br0", "type", "bridge")
	fix("ip", "-n", "clrt", "addr", "add", "198.51.100.254/24", "dev", "br0")
	fix("ip", "-n", "clrt", "link", "set", "br0", "up")
	// This machine (where nsnet's commands run) on the segment.
	fix("ip", "link", "add", "clroot", "type", "veth", "peer", "name", "root", "netns", "clrt")
	t.Cleanup(func() { exec.Command("ip", "link", "del", "clroot").Run() })
	fix("ip", "addr", "add", "198.51.100.250/24", "dev", "clroot")
	fix("ip", "link", "set", "clroot", "up")
	fix("ip", "-n", "clrt", "link", "set", "root", "master", "br0", "up")
	var peers, clients []string
	for i := range etcdMembers {
		ns := fmt.Sprintf("cle%d", i+1)
		w.etcdNS = append(w.etcdNS, ns)
		addr := fmt.Sprintf("198.51.100.%d", 10+i)
		fix("ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		fix("ip", "-n", ns, "link", "set", "lo", "up")
		fix("ip", "-n", "clrt", "link", "add", "to-"+ns, "type", "veth", "peer", "name", "eth0", "netns", ns)
		fix("ip", "-n", "clrt", "link", "set", "to-"+ns, "master", "br0", "up")
		fix("ip", "-n", ns, "addr", "add", addr+"/24", "dev", "eth0")
		fix("ip", "-n", ns, "link", "set", "eth0", "up")
		fix("ip", "-n", ns, "route", "add", "default", "via", "198.51.100.254")
		peers = append(peers, fmt.Sprintf("%s=http://%s:2380", ns, addr))
		clients = append(clients, addr+":2379")
	}
	scheme := "http"
	if len(etcdTLS) > 0 {
		scheme = "https"
	}
	for i, ns := range w.etcdNS {
		addr := fmt.Sprintf("198.51.100.%d", 10+i)
		args := []string{"etcd", "--name", ns, "--data-dir", filepath.Join(t.TempDir(), ns),
			"--listen-client-urls", scheme + "://" + addr + ":2379", "--advertise-client-urls", scheme + "://" + addr + ":2379",
			"--listen-peer-urls", "http://" + addr + ":2380", "--initial-advertise-peer-urls", "http://" + addr + ":2380",
			"--initial-cluster", strings.Join(peers, ","), "--initial-cluster-state", "new",
			"--heartbeat-interval", "50", "--election-timeout", "500"}
		w.etcd = append(w.etcd, daemon(t, ns, append(args, etcdTLS...)...))
	}
	w.url = "etcd://" + strings.Join(clients, ",")
	if len(etcdTLS) > 0 {
		w.url = "etcds://" + strings.Join(clients, ",")
	}
	for i := range hosts {
		name := fmt.Sprintf("clh%d", i+1)
		l := &lab{t: t, host: name, state: t.TempDir()}
		fix("ip", "netns", "add", name)
		t.Cleanup(func() { stopAgent(l) })
		t.Cleanup(func() {
			for _, n := range l.names {
				exec.Command("ip", "netns", "del", n).Run()
			}
			exec.Command("ip", "netns", "del", name).Run()
		})
		fix("ip", "-n", name, "link", "set", "lo", "up")
		fix("ip", "-n", "clrt", "link", "add", "to-"+name, "type", "veth", "peer", "name", "eth0", "netns", name)
		fix("ip", "-n", name, "link", "set", "eth0", "up")
		if routed {
			// A segment of its own: 203.0.113.16i/28, behind the router.
			base := 16 * (i + 1)
			fix("ip", "-n", "clrt", "addr", "add", fmt.Sprintf("203.0.113.%d/28", base+1), "dev", "to-"+name)
			fix("ip", "-n", "clrt", "link", "set", "to-"+name, "up")
			fix("ip", "-n", name, "addr", "add", fmt.Sprintf("203.0.113.%d/28", base+2), "dev", "eth0")
			fix("ip", "-n", name, "route", "add", "default", "via", fmt.Sprintf("203.0.113.%d", base+1))
		} else {
			fix("ip", "-n", "clrt", "link", "set", "to-"+name, "master", "br0", "up")
			fix("ip", "-n", name, "addr", "add", fmt.Sprintf("198.51.100.%d/24", i+1), "dev", "eth0")
		}
		w.hosts = append(w.hosts, l)
	}
	if routed {
		fix("ip", "route", "add", "203.0.113.0/24", "via", "198.51.100.254")
	}
	return w
}

// c runs nsnet for host i with the cluster's URL.
func (w *world) c(i int, args ...string) (string, error) {
	return w.hosts[i].runEnv([]string{"NSNET_CLUSTER=" + w.url}, args...)
}

func (w *world) must(i int, args ...string) string {
	w.t.Helper()
	out, err := w.c(i, args...)
	if err != nil {
		w.t.Fatalf("host %d: nsnet %s: %v", i+1, strings.Join(args, " "), err)
	}
	return out
}

func (w *world) join(ttl, grace string) {
	w.t.Helper()
	for i, l := range w.hosts {
		w.must(i, "host", "join", "--name", l.host, "--ttl", ttl, "--grace", grace)
	}
}

// connectAll connects per namespaces to network on every host, the hosts
// in parallel, and returns each namespace's address by namespace.
func (w *world) connectAll(network string, per int) map[string]string {
	w.t.Helper()
	var mu sync.Mutex
	addrs := map[string]string{}
	var wg sync.WaitGroup
	for i, l := range w.hosts {
		var names []string
		for j := range per {
			names = append(names, l.nsNamed(fmt.Sprintf("%s-m%d", l.host, j)))
		}
		for _, ns := range names {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, err := w.c(i, "net", "connect", network, ns)
				if err != nil {
					w.t.Errorf("connect %s on %s: %v", ns, l.host, err)
					return
				}
				// "connected NS to NET: eth0 10.244.0.2/32 (host ...)"
				f := strings.Fields(out)
				if len(f) < 6 {
					w.t.Errorf("connect %s: %q", ns, out)
					return
				}
				mu.Lock()
				addrs[ns] = strings.Split(f[5], "/")[0]
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	return addrs
}

// nsNamed creates a namespace through nsnet by its full name.
func (l *lab) nsNamed(name string) string {
	l.t.Helper()
	l.must("ns", "create", name)
	l.names = append(l.names, name)
	return name
}

func (w *world) reachAll(addrs map[string]string) {
	w.t.Helper()
	// A member of each host reaches one member of every other host, by
	// its own address, and the other side sees that address.
	for i, from := range w.hosts {
		src := from.host + "-m0"
		for j, to := range w.hosts {
			if i == j {
				continue
			}
			dst := to.host + "-m1"
			var err error
			for range 50 { // routes follow a block claim within a moment
				if err = from.ping(src, addrs[dst]); err == nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				w.t.Errorf("%s (%s) to %s (%s): %v", src, addrs[src], dst, addrs[dst], err)
			}
		}
	}
	from, to := w.hosts[0].host+"-m0", w.hosts[len(w.hosts)-1].host+"-m0"
	seen := listen(w.t, to, addrs[to]+":9000")
	got, err := dial(from, addrs[to]+":9000")
	if err != nil {
		w.t.Fatalf("%s to %s: %v", from, to, err)
	}
	<-seen
	if got != addrs[from] {
		w.t.Errorf("%s saw %s from %s, want its own address %s", to, got, from, addrs[from])
	}
}

func distinct(t *testing.T, addrs map[string]string, want int) {
	t.Helper()
	seen := map[string]string{}
	for ns, a := range addrs {
		if o, ok := seen[a]; ok {
			t.Errorf("address %s handed to %s and %s", a, o, ns)
		}
		seen[a] = ns
	}
	if len(seen) != want {
		t.Errorf("%d distinct addresses, want %d: %v", len(seen), want, addrs)
	}
}

func TestClusterHostGW(t *testing.T) {
	w := newWorld(t, 3, 1, false)
	w.join("10", "5m")
	w.must(0, "net", "create", "pods", "--scope", "cluster", "--subnet", "10.244.0.0/16", "--block-size", "28", "--backend", "host-gw")
	addrs := w.connectAll("pods", 10)
	distinct(t, addrs, 30)
	// Each host's members show in its own part of the network.
	for i, l := range w.hosts {
		out := w.must(i, "net", "inspect", "pods", "-o", "json")
		for j := range 10 {
			a := addrs[fmt.Sprintf("%s-m%d", l.host, j)]
			if !strings.Contains(out, a+"/32") {
				t.Errorf("%s's member %d (%s) is not in its net inspect", l.host, j, a)
			}
		}
	}
	w.reachAll(addrs)
	// The keeper's routes: each other host's blocks via its address.
	if out := w.hosts[0].fixture("ip", "-n", "clh1", "route", "show", "proto", "112"); !strings.Contains(out, "via 198.51.100.2") || !strings.Contains(out, "blackhole") {
		t.Errorf("clh1's cluster routes:\n%s", out)
	}
	if out := w.must(0, "host", "ls"); strings.Count(out, "live") != 3 {
		t.Errorf("host ls:\n%s", out)
	}
	// Removing the network: refused while other hosts hold blocks; once
	// they removed their parts, it goes from etcd and every host's routes
	// follow.
	if _, err := w.c(0, "net", "rm", "pods", "--scope", "cluster"); err == nil || !strings.Contains(err.Error(), "hold blocks of it") {
		t.Errorf("cluster rm with other hosts' blocks: %v", err)
	}
	w.must(1, "net", "rm", "pods", "--force")
	w.must(2, "net", "rm", "pods", "--force")
	w.must(0, "net", "rm", "pods", "--scope", "cluster", "--force")
	waitFor(t, 10*time.Second, "every host's cluster routes gone", func() bool {
		for _, l := range w.hosts {
			if strings.TrimSpace(l.fixture("ip", "-n", l.host, "route", "show", "proto", "112")) != "" {
				return false
			}
		}
		return true
	})
	if out := w.must(0, "host", "ls"); strings.Contains(out, "10.244.") {
		t.Errorf("blocks left after the network went:\n%s", out)
	}
}

// vxlan across hosts that reach each other only through a router, with a
// three-member etcd of which one dies mid-test.
func TestClusterVXLANRouted(t *testing.T) {
	w := newWorld(t, 3, 3, true)
	w.join("10", "5m")
	w.must(1, "net", "create", "pods", "--scope", "cluster", "--subnet", "10.245.0.0/16", "--backend", "vxlan")
	addrs := w.connectAll("pods", 10)
	distinct(t, addrs, 30)
	w.reachAll(addrs)
	if out := w.hosts[0].fixture("ip", "-n", "clh1", "-d", "link", "show", "type", "vxlan"); !strings.Contains(out, "mtu 1450") || !strings.Contains(out, "vxlan id") {
		t.Errorf("clh1's vxlan device:\n%s", out)
	}
	// One etcd member killed: the other two keep a quorum, and members
	// keep joining.
	w.etcd[0].Process.Kill()
	for i := range w.hosts {
		ns := w.hosts[i].nsNamed(fmt.Sprintf("%s-late", w.hosts[i].host))
		if _, err := w.c(i, "net", "connect", "pods", ns); err != nil {
			t.Errorf("connect after an etcd member died: %v", err)
		}
	}
	if out := w.must(2, "host", "ls"); strings.Count(out, "live") != 3 {
		t.Errorf("host ls with an etcd member dead:\n%s", out)
	}
}

// A host that dies: within its lease the others drop its routes; after
// its grace its blocks are released.
func TestClusterHostDies(t *testing.T) {
	w := newWorld(t, 3, 1, false)
	w.join("3", "2s")
	w.must(0, "net", "create", "pods", "--scope", "cluster", "--subnet", "10.246.0.0/16", "--backend", "host-gw")
	addrs := w.connectAll("pods", 2)
	w.reachAll(addrs)
	// Killed: its processes and its namespace gone.
	dead := w.hosts[2]
	stopAgent(dead)
	for _, n := range append(dead.names, dead.host) {
		exec.Command("ip", "netns", "del", n).Run()
	}
	took := waitFor(t, 15*time.Second, "clh1 drops clh3's routes", func() bool {
		return !strings.Contains(w.hosts[0].fixture("ip", "-n", "clh1", "route", "show", "proto", "112"), "via 198.51.100.3")
	})
	t.Logf("host dead to its routes gone: %v (lease 3 s)", took)
	waitFor(t, 20*time.Second, "clh3's blocks released after its grace", func() bool {
		return !strings.Contains(w.must(0, "host", "ls"), "clh3")
	})
}

func TestClusterBadInput(t *testing.T) {
	w := newWorld(t, 2, 1, false)
	l := w.hosts[0]
	for _, tc := range []struct {
		env  string
		args []string
		want string
	}{
		{"", []string{"net", "create", "x", "--scope", "cluster", "--subnet", "10.9.0.0/16", "--backend", "host-gw"}, "--scope cluster needs the cluster's etcd"},
		{"NSNET_CLUSTER=http://198.51.100.10:2379", []string{"host", "join"}, "want etcd://HOST:PORT"},
		{"NSNET_CLUSTER=etcd://198.51.100.99:2379", []string{"host", "join"}, "etcd unreachable"},
		{"NSNET_CLUSTER=" + w.url, []string{"net", "create", "x", "--scope", "cluster", "--subnet", "10.9.0.0/24", "--block-size", "16", "--backend", "host-gw"}, "larger than the subnet"},
		{"NSNET_CLUSTER=" + w.url, []string{"net", "create", "x", "--scope", "cluster", "--subnet", "10.9.0.0/24", "--block-size", "31", "--backend", "host-gw"}, "below /30"},
		{"NSNET_CLUSTER=" + w.url, []string{"net", "create", "x", "--scope", "cluster", "--subnet", "10.9.0.0/24", "--backend", "vxlan", "--mtu", "600"}, "vxlan backend takes 50 bytes"},
		{"NSNET_CLUSTER=" + w.url, []string{"net", "create", "x", "--scope", "cluster", "--subnet", "10.9.0.0/24", "--backend", "ipsec"}, "want host-gw, vxlan or bgp"},
		{"NSNET_CLUSTER=" + w.url, []string{"host", "join", "--address", "192.0.2.7"}, "not an address of this host"},
	} {
		start := time.Now()
		var env []string
		if tc.env != "" {
			env = []string{tc.env}
		}
		_, err := l.runEnv(env, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Count(strings.TrimSpace(err.Error()), "\n") > 0 {
			t.Errorf("nsnet %s (%s): %v; want one line with %q", strings.Join(tc.args, " "), tc.env, err, tc.want)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("nsnet %s took %v to fail", strings.Join(tc.args, " "), d)
		}
	}
	if out, err := l.runEnv([]string{"NSNET_CLUSTER=" + w.url}, "host", "ls"); err != nil || strings.Contains(out, "live") {
		t.Errorf("bad input changed the cluster: %q %v", out, err)
	}
	w.must(0, "host", "join", "--name", "same")
	if _, err := w.c(1, "host", "join", "--name", "same"); err == nil || !strings.Contains(err.Error(), "a live host holds that name") {
		t.Errorf("join with a live host's name: %v", err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"host", "rm", "same"}, "host rm is for dead hosts"},
		{[]string{"host", "join", "--grace", "-1s"}, "--grace"},
		{[]string{"net", "create", "z", "--scope", "cluster", "--subnet", "10.12.0.0/16", "--backend", "host-gw", "--driver", "bridge"}, "--driver is not for --scope cluster"},
	} {
		if _, err := w.c(1, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("nsnet %s: %v; want %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
	w.must(0, "net", "create", "cp", "--scope", "cluster", "--subnet", "10.13.0.0/16", "--backend", "host-gw")
	pns := l.nsNamed("clh1-p")
	if _, err := w.c(0, "net", "connect", "cp", pns, "-p", "8080:80"); err == nil || !strings.Contains(err.Error(), "published ports are not offered") {
		t.Errorf("connect with -p on a cluster network: %v", err)
	}
	// etcd gone: commands that need it fail quickly and say so; local ones
	// keep working.
	w.etcd[0].Process.Kill()
	time.Sleep(200 * time.Millisecond)
	w.must(0, "net", "create", "local", "--subnet", "10.10.0.0/24")
	ns := l.nsNamed("clh1-x")
	w.must(0, "net", "connect", "local", ns)
	start := time.Now()
	if _, err := w.c(0, "net", "create", "y", "--scope", "cluster", "--subnet", "10.11.0.0/16", "--backend", "host-gw"); err == nil || !strings.Contains(err.Error(), "etcd unreachable") {
		t.Errorf("cluster create with etcd down: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("cluster create with etcd down took %v", d)
	}
}

// The bgp backend: the hosts' BGP speakers announce their members.
func TestClusterBGP(t *testing.T) {
	w := newWorld(t, 2, 1, false)
	w.join("10", "5m")
	w.must(0, "net", "create", "pods", "--scope", "cluster", "--subnet", "10.247.0.0/16", "--backend", "bgp")
	w.must(0, "bgp", "set", "--asn", "64512")
	w.must(0, "bgp", "peer", "add", "198.51.100.2", "--asn", "64512")
	w.must(1, "bgp", "set", "--asn", "64512")
	w.must(1, "bgp", "peer", "add", "198.51.100.1", "--asn", "64512", "--passive")
	addrs := w.connectAll("pods", 2)
	distinct(t, addrs, 4)
	w.reachAll(addrs)
	if out := w.hosts[0].fixture("ip", "-n", "clh1", "route", "show", "proto", "111"); !strings.Contains(out, "via 198.51.100.2") {
		t.Errorf("clh1's BGP routes to clh2's members:\n%s", out)
	}
}

// etcd that wants client certificates: the host joins with them, and its
// keeper keeps it joined with them.
func TestClusterTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCert(t, dir, "ca", nil, nil)
	newCert(t, dir, "server", ca, caKey)
	newCert(t, dir, "client", ca, caKey)
	f := func(n string) string { return filepath.Join(dir, n) }
	w := newWorld(t, 1, 1, false, "--cert-file", f("server.crt"), "--key-file", f("server.key"),
		"--client-cert-auth", "--trusted-ca-file", f("ca.crt"))
	tlsFlags := []string{"--cluster-cert", f("client.crt"), "--cluster-key", f("client.key"), "--cluster-ca", f("ca.crt")}
	if _, err := w.c(0, "host", "join"); err == nil {
		t.Errorf("join without a client certificate succeeded")
	}
	w.must(0, append(tlsFlags, "host", "join", "--name", "tls1")...)
	w.must(0, append(tlsFlags, "net", "create", "pods", "--scope", "cluster", "--subnet", "10.248.0.0/16", "--backend", "host-gw")...)
	ns := w.hosts[0].nsNamed("clh1-t")
	w.must(0, "net", "connect", "pods", ns)
	// The keeper reaches etcd with the certificate the host joined with.
	waitFor(t, 10*time.Second, "the keeper's blackhole for its block", func() bool {
		return strings.Contains(w.hosts[0].fixture("ip", "-n", "clh1", "route", "show", "proto", "112"), "blackhole")
	})
	if out := w.must(0, append(tlsFlags, "host", "ls")...); !strings.Contains(out, "tls1") {
		t.Errorf("host ls: %s", out)
	}
}

// newCert writes NAME.crt and NAME.key into dir: a CA when parent is nil,
// else a certificate for 198.51.100.10 and client use, signed by parent.
func newCert(t *testing.T, dir, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment}
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage = true, true, x509.KeyUsageCertSign|x509.KeyUsageDigitalSignature
		parent, parentKey = tmpl, key
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("198.51.100.10")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// A host cut off for longer than its grace comes back: its blocks were
// released, and its keeper claims them again (they are free), so the
// addresses its members use stay its own.
func TestClusterHostReturns(t *testing.T) {
	w := newWorld(t, 2, 1, false)
	w.join("3", "1s")
	w.must(0, "net", "create", "pods", "--scope", "cluster", "--subnet", "10.249.0.0/16", "--backend", "host-gw")
	addrs := w.connectAll("pods", 2)
	w.reachAll(addrs)
	stopAgent(w.hosts[1])
	waitFor(t, 20*time.Second, "clh2's blocks released", func() bool {
		return !strings.Contains(w.must(0, "host", "ls"), "clh2")
	})
	w.must(1, "net", "ls") // restarts clh2's agent, and so its keeper
	waitFor(t, 20*time.Second, "clh2 back with its block", func() bool {
		out := w.must(0, "host", "ls")
		return strings.Contains(out, "clh2") && strings.Contains(out, "10.249.0.64/26")
	})
	waitFor(t, 10*time.Second, "clh1's member reaches clh2's again", func() bool {
		return w.hosts[0].ping("clh1-m0", addrs["clh2-m1"]) == nil
	})
}
