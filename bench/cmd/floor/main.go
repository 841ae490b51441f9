// Command floor is the benchmark's lower bound for attaching a namespace to
// a network: one process that makes only the netlink requests the topology
// needs (and the /proc/sys writes that have no netlink equivalent), with no
// state, no checks and no IPAM.
//
// "attach" joins a bridge network, with the same kernel end state as
// nsnet's connect: a veth whose host end is born on the bridge, with no
// IPv6 address generation and IPv6 off, then up, and whose peer is born
// in the member's namespace with the member's address, up, and a default
// route via the gateway.
//
// "attach-routed" joins a routed network (article 003), with the same end
// state as nsnet's routed connect: a veth whose host end has no IPv6
// address generation, IPv6 off and no address, answers ARP for the
// gateway by proxy without delay (writes to /proc/sys, which has no
// netlink equivalent), is up and carries a /32 route to the member; whose
// peer is born in the member's namespace with the member's /32, up, an
// on-link route to the gateway and a default route via it. (nsnet, when this was written, also
// set route_localnet on the host end for its DNS redirect to a loopback
// address; that belongs to its resolver, not to the routed topology, and
// the floor leaves it out as the article does.)
//
// Usage:
//
//	floor attach NSPATH BRIDGE HOSTIF IFNAME ADDR/BITS GATEWAY
//	floor attach-routed NSPATH HOSTIF IFNAME ADDR/32 GATEWAY
//	floor detach HOSTIF
//	floor lab N PREFIX BRIDGE SUBNET GATEWAY
//	floor unlab N PREFIX
//
// "lab" is the floor of a lab's apply: N namespaces PREFIX0000... made
// (with lo up, as nsnet makes them) and attached to the bridge, the i-th
// at SUBNET's (i+2)-th address, in this one process. "unlab" is the
// fastest way found to remove them: unmount every namespace, so that the
// kernel takes their veths along in batches, and wait until the last host
// end is gone.
package main

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/netns"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
)

// addrGenModeNone stops the kernel from generating an IPv6 link-local
// address, and with it DAD, router solicitations and MLD reports.
const addrGenModeNone = 1

func main() {
	var err error
	switch {
	case len(os.Args) == 8 && os.Args[1] == "attach":
		err = attach(os.Args[2], os.Args[3], os.Args[4], os.Args[5], os.Args[6], os.Args[7])
	case len(os.Args) == 7 && os.Args[1] == "attach-routed":
		err = attachRouted(os.Args[2], os.Args[3], os.Args[4], os.Args[5], os.Args[6])
	case len(os.Args) == 7 && os.Args[1] == "lab":
		err = lab(os.Args[2], os.Args[3], os.Args[4], os.Args[5], os.Args[6])
	case len(os.Args) == 4 && os.Args[1] == "unlab":
		err = unlab(os.Args[2], os.Args[3])
	case len(os.Args) == 3 && os.Args[1] == "detach":
		err = netlink.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: os.Args[2]}})
		if err != nil {
			err = fmt.Errorf("delete %s: %w", os.Args[2], err)
		}
	default:
		err = fmt.Errorf("usage: floor attach NSPATH BRIDGE HOSTIF IFNAME ADDR/BITS GATEWAY | floor attach-routed NSPATH HOSTIF IFNAME ADDR/32 GATEWAY | floor detach HOSTIF")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

// openMember opens the member's namespace and a netlink handle inside it.
func openMember(nsPath string) (vnetns.NsHandle, *netlink.Handle, error) {
	ns, err := vnetns.GetFromPath(nsPath)
	if err != nil {
		return ns, nil, fmt.Errorf("open %s: %w", nsPath, err)
	}
	in, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return ns, nil, fmt.Errorf("netlink in %s: %w", nsPath, err)
	}
	return ns, in, nil
}

func attach(nsPath, bridge, hostIf, ifName, cidr, gateway string) error {
	ip, ipnet, err := net.ParseCIDR(cidr)
	if err != nil {
		return fmt.Errorf("address %q: %w", cidr, err)
	}
	gw := net.ParseIP(gateway)
	if gw == nil {
		return fmt.Errorf("gateway %q is not an address", gateway)
	}
	ns, in, err := openMember(nsPath)
	if err != nil {
		return err
	}
	defer ns.Close()
	defer in.Close()

	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", bridge, err)
	}
	// Born down, to be up once IPv6 is off on it (as nsnet's connect
	// leaves it): an up device with IPv6 gets a multicast route of its
	// own, and the host's IPv6 routing table, which every link change
	// walks whole, would grow with the members.
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: hostIf, MasterIndex: br.Attrs().Index},
		PeerName:  ifName, PeerNamespace: netlink.NsFd(int(ns)),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s: %w", hostIf, err)
	}
	if err := netlink.LinkSetIP6AddrGenMode(veth, addrGenModeNone); err != nil {
		return fmt.Errorf("%s: %w", hostIf, err)
	}
	if err := writeSysctl("net/ipv6/conf/"+hostIf+"/disable_ipv6", "1"); err != nil {
		return err
	}
	if err := netlink.LinkSetUp(veth); err != nil {
		return fmt.Errorf("bring up %s: %w", hostIf, err)
	}
	peer, err := in.LinkByName(ifName)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", ifName, nsPath, err)
	}
	if err := in.LinkSetIP6AddrGenMode(peer, addrGenModeNone); err != nil {
		return fmt.Errorf("%s: %w", ifName, err)
	}
	ipnet.IP = ip
	if err := in.AddrAdd(peer, &netlink.Addr{IPNet: ipnet}); err != nil {
		return fmt.Errorf("address %s on %s: %w", cidr, ifName, err)
	}
	if err := in.LinkSetUp(peer); err != nil {
		return fmt.Errorf("bring up %s: %w", ifName, err)
	}
	if err := in.RouteAdd(&netlink.Route{LinkIndex: peer.Attrs().Index, Gw: gw}); err != nil {
		return fmt.Errorf("default route via %s: %w", gateway, err)
	}
	return nil
}

