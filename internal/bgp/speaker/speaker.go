// Package speaker is nsnet's BGP speaker for one host (program nsnet-bgp,
// started by the agent inside the host's namespace). It announces the
// host's routed networks (their members' addresses, or their subnets when
// aggregating) with gobgp, and installs the routes its peers announce into
// the host's kernel itself, with a route protocol of its own. It reads
// what to do from the store and reports in STATE/bgp/HOST.json.
package speaker

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	nbgp "github.com/nsnet/nsnet/internal/bgp"
	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/netns"
	"github.com/nsnet/nsnet/internal/store"
)

// RouteProto marks the routes a speaker installs (learned routes, and the
// blackholes of aggregated subnets), so that they are told from everyone
// else's and removed by it alone (`ip route show proto 111`).
const RouteProto netlink.RouteProtocol = nbgp.RouteProto

// DefaultHoldTime is the hold time offered to peers when none is set.
const DefaultHoldTime = 90

const (
	poll        = 50 * time.Millisecond
	statusEvery = 100 * time.Millisecond
)

// Run is the speaker of host; it runs in host's namespace (Start puts it
// there) and returns when host's BGP is turned off (having withdrawn its
// routes and removed what it installed), its namespace or the state
// directory goes, or at once if another speaker serves host.
func Run(stateDir, host string) error {
	f, err := os.OpenFile(nbgp.File(stateDir, host, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		return nil // another speaker serves host
	}
	// The lock file names the speaker that holds it, while it does.
	if err := f.Truncate(0); err == nil {
		fmt.Fprintln(f, os.Getpid())
	}
	defer f.Truncate(0)
	ino := netns.PathInode("")
	if host != "" && netns.PathInode(host) != ino {
		return fmt.Errorf("bgp speaker of host %s: not started inside that namespace", nbgp.Name(host))
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	s := &speaker{dir: stateDir, host: host, ino: ino, started: time.Now(),
		events: make(chan []*apiutil.Path, 256), peerEvents: make(chan struct{}, 1),
		peers: map[netip.Addr]store.BGPPeer{}, announced: map[netip.Prefix]*apiutil.Path{},
		learned: map[netip.Prefix]nbgp.Learned{}, ignored: map[netip.Prefix]nbgp.Ignored{}, stale: map[netip.Prefix]bool{}}
	log.Printf("bgp speaker %d serving host %s", os.Getpid(), nbgp.Name(host))
	// Routes a speaker before this one installed stay while the peers
	// announce them again; those no peer has announced after a hold time
	// go (sweepStale).
	if rs, err := ownRoutes(); err == nil {
		for _, r := range rs {
			if r.Type != unix.RTN_BLACKHOLE {
				s.stale[netip.MustParsePrefix(r.Dst.String())] = true
			}
		}
	}
	defer s.stop()
	var last os.FileInfo
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		select {
		case <-sig:
			log.Printf("bgp speaker: signalled; withdrawing and exiting")
			s.off()
			return nil
		case batch := <-s.events:
			s.learn(batch)
		case <-s.peerEvents:
			s.dirty, s.peerChanged = true, time.Now()
		case <-tick.C:
		}
		fi, err := os.Stat(filepath.Join(stateDir, store.FileName))
		if err != nil {
			log.Printf("bgp speaker: state gone (%v); exiting", err)
			s.off()
			return nil
		}
		if host != "" && netns.PathInode(host) != ino {
			log.Printf("bgp speaker: host namespace %s gone; exiting", host)
			return nil
		}
		if last == nil || !fi.ModTime().Equal(last.ModTime()) || fi.Size() != last.Size() {
			last = fi
			more, err := s.refresh()
			if err != nil {
				s.err = err.Error()
				// Read again at the next tick.
				last = nil
			} else {
				s.err = ""
			}
			if !more {
				log.Printf("bgp speaker: BGP is off for host %s; exiting", nbgp.Name(host))
				s.off()
				return nil
			}
			s.writeStatus()
		}
		s.sweepStale()
		// gobgp tells of a session's change a moment before its list of
		// peers shows it: the report is written again for a while after.
		recent := time.Since(s.peerChanged) < 2*time.Second
		if (s.dirty || recent) && time.Since(s.wrote) >= statusEvery {
			s.writeStatus()
		}
	}
}

type speaker struct {
	dir, host string
	ino       uint64
	started   time.Time
	gen       uint64
	err       string

	srv *server.BgpServer
	// cfg is the configuration srv runs with.
	cfg        store.BGP
	peers      map[netip.Addr]store.BGPPeer
	announced  map[netip.Prefix]*apiutil.Path
	blackholes []netip.Prefix
	// own are the host's networks' subnets (by network) and addresses: a
	// learned route that covers one of them is never installed.
	ownNets  map[netip.Prefix]string
	ownAddrs []netip.Addr

	events     chan []*apiutil.Path
	peerEvents chan struct{}
	learned    map[netip.Prefix]nbgp.Learned
	ignored    map[netip.Prefix]nbgp.Ignored
	stale      map[netip.Prefix]bool

	dirty       bool
	wrote       time.Time
	peerChanged time.Time
}

// refresh reads host's configuration and networks and makes the speaker
// match; more is false when host has BGP no longer.
func (s *speaker) refresh() (more bool, err error) {
	st, err := store.OpenTimeout(s.dir, true, time.Second)
	if err != nil {
		return true, err
	}
	var cfg store.BGP
	var nets []store.Network
	members := map[string][]store.Attachment{}
	err = st.View(func(tx *store.Tx) error {
		s.gen = tx.Generation()
		c, ok, err := tx.BGP(s.host)
		if err != nil || !ok {
			return err
		}
		more, cfg = true, c
		all, err := tx.Networks()
		if err != nil {
			return err
		}
		for _, n := range all {
			if n.HostNetns != s.host {
				continue
			}
			nets = append(nets, n)
			if ms, err := tx.Members(n.Name); err != nil {
				return err
			} else {
				members[n.Name] = ms
			}
		}
		return nil
	})
	st.Close()
	if err != nil || !more {
		return more, err
	}
	if s.srv != nil && !sameGlobal(s.cfg, cfg) {
		s.stopServer()
	}
	if s.srv == nil {
		if err := s.startServer(cfg); err != nil {
			return true, err
		}
	}
	s.cfg = cfg
	s.readOwn(nets, members)
	return true, errors.Join(s.syncPeers(cfg), s.syncAnnounced(cfg, nets, members))
}

func sameGlobal(a, b store.BGP) bool {
	return a.ASN == b.ASN && a.RouterID == b.RouterID && a.Listen == b.Listen && a.HoldTime == b.HoldTime
}

func (s *speaker) startServer(cfg store.BGP) error {
	lvl := &slog.LevelVar{}
	lvl.Set(slog.LevelInfo)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	srv := server.NewBgpServer(server.LoggerOption(logger, lvl))
	go srv.Serve()
	g := &api.Global{Asn: cfg.ASN, RouterId: cfg.RouterID.String(), ListenPort: 179}
	if cfg.Listen.IsValid() {
		g.ListenAddresses = []string{cfg.Listen.String()}
	}
	ctx := context.Background()
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: g}); err != nil {
		srv.Stop()
		return fmt.Errorf("start BGP (AS %d, router id %s): %w", cfg.ASN, cfg.RouterID, err)
	}
	err := srv.WatchEvent(ctx, server.WatchEventMessageCallbacks{
		OnBestPath: func(paths []*apiutil.Path, _ time.Time) { s.events <- paths },
		OnPeerUpdate: func(*apiutil.WatchEventMessage_PeerEvent, time.Time) {
			select {
			case s.peerEvents <- struct{}{}:
			default:
			}
		},
	}, server.WatchBestPath(false), server.WatchPeer())
	if err != nil {
		srv.Stop()
		return fmt.Errorf("watch BGP events: %w", err)
	}
	s.srv, s.cfg = srv, cfg
	s.peers = map[netip.Addr]store.BGPPeer{}
	s.announced = map[netip.Prefix]*apiutil.Path{}
	return nil
}

