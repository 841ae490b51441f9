package topology

import "net/netip"

// Lab is a checked lab file. Without hosts in the file, Hosts holds one
// Host with an empty name: the namespace nsnet runs in (or --host-netns).
type Lab struct {
	Name string
	// File is the file as the user named it, for errors; AbsFile the
	// same made absolute, for the record.
	File     string `json:"-"`
	AbsFile  string `json:"-"`
	Hosts    []*Host
	Underlay *Underlay `json:",omitempty"`
	Links    []*Link   `json:",omitempty"`

	pos map[string]Pos
}

// Host is a simulated host: a namespace nsnet makes and treats as a host.
type Host struct {
	Name string `json:",omitempty"`
	// Forward is the host's own FORWARD policy ("drop", "accept", or
	// empty for none set).
	Forward    string       `json:",omitempty"`
	Networks   []*Network   `json:",omitempty"`
	Namespaces []*Namespace `json:",omitempty"`
	Taps       []*Tap       `json:",omitempty"`
	// BGP sets the host's BGP speaker by hand (with routing: bgp, it
	// changes what the full mesh gives the host).
	BGP *HostBGP `json:",omitempty"`

	path string
}

// HostBGP is a host's BGP speaker as the file sets it.
type HostBGP struct {
	ASN       uint32     `json:",omitempty"`
	RouterID  netip.Addr `json:",omitzero"`
	Aggregate *bool      `json:",omitempty"`
	Peers     []*BGPPeer `json:",omitempty"`

	path string
}

// BGPPeer is a neighbour of a host's speaker that the file names.
type BGPPeer struct {
	Address netip.Addr
	ASN     uint32
	Passive *bool `json:",omitempty"`

	path string
}

// Network is a network of one host, with the options of `net create`.
type Network struct {
	Name         string
	Driver       string                `json:",omitempty"`
	Subnets      []netip.Prefix        `json:",omitempty"`
	Gateways     []netip.Addr          `json:",omitempty"`
	NAT          *bool                 `json:",omitempty"`
	Internal     *bool                 `json:",omitempty"`
	Isolate      *bool                 `json:",omitempty"`
	DNS          *bool                 `json:",omitempty"`
	DNSUpstreams []netip.Addr          `json:",omitempty"`
	MTU          int                   `json:",omitempty"`
	Parent       string                `json:",omitempty"`
	BridgeName   string                `json:",omitempty"`
	HostFirewall *bool                 `json:",omitempty"`
	IPRanges     []netip.Prefix        `json:",omitempty"`
	AuxAddresses map[string]netip.Addr `json:",omitempty"`

	path string
}

// Namespace is a named namespace and the networks it joins.
type Namespace struct {
	Name     string
	Share    string        `json:",omitempty"`
	Networks []*Membership `json:",omitempty"`

	path string
}

// Membership is one namespace's attachment to a network of its host.
type Membership struct {
	Network      string
	IP           netip.Addr `json:",omitzero"`
	IP6          netip.Addr `json:",omitzero"`
	IfName       string     `json:",omitempty"`
	DefaultRoute *bool      `json:",omitempty"`
	Ports        []string   `json:",omitempty"`
	Aliases      []string   `json:",omitempty"`

	path string
}

// Link is a veth pair between two namespaces of the file (or "host").
type Link struct {
	Ends      [2]Endpoint
	Addresses []netip.Prefix `json:",omitempty"`
	Subnet    netip.Prefix   `json:",omitzero"`
	MTU       int            `json:",omitempty"`

	path string
}

// Endpoint is one end of a link.
type Endpoint struct {
	Namespace string
	IfName    string `json:",omitempty"`
}

// Tap is a persistent TAP device on a bridge network, for a VM.
type Tap struct {
	Name    string
	Network string
	IP      netip.Addr `json:",omitzero"`

	path string
}

// Underlay is the segment joining a lab's hosts: a bridge network in the
// lab's own host with every host a member.
type Underlay struct {
	Subnet netip.Prefix
	// Addresses are the hosts' given addresses; the others get the free
	// ones in order of host name. After Parse every host has one.
	Addresses map[string]netip.Addr
	NAT       *bool  `json:",omitempty"`
	Routing   string `json:",omitempty"`
	// ASN is every host's autonomous system with routing: bgp (a full
	// iBGP mesh over the underlay), unless a host sets its own.
	ASN uint32 `json:",omitempty"`
	MTU int    `json:",omitempty"`

	path string
}

// Pos says where a key path sits in the file; zero when unknown.
func (l *Lab) Pos(path string) Pos { return l.pos[path] }

// Host finds a host by name ("" for the lab's own).
func (l *Lab) Host(name string) *Host {
	for _, h := range l.Hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// Network finds a network of the host.
func (h *Host) Network(name string) *Network {
	for _, n := range h.Networks {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Path is the key path of an object in the file, for errors.
func (n *Network) Path() string    { return n.path }
func (n *Namespace) Path() string  { return n.path }
func (m *Membership) Path() string { return m.path }
func (l *Link) Path() string       { return l.path }
func (t *Tap) Path() string        { return t.path }
func (h *Host) Path() string       { return h.path }
func (u *Underlay) Path() string   { return u.path }
