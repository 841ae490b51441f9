package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sys/unix"

	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/netns"
	"github.com/nsnet/nsnet/internal/store"
)

// RouteProto marks the routes the keeper installs: other hosts' blocks
// and the blackholes of this host's own (`ip route show proto 112`).
const RouteProto netlink.RouteProtocol = 112

// Files of the keeper in the state directory.
const (
	LockFile   = "cluster.lock"
	StatusFile = "cluster.json"
	LogFile    = "cluster.log"
)

// KeeperStatus is what the keeper last reported.
type KeeperStatus struct {
	PID     int       `json:"pid"`
	Host    string    `json:"host"`
	Lease   int64     `json:"lease"`
	Error   string    `json:"error,omitempty"`
	Synced  time.Time `json:"synced,omitzero"`
	Updated time.Time `json:"updated"`
}

// ReadKeeperStatus reads the keeper's last report.
func ReadKeeperStatus(stateDir string) (KeeperStatus, bool) {
	var s KeeperStatus
	raw, err := os.ReadFile(filepath.Join(stateDir, StatusFile))
	if err != nil || json.Unmarshal(raw, &s) != nil {
		return s, false
	}
	return s, true
}

// RunKeeper is the host's cluster keeper (nsnet-cluster keeper, started by
// the agent inside the host's namespace while the host has joined a
// cluster): it keeps the host's lease alive, publishes its vxlan
// endpoints, routes to the other live hosts' blocks, and releases the
// blocks of hosts dead for longer than their grace. It returns when the
// state directory goes, the host's namespace goes, or at once if another
// keeper serves the state directory.
func RunKeeper(stateDir string) error {
	f, err := os.OpenFile(filepath.Join(stateDir, LockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		return nil
	}
	if err := f.Truncate(0); err == nil {
		fmt.Fprintln(f, os.Getpid())
	}
	defer f.Truncate(0)
	k := &keeper{dir: stateDir, ino: netns.PathInode("")}
	log.Printf("cluster keeper %d serving %s", os.Getpid(), stateDir)
	for {
		err := k.session()
		if errors.Is(err, errDone) {
			return nil
		}
		k.report(err)
		log.Printf("cluster keeper: %v; again in a second", err)
		time.Sleep(time.Second)
	}
}

var (
	errDone   = errors.New("done")
	errRejoin = errors.New("rejoin")
)

type keeper struct {
	dir   string
	ino   uint64
	j     store.Joined
	c     *Client
	lease clientv3.LeaseID
	nets  []store.Network
	last  time.Time
}

func (k *keeper) report(err error) {
	s := KeeperStatus{PID: os.Getpid(), Host: k.j.Name, Lease: int64(k.lease), Updated: time.Now()}
	if err != nil {
		s.Error = err.Error()
	} else {
		s.Synced = s.Updated
	}
	raw, _ := json.Marshal(s)
	p := filepath.Join(k.dir, StatusFile)
	if os.WriteFile(p+".tmp", raw, 0o600) == nil {
		os.Rename(p+".tmp", p)
	}
}

// readLocal reads this host's membership and its cluster networks; done
// says the keeper has nothing to keep.
func (k *keeper) readLocal() (done bool, err error) {
	if _, err := os.Stat(filepath.Join(k.dir, store.FileName)); err != nil {
		return true, nil
	}
	if k.j.HostNetns != "" && netns.PathInode(k.j.HostNetns) != k.ino {
		return true, nil
	}
	st, err := store.OpenTimeout(k.dir, true, time.Second)
	if err != nil {
		return false, err
	}
	defer st.Close()
	var ok bool
	k.nets = k.nets[:0]
	err = st.View(func(tx *store.Tx) error {
		if k.j, ok, err = tx.Joined(); err != nil || !ok {
			return err
		}
		all, err := tx.Networks()
		for _, n := range all {
			if n.Cluster != nil {
				k.nets = append(k.nets, n)
			}
		}
		return err
	})
	return err == nil && !ok, err
}

// session keeps the host joined until something fails.
func (k *keeper) session() error {
	if done, err := k.readLocal(); done {
		k.cleanup()
		return errDone
	} else if err != nil {
		return err
	}
	c, err := Dial(Config{Endpoints: k.j.Endpoints, Prefix: k.j.Prefix, Cert: k.j.Cert, Key: k.j.Key, CA: k.j.CA})
	if err != nil {
		return err
	}
	defer c.Close()
	k.c = c
	host := Host{Name: k.j.Name, Address: k.j.Address, Joined: k.j.Joined, TTL: k.j.TTL, Grace: k.j.Grace}
	if k.lease, err = c.Rejoin(host); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	alive, err := c.KeepAlive(ctx, k.lease)
	if err != nil {
		return err
	}
	changed := c.Watch(ctx)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var stamp os.FileInfo
	dirty := true
	for {
		select {
		case _, ok := <-alive:
			if !ok {
				return fmt.Errorf("lease %x lost", k.lease)
			}
			continue
		case _, ok := <-changed:
			if !ok {
				return errors.New("watch ended")
			}
			dirty = true
		case <-tick.C:
			fi, err := os.Stat(filepath.Join(k.dir, store.FileName))
			if err != nil || stamp == nil || !fi.ModTime().Equal(stamp.ModTime()) {
				stamp, dirty = fi, true
			}
			// Grace periods run out without an event.
			dirty = dirty || time.Since(k.last) > 5*time.Second
		}
		if !dirty {
			continue
		}
		dirty = false
		if done, err := k.readLocal(); done {
			k.cleanup()
			c.Leave(k.lease)
			return errDone
		} else if err != nil {
			k.report(err)
			continue
		}
		err := k.sync()
		if errors.Is(err, errRejoin) {
			return fmt.Errorf("host %s was removed from the cluster while alive; joining again", k.j.Name)
		}
		k.last = time.Now()
		k.report(err)
		if err != nil {
			log.Printf("cluster keeper: %v", err)
		}
	}
}

// route is one route the keeper wants.
type route struct {
	dst   netip.Prefix
	via   netip.Addr
	link  int
	black bool
}

func (k *keeper) sync() error {
	hosts, err := k.c.Hosts()
	if err != nil {
		return err
	}
	blocks, err := k.c.Blocks("")
	if err != nil {
		return err
	}
	vteps, err := k.c.VTEPs()
	if err != nil {
		return err
	}
	live := map[string]Host{}
	for _, h := range hosts {
		live[h.Name] = h
	}
	if _, ok := live[k.j.Name]; !ok {
		// Removed behind the host's back (host rm): join again.
		return errRejoin
	}
	errs := []error{k.keepBlocks(blocks)}
	// Blocks of dead hosts: reserved for their grace, then released; a
	// host that came back takes its own back.
	for _, b := range blocks {
		_, ok := live[b.Host]
		switch {
		case b.Host == k.j.Name && !b.Orphaned.IsZero():
			errs = append(errs, k.c.Adopt(b))
		case ok:
		case b.Orphaned.IsZero():
			errs = append(errs, k.c.MarkOrphaned(b, time.Now().UTC()))
		case time.Since(b.Orphaned) > b.Grace:
			log.Printf("cluster keeper: releasing %s of %s: host %s dead since %s", b.Prefix, b.Network, b.Host, b.Orphaned.Format(time.RFC3339))
			errs = append(errs, k.c.Release(b))
		}
	}
	nets, err := k.c.Networks()
	if err != nil {
		return err
	}
	local := map[string]store.Network{}
	for _, n := range k.nets {
		local[n.Name] = n
	}
	var want []route
	wantDevs := map[string]bool{}
	// Every cluster network's blocks are routed, so the host itself
	// reaches every member; a vxlan device only where the host has a
	// part of the network.
	for _, cn := range nets {
		n, ok := local[cn.Name]
		if !ok {
			if cn.Backend != "host-gw" {
				continue
			}
			n = store.Network{Name: cn.Name, MTU: cn.MTU, Cluster: &store.ClusterNet{Backend: cn.Backend, BlockBits: cn.BlockBits, VNI: cn.VNI}}
		}
		var own []Block
		for _, b := range blocks {
			if b.Network == n.Name && b.Host == k.j.Name {
				own = append(own, b)
				want = append(want, route{dst: b.Prefix, black: true})
			}
		}
		switch n.Cluster.Backend {
		case "host-gw":
			for _, b := range blocks {
				h, ok := live[b.Host]
				if b.Network != n.Name || b.Host == k.j.Name || !ok {
					continue
				}
				idx, err := directLink(h.Address)
				if err != nil {
					errs = append(errs, fmt.Errorf("host %s: %w (host-gw needs the hosts on one segment; use the vxlan backend)", h.Name, err))
					continue
				}
				want = append(want, route{dst: b.Prefix, via: h.Address, link: idx})
			}
		case "vxlan":
			dev := vxlanName(n.Cluster.VNI)
			wantDevs[dev] = true
			link, err := k.ensureVXLAN(n, dev, own)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			rs, err := k.programVXLAN(n, link, blocks, vteps, live)
			errs = append(errs, err)
			want = append(want, rs...)
		}
	}
	errs = append(errs, syncRoutes(want), removeVXLANs(wantDevs))
	return errors.Join(errs...)
}

// keepBlocks keeps this host's local record of its blocks, from which it
// hands out addresses without etcd, true to etcd. A block etcd lost for
// it (released while the host was cut off for longer than its grace) is
// claimed again if free; one another host holds meanwhile is dropped from
// the record, and its members here are reported: they share addresses
// with that host's.
func (k *keeper) keepBlocks(blocks []Block) error {
	holder := map[string]map[netip.Prefix]string{}
	for _, b := range blocks {
		if holder[b.Network] == nil {
			holder[b.Network] = map[netip.Prefix]string{}
		}
		holder[b.Network][b.Prefix] = b.Host
	}
	var errs []error
	for _, n := range k.nets {
		for _, p := range n.Cluster.Blocks {
			h := holder[n.Name][p]
			if h == k.j.Name {
				continue
			}
			if h == "" {
				ok, err := k.c.claim(Block{Network: n.Name, Prefix: p, Host: k.j.Name, Claimed: time.Now().UTC(), Grace: k.j.Grace})
				if err != nil || ok {
					errs = append(errs, err)
					continue
				}
			}
			errs = append(errs, fmt.Errorf("network %s: block %s, which this host's members use, is now another host's", n.Name, p))
			errs = append(errs, k.dropBlock(n.Name, p))
		}
	}
	return errors.Join(errs...)
}

// dropBlock forgets a block in the local record.
func (k *keeper) dropBlock(network string, p netip.Prefix) error {
	st, err := store.OpenTimeout(k.dir, false, time.Second)
	if err != nil {
		return err
	}
	defer st.Close()
	return st.Update(func(tx *store.Tx) error {
		n, ok, err := tx.Network(network)
		if err != nil || !ok || n.Cluster == nil {
			return err
		}
		n.Cluster.Blocks = slices.DeleteFunc(n.Cluster.Blocks, func(b netip.Prefix) bool { return b == p })
		return tx.PutNetwork(n)
	})
}

func vxlanName(vni int) string { return "nsx" + strconv.Itoa(vni) }

// directLink is the interface a neighbour on a segment of the host is
// reached on.
func directLink(a netip.Addr) (int, error) {
	rs, err := netlink.RouteGet(a.AsSlice())
	if err != nil || len(rs) == 0 {
		return 0, fmt.Errorf("no route to %s: %v", a, err)
	}
	if rs[0].Gw != nil {
		return 0, fmt.Errorf("%s is not on a segment of this host (reached via %s)", a, rs[0].Gw)
	}
	return rs[0].LinkIndex, nil
}

// ensureVXLAN makes the network's vxlan device (learning off: every
// entry comes from etcd), gives it the first address of the host's first
// block, and publishes the host's endpoint.
func (k *keeper) ensureVXLAN(n store.Network, dev string, own []Block) (netlink.Link, error) {
	link, err := netlink.LinkByName(dev)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return nil, fmt.Errorf("vxlan %s: %w", dev, err)
		}
		under, err := directLinkOf(k.j.Address)
		if err != nil {
			return nil, err
		}
		mtu := n.MTU
		if mtu == 0 {
			mtu = under.Attrs().MTU - VXLANOverhead
		}
		vx := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: dev, MTU: mtu}, VxlanId: n.Cluster.VNI,
			VtepDevIndex: under.Attrs().Index, SrcAddr: k.j.Address.AsSlice(), Port: 4789, Learning: false}
		if err := netlink.LinkAdd(vx); err != nil {
			return nil, fmt.Errorf("vxlan %s: %w", dev, err)
		}
		if link, err = netlink.LinkByName(dev); err != nil {
			return nil, fmt.Errorf("vxlan %s: %w", dev, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("vxlan %s up: %w", dev, err)
	}
	if len(own) == 0 {
		return link, nil // nothing to be reached at yet
	}
	inner := own[0].Prefix.Addr()
	addr := kernel.AddrFor(inner, 32)
	if err := netlink.AddrReplace(link, addr); err != nil {
		return nil, fmt.Errorf("vxlan %s address %s: %w", dev, inner, err)
	}
	v := VTEP{Network: n.Name, Host: k.j.Name, MAC: link.Attrs().HardwareAddr.String(), Inner: inner, Outer: k.j.Address}
	return link, k.c.PutVTEP(v, k.lease)
}

