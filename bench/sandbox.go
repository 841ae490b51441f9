package bench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// sandboxEnv marks the re-executed process that lives in the sandbox;
// outerEnv carries the namespaces of the process that started it.
const (
	sandboxEnv = "NSBENCH_SANDBOX"
	outerEnv   = "NSBENCH_OUTER_NAMESPACES"
)

// sandboxReady is set once PrepareSandbox has succeeded in this process.
var sandboxReady bool

// namespaceIDs identifies the calling thread's network and mount
// namespaces.
func namespaceIDs() (string, error) {
	var ids []string
	for _, ns := range []string{"net", "mnt"} {
		var st unix.Stat_t
		if err := unix.Stat("/proc/thread-self/ns/"+ns, &st); err != nil {
			return "", fmt.Errorf("sandbox: identify %s namespace: %w", ns, err)
		}
		ids = append(ids, fmt.Sprintf("%s:%d:%d", ns, st.Dev, st.Ino))
	}
	return strings.Join(ids, ","), nil
}

// InSandbox reports whether this process is the sandboxed copy started by
// Reexec.
func InSandbox() bool { return os.Getenv(sandboxEnv) == "1" }

// Reexec runs this program again, with the same arguments and extra
// environment variables, in new network, mount and PID namespaces, and
// returns its exit status. The child must call
// PrepareSandbox before it does anything else.
func Reexec(extraEnv ...string) (int, error) {
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	outer, err := namespaceIDs()
	if err != nil {
		return 1, err
	}
	cmd.Env = append(append(os.Environ(), extraEnv...), sandboxEnv+"=1", outerEnv+"="+outer)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// A PID namespace of its own: when the sandboxed process exits,
		// the kernel kills whatever it left running (nsnet's DNS agent,
		// say), and nothing keeps its namespaces alive.
		Cloneflags: unix.CLONE_NEWNET | unix.CLONE_NEWNS | unix.CLONE_NEWPID,
		Pdeathsig:  syscall.SIGKILL,
	}
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 1, fmt.Errorf("re-execute in a private network and mount namespace: %w", err)
	}
	return 0, nil
}

// PrepareSandbox checks that the process is in network and mount namespaces
// of its own (not the machine's), makes every mount private, mounts /proc
// for its PID namespace, puts a tmpfs on /run, /run/netns and /etc/netns,
// and brings lo up. Nothing done after
// it is visible outside, and all of it vanishes when the process exits.
func PrepareSandbox() error {
	outer := os.Getenv(outerEnv)
	if !InSandbox() || outer == "" {
		return errors.New("sandbox: refusing to run: this process was not started by Reexec")
	}
	own, err := namespaceIDs()
	if err != nil {
		return err
	}
	outerIDs, ownIDs := strings.Split(outer, ","), strings.Split(own, ",")
	if len(outerIDs) != len(ownIDs) {
		return fmt.Errorf("sandbox: malformed %s %q", outerEnv, outer)
	}
	for i := range ownIDs {
		if ownIDs[i] == outerIDs[i] {
			return fmt.Errorf("sandbox: refusing to run: still in the namespace of the process that started it (%s)", ownIDs[i])
		}
	}
	// Where pid 1's namespaces can be read, they must differ too.
	for _, ns := range []string{"net", "mnt"} {
		if same, err := sameNamespace("/proc/self/ns/"+ns, "/proc/1/ns/"+ns); err == nil && same {
			return fmt.Errorf("sandbox: refusing to run: this process shares the %s namespace of pid 1", ns)
		}
	}
	if err := unix.Mount("", "/", "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("sandbox: make mounts private: %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("sandbox: mount /proc for the new PID namespace: %w", err)
	}
	if err := mountTmpfs("/run"); err != nil {
		return err
	}
	if err := os.MkdirAll(nsDir, 0o755); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	if err := mountTmpfs(nsDir); err != nil {
		return err
	}
	// /etc/netns exists on machines with iproute2's netns support; if it
	// does not, nothing here writes to it, and creating it would change the
	// machine's file system.
	if fi, err := os.Stat("/etc/netns"); err == nil && fi.IsDir() {
		if err := mountTmpfs("/etc/netns"); err != nil {
			return err
		}
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("sandbox: find lo: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("sandbox: bring lo up: %w", err)
	}
	sandboxReady = true
	return nil
}

func mountTmpfs(dir string) error {
	if err := unix.Mount("nsbench", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return fmt.Errorf("sandbox: tmpfs on %s: %w", dir, err)
	}
	return nil
}

func sameNamespace(a, b string) (bool, error) {
	var sa, sb unix.Stat_t
	if err := unix.Stat(a, &sa); err != nil {
		return false, fmt.Errorf("stat %s: %w", a, err)
	}
	if err := unix.Stat(b, &sb); err != nil {
		return false, fmt.Errorf("stat %s: %w", b, err)
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino, nil
}
