// Package lockfile tells whether a process holds a lock file: nsnet's
// background processes (the agent, BGP speakers, the cluster keeper) each
// hold one, exclusively, for as long as they run.
package lockfile

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// Held reports whether a process holds an exclusive flock on the file at
// path. It probes with a shared lock, which it drops at once.
func Held(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}