func attachRouted(nsPath, hostIf, ifName, cidr, gateway string) error {
	ip, ipnet, err := net.ParseCIDR(cidr)
	if err != nil {
		return fmt.Errorf("address %q: %w", cidr, err)
	}
	gw := net.ParseIP(gateway).To4()
	if gw == nil {
		return fmt.Errorf("gateway %q is not an IPv4 address", gateway)
	}
	ns, in, err := openMember(nsPath)
	if err != nil {
		return err
	}
	defer ns.Close()
	defer in.Close()

	// Born down, and up once IPv6 is off on it (as nsnet's connect
	// leaves it), so that it never has a multicast route in the host's
	// IPv6 table (see attach); up before the /32 route, which needs it.
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: hostIf},
		PeerName:  ifName, PeerNamespace: netlink.NsFd(int(ns)),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s: %w", hostIf, err)
	}
	if err := netlink.LinkSetIP6AddrGenMode(veth, addrGenModeNone); err != nil {
		return fmt.Errorf("%s: %w", hostIf, err)
	}
	// The kernel delays proxy answers by up to 0.8 s unless told not to.
	for _, s := range []struct{ key, value string }{
		{"net/ipv4/conf/" + hostIf + "/proxy_arp", "1"},
		{"net/ipv4/neigh/" + hostIf + "/proxy_delay", "0"},
		{"net/ipv6/conf/" + hostIf + "/disable_ipv6", "1"},
	} {
		if err := writeSysctl(s.key, s.value); err != nil {
			return err
		}
	}
	if err := netlink.LinkSetUp(veth); err != nil {
		return fmt.Errorf("bring up %s: %w", hostIf, err)
	}
	host := &net.IPNet{IP: ip, Mask: net.CIDRMask(32, 32)}
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: veth.Attrs().Index, Dst: host, Scope: netlink.SCOPE_LINK}); err != nil {
		return fmt.Errorf("route to %s on %s: %w", ip, hostIf, err)
	}

	peer, err := in.LinkByName(ifName)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", ifName, nsPath, err)
	}
	if err := in.LinkSetIP6AddrGenMode(peer, addrGenModeNone); err != nil {
		return fmt.Errorf("%s: %w", ifName, err)
	}
	ipnet.IP = ip
	if err := in.AddrAdd(peer, &netlink.Addr{IPNet: ipnet}); err != nil {
		return fmt.Errorf("address %s on %s: %w", cidr, ifName, err)
	}
	if err := in.LinkSetUp(peer); err != nil {
		return fmt.Errorf("bring up %s: %w", ifName, err)
	}
	// nsnet adds both the on-link /32 to the gateway and an on-link
	// default route; the floor builds the same end state.
	idx := peer.Attrs().Index
	if err := in.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: &net.IPNet{IP: gw, Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK}); err != nil {
		return fmt.Errorf("route to %s: %w", gateway, err)
	}
	if err := in.RouteAdd(&netlink.Route{LinkIndex: idx, Gw: gw, Flags: int(netlink.FLAG_ONLINK)}); err != nil {
		return fmt.Errorf("default route via %s: %w", gateway, err)
	}
	return nil
}

// writeSysctl writes one value under /proc/sys, which belongs to the
// network namespace of the process writing it: the host's.
func writeSysctl(key, value string) error {
	f, err := os.OpenFile("/proc/sys/"+key, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("sysctl %s: %w", key, err)
	}
	if _, err := f.WriteString(value); err != nil {
		f.Close()
		return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

func lab(count, prefix, bridge, subnet, gateway string) error {
	n, err := strconv.Atoi(count)
	if err != nil {
		return fmt.Errorf("count %q: %w", count, err)
	}
	p, err := netip.ParsePrefix(subnet)
	if err != nil {
		return err
	}
	a := p.Masked().Addr().Next()
	for i := range n {
		a = a.Next()
		name := fmt.Sprintf("%s%04d", prefix, i)
		if err := netns.Create(name); err != nil {
			return err
		}
		ns, in, err := openMember(netns.Path(name))
		if err != nil {
			return err
		}
		lo, err := in.LinkByName("lo")
		if err == nil {
			err = in.LinkSetUp(lo)
		}
		in.Close()
		ns.Close()
		if err != nil {
			return fmt.Errorf("lo up in %s: %w", name, err)
		}
		if err := attach(netns.Path(name), bridge, fmt.Sprintf("fh%04d", i), "eth0", netip.PrefixFrom(a, p.Bits()).String(), gateway); err != nil {
			return err
		}
	}
	return nil
}

func unlab(count, prefix string) error {
	n, err := strconv.Atoi(count)
	if err != nil {
		return fmt.Errorf("count %q: %w", count, err)
	}
	for i := range n {
		if err := netns.Delete(fmt.Sprintf("%s%04d", prefix, i)); err != nil {
			return err
		}
	}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(25 * time.Millisecond) {
		// Namespaces going away take their links out under the dump.
		links, err := kernel.Retry(netlink.LinkList)
		if err != nil {
			return err
		}
		left := 0
		for _, l := range links {
			if strings.HasPrefix(l.Attrs().Name, "fh") {
				left++
			}
		}
		if left == 0 {
			return nil
		}
	}
	return fmt.Errorf("host ends still there after a minute")
}
