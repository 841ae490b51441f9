package agent

import (
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
}

// update brings the copy to tx's generation.
func (c *storeCopy) update(tx *store.Tx) error {
	gen := tx.Generation()
	if c.nets != nil {
		if gen == c.gen {
			return nil
		}
		if names, ok := tx.Changes(c.gen); ok {
			for _, name := range names {
				n, found, err := tx.Network(name)
				if err != nil {
					return err
				}
				if !found {
					delete(c.nets, name)
					delete(c.members, name)
					continue
				}
				m, err := tx.Members(name)
				if err != nil {
					return err
				}
				c.nets[name], c.members[name] = n, m
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
	c.gen = gen
	return nil
}

// list returns the copy's networks, sorted by name, and their members.
func (c *storeCopy) list() ([]store.Network, map[string][]store.Attachment) {
	nets := make([]store.Network, 0, len(c.nets))
	for _, n := range c.nets {
		nets = append(nets, n)
	}
	slices.SortFunc(nets, func(a, b store.Network) int { return strings.Compare(a.Name, b.Name) })
	return nets, c.members
}
