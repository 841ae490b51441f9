package cluster

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/nsnet/nsnet/internal/engine"
	"github.com/nsnet/nsnet/internal/store"
)

// VXLANOverhead is what vxlan over IPv4 adds to every packet: outer IPv4,
// UDP, vxlan and inner Ethernet headers.
const VXLANOverhead = 50

// Backends are the ways hosts reach each other's members.
var Backends = []string{"host-gw", "vxlan", "bgp"}

// LocalSpec is this host's part of cluster network n: a routed network
// over the whole subnet, whose members take addresses of the host's
// blocks. A vxlan network's members get the MTU of the host's underlay
// interface (the one holding j's address) less the encapsulation, unless
// the network was made with --mtu.
func LocalSpec(m *engine.Manager, n Network, j store.Joined) (engine.NetworkSpec, error) {
	mtu := n.MTU
	if n.Backend == "vxlan" && mtu == 0 {
		under, err := m.LinkMTU(j.Address)
		if err != nil {
			return engine.NetworkSpec{}, err
		}
		mtu = under - VXLANOverhead
	}
	return engine.NetworkSpec{Name: n.Name, Driver: "routed", Subnets: []netip.Prefix{n.Subnet}, MTU: mtu,
		Cluster: &store.ClusterNet{Backend: n.Backend, BlockBits: n.BlockBits, VNI: n.VNI}}, nil
}

// Connect joins a namespace to cluster network spec.Network on this host:
// it makes the host's part of the network if it has none, takes a free
// address of the host's blocks (claiming a block when they are full) and
// connects through the engine.
func Connect(m *engine.Manager, c *Client, j store.Joined, spec engine.ConnectSpec) (engine.MemberInfo, error) {
	mi, err := connect(m, c, j, spec)
	if err != nil && !strings.HasPrefix(err.Error(), "connect ") {
		err = fmt.Errorf("connect %s to %s: %w", spec.Namespace, spec.Network, err)
	}
	return mi, err
}

func connect(m *engine.Manager, c *Client, j store.Joined, spec engine.ConnectSpec) (engine.MemberInfo, error) {
	if len(spec.Ports) > 0 {
		return engine.MemberInfo{}, fmt.Errorf("network %q: published ports are not offered on cluster networks", spec.Network)
	}
	n, err := c.Network(spec.Network)
	if err != nil {
		return engine.MemberInfo{}, err
	}
	local, err := m.Network(n.Name)
	if errors.Is(err, engine.ErrNoNetwork) {
		ls, err := LocalSpec(m, n, j)
		if err != nil {
			return engine.MemberInfo{}, err
		}
		if local, err = m.CreateNetwork(ls); err != nil {
			return engine.MemberInfo{}, err
		}
	} else if err != nil {
		return engine.MemberInfo{}, err
	}
	if local.Cluster == nil {
		return engine.MemberInfo{}, fmt.Errorf("network %q: a network of this host only has that name; the cluster's cannot be joined here", n.Name)
	}
	used := map[netip.Addr]bool{}
	for _, mb := range local.Members {
		for _, a := range mb.Addrs {
			used[a.Addr()] = true
		}
	}
	blocks, err := c.Blocks(n.Name)
	if err != nil {
		return engine.MemberInfo{}, err
	}
	var own []Block
	for _, b := range blocks {
		if b.Host == j.Name {
			own = append(own, b)
			if err := m.AddClusterBlock(n.Name, b.Prefix); err != nil {
				return engine.MemberInfo{}, err
			}
		}
	}
	if spec.IPv6.IsValid() {
		return engine.MemberInfo{}, fmt.Errorf("network %q: cluster networks are IPv4 only", n.Name)
	}
	if a := spec.IPv4; a.IsValid() {
		ok := false
		for _, b := range own {
			ok = ok || b.Prefix.Contains(a) && a != b.Prefix.Addr()
		}
		if !n.Subnet.Contains(a) {
			return engine.MemberInfo{}, fmt.Errorf("address %s: outside the network's subnet %s", a, n.Subnet)
		}
		if !ok {
			return engine.MemberInfo{}, fmt.Errorf("address %s: not in a block of host %s (its blocks: %v); leave --ip out", a, j.Name, prefixes(own))
		}
	} else {
		spec.IPv4 = free(own, used)
		if !spec.IPv4.IsValid() {
			b, err := c.ClaimBlock(n, j.Name, j.Grace)
			if err != nil {
				return engine.MemberInfo{}, err
			}
			if err := m.AddClusterBlock(n.Name, b.Prefix); err != nil {
				return engine.MemberInfo{}, err
			}
			spec.IPv4 = free([]Block{b}, used)
		}
	}
	spec.Clustered = true
	return m.Connect(spec)
}

func prefixes(bs []Block) []netip.Prefix {
	out := make([]netip.Prefix, len(bs))
	for i, b := range bs {
		out[i] = b.Prefix
	}
	return out
}

// free is the first address of the blocks not used; a block's first
// address is the host's own (its vxlan device's), never a member's.
func free(blocks []Block, used map[netip.Addr]bool) netip.Addr {
	for _, b := range blocks {
		for a := b.Prefix.Addr().Next(); b.Prefix.Contains(a); a = a.Next() {
			if !used[a] {
				return a
			}
		}
	}
	return netip.Addr{}
}

// DefaultTTL is a host's lease, and DefaultGrace how long its blocks stay
// reserved after it died.
const (
	DefaultTTL   = 10
	DefaultGrace = 5 * time.Minute
)
