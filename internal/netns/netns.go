// Package netns creates, opens, enters and removes named network namespaces,
// kept the way iproute2 keeps them: a bind mount of the namespace under
// /run/netns/NAME, so `ip netns` and nsnet see the same names.
//
// setns(2) changes one OS thread only. Every function here that enters a
// namespace does so on a locked thread and restores it before unlocking; if
// the restore fails the thread stays locked, so the Go runtime retires it
// with its goroutine instead of reusing a thread in the wrong namespace.
package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Dir is where named namespaces are mounted, as iproute2 expects.
const Dir = "/run/netns"

// MaxNameLen bounds names so that derived paths and interface aliases stay short.
const MaxNameLen = 64

// ErrNotExist reports a name with no namespace mounted under Dir.
var ErrNotExist = errors.New("no such namespace")

// ValidateName reports why name cannot name a namespace, network or link.
func ValidateName(name string) error {
	switch {
	case name == "":
		return errors.New("name is empty")
	case len(name) > MaxNameLen:
		return fmt.Errorf("name is %d characters, the limit is %d", len(name), MaxNameLen)
	case name == "." || name == "..":
		return fmt.Errorf("name %q is reserved", name)
	case strings.ContainsAny(name, "/\x00"):
		return errors.New("name contains '/'")
	}
	for _, r := range name {
		if r <= ' ' || r == 0x7f || r == 0x85 || r == 0xa0 || r == 0x2028 || r == 0x2029 {
			return errors.New("name contains whitespace or a control character")
		}
	}
	return nil
}

// Path returns where the namespace called name is mounted.
func Path(name string) string { return filepath.Join(Dir, name) }

// Exists reports whether a namespace called name is mounted under Dir.
func Exists(name string) bool {
	var st, dst unix.Stat_t
	if unix.Stat(Path(name), &st) != nil || unix.Stat(Dir, &dst) != nil {
		return false
	}
	// A bind-mounted namespace file lives on nsfs, not on the directory's
	// filesystem; a stray empty file left by a crash does not count.
	return st.Dev != dst.Dev
}

// List returns the names mounted under Dir, sorted.
func List() ([]string, error) {
	entries, err := os.ReadDir(Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", Dir, err)
	}
	var names []string
	for _, e := range entries {
		if Exists(e.Name()) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// prepareDir makes Dir a shared mount point, as iproute2 does, so that
// namespaces mounted later are seen from every mount namespace.
func prepareDir() error {
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", Dir, err)
	}
	err := unix.Mount("", Dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("make %s shared: %w", Dir, err)
	}
	// EINVAL: not a mount point yet.
	if err := unix.Mount(Dir, Dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s onto itself: %w", Dir, err)
	}
	if err := unix.Mount("", Dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", Dir, err)
	}
	return nil
}

// Create makes a new, empty network namespace and mounts it as name.
// It fails with os.ErrExist if the name is taken.
func Create(name string) error {
	return mount(name, "")
}

// Share mounts the namespace already mounted as other under a second name,
// so both names refer to the very same namespace.
func Share(name, other string) error {
	if !Exists(other) {
		return fmt.Errorf("namespace %q: %w", other, ErrNotExist)
	}
	return mount(name, Path(other))
}

// Attach mounts the namespace file at path (/proc/PID/ns/net, another
// runtime's mount) under name, as `ip netns attach` does.
func Attach(name, path string) error { return mount(name, path) }

func mount(name, source string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if err := prepareDir(); err != nil {
		return err
	}
	p := Path(name)
	f, err := os.OpenFile(p, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		if errors.Is(err, os.ErrExist) && !Exists(name) {
			// A file left by an interrupted create: take it over.
			f, err = os.OpenFile(p, os.O_RDONLY, 0)
		}
		if err != nil {
			return fmt.Errorf("create %s: %w", p, err)
		}
	}
	f.Close()
	if source != "" {
		err = unix.Mount(source, p, "none", unix.MS_BIND, "")
	} else {
		err = mountNew(p)
	}
	if err != nil {
		os.Remove(p)
		return fmt.Errorf("mount namespace %s: %w", name, err)
	}
	return nil
}

// mountNew unshares a fresh network namespace on a locked thread of its own,
// bind-mounts it at p and puts the thread back.
func mountNew(p string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer unix.Close(orig)
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		merr := unix.Mount("/proc/thread-self/ns/net", p, "none", unix.MS_BIND, "")
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it dies with this goroutine.
			errc <- fmt.Errorf("restore thread namespace: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- merr
	}()
	return <-errc
}

// Delete unmounts the namespace called name and removes its mount point.
// The namespace itself lives on while a process or another name holds it.
func Delete(name string) error {
	p := Path(name)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", p, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}

// Resolve turns a name or a path into the path of a namespace file.
func Resolve(nameOrPath string) (string, error) {
	p := nameOrPath
	if !strings.Contains(nameOrPath, "/") {
		if err := ValidateName(nameOrPath); err != nil {
			return "", fmt.Errorf("namespace %q: %w", nameOrPath, err)
		}
		p = Path(nameOrPath)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return "", fmt.Errorf("namespace %q: %w", nameOrPath, ErrNotExist)
	}
	if st.Type != unix.NSFS_MAGIC && st.Type != unix.PROC_SUPER_MAGIC {
		return "", fmt.Errorf("namespace %q: %s is not a namespace file", nameOrPath, p)
	}
	return p, nil
}

// Handle is an open namespace file descriptor.
type Handle int

// Open opens the namespace at path; an empty path means the namespace of the
// calling thread.
func Open(path string) (Handle, error) {
	if path == "" {
		path = "/proc/thread-self/ns/net"
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open namespace %s: %w", path, err)
	}
	return Handle(fd), nil
}

// Close releases the handle.
func (h Handle) Close() error { return unix.Close(int(h)) }

// PathInode is the inode of the namespace at path ("": the calling
// process's own), or 0 when there is none: what tells two paths to one
// namespace apart from two namespaces.
func PathInode(path string) uint64 {
	if path == "" {
		path = "/proc/self/ns/net"
	}
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return 0
	}
	return st.Ino
}

// Inode identifies the namespace behind the handle.
func (h Handle) Inode() (uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(h), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// Do runs fn on a thread that is inside the namespace h, then puts the
// thread back.
func Do(h Handle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(int(h), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter namespace: %w", err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("restore thread namespace: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
