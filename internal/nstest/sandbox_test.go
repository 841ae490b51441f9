package nstest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The package's own tests run in the sandbox bench uses: Main's, plus a
// tmpfs on /run.
func TestMain(m *testing.M) { MainWithTmpfs(m, "/run") }

func TestSandboxMounts(t *testing.T) {
	Require(t)
	for _, dir := range []string{"/run", "/run/netns", "/etc/netns"} {
		var fs unix.Statfs_t
		if err := unix.Statfs(dir, &fs); err != nil {
			t.Fatal(err)
		}
		var st, parent unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil {
			t.Fatal(err)
		}
		if err := unix.Stat(filepath.Dir(dir), &parent); err != nil {
			t.Fatal(err)
		}
		if fs.Type != unix.TMPFS_MAGIC || st.Dev == parent.Dev {
			t.Errorf("%s is not a tmpfs of its own (type %#x, device %d, parent's %d)", dir, fs.Type, st.Dev, parent.Dev)
		}
	}
	// Fresh: /run holds only /run/netns and where resolv.conf leads, if
	// that is under /run.
	fresh := map[string][]string{"/run": {"netns"}, "/run/netns": nil, "/etc/netns": nil}
	if target, err := filepath.EvalSymlinks("/etc/resolv.conf"); err == nil {
		if rest, ok := strings.CutPrefix(target, "/run/"); ok {
			fresh["/run"] = append(fresh["/run"], strings.Split(rest, "/")[0])
		}
	}
	for dir, want := range fresh {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if !slices.Contains(want, e.Name()) {
				t.Errorf("%s is not a fresh tmpfs: it holds %s", dir, e.Name())
			}
		}
	}
	rc, err := os.ReadFile("/etc/resolv.conf")
	if err != nil || strings.TrimSpace(string(rc)) != "nameserver 192.0.2.53" {
		t.Errorf("/etc/resolv.conf is %q (%v), want only the documentation nameserver", rc, err)
	}
}

func TestEnterRefuses(t *testing.T) {
	t.Setenv(isolatedEnv, "")
	if err := Enter(); err == nil || !strings.Contains(err.Error(), "not started by nstest.Reexec") {
		t.Errorf("Enter outside a copy Reexec started: %v", err)
	}
	own, err := namespaceIDs()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(isolatedEnv, "1")
	t.Setenv(outerEnv, own)
	if err := Enter(); err == nil || !strings.Contains(err.Error(), "still in the starter's namespace") {
		t.Errorf("Enter in its starter's namespaces: %v", err)
	}
}
