package bench

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"

	"github.com/nsnet/nsnet/internal/netns"
)

// Addresses. Container subnets are private ranges that exist only inside
// the sandbox's namespaces; "the outside" uses a documentation range.
var (
	benchSubnet  = netip.MustParsePrefix("10.88.0.0/16")
	benchGateway = netip.MustParseAddr("10.88.0.1")
	routedSubnet = netip.MustParsePrefix("10.99.0.0/24")
	// routedNet is the routed attach benchmark's network: a /16 like the
	// bridge's, so that N=1000 fits.
	routedNet = netip.MustParsePrefix("10.99.0.0/16")
	// routedGateway is article 003's link-local gateway, which the host
	// end of each member's veth answers for by proxy ARP.
	routedGateway = netip.MustParseAddr("169.254.1.1")
	pairSubnet    = netip.MustParsePrefix("10.98.0.0/24")
	uplinkSubnet  = netip.MustParsePrefix("198.51.100.0/24")
	uplinkHost    = netip.MustParseAddr("198.51.100.1")
	outsideAddr   = netip.MustParseAddr("198.51.100.2")
)

// nthHost returns the address i places after p's first usable one.
func nthHost(p netip.Prefix, i int) netip.Addr {
	b := p.Masked().Addr().As4()
	v := binary.BigEndian.Uint32(b[:]) + 1 + uint32(i)
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// memberAddr is the address of member i on the bench network; the
// gateway is the first usable address, so members start at the second.
func memberAddr(i int) netip.Addr { return nthHost(benchSubnet, i+1) }

// member is one namespace to attach.
type member struct {
	Index int
	NS    string
	Addr  netip.Addr
	// HostIf names the host end for the tools that take a name from the
	// caller (by hand, floor).
	HostIf string
}

func (m member) path() string { return netns.Path(m.NS) }

func (m member) cidr() string { return netip.PrefixFrom(m.Addr, benchSubnet.Bits()).String() }

func newMember(prefix string, i int) member {
	return member{Index: i, NS: fmt.Sprintf("%s%04d", prefix, i), Addr: memberAddr(i), HostIf: fmt.Sprintf("vh%04d", i)}
}

// host is one tool run's world: a fresh namespace that plays the host, the
// thread that starts processes inside it, and a state directory on the
// sandbox's tmpfs.
type host struct {
	name   string
	thread *nsThread
	launch *launcher
	dir    string
	bin    *Binaries
	// outside is the namespace behind the host's uplink, if any.
	outside string
}

func newHost(name string, bin *Binaries, stateRoot string) (*host, error) {
	if err := createNetns(name, true); err != nil {
		return nil, err
	}
	t, err := enterThread(name)
	if err != nil {
		netns.Delete(name)
		return nil, err
	}
	h := &host{name: name, thread: t, dir: filepath.Join(stateRoot, name), bin: bin}
	if h.launch, err = t.startLauncher(bin.Launcher); err != nil {
		t.stop()
		netns.Delete(name)
		return nil, err
	}
	if err := os.MkdirAll(h.dir, 0o755); err != nil {
		h.close()
		return nil, fmt.Errorf("state directory: %w", err)
	}
	return h, nil
}

// run runs one process in the host namespace, through the launcher.
func (h *host) run(c command) ([]byte, Sample, error) { return h.launch.run(c) }

// runAll runs commands one after the other as one operation.
func (h *host) runAll(cs ...command) (Sample, error) {
	var total Sample
	for _, c := range cs {
		_, s, err := h.run(c)
		total.add(s)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// close deletes the host namespace, the outside one and the state.
func (h *host) close() {
	h.launch.close()
	h.thread.stop()
	netns.Delete(h.name)
	if h.outside != "" {
		netns.Delete(h.outside)
	}
	os.RemoveAll(h.dir)
}

// addOutside creates "the outside network": a namespace joined to the host
// by a veth, 198.51.100.1 on the host's end and 198.51.100.2 on the other,
// which is also the host's default gateway. The outside has no route back
// to any container subnet unless routes says so.
func (h *host) addOutside(routes ...netip.Prefix) error {
	name := h.name + "-out"
	if err := createNetns(name, true); err != nil {
		return err
	}
	h.outside = name
	hn, err := nlHandle(h.name)
	if err != nil {
		return err
	}
	defer hn.Close()
	on, err := nlHandle(name)
	if err != nil {
		return err
	}
	defer on.Close()
	ofd, err := netns.Open(netns.Path(name))
	if err != nil {
		return err
	}
	defer ofd.Close()
	up := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "uplink", Flags: net.FlagUp}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ofd))}
	if err := hn.LinkAdd(up); err != nil {
		return fmt.Errorf("uplink: %w", err)
	}
	if err := hn.AddrAdd(up, &netlink.Addr{IPNet: ipNet(uplinkHost, uplinkSubnet.Bits())}); err != nil {
		return fmt.Errorf("uplink address: %w", err)
	}
	peer, err := on.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("outside eth0: %w", err)
	}
	if err := on.AddrAdd(peer, &netlink.Addr{IPNet: ipNet(outsideAddr, uplinkSubnet.Bits())}); err != nil {
		return fmt.Errorf("outside address: %w", err)
	}
	if err := on.LinkSetUp(peer); err != nil {
		return fmt.Errorf("outside eth0 up: %w", err)
	}
	// Like a real host, the host's default route points at its uplink;
	// nothing beyond the outside namespace exists.
	if err := hn.RouteAdd(&netlink.Route{Gw: outsideAddr.AsSlice()}); err != nil {
		return fmt.Errorf("host default route: %w", err)
	}
	for _, r := range routes {
		if err := on.RouteAdd(&netlink.Route{Dst: ipNet(r.Addr(), r.Bits()), Gw: uplinkHost.AsSlice()}); err != nil {
			return fmt.Errorf("outside route to %s: %w", r, err)
		}
	}
	return nil
}