// stopServer ends every session (peers see a clean close, and withdraw
// what the speaker announced) and forgets what they announced.
func (s *speaker) stopServer() {
	if s.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.StopBgp(ctx, &api.StopBgpRequest{}); err != nil {
		log.Printf("bgp speaker: stop: %v", err)
	}
	s.srv = nil
	// Events still queued are of the server that went.
	for {
		select {
		case <-s.events:
			continue
		default:
		}
		break
	}
	for p, l := range s.learned {
		if l.Error == "" {
			if err := delRoute(p); err != nil {
				log.Printf("bgp speaker: remove %s: %v", p, err)
			}
		}
	}
	s.learned = map[netip.Prefix]nbgp.Learned{}
	s.ignored = map[netip.Prefix]nbgp.Ignored{}
	s.dirty = true
}

// off withdraws everything and removes every route the speaker installed.
func (s *speaker) off() {
	s.stopServer()
	rs, err := ownRoutes()
	if err != nil {
		log.Printf("bgp speaker: list routes: %v", err)
	}
	for _, r := range rs {
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			log.Printf("bgp speaker: remove %s: %v", r.Dst, err)
		}
	}
	s.blackholes, s.stale = nil, nil
	os.Remove(nbgp.File(s.dir, s.host, ".json"))
}

