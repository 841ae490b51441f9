package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/nsnet/nsnet/internal/netns"
)

// cniRuntime drives the plugins through libcni, as containerd and CRI-O
// do, from inside the lab's host: the plugins it runs are in that
// namespace, and nsnet takes it for the host.
type cniRuntime struct {
	l    *lab
	cni  *libcni.CNIConfig
	list *libcni.NetworkConfigList
	host netns.Handle
}

func newCNIRuntime(t *testing.T, l *lab, conflist string) *cniRuntime {
	t.Helper()
	bin := t.TempDir()
	if err := os.Symlink(nsnetBin, filepath.Join(bin, "nsnet")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/usr/lib/cni/tuning", filepath.Join(bin, "tuning")); err != nil {
		t.Fatal(err)
	}
	cl, err := libcni.ConfListFromBytes([]byte(conflist))
	if err != nil {
		t.Fatalf("conflist: %v", err)
	}
	h, err := netns.Open(netns.Path(l.host))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return &cniRuntime{l: l, cni: libcni.NewCNIConfigWithCacheDir([]string{bin}, t.TempDir(), nil), list: cl, host: h}
}

// nsnetOnly is the same network as a 1.1.0 list of nsnet alone.
func nsnetOnly(t *testing.T, l *lab, name, subnet string) *libcni.NetworkConfigList {
	t.Helper()
	cl, err := libcni.ConfListFromBytes([]byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":%q,"plugins":[{"type":"nsnet","subnets":[%q],"stateDir":%q}]}`, name, subnet, l.state)))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

func (r *cniRuntime) in(fn func() error) error { return netns.Do(r.host, fn) }

func (r *cniRuntime) add(id, nsPath string, caps map[string]any) (*current.Result, error) {
	var res types.Result
	err := r.in(func() (err error) {
		res, err = r.cni.AddNetworkList(context.Background(), r.list, &libcni.RuntimeConf{ContainerID: id, NetNS: nsPath, IfName: "eth0", CapabilityArgs: caps})
		return err
	})
	if err != nil {
		return nil, err
	}
	return current.NewResultFromResult(res)
}

func (r *cniRuntime) del(id, nsPath string) error {
	return r.in(func() error {
		return r.cni.DelNetworkList(context.Background(), r.list, &libcni.RuntimeConf{ContainerID: id, NetNS: nsPath, IfName: "eth0"})
	})
}

func (r *cniRuntime) check(id, nsPath string) error {
	return r.in(func() error {
		return r.cni.CheckNetworkList(context.Background(), r.list, &libcni.RuntimeConf{ContainerID: id, NetNS: nsPath, IfName: "eth0"})
	})
}

// container makes a namespace as a runtime does: `ip netns add` under a
// name of its own.
func (l *lab) container(name string) string {
	l.t.Helper()
	l.fixture("ip", "netns", "add", name)
	l.fixture("ip", "-n", name, "link", "set", "lo", "up")
	l.names = append(l.names, name)
	return netns.Path(name)
}

// inHost runs nsnet inside the lab's host, as the plugin ran: networks a
// plugin made belong to the namespace it ran in.
func (l *lab) inHost(args ...string) string {
	l.t.Helper()
	return l.fixture(append([]string{"ip", "netns", "exec", l.host, nsnetBin, "--state-dir", l.state}, args...)...)
}

// cniConflist is nsnet followed by tuning, at 1.0.0: Debian's reference
// plugins speak no later version. GC and STATUS, which need 1.1.0, go
// through nsnetOnly.
func cniConflist(l *lab, name, subnet string) string {
	return fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[
		{"type":"nsnet","subnets":[%q],"stateDir":%q,"capabilities":{"portMappings":true,"ips":true,"mac":true,"aliases":true}},
		{"type":"tuning","sysctl":{"net.core.somaxconn":"512"}}]}`, name, subnet, l.state)
}

// libcni drives ADD, CHECK, STATUS, GC and DEL of nsnet followed by the
// reference tuning plugin; containers reach each other, the gateway, the
// outside (masqueraded) and are reached on a published port.
func TestCNILibcni(t *testing.T) {
	l := newLab(t)
	out := l.addOutside()
	seen := listen(t, out, net.JoinHostPort(server, "9000"))
	rt := newCNIRuntime(t, l, cniConflist(l, "pods", "10.89.0.0/24"))
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(l.state, "agent.pid")); err == nil {
			killAgent(t, l)
		}
	})
	only := nsnetOnly(t, l, "pods", "10.89.0.0/24")
	if err := rt.in(func() error { return rt.cni.GetStatusNetworkList(context.Background(), only) }); err != nil {
		t.Errorf("STATUS before the network exists: %v", err)
	}
	p1, p2 := l.container("cni-c1"), l.container("cni-c2")
	r1, err := rt.add("c1", p1, map[string]any{"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}}})
	if err != nil {
		t.Fatalf("ADD c1: %v", err)
	}
	r2, err := rt.add("c2", p2, map[string]any{"ips": []string{"10.89.0.77/24"}, "mac": "02:00:00:00:00:77"})
	if err != nil {
		t.Fatalf("ADD c2: %v", err)
	}
	if len(r1.IPs) != 1 || r1.IPs[0].Gateway.String() != "10.89.0.1" || len(r1.Routes) != 1 || len(r1.DNS.Nameservers) != 1 {
		t.Errorf("ADD c1 result: %+v", r1)
	}
	if got := r2.IPs[0].Address.IP.String(); got != "10.89.0.77" {
		t.Errorf("ADD c2 got %s, want the requested 10.89.0.77", got)
	}
	if i := *r2.IPs[0].Interface; r2.Interfaces[i].Sandbox != p2 || r2.Interfaces[i].Mac != "02:00:00:00:00:77" {
		t.Errorf("ADD c2 interface: %+v", r2.Interfaces[i])
	}
	if got := l.fixture("ip", "netns", "exec", "cni-c1", "sysctl", "-n", "net.core.somaxconn"); strings.TrimSpace(got) != "512" {
		t.Errorf("tuning after nsnet did not run: somaxconn %q", got)
	}
	ip1 := r1.IPs[0].Address.IP.String()
	if _, err := execCommand("ip", "netns", "exec", "cni-c2", "ping", "-c1", "-W1", ip1); err != nil {
		t.Errorf("c2 to c1: %v", err)
	}
	if _, err := execCommand("ip", "netns", "exec", "cni-c1", "ping", "-c1", "-W1", "10.89.0.1"); err != nil {
		t.Errorf("c1 to the gateway: %v", err)
	}
	if src, err := dial("cni-c1", net.JoinHostPort(server, "9000")); err != nil || src != uplinkHost {
		t.Errorf("c1 to the outside: %q, %v; want masqueraded to %s", src, err, uplinkHost)
	} else {
		<-seen
	}
	web := listen(t, "cni-c1", ":80")
	if _, err := dial(out, net.JoinHostPort(uplinkHost, "8080")); err != nil {
		t.Errorf("published port from outside: %v", err)
	} else {
		<-web
	}
	var n network
	l.jsonOf(&n, "net", "inspect", "pods")
	if len(n.Members) != 2 {
		t.Errorf("net inspect: %+v", n)
	}
	if out := l.must("net", "inspect", "pods"); !strings.Contains(out, "CONTAINER") || !strings.Contains(out, "c2") {
		t.Errorf("net inspect text lacks the container ids:\n%s", out)
	}
	for _, c := range []struct{ id, p string }{{"c1", p1}, {"c2", p2}} {
		if err := rt.check(c.id, c.p); err != nil {
			t.Errorf("CHECK %s: %v", c.id, err)
		}
	}
	if err := rt.in(func() error { return rt.cni.GetStatusNetworkList(context.Background(), only) }); err != nil {
		t.Errorf("STATUS: %v", err)
	}
	// CHECK notices a member broken behind nsnet's back.
	l.fixture("ip", "-n", "cni-c2", "link", "set", "eth0", "down")
	if err := rt.check("c2", p2); err == nil || !strings.Contains(err.Error(), "down") {
		t.Errorf("CHECK of a member whose interface is down: %v", err)
	}
	// GC with c1 valid removes c2, and only it.
	err = rt.in(func() error {
		return rt.cni.GCNetworkList(context.Background(), only, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: "c1", IfName: "eth0"}}})
	})
	if err != nil {
		t.Fatalf("GC: %v", err)
	}
	l.jsonOf(&n, "net", "inspect", "pods")
	if len(n.Members) != 1 || n.Members[0].Namespace != "cni-c1" {
		t.Errorf("after GC: %+v", n.Members)
	}
	if out := l.fixture("ip", "-n", "cni-c2", "-br", "link"); strings.Contains(out, "eth0") {
		t.Errorf("GC left c2's interface:\n%s", out)
	}
	for range 2 {
		if err := rt.del("c1", p1); err != nil {
			t.Errorf("DEL c1: %v", err)
		}
	}
	if err := rt.del("c2", p2); err != nil {
		t.Errorf("DEL of an attachment GC took: %v", err)
	}
	l.inHost("net", "rm", "pods")
	assertClean(t, l)
}

// A namespace a runtime keeps elsewhere (/proc/PID/ns/net) is attached
// through a mount of nsnet's, which DEL takes away again; a namespace that
// is gone before DEL is no error.
func TestCNIProcNamespace(t *testing.T) {
	l := newLab(t)
	rt := newCNIRuntime(t, l, cniConflist(l, "procnet", "10.91.0.0/24"))
	p := heldNamespace(t)
	if _, err := rt.add("holder", p, nil); err != nil {
		t.Fatalf("ADD by /proc path: %v", err)
	}
	names, _ := netns.List()
	attached := ""
	for _, n := range names {
		if strings.HasPrefix(n, "nsnet-cni-") {
			attached = n
		}
	}
	if attached == "" {
		t.Fatalf("no nsnet-cni- mount for the /proc namespace: %v", names)
	}
	if err := rt.del("holder", p); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if netns.Exists(attached) {
		t.Errorf("DEL left the mount %s", attached)
	}
	// Gone before DEL: the runtime's namespace was deleted first.
	c := l.container("cni-gone")
	if _, err := rt.add("gone", c, nil); err != nil {
		t.Fatal(err)
	}
	l.fixture("ip", "netns", "del", "cni-gone")
	if err := rt.del("gone", c); err != nil {
		t.Errorf("DEL after the namespace went: %v", err)
	}
	l.inHost("net", "rm", "procnet")
	assertClean(t, l)
}

// 50 ADDs at once: 50 addresses, no failure.
func TestCNIParallelAdd(t *testing.T) {
	l := newLab(t)
	rt := newCNIRuntime(t, l, cniConflist(l, "par", "10.92.0.0/24"))
	const n = 50
	paths := make([]string, n)
	for i := range paths {
		paths[i] = l.container(fmt.Sprintf("cni-p%02d", i))
	}
	var wg sync.WaitGroup
	addrs := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := rt.add(fmt.Sprintf("p%02d", i), paths[i], nil)
			if err == nil {
				addrs[i] = r.IPs[0].Address.IP.String()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Errorf("ADD %d: %v", i, errs[i])
			continue
		}
		if seen[addrs[i]] {
			t.Errorf("address %s given twice", addrs[i])
		}
		seen[addrs[i]] = true
	}
	for i := range n {
		if err := rt.del(fmt.Sprintf("p%02d", i), paths[i]); err != nil {
			t.Errorf("DEL %d: %v", i, err)
		}
	}
	l.inHost("net", "rm", "par")
	assertClean(t, l)
}

// Bad input is a CNI error with its code, and changes nothing.
func TestCNIBadInput(t *testing.T) {
	l := newLab(t)
	c, c2 := l.container("cni-bad"), l.container("cni-bad2")
	conf := func(extra string) string {
		return fmt.Sprintf(`{"cniVersion":"1.1.0","name":"bad","type":"nsnet","subnets":["10.93.0.0/24"],"stateDir":%q%s}`, l.state, extra)
	}
	plugin := func(stdin string, env ...string) (int, string) {
		cmd := exec.Command("ip", "netns", "exec", l.host, nsnetBin)
		cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "CNI_PATH=/usr/lib/cni"}, env...)
		cmd.Stdin = strings.NewReader(stdin)
		out, _ := cmd.Output()
		var e struct {
			Code int    `json:"code"`
			Msg  string `json:"msg"`
		}
		json.Unmarshal(out, &e)
		return e.Code, e.Msg
	}
	add := []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=x1", "CNI_IFNAME=eth0", "CNI_NETNS=" + c}
	if code, msg := plugin(conf(""), add...); code != 0 {
		t.Fatalf("first ADD: %d %s", code, msg)
	}
	before := l.snapshot()
	cases := []struct {
		name  string
		stdin string
		env   []string
		code  int
		want  string
	}{
		{"no CNI_NETNS", conf(""), []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=x2", "CNI_IFNAME=eth0"}, 4, "CNI_NETNS"},
		{"bad CNI_NETNS", conf(""), []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=x2", "CNI_IFNAME=eth0", "CNI_NETNS=/nonexistent"}, 4, "CNI_NETNS"},
		{"ifname taken", conf(""), []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=x2", "CNI_IFNAME=lo", "CNI_NETNS=" + c}, 4, "already has an interface lo"},
		{"unsupported version", strings.Replace(conf(""), "1.1.0", "9.9.9", 1), add, 1, "incompatible CNI versions"},
		{"contradicting config", strings.Replace(conf(""), "10.93.0.0/24", "10.94.0.0/24", 1), []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=x2", "CNI_IFNAME=eth1", "CNI_NETNS=" + c}, 7, "exists with subnets 10.93.0.0/24"},
		{"ips outside", conf(`,"runtimeConfig":{"ips":["10.99.0.5/24"]}`), []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=x2", "CNI_IFNAME=eth1", "CNI_NETNS=" + c}, 7, "outside network bad"},
		{"ips taken", conf(`,"runtimeConfig":{"ips":["10.93.0.2/24"]}`), []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=x2", "CNI_IFNAME=eth0", "CNI_NETNS=" + c2}, 7, "10.93.0.2"},
		{"bad port", conf(`,"runtimeConfig":{"portMappings":[{"hostPort":0,"containerPort":80}]}`), []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=x2", "CNI_IFNAME=eth1", "CNI_NETNS=" + c}, 7, "ports are 1 to 65535"},
		{"ADD twice", conf(""), add, 7, "already has interface eth0"},
		{"ips broadcast", conf(`,"runtimeConfig":{"ips":["10.93.0.255/24"]}`), []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=x2", "CNI_IFNAME=eth0", "CNI_NETNS=" + c2}, 7, "broadcast"},
		{"multicast mac", conf(`,"runtimeConfig":{"mac":"01:00:00:00:00:01"}`), []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=x2", "CNI_IFNAME=eth0", "CNI_NETNS=" + c2}, 7, "not a unicast Ethernet address"},
		{"relative stateDir", strings.Replace(conf(""), l.state, "relative/dir", 1), []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=x2", "CNI_IFNAME=eth0", "CNI_NETNS=" + c2}, 7, "not an absolute path"},
	}
	for _, cs := range cases {
		code, msg := plugin(cs.stdin, cs.env...)
		if code != cs.code || !strings.Contains(msg, cs.want) {
			t.Errorf("%s: code %d %q, want %d and %q", cs.name, code, msg, cs.code, cs.want)
		}
	}
	if after := l.snapshot(); after != before {
		t.Errorf("a refused call changed something:\n%s", lineDiff(before, after))
	}
	if code, msg := plugin(conf(""), "CNI_COMMAND=DEL", "CNI_CONTAINERID=x1", "CNI_IFNAME=eth0", "CNI_NETNS="+c); code != 0 {
		t.Errorf("DEL: %d %s", code, msg)
	}
	l.inHost("net", "rm", "bad")
}

// An ADD killed at several points, then the runtime's DEL (or GC), leaves
// nothing: no member, no host end, no mount of nsnet's.
func TestCNICrashDuringAdd(t *testing.T) {
	l := newLab(t)
	conf := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"crash","type":"nsnet","subnets":["10.95.0.0/24"],"stateDir":%q}`, l.state)
	proc := heldNamespace(t)
	named := l.container("cni-crash")
	plugin := func(env ...string) error {
		cmd := exec.Command("ip", "netns", "exec", l.host, nsnetBin)
		cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "CNI_PATH=/usr/lib/cni", "CNI_IFNAME=eth0"}, env...)
		cmd.Stdin = strings.NewReader(conf)
		return cmd.Run()
	}
	// The network first, so that the kills hit the attach.
	if err := plugin("CNI_COMMAND=ADD", "CNI_CONTAINERID=first", "CNI_NETNS="+named); err != nil {
		t.Fatal(err)
	}
	if err := plugin("CNI_COMMAND=DEL", "CNI_CONTAINERID=first", "CNI_NETNS="+named); err != nil {
		t.Fatal(err)
	}
	for i, at := range []string{"connect/recorded", "connect/plugged"} {
		for _, ns := range []string{named, proc} {
			id := fmt.Sprintf("k%d", i)
			if err := plugin("CNI_COMMAND=ADD", "CNI_CONTAINERID="+id, "CNI_NETNS="+ns, "NSNET_CRASH_AT="+at); err == nil {
				t.Fatalf("ADD with a crash at %s did not die", at)
			}
			verb := "CNI_COMMAND=DEL"
			if ns == proc {
				verb = "CNI_COMMAND=GC"
			}
			if err := plugin(verb, "CNI_CONTAINERID="+id, "CNI_NETNS="+ns); err != nil {
				t.Errorf("%s after a crash at %s: %v", verb, at, err)
			}
			var n network
			l.jsonOf(&n, "net", "inspect", "crash")
			names, _ := netns.List()
			for _, name := range names {
				if strings.HasPrefix(name, "nsnet-cni-") {
					t.Errorf("after a crash at %s and %s: mount %s left", at, verb, name)
				}
			}
			if len(n.Members) != 0 || len(l.nsnetLinks()) != 1 { // the bridge
				t.Errorf("after a crash at %s and %s: members %+v, host links %v", at, verb, n.Members, l.nsnetLinks())
			}
		}
	}
	l.inHost("net", "rm", "crash")
	assertClean(t, l)
}

