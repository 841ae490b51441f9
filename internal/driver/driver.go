// Package driver says what a network driver is: the steps that build a
// network in its host and plug members into it, each idempotent and able to
// work from a journal entry's names alone, and the capabilities that tell
// the rest of nsnet what the driver's networks need (a host end per member,
// the host's firewall, published ports, TAPs, where DNS sits). Nothing
// outside the drivers and their registry looks at a driver's name.
package driver

import (
	"errors"
	"net/netip"

	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/store"
)

// DNS says where a network's resolver listens.
type DNS int

const (
	// NoDNS: the host has no address members could reach a resolver on.
	NoDNS DNS = iota
	// DNSAtGateway: on the network's gateway addresses, in its subnets.
	DNSAtGateway
	// DNSLinkLocal: on LinkLocal4 (and HostDNS6) on the host's lo, one
	// resolver for all such networks of a host, reached through each
	// member's host end.
	DNSLinkLocal
)

// Link-local gateway addresses of networks whose members have a host end
// and no gateway in their subnet: the host answers for them by proxy, and
// the resolver of DNSLinkLocal networks listens on LinkLocal4.
var (
	LinkLocal4 = netip.MustParseAddr("169.254.1.1")
	LinkLocal6 = netip.MustParseAddr("fe80::1")
)

// HostDNS6 is where the resolver of DNSLinkLocal networks listens for
// IPv6 members. fe80::1 cannot serve: a link-local address is one per
// link, so the resolver would need a socket per host end, and members a
// scope in resolv.conf. This unique local address (its global ID spells
// "nsnet") sits on the host's lo like LinkLocal4; members reach it
// through their gateway. Subnets may not contain HostDNS6Block.
var (
	HostDNS6      = netip.MustParseAddr("fd6e:736e:6574::53")
	HostDNS6Block = netip.MustParsePrefix("fd6e:736e:6574::/48")
)

// Capabilities say what a driver's networks need of the rest of nsnet.
type Capabilities struct {
	// HostEnd: each member has a veth whose other end is in the host.
	HostEnd bool
	// HostRoutes: members get /32 (/128) addresses that the host routes
	// to their host ends, not their subnet's prefix.
	HostRoutes bool
	// Firewall: nsnet's table in the host serves the network (NAT,
	// isolation, published ports) and may open other tables' forward
	// chains for it.
	Firewall bool
	// Ports: members may publish ports on the host.
	Ports bool
	// Taps: TAP devices may join the network, as ports of the bridge
	// that Device names.
	Taps bool
	// Internal: the network may be made --internal.
	Internal bool
	// DNS is where the resolver sits, if the network has one.
	DNS DNS
}

// Spec is the driver's share of what `net create` asks for.
type Spec struct {
	Name     string
	Subnets  []netip.Prefix
	Gateways []netip.Addr
	// NAT and NoNAT are --nat and --no-nat: the driver decides what
	// neither means.
	NAT, NoNAT bool
	Internal   bool
	// Options are the driver's own settings (--bridge-name, --parent),
	// only those the driver declares.
	Options map[string]string
}

// Option is a setting of a driver's own, given to `net create` as a flag
// of the same name.
type Option struct {
	Name  string
	Usage string
	// Device says the option names the device the network owns in the
	// host (what Device returns), which views show as the bridge.
	Device bool
}

// Driver wires members to networks of one kind.
type Driver interface {
	// Name is what `net create --driver` calls it.
	Name() string
	Caps() Capabilities
	// Options lists the driver's own settings.
	Options() []Option
	// Plan fills n's gateways (one per subnet, a zero address for none),
	// NAT and options from spec, refusing what the driver cannot do. It
	// looks at neither the kernel nor the store.
	Plan(spec Spec, n *store.Network) error
	// Device is the host device the network owns, if any (a bridge).
	Device(n store.Network) string
	// Check refuses n if the host is in its way (its routes, a device
	// of the name). taken says whether nsnet holds an interface name
	// already, and by what.
	Check(h *kernel.NS, n store.Network, taken func(ifname string) (string, bool)) error
	// Reserved lists addresses of n's subnets that members must not get:
	// the host's own on a segment the network shares with it.
	Reserved(h *kernel.NS, n store.Network) ([]netip.Addr, error)
	// Build makes the host match n.
	Build(h *kernel.NS, n store.Network) error
	// Unbuild removes what Build made, from op's names alone.
	Unbuild(h *kernel.NS, op store.Op) error
	// Plug wires member a into n; with defaultRoute the member's default
	// route moves to n.
	Plug(h, ns *kernel.NS, n store.Network, a store.Attachment, defaultRoute bool) error
	// Unplug removes what Plug made, from op's names alone. h is nil when
	// the host namespace is gone.
	Unplug(h *kernel.NS, op store.Op) error
	// DefaultRoute gives member a, in its namespace ns, a default route
	// through n for each family it has none of (after the network that
	// gave it one was left).
	DefaultRoute(ns *kernel.NS, n store.Network, a store.Attachment) error
	// Repair restores what someone removed or changed of member a whose
	// namespace is still there (gc): its devices, addresses, routes and
	// neighbours, after Build has restored the network's own. It says
	// what it restored, or "" when nothing was amiss.
	Repair(h *kernel.NS, n store.Network, a store.Attachment) (string, error)
}

// ErrUnknown reports a driver name the registry does not know.
var ErrUnknown = errors.New("no such driver")
