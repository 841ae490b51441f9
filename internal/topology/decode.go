// Package topology reads a lab file: the YAML description of hosts,
// networks, namespaces, links and TAPs that `nsnet apply` makes real. It
// decodes the file node by node rather than into tagged structs, so that
// every error, of syntax or of meaning, names the file, the line and column
// of the key at fault, and the key's path.
package topology

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// ErrInvalid is what every error about the file's contents matches.
var ErrInvalid = errors.New("invalid lab file")

// Error is a fault in the file, where it is.
type Error struct {
	File      string
	Line, Col int
	// Key is the path of the key at fault (hosts.node01.networks.pods.subnet).
	Key    string
	Reason string
}

func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d:%d", e.File, e.Line, e.Col)
	}
	if e.Key == "" {
		return loc + ": " + e.Reason
	}
	return fmt.Sprintf("%s: %s: %s", loc, e.Key, e.Reason)
}

// Is makes every Error match ErrInvalid.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// Pos is where a key sits in the file.
type Pos struct{ Line, Col int }

// decoder walks the YAML tree, remembering where each key path sits.
type decoder struct {
	file string
	pos  map[string]Pos
	errs []*Error
}

func (d *decoder) fail(n ast.Node, path, format string, args ...any) {
	e := &Error{File: d.file, Key: path, Reason: fmt.Sprintf(format, args...)}
	if n != nil && n.GetToken() != nil {
		e.Line, e.Col = n.GetToken().Position.Line, n.GetToken().Position.Column
	} else if p, ok := d.pos[path]; ok {
		e.Line, e.Col = p.Line, p.Col
	}
	d.errs = append(d.errs, e)
}

// at is fail for a path whose node the decoder has passed already.
func (d *decoder) at(path, format string, args ...any) { d.fail(nil, path, format, args...) }

