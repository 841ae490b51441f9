//go:build nsnetcrash

// Package crash lets tests kill an nsnet process with SIGKILL at a named
// point of an operation, to prove that whatever it leaves half done is
// finished or rolled back by the next command. Points do something only in
// binaries built with the nsnetcrash tag (e2e builds its nsnet so); in the
// product they compile to nothing.
package crash

import (
	"os"
	"syscall"
)

// Env names the point at which the process kills itself, for example
// "connect/veth-created".
const Env = "NSNET_CRASH_AT"

var at = os.Getenv(Env)

// Point kills the process if it is the point named by Env.
func Point(name string) {
	if at != "" && at == name {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
}
