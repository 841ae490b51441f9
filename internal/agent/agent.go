// Package agent is nsnet's one background process: it serves DNS to the
// members of networks that have it on. nsnet stays daemonless in spirit:
// every command that changes state starts the agent if a DNS network has
// members and none is running, and the agent exits by itself when none
// remain or its state directory goes. It watches the store, so a connect or
// disconnect shows in answers within a few tens of milliseconds.
package agent

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nsnet/nsnet/internal/bgp"
	"github.com/nsnet/nsnet/internal/driver"
	"github.com/nsnet/nsnet/internal/drivers"
	"github.com/nsnet/nsnet/internal/lockfile"
	"github.com/nsnet/nsnet/internal/netns"
	"github.com/nsnet/nsnet/internal/resolver"
	"github.com/nsnet/nsnet/internal/store"
)

const (
	lockFile  = "agent.lock"
	logFile   = "agent.log"
	pidFile   = "agent.pid"
	stateFile = "agent.state"
	poll      = 25 * time.Millisecond
)

// State is what the agent last made of the store: the generation it
// served and what it could not do. Commands wait for it (Wait).
type State struct {
	Generation uint64 `json:"generation"`
	Error      string `json:"error,omitempty"`
}

// Servers returns the addresses a member of n queries, in order.
func Servers(n store.Network) []netip.Addr {
	if !n.DNS {
		return nil
	}
	// A link-local resolver is on the host's lo while such a network has
	// DNS; one serves all of a host's networks of that kind.
	if drivers.Caps(n).DNS == driver.DNSLinkLocal {
		var out []netip.Addr
		for _, p := range n.Subnets {
			if p.Addr().Is4() {
				out = appendNew(out, driver.LinkLocal4)
			} else {
				out = appendNew(out, driver.HostDNS6)
			}
		}
		return out
	}
	var out []netip.Addr
	for i, gw := range n.Gateways {
		if gw.IsValid() && n.Subnets[i].Contains(gw) {
			out = append(out, gw)
		}
	}
	return out
}

// Needed reports whether the agent has work: a DNS network with members,
// or a published port (carried on [::1] by the agent).
func Needed(tx *store.Tx) (bool, error) {
	if tx.HasPorts() {
		return true, nil
	}
	if bgps, err := tx.BGPs(); err != nil || len(bgps) > 0 {
		return len(bgps) > 0, err
	}
	if _, joined, err := tx.Joined(); err != nil || joined {
		return joined, err
	}
	return tx.DNSMembers()
}

