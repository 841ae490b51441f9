package agent

import (
	"reflect"
	"slices"
	"strings"

	"github.com/nsnet/nsnet/internal/store"
)

// storeCopy is what the agent serves from: every network and its members,
// as of generation gen. A refresh reads only the networks the store's
// change log names since then (store.Tx.Changes), so its cost follows the
// change, not the number of networks and members (issue 11); when the log
// does not reach back far enough, it reads everything.
type storeCopy struct {
	gen     uint64
	nets    map[string]store.Network
	members map[string][]store.Attachment
	// sorted is nets by name, kept in step, so that a refresh does not
	// copy and sort them all again.
	sorted []store.Network
	// structural says the last update added, removed or changed a
	// network, or read everything; when only members changed, what the
	// agent runs for each network stays as it is.
	structural bool
	// changed are the networks the last update found changed, in their
	// record or their members; nil when it read everything.
	changed map[string]bool
	// ports says the last update may have changed published ports: it
	// read a network whole, or a membership that has or had ports.
	ports bool
}

// update brings the copy to tx's generation.
func (c *storeCopy) update(tx *store.Tx) error {
	gen := tx.Generation()
	c.structural, c.ports = false, false
	c.changed = map[string]bool{}
	if c.nets != nil {
		if gen == c.gen {
			return nil
		}
		if changes, ok := tx.Changes(c.gen); ok {
			if err := c.apply(tx, changes); err != nil {
				return err
			}
			c.gen = gen
			return nil
		}
	}
	nets, err := tx.Networks()
	if err != nil {
		return err
	}
	members, err := tx.AllMembers()
	if err != nil {
		return err
	}
	c.nets, c.members = map[string]store.Network{}, members
	for _, n := range nets {
		c.nets[n.Name] = n
	}
	c.sorted = nets // Networks lists them by name
	c.gen = gen
	c.structural, c.ports = true, true
	c.changed = nil
	return nil
}

// apply reads what the log's changes name: a network whose record changed
// is read whole, members and all; a membership alone, of a network the
// copy has, is read by itself.
func (c *storeCopy) apply(tx *store.Tx, changes []store.Change) error {
	whole := map[string]bool{}
	for _, ch := range changes {
		if _, have := c.nets[ch.Network]; ch.Namespace == "" || !have {
			whole[ch.Network] = true
		}
	}
	for name := range whole {
		c.changed[name] = true
		c.ports = true
		n, found, err := tx.Network(name)
		if err != nil {
			return err
		}
		i, had := slices.BinarySearchFunc(c.sorted, name, byName)
		if !found {
			c.structural = c.structural || had
			delete(c.nets, name)
			delete(c.members, name)
			if had {
				c.sorted = slices.Delete(c.sorted, i, i+1)
			}
			continue
		}
		m, err := tx.Members(name)
		if err != nil {
			return err
		}
		if old, ok := c.nets[name]; !ok || !reflect.DeepEqual(old, n) {
			c.structural = true
		}
		c.nets[name], c.members[name] = n, m
		if had {
			c.sorted[i] = n
		} else {
			c.sorted = slices.Insert(c.sorted, i, n)
		}
	}
	for _, ch := range changes {
		if whole[ch.Network] {
			continue
		}
		c.changed[ch.Network] = true
		a, found, err := tx.Attachment(ch.Network, ch.Namespace)
		if err != nil {
			return err
		}
		ms := c.members[ch.Network]
		i, had := slices.BinarySearchFunc(ms, ch.Namespace, func(a store.Attachment, ns string) int { return strings.Compare(a.Namespace, ns) })
		c.ports = c.ports || len(a.Ports) > 0 || (had && len(ms[i].Ports) > 0)
		switch {
		case found && had:
			ms[i] = a
		case found:
			ms = slices.Insert(ms, i, a)
		case had:
			ms = slices.Delete(ms, i, i+1)
		}
		c.members[ch.Network] = ms
	}
	return nil
}

func byName(n store.Network, name string) int { return strings.Compare(n.Name, name) }

// list returns the copy's networks, sorted by name, and their members.
// Callers must not change them.
func (c *storeCopy) list() ([]store.Network, map[string][]store.Attachment) {
	return c.sorted, c.members
}
