// Package graph draws a lab: hosts as clusters, their networks, the
// namespaces on them with their addresses and published ports, links,
// TAPs and the underlay. It draws from a lab file (offline) or from what a
// lab has made, as Graphviz dot, Mermaid, SVG (laid out here, no external
// program) or JSON.
package graph

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"

	"github.com/nsnet/nsnet/internal/lab"
	"github.com/nsnet/nsnet/internal/topology"
)

// Graph is the drawing's model, and the json format.
type Graph struct {
	Lab      string `json:"lab"`
	Underlay string `json:"underlay,omitempty"`
	Hosts    []Host `json:"hosts"`
	Links    []Link `json:"links,omitempty"`
}

// Host is a cluster; the lab's own host has no name.
type Host struct {
	Name       string      `json:"name,omitempty"`
	Underlay   string      `json:"underlay,omitempty"`
	Forward    string      `json:"forward,omitempty"`
	Networks   []Network   `json:"networks,omitempty"`
	Namespaces []Namespace `json:"namespaces,omitempty"`
	Taps       []Tap       `json:"taps,omitempty"`
}

// Network is a network of a host.
type Network struct {
	Name    string   `json:"name"`
	Driver  string   `json:"driver"`
	Subnets []string `json:"subnets"`
}

// Namespace is a namespace and its memberships.
type Namespace struct {
	Name    string   `json:"name"`
	Share   string   `json:"share,omitempty"`
	Members []Member `json:"members,omitempty"`
}

// Member is one membership: addresses "auto" when the file leaves them
// to nsnet.
type Member struct {
	Network string   `json:"network"`
	IfName  string   `json:"ifname,omitempty"`
	Addrs   []string `json:"addrs"`
	Ports   []string `json:"ports,omitempty"`
}

// Link is a veth pair between two namespaces.
type Link struct {
	A, B     string   `json:"-"`
	Ends     []string `json:"ends"`
	IfNames  []string `json:"ifnames,omitempty"`
	Addrs    []string `json:"addrs,omitempty"`
	Subnet   string   `json:"subnet,omitempty"`
	Internal bool     `json:"-"`
}

// Tap is a TAP device on a network.
type Tap struct {
	Name    string `json:"name"`
	Network string `json:"network"`
	IP      string `json:"ip,omitempty"`
}

func strs[T fmt.Stringer](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.String()
	}
	return out
}

// FromFile draws a lab file as written.
func FromFile(l *topology.Lab) Graph {
	g := Graph{Lab: l.Name}
	if l.Underlay != nil {
		g.Underlay = l.Underlay.Subnet.String()
	}
	for _, h := range l.Hosts {
		gh := Host{Name: h.Name, Forward: h.Forward}
		if l.Underlay != nil && h.Name != "" {
			gh.Underlay = l.Underlay.Addresses[h.Name].String()
		}
		for _, n := range h.Networks {
			gh.Networks = append(gh.Networks, Network{Name: n.Name, Driver: orDefault(n.Driver, "bridge"), Subnets: strs(n.Subnets)})
		}
		for _, ns := range h.Namespaces {
			gns := Namespace{Name: ns.Name, Share: ns.Share}
			for _, m := range ns.Networks {
				gm := Member{Network: m.Network, IfName: m.IfName, Ports: m.Ports}
				for _, a := range []netip.Addr{m.IP, m.IP6} {
					if a.IsValid() {
						gm.Addrs = append(gm.Addrs, a.String())
					}
				}
				if len(gm.Addrs) == 0 {
					gm.Addrs = []string{"auto"}
				}
				gns.Members = append(gns.Members, gm)
			}
			gh.Namespaces = append(gh.Namespaces, gns)
		}
		for _, t := range h.Taps {
			gt := Tap{Name: t.Name, Network: t.Network}
			if t.IP.IsValid() {
				gt.IP = t.IP.String()
			}
			gh.Taps = append(gh.Taps, gt)
		}
		g.Hosts = append(g.Hosts, gh)
	}
	for _, k := range l.Links {
		gl := Link{A: k.Ends[0].Namespace, B: k.Ends[1].Namespace, Ends: []string{k.Ends[0].Namespace, k.Ends[1].Namespace}, Addrs: strs(k.Addresses)}
		if k.Ends[0].IfName != "" || k.Ends[1].IfName != "" {
			gl.IfNames = []string{k.Ends[0].IfName, k.Ends[1].IfName}
		}
		if k.Subnet.IsValid() {
			gl.Subnet = k.Subnet.String()
		}
		g.Links = append(g.Links, gl)
	}
	return g
}