func ipNet(a netip.Addr, bits int) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, a.BitLen())}
}

// handBridge is the network the source articles build by hand: a bridge
// with the gateway address, forwarding on, and one masquerade rule for the
// subnet.
func (h *host) handBridge(bridge string, subnet netip.Prefix, gw netip.Addr) error {
	ip := h.bin.IP
	_, err := h.runAll(
		cmd(ip, "link", "add", bridge, "type", "bridge"),
		cmd(ip, "addr", "add", netip.PrefixFrom(gw, subnet.Bits()).String(), "dev", bridge),
		cmd(ip, "link", "set", bridge, "up"),
		cmd(h.bin.Sysctl, "-q", "-w", "net.ipv4.ip_forward=1"),
		cmd(h.bin.NFT, "add", "table", "ip", "nat"),
		cmd(h.bin.NFT, "add", "chain", "ip", "nat", "postrouting", "{ type nat hook postrouting priority srcnat; policy accept; }"),
		cmd(h.bin.NFT, "add", "rule", "ip", "nat", "postrouting", "ip", "saddr", subnet.String(), "oifname", "!=", bridge, "masquerade"),
	)
	return err
}

// handAttachCmds are the article's steps for one member: a veth pair, one
// end moved into the namespace, the other enslaved to the bridge, then the
// address, link and default route set from inside the namespace.
func handAttachCmds(b *Binaries, bridge, hostIf, peer, ns string, addr netip.Prefix, gw netip.Addr) []command {
	ip := b.IP
	in := func(args ...string) command { return cmd(append([]string{ip, "netns", "exec", ns, ip}, args...)...) }
	return []command{
		cmd(ip, "link", "add", hostIf, "type", "veth", "peer", "name", peer),
		cmd(ip, "link", "set", peer, "netns", ns),
		cmd(ip, "link", "set", hostIf, "master", bridge),
		cmd(ip, "link", "set", hostIf, "up"),
		in("addr", "add", addr.String(), "dev", peer),
		in("link", "set", peer, "up"),
		in("route", "add", "default", "via", gw.String()),
	}
}
