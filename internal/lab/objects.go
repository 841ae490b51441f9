// Package lab makes the machine match a topology file: it turns the file
// into the objects a lab owns (hosts, namespaces, networks, memberships,
// TAPs, links, routes, host firewalls), compares them with what the lab
// made before, and creates, changes and removes the difference through the
// engine. The store records what each lab owns, so a lab can be changed
// and destroyed without its file, and an apply cut short is finished or
// undone by the next one.
package lab

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/nsnet/nsnet/internal/engine"
	"github.com/nsnet/nsnet/internal/netns"
	"github.com/nsnet/nsnet/internal/store"
	"github.com/nsnet/nsnet/internal/topology"
)

// Kinds of object, in the order they are made; removal goes backwards.
const (
	kHost      = "host"
	kFirewall  = "firewall"
	kNamespace = "namespace"
	kShare     = "shared-namespace"
	kNetwork   = "network"
	kMember    = "member"
	kTap       = "tap"
	kLink      = "link"
	kRoute     = "route"
	kBGP       = "bgp"
)

var order = []string{kHost, kFirewall, kNamespace, kShare, kNetwork, kMember, kTap, kLink, kRoute, kBGP}

func rank(kind string) int { return slices.Index(order, kind) }

// object is one thing a lab owns, as the file wants it.
type object struct {
	key  string // "KIND NAME..."
	spec string // the settings, compared with what it was made with
	// path is the object's place in the file, for errors.
	path string
	// deps are keys of objects this one is made in or of: when one of
	// them is made anew, so is this.
	deps []string
	// make creates it through the engine.
	make func(*run) error
}

func kindOf(key string) string { k, _, _ := strings.Cut(key, " "); return k }

func specOf(v any) string {
	raw, err := json.Marshal(v)
	if err != nil {
		panic(err) // only plain data is marshalled
	}
	return string(raw)
}

