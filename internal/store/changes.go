package store

import (
	"encoding/binary"
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
	entries := make([]string, 0, len(t.changed))
	for c := range t.changed {
		e := c.Network
		if c.Namespace != "" {
			e += memberSep + c.Namespace
		}
		entries = append(entries, e)
	}
	if err := b.Put(genKey(gen), []byte(strings.Join(entries, "\x00"))); err != nil {
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

// memberSep parts a membership's network from its namespace in a log
// entry; neither name may hold a control character. Entries written
// before memberships were logged on their own hold the network alone,
// which a reader takes as the network changed: it reads it whole.
const memberSep = "\x01"

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
	c := b.Cursor()
	for k, v := c.Seek(genKey(since + 1)); len(k) == 8; k, v = c.Next() {
		for e := range strings.SplitSeq(string(v), "\x00") {
			net, ns, _ := strings.Cut(e, memberSep)
			ch := Change{Network: net, Namespace: ns}
			if !seen[ch] {
				seen[ch] = true
				changes = append(changes, ch)
			}
		}
	}
	return changes, true
}