// stop is the speaker's last act: its report goes, so no command takes
// a dead speaker's word.
func (s *speaker) stop() {
	if s.srv != nil {
		s.srv.StopBgp(context.Background(), &api.StopBgpRequest{})
	}
	os.Remove(nbgp.File(s.dir, s.host, ".json"))
}

func (s *speaker) readOwn(nets []store.Network, members map[string][]store.Attachment) {
	s.ownNets = map[netip.Prefix]string{}
	s.ownAddrs = s.ownAddrs[:0]
	for _, n := range nets {
		if n.Cluster != nil {
			// A cluster network's subnet spans every host: the other
			// hosts' members are learned within it. This host's own
			// members are what must never be taken over.
			for _, m := range members[n.Name] {
				for _, p := range m.Addrs {
					s.ownAddrs = append(s.ownAddrs, p.Addr())
				}
			}
			continue
		}
		for _, p := range n.Subnets {
			s.ownNets[p] = n.Name
		}
	}
	addrs, err := kernel.Retry(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		log.Printf("bgp speaker: list addresses: %v", err)
		return
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || a.Scope != unix.RT_SCOPE_UNIVERSE || ip.IsLinkLocalUnicast() || ip.IsLoopback() {
			continue
		}
		s.ownAddrs = append(s.ownAddrs, ip.Unmap())
	}
}

func (s *speaker) syncPeers(cfg store.BGP) error {
	ctx := context.Background()
	want := map[netip.Addr]store.BGPPeer{}
	for _, p := range cfg.Peers {
		want[p.Address] = p
	}
	var errs []error
	for a, old := range s.peers {
		if p, ok := want[a]; ok && p == old {
			continue
		}
		if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: a.String()}); err != nil {
			errs = append(errs, fmt.Errorf("remove peer %s: %w", a, err))
			continue
		}
		delete(s.peers, a)
	}
	hold := uint64(cfg.HoldTime)
	if hold == 0 {
		hold = DefaultHoldTime
	}
	for a, p := range want {
		if _, ok := s.peers[a]; ok {
			continue
		}
		fam := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
		if a.Is6() {
			fam.Afi = api.Family_AFI_IP6
		}
		peer := &api.Peer{
			Conf:      &api.PeerConf{NeighborAddress: a.String(), PeerAsn: p.ASN, AuthPassword: p.Password},
			Transport: &api.Transport{PassiveMode: p.Passive},
			Timers: &api.Timers{Config: &api.TimersConfig{HoldTime: hold, KeepaliveInterval: max(hold/3, 1),
				// A peer that restarts is tried again within seconds,
				// not BGP's two minutes.
				ConnectRetry: 5}},
			AfiSafis: []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: fam, Enabled: true}}},
		}
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: peer}); err != nil {
			errs = append(errs, fmt.Errorf("add peer %s: %w", a, err))
			continue
		}
		s.peers[a] = p
	}
	return errors.Join(errs...)
}