func (d *decoder) first() error {
	if len(d.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(d.errs, func(a, b *Error) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Col - b.Col
	})
	return d.errs[0]
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func unwrap(n ast.Node) ast.Node {
	for {
		switch v := n.(type) {
		case *ast.AnchorNode:
			n = v.Value
		case *ast.TagNode:
			n = v.Value
		case *ast.CommentGroupNode:
			return nil
		default:
			return n
		}
	}
}

func isNull(n ast.Node) bool {
	n = unwrap(n)
	if n == nil {
		return true
	}
	_, ok := n.(*ast.NullNode)
	return ok
}

// mapping calls fields[key] for each key of a mapping node, and refuses
// keys it does not know, keys given twice, and nodes that are no mapping.
func (d *decoder) mapping(n ast.Node, path string, fields map[string]func(ast.Node, string)) {
	d.pairs(n, path, func(key string, v ast.Node, p string) {
		f, ok := fields[key]
		if !ok {
			d.at(p, "unknown key (known: %s)", strings.Join(slices.Sorted(mapKeys(fields)), ", "))
			return
		}
		f(v, p)
	})
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// pairs walks a mapping whose keys are names the file chooses.
func (d *decoder) pairs(n ast.Node, path string, each func(key string, v ast.Node, path string)) {
	n = unwrap(n)
	var kvs []*ast.MappingValueNode
	switch v := n.(type) {
	case nil, *ast.NullNode:
		return
	case *ast.MappingNode:
		kvs = v.Values
	case *ast.MappingValueNode:
		kvs = []*ast.MappingValueNode{v}
	default:
		d.fail(n, path, "want a mapping (key: value), not %s", describe(n))
		return
	}
	seen := map[string]bool{}
	for _, kv := range kvs {
		key, ok := scalarText(kv.Key)
		p := join(path, key)
		tok := kv.Key.GetToken()
		if !ok || key == "" {
			d.fail(kv.Key, path, "a key must be a plain name")
			continue
		}
		if _, ok := unwrap(kv.Value).(*ast.AliasNode); ok {
			d.fail(kv.Value, p, "YAML aliases are not supported here; repeat the value")
			continue
		}
		if seen[key] {
			d.fail(kv.Key, p, "given twice")
			continue
		}
		seen[key] = true
		d.pos[p] = Pos{tok.Position.Line, tok.Position.Column}
		each(key, kv.Value, p)
	}
}

// nodePos is where a node starts: a mapping at its first key (its own
// token is the first ':').
func nodePos(n ast.Node) Pos {
	switch v := unwrap(n).(type) {
	case *ast.MappingNode:
		if len(v.Values) > 0 {
			n = v.Values[0].Key
		}
	case *ast.MappingValueNode:
		n = v.Key
	}
	if n == nil || n.GetToken() == nil {
		return Pos{}
	}
	p := n.GetToken().Position
	return Pos{p.Line, p.Column}
}

func describe(n ast.Node) string {
	switch unwrap(n).(type) {
	case *ast.SequenceNode:
		return "a list"
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.NullNode, nil:
		return "nothing"
	}
	if t, ok := scalarText(n); ok {
		return fmt.Sprintf("the value %q", t)
	}
	return fmt.Sprintf("the value %s", n.String())
}

// scalarText is a scalar's text, without quotes.
func scalarText(n ast.Node) (string, bool) {
	n = unwrap(n)
	switch v := n.(type) {
	case *ast.StringNode:
		return v.Value, true
	case ast.ScalarNode:
		if _, null := v.(*ast.NullNode); null {
			return "", false
		}
		return v.GetToken().Value, true
	}
	return "", false
}

func (d *decoder) str(n ast.Node, path string, dst *string) {
	s, ok := scalarText(n)
	if !ok {
		d.fail(n, path, "want a single value, not %s", describe(n))
		return
	}
	*dst = s
}

func (d *decoder) boolean(n ast.Node, path string, dst **bool) {
	s, ok := scalarText(n)
	b, err := strconv.ParseBool(s)
	if !ok || err != nil {
		d.fail(n, path, "want true or false, not %s", describe(n))
		return
	}
	*dst = &b
}

func (d *decoder) integer(n ast.Node, path string, dst *int) {
	s, ok := scalarText(n)
	i, err := strconv.Atoi(s)
	if !ok || err != nil {
		d.fail(n, path, "want a whole number, not %s", describe(n))
		return
	}
	*dst = i
}

// strs reads one value or a list of them.
func (d *decoder) strs(n ast.Node, path string, dst *[]string) {
	if seq, ok := unwrap(n).(*ast.SequenceNode); ok {
		for i, v := range seq.Values {
			var s string
			d.str(v, fmt.Sprintf("%s[%d]", path, i), &s)
			*dst = append(*dst, s)
		}
		return
	}
	var s string
	d.str(n, path, &s)
	*dst = append(*dst, s)
}

func (d *decoder) addr(n ast.Node, path string, dst *netip.Addr) {
	var s string
	d.str(n, path, &s)
	if s == "" {
		return
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		d.fail(n, path, "%q is not an IP address", s)
		return
	}
	*dst = a
}

func (d *decoder) addrs(n ast.Node, path string, dst *[]netip.Addr) {
	var ss []string
	d.strs(n, path, &ss)
	for _, s := range ss {
		a, err := netip.ParseAddr(s)
		if err != nil {
			d.fail(n, path, "%q is not an IP address", s)
			continue
		}
		*dst = append(*dst, a)
	}
}

func (d *decoder) prefixes(n ast.Node, path string, dst *[]netip.Prefix) {
	var ss []string
	d.strs(n, path, &ss)
	for _, s := range ss {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			d.fail(n, path, "%q is not an address with a prefix length (CIDR)", s)
			continue
		}
		*dst = append(*dst, p)
	}
}

// Read reads and checks the lab file at path.
func Read(path string) (*Lab, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("lab file: %w", err)
	}
	l, err := Parse(path, data)
	if err == nil {
		// The lab records where it came from; a relative path would not
		// name one file. Errors keep the path as the user gave it.
		l.AbsFile = path
		if abs, aerr := filepath.Abs(path); aerr == nil {
			l.AbsFile = abs
		}
	}
	return l, err
}