// Ensure starts the agent for stateDir unless one runs. exe is the nsnet
// binary to start it with.
func Ensure(stateDir, exe string) error {
	f, err := os.OpenFile(filepath.Join(stateDir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("agent lock: %w", err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); errors.Is(err, unix.EWOULDBLOCK) {
		return nil // running
	} else if err != nil {
		return fmt.Errorf("agent lock: %w", err)
	}
	// A dead agent's report and pid would answer for the new one; they
	// go while the lock is held, so never a live agent's.
	for _, stale := range []string{stateFile, pidFile} {
		if err := os.Remove(filepath.Join(stateDir, stale)); err != nil && !errors.Is(err, os.ErrNotExist) {
			unix.Flock(int(f.Fd()), unix.LOCK_UN)
			return fmt.Errorf("agent: %w", err)
		}
	}
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	logf, err := os.OpenFile(filepath.Join(stateDir, logFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("agent log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(exe, "--state-dir", stateDir, "agent")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start agent: %w", err)
	}
	return cmd.Process.Release()
}

// Run is the agent itself. It returns when no DNS network has members, or
// at once if another agent holds stateDir.
func Run(stateDir string, opts Options) error {
	f, err := os.OpenFile(filepath.Join(stateDir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	// A command probing whether an agent runs holds the lock shared for
	// a moment: retry briefly before deciding another agent serves.
	locked := false
	for range 50 {
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			locked = true
			break
		}
		time.Sleep(time.Millisecond)
	}
	if !locked {
		return nil // another agent serves this state directory
	}
	// A command that changed the store signals; the agent then looks at
	// once instead of at its next poll.
	wake := make(chan os.Signal, 1)
	signal.Notify(wake, syscall.SIGUSR1)
	defer signal.Stop(wake)
	pidPath := filepath.Join(stateDir, pidFile)
	if err := os.WriteFile(pidPath, []byte(fmt.Sprintln(os.Getpid())), 0o600); err != nil {
		return err
	}
	defer os.Remove(pidPath)
	raiseFileLimit()
	// A soft limit for the heap: with a thousand networks the agent holds
	// two thousand sockets and their goroutines, and without it the
	// collector lets the heap double before it runs. GOMEMLIMIT wins.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	a := &agent{dir: stateDir, servers: map[string]*running{}, proxies: map[proxyKey]*proxy{},
		onRuleset: opts.OnRuleset, watchers: map[string]*watcher{}, rulesetChanged: make(chan string, 16),
		watcherDied: make(chan *watcher, 16)}
	defer a.closeAll()
	// Hosts whose ruleset changed, checked once the burst settles.
	dirty := map[string]bool{}
	var settled <-chan time.Time
	log.Printf("agent %d serving %s", os.Getpid(), stateDir)
	var last os.FileInfo
	var retry time.Time
	var lastErr string
	woken := false
	for {
		fi, err := os.Stat(filepath.Join(stateDir, store.FileName))
		if err != nil {
			log.Printf("agent: state gone (%v); exiting", err)
			return nil
		}
		changed := woken || last == nil || !fi.ModTime().Equal(last.ModTime()) || fi.Size() != last.Size()
		if changed || (!retry.IsZero() && time.Now().After(retry)) {
			last, retry, woken = fi, time.Time{}, false
			more, gen, openProxies, err := a.refresh()
			if !more {
				// Close everything before saying so: a command waiting
				// for this generation may publish a port the proxy held.
				a.closeAll()
			}
			a.report(gen, err)
			// New [::1] proxies open after the report: a command waits
			// for names and for the ports that went, not for thousands of
			// listens a published range brings (tens of ms); they follow
			// within that.
			if openProxies != nil {
				// What the proxy cannot open is the log's: the generation
				// was reported, and [::1] is only one of a port's ways in.
				if perr := openProxies(); perr != nil {
					log.Printf("agent: %v", perr)
				}
			}
			if err != nil {
				// Retry a failure once a second, and say it once.
				retry = time.Now().Add(time.Second)
				if err.Error() != lastErr {
					log.Printf("agent: %v", err)
					lastErr = err.Error()
				}
			} else {
				lastErr = ""
			}
			if !more {
				log.Printf("agent: nothing to serve; exiting")
				return nil
			}
		}
		select {
		case <-wake:
			woken = true
		case host := <-a.rulesetChanged:
			if len(dirty) == 0 {
				settled = time.After(settle)
			}
			dirty[host] = true
		case w := <-a.watcherDied:
			// A watcher still in use stopped: drop it (the next refresh,
			// at once, watches anew) and check the host, whose changes
			// went unseen. One the agent closed itself is gone already.
			if a.watchers[w.host] != w {
				break
			}
			w.close()
			delete(a.watchers, w.host)
			woken = true
			if len(dirty) == 0 {
				settled = time.After(settle)
			}
			dirty[w.host] = true
		case <-settled:
			settled = nil
			for host := range dirty {
				a.onRuleset(host)
				delete(dirty, host)
			}
		case <-time.After(poll):
		}
		// A speaker that died (killed, or its host's namespace made anew)
		// is started again within a second.
		if time.Since(a.speakersChecked) >= time.Second {
			a.ensureSpeakers()
		}
	}
}

// ensureSpeakers starts each host's BGP speaker that is not running, and
// the cluster keeper while the host has joined a cluster.
func (a *agent) ensureSpeakers() {
	a.speakersChecked = time.Now()
	if a.keeper != nil {
		if err := a.ensureKeeper(*a.keeper); err != nil {
			log.Printf("agent: %v", err)
		}
	}
	if len(a.speakers) == 0 {
		return
	}
	exe, err := os.Executable()
	if err == nil {
		exe, err = bgp.Exe(exe)
	}
	if err != nil {
		log.Printf("agent: %v", err)
		return
	}
	for _, host := range a.speakers {
		if err := bgp.Start(a.dir, exe, host); err != nil {
			log.Printf("agent: %v", err)
		}
	}
}

// Options are what the agent is given besides its state directory.
type Options struct {
	// OnRuleset, when set, is called with a host namespace's path (""
	// for the agent's own) after the nftables ruleset there changed in a
	// table not nsnet's, so the networks' accepts in the host's forward
	// chains can be put right (a policy turned to drop, a firewall
	// reloaded). The agent watches the hosts of networks that need such
	// accepts.
	OnRuleset func(host string)
}

// memoryLimit is the agent's soft memory limit (issue 11: no nsnet
// process above 32 MiB at a thousand networks and ten thousand members).
const memoryLimit = 30 << 20

// proxyBudget is how many [::1] proxies the agent runs at most: its file
// limit less a reserve for its resolvers, the store and their clients.
func proxyBudget() int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 512
	}
	return max(int(lim.Cur)-512, 0)
}

// raiseFileLimit lifts the agent's soft file limit to its hard one: it
// holds a socket per proxied port.
func raiseFileLimit() {
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			log.Printf("agent: raise the file limit: %v", err)
		}
	}
}

