package store

import "net/netip"

// BGP is one host's BGP speaker as the user set it: the host is the
// namespace file HostNetns (empty: the one nsnet ran in).
type BGP struct {
	HostNetns string     `json:"host_netns,omitempty"`
	ASN       uint32     `json:"asn"`
	RouterID  netip.Addr `json:"router_id"`
	// Listen limits the speaker to one local address; zero: every one.
	Listen netip.Addr `json:"listen,omitzero"`
	// Aggregate announces each network's subnet (with a blackhole route
	// for it on the host) instead of every member's address.
	Aggregate bool `json:"aggregate,omitempty"`
	// Bridge also announces bridge networks (their subnets: a bridge's
	// members share the host's segment).
	Bridge bool `json:"bridge,omitempty"`
	// HoldTime is the hold time offered to peers, in seconds.
	HoldTime uint32    `json:"hold_time,omitempty"`
	Peers    []BGPPeer `json:"peers,omitempty"`
	// Lab is the lab that set this speaker, if one did.
	Lab string `json:"lab,omitempty"`
}

// BGPPeer is a neighbour of a host's speaker.
type BGPPeer struct {
	Address  netip.Addr `json:"address"`
	ASN      uint32     `json:"asn"`
	Passive  bool       `json:"passive,omitempty"`
	Password string     `json:"password,omitempty"`
}

// bgpKey keys a speaker by its host; the default host is "-", which no
// namespace path can be.
func bgpKey(host string) string {
	if host == "" {
		return "-"
	}
	return host
}

// BGP reads the speaker of host.
func (t *Tx) BGP(host string) (BGP, bool, error) { return get[BGP](t, bBGP, bgpKey(host)) }

// PutBGP records a speaker.
func (t *Tx) PutBGP(b BGP) error {
	return put(t, bBGP, bgpKey(b.HostNetns), b)
}

// DeleteBGP forgets host's speaker.
func (t *Tx) DeleteBGP(host string) error {
	return del(t, bBGP, bgpKey(host))
}

// BGPs lists every speaker.
func (t *Tx) BGPs() ([]BGP, error) { return list[BGP](t, bBGP, "") }
