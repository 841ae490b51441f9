package engine

import (
	"net/netip"
	"sort"
	"time"

	"github.com/nsnet/nsnet/internal/store"
)

// The API's views: what commands print, with -o json as their JSON. They
// are built from the store's records but are not them, so the record can
// change (a new internal field, the host's inode) without changing what
// users and scripts read.

// NetworkInfo is a network with its members.
type NetworkInfo struct {
	Name     string         `json:"name"`
	Driver   string         `json:"driver"`
	Subnets  []netip.Prefix `json:"subnets"`
	Gateways []netip.Addr   `json:"gateways"`
	// Bridge is the device the network owns in the host, if any.
	Bridge string `json:"bridge,omitempty"`
	// Options are the driver's own settings, by flag name.
	Options        map[string]string `json:"options,omitempty"`
	NAT            bool              `json:"nat"`
	Internal       bool              `json:"internal"`
	Isolate        bool              `json:"isolate"`
	DNS            bool              `json:"dns"`
	DNSUpstreams   []netip.Addr      `json:"dns_upstreams,omitempty"`
	MTU            int               `json:"mtu,omitempty"`
	HostFirewall   bool              `json:"host_firewall"`
	ForwardAccepts []ChainInfo       `json:"forward_accepts,omitempty"`
	// Host is the host namespace's path; empty for the namespace nsnet
	// ran in.
	Host    string       `json:"host_netns,omitempty"`
	Created time.Time    `json:"created"`
	Members []MemberInfo `json:"members"`
}

// ChainInfo names another table's forward chain nsnet put accepts in.
type ChainInfo struct {
	Family string `json:"family"`
	Table  string `json:"table"`
	Chain  string `json:"chain"`
}

// MemberInfo is one namespace's membership of a network.
type MemberInfo struct {
	Network   string         `json:"network"`
	Namespace string         `json:"namespace"`
	IfName    string         `json:"ifname"`
	HostIf    string         `json:"host_if,omitempty"`
	Addrs     []netip.Prefix `json:"addrs"`
	Ports     []PortMap      `json:"ports,omitempty"`
	Aliases   []string       `json:"aliases,omitempty"`
}

// PortMap publishes a range of a member's ports on the host (`-p`).
type PortMap = store.PortMap

// LinkInfo is a veth pair straight between two namespaces.
type LinkInfo struct {
	NS1    string         `json:"ns1"`
	If1    string         `json:"if1"`
	Addrs1 []netip.Prefix `json:"addrs1,omitempty"`
	NS2    string         `json:"ns2"`
	If2    string         `json:"if2"`
	Addrs2 []netip.Prefix `json:"addrs2,omitempty"`
	MTU    int            `json:"mtu,omitempty"`
}

// TapInfo is a persistent TAP device on a network.
type TapInfo struct {
	Name    string         `json:"name"`
	Network string         `json:"network"`
	Addrs   []netip.Prefix `json:"addrs"`
}

func networkInfo(n store.Network, members []store.Attachment) NetworkInfo {
	v := NetworkInfo{
		Name: n.Name, Driver: n.Driver, Subnets: n.Subnets, Gateways: n.Gateways, Bridge: deviceOf(n),
		Options: n.Options, NAT: n.NAT, Internal: n.Internal, Isolate: !n.NoIsolate, DNS: n.DNS,
		DNSUpstreams: n.DNSUpstreams, MTU: n.MTU, HostFirewall: !n.NoHostFirewall, Host: n.HostNetns,
		Created: n.Created, Members: []MemberInfo{},
	}
	for _, c := range n.ForwardAccepts {
		v.ForwardAccepts = append(v.ForwardAccepts, ChainInfo(c))
	}
	for _, a := range members {
		v.Members = append(v.Members, memberInfo(a))
	}
	return v
}

func memberInfo(a store.Attachment) MemberInfo {
	return MemberInfo{Network: a.Network, Namespace: a.Namespace, IfName: a.IfName, HostIf: a.HostIf,
		Addrs: a.Addrs, Ports: a.Ports, Aliases: a.Aliases}
}

func linkInfo(l store.Link) LinkInfo {
	return LinkInfo{NS1: l.NS1, If1: l.If1, Addrs1: l.Addrs1, NS2: l.NS2, If2: l.If2, Addrs2: l.Addrs2, MTU: l.MTU}
}

func tapInfo(d store.Tap) TapInfo { return TapInfo(d) }

// OptionKeys lists a network's driver options in order, for printing.
func (n NetworkInfo) OptionKeys() []string {
	var keys []string
	for k := range n.Options {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
