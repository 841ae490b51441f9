package store

import (
	"fmt"
	"strings"
)

// OwnerKind says what kind of object holds an interface name, an address
// or a host port.
type OwnerKind uint8

// Kinds of owners.
const (
	OwnerNetwork OwnerKind = iota + 1 // a network's own device (its bridge)
	OwnerMember                       // a namespace's membership of a network
	OwnerTap                          // a TAP device
	OwnerGateway                      // a network's gateway address
	OwnerHost                         // the host's own address on a network's segment
	OwnerAux                          // an auxiliary address of a network, by name
)

// Owner is who holds an interface name, an address or a host port. Owners
// are compared whole; namespaces and TAPs may be named anything a name
// allows, so an owner is never parsed out of a name.
type Owner struct {
	Kind OwnerKind
	// Network is the network of a member or gateway, or the network
	// itself.
	Network string
	// Name is a member's namespace or a TAP's device name.
	Name string
}

// NetworkOwner is network's own hold on its device.
func NetworkOwner(network string) Owner { return Owner{Kind: OwnerNetwork, Network: network} }

// MemberOwner is namespace ns's hold as a member of network.
func MemberOwner(network, ns string) Owner {
	return Owner{Kind: OwnerMember, Network: network, Name: ns}
}

// TapOwner is a TAP device's hold, on network's addresses or its name.
func TapOwner(network, name string) Owner { return Owner{Kind: OwnerTap, Network: network, Name: name} }

// HostOwner is the host's hold on its own address within network's
// subnet (a macvlan network shares the host's LAN).
func HostOwner(network string) Owner { return Owner{Kind: OwnerHost, Network: network} }

// AuxOwner is the hold of network's auxiliary address called name.
func AuxOwner(network, name string) Owner { return Owner{Kind: OwnerAux, Network: network, Name: name} }

// GatewayOwner is network's hold on its gateway addresses.
func GatewayOwner(network string) Owner { return Owner{Kind: OwnerGateway, Network: network} }

// String says who the owner is, for errors.
func (o Owner) String() string {
	switch o.Kind {
	case OwnerNetwork:
		return fmt.Sprintf("network %q", o.Network)
	case OwnerMember:
		return fmt.Sprintf("the member %q of network %q", o.Name, o.Network)
	case OwnerTap:
		return fmt.Sprintf("TAP device %s", o.Name)
	case OwnerGateway:
		return fmt.Sprintf("the gateway of network %q", o.Network)
	case OwnerHost:
		return fmt.Sprintf("the host, on network %q's segment", o.Network)
	case OwnerAux:
		return fmt.Sprintf("the auxiliary address %q of network %q", o.Name, o.Network)
	}
	return "an unknown owner"
}

var ownerWords = map[OwnerKind]string{OwnerNetwork: "network", OwnerMember: "member", OwnerTap: "tap", OwnerGateway: "gateway", OwnerHost: "host", OwnerAux: "aux"}

// encode is the owner as stored: its kind, network and name, NUL-separated
// (names never contain NUL).
func (o Owner) encode() []byte {
	return []byte(ownerWords[o.Kind] + "\x00" + o.Network + "\x00" + o.Name)
}

// decodeOwner reads a stored owner. Stores written before owners were
// typed hold "network\x00NET" and "member\x00NET\x00NS" for interface
// names, "tap\x00NAME" likewise, and for leases of network "(gateway)",
// "tap:NAME" or a bare namespace name.
func decodeOwner(network string, v []byte) Owner {
	s := string(v)
	if parts := strings.Split(s, "\x00"); len(parts) > 1 {
		for k, w := range ownerWords {
			if parts[0] == w {
				o := Owner{Kind: k, Network: parts[1]}
				if len(parts) > 2 {
					o.Name = parts[2]
				}
				if k == OwnerTap && len(parts) == 2 { // legacy "tap\x00NAME"
					o = Owner{Kind: OwnerTap, Name: parts[1]}
				}
				return o
			}
		}
	}
	switch {
	case s == "(gateway)":
		return GatewayOwner(network)
	case strings.HasPrefix(s, "tap:"):
		return TapOwner(network, strings.TrimPrefix(s, "tap:"))
	}
	return MemberOwner(network, s)
}

// Same reports whether o and p are one owner. A TAP's hold on its own
// name was stored without its network by older stores, so TAPs compare
// by name.
func (o Owner) Same(p Owner) bool {
	if o.Kind == OwnerTap && p.Kind == OwnerTap {
		return o.Name == p.Name
	}
	return o == p
}
