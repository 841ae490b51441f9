// Package nstest runs a package's tests inside a private network namespace
// and a private mount namespace, so that nothing a test creates (links,
// routes, nftables tables, named namespaces under /run/netns, files under
// /etc/netns) can reach the machine's own network, and everything vanishes
// when the test binary exits.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { nstest.Main(m) }
package nstest

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const isolatedEnv = "NSNET_TEST_ISOLATED"

// Isolated reports whether this process runs in the private namespaces.
func Isolated() bool { return os.Getenv(isolatedEnv) == "1" }

// CI reports whether the tests run under CI, where skipping a privileged
// test is a failure.
func CI() bool { return os.Getenv("CI") == "true" }

// Main re-executes the test binary inside fresh namespaces, then runs the
// tests there. Without root it runs them where they are; Require skips the
// privileged ones (or fails them under CI).
func Main(m *testing.M) {
	if !Isolated() {
		if os.Geteuid() != 0 {
			if CI() {
				fmt.Fprintln(os.Stderr, "FAIL: privileged tests need root under CI=true")
				os.Exit(1)
			}
			os.Exit(m.Run())
		}
		cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.Env = append(os.Environ(), isolatedEnv+"=1")
		// A PID namespace of its own makes the test binary its init: when
		// it exits, the kernel ends every process it left behind, such as
		// nsnet's DNS agents of a test that timed out.
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNET | unix.CLONE_NEWNS | unix.CLONE_NEWPID, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Run(); err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				os.Exit(ee.ExitCode())
			}
			fmt.Fprintf(os.Stderr, "FAIL: re-execute tests in private namespaces: %v\n", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if err := setup(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: prepare private namespaces: %v\n", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func setup() error {
	if err := unix.Mount("", "/", "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	// /proc must show this PID namespace, or /proc/PID paths name others.
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	for _, dir := range []string{"/run/netns", "/etc/netns"} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755"); err != nil {
			return fmt.Errorf("tmpfs on %s: %w", dir, err)
		}
	}
	// Resolvers started by tests forward unknown names to the host's
	// resolv.conf; make that a documentation address, never the machine's.
	rc, err := os.CreateTemp("", "nstest-resolv-*.conf")
	if err != nil {
		return err
	}
	fmt.Fprintln(rc, "nameserver 192.0.2.53")
	rc.Close()
	if err := unix.Mount(rc.Name(), "/etc/resolv.conf", "none", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind a test resolv.conf: %w", err)
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	return netlink.LinkSetUp(lo)
}

// Require skips a test that needs the private namespaces when they are not
// there, and fails it instead under CI.
func Require(t testing.TB) {
	t.Helper()
	if Isolated() {
		return
	}
	if CI() {
		t.Fatal("privileged test cannot run: not root (CI=true forbids skipping)")
	}
	t.Skip("needs root: run the tests as root (they isolate themselves in private namespaces)")
}