func directLinkOf(a netip.Addr) (netlink.Link, error) {
	addrs, err := kernel.Retry(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return nil, err
	}
	for _, x := range addrs {
		if ip, ok := netip.AddrFromSlice(x.IP); ok && ip.Unmap() == a {
			return netlink.LinkByIndex(x.LinkIndex)
		}
	}
	return nil, fmt.Errorf("address %s is on no interface of this host", a)
}

// programVXLAN puts, for each other live host's endpoint, the neighbour
// entry, then the FDB entry (Flannel's order: the kernel never has to
// ask), and returns the routes to its blocks through it.
func (k *keeper) programVXLAN(n store.Network, link netlink.Link, blocks []Block, vteps []VTEP, live map[string]Host) ([]route, error) {
	var errs []error
	var want []route
	wantNeigh := map[string]bool{}
	wantFDB := map[string]bool{}
	for _, v := range vteps {
		if v.Network != n.Name || v.Host == k.j.Name {
			continue
		}
		if _, ok := live[v.Host]; !ok {
			continue
		}
		mac, err := net.ParseMAC(v.MAC)
		if err != nil {
			errs = append(errs, fmt.Errorf("host %s's vxlan MAC %q: %w", v.Host, v.MAC, err))
			continue
		}
		idx := link.Attrs().Index
		neigh := &netlink.Neigh{LinkIndex: idx, Family: unix.AF_INET, State: netlink.NUD_PERMANENT, IP: v.Inner.AsSlice(), HardwareAddr: mac}
		if err := netlink.NeighSet(neigh); err != nil {
			errs = append(errs, fmt.Errorf("vxlan neighbour %s: %w", v.Inner, err))
			continue
		}
		fdb := &netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, State: netlink.NUD_PERMANENT,
			IP: v.Outer.AsSlice(), HardwareAddr: mac}
		if err := netlink.NeighSet(fdb); err != nil {
			errs = append(errs, fmt.Errorf("vxlan FDB %s: %w", v.MAC, err))
			continue
		}
		wantNeigh[v.Inner.String()], wantFDB[mac.String()] = true, true
		for _, b := range blocks {
			if b.Network == n.Name && b.Host == v.Host {
				want = append(want, route{dst: b.Prefix, via: v.Inner, link: idx})
			}
		}
	}
	// Entries of hosts gone.
	if ns, err := kernel.Retry(func() ([]netlink.Neigh, error) { return netlink.NeighList(link.Attrs().Index, unix.AF_INET) }); err == nil {
		for _, e := range ns {
			if !wantNeigh[e.IP.String()] {
				netlink.NeighDel(&e)
			}
		}
	}
	if ns, err := kernel.Retry(func() ([]netlink.Neigh, error) { return netlink.NeighList(link.Attrs().Index, unix.AF_BRIDGE) }); err == nil {
		for _, e := range ns {
			if e.HardwareAddr != nil && !wantFDB[e.HardwareAddr.String()] && e.HardwareAddr.String() != "00:00:00:00:00:00" {
				netlink.NeighDel(&e)
			}
		}
	}
	return want, errors.Join(errs...)
}

