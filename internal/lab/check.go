package lab

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/nsnet/nsnet/internal/engine"
	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/netns"
	"github.com/nsnet/nsnet/internal/store"
	"github.com/nsnet/nsnet/internal/topology"
)

// check finds, before any change, what the file asks that the engine or
// the machine would refuse: objects another lab or a plain command owns,
// networks the engine would not make, subnets taken on their host,
// addresses the network keeps for itself, and ports published twice.
func check(m *engine.Manager, l *topology.Lab, want []*object, rec store.Lab, others map[string]string) error {
	err := m.View(func(tx *store.Tx) error {
		for _, o := range want {
			if _, ours := rec.Objects[o.key]; ours {
				continue
			}
			f := strings.Fields(o.key)
			what := action("", o.key)
			if other, ok := others[o.key]; ok {
				return l.Errorf(o.path, "%s %s belongs to lab %s", what.Kind, what.Name, other)
			}
			var there bool
			var err error
			switch f[0] {
			case kHost, kNamespace, kShare:
				_, there, err = tx.Namespace(f[1])
				there = there || netns.Exists(f[1])
			case kNetwork:
				_, there, err = tx.Network(f[1])
			case kTap:
				_, there, err = tx.Tap(f[1])
			case kLink:
				_, there, err = tx.Link(f[1], f[2])
			}
			if err != nil {
				return err
			}
			if there {
				return l.Errorf(o.path, "%s %s exists and is not lab %s's (made by hand, by a plain nsnet command or by another lab); remove it or rename it here", what.Kind, what.Name, l.Name)
			}
		}
		return checkNetworks(m, tx, l, rec)
	})
	if err != nil {
		return err
	}
	return checkPorts(l)
}

func checkNetworks(m *engine.Manager, tx *store.Tx, l *topology.Lab, rec store.Lab) error {
	nets, err := tx.Summaries()
	if err != nil {
		return err
	}
	for _, h := range l.Hosts {
		for _, n := range h.Networks {
			spec := networkSpec(l, h, n)
			planned, err := m.PlanNetwork(spec)
			if err != nil {
				return l.Errorf(n.Path(), "%v", err)
			}
			if n.Parent != "" && h.Name == "" {
				if err := parentExists(m.HostNetns(), n.Parent); err != nil {
					return l.Errorf(n.Path()+".parent", "%v", err)
				}
			}
			for _, other := range nets {
				if other.HostNetns != planned.HostNetns || other.Name == planned.Name {
					continue
				}
				if _, ours := rec.Objects[kNetwork+" "+other.Name]; ours {
					continue
				}
				for _, p := range planned.Subnets {
					for _, q := range other.Subnets {
						if p.Overlaps(q) {
							return l.Errorf(n.Path()+".subnet", "subnet %s overlaps %s of network %s on the same host, which is not lab %s's", p, q, other.Name, l.Name)
						}
					}
				}
			}
			kept := map[netip.Addr]bool{}
			for _, g := range planned.Gateways {
				if g.IsValid() {
					kept[g] = true
				}
			}
			// Room: members without an address, and those with one, must
			// fit the smallest subnet beside what the network keeps.
			members := 0
			for _, ns := range h.Namespaces {
				for _, mb := range ns.Networks {
					if mb.Network == n.Name {
						members++
					}
				}
			}
			for _, t := range h.Taps {
				if t.Network == n.Name {
					members++
				}
			}
			for _, p := range planned.Subnets {
				room := 1 << min(p.Addr().BitLen()-p.Bits(), 30)
				if p.Addr().Is4() {
					room -= 2 // network and broadcast
				}
				room -= len(kept) + len(planned.AuxAddresses)
				if members > room {
					return l.Errorf(n.Path()+".subnet", "subnet %s holds %d members at most, and the file puts %d on network %s", p, max(room, 0), members, n.Name)
				}
			}
			for _, ns := range h.Namespaces {
				for _, mb := range ns.Networks {
					if mb.Network != n.Name {
						continue
					}
					for _, key := range []string{"ip", "ip6"} {
						a := map[string]netip.Addr{"ip": mb.IP, "ip6": mb.IP6}[key]
						if a.IsValid() && kept[a] {
							return l.Errorf(mb.Path()+"."+key, "address %s is network %s's gateway", a, n.Name)
						}
					}
				}
			}
			for _, t := range h.Taps {
				if t.Network == n.Name && t.IP.IsValid() && kept[t.IP] {
					return l.Errorf(t.Path()+".ip", "address %s is network %s's gateway", t.IP, n.Name)
				}
			}
		}
	}
	return nil
}

// checkPorts parses every published port and refuses one host port
// published twice on a host.
func checkPorts(l *topology.Lab) error {
	type held struct {
		p    store.PortMap
		path string
	}
	for _, h := range l.Hosts {
		var all []held
		for _, ns := range h.Namespaces {
			for _, mb := range ns.Networks {
				for i, s := range mb.Ports {
					path := fmt.Sprintf("%s.ports[%d]", mb.Path(), i)
					if len(mb.Ports) == 1 {
						path = mb.Path() + ".ports"
					}
					p, err := parsePort(s)
					if err != nil {
						return l.Errorf(mb.Path()+".ports", "%v", err)
					}
					for _, o := range all {
						if clash(o.p, p) {
							return l.Errorf(mb.Path()+".ports", "host port %d/%s is published twice on %s (also at %s)", p.HostPort, p.Proto, hostWord(h.Name), o.path)
						}
					}
					all = append(all, held{p, path})
				}
			}
		}
	}
	return nil
}

func hostWord(name string) string {
	if name == "" {
		return "the lab's host"
	}
	return "host " + name
}

func clash(a, b store.PortMap) bool {
	if a.Proto != b.Proto {
		return false
	}
	if a.HostIP.IsValid() && b.HostIP.IsValid() && a.HostIP != b.HostIP {
		return false
	}
	aEnd, bEnd := int(a.HostPort)+a.Count()-1, int(b.HostPort)+b.Count()-1
	return int(a.HostPort) <= bEnd && int(b.HostPort) <= aEnd
}

// parsePort is the engine's reading of a published port.
var parsePort = engine.ParsePort

// parentExists checks that a macvlan network's parent is a device of the
// host (a simulated host's devices do not exist before the apply).
func parentExists(host, parent string) error {
	h, err := kernel.Open(host)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(parent)
	if err != nil {
		return err
	}
	if l == nil {
		return fmt.Errorf("the host has no device %s to be the parent", parent)
	}
	return nil
}
