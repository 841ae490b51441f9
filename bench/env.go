package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Packages are the Debian packages the benchmark drives (.ci/run installs
// them). iptables is there because both the CNI plugins and netavark 1.4
// program NAT through it.
var Packages = []string{"bird2", "etcd-server", "containernetworking-plugins", "netavark", "iperf3", "nftables", "iproute2", "iptables", "procps"}

// Binaries are the programs the benchmark runs.
type Binaries struct {
	NSNet    string // built from this repository
	Floor    string // built from bench/cmd/floor
	Launcher string // built from bench/cmd/launcher
	BGP      string // nsnet-bgp, built beside NSNet (the agent looks there)
	CNIDir   string // directory holding the CNI plugins
	Netavark string
	IPerf3   string
	IP       string
	NFT      string
	IPTables string
	Sysctl   string
	Bird     string // BIRD 2, the BGP section's peer
	Etcd     string // the cluster section's etcd
	Cluster  string // nsnet-cluster, built beside NSNet
}

var (
	cniDirs       = []string{"/usr/lib/cni", "/usr/libexec/cni", "/opt/cni/bin"}
	netavarkPaths = []string{"/usr/lib/podman/netavark", "/usr/libexec/podman/netavark"}
)

// findSystem locates the tools that come from Debian's packages and
// returns the packages whose tools are missing.
func findSystem(b *Binaries) (missing []string) {
	b.CNIDir = ""
	for _, d := range cniDirs {
		if isExec(filepath.Join(d, "bridge")) && isExec(filepath.Join(d, "ptp")) &&
			isExec(filepath.Join(d, "host-local")) && isExec(filepath.Join(d, "portmap")) {
			b.CNIDir = d
			break
		}
	}
	if b.CNIDir == "" {
		missing = append(missing, "containernetworking-plugins")
	}
	b.Netavark = firstExec(netavarkPaths...)
	if b.Netavark == "" {
		if p, err := exec.LookPath("netavark"); err == nil {
			b.Netavark = p
		} else {
			missing = append(missing, "netavark")
		}
	}
	for _, x := range []struct {
		dst       *string
		name, pkg string
	}{
		{&b.IPerf3, "iperf3", "iperf3"}, {&b.IP, "ip", "iproute2"}, {&b.NFT, "nft", "nftables"},
		{&b.IPTables, "iptables", "iptables"}, {&b.Sysctl, "sysctl", "procps"}, {&b.Bird, "bird", "bird2"}, {&b.Etcd, "etcd", "etcd-server"},
	} {
		*x.dst = firstExec("/usr/sbin/"+x.name, "/sbin/"+x.name, "/usr/bin/"+x.name, "/bin/"+x.name)
		if *x.dst == "" {
			missing = append(missing, x.pkg)
		}
	}
	return missing
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

func firstExec(paths ...string) string {
	for _, p := range paths {
		if isExec(p) {
			return p
		}
	}
	return ""
}

// MissingPackages lists the Debian packages whose programs are not
// installed. Nothing in this package installs them: .ci/run does, and
// cmd/nsbench does when asked to (-install).
func MissingPackages() []string {
	var b Binaries
	return findSystem(&b)
}

// ModuleRoot finds the nsnet module's root from the working directory.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the nsnet module (go env GOMOD is empty)")
	}
	return filepath.Dir(mod), nil
}

// Build compiles nsnet, the floor program and the launcher from the module
// at root into dir and fills in their paths; a path already set is kept
// (a prebuilt nsnet, say).
func Build(root, dir string, b *Binaries) error {
	for _, x := range []struct {
		dst  *string
		name string
		pkg  string
	}{{&b.NSNet, "nsnet", "./cmd/nsnet"}, {&b.Floor, "floor", "./bench/cmd/floor"}, {&b.Launcher, "launcher", "./bench/cmd/launcher"}, {&b.BGP, "nsnet-bgp", "./cmd/nsnet-bgp"}, {&b.Cluster, "nsnet-cluster", "./cmd/nsnet-cluster"}} {
		if *x.dst != "" {
			continue
		}
		out := filepath.Join(dir, x.name)
		c := exec.Command("go", "build", "-o", out, x.pkg)
		c.Dir = root
		if msg, err := c.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", x.pkg, err, msg)
		}
		*x.dst = out
	}
	return nil
}

