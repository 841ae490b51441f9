package store

import (
	"encoding/binary"
	"maps"
	"slices"
	"strings"
)

// bChanges is the change log: for each committed generation that wrote a
// network or a membership, which ones (see Change). A reader that
// keeps a copy of the store (the agent) reads what changed since the
// generation it has, instead of the whole store: with a thousand networks
// and ten thousand members, that is the difference between a connect that
// waits microseconds for the agent and one that waits tens of
// milliseconds.
var bChanges = []byte("changes")

// keepChanges is how many generations the log reaches back; a reader
// further behind reads the whole store.
const keepChanges = 4096

// logStart is the key of the generation the log began at: a reader whose
// copy is older cannot trust the log to be complete.
var logStart = []byte("start")

func genKey(gen uint64) []byte { return binary.BigEndian.AppendUint64(nil, gen) }

// logChanges writes this transaction's entry, if it changed a network,
// and drops the entries that fell out of the log's reach.
func (t *Tx) logChanges() error {
	if len(t.changed) == 0 {
		return nil
	}
	b, err := t.tx.CreateBucketIfNotExists(bChanges)
	if err != nil {
		return err
	}
	gen := uint64(t.tx.ID()) // the generation this commit makes
	if b.Get(logStart) == nil {
		if err := b.Put(logStart, genKey(gen)); err != nil {
			return err
		}
	}
	if err := b.Put(genKey(gen), []byte(strings.Join(encodeChanges(t.changed), "\x00"))); err != nil {
		return err
	}
	if gen <= keepChanges {
		return nil
	}
	c := b.Cursor()
	for k, _ := c.First(); len(k) == 8 && binary.BigEndian.Uint64(k) < gen-keepChanges; k, _ = c.Next() {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// Change is one entry of the change log. Namespace is empty when the
// network's record changed (or it was made or removed); otherwise only
// Namespace's membership of Network did, and a reader that has the
// network need read that one membership, not all of them: on a network
// of a thousand members a connect would otherwise cost the agent a
// thousand records decoded.
type Change struct {
	Network, Namespace string
}

// memberMark starts a log field that names a namespace whose membership
// of the network named by the field before it changed. An entry lists,
// for each network, its name alone when its record changed (its members
// are then read with it), or its name followed by one marked field per
// membership that changed. A reader from before memberships were logged
// takes every field for a network name: it reads the network whole, as
// it always did, and finds no network by a marked name. So an agent still
// running from an older nsnet stays right, only slower, and this reader
// takes an older entry's names as networks changed.
const memberMark = "\x01"

// encodeChanges lays changed out as the log's fields.
func encodeChanges(changed map[Change]bool) []string {
	byNet := map[string][]string{}
	for c := range changed {
		if changed[Change{Network: c.Network}] {
			byNet[c.Network] = nil // the record changed: read it whole
			continue
		}
		byNet[c.Network] = append(byNet[c.Network], memberMark+c.Namespace)
	}
	var fields []string
	for _, net := range slices.Sorted(maps.Keys(byNet)) {
		fields = append(fields, net)
		fields = append(fields, byNet[net]...)
	}
	return fields
}

// Changes returns what changed after generation since, up to this
// transaction's, each change once. ok is false when the log does not
// reach back that far (or began later): the caller must then read
// everything.
func (t *Tx) Changes(since uint64) (changes []Change, ok bool) {
	b := t.tx.Bucket(bChanges)
	if b == nil {
		return nil, false
	}
	start := b.Get(logStart)
	gen := t.Generation()
	// A copy newer than the store comes from another file (the store was
	// replaced): it cannot be brought up to date either.
	if start == nil || since > gen || since+1 < binary.BigEndian.Uint64(start) || (gen > keepChanges && since < gen-keepChanges) {
		return nil, false
	}
	seen := map[Change]bool{}
	add := func(ch Change) {
		if !seen[ch] {
			seen[ch] = true
			changes = append(changes, ch)
		}
	}
	c := b.Cursor()
	for k, v := c.Seek(genKey(since + 1)); len(k) == 8; k, v = c.Next() {
		fields := strings.Split(string(v), "\x00")
		for i := 0; i < len(fields); i++ {
			net := fields[i]
			members := 0
			for i+1 < len(fields) && strings.HasPrefix(fields[i+1], memberMark) {
				i++
				members++
				add(Change{Network: net, Namespace: fields[i][len(memberMark):]})
			}
			if members == 0 {
				add(Change{Network: net})
			}
		}
	}
	return changes, true
}