// wantAnnounced is what host announces: each routed network's members'
// addresses, or its subnets when aggregating; bridge networks' subnets
// when asked.
func wantAnnounced(cfg store.BGP, nets []store.Network, members map[string][]store.Attachment) (announce, blackhole []netip.Prefix) {
	seen := map[netip.Prefix]bool{}
	add := func(p netip.Prefix) {
		if !seen[p] {
			seen[p] = true
			announce = append(announce, p)
		}
	}
	for _, n := range nets {
		switch {
		case n.Driver == "routed" && cfg.Aggregate:
			for _, p := range n.Subnets {
				add(p.Masked())
				blackhole = append(blackhole, p.Masked())
			}
		case n.Driver == "routed":
			for _, m := range members[n.Name] {
				for _, p := range m.Addrs {
					add(netip.PrefixFrom(p.Addr(), p.Addr().BitLen()))
				}
			}
		case n.Driver == "bridge" && cfg.Bridge && !n.Internal:
			for _, p := range n.Subnets {
				add(p.Masked())
			}
		}
	}
	return announce, blackhole
}

func localPath(p netip.Prefix) (*apiutil.Path, error) {
	nlri, err := bgp.NewIPAddrPrefix(p)
	if err != nil {
		return nil, err
	}
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	fam := bgp.RF_IPv4_UC
	// The next hop is left unspecified: gobgp puts the session's local
	// address there, whichever peer it goes to.
	if p.Addr().Is4() {
		nh, err := bgp.NewPathAttributeNextHop(netip.IPv4Unspecified())
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, nh)
	} else {
		fam = bgp.RF_IPv6_UC
		mp, err := bgp.NewPathAttributeMpReachNLRI(fam, []bgp.PathNLRI{{NLRI: nlri}}, netip.IPv6Unspecified())
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, mp)
	}
	return &apiutil.Path{Family: fam, Nlri: nlri, Attrs: attrs}, nil
}

func (s *speaker) syncAnnounced(cfg store.BGP, nets []store.Network, members map[string][]store.Attachment) error {
	want, blackholes := wantAnnounced(cfg, nets, members)
	var errs []error
	// Blackholes first: traffic to an unused address of an aggregated
	// subnet stops here once peers route the subnet to this host.
	if err := syncBlackholes(blackholes); err != nil {
		errs = append(errs, err)
	}
	s.blackholes = blackholes
	wanted := map[netip.Prefix]bool{}
	var add []*apiutil.Path
	for _, p := range want {
		wanted[p] = true
		if s.announced[p] != nil {
			continue
		}
		lp, err := localPath(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("announce %s: %w", p, err))
			continue
		}
		add = append(add, lp)
		s.announced[p] = lp
	}
	var del []*apiutil.Path
	for p, lp := range s.announced {
		if !wanted[p] {
			del = append(del, lp)
			delete(s.announced, p)
		}
	}
	if len(add) > 0 {
		if _, err := s.srv.AddPath(apiutil.AddPathRequest{Paths: add}); err != nil {
			errs = append(errs, fmt.Errorf("announce: %w", err))
		}
	}
	if len(del) > 0 {
		if err := s.srv.DeletePath(apiutil.DeletePathRequest{Paths: del}); err != nil {
			errs = append(errs, fmt.Errorf("withdraw: %w", err))
		}
	}
	return errors.Join(errs...)
}

func nextHop(p *apiutil.Path) (nh, ll netip.Addr) {
	for _, a := range p.Attrs {
		switch a := a.(type) {
		case *bgp.PathAttributeNextHop:
			return a.Value, netip.Addr{}
		case *bgp.PathAttributeMpReachNLRI:
			return a.Nexthop, a.LinkLocalNexthop
		}
	}
	return netip.Addr{}, netip.Addr{}
}

