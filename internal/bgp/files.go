// Package bgp is what nsnet's commands and agent know of its BGP speakers:
// where a speaker's files are, how to start one inside its host's
// namespace, and what it reports. The speaker itself (package
// bgp/speaker, program nsnet-bgp) is a process of its own per host:
//
//   - A socket belongs to the namespace of the thread that made it, and
//     gobgp makes its sockets on goroutines of its own: only a process
//     whose every thread is in the host's namespace can run it there.
//   - gobgp brings gRPC and protobuf, whose initialisation would cost
//     every nsnet command over a millisecond at start.
package bgp

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nsnet/nsnet/internal/lockfile"
	"github.com/nsnet/nsnet/internal/netns"
)

// Files of the speakers live in STATE/bgp, named for their host.
const dirName = "bgp"

// Name is the file name speakers use for host: "default" for the one nsnet
// runs in, a named namespace's name, or a hash of any other path.
func Name(host string) string {
	switch {
	case host == "":
		return "default"
	case filepath.Dir(host) == netns.Dir:
		return filepath.Base(host)
	default:
		sum := sha256.Sum256([]byte(host))
		return "path-" + hex.EncodeToString(sum[:6])
	}
}

// File is host's speaker's file with the extension ext (".lock",
// ".json", ".log").
func File(stateDir, host, ext string) string {
	return filepath.Join(stateDir, dirName, Name(host)+ext)
}

// Status is what a speaker last reported: `nsnet bgp show` prints it.
type Status struct {
	Host     string     `json:"host"`
	PID      int        `json:"pid"`
	ASN      uint32     `json:"asn"`
	RouterID netip.Addr `json:"router_id"`
	// Generation is the store's state the speaker last applied.
	Generation uint64         `json:"generation"`
	Error      string         `json:"error,omitempty"`
	Peers      []PeerStatus   `json:"peers"`
	Announced  []netip.Prefix `json:"announced"`
	Learned    []Learned      `json:"learned"`
	Ignored    []Ignored      `json:"ignored,omitempty"`
	Updated    time.Time      `json:"updated"`
}

// PeerStatus is one session.
type PeerStatus struct {
	Address netip.Addr `json:"address"`
	ASN     uint32     `json:"asn"`
	State   string     `json:"state"`
	// Since is when the session last changed state.
	Since    time.Time `json:"since,omitzero"`
	Received int       `json:"received"`
	Passive  bool      `json:"passive,omitempty"`
}

// Learned is a route a peer announced that the speaker installed (or
// tried to).
type Learned struct {
	Prefix  netip.Prefix `json:"prefix"`
	NextHop netip.Addr   `json:"next_hop"`
	Peer    netip.Addr   `json:"peer"`
	// Error says why the route is not in the kernel, if it is not.
	Error string `json:"error,omitempty"`
}

// Ignored is a route a peer announced that the speaker refused to install.
type Ignored struct {
	Prefix netip.Prefix `json:"prefix"`
	Peer   netip.Addr   `json:"peer"`
	Reason string       `json:"reason"`
}

// ReadStatus reads host's speaker's last report; ok is false when there is
// none.
func ReadStatus(stateDir, host string) (s Status, ok bool, err error) {
	raw, err := os.ReadFile(File(stateDir, host, ".json"))
	if errors.Is(err, os.ErrNotExist) {
		return s, false, nil
	}
	if err != nil {
		return s, false, fmt.Errorf("bgp status: %w", err)
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return s, false, fmt.Errorf("bgp status %s: %w", Name(host), err)
	}
	return s, true, nil
}

// WriteStatus records a speaker's report, whole (a rename).
func WriteStatus(stateDir, host string, s Status) error {
	raw, err := json.Marshal(s)
	if err != nil {
		return err
	}
	p := File(stateDir, host, ".json")
	if err := os.WriteFile(p+".tmp", raw, 0o600); err != nil {
		return err
	}
	return os.Rename(p+".tmp", p)
}

// Running reports whether a speaker serves host.
func Running(stateDir, host string) bool { return lockfile.Held(File(stateDir, host, ".lock")) }

// WaitStopped waits, up to timeout, for host's speaker to exit (having
// withdrawn its routes and removed what it installed).
func WaitStopped(stateDir, host string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for Running(stateDir, host) {
		if time.Now().After(deadline) {
			return fmt.Errorf("bgp speaker of host %s: still running after %v (see %s)", Name(host), timeout, File(stateDir, host, ".log"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// WaitApplied waits, up to timeout, for host's speaker to report the
// store's generation gen or a later one, and returns its report.
func WaitApplied(stateDir, host string, gen uint64, timeout time.Duration) (Status, error) {
	deadline := time.Now().Add(timeout)
	for {
		s, ok, err := ReadStatus(stateDir, host)
		if err == nil && ok && s.Generation >= gen && s.PID != 0 && Running(stateDir, host) {
			if s.Error != "" {
				return s, fmt.Errorf("bgp speaker of host %s: %s", Name(host), s.Error)
			}
			return s, nil
		}
		if time.Now().After(deadline) {
			why := "has not started"
			if Running(stateDir, host) {
				why = "has not applied the change"
			}
			if log, _ := os.ReadFile(File(stateDir, host, ".log")); len(log) > 0 {
				lines := strings.Split(strings.TrimSpace(string(log)), "\n")
				why += ": " + lines[len(lines)-1]
			}
			return s, fmt.Errorf("bgp speaker of host %s %s after %v", Name(host), why, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// RouteProto marks the routes a speaker installs (learned routes, and the
// blackholes of aggregated subnets), so that they are told from everyone
// else's and removed by it alone (`ip route show proto 111`).
const RouteProto = 111