// Parse decodes and checks a lab file's contents; file names it in errors.
func Parse(file string, data []byte) (*Lab, error) {
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		e := &Error{File: file, Reason: "invalid YAML: " + oneLine(err.Error())}
		var ye yaml.Error
		if errors.As(err, &ye) {
			e.Reason = "invalid YAML: " + oneLine(ye.GetMessage())
			if t := ye.GetToken(); t != nil {
				e.Line, e.Col = t.Position.Line, t.Position.Column
			}
		}
		return nil, e
	}
	d := &decoder{file: file, pos: map[string]Pos{}}
	if len(f.Docs) != 1 || isNull(f.Docs[0].Body) {
		return nil, &Error{File: file, Reason: "want exactly one YAML document, with at least a name"}
	}
	lab := d.lab(f.Docs[0].Body)
	if err := d.first(); err != nil {
		return nil, err
	}
	lab.File = file
	lab.pos = d.pos
	d.check(lab)
	if err := d.first(); err != nil {
		return nil, err
	}
	return lab, nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func (d *decoder) lab(n ast.Node) *Lab {
	lab := &Lab{}
	top := &Host{}
	var flat bool
	d.mapping(n, "", map[string]func(ast.Node, string){
		"name": func(v ast.Node, p string) { d.str(v, p, &lab.Name) },
		"hosts": func(v ast.Node, p string) {
			d.pairs(v, p, func(name string, v ast.Node, p string) {
				h := &Host{Name: name, path: p}
				d.host(v, p, h)
				lab.Hosts = append(lab.Hosts, h)
			})
			if isNull(v) {
				d.fail(v, p, "list at least one host, or leave hosts out")
			}
		},
		"networks":   func(v ast.Node, p string) { flat = true; d.networks(v, p, top) },
		"namespaces": func(v ast.Node, p string) { flat = true; d.namespaces(v, p, top) },
		"taps":       func(v ast.Node, p string) { flat = true; d.taps(v, p, top) },
		"links":      func(v ast.Node, p string) { d.links(v, p, lab) },
		"underlay":   func(v ast.Node, p string) { lab.Underlay = d.underlay(v, p) },
	})
	if flat {
		if len(lab.Hosts) > 0 {
			d.at("networks", "with hosts, networks, namespaces and taps go under each host")
		}
		lab.Hosts = append(lab.Hosts, top)
	}
	return lab
}

func (d *decoder) host(n ast.Node, path string, h *Host) {
	d.mapping(n, path, map[string]func(ast.Node, string){
		"networks":   func(v ast.Node, p string) { d.networks(v, p, h) },
		"namespaces": func(v ast.Node, p string) { d.namespaces(v, p, h) },
		"taps":       func(v ast.Node, p string) { d.taps(v, p, h) },
		"firewall": func(v ast.Node, p string) {
			d.mapping(v, p, map[string]func(ast.Node, string){
				"forward": func(v ast.Node, p string) { d.str(v, p, &h.Forward) },
			})
		},
		"bgp": func(v ast.Node, p string) { h.BGP = d.hostBGP(v, p) },
	})
}

func (d *decoder) hostBGP(n ast.Node, path string) *HostBGP {
	b := &HostBGP{path: path}
	d.mapping(n, path, map[string]func(ast.Node, string){
		"asn":       func(v ast.Node, p string) { d.asn(v, p, &b.ASN) },
		"router_id": func(v ast.Node, p string) { d.addr(v, p, &b.RouterID) },
		"aggregate": func(v ast.Node, p string) { d.boolean(v, p, &b.Aggregate) },
		"peers": func(v ast.Node, p string) {
			seq, ok := unwrap(v).(*ast.SequenceNode)
			if !ok {
				d.fail(v, p, "want a list of peers ({address: ..., asn: ...}), not %s", describe(v))
				return
			}
			for i, e := range seq.Values {
				pp := fmt.Sprintf("%s[%d]", p, i)
				peer := &BGPPeer{path: pp}
				d.mapping(e, pp, map[string]func(ast.Node, string){
					"address": func(v ast.Node, p string) { d.addr(v, p, &peer.Address) },
					"asn":     func(v ast.Node, p string) { d.asn(v, p, &peer.ASN) },
					"passive": func(v ast.Node, p string) { d.boolean(v, p, &peer.Passive) },
				})
				b.Peers = append(b.Peers, peer)
			}
		},
	})
	return b
}

