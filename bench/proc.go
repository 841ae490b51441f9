package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Sample is one timed operation: one process, or the few processes a tool
// needs for one user-visible step, timed from the first start to the last
// exit.
type Sample struct {
	Wall time.Duration
	// MaxRSS is the largest peak resident set, in KiB, of the operation's
	// processes (each including the children it waited for), from wait4.
	MaxRSS int64
	Procs  int
}

// add accumulates another process of the same operation.
func (s *Sample) add(o Sample) {
	s.Wall += o.Wall
	s.MaxRSS = max(s.MaxRSS, o.MaxRSS)
	s.Procs += o.Procs
}

// basePath is the PATH every measured process gets; the environment is
// otherwise empty unless a tool needs variables of its own.
const basePath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// procTimeout bounds any single process; the largest port sweeps take the
// longest.
const procTimeout = 10 * time.Minute

// command is one process to run.
type command struct {
	argv  []string
	env   []string
	stdin []byte
}

func cmd(argv ...string) command { return command{argv: argv} }

// run starts c from the thread (so inside its namespace), waits for it and
// times it. A failure carries the command and its stderr.
func (t *nsThread) run(c command) (stdout []byte, s Sample, err error) {
	t.do(func() { stdout, s, err = runHere(c) })
	return stdout, s, err
}

// runHere runs c from the calling thread. Callers that care about the
// namespace call it through nsThread.run.
func runHere(c command) ([]byte, Sample, error) {
	ctx, cancel := context.WithTimeout(context.Background(), procTimeout)
	defer cancel()
	x := exec.CommandContext(ctx, c.argv[0], c.argv[1:]...)
	x.Env = append([]string{basePath, "LC_ALL=C"}, c.env...)
	var out, errb bytes.Buffer
	x.Stdout, x.Stderr = &out, &errb
	if c.stdin != nil {
		x.Stdin = bytes.NewReader(c.stdin)
	}
	start := time.Now()
	err := x.Start()
	if err == nil {
		err = x.Wait()
	}
	s := Sample{Wall: time.Since(start), Procs: 1}
	if x.ProcessState != nil {
		if ru, ok := x.ProcessState.SysUsage().(*syscall.Rusage); ok {
			s.MaxRSS = ru.Maxrss
		}
	}
	if err != nil {
		return out.Bytes(), s, fmt.Errorf("%s: %w: %s", describeArgv(c.argv), err, failureText(errb.Bytes(), out.Bytes()))
	}
	return out.Bytes(), s, nil
}

// background is a process left running while others are measured.
type background struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan error
}

// start starts c from the thread without waiting for it.
func (t *nsThread) start(c command) (*background, error) {
	b := &background{done: make(chan error, 1)}
	var err error
	t.do(func() {
		b.cmd = exec.Command(c.argv[0], c.argv[1:]...)
		b.cmd.Env = append([]string{basePath, "LC_ALL=C"}, c.env...)
		b.cmd.Stdout, b.cmd.Stderr = &b.out, &b.out
		err = b.cmd.Start()
	})
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", describeArgv(c.argv), err)
	}
	go func() { b.done <- b.cmd.Wait() }()
	return b, nil
}

// stop kills the process (by its pid: it is this program's own child) and
// waits for it.
func (b *background) stop() {
	b.cmd.Process.Kill()
	<-b.done
}

// launcher is a bench/cmd/launcher process living in one namespace; it
// starts and times the measured processes there (see its doc comment for
// why the benchmark does not start them itself).
type launcher struct {
	mu    sync.Mutex
	proc  *exec.Cmd
	stdin io.WriteCloser
	enc   *json.Encoder
	dec   *json.Decoder
}

// startLauncher starts a launcher from the thread, so inside its namespace.
func (t *nsThread) startLauncher(path string) (*launcher, error) {
	l := &launcher{}
	var err error
	t.do(func() {
		l.proc = exec.Command(path)
		l.proc.Env = []string{basePath, "LC_ALL=C"}
		l.proc.Stderr = os.Stderr
		var stdout io.ReadCloser
		if l.stdin, err = l.proc.StdinPipe(); err != nil {
			return
		}
		if stdout, err = l.proc.StdoutPipe(); err != nil {
			return
		}
		l.enc, l.dec = json.NewEncoder(l.stdin), json.NewDecoder(stdout)
		err = l.proc.Start()
	})
	if err != nil {
		return nil, fmt.Errorf("start launcher: %w", err)
	}
	return l, nil
}

// run has the launcher run c and returns what it saw.
func (l *launcher) run(c command) ([]byte, Sample, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	req := struct {
		Argv    []string `json:"argv"`
		Env     []string `json:"env"`
		Stdin   []byte   `json:"stdin,omitempty"`
		Timeout int64    `json:"timeout_ns"`
	}{c.argv, append([]string{basePath, "LC_ALL=C"}, c.env...), c.stdin, int64(procTimeout)}
	var resp struct {
		Wall   int64  `json:"wall_ns"`
		MaxRSS int64  `json:"maxrss_kib"`
		Exit   int    `json:"exit"`
		Stdout []byte `json:"stdout"`
		Stderr []byte `json:"stderr"`
		Err    string `json:"error"`
	}
	if err := l.enc.Encode(req); err != nil {
		return nil, Sample{}, fmt.Errorf("launcher: send request: %w", err)
	}
	if err := l.dec.Decode(&resp); err != nil {
		return nil, Sample{}, fmt.Errorf("launcher: read response: %w", err)
	}
	s := Sample{Wall: time.Duration(resp.Wall), MaxRSS: resp.MaxRSS, Procs: 1}
	if resp.Err != "" {
		return resp.Stdout, s, fmt.Errorf("%s: %s: %s", describeArgv(c.argv), resp.Err, failureText(resp.Stderr, resp.Stdout))
	}
	return resp.Stdout, s, nil
}

// close ends the launcher and waits for it.
func (l *launcher) close() {
	l.stdin.Close()
	done := make(chan struct{})
	go func() { l.proc.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		l.proc.Process.Kill()
		<-done
	}
}

// failureText picks the most useful part of a failed process's output.
func failureText(stderr, stdout []byte) string {
	msg := strings.TrimSpace(string(stderr))
	if msg == "" {
		msg = strings.TrimSpace(string(stdout))
	}
	if len(msg) > 400 {
		msg = msg[:400] + "…"
	}
	return msg
}

// describeArgv shows a command line in errors, shortened when long (a
// connect with thousands of published ports).
func describeArgv(argv []string) string {
	const keep = 8
	short := append([]string{filepath.Base(argv[0])}, argv[1:]...)
	if len(short) <= keep {
		return strings.Join(short, " ")
	}
	return fmt.Sprintf("%s … (%d more arguments)", strings.Join(short[:keep], " "), len(short)-keep)
}