// syncRoutes makes the keeper's routes exactly want.
func syncRoutes(want []route) error {
	have, err := kernel.Retry(func() ([]netlink.Route, error) {
		return netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: RouteProto, Table: unix.RT_TABLE_MAIN},
			netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	var errs []error
	byDst := map[netip.Prefix]route{}
	for _, r := range want {
		byDst[r.dst] = r
	}
	for _, r := range have {
		p, _ := kernel.ToPrefix(r.Dst)
		w, ok := byDst[p]
		gw, _ := netip.AddrFromSlice(r.Gw)
		if ok && w.black == (r.Type == unix.RTN_BLACKHOLE) && gw.Unmap() == w.via && (w.black || r.LinkIndex == w.link) {
			delete(byDst, p)
			continue
		}
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("remove route %s: %w", p, err))
		}
	}
	for _, w := range byDst {
		r := &netlink.Route{Dst: kernel.PrefixNet(w.dst), Protocol: RouteProto}
		if w.black {
			r.Type = unix.RTN_BLACKHOLE
		} else {
			r.Gw, r.LinkIndex, r.Flags = w.via.AsSlice(), w.link, int(netlink.FLAG_ONLINK)
		}
		if err := netlink.RouteReplace(r); err != nil {
			errs = append(errs, fmt.Errorf("route %s: %w", w.dst, err))
		}
	}
	return errors.Join(errs...)
}

// removeVXLANs removes the keeper's vxlan devices of networks gone.
func removeVXLANs(want map[string]bool) error {
	links, err := kernel.Retry(netlink.LinkList)
	if err != nil {
		return err
	}
	var errs []error
	for _, l := range links {
		name := l.Attrs().Name
		if l.Type() == "vxlan" && strings.HasPrefix(name, "nsx") && !want[name] {
			if err := netlink.LinkDel(l); err != nil {
				errs = append(errs, fmt.Errorf("remove %s: %w", name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// cleanup removes everything the keeper made on this host.
func (k *keeper) cleanup() {
	if err := errors.Join(syncRoutes(nil), removeVXLANs(nil)); err != nil {
		log.Printf("cluster keeper: clean up: %v", err)
	}
	os.Remove(filepath.Join(k.dir, StatusFile))
}