// report records the generation served and its error, for commands that
// wait for the agent. It is written whole (a rename), so a reader never
// sees half of it.
func (a *agent) report(gen uint64, err error) {
	s := State{Generation: gen}
	if err != nil {
		s.Error = err.Error()
	}
	raw, _ := json.Marshal(s)
	p := filepath.Join(a.dir, stateFile)
	if werr := os.WriteFile(p+".tmp", raw, 0o600); werr == nil {
		werr = os.Rename(p+".tmp", p)
		if werr != nil {
			log.Printf("agent: %v", werr)
		}
	}
}

// Running reports whether an agent serves stateDir.
func Running(stateDir string) bool { return lockfile.Held(filepath.Join(stateDir, lockFile)) }

// Wait makes sure the agent serving stateDir has taken the store at
// generation gen: it wakes the agent and waits, up to timeout, for its
// report. It returns the agent's error for that generation, if any. When
// the agent is not needed any more, its exit is as good as a report (it
// closes everything first).
func Wait(stateDir string, gen uint64, needed bool, timeout time.Duration) error {
	start := time.Now()
	deadline := start.Add(timeout)
	signalled := false
	// The agent takes a millisecond or few; polling finely keeps the wait
	// close to that.
	for wait := 100 * time.Microsecond; ; wait = min(wait*2, time.Millisecond) {
		if !Running(stateDir) {
			if !needed {
				return nil
			}
			// Started a moment ago, it has not locked yet; one that is
			// still not there exited (it read an older state that needed
			// nothing): the next command starts it again.
			if time.Since(start) > 500*time.Millisecond {
				return fmt.Errorf("the agent is not running (see %s); the next nsnet command starts it", filepath.Join(stateDir, logFile))
			}
		}
		if !signalled {
			if raw, err := os.ReadFile(filepath.Join(stateDir, pidFile)); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(raw))); err == nil && syscall.Kill(pid, syscall.SIGUSR1) == nil {
					signalled = true
				}
			}
		}
		if raw, err := os.ReadFile(filepath.Join(stateDir, stateFile)); err == nil {
			var s State
			if json.Unmarshal(raw, &s) == nil && s.Generation >= gen {
				if s.Error != "" {
					return errors.New(s.Error)
				}
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the agent did not take the change within %s (see %s)", timeout, filepath.Join(stateDir, logFile))
		}
		time.Sleep(wait)
	}
}

