package e2e

import (
	"slices"
	"strings"
	"testing"
)

// After a reboot (the same state directory, a fresh host namespace, every
// namespace gone), nsnet restore rebuilds what the store records: the
// namespaces nsnet made, its networks with their members at the same
// addresses, published ports, DNS, TAPs and links; memberships of
// namespaces nsnet did not make are removed (issue 10, item 14).
func TestRestoreAfterReboot(t *testing.T) {
	l := newLab(t)
	a, b := l.ns("a"), l.ns("b")
	theirs := strings.TrimSuffix(l.host, "-host") + "-theirs"
	l.fixture("ip", "netns", "add", theirs)
	l.names = append(l.names, theirs)
	l.must("net", "create", "web", "--subnet", "10.0.64.0/24")
	l.must("net", "create", "rt", "--driver", "routed", "--subnet", "10.0.65.0/24")
	l.must("net", "connect", "web", a, "-p", "8080:80")
	l.must("net", "connect", "web", b)
	l.must("net", "connect", "rt", b)
	l.must("net", "connect", "web", theirs)
	l.must("link", "create", a, b, "--subnet", "10.0.66.0/30")
	l.must("tap", "create", "tap0", "--net", "web")
	aIP, bIP, bRouted := l.addrOf("web", a, false), l.addrOf("web", b, false), l.addrOf("rt", b, false)

	// The reboot: every process and namespace is gone, the host is new.
	killAgent(t, l)
	for _, ns := range []string{a, b, theirs, l.host} {
		l.fixture("ip", "netns", "del", ns)
	}
	l.fixture("ip", "netns", "add", l.host)
	l.fixture("ip", "-n", l.host, "link", "set", "lo", "up")

	out := l.must("restore")
	for _, want := range []string{
		"made namespace " + a + " again",
		"adopted host namespace",
		"removed membership of vanished namespace " + theirs + " in network web",
		"made TAP tap0 of network web again",
		"made link " + a + "-" + b + " again",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("restore said:\n%s\nwant a line with %q", out, want)
		}
	}
	if got := l.addrOf("web", a, false); got != aIP {
		t.Errorf("a's address after restore: %s, was %s", got, aIP)
	}
	l.mustPing(a, bIP)
	l.mustPing(b, bRouted)
	l.mustPing(b, "169.254.1.1") // the routed gateway, on the new host's lo
	l.mustPing(b, "10.0.66.1")   // over the link
	if got, err := l.getent(b, a); err != nil || !strings.HasPrefix(got, aIP+" ") {
		t.Errorf("getent %s after restore: %q, %v", a, got, err)
	}
	listen(t, a, "0.0.0.0:80")
	if _, err := dial(l.host, "127.0.0.1:8080"); err != nil {
		t.Errorf("the published port after restore: %v", err)
	}
	if links := l.hostLinks(); !slices.Contains(links, "tap0") {
		t.Errorf("host links after restore: %v, want tap0", links)
	}
	if out := l.must("restore"); strings.TrimSpace(out) != "nothing to restore" {
		t.Errorf("a second restore said:\n%s", out)
	}
	// The network is an ordinary one again.
	l.must("net", "connect", "web", l.ns("c"))
	l.must("net", "rm", "web", "--force")
}