// nsnet gc repairs a member made through CNI like any other: its veth
// deleted behind nsnet's back comes back, and CHECK passes again.
func TestCNIRepairedByGC(t *testing.T) {
	l := newLab(t)
	rt := newCNIRuntime(t, l, cniConflist(l, "fix", "10.97.0.0/24"))
	p := l.container("cni-fix")
	r, err := rt.add("fix", p, nil)
	if err != nil {
		t.Fatal(err)
	}
	hostEnd := r.Interfaces[0].Name
	l.fixture("ip", "-n", l.host, "link", "del", hostEnd)
	if err := rt.check("fix", p); err == nil {
		t.Fatalf("CHECK passed with the veth gone")
	}
	l.inHost("gc")
	if err := rt.check("fix", p); err != nil {
		t.Errorf("CHECK after nsnet gc: %v", err)
	}
	if _, err := execCommand("ip", "netns", "exec", "cni-fix", "ping", "-c1", "-W1", "10.97.0.1"); err != nil {
		t.Errorf("member to its gateway after gc: %v", err)
	}
	if err := rt.del("fix", p); err != nil {
		t.Fatal(err)
	}
	l.inHost("net", "rm", "fix")
	assertClean(t, l)
}

// A container's second network does not take its default route, and the
// second ADD's result does not claim one.
func TestCNISecondNetworkRoutes(t *testing.T) {
	l := newLab(t)
	first := newCNIRuntime(t, l, cniConflist(l, "one", "10.98.1.0/24"))
	second := newCNIRuntime(t, l, cniConflist(l, "two", "10.98.2.0/24"))
	p := l.container("cni-two")
	if _, err := first.add("two-nets", p, nil); err != nil {
		t.Fatal(err)
	}
	var r2 *current.Result
	err := second.in(func() error {
		res, err := second.cni.AddNetworkList(context.Background(), second.list, &libcni.RuntimeConf{ContainerID: "two-nets", NetNS: p, IfName: "eth1"})
		if err == nil {
			r2, err = current.NewResultFromResult(res)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(r2.Routes) != 0 {
		t.Errorf("second network's result claims routes %v; the kernel kept the first's default", r2.Routes)
	}
	if out := l.fixture("ip", "-n", "cni-two", "route", "show", "default"); !strings.Contains(out, "10.98.1.1") {
		t.Errorf("default route: %q, want the first network's", out)
	}
	second.in(func() error {
		return second.cni.DelNetworkList(context.Background(), second.list, &libcni.RuntimeConf{ContainerID: "two-nets", NetNS: p, IfName: "eth1"})
	})
	first.del("two-nets", p)
	l.inHost("net", "rm", "one")
	l.inHost("net", "rm", "two")
	assertClean(t, l)
}

// stopAgent kills the lab's agent and its BGP speakers and cluster
// keeper, those of this lab only.
func stopAgent(l *lab) {
	locks, _ := filepath.Glob(filepath.Join(l.state, "bgp", "*.lock"))
	for _, lock := range locks {
		killOwn(l, lock, "nsnet-bgp")
	}
	killOwn(l, filepath.Join(l.state, "cluster.lock"), "nsnet-cluster")
	killOwn(l, filepath.Join(l.state, "agent.pid"), "agent")
}

// killOwn kills the process whose pid the file names, if its command line
// is this lab's (it names the lab's state directory and what): the file
// outlives the process, whose pid may be another's by now.
func killOwn(l *lab, pidFile, what string) {
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 0 {
		return
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), l.state) || !strings.Contains(string(cmdline), what) {
		return
	}
	if syscall.Kill(pid, syscall.SIGKILL) != nil {
		return
	}
	for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(10 * time.Millisecond)
	}
}

// heldNamespace starts a process in a network namespace of its own, as a
// runtime keeps a container's, and returns the namespace's /proc path once
// the process has entered it; the process ends with the test.
func heldNamespace(t *testing.T) string {
	t.Helper()
	holder := exec.Command("unshare", "-n", "sleep", "60")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	p := fmt.Sprintf("/proc/%d/ns/net", holder.Process.Pid)
	self, _ := os.Readlink("/proc/self/ns/net")
	for range 200 {
		if ns, _ := os.Readlink(p); ns != "" && ns != self {
			return p
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("unshare did not enter a namespace of its own within 2 s")
	return ""
}