// objects lists what the file wants, in the order of making.
func objects(l *topology.Lab) []*object {
	var out []*object
	add := func(o *object) { out = append(out, o) }
	hostKey := func(h string) []string {
		if h == "" {
			return nil
		}
		return []string{kHost + " " + h}
	}
	for _, h := range l.Hosts {
		if h.Name == "" {
			continue
		}
		h := h
		add(&object{key: kHost + " " + h.Name, spec: "{}", path: h.Path(), make: func(r *run) error {
			return r.m.CreateNamespace(h.Name, "")
		}})
		if h.Forward != "" {
			add(&object{key: kFirewall + " " + h.Name, spec: specOf(h.Forward), path: h.Path() + ".firewall",
				deps: hostKey(h.Name), make: func(r *run) error { return r.setForward(h.Name, h.Forward == "drop") }})
		}
	}
	for _, h := range l.Hosts {
		for _, ns := range h.Namespaces {
			ns := ns
			kind, deps := kNamespace, []string(nil)
			if ns.Share != "" {
				kind, deps = kShare, []string{kNamespace + " " + ns.Share}
			}
			add(&object{key: kind + " " + ns.Name, spec: specOf(ns.Share), path: ns.Path(), deps: deps, make: func(r *run) error {
				return r.m.CreateNamespace(ns.Name, ns.Share)
			}})
		}
	}
	if u := l.Underlay; u != nil {
		name := l.UnderlayName()
		spec := engine.NetworkSpec{Name: name, Driver: "bridge", Subnets: []netip.Prefix{u.Subnet}, NoNAT: u.NAT == nil || !*u.NAT, DNS: new(bool), MTU: u.MTU}
		add(&object{key: kNetwork + " " + name, spec: specOf(spec), path: u.Path(), make: func(r *run) error {
			_, err := r.m.CreateNetwork(spec)
			return err
		}})
		for _, h := range l.Hosts {
			cs := engine.ConnectSpec{Network: name, Namespace: h.Name, IPv4: u.Addresses[h.Name], DefaultRoute: u.NAT != nil && *u.NAT}
			add(&object{key: memberKey(name, h.Name), spec: specOf(cs), path: u.Path(),
				deps: []string{kNetwork + " " + name, kHost + " " + h.Name}, make: func(r *run) error {
					_, err := r.m.Connect(cs)
					return err
				}})
		}
	}
	for _, h := range l.Hosts {
		for _, n := range h.Networks {
			spec := networkSpec(l, h, n)
			deps := hostKey(h.Name)
			add(&object{key: kNetwork + " " + spec.Name, spec: specOf(spec), path: n.Path(), deps: deps, make: func(r *run) error {
				_, err := r.m.CreateNetwork(spec)
				return err
			}})
		}
		for _, ns := range h.Namespaces {
			// The default route is the first network's that gives one,
			// as the file lists them, unless the file says which: so a
			// membership made anew takes it back, as a fresh apply gives.
			chosen := slices.ContainsFunc(ns.Networks, func(m *topology.Membership) bool { return m.DefaultRoute != nil })
			for _, m := range ns.Networks {
				cs := connectSpec(l, h, ns, m)
				if n := h.Network(m.Network); !chosen && n != nil && (n.Internal == nil || !*n.Internal) {
					cs.DefaultRoute, chosen = true, true
				}
				add(&object{key: memberKey(cs.Network, ns.Name), spec: specOf(cs), path: m.Path(),
					deps: []string{kNetwork + " " + cs.Network, kNamespace + " " + ns.Name}, make: func(r *run) error {
						_, err := r.m.Connect(cs)
						return err
					}})
			}
		}
		for _, t := range h.Taps {
			ts := engine.TapSpec{Name: t.Name, Network: l.NetworkName(h.Name, t.Network), IP: t.IP}
			add(&object{key: kTap + " " + t.Name, spec: specOf(ts), path: t.Path(), deps: []string{kNetwork + " " + ts.Network}, make: func(r *run) error {
				_, err := r.m.CreateTap(ts)
				return err
			}})
		}
	}
	for _, k := range l.Links {
		ls := engine.LinkSpec{NS1: k.Ends[0].Namespace, NS2: k.Ends[1].Namespace, If1: k.Ends[0].IfName, If2: k.Ends[1].IfName, Subnet: k.Subnet, MTU: k.MTU}
		if len(k.Addresses) == 2 {
			ls.Addr1, ls.Addr2 = k.Addresses[0], k.Addresses[1]
		}
		var deps []string
		for _, e := range k.Ends {
			if e.Namespace == topology.HostName {
				continue
			}
			if l.Host(e.Namespace) != nil {
				deps = append(deps, kHost+" "+e.Namespace)
			} else {
				deps = append(deps, kNamespace+" "+e.Namespace)
			}
		}
		add(&object{key: linkKey(ls.NS1, ls.NS2), spec: specOf(ls), path: k.Path(), deps: deps, make: func(r *run) error {
			_, err := r.m.CreateLink(ls)
			return err
		}})
	}
	if u := l.Underlay; u != nil && u.Routing == "static" {
		under := l.UnderlayName()
		for _, h := range l.Hosts {
			for _, o := range l.Hosts {
				if o == h {
					continue
				}
				for _, n := range o.Networks {
					for _, p := range n.Subnets {
						if !p.Addr().Is4() {
							continue // the underlay is IPv4 only
						}
						host, dst, via := h.Name, p, u.Addresses[o.Name]
						add(&object{key: fmt.Sprintf("%s %s %s", kRoute, host, dst), spec: specOf(via), path: u.Path() + ".routing",
							deps: []string{kHost + " " + host, memberKey(under, host), memberKey(under, o.Name)}, make: func(r *run) error {
								return r.route(host, dst, via)
							}})
					}
				}
			}
		}
	}
	mesh := l.Underlay != nil && l.Underlay.Routing == "bgp"
	for _, h := range l.Hosts {
		if h.Name == "" || h.BGP == nil && !mesh {
			continue
		}
		host, cfg := h.Name, bgpSpec(l, h, mesh)
		deps := []string{kHost + " " + host}
		path := h.Path() + ".bgp"
		if l.Underlay != nil {
			deps = append(deps, memberKey(l.UnderlayName(), host))
			if h.BGP == nil {
				path = l.Underlay.Path() + ".routing"
			}
		}
		add(&object{key: kBGP + " " + host, spec: specOf(cfg), path: path, deps: deps, make: func(r *run) error {
			return r.m.PutBGP(cfg.HostNetns, cfg)
		}})
	}
	slices.SortStableFunc(out, func(a, b *object) int { return rank(kindOf(a.key)) - rank(kindOf(b.key)) })
	return out
}