// running is one resolver with what it was started for.
type running struct {
	srv       *resolver.Server
	listen    []netip.AddrPort
	upstreams []netip.AddrPort
	host      string
}

type agent struct {
	// proxyCut is how many ports wanted proxying when the budget was last
	// said to be short.
	proxyCut int
	// proxiesFailed says some [::1] proxies could not open: the next
	// refresh tries again, whatever changed.
	proxiesFailed bool
	dir           string
	// keeper is, while the host joined a cluster, the namespace its
	// keeper runs in; keeperDone closes when the keeper the agent started
	// exits.
	keeper     *string
	keeperDone chan struct{}
	// speakers are the hosts with BGP, whose speakers the agent keeps running.
	speakers        []string
	speakersChecked time.Time
	servers         map[string]*running // by network name, or "link-local@HOST" for a host's link-local resolver
	proxies         map[proxyKey]*proxy
	// onRuleset, when set, re-checks a host's forward accepts; watchers
	// send the host's path on rulesetChanged when its ruleset changes.
	onRuleset      func(host string)
	watchers       map[string]*watcher
	rulesetChanged chan string
	// watcherDied receives each watcher whose monitor ended.
	watcherDied chan *watcher
	// copy is the agent's copy of the networks and their members, brought
	// up to date from the store's change log at each refresh.
	copy storeCopy
	// hostUps are the hosts' own resolvers as the last full refresh read
	// them; built says one has run, so that a refresh where only members
	// changed may keep the resolvers as they are and give them new names.
	hostUps map[string][]netip.AddrPort
	built   bool
	// zones are each host's names, compiled a network at a time; zoneOf
	// says which host's zone holds a network, and compiled is each zone
	// as the resolvers were last given it.
	zones    map[string]*resolver.Host
	zoneOf   map[string]string
	compiled map[string]resolver.Compiled
}

func (a *agent) closeAll() {
	a.built = false // the next refresh starts everything anew
	for k, w := range a.watchers {
		w.close()
		delete(a.watchers, k)
	}
	for k, r := range a.servers {
		r.srv.Close()
		delete(a.servers, k)
	}
	for k, p := range a.proxies {
		p.close()
		delete(a.proxies, k)
	}
}