// asn reads an autonomous system number: 1 to 4294967295.
func (d *decoder) asn(n ast.Node, path string, dst *uint32) {
	s, ok := scalarText(n)
	v, err := strconv.ParseUint(s, 10, 64)
	if !ok || err != nil || v == 0 || v > 4294967295 {
		d.fail(n, path, "want an AS number from 1 to 4294967295, not %s", describe(n))
		return
	}
	*dst = uint32(v)
}

func (d *decoder) networks(n ast.Node, path string, h *Host) {
	d.pairs(n, path, func(name string, v ast.Node, p string) {
		nw := &Network{Name: name, path: p}
		d.mapping(v, p, map[string]func(ast.Node, string){
			"driver":        func(v ast.Node, p string) { d.str(v, p, &nw.Driver) },
			"subnet":        func(v ast.Node, p string) { d.prefixes(v, p, &nw.Subnets) },
			"gateway":       func(v ast.Node, p string) { d.addrs(v, p, &nw.Gateways) },
			"nat":           func(v ast.Node, p string) { d.boolean(v, p, &nw.NAT) },
			"internal":      func(v ast.Node, p string) { d.boolean(v, p, &nw.Internal) },
			"isolate":       func(v ast.Node, p string) { d.boolean(v, p, &nw.Isolate) },
			"dns":           func(v ast.Node, p string) { d.boolean(v, p, &nw.DNS) },
			"dns_upstream":  func(v ast.Node, p string) { d.addrs(v, p, &nw.DNSUpstreams) },
			"mtu":           func(v ast.Node, p string) { d.integer(v, p, &nw.MTU) },
			"parent":        func(v ast.Node, p string) { d.str(v, p, &nw.Parent) },
			"bridge_name":   func(v ast.Node, p string) { d.str(v, p, &nw.BridgeName) },
			"host_firewall": func(v ast.Node, p string) { d.boolean(v, p, &nw.HostFirewall) },
			"ip_range":      func(v ast.Node, p string) { d.prefixes(v, p, &nw.IPRanges) },
			"aux_address": func(v ast.Node, p string) {
				nw.AuxAddresses = map[string]netip.Addr{}
				d.pairs(v, p, func(name string, v ast.Node, p string) {
					var a netip.Addr
					d.addr(v, p, &a)
					nw.AuxAddresses[name] = a
				})
			},
		})
		h.Networks = append(h.Networks, nw)
	})
}

func (d *decoder) namespaces(n ast.Node, path string, h *Host) {
	d.pairs(n, path, func(name string, v ast.Node, p string) {
		ns := &Namespace{Name: name, path: p}
		d.mapping(v, p, map[string]func(ast.Node, string){
			"share": func(v ast.Node, p string) { d.str(v, p, &ns.Share) },
			"networks": func(v ast.Node, p string) {
				if seq, ok := unwrap(v).(*ast.SequenceNode); ok {
					for i, e := range seq.Values {
						m := &Membership{path: fmt.Sprintf("%s[%d]", p, i)}
						d.str(e, m.path, &m.Network)
						d.pos[m.path] = nodePos(e)
						ns.Networks = append(ns.Networks, m)
					}
					return
				}
				d.pairs(v, p, func(net string, v ast.Node, p string) {
					m := &Membership{Network: net, path: p}
					d.membership(v, p, m)
					ns.Networks = append(ns.Networks, m)
				})
			},
		})
		h.Namespaces = append(h.Namespaces, ns)
	})
}

