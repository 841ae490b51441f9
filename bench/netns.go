package bench

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/nsnet/nsnet/internal/netns"
)

// createNetns makes a new named network namespace (under netns.Dir, a
// tmpfs in the sandbox) and, unless withLo is false, brings its lo up.
func createNetns(name string, withLo bool) error {
	if err := netns.Create(name); err != nil {
		return err
	}
	if !withLo {
		return nil
	}
	h, err := nlHandle(name)
	if err == nil {
		defer h.Close()
		var lo netlink.Link
		if lo, err = h.LinkByName("lo"); err == nil {
			err = h.LinkSetUp(lo)
		}
	}
	if err != nil {
		netns.Delete(name)
		return fmt.Errorf("namespace %s: lo up: %w", name, err)
	}
	return nil
}

// nlHandle opens a netlink handle inside the namespace called name.
func nlHandle(name string) (*netlink.Handle, error) {
	fd, err := netns.Open(netns.Path(name))
	if err != nil {
		return nil, err
	}
	defer fd.Close()
	h, err := netlink.NewHandleAt(vnetns.NsHandle(fd))
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
		fd, err := netns.Open(netns.Path(name))
		if err != nil {
			errc <- err
			return
		}
		err = unix.Setns(int(fd), unix.CLONE_NEWNET)
		fd.Close()
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
