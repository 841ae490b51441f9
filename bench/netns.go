package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// nsDir is where named namespaces live, as iproute2 expects; in the
// sandbox it is a tmpfs.
const nsDir = "/run/netns"

func nsPath(name string) string { return filepath.Join(nsDir, name) }

// onLockedThread runs fn on a fresh goroutine locked to its OS thread. If
// fn reports that it left the thread in another namespace, the goroutine
// exits still locked and the Go runtime retires the thread.
func onLockedThread(fn func() (restored bool, err error)) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		restored, err := fn()
		if restored {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// createNetns makes a new network namespace, mounts it at /run/netns/name
// and, unless withLo is false, brings its lo up.
func createNetns(name string, withLo bool) error {
	p := nsPath(name)
	f, err := os.OpenFile(p, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	f.Close()
	err = onLockedThread(func() (bool, error) {
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return true, err
		}
		defer unix.Close(orig)
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return true, fmt.Errorf("unshare: %w", err)
		}
		merr := unix.Mount("/proc/thread-self/ns/net", p, "none", unix.MS_BIND, "")
		if merr == nil && withLo {
			if lo, err := netlink.LinkByName("lo"); err != nil {
				merr = err
			} else {
				merr = netlink.LinkSetUp(lo)
			}
		}
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			return false, fmt.Errorf("restore thread namespace: %w", err)
		}
		return true, merr
	})
	if err != nil {
		unix.Unmount(p, unix.MNT_DETACH)
		os.Remove(p)
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return nil
}

// deleteNetns unmounts and removes /run/netns/name; the kernel frees the
// namespace once nothing holds it.
func deleteNetns(name string) error {
	p := nsPath(name)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", p, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}

// nlHandle opens a netlink handle inside the namespace called name.
func nlHandle(name string) (*netlink.Handle, error) {
	fd, err := vnetns.GetFromPath(nsPath(name))
	if err != nil {
		return nil, fmt.Errorf("open namespace %s: %w", name, err)
	}
	defer fd.Close()
	h, err := netlink.NewHandleAt(fd)
	if err != nil {
		return nil, fmt.Errorf("netlink in namespace %s: %w", name, err)
	}
	return h, nil
}

// nsThread is a goroutine locked to an OS thread that stays inside one
// network namespace. Processes started from it are born in that namespace,
// and sockets opened on it belong to it.
type nsThread struct {
	work chan func()
}

// enterThread starts a thread inside the namespace called name.
func enterThread(name string) (*nsThread, error) {
	t := &nsThread{work: make(chan func())}
	errc := make(chan error, 1)
	go func() {
		// The thread never leaves the namespace: it stays locked and the
		// runtime retires it when this goroutine returns.
		runtime.LockOSThread()
		fd, err := unix.Open(nsPath(name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open namespace %s: %w", name, err)
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", name, err)
			return
		}
		errc <- nil
		for f := range t.work {
			f()
		}
	}()
	if err := <-errc; err != nil {
		return nil, err
	}
	return t, nil
}

// do runs fn on the thread and waits for it.
func (t *nsThread) do(fn func()) {
	done := make(chan struct{})
	t.work <- func() { fn(); close(done) }
	<-done
}

// stop ends the thread.
func (t *nsThread) stop() { close(t.work) }