// BuildRevision compiles nsnet as it was at a git revision of the
// repository at root (from `git archive`, so the work tree is not touched)
// into dir/nsnet.
func BuildRevision(root, rev, dir string) (string, error) {
	src, err := os.MkdirTemp("", "nsbench-src-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(src)
	archive := exec.Command("git", "-C", root, "archive", "--format=tar", rev)
	untar := exec.Command("tar", "-x", "-C", src)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return "", err
	}
	untar.Stdin = pipe
	var aerr, terr bytes.Buffer
	archive.Stderr, untar.Stderr = &aerr, &terr
	if err := untar.Start(); err != nil {
		return "", fmt.Errorf("tar: %w", err)
	}
	if err := archive.Run(); err != nil {
		untar.Wait()
		return "", fmt.Errorf("git archive %s: %w: %s", rev, err, bytes.TrimSpace(aerr.Bytes()))
	}
	if err := untar.Wait(); err != nil {
		return "", fmt.Errorf("unpack %s: %w: %s", rev, err, bytes.TrimSpace(terr.Bytes()))
	}
	out := filepath.Join(dir, "nsnet")
	c := exec.Command("go", "build", "-o", out, "./cmd/nsnet")
	c.Dir = src
	if msg, err := c.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/nsnet at %s: %w\n%s", rev, err, msg)
	}
	return out, nil
}

// Machine describes where the numbers come from.
type Machine struct {
	CPU      string `json:"cpu"`
	Cores    int    `json:"cores"`
	MemoryGB string `json:"memory"`
	Kernel   string `json:"kernel"`
	OS       string `json:"os"`
}

func describeMachine() Machine {
	m := Machine{Cores: runtime.NumCPU()}
	m.CPU = firstField("/proc/cpuinfo", "model name")
	if kb := firstField("/proc/meminfo", "MemTotal"); kb != "" {
		var n int64
		fmt.Sscanf(kb, "%d", &n)
		m.MemoryGB = fmt.Sprintf("%.1f GiB", float64(n)/(1<<20))
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:]) + " " + unix.ByteSliceToString(u.Machine[:])
	}
	if f, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(f), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	return m
}

// firstField returns the value of the first "key: value" line in a /proc
// file.
func firstField(file, key string) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// versions reports the version of everything measured; rev is the git
// revision nsnet was built from, or "" for the work tree.
func versions(b *Binaries, root, rev string) map[string]string {
	v := map[string]string{"go": runtime.Version()}
	git := func(args ...string) string {
		out, err := exec.Command("git", append([]string{"-C", root}, args...)...).Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(out))
	}
	if rev != "" {
		v["nsnet"] = git("rev-parse", "--short=12", rev+"^{commit}")
	} else if c := git("rev-parse", "--short=12", "HEAD"); c != "" {
		if git("status", "--porcelain", "--untracked-files=no") != "" {
			c += " with uncommitted changes"
		}
		v["nsnet"] = c
	}
	for pkg, key := range map[string]string{
		"containernetworking-plugins": "cni-plugins", "netavark": "netavark", "iperf3": "iperf3",
		"nftables": "nftables", "iproute2": "iproute2", "iptables": "iptables",
	} {
		out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", pkg).Output()
		if err == nil {
			v[key] = string(bytes.TrimSpace(out))
		}
	}
	if out, err := exec.Command(b.IPTables, "--version").Output(); err == nil {
		v["iptables"] = strings.TrimSpace(string(out))
	}
	return v
}
