package nstest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// outerEnv carries, into the copy Reexec starts, the namespaces of the
// process that started it, so Enter can prove it left them.
const outerEnv = "NSNET_TEST_OUTER_NAMESPACES"

// resolvEnv names, in the copy, the resolv.conf Reexec made for it.
const resolvEnv = "NSNET_TEST_RESOLV_CONF"

// Reexec runs this program again, with the same arguments and its
// environment plus extraEnv, in fresh network, mount and PID namespaces,
// and returns the copy's exit status. In the copy Isolated reports true; a
// test binary's copy is set up by Main, any other program's must call Enter
// before it does anything else (bench's cmd/nsbench does).
func Reexec(extraEnv ...string) (int, error) {
	outer, err := namespaceIDs()
	if err != nil {
		return 1, err
	}
	// The copy's resolv.conf names a documentation address. The file is
	// made here, in the starter, which removes it when the copy is done.
	rc, err := os.CreateTemp("", "nstest-resolv-*.conf")
	if err != nil {
		return 1, err
	}
	defer os.Remove(rc.Name())
	fmt.Fprintln(rc, "nameserver 192.0.2.53")
	if err := rc.Close(); err != nil {
		return 1, err
	}
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(append(os.Environ(), extraEnv...), isolatedEnv+"=1", outerEnv+"="+outer, resolvEnv+"="+rc.Name())
	// A PID namespace of its own makes the copy its init: when it exits,
	// the kernel ends every process it left behind, such as nsnet's DNS
	// agents of a test that timed out.
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNET | unix.CLONE_NEWNS | unix.CLONE_NEWPID, Pdeathsig: syscall.SIGKILL}
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 1, err
	}
	return 0, nil
}

// Enter prepares the private namespaces in a program's copy started by
// Reexec, as Main does for tests: every mount private, /proc for the new
// PID namespace, a fresh tmpfs on each of dirs and then on /run/netns and
// /etc/netns, a resolv.conf naming a documentation address, lo up. Nothing
// done after it is visible outside, and all of it vanishes when the
// process exits. It refuses to run in a process that Reexec did not start
// or that still shares its starter's network or mount namespace.
func Enter(dirs ...string) error {
	outer := os.Getenv(outerEnv)
	if !Isolated() || outer == "" {
		return errors.New("refusing to prepare private namespaces: this process was not started by nstest.Reexec")
	}
	own, err := namespaceIDs()
	if err != nil {
		return err
	}
	outerIDs, ownIDs := strings.Split(outer, ","), strings.Split(own, ",")
	if len(outerIDs) != len(ownIDs) {
		return fmt.Errorf("malformed %s %q", outerEnv, outer)
	}
	for i := range ownIDs {
		if ownIDs[i] == outerIDs[i] {
			return fmt.Errorf("refusing to prepare private namespaces: still in the starter's namespace (%s)", ownIDs[i])
		}
	}
	// Before /proc is mounted again, /proc/1 is the machine's init; where
	// its namespaces can be read, they must differ too.
	for _, ns := range []string{"net", "mnt"} {
		var self, init unix.Stat_t
		if unix.Stat("/proc/self/ns/"+ns, &self) == nil && unix.Stat("/proc/1/ns/"+ns, &init) == nil &&
			self.Dev == init.Dev && self.Ino == init.Ino {
			return fmt.Errorf("refusing to prepare private namespaces: this process shares the %s namespace of pid 1", ns)
		}
	}
	if err := setup(dirs...); err != nil {
		return fmt.Errorf("prepare private namespaces: %w", err)
	}
	return nil
}

// namespaceIDs identifies the calling thread's network and mount
// namespaces.
func namespaceIDs() (string, error) {
	var ids []string
	for _, ns := range []string{"net", "mnt"} {
		var st unix.Stat_t
		if err := unix.Stat("/proc/thread-self/ns/"+ns, &st); err != nil {
			return "", fmt.Errorf("identify the %s namespace: %w", ns, err)
		}
		ids = append(ids, fmt.Sprintf("%s:%d:%d", ns, st.Dev, st.Ino))
	}
	return strings.Join(ids, ","), nil
}
