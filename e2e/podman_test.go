package e2e

import (
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
)

// podman (Debian's 4.3, CNI backend) runs containers on an nsnet network
// through the plugin: they ping each other, one serves busybox httpd on a
// published port reached from the host, and `podman rm -f` leaves nothing
// of them in nsnet. podman runs in the lab's host, as root, with its
// storage under a temporary directory (vfs), runc and cgroupfs.
func TestPodman(t *testing.T) {
	l := newLab(t)
	if _, err := exec.LookPath("podman"); err != nil {
		t.Fatalf("podman is not installed (Debian: podman runc conmon golang-github-containers-common busybox-static): %v", err)
	}
	w := t.TempDir()
	for _, d := range []string{"cni", "bin", "root", "runroot", "img/bin"} {
		if err := os.MkdirAll(filepath.Join(w, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, target := range map[string]string{"nsnet": nsnetBin, "tuning": "/usr/lib/cni/tuning", "loopback": "/usr/lib/cni/loopback"} {
		if err := os.Symlink(target, filepath.Join(w, "bin", name)); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string) {
		if err := os.WriteFile(filepath.Join(w, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("containers.conf", fmt.Sprintf("[engine]\ncgroup_manager = \"cgroupfs\"\nruntime = \"runc\"\nevents_logger = \"none\"\n[network]\nnetwork_backend = \"cni\"\nnetwork_config_dir = %q\ncni_plugin_dirs = [%q]\n",
		filepath.Join(w, "cni"), filepath.Join(w, "bin")))
	// The conflist as Debian's podman writes them: 0.4.0.
	write("cni/nsnet.conflist", fmt.Sprintf(`{"cniVersion":"0.4.0","name":"nsnet","plugins":[{"type":"nsnet","network":"pm","subnets":["10.96.0.0/24"],"stateDir":%q,"capabilities":{"portMappings":true,"aliases":true}},{"type":"tuning"}]}`, l.state))
	// The image, made offline: busybox-static and a page.
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("busybox-static: %v", err)
	}
	if err := os.WriteFile(filepath.Join(w, "img/bin/busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"sh", "ping", "httpd", "sleep"} {
		os.Symlink("busybox", filepath.Join(w, "img/bin", c))
	}
	write("img/index.html", "hello from nsnet\n")
	l.fixture("tar", "-C", filepath.Join(w, "img"), "-cf", filepath.Join(w, "img.tar"), ".")
	podman := func(args ...string) (string, error) {
		// nsenter, not ip netns exec: that one mounts a fresh /sys,
		// without the cgroup mounts runc needs.
		full := append([]string{"--net=" + netns.Path(l.host), "podman", "--root", filepath.Join(w, "root"), "--runroot", filepath.Join(w, "runroot"), "--storage-driver", "vfs"}, args...)
		cmd := exec.Command("nsenter", full...)
		cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+filepath.Join(w, "containers.conf"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("podman %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return string(out), nil
	}
	t.Cleanup(func() {
		podman("rm", "-f", "-a", "-t", "0")
	})
	limits := []string{"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}
	if _, err := podman("import", filepath.Join(w, "img.tar"), "localhost/bb:latest"); err != nil {
		t.Fatal(err)
	}
	if _, err := podman(append(append([]string{"run", "-d", "--name", "web", "--network", "nsnet", "-p", "8080:80"}, limits...), "localhost/bb:latest", "/bin/httpd", "-f", "-p", "80", "-h", "/")...); err != nil {
		t.Fatal(err)
	}
	if _, err := podman(append(append([]string{"run", "-d", "--name", "client", "--network", "nsnet"}, limits...), "localhost/bb:latest", "/bin/sleep", "60")...); err != nil {
		t.Fatal(err)
	}
	var n network
	l.jsonOf(&n, "net", "inspect", "pm")
	if len(n.Members) != 2 {
		t.Fatalf("nsnet network pm: %+v", n)
	}
	out, err := podman("inspect", "-f", "{{.NetworkSettings.Networks.nsnet.IPAddress}}", "web")
	if err != nil {
		t.Fatal(err)
	}
	web := strings.TrimSpace(out)
	if !strings.Contains(l.must("net", "inspect", "pm"), web+"/24") {
		t.Errorf("podman's address for web, %q, is not an nsnet member's", web)
	}
	if out, err := podman("exec", "client", "/bin/ping", "-c1", "-W2", web); err != nil {
		t.Errorf("client to web: %v\n%s", err, out)
	}
	// The published port from the host.
	c, err := dialTCP(l.host, "127.0.0.1:8080")
	if err != nil {
		t.Errorf("published port from the host: %v", err)
	} else if !strings.Contains(c, "hello from nsnet") {
		t.Errorf("published port answered %q", c)
	}
	if _, err := podman("rm", "-f", "-t", "0", "web", "client"); err != nil {
		t.Fatal(err)
	}
	l.jsonOf(&n, "net", "inspect", "pm")
	if len(n.Members) != 0 {
		t.Errorf("members left after podman rm -f: %+v", n.Members)
	}
	if links := l.nsnetLinks(); len(links) != 1 {
		t.Errorf("host links after podman rm -f: %v (want the bridge only)", links)
	}
	l.inHost("net", "rm", "pm")
	assertClean(t, l)
}

// dialTCP sends an HTTP request from namespace ns and returns the reply.
func dialTCP(ns, addr string) (string, error) {
	return dialIn(ns, addr, 3*time.Second, func(c net.Conn) (string, error) {
		fmt.Fprintf(c, "GET /index.html HTTP/1.0\r\nHost: nsnet\r\n\r\n")
		b, err := io.ReadAll(c)
		return string(b), err
	})
}