func (d *decoder) membership(n ast.Node, path string, m *Membership) {
	d.mapping(n, path, map[string]func(ast.Node, string){
		"ip":            func(v ast.Node, p string) { d.addr(v, p, &m.IP) },
		"ip6":           func(v ast.Node, p string) { d.addr(v, p, &m.IP6) },
		"ifname":        func(v ast.Node, p string) { d.str(v, p, &m.IfName) },
		"default_route": func(v ast.Node, p string) { d.boolean(v, p, &m.DefaultRoute) },
		"ports":         func(v ast.Node, p string) { d.strs(v, p, &m.Ports) },
		"aliases":       func(v ast.Node, p string) { d.strs(v, p, &m.Aliases) },
	})
}

func (d *decoder) taps(n ast.Node, path string, h *Host) {
	d.pairs(n, path, func(name string, v ast.Node, p string) {
		t := &Tap{Name: name, path: p}
		d.mapping(v, p, map[string]func(ast.Node, string){
			"network": func(v ast.Node, p string) { d.str(v, p, &t.Network) },
			"ip":      func(v ast.Node, p string) { d.addr(v, p, &t.IP) },
		})
		h.Taps = append(h.Taps, t)
	})
}

func (d *decoder) links(n ast.Node, path string, lab *Lab) {
	seq, ok := unwrap(n).(*ast.SequenceNode)
	if !ok {
		if !isNull(n) {
			d.fail(n, path, "want a list of links, not %s", describe(n))
		}
		return
	}
	for i, v := range seq.Values {
		l := &Link{path: fmt.Sprintf("%s[%d]", path, i)}
		d.pos[l.path] = nodePos(v)
		d.mapping(v, l.path, map[string]func(ast.Node, string){
			"endpoints": func(v ast.Node, p string) {
				var eps []string
				d.strs(v, p, &eps)
				if len(eps) != 2 {
					d.fail(v, p, "want two endpoints, NS[:IFNAME] each, not %d", len(eps))
					return
				}
				for i, e := range eps {
					ns, ifn, _ := strings.Cut(e, ":")
					l.Ends[i] = Endpoint{Namespace: ns, IfName: ifn}
				}
			},
			"addresses": func(v ast.Node, p string) { d.prefixes(v, p, &l.Addresses) },
			"subnet": func(v ast.Node, p string) {
				var ps []netip.Prefix
				if d.prefixes(v, p, &ps); len(ps) == 1 {
					l.Subnet = ps[0]
				} else if len(ps) > 1 {
					d.fail(v, p, "want one subnet")
				}
			},
			"mtu": func(v ast.Node, p string) { d.integer(v, p, &l.MTU) },
		})
		lab.Links = append(lab.Links, l)
	}
}

func (d *decoder) underlay(n ast.Node, path string) *Underlay {
	u := &Underlay{path: path, Addresses: map[string]netip.Addr{}}
	d.mapping(n, path, map[string]func(ast.Node, string){
		"subnet": func(v ast.Node, p string) {
			var ps []netip.Prefix
			if d.prefixes(v, p, &ps); len(ps) == 1 {
				u.Subnet = ps[0]
			} else if len(ps) > 1 {
				d.fail(v, p, "want one IPv4 subnet")
			}
		},
		"addresses": func(v ast.Node, p string) {
			d.pairs(v, p, func(host string, v ast.Node, p string) {
				var a netip.Addr
				d.addr(v, p, &a)
				u.Addresses[host] = a
			})
		},
		"nat":     func(v ast.Node, p string) { d.boolean(v, p, &u.NAT) },
		"routing": func(v ast.Node, p string) { d.str(v, p, &u.Routing) },
		"asn":     func(v ast.Node, p string) { d.asn(v, p, &u.ASN) },
		"mtu":     func(v ast.Node, p string) { d.integer(v, p, &u.MTU) },
	})
	return u
}
