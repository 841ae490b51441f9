package topology

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/netns"
)

// HostName stands for the lab's own host at a link's end, as in `nsnet link`.
const HostName = "host"

var labName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$`)

// ValidLabName says why name cannot name a lab, or nil.
func ValidLabName(name string) error {
	if !labName.MatchString(name) {
		return fmt.Errorf("lab name %q is invalid: want 1 to 32 letters, digits, '-', '_' or '.', starting with a letter or digit", name)
	}
	return nil
}

// NetworkName is the name nsnet records a lab's network under: as the
// file spells it when the lab has no hosts, else HOST.NETWORK, since every
// host may have its own "pods".
func (l *Lab) NetworkName(host, network string) string {
	if host == "" {
		return network
	}
	return host + "." + network
}

// UnderlayName is the name of the network that joins the lab's hosts.
func (l *Lab) UnderlayName() string { return l.Name + "-underlay" }

// Errorf makes an Error at the key path, for checks made outside this
// package.
func (l *Lab) Errorf(path, format string, args ...any) error {
	p := l.pos[path]
	return &Error{File: l.File, Line: p.Line, Col: p.Col, Key: path, Reason: fmt.Sprintf(format, args...)}
}

// check finds what the file says that cannot be, without asking the
// kernel or the store: names, references, addresses and subnets.
func (d *decoder) check(l *Lab) {
	if l.Name == "" {
		d.at("name", "the lab needs a name")
		if _, ok := d.pos["name"]; !ok {
			d.errs[len(d.errs)-1].Key = ""
			d.errs[len(d.errs)-1].Reason = "the lab needs a name (name: at the top)"
		}
	} else if err := ValidLabName(l.Name); err != nil {
		d.at("name", "%v", err)
	}
	names := map[string]string{} // namespace or host name -> its path
	claim := func(name, path, what string) {
		if err := netns.ValidateName(name); err != nil {
			d.at(path, "%s name: %v", what, err)
			return
		}
		if name == HostName {
			d.at(path, "%q stands for the lab's own host in links; choose another name", name)
			return
		}
		if other, ok := names[name]; ok {
			d.at(path, "%s %q is declared twice (also at %s); namespace names are unique across the file", what, name, other)
			return
		}
		names[name] = path
	}
	for _, h := range l.Hosts {
		if h.Name != "" {
			claim(h.Name, h.path, "host")
		}
		switch h.Forward {
		case "", "drop", "accept":
		default:
			d.at(h.path+".firewall.forward", "want drop or accept, not %q", h.Forward)
		}
	}
	nsHost := map[string]*Host{}
	for _, h := range l.Hosts {
		for _, ns := range h.Namespaces {
			claim(ns.Name, ns.path, "namespace")
			nsHost[ns.Name] = h
		}
	}
	for _, h := range l.Hosts {
		d.checkHost(l, h, nsHost)
	}
	d.checkLinks(l, names)
	for _, k := range l.Links {
		subs := k.Addresses
		if k.Subnet.IsValid() {
			subs = append(subs, k.Subnet)
		}
		for _, h := range l.Hosts {
			for _, n := range h.Networks {
				for _, p := range subs {
					if s, t, ok := overlap([]netip.Prefix{p.Masked()}, n.Subnets); ok {
						d.at(k.path, "the link's subnet %s overlaps %s of network %s", s, t, n.Name)
					}
				}
			}
		}
	}
	d.checkUnderlay(l)
	d.checkBGP(l)
}

func (d *decoder) checkBGP(l *Lab) {
	mesh := l.Underlay != nil && l.Underlay.Routing == "bgp"
	for _, h := range l.Hosts {
		b := h.BGP
		if b == nil {
			continue
		}
		if b.ASN == 0 && !mesh {
			d.at(b.path, "a host's bgp needs an asn (or the underlay's routing: bgp with one)")
		}
		if b.RouterID.IsValid() && !b.RouterID.Is4() {
			d.at(b.path+".router_id", "router id %s must be an IPv4 address", b.RouterID)
		}
		seen := map[netip.Addr]bool{}
		for _, p := range b.Peers {
			switch {
			case !p.Address.IsValid():
				d.at(p.path, "a peer needs an address")
			case p.ASN == 0:
				d.at(p.path, "a peer needs an asn")
			case seen[p.Address]:
				d.at(p.path+".address", "peer %s is given twice", p.Address)
			case l.Underlay != nil && l.Underlay.Addresses[h.Name] == p.Address:
				d.at(p.path+".address", "%s is the host's own underlay address", p.Address)
			}
			seen[p.Address] = true
		}
	}
}

func (d *decoder) checkHost(l *Lab, h *Host, nsHost map[string]*Host) {
	// Addresses taken in each network: by whom.
	taken := map[string]map[netip.Addr]string{}
	for _, n := range h.Networks {
		if err := netns.ValidateName(l.NetworkName(h.Name, n.Name)); err != nil {
			d.at(n.path, "network name: %v", err)
		}
		taken[n.Name] = map[netip.Addr]string{}
		if len(n.Subnets) == 0 {
			d.at(n.path, "a network needs a subnet")
		}
		for _, g := range n.Gateways {
			taken[n.Name][g] = "the gateway"
		}
		for name, a := range n.AuxAddresses {
			taken[n.Name][a] = "aux address " + name
		}
		for _, o := range h.Networks {
			if o == n {
				break
			}
			if s, t, ok := overlap(n.Subnets, o.Subnets); ok {
				d.at(n.path+".subnet", "subnet %s overlaps %s of network %s", s, t, o.Name)
			}
		}
	}
	addr := func(n *Network, a netip.Addr, path, who string) {
		if !a.IsValid() {
			return
		}
		if !slices.ContainsFunc(n.Subnets, func(p netip.Prefix) bool { return p.Contains(a) }) {
			d.at(path, "address %s is outside network %s's subnets (%s)", a, n.Name, joinPrefixes(n.Subnets))
			return
		}
		for _, p := range n.Subnets {
			if p.Addr().Is4() && p.Contains(a) && p.Bits() < 31 && (a == p.Masked().Addr() || a == lastAddr(p)) {
				d.at(path, "address %s is the network or broadcast address of %s", a, p)
				return
			}
		}
		if other, ok := taken[n.Name][a]; ok {
			d.at(path, "address %s is given twice in network %s (also %s)", a, n.Name, other)
			return
		}
		taken[n.Name][a] = who
	}
	for _, ns := range h.Namespaces {
		if ns.Share != "" {
			switch {
			case nsHost[ns.Share] == nil:
				d.at(ns.path+".share", "cannot share unknown namespace %q: it is not in the file", ns.Share)
			case nsHost[ns.Share] != h:
				d.at(ns.path+".share", "namespace %q is on another host", ns.Share)
			case len(ns.Networks) > 0:
				d.at(ns.path+".networks", "a namespace that shares %s's network has no networks of its own", ns.Share)
			}
			if t := nsHost[ns.Share]; t != nil {
				for _, o := range t.Namespaces {
					if o.Name == ns.Share && o.Share != "" {
						d.at(ns.path+".share", "namespace %q itself shares %q; share that one", ns.Share, o.Share)
					}
				}
			}
		}
		joined := map[string]bool{}
		defaults := 0
		for _, m := range ns.Networks {
			n := h.Network(m.Network)
			if n == nil {
				where := "the lab"
				if h.Name != "" {
					where = "host " + h.Name
				}
				d.at(m.path, "unknown network %q: %s has no such network", m.Network, where)
				continue
			}
			if joined[m.Network] {
				d.at(m.path, "namespace %s joins network %s twice", ns.Name, m.Network)
				continue
			}
			joined[m.Network] = true
			if m.IP.IsValid() && !m.IP.Is4() {
				d.at(m.path+".ip", "%s is not an IPv4 address (use ip6)", m.IP)
			} else {
				addr(n, m.IP, m.path+".ip", "namespace "+ns.Name)
			}
			if m.IP6.IsValid() && !m.IP6.Is6() {
				d.at(m.path+".ip6", "%s is not an IPv6 address (use ip)", m.IP6)
			} else {
				addr(n, m.IP6, m.path+".ip6", "namespace "+ns.Name)
			}
			if m.IfName != "" {
				if err := kernel.ValidateIfName(m.IfName); err != nil {
					d.at(m.path+".ifname", "%v", err)
				}
			}
			if m.DefaultRoute != nil && *m.DefaultRoute {
				defaults++
				if defaults == 2 {
					d.at(m.path+".default_route", "namespace %s has its default route on two networks", ns.Name)
				}
			}
		}
	}
	for _, t := range h.Taps {
		if err := kernel.ValidateIfName(t.Name); err != nil {
			d.at(t.path, "TAP name: %v", err)
		}
		n := h.Network(t.Network)
		if n == nil {
			d.at(t.path+".network", "unknown network %q", t.Network)
			continue
		}
		if t.IP.IsValid() && !t.IP.Is4() {
			d.at(t.path+".ip", "%s is not an IPv4 address", t.IP)
			continue
		}
		addr(n, t.IP, t.path+".ip", "TAP "+t.Name)
	}
}

func (d *decoder) checkLinks(l *Lab, names map[string]string) {
	seen := map[[2]string]string{}
	for _, k := range l.Links {
		if k.Ends[0].Namespace == "" && k.Ends[1].Namespace == "" {
			d.at(k.path, "a link needs endpoints: [NS1[:IF], NS2[:IF]]")
			continue
		}
		ends := [2]string{}
		for i, e := range k.Ends {
			ends[i] = e.Namespace
			switch {
			case e.Namespace == "":
				d.at(k.path+".endpoints", "an endpoint needs a namespace")
			case e.Namespace == HostName:
			case names[e.Namespace] == "":
				d.at(k.path+".endpoints", "link endpoint %q does not exist: no namespace or host of that name in the file", e.Namespace)
			}
			if e.IfName != "" {
				if err := kernel.ValidateIfName(e.IfName); err != nil {
					d.at(k.path+".endpoints", "%v", err)
				}
			}
		}
		if ends[0] == ends[1] {
			d.at(k.path+".endpoints", "a link joins two different namespaces")
		}
		slices.Sort(ends[:])
		if other, ok := seen[ends]; ok {
			d.at(k.path, "%s and %s are linked twice (also %s)", ends[0], ends[1], other)
		}
		seen[ends] = k.path
		switch {
		case k.Subnet.IsValid() && k.Subnet.Addr().Is4() && k.Subnet.Bits() > 30:
			d.at(k.path+".subnet", "subnet %s has no two usable addresses; a link needs a /30 or wider", k.Subnet)
		case k.Subnet.IsValid() && k.Subnet.Addr().Is6() && k.Subnet.Bits() > 126:
			d.at(k.path+".subnet", "subnet %s has no two usable addresses; a link needs a /126 or wider", k.Subnet)
		case len(k.Addresses) == 2 && k.Addresses[0].Addr() == k.Addresses[1].Addr():
			d.at(k.path+".addresses", "both ends have the address %s", k.Addresses[0].Addr())
		case len(k.Addresses) == 2 && !k.Addresses[0].Masked().Contains(k.Addresses[1].Addr()):
			d.at(k.path+".addresses", "%s and %s are not in one subnet: the ends would not reach each other", k.Addresses[0], k.Addresses[1])
		case len(k.Addresses) > 0 && k.Subnet.IsValid():
			d.at(k.path+".subnet", "give addresses or subnet, not both")
		case len(k.Addresses) != 0 && len(k.Addresses) != 2:
			d.at(k.path+".addresses", "want one address per endpoint, two in all")
		case len(k.Addresses) == 2 && k.Addresses[0].Addr().Is4() != k.Addresses[1].Addr().Is4():
			d.at(k.path+".addresses", "both ends' addresses must be of one family")
		}
	}
}

func (d *decoder) checkUnderlay(l *Lab) {
	u := l.Underlay
	named := slices.ContainsFunc(l.Hosts, func(h *Host) bool { return h.Name != "" })
	if u == nil {
		return
	}
	if !named {
		d.at(u.path, "an underlay joins hosts, and the file has none")
		return
	}
	switch u.Routing {
	case "", "static", "none":
	case "bgp":
		if u.ASN == 0 {
			d.at(u.path+".routing", "routing: bgp needs the hosts' AS number: add asn (e.g. asn: 64512) to the underlay")
		}
	default:
		d.at(u.path+".routing", "want static, bgp or none, not %q", u.Routing)
	}
	if u.ASN != 0 && u.Routing != "bgp" {
		d.at(u.path+".asn", "asn is for routing: bgp")
	}
	if !u.Subnet.IsValid() {
		d.at(u.path, "an underlay needs a subnet (IPv4)")
		return
	}
	if !u.Subnet.Addr().Is4() {
		d.at(u.path+".subnet", "the underlay's subnet must be IPv4")
		return
	}
	gw := u.Subnet.Masked().Addr().Next()
	used := map[netip.Addr]string{gw: "the lab host's gateway"}
	for host, a := range u.Addresses {
		p := u.path + ".addresses." + host
		switch {
		case l.Host(host) == nil || host == "":
			d.at(p, "unknown host %q", host)
		case !u.Subnet.Contains(a) || a == u.Subnet.Masked().Addr():
			d.at(p, "address %s is outside the underlay's subnet %s", a, u.Subnet)
		case used[a] != "":
			d.at(p, "address %s is given twice (also %s)", a, used[a])
		default:
			used[a] = host
		}
	}
	next := gw
	for _, h := range l.Hosts {
		if _, ok := u.Addresses[h.Name]; ok {
			continue
		}
		for next = next.Next(); used[next] != ""; next = next.Next() {
		}
		if !u.Subnet.Contains(next) || !u.Subnet.Contains(next.Next()) {
			d.at(u.path+".subnet", "subnet %s is too small for %d hosts", u.Subnet, len(l.Hosts))
			return
		}
		u.Addresses[h.Name] = next
		used[next] = h.Name
	}
	for _, h := range l.Hosts {
		for _, n := range h.Networks {
			if s, _, ok := overlap(n.Subnets, []netip.Prefix{u.Subnet}); ok {
				d.at(n.path+".subnet", "subnet %s overlaps the underlay's %s", s, u.Subnet)
			}
		}
	}
	if u.Routing != "static" {
		return
	}
	// Routing by subnet needs each subnet in one place.
	for i, h := range l.Hosts {
		for _, n := range h.Networks {
			for _, o := range l.Hosts[:i] {
				for _, m := range o.Networks {
					if s, t, ok := overlap(n.Subnets, m.Subnets); ok {
						d.at(n.path+".subnet", "subnet %s overlaps %s of network %s on host %s, and routing: static routes each subnet to one host", s, t, m.Name, o.Name)
					}
				}
			}
		}
	}
}

func overlap(a, b []netip.Prefix) (netip.Prefix, netip.Prefix, bool) {
	for _, p := range a {
		for _, q := range b {
			if p.Overlaps(q) {
				return p, q, true
			}
		}
	}
	return netip.Prefix{}, netip.Prefix{}, false
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// lastAddr is the last address of p (IPv4's broadcast).
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As16()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	for i := bits; i < 128; i++ {
		a[i/8] |= 1 << (7 - i%8)
	}
	out := netip.AddrFrom16(a)
	if p.Addr().Is4() {
		return out.Unmap()
	}
	return out
}
