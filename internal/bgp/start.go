package bgp

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/nsnet/nsnet/internal/netns"
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
	if started(stateDir, host) || Running(stateDir, host) {
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
	if err := netns.StartIn(host, cmd); err != nil {
		return fmt.Errorf("start bgp speaker: %w", err)
	}
	// The caller (the agent) reaps the speaker when it exits, and starts
	// no second one while this one lives.
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	starting[key(stateDir, host)] = done
	return nil
}

// starting holds, per speaker this process started, a channel closed
// when it exited: a speaker takes its lock a moment after it starts, and
// until then Running cannot tell that it runs. Only the agent's one
// goroutine starts speakers.
var starting = map[string]chan struct{}{}

func key(stateDir, host string) string { return stateDir + "\x00" + host }

// started reports whether a speaker this process started still lives.
func started(stateDir, host string) bool {
	done, ok := starting[key(stateDir, host)]
	if !ok {
		return false
	}
	select {
	case <-done:
		delete(starting, key(stateDir, host))
		return false
	default:
		return true
	}
}
