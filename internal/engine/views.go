package engine

import (
	"encoding/json"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/nsnet/nsnet/internal/drivers"
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
	Bridge   string `json:"bridge,omitempty"`
	NAT      bool   `json:"nat"`
	Internal bool   `json:"internal"`
	MTU      int    `json:"mtu,omitempty"`
	// Options are the driver's settings other than Bridge, by flag name
	// (parent); the JSON has each at the top level, as parent always was.
	Options        map[string]string `json:"-"`
	NoHostFirewall bool              `json:"no_host_firewall,omitempty"`
	NoIsolate      bool              `json:"no_isolate,omitempty"`
	DNS            bool              `json:"dns"`
	DNSUpstreams   []netip.Addr      `json:"dns_upstreams,omitempty"`
	ForwardAccepts []ChainInfo       `json:"forward_accepts,omitempty"`
	// IPRanges and AuxAddresses are --ip-range and --aux-address.
	IPRanges     []netip.Prefix        `json:"ip_ranges,omitempty"`
	AuxAddresses map[string]netip.Addr `json:"aux_addresses,omitempty"`
	// Host is the host namespace's path; empty for the namespace nsnet
	// ran in.
	Host string `json:"host_netns,omitempty"`
	// Cluster is set for a host's part of a cluster network.
	Cluster *store.ClusterNet `json:"cluster,omitempty"`
	Created time.Time         `json:"created"`
	Members []MemberInfo      `json:"members"`
	// Taps are the network's TAP devices.
	Taps []TapInfo `json:"taps,omitempty"`
}

// MarshalJSON writes the network with its driver's options as fields.
func (n NetworkInfo) MarshalJSON() ([]byte, error) {
	type plain NetworkInfo
	raw, err := json.Marshal(plain(n))
	if err != nil || len(n.Options) == 0 {
		return raw, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, err
	}
	for k, v := range n.Options {
		if fields[optionKey(k)], err = json.Marshal(v); err != nil {
			return nil, err
		}
	}
	return json.Marshal(fields)
}

func optionKey(flag string) string { return strings.ReplaceAll(flag, "-", "_") }

// Describe says in a few words how the network is built: "bridge
// nsbr-a", "macvlan on eth0", "routed".
func (n NetworkInfo) Describe() string {
	if n.Bridge != "" {
		return "bridge " + n.Bridge
	}
	s := n.Driver
	for _, k := range n.OptionKeys() {
		s += " on " + n.Options[k]
	}
	return s
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
	// ContainerID is set for memberships made through CNI.
	ContainerID string `json:"container_id,omitempty"`
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
	// Host is the host namespace's path when either end is the host.
	Host string `json:"host_netns,omitempty"`
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
		NAT: n.NAT, Internal: n.Internal, NoIsolate: n.NoIsolate, DNS: n.DNS,
		DNSUpstreams: n.DNSUpstreams, MTU: n.MTU, NoHostFirewall: n.NoHostFirewall, Host: n.HostNetns, Cluster: n.Cluster,
		Created: n.Created, Members: []MemberInfo{}, IPRanges: n.IPRanges, AuxAddresses: n.AuxAddresses,
	}
	if d, err := drivers.Of(n); err == nil {
		for _, o := range d.Options() {
			if val, ok := n.Options[o.Name]; ok && !o.Device {
				if v.Options == nil {
					v.Options = map[string]string{}
				}
				v.Options[o.Name] = val
			}
		}
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
		Addrs: a.Addrs, Ports: a.Ports, Aliases: a.Aliases, ContainerID: a.ContainerID}
}

func linkInfo(l store.Link) LinkInfo {
	return LinkInfo{NS1: l.NS1, If1: l.If1, Addrs1: l.Addrs1, NS2: l.NS2, If2: l.If2, Addrs2: l.Addrs2, MTU: l.MTU, Host: l.HostNetns}
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

// DriverOption is a driver's own `net create` flag.
type DriverOption struct {
	Name, Usage string
	// Device: the option names the bridge, which views show as such.
	Device bool
}

// DriverOptions lists every driver's own `net create` flags, in the
// registry's order.
func DriverOptions() []DriverOption {
	var out []DriverOption
	for _, d := range drivers.All() {
		for _, o := range d.Options() {
			out = append(out, DriverOption(o))
		}
	}
	return out
}
