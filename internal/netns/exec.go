package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// EtcDir holds per-namespace files that Exec mounts over /etc, as
// `ip netns exec` does: /etc/netns/NAME/resolv.conf replaces /etc/resolv.conf.
const EtcDir = "/etc/netns"

// Exec replaces the calling process with argv running inside the namespace
// called name, in a mount namespace of its own where /sys shows that
// namespace's devices and /etc/netns/NAME/* is mounted over /etc. It returns
// only on error.
func Exec(name string, argv []string) error {
	if !Exists(name) {
		return fmt.Errorf("namespace %q: %w", name, ErrNotExist)
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return fmt.Errorf("exec %s: %w", argv[0], err)
	}
	fd, err := unix.Open(Path(name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open namespace %q: %w", name, err)
	}
	// This thread is about to become the whole process; it never goes back.
	runtime.LockOSThread()
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("enter namespace %q: %w", name, err)
	}
	unix.Close(fd)
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("new mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "none", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make / a slave mount: %w", err)
	}
	if err := remountSys(); err != nil {
		fmt.Fprintf(os.Stderr, "nsnet: warning: /sys still shows the old namespace: %v\n", err)
	}
	if err := bindEtc(name); err != nil {
		return err
	}
	return syscall.Exec(path, argv, os.Environ())
}

func remountSys() error {
	flags := uintptr(0)
	var st unix.Statfs_t
	if unix.Statfs("/sys", &st) == nil && st.Flags&unix.ST_RDONLY != 0 {
		flags = unix.MS_RDONLY
	}
	if err := unix.Unmount("/sys", unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return err
	}
	return unix.Mount("sysfs", "/sys", "sysfs", flags, "")
}

func bindEtc(name string) error {
	dir := filepath.Join(EtcDir, name)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	for _, e := range entries {
		src, dst := filepath.Join(dir, e.Name()), filepath.Join("/etc", e.Name())
		if _, err := os.Stat(dst); err != nil {
			// As ip netns exec: only existing files can be covered.
			fmt.Fprintf(os.Stderr, "nsnet: warning: %s has no %s to cover\n", dst, src)
			continue
		}
		if err := unix.Mount(src, dst, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s over %s: %w", src, dst, err)
		}
	}
	return nil
}

// StartIn starts cmd inside the namespace at path ("": the caller's own):
// a child is born in the namespace of the thread that forks it, and Do
// forks from a thread inside path.
func StartIn(path string, cmd *exec.Cmd) error {
	if path == "" {
		return cmd.Start()
	}
	h, err := Open(path)
	if err != nil {
		return err
	}
	defer h.Close()
	return Do(h, cmd.Start)
}