// learn installs the best paths peers announce and removes those
// withdrawn.
func (s *speaker) learn(batch []*apiutil.Path) {
	s.dirty = true
	// Where each next hop is, asked of the kernel once per batch: a peer
	// sends thousands of routes with one next hop.
	links := map[netip.Addr]linkOf{}
	for _, p := range batch {
		nlri, ok := p.Nlri.(*bgp.IPAddrPrefix)
		if !ok {
			continue
		}
		prefix := nlri.Prefix.Masked()
		_, fromPeer := s.peers[p.PeerAddress]
		if p.Withdrawal || !fromPeer {
			// Withdrawn, or the best path is now the speaker's own.
			delete(s.ignored, prefix)
			if l, ok := s.learned[prefix]; ok {
				delete(s.learned, prefix)
				if l.Error == "" {
					if err := delRoute(prefix); err != nil {
						log.Printf("bgp speaker: remove %s: %v", prefix, err)
					}
				}
			}
			continue
		}
		if reason := s.refuse(prefix); reason != "" {
			s.ignored[prefix] = nbgp.Ignored{Prefix: prefix, Peer: p.PeerAddress, Reason: reason}
			if l, ok := s.learned[prefix]; ok && l.Error == "" {
				delRoute(prefix)
			}
			delete(s.learned, prefix)
			continue
		}
		delete(s.ignored, prefix)
		nh, ll := nextHop(p)
		l := nbgp.Learned{Prefix: prefix, NextHop: nh, Peer: p.PeerAddress}
		if err := s.install(prefix, nh, ll, p.PeerAddress, links); err != nil {
			l.Error = err.Error()
			if old, ok := s.learned[prefix]; ok && old.Error == "" {
				delRoute(prefix)
			}
		}
		delete(s.stale, prefix)
		s.learned[prefix] = l
	}
}

// refuse says why a learned prefix must not be installed: it would take
// traffic for one of the host's own networks or addresses away.
func (s *speaker) refuse(p netip.Prefix) string {
	for own, name := range s.ownNets {
		if p.Overlaps(own) {
			return fmt.Sprintf("overlaps network %s's subnet %s", name, own)
		}
	}
	for _, a := range s.ownAddrs {
		if p.Contains(a) {
			return fmt.Sprintf("covers the host's own address %s", a)
		}
	}
	return ""
}

// linkOf is the interface a next hop is reached on, or why not.
type linkOf struct {
	index int
	err   error
}

func (s *speaker) install(prefix netip.Prefix, nh, ll, peer netip.Addr, links map[netip.Addr]linkOf) error {
	if nh.Is6() && (!nh.IsValid() || nh.IsUnspecified() || nh.IsLinkLocalUnicast()) && ll.IsValid() {
		nh = ll
	}
	if !nh.IsValid() || nh.IsUnspecified() {
		return fmt.Errorf("no next hop")
	}
	nh = nh.Unmap()
	// The next hop must be on a segment the host is on: the route is
	// onlink there, as the peer says.
	l, ok := links[nh]
	if !ok {
		l = nextHopLink(nh, peer)
		links[nh] = l
	}
	if l.err != nil {
		return l.err
	}
	r := &netlink.Route{Dst: prefixNet(prefix), Gw: nh.AsSlice(), LinkIndex: l.index,
		Protocol: RouteProto, Flags: int(netlink.FLAG_ONLINK)}
	if err := netlink.RouteReplace(r); err != nil {
		return fmt.Errorf("install route %s via %s: %w", prefix, nh, err)
	}
	return nil
}

func nextHopLink(nh, peer netip.Addr) linkOf {
	probe := nh
	if nh.IsLinkLocalUnicast() {
		probe = peer
	}
	rs, err := netlink.RouteGet(probe.AsSlice())
	if err != nil || len(rs) == 0 {
		return linkOf{err: fmt.Errorf("next hop %s: no route to it: %v", nh, err)}
	}
	if rs[0].Gw != nil && !nh.IsLinkLocalUnicast() {
		return linkOf{err: fmt.Errorf("next hop %s is not on a network the host is on (reached via %s)", nh, rs[0].Gw)}
	}
	return linkOf{index: rs[0].LinkIndex}
}

