package resolver

import (
	"fmt"
	"slices"
	"strings"
)

// Host is one host's zone, kept compiled a network at a time for the
// agent: Set and Remove cost what the network holds, and Compiled what
// the host has of networks (and of members in more than one), not of
// members. A connect on a host of ten thousand members thus waits for one
// network to be compiled, not the host (issue 11). A Host is not safe for concurrent use; what Compiled
// returns is, and stays valid after later changes.
type Host struct {
	nets map[string]*netTable
	// in lists, for each member FQDN, the networks it is in; multi names
	// those in more than one, which the compiled table indexes.
	in    map[string][]string
	multi map[string]bool
	// last is the table Compiled returned last; while no network came or
	// went and no subnet changed, the next shares its subnet index.
	last     *table
	reindex  bool
	position map[string]int // network name -> index in last.nets
}

// NewHost returns a Host with no networks.
func NewHost() *Host {
	return &Host{nets: map[string]*netTable{}, in: map[string][]string{}, multi: map[string]bool{}, reindex: true}
}

// Set compiles n and puts it in place of the network of the same name, if
// any. Names that are not DNS names are left out, and said so in the
// error; the rest is in effect.
func (h *Host) Set(n Network) error {
	t, bad := compileNet(n)
	old := h.nets[n.Name]
	h.nets[n.Name] = t
	if old == nil {
		for _, m := range t.members {
			h.join(m, n.Name)
		}
		h.reindex = true
	} else {
		// Only who joined or left touches the index: a connect to a
		// network of a thousand members is one of them.
		left, joined := diffSorted(old.members, t.members)
		for _, m := range left {
			h.leave(m, n.Name)
		}
		for _, m := range joined {
			h.join(m, n.Name)
		}
		h.reindex = h.reindex || !slices.Equal(old.subnets, t.subnets)
	}
	if len(bad) > 0 {
		return fmt.Errorf("resolver: left out names that are not DNS names: %s", strings.Join(bad, ", "))
	}
	return nil
}

// Remove takes network name out of the zone.
func (h *Host) Remove(name string) {
	if old, ok := h.nets[name]; ok {
		for _, m := range old.members {
			h.leave(m, name)
		}
		delete(h.nets, name)
		h.reindex = true
	}
}

// Len says how many networks the zone has.
func (h *Host) Len() int { return len(h.nets) }

// Compiled returns the zone as it stands, for SetCompiled.
func (h *Host) Compiled() Compiled {
	var t *table
	if h.reindex || h.last == nil {
		names := make([]string, 0, len(h.nets))
		for name := range h.nets {
			names = append(names, name)
		}
		slices.Sort(names)
		nets := make([]*netTable, len(names))
		h.position = make(map[string]int, len(names))
		for i, name := range names {
			nets[i] = h.nets[name]
			h.position[name] = i
		}
		t = index(nets)
		h.reindex = false
	} else {
		// The same networks with the same subnets: only their tables
		// changed, and the subnet index still holds.
		t = &table{nets: make([]*netTable, len(h.last.nets)), bySubnet: h.last.bySubnet, lengths: h.last.lengths}
		for name, i := range h.position {
			t.nets[i] = h.nets[name]
		}
	}
	t.multi = make(map[string][]int, len(h.multi))
	for m := range h.multi {
		var nets []int
		for _, name := range h.in[m] {
			nets = append(nets, h.position[name])
		}
		slices.Sort(nets)
		t.multi[m] = nets
	}
	h.last = t
	return Compiled{t}
}

// join notes that member m is in network net.
func (h *Host) join(m, net string) {
	h.in[m] = append(h.in[m], net)
	if len(h.in[m]) == 2 {
		h.multi[m] = true
	}
}

// leave notes that member m is no longer in network net.
func (h *Host) leave(m, net string) {
	nets := h.in[m]
	if i := slices.Index(nets, net); i >= 0 {
		nets = slices.Delete(nets, i, i+1)
	}
	switch len(nets) {
	case 0:
		delete(h.in, m)
	case 1:
		delete(h.multi, m)
		h.in[m] = nets
	default:
		h.in[m] = nets
	}
}

// diffSorted returns what only a has and what only b has, of two sorted
// lists without duplicates.
func diffSorted(a, b []string) (onlyA, onlyB []string) {
	for len(a) > 0 && len(b) > 0 {
		switch {
		case a[0] == b[0]:
			a, b = a[1:], b[1:]
		case a[0] < b[0]:
			onlyA, a = append(onlyA, a[0]), a[1:]
		default:
			onlyB, b = append(onlyB, b[0]), b[1:]
		}
	}
	return append(onlyA, a...), append(onlyB, b...)
}