// bgpSpec is host h's speaker: with routing: bgp, a full mesh over the
// underlay (each other host a peer, by its underlay address and AS),
// then what the host's own bgp sets.
func bgpSpec(l *topology.Lab, h *topology.Host, mesh bool) store.BGP {
	asnOf := func(h *topology.Host) uint32 {
		if h.BGP != nil && h.BGP.ASN != 0 {
			return h.BGP.ASN
		}
		return l.Underlay.ASN
	}
	c := store.BGP{HostNetns: netns.Path(h.Name), ASN: asnOf(h), Lab: l.Name}
	if l.Underlay != nil {
		c.RouterID = l.Underlay.Addresses[h.Name]
	}
	if mesh {
		own := l.Underlay.Addresses[h.Name]
		for _, o := range l.Hosts {
			if o != h && o.Name != "" {
				// Of each pair, the host with the lower address connects
				// and the other waits: two sessions opened at once
				// collide, and gobgp can take tens of seconds to settle
				// which one stays.
				a := l.Underlay.Addresses[o.Name]
				c.Peers = append(c.Peers, store.BGPPeer{Address: a, ASN: asnOf(o), Passive: own.Compare(a) > 0})
			}
		}
	}
	if b := h.BGP; b != nil {
		if b.RouterID.IsValid() {
			c.RouterID = b.RouterID
		}
		c.Aggregate = b.Aggregate != nil && *b.Aggregate
		for _, p := range b.Peers {
			c.Peers = append(c.Peers, store.BGPPeer{Address: p.Address, ASN: p.ASN, Passive: p.Passive != nil && *p.Passive})
		}
	}
	return c
}

func memberKey(network, ns string) string { return kMember + " " + network + " " + ns }

func linkKey(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return kLink + " " + a + " " + b
}

func networkSpec(l *topology.Lab, h *topology.Host, n *topology.Network) engine.NetworkSpec {
	s := engine.NetworkSpec{
		Name: l.NetworkName(h.Name, n.Name), Driver: n.Driver, Subnets: n.Subnets, Gateways: n.Gateways,
		MTU: n.MTU, DNS: n.DNS, DNSUpstreams: n.DNSUpstreams, IPRanges: n.IPRanges, AuxAddresses: n.AuxAddresses,
		Options: map[string]string{},
	}
	if h.Name != "" {
		s.HostNetns = netns.Path(h.Name)
	}
	if n.NAT != nil {
		s.NAT, s.NoNAT = *n.NAT, !*n.NAT
	}
	if n.Internal != nil {
		s.Internal = *n.Internal
	}
	if n.Isolate != nil {
		s.NoIsolate = !*n.Isolate
	}
	if n.HostFirewall != nil {
		s.NoHostFirewall = !*n.HostFirewall
	}
	if n.Parent != "" {
		s.Options["parent"] = n.Parent
	}
	if n.BridgeName != "" {
		s.Options["bridge-name"] = n.BridgeName
	}
	return s
}

func connectSpec(l *topology.Lab, h *topology.Host, ns *topology.Namespace, m *topology.Membership) engine.ConnectSpec {
	cs := engine.ConnectSpec{
		Network: l.NetworkName(h.Name, m.Network), Namespace: ns.Name, IPv4: m.IP, IPv6: m.IP6,
		IfName: m.IfName, Aliases: m.Aliases,
	}
	if m.DefaultRoute != nil {
		cs.DefaultRoute = *m.DefaultRoute
	}
	for _, p := range m.Ports {
		pm, err := parsePort(p)
		if err == nil { // checked before: see check
			cs.Ports = append(cs.Ports, pm)
		}
	}
	return cs
}

// exists says whether the store still has an object the lab made: one
// removed behind the lab's back (by `nsnet ns rm`, say) is made again.
// Routes and firewalls live in their host, and exist while it does.
func exists(tx *store.Tx, key string) (bool, error) {
	f := strings.Fields(key)
	var ok bool
	var err error
	switch f[0] {
	case kHost, kNamespace, kShare, kFirewall, kRoute:
		_, ok, err = tx.Namespace(f[1])
		if ok && (f[0] == kHost || f[0] == kFirewall || f[0] == kRoute) {
			ok = netns.Exists(f[1])
		}
	case kBGP:
		_, ok, err = tx.BGP(netns.Path(f[1]))
		ok = ok && netns.Exists(f[1])
	case kNetwork:
		_, ok, err = tx.Network(f[1])
	case kMember:
		_, ok, err = tx.Attachment(f[1], f[2])
	case kTap:
		_, ok, err = tx.Tap(f[1])
	case kLink:
		_, ok, err = tx.Link(f[1], f[2])
	}
	return ok, err
}
