// Package nstest runs a package's tests inside a private network namespace
// and a private mount namespace, so that nothing a test creates (links,
// routes, nftables tables, named namespaces under /run/netns, files under
// /etc/netns) can reach the machine's own network, and everything vanishes
// when the test binary exits.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { nstest.Main(m) }
//
// A program that is not a test gets the same namespaces from Reexec and
// Enter.
package nstest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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
func Main(m *testing.M) { MainWithTmpfs(m) }

// Cleanup, when set before Main, runs after the tests and before the
// process exits (Main exits, so a deferred call would not run): e2e
// removes the nsnet binary it built.
var Cleanup func()

// exit runs Cleanup, then exits with code.
func exit(code int) {
	if Cleanup != nil {
		Cleanup()
	}
	os.Exit(code)
}

// MainWithTmpfs is Main for tests that also want a fresh tmpfs on dirs
// (bench keeps every tool's state under /run, for one). Each is mounted
// before /run/netns and /etc/netns, so a parent of those may be among them.
func MainWithTmpfs(m *testing.M, dirs ...string) {
	if !Isolated() {
		if os.Geteuid() != 0 {
			if CI() {
				fmt.Fprintln(os.Stderr, "FAIL: privileged tests need root under CI=true")
				os.Exit(1)
			}
			exit(m.Run())
		}
		code, err := Reexec()
		if err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: re-execute tests in private namespaces: %v\n", err)
			exit(1)
		}
		exit(code)
	}
	if err := setup(dirs...); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: prepare private namespaces: %v\n", err)
		os.Exit(1)
	}
	exit(m.Run())
}

// setup mounts a fresh tmpfs on each of dirs, then on /run/netns and
// /etc/netns, in a process already in namespaces of its own.
func setup(dirs ...string) error {
	if err := unix.Mount("", "/", "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	// /proc must show this PID namespace, or /proc/PID paths name others.
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	// Where /etc/resolv.conf leads (/run/..., say), found before a tmpfs
	// below hides it.
	resolvConf := "/etc/resolv.conf"
	resolvTarget, resolvErr := filepath.EvalSymlinks(resolvConf)
	for _, dir := range append(slices.Clone(dirs), "/run/netns", "/etc/netns") {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755"); err != nil {
			return fmt.Errorf("tmpfs on %s: %w", dir, err)
		}
	}
	if resolvErr == nil {
		if _, err := os.Stat(resolvTarget); errors.Is(err, os.ErrNotExist) {
			// It was there a moment ago, so one of the tmpfs mounts above
			// hides it: this file is made on that tmpfs, not the machine's.
			if err := os.MkdirAll(filepath.Dir(resolvTarget), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(resolvTarget, nil, 0o644); err != nil {
				return err
			}
		}
		resolvConf = resolvTarget
	}
	// Resolvers started by tests forward unknown names to the host's
	// resolv.conf; make that a documentation address, never the machine's.
	// Reexec made the file; a copy started some other way (by hand, with
	// NSNET_TEST_ISOLATED=1) makes its own.
	rc := os.Getenv(resolvEnv)
	if rc == "" {
		f, err := os.CreateTemp("", "nstest-resolv-*.conf")
		if err != nil {
			return err
		}
		fmt.Fprintln(f, "nameserver 192.0.2.53")
		f.Close()
		rc = f.Name()
	}
	if err := unix.Mount(rc, resolvConf, "none", unix.MS_BIND, ""); err != nil {
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