// syncProxies carries every published port that any host address may
// reach (or that names ::1) on [::1], to the member's IPv6 address if it
// has one, else its IPv4 one. SCTP is left to the kernel alone.
func (a *agent) syncProxies(nets []store.Network, members map[string][]store.Attachment) func() error {
	want := map[proxyKey]netip.AddrPort{}
	for _, n := range nets {
		for _, m := range members[n.Name] {
			var dst netip.Addr
			for _, p := range m.Addrs {
				if !dst.IsValid() || p.Addr().Is6() {
					dst = p.Addr()
				}
			}
			for _, pm := range m.Ports {
				if pm.Proto == "sctp" || (pm.HostIP.IsValid() && pm.HostIP != netip.IPv6Loopback()) {
					continue
				}
				for i := 0; i < pm.Count(); i++ {
					want[proxyKey{n.HostNetns, pm.Proto, pm.HostPort + uint16(i)}] = netip.AddrPortFrom(dst, pm.Port+uint16(i))
				}
			}
		}
	}
	for k, p := range a.proxies {
		if t, ok := want[k]; !ok || t != p.target {
			p.close()
			delete(a.proxies, k)
		}
	}
	// One socket per proxied port: a published range of thousands would
	// take every file the agent may open (and then its own state lock
	// and resolvers with it). Past its budget the [::1] proxy leaves
	// ports out, in a stable order, and says so once; those ports stay
	// reachable on the host's other addresses.
	keys := slices.SortedFunc(maps.Keys(want), func(x, y proxyKey) int {
		return cmp.Or(cmp.Compare(x.host, y.host), cmp.Compare(x.proto, y.proto), cmp.Compare(x.port, y.port))
	})
	if budget := proxyBudget(); len(keys) > budget {
		if a.proxyCut != len(keys) {
			log.Printf("agent: the [::1] proxy carries %d of %d published ports (its file limit); the others are reachable on the host's other addresses", budget, len(keys))
			a.proxyCut = len(keys)
		}
		for _, k := range keys[budget:] {
			delete(want, k)
			if p, ok := a.proxies[k]; ok {
				p.close()
				delete(a.proxies, k)
			}
		}
	}
	// New proxies are started a host at a time: entering a namespace
	// costs more than a listen, and a range publishes thousands at once.
	byHost := map[string]map[proxyKey]netip.AddrPort{}
	for k, t := range want {
		if _, ok := a.proxies[k]; ok {
			continue
		}
		if byHost[k.host] == nil {
			byHost[k.host] = map[proxyKey]netip.AddrPort{}
		}
		byHost[k.host][k] = t
	}
	if len(byHost) == 0 {
		a.proxiesFailed = false
		return nil
	}
	return func() error {
		var errs []error
		for host, targets := range byHost {
			started, err := startProxies(host, targets)
			for k, p := range started {
				a.proxies[k] = p
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
		a.proxiesFailed = len(errs) > 0
		return errors.Join(errs...)
	}
}

// refresh reads the store and makes the resolvers match it.
func (a *agent) refresh() (bool, uint64, func() error, error) {
	st, err := store.OpenTimeout(a.dir, true, time.Second)
	if err != nil {
		return true, 0, nil, err
	}
	var gen uint64
	var bgps []store.BGP
	needed := false
	err = st.View(func(tx *store.Tx) error {
		gen = tx.Generation()
		if err := a.copy.update(tx); err != nil {
			return err
		}
		needed = tx.HasPorts()
		if bgps, err = tx.BGPs(); err != nil {
			return err
		}
		j, joined, err := tx.Joined()
		a.keeper = nil
		if joined {
			a.keeper = &j.HostNetns
		}
		return err
	})
	st.Close()
	if err != nil {
		a.copy = storeCopy{}
		return true, gen, nil, err
	}
	nets, members := a.copy.list()
	for _, n := range nets {
		needed = needed || n.DNS && len(members[n.Name]) > 0
	}
	// Speakers are processes of their own (package bgp says why); the
	// agent starts each that is not running, and each stops by itself.
	a.speakers = a.speakers[:0]
	for _, b := range bgps {
		needed = true
		a.speakers = append(a.speakers, b.HostNetns)
	}
	needed = needed || a.keeper != nil
	a.ensureSpeakers()
	if !needed {
		return false, gen, nil, nil
	}
	// Only members changed, and the hosts' resolv.conf did not: every
	// resolver stays as it is, and only the names change (issue 11: a
	// connect on a host of a thousand networks waits for this).
	fast := !a.copy.structural && a.built && a.upstreamsSame()
	if !fast {
		a.syncWatchers(forwardHosts(nets))
	}
	// Published ports are looked for in every member only when a change
	// may have touched them, or proxies failed to open last time.
	var openProxies func() error
	if a.copy.ports || a.proxiesFailed {
		openProxies = a.syncProxies(nets, members)
	}
	// One zone per host: every network there, so a member in several
	// networks is answered for all of them. Each is compiled once, shared
	// by the host's resolvers, and kept from one refresh to the next,
	// where only the networks that changed are compiled again.
	errs := a.updateZones(nets, members)
	compiled := a.compiled
	if fast {
		for _, r := range a.servers {
			r.srv.SetCompiled(compiled[r.host])
		}
		return true, gen, openProxies, errors.Join(errs...)
	}
	want := map[string]*running{}
	// The host's resolv.conf, read once per host and refresh, not once
	// per network.
	hostUps := map[string][]netip.AddrPort{}
	for _, n := range nets {
		if !n.DNS {
			continue
		}
		ups := n.DNSUpstreams
		var upstreams []netip.AddrPort
		for _, u := range ups {
			upstreams = append(upstreams, netip.AddrPortFrom(u, 53))
		}
		if len(upstreams) == 0 {
			if _, ok := hostUps[n.HostNetns]; !ok {
				hostUps[n.HostNetns] = hostUpstreams(n.HostNetns)
			}
			upstreams = hostUps[n.HostNetns]
		}
		if drivers.Caps(n).DNS == driver.DNSLinkLocal {
			key := "link-local@" + n.HostNetns
			r := want[key]
			if r == nil {
				r = &running{host: n.HostNetns}
				want[key] = r
			}
			for _, s := range Servers(n) {
				r.listen = appendNew(r.listen, netip.AddrPortFrom(s, 53))
			}
			r.upstreams = appendNew(r.upstreams, upstreams...)
			continue
		}
		r := &running{host: n.HostNetns, upstreams: upstreams}
		for _, s := range Servers(n) {
			r.listen = append(r.listen, netip.AddrPortFrom(s, 53))
		}
		want[n.Name] = r
	}
	for k, old := range a.servers {
		w, ok := want[k]
		if !ok || !same(w.listen, old.listen) || !same(w.upstreams, old.upstreams) || w.host != old.host {
			old.srv.Close()
			delete(a.servers, k)
		}
	}
	a.hostUps = hostUps
	for k, w := range want {
		if r, ok := a.servers[k]; ok {
			r.srv.SetCompiled(compiled[w.host])
			continue
		}
		srv, err := resolver.New(resolver.Config{Listen: w.listen, Upstreams: w.upstreams, Logf: log.Printf, Dial: dialIn(w.host)})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		srv.SetCompiled(compiled[w.host])
		if err := startIn(w.host, srv); err != nil {
			errs = append(errs, fmt.Errorf("resolver for %s: %w", k, err))
			continue
		}
		w.srv = srv
		a.servers[k] = w
	}
	// A resolver that failed to start is tried again by the next full
	// refresh, which the fast path would skip.
	err = errors.Join(errs...)
	a.built = err == nil
	return true, gen, openProxies, err
}

// updateZones brings the hosts' compiled zones up to date with the copy:
// every network when the copy was read whole, else those it found changed.
func (a *agent) updateZones(nets []store.Network, members map[string][]store.Attachment) []error {
	var errs []error
	dirty := map[string]bool{}
	remove := func(name string) {
		if host, ok := a.zoneOf[name]; ok {
			a.zones[host].Remove(name)
			delete(a.zoneOf, name)
			dirty[host] = true
		}
	}
	set := func(n store.Network) {
		if !n.DNS {
			remove(n.Name)
			return
		}
		if a.zoneOf[n.Name] != n.HostNetns {
			remove(n.Name)
		}
		zn := resolver.Network{Name: n.Name, Subnets: n.Subnets, Members: make([]resolver.Member, 0, len(members[n.Name]))}
		for _, m := range members[n.Name] {
			rm := resolver.Member{Name: m.Namespace, Aliases: m.Aliases, Addrs: make([]netip.Addr, 0, len(m.Addrs))}
			for _, p := range m.Addrs {
				rm.Addrs = append(rm.Addrs, p.Addr())
			}
			zn.Members = append(zn.Members, rm)
		}
		h := a.zones[n.HostNetns]
		if h == nil {
			h = resolver.NewHost()
			a.zones[n.HostNetns] = h
		}
		errs = append(errs, ignoreNames(h.Set(zn)))
		a.zoneOf[n.Name] = n.HostNetns
		dirty[n.HostNetns] = true
	}
	if a.copy.changed == nil || a.zones == nil {
		a.zones, a.zoneOf, a.compiled = map[string]*resolver.Host{}, map[string]string{}, map[string]resolver.Compiled{}
		for _, n := range nets {
			set(n)
		}
	} else {
		for name := range a.copy.changed {
			if n, ok := a.copy.nets[name]; ok {
				set(n)
			} else {
				remove(name)
			}
		}
	}
	for host := range dirty {
		if a.zones[host].Len() == 0 {
			delete(a.zones, host)
			delete(a.compiled, host)
			continue
		}
		a.compiled[host] = a.zones[host].Compiled()
	}
	return errs
}

// upstreamsSame says whether every host's resolv.conf still names the
// resolvers the last full refresh read.
func (a *agent) upstreamsSame() bool {
	for host, ups := range a.hostUps {
		if !same(hostUpstreams(host), ups) {
			return false
		}
	}
	return true
}

// ignoreNames drops the resolver's complaint about names DNS cannot carry:
// it still serves every other name, and the log says which were left out.
func ignoreNames(err error) error {
	if err != nil {
		log.Printf("agent: %v", err)
	}
	return nil
}

// startIn binds the resolver's sockets inside the host namespace; sockets
// stay in the namespace they were made in, whatever thread serves them.
func startIn(host string, srv *resolver.Server) error {
	if host == "" {
		return srv.Start()
	}
	h, err := netns.Open(host)
	if err != nil {
		return err
	}
	defer h.Close()
	return netns.Do(h, srv.Start)
}

// dialIn returns a dialer whose sockets are made inside the host namespace,
// where the upstreams are reachable; nil means the agent's own.
func dialIn(host string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if host == "" {
		return nil
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		h, err := netns.Open(host)
		if err != nil {
			return nil, err
		}
		defer h.Close()
		var c net.Conn
		err = netns.Do(h, func() (err error) {
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// hostUpstreams reads the host's resolvers: /etc/netns/HOST/resolv.conf for
// a named host namespace that has one (as `ip netns exec` would give it),
// else /etc/resolv.conf.
func hostUpstreams(host string) []netip.AddrPort {
	paths := []string{"/etc/resolv.conf"}
	if host != "" {
		paths = append([]string{filepath.Join(netns.EtcDir, filepath.Base(host), "resolv.conf")}, paths...)
	}
	for _, p := range paths {
		if ups, err := resolver.Upstreams(p); err == nil {
			return ups
		}
	}
	return nil
}

func appendNew[T comparable](list []T, more ...T) []T {
	for _, m := range more {
		if !slices.Contains(list, m) {
			list = append(list, m)
		}
	}
	return list
}

func same(a, b []netip.AddrPort) bool {
	// Lists of a few addresses, compared at every refresh for every
	// resolver: no copies, no sorting.
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !slices.Contains(b, a[i]) || !slices.Contains(a, b[i]) {
			return false
		}
	}
	return true
}

// ensureKeeper starts the cluster keeper (nsnet-cluster keeper, from
// beside nsnet) inside host unless one runs.
func (a *agent) ensureKeeper(host string) error {
	if a.keeperDone != nil {
		select {
		case <-a.keeperDone:
			a.keeperDone = nil
		default:
			return nil // started, and still running
		}
	}
	if lockfile.Held(filepath.Join(a.dir, "cluster.lock")) {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	exe = filepath.Join(filepath.Dir(exe), "nsnet-cluster")
	logf, err := os.OpenFile(filepath.Join(a.dir, "cluster.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("cluster keeper log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(exe, "--state-dir", a.dir, "keeper")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := netns.StartIn(host, cmd); err != nil {
		return fmt.Errorf("start cluster keeper: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	a.keeperDone = done
	return nil
}
