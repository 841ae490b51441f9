// Command floor is the benchmark's lower bound for attaching a namespace to
// a bridge network: one process that makes only the netlink requests the
// topology needs, with no state, no checks and no IPAM. It builds the same
// kernel end state as nsnet's connect: a veth whose host end is born on the
// bridge, up, with no IPv6 address generation, and whose peer is born in the
// member's namespace with the member's address, up, and a default route via
// the gateway.
//
// Usage:
//
//	floor attach NSPATH BRIDGE HOSTIF IFNAME ADDR/BITS GATEWAY
//	floor detach HOSTIF
package main

import (
	"fmt"
	"net"
	"os"

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
	case len(os.Args) == 3 && os.Args[1] == "detach":
		err = netlink.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: os.Args[2]}})
		if err != nil {
			err = fmt.Errorf("delete %s: %w", os.Args[2], err)
		}
	default:
		err = fmt.Errorf("usage: floor attach NSPATH BRIDGE HOSTIF IFNAME ADDR/BITS GATEWAY | floor detach HOSTIF")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
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
	ns, err := vnetns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("open %s: %w", nsPath, err)
	}
	defer ns.Close()
	in, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", nsPath, err)
	}
	defer in.Close()

	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", bridge, err)
	}
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: hostIf, MasterIndex: br.Attrs().Index, Flags: net.FlagUp},
		PeerName:  ifName, PeerNamespace: netlink.NsFd(int(ns)),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s: %w", hostIf, err)
	}
	if err := netlink.LinkSetIP6AddrGenMode(veth, addrGenModeNone); err != nil {
		return fmt.Errorf("%s: %w", hostIf, err)
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