// FromLab draws what a lab has made: the file's shape with the addresses
// nsnet gave.
func FromLab(info lab.Info) Graph {
	l := info.Model
	g := FromFile(l)
	got := map[string]map[string][]string{} // network -> namespace -> addrs
	ifn := map[string]map[string]string{}
	for _, n := range info.Networks {
		got[n.Name], ifn[n.Name] = map[string][]string{}, map[string]string{}
		for _, m := range n.Members {
			got[n.Name][m.Namespace] = strs(m.Addrs)
			ifn[n.Name][m.Namespace] = m.IfName
		}
	}
	for i, h := range g.Hosts {
		for j, ns := range h.Namespaces {
			for k, m := range ns.Members {
				name := l.NetworkName(h.Name, m.Network)
				if a, ok := got[name][ns.Name]; ok {
					g.Hosts[i].Namespaces[j].Members[k].Addrs = a
					g.Hosts[i].Namespaces[j].Members[k].IfName = ifn[name][ns.Name]
				}
			}
		}
		for _, hi := range info.Hosts {
			if hi.Name == h.Name && hi.Underlay.IsValid() {
				g.Hosts[i].Underlay = hi.Underlay.String()
			}
		}
		for j, t := range h.Taps {
			for _, ti := range info.Taps {
				if ti.Name == t.Name && len(ti.Addrs) > 0 {
					g.Hosts[i].Taps[j].IP = ti.Addrs[0].Addr().String()
				}
			}
		}
	}
	for i, k := range g.Links {
		for _, li := range info.Links {
			if li.NS1 == k.A && li.NS2 == k.B || li.NS1 == k.B && li.NS2 == k.A {
				a1, a2 := strs(li.Addrs1), strs(li.Addrs2)
				if li.NS1 != k.A {
					a1, a2 = a2, a1
				}
				g.Links[i].Addrs = append(a1, a2...)
				g.Links[i].IfNames = []string{li.If1, li.If2}
				if li.NS1 != k.A {
					g.Links[i].IfNames = []string{li.If2, li.If1}
				}
			}
		}
	}
	return g
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// Formats lists what Write draws.
var Formats = []string{"dot", "mermaid", "svg", "json"}

// Write draws g in format.
func Write(w io.Writer, g Graph, format string) error {
	switch format {
	case "dot":
		return dot(w, g)
	case "mermaid":
		return mermaid(w, g)
	case "svg":
		return svg(w, g)
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(g)
	}
	return fmt.Errorf("graph format %q: use one of %s", format, strings.Join(Formats, ", "))
}

// ids gives every object a node name valid in both dot and Mermaid.
type ids map[string]string

func (m ids) of(kind, name string) string {
	key := kind + ":" + name
	if id, ok := m[key]; ok {
		return id
	}
	var b strings.Builder
	b.WriteString(kind + "_")
	for _, r := range name {
		if r < 128 && (r == '_' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	id := b.String()
	for n := 2; slices.Contains(values(m), id); n++ {
		id = fmt.Sprintf("%s_%d", b.String(), n)
	}
	m[key] = id
	return id
}

func values(m ids) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func netID(m ids, host, net string) string { return m.of("net", host+"/"+net) }

func memberLabel(mb Member) string {
	parts := []string{}
	if mb.IfName != "" {
		parts = append(parts, mb.IfName)
	}
	parts = append(parts, mb.Addrs...)
	if len(mb.Ports) > 0 {
		parts = append(parts, "-p "+strings.Join(mb.Ports, ","))
	}
	return strings.Join(parts, " ")
}

func linkLabel(k Link) string {
	parts := slices.Clone(k.Addrs)
	if k.Subnet != "" {
		parts = append(parts, k.Subnet)
	}
	if len(k.IfNames) == 2 {
		parts = append([]string{k.IfNames[0] + "—" + k.IfNames[1]}, parts...)
	}
	return strings.Join(parts, " ")
}

func hostLabel(h Host) string {
	s := h.Name
	if h.Underlay != "" {
		s += " " + h.Underlay
	}
	if h.Forward != "" {
		s += " (FORWARD " + h.Forward + ")"
	}
	return s
}

func q(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), `"`, `\"`) }

func dot(w io.Writer, g Graph) error {
	m := ids{}
	var b strings.Builder
	fmt.Fprintf(&b, "graph %q {\n\trankdir=LR;\n\tnode [fontname=\"Helvetica\", fontsize=10];\n\tedge [fontname=\"Helvetica\", fontsize=9];\n", g.Lab)
	if g.Underlay != "" {
		fmt.Fprintf(&b, "\tunderlay [shape=hexagon, label=\"underlay\\n%s\"];\n", q(g.Underlay))
	}
	for _, h := range g.Hosts {
		indent := "\t"
		if h.Name != "" {
			fmt.Fprintf(&b, "\tsubgraph \"cluster_%s\" {\n\t\tlabel=\"%s\";\n", q(h.Name), q(hostLabel(h)))
			indent = "\t\t"
			fmt.Fprintf(&b, "%s%s [shape=box3d, label=\"%s\"];\n", indent, m.of("host", h.Name), q(h.Name))
		}
		for _, n := range h.Networks {
			fmt.Fprintf(&b, "%s%s [shape=ellipse, style=filled, fillcolor=\"#dde8f8\", label=\"%s\\n%s %s\"];\n", indent, netID(m, h.Name, n.Name), q(n.Name), q(n.Driver), q(strings.Join(n.Subnets, " ")))
			if h.Name != "" {
				fmt.Fprintf(&b, "%s%s -- %s [style=dotted];\n", indent, m.of("host", h.Name), netID(m, h.Name, n.Name))
			}
		}
		for _, ns := range h.Namespaces {
			fmt.Fprintf(&b, "%s%s [shape=box, label=\"%s\"];\n", indent, m.of("ns", ns.Name), q(ns.Name))
			if ns.Share != "" {
				fmt.Fprintf(&b, "%s%s -- %s [style=dashed, label=\"shares\"];\n", indent, m.of("ns", ns.Name), m.of("ns", ns.Share))
			}
			for _, mb := range ns.Members {
				fmt.Fprintf(&b, "%s%s -- %s [label=\"%s\"];\n", indent, m.of("ns", ns.Name), netID(m, h.Name, mb.Network), q(memberLabel(mb)))
			}
		}
		for _, t := range h.Taps {
			fmt.Fprintf(&b, "%s%s [shape=component, label=\"tap %s\"];\n", indent, m.of("tap", t.Name), q(t.Name))
			fmt.Fprintf(&b, "%s%s -- %s [label=\"%s\"];\n", indent, m.of("tap", t.Name), netID(m, h.Name, t.Network), q(t.IP))
		}
		if h.Name != "" {
			b.WriteString("\t}\n")
			if g.Underlay != "" {
				fmt.Fprintf(&b, "\t%s -- underlay [label=\"%s\"];\n", m.of("host", h.Name), q(h.Underlay))
			}
		}
	}
	if linksHost(g) {
		fmt.Fprintf(&b, "\t%s [shape=box3d, label=\"host\"];\n", m.of("host", ""))
	}
	for _, k := range g.Links {
		fmt.Fprintf(&b, "\t%s -- %s [color=\"#b05000\", label=\"%s\"];\n", endID(m, g, k.A), endID(m, g, k.B), q(linkLabel(k)))
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// linksHost says whether a link ends in the lab's own host.
func linksHost(g Graph) bool {
	for _, k := range g.Links {
		if k.A == topology.HostName || k.B == topology.HostName {
			return true
		}
	}
	return false
}

// endID names a link's end: a namespace, a host, or the lab's host.
func endID(m ids, g Graph, name string) string {
	for _, h := range g.Hosts {
		if h.Name == name && name != "" {
			return m.of("host", name)
		}
	}
	if name == topology.HostName {
		return m.of("host", "")
	}
	return m.of("ns", name)
}

func mermaid(w io.Writer, g Graph) error {
	m := ids{}
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	if g.Underlay != "" {
		fmt.Fprintf(&b, "  underlay{{\"underlay %s\"}}\n", g.Underlay)
	}
	for _, h := range g.Hosts {
		indent := "  "
		if h.Name != "" {
			fmt.Fprintf(&b, "  subgraph %s[\"%s\"]\n", m.of("cluster", h.Name), mq(hostLabel(h)))
			indent = "    "
			fmt.Fprintf(&b, "%s%s[/\"%s\"/]\n", indent, m.of("host", h.Name), mq(h.Name))
		}
		for _, n := range h.Networks {
			fmt.Fprintf(&b, "%s%s([\"%s<br/>%s %s\"])\n", indent, netID(m, h.Name, n.Name), mq(n.Name), mq(n.Driver), mq(strings.Join(n.Subnets, " ")))
		}
		for _, ns := range h.Namespaces {
			fmt.Fprintf(&b, "%s%s[\"%s\"]\n", indent, m.of("ns", ns.Name), mq(ns.Name))
		}
		for _, t := range h.Taps {
			fmt.Fprintf(&b, "%s%s[[\"tap %s\"]]\n", indent, m.of("tap", t.Name), mq(t.Name))
		}
		if h.Name != "" {
			b.WriteString("  end\n")
		}
	}
	for _, h := range g.Hosts {
		if h.Name != "" && g.Underlay != "" {
			fmt.Fprintf(&b, "  %s ---|\"%s\"| underlay\n", m.of("host", h.Name), mq(h.Underlay))
		}
		for _, n := range h.Networks {
			if h.Name != "" {
				fmt.Fprintf(&b, "  %s -.- %s\n", m.of("host", h.Name), netID(m, h.Name, n.Name))
			}
		}
		for _, ns := range h.Namespaces {
			if ns.Share != "" {
				fmt.Fprintf(&b, "  %s -. shares .- %s\n", m.of("ns", ns.Name), m.of("ns", ns.Share))
			}
			for _, mb := range ns.Members {
				fmt.Fprintf(&b, "  %s ---|\"%s\"| %s\n", m.of("ns", ns.Name), mq(memberLabel(mb)), netID(m, h.Name, mb.Network))
			}
		}
		for _, t := range h.Taps {
			fmt.Fprintf(&b, "  %s ---|\"%s\"| %s\n", m.of("tap", t.Name), mq(orDefault(t.IP, "auto")), netID(m, h.Name, t.Network))
		}
	}
	if linksHost(g) {
		fmt.Fprintf(&b, "  %s[/\"host\"/]\n", m.of("host", ""))
	}
	for _, k := range g.Links {
		fmt.Fprintf(&b, "  %s ===|\"%s\"| %s\n", endID(m, g, k.A), mq(orDefault(linkLabel(k), "link")), endID(m, g, k.B))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// mq escapes for a quoted Mermaid label.
func mq(s string) string { return strings.ReplaceAll(s, `"`, "#quot;") }
