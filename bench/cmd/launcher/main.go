// Command launcher starts the benchmark's measured processes and times
// them. The benchmark keeps one launcher per host namespace and sends it
// one JSON request per line on stdin; the launcher runs the process, waits
// for it and answers with one JSON line on stdout.
//
// It exists because a process's peak resident set, as wait4 reports it,
// includes the resident set of the address space it had before exec: a
// child started by the (large) benchmark process would report the
// benchmark's memory, not its own. Started from this small program, a
// child reports its own peak, or the launcher's, whichever is larger; the
// report states the launcher's as the measurement floor.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

type request struct {
	Argv    []string `json:"argv"`
	Env     []string `json:"env"`
	Stdin   []byte   `json:"stdin,omitempty"`
	Timeout int64    `json:"timeout_ns"`
}

type response struct {
	Wall   int64  `json:"wall_ns"`
	MaxRSS int64  `json:"maxrss_kib"`
	Exit   int    `json:"exit"`
	Stdout []byte `json:"stdout,omitempty"`
	Stderr []byte `json:"stderr,omitempty"`
	Err    string `json:"error,omitempty"`
}

func main() {
	dec := json.NewDecoder(os.Stdin)
	enc := json.NewEncoder(os.Stdout)
	for {
		var req request
		if err := dec.Decode(&req); err != nil {
			if !errors.Is(err, io.EOF) {
				fmt.Fprintln(os.Stderr, "launcher: read request:", err)
				os.Exit(1)
			}
			return
		}
		if err := enc.Encode(run(req)); err != nil {
			fmt.Fprintln(os.Stderr, "launcher: write response:", err)
			os.Exit(1)
		}
	}
}

func run(req request) response {
	if len(req.Argv) == 0 {
		return response{Exit: -1, Err: "empty argv"}
	}
	ctx := context.Background()
	if req.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(req.Timeout))
		defer cancel()
	}
	c := exec.CommandContext(ctx, req.Argv[0], req.Argv[1:]...)
	c.Env = req.Env
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	if req.Stdin != nil {
		c.Stdin = bytes.NewReader(req.Stdin)
	}
	start := time.Now()
	err := c.Start()
	if err == nil {
		err = c.Wait()
	}
	resp := response{Wall: int64(time.Since(start)), Stdout: out.Bytes(), Stderr: errb.Bytes()}
	if c.ProcessState != nil {
		resp.Exit = c.ProcessState.ExitCode()
		if ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage); ok {
			resp.MaxRSS = ru.Maxrss
		}
	}
	if err != nil {
		resp.Err = err.Error()
		if resp.Exit == 0 {
			resp.Exit = -1
		}
	}
	return resp
}