// sweepStale removes the routes an earlier speaker installed that no
// peer announced again within a hold time.
func (s *speaker) sweepStale() {
	if len(s.stale) == 0 {
		return
	}
	hold := time.Duration(max(s.cfg.HoldTime, 3)) * time.Second
	if s.cfg.HoldTime == 0 {
		hold = DefaultHoldTime * time.Second
	}
	if time.Since(s.started) < hold {
		return
	}
	for p := range s.stale {
		if _, ok := s.learned[p]; !ok {
			if err := delRoute(p); err != nil {
				log.Printf("bgp speaker: remove stale %s: %v", p, err)
			}
		}
	}
	s.stale = nil
}

func (s *speaker) writeStatus() {
	st := nbgp.Status{Host: s.host, PID: os.Getpid(), ASN: s.cfg.ASN, RouterID: s.cfg.RouterID, Generation: s.gen,
		Error: s.err, Updated: time.Now(), Peers: []nbgp.PeerStatus{}, Announced: slices.SortedFunc(maps.Keys(s.announced), comparePrefix),
		Learned: []nbgp.Learned{}}
	received := map[netip.Addr]int{}
	for _, l := range slices.SortedFunc(maps.Values(s.learned), func(a, b nbgp.Learned) int { return comparePrefix(a.Prefix, b.Prefix) }) {
		st.Learned = append(st.Learned, l)
		received[l.Peer]++
	}
	for _, ig := range slices.SortedFunc(maps.Values(s.ignored), func(a, b nbgp.Ignored) int { return comparePrefix(a.Prefix, b.Prefix) }) {
		st.Ignored = append(st.Ignored, ig)
		received[ig.Peer]++
	}
	states := map[netip.Addr]nbgp.PeerStatus{}
	if s.srv != nil {
		err := s.srv.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) {
			a, err := netip.ParseAddr(p.GetConf().GetNeighborAddress())
			if err != nil {
				return
			}
			ps := nbgp.PeerStatus{State: sessionState(p.GetState().GetSessionState())}
			if t := p.GetTimers().GetState().GetUptime(); t != nil && ps.State == "established" {
				ps.Since = t.AsTime()
			} else if t := p.GetTimers().GetState().GetDowntime(); t != nil && t.AsTime().Unix() > 0 {
				ps.Since = t.AsTime()
			}
			states[a.Unmap()] = ps
		})
		if err != nil {
			log.Printf("bgp speaker: list peers: %v", err)
		}
	}
	for _, p := range slices.SortedFunc(maps.Values(s.peers), func(a, b store.BGPPeer) int { return a.Address.Compare(b.Address) }) {
		ps := states[p.Address]
		if ps.State == "" {
			ps.State = "idle"
		}
		ps.Address, ps.ASN, ps.Passive, ps.Received = p.Address, p.ASN, p.Passive, received[p.Address]
		st.Peers = append(st.Peers, ps)
	}
	if err := nbgp.WriteStatus(s.dir, s.host, st); err != nil {
		log.Printf("bgp speaker: write status: %v", err)
	}
	s.dirty, s.wrote = false, time.Now()
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

func sessionState(s api.PeerState_SessionState) string {
	switch s {
	case api.PeerState_SESSION_STATE_IDLE:
		return "idle"
	case api.PeerState_SESSION_STATE_CONNECT:
		return "connect"
	case api.PeerState_SESSION_STATE_ACTIVE:
		return "active"
	case api.PeerState_SESSION_STATE_OPENSENT:
		return "opensent"
	case api.PeerState_SESSION_STATE_OPENCONFIRM:
		return "openconfirm"
	case api.PeerState_SESSION_STATE_ESTABLISHED:
		return "established"
	}
	return "unknown"
}
