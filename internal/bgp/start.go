package bgp

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

// Program is the speaker's program, installed beside nsnet.
const Program = "nsnet-bgp"

// Exe finds the speaker's program: beside nsnetExe, else on $PATH.
func Exe(nsnetExe string) (string, error) {
	p := filepath.Join(filepath.Dir(nsnetExe), Program)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	if p, err := exec.LookPath(Program); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("bgp: %s is not beside %s nor on $PATH; install it (README: Build and install)", Program, nsnetExe)
}

// Start starts host's speaker unless one runs: exe (the nsnet-bgp
// program) inside host's namespace.
func Start(stateDir, exe, host string) error {
	if err := os.MkdirAll(filepath.Join(stateDir, dirName), 0o700); err != nil {
		return fmt.Errorf("bgp: %w", err)
	}
	if Running(stateDir, host) {
		return nil
	}
	logf, err := os.OpenFile(File(stateDir, host, ".log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("bgp speaker log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(exe, "--state-dir", stateDir, "--host", host)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if host == "" {
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start bgp speaker: %w", err)
		}
		return cmd.Process.Release()
	}
	// A child is born in the namespace of the thread that forks it: fork
	// from a thread that entered host's, on a goroutine of its own. The
	// thread goes back before it is unlocked; if it cannot, it stays
	// locked and dies with the goroutine, as Go does with such threads.
	fd, err := unix.Open(host, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bgp speaker: open host namespace: %w", err)
	}
	defer unix.Close(fd)
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
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter host namespace %s: %w", host, err)
			return
		}
		serr := cmd.Start()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(serr, fmt.Errorf("restore thread namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- serr
	}()
	if err := <-errc; err != nil {
		return fmt.Errorf("start bgp speaker: %w", err)
	}
	return cmd.Process.Release()
}
