package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// bSummaries holds, beside each network's record, the part of it that
// whole-host decisions read (the firewall's shared rules, overlap checks,
// whether the agent has work), in a compact binary form: reading it for a
// thousand networks costs well under a millisecond, where decoding their
// JSON records costs about ten. PutNetwork and DeleteNetwork keep it in
// step; a store from before it is filled when first opened for writing.
var bSummaries = []byte("summaries")

// summaryVersion starts every summary, so that a later layout can tell.
const summaryVersion = 1

// Summary flags.
const (
	sumNAT = 1 << iota
	sumInternal
	sumNoIsolate
	sumDNS
	sumNoHostFirewall
)

// summarise encodes the fields of n that Summaries returns.
func summarise(n Network) []byte {
	b := []byte{summaryVersion}
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	str(n.Name)
	str(n.Driver)
	str(n.HostNetns)
	b = binary.AppendUvarint(b, n.HostIno)
	var flags byte
	for bit, on := range map[byte]bool{sumNAT: n.NAT, sumInternal: n.Internal, sumNoIsolate: n.NoIsolate, sumDNS: n.DNS, sumNoHostFirewall: n.NoHostFirewall} {
		if on {
			flags |= bit
		}
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(len(n.Subnets)))
	for _, p := range n.Subnets {
		a := p.Addr().AsSlice()
		b = append(b, byte(len(a)))
		b = append(b, a...)
		b = append(b, byte(p.Bits()))
	}
	keys := make([]string, 0, len(n.Options))
	for k := range n.Options {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		str(k)
		str(n.Options[k])
	}
	return b
}

var errSummary = errors.New("malformed network summary")

// unsummarise decodes a summary into a Network holding only its fields.
func unsummarise(b []byte) (Network, error) {
	var n Network
	name, driver, path, ino, b, ok := summaryHead(b)
	if !ok {
		return n, errSummary
	}
	n.Name, n.Driver, n.HostNetns, n.HostIno = string(name), string(driver), string(path), ino
	flags, b, ok := summaryBody(b, func(p netip.Prefix) bool {
		n.Subnets = append(n.Subnets, p)
		return true
	})
	if !ok {
		return n, errSummary
	}
	n.NAT, n.Internal, n.NoIsolate = flags&sumNAT != 0, flags&sumInternal != 0, flags&sumNoIsolate != 0
	n.DNS, n.NoHostFirewall = flags&sumDNS != 0, flags&sumNoHostFirewall != 0
	uvarint := func() (uint64, bool) {
		v, k := binary.Uvarint(b)
		if k <= 0 {
			return 0, false
		}
		b = b[k:]
		return v, true
	}
	str := func() (string, bool) {
		l, ok := uvarint()
		if !ok || uint64(len(b)) < l {
			return "", false
		}
		s := string(b[:l])
		b = b[l:]
		return s, true
	}
	count, ok := uvarint()
	if !ok {
		return n, errSummary
	}
	for range count {
		k, ok1 := str()
		v, ok2 := str()
		if !ok1 || !ok2 {
			return n, errSummary
		}
		if n.Options == nil {
			n.Options = map[string]string{}
		}
		n.Options[k] = v
	}
	return n, nil
}

// Summaries lists every network, sorted by name, with only the fields a
// whole-host decision reads: Name, Driver, HostNetns, HostIno, Subnets,
// NAT, Internal, NoIsolate, DNS, NoHostFirewall and Options. It costs a
// fraction of Networks.
func (t *Tx) Summaries() ([]Network, error) {
	b := t.tx.Bucket(bSummaries)
	if b == nil {
		return t.Networks() // a store from before summaries, opened read-only
	}
	var out []Network
	err := b.ForEach(func(k, v []byte) error {
		n, err := unsummarise(v)
		if err != nil {
			return fmt.Errorf("decode %s/%q: %w", bSummaries, k, err)
		}
		out = append(out, n)
		return nil
	})
	return out, err
}

// DNSMembers says whether any network with DNS on has a member. Every
// command asks (does the agent have work?): it walks the networks that
// have members, one summary each, and stops at the first that answers,
// where decoding every network's summary cost a command about a
// millisecond at a thousand networks.
func (t *Tx) DNSMembers() (bool, error) {
	c := t.bucket(bAttachments).Cursor()
	for k, _ := c.First(); k != nil; {
		name, _, ok := bytes.Cut(k, []byte{0})
		if !ok {
			k, _ = c.Next()
			continue
		}
		n, found, err := t.summary(string(name))
		if err != nil {
			return false, err
		}
		if found && n.DNS {
			return true, nil
		}
		// The network's members all share the prefix NAME\x00: \x01
		// sorts right after them.
		k, _ = c.Seek(append(name[:len(name):len(name)], 1))
	}
	return false, nil
}

// summary returns network name's summary.
func (t *Tx) summary(name string) (Network, bool, error) {
	b := t.tx.Bucket(bSummaries)
	if b == nil {
		return t.Network(name) // a store from before summaries, opened read-only
	}
	v := b.Get([]byte(name))
	if v == nil {
		return Network{}, false, nil
	}
	n, err := unsummarise(v)
	if err != nil {
		return Network{}, false, fmt.Errorf("decode %s/%q: %w", bSummaries, name, err)
	}
	return n, true, nil
}

// Hosts calls fn with the host namespace path and inode of every
// network, reading only those fields of each summary: every command
// needs them when it opens the store, and decoding whole summaries of a
// thousand networks cost a millisecond or more of each command.
func (t *Tx) Hosts(fn func(path string, ino uint64)) error {
	b := t.tx.Bucket(bSummaries)
	if b == nil {
		nets, err := t.Networks() // a store from before summaries, opened read-only
		for _, n := range nets {
			fn(n.HostNetns, n.HostIno)
		}
		return err
	}
	seen := map[string]map[uint64]bool{}
	return b.ForEach(func(k, v []byte) error {
		path, ino, ok := summaryHost(v)
		if !ok {
			return fmt.Errorf("decode %s/%q: %w", bSummaries, k, errSummary)
		}
		if !seen[string(path)][ino] {
			if seen[string(path)] == nil {
				seen[string(path)] = map[uint64]bool{}
			}
			seen[string(path)][ino] = true
			fn(string(path), ino)
		}
		return nil
	})
}

// summaryHost reads a summary's host path and inode: after the version,
// the name and the driver (see summarise).
func summaryHost(b []byte) ([]byte, uint64, bool) {
	_, _, path, ino, _, ok := summaryHead(b)
	return path, ino, ok
}

// summaryHead reads a summary's name, driver, host path and inode without
// copying, and returns what follows them (see summaryBody).
func summaryHead(b []byte) (name, driver, path []byte, ino uint64, rest []byte, ok bool) {
	if len(b) == 0 || b[0] != summaryVersion {
		return nil, nil, nil, 0, nil, false
	}
	b = b[1:]
	field := func() ([]byte, bool) {
		l, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < l {
			return nil, false
		}
		f := b[k : k+int(l)]
		b = b[k+int(l):]
		return f, true
	}
	var ok1, ok2 bool
	name, ok1 = field()
	driver, ok2 = field()
	path, ok = field()
	if !ok1 || !ok2 || !ok {
		return nil, nil, nil, 0, nil, false
	}
	ino, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, nil, nil, 0, nil, false
	}
	return name, driver, path, ino, b[k:], true
}

// summaryBody reads the flags and the subnets that follow a summary's
// head, handing each subnet to fn until it returns false, and returns
// what follows the subnets (the options); when fn stopped it, what
// follows the subnet fn stopped at.
func summaryBody(b []byte, fn func(netip.Prefix) bool) (flags byte, rest []byte, ok bool) {
	if len(b) < 1 {
		return 0, nil, false
	}
	flags, b = b[0], b[1:]
	count, k := binary.Uvarint(b)
	if k <= 0 {
		return 0, nil, false
	}
	b = b[k:]
	for range count {
		if len(b) < 1 || len(b) < int(b[0])+2 {
			return 0, nil, false
		}
		a, ok := netip.AddrFromSlice(b[1 : 1+b[0]])
		if !ok {
			return 0, nil, false
		}
		p, err := a.Prefix(int(b[1+b[0]]))
		if err != nil {
			return 0, nil, false
		}
		b = b[2+b[0]:]
		if !fn(p) {
			return flags, b, true
		}
	}
	return flags, b, true
}

// Overlap finds a network on host with a subnet that overlaps one of
// subnets, and says which. It reads only the host and subnets of each
// summary: every `net create` asks, and decoding every network's whole
// summary cost it about 1.5 ms at a thousand networks.
func (t *Tx) Overlap(host string, subnets []netip.Prefix) (network string, mine, theirs netip.Prefix, found bool, err error) {
	check := func(name string, q netip.Prefix) bool {
		for _, p := range subnets {
			if p.Overlaps(q) {
				network, mine, theirs, found = name, p, q, true
				return false
			}
		}
		return true
	}
	b := t.tx.Bucket(bSummaries)
	if b == nil {
		nets, err := t.Networks() // a store from before summaries, opened read-only
		for _, n := range nets {
			for _, q := range n.Subnets {
				if n.HostNetns == host && !check(n.Name, q) {
					return network, mine, theirs, true, nil
				}
			}
		}
		return "", netip.Prefix{}, netip.Prefix{}, false, err
	}
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		name, _, path, _, rest, ok := summaryHead(v)
		if ok && string(path) != host {
			continue
		}
		if ok {
			_, _, ok = summaryBody(rest, func(q netip.Prefix) bool { return check(string(name), q) })
		}
		if !ok {
			return "", netip.Prefix{}, netip.Prefix{}, false, fmt.Errorf("decode %s/%q: %w", bSummaries, k, errSummary)
		}
		if found {
			return network, mine, theirs, true, nil
		}
	}
	return "", netip.Prefix{}, netip.Prefix{}, false, nil
}

// fillSummaries writes the summary of every network, for a store made
// before summaries.
func fillSummaries(tx *bolt.Tx) error {
	sums, err := tx.CreateBucketIfNotExists(bSummaries)
	if err != nil {
		return err
	}
	t := &Tx{tx: tx}
	nets, err := t.Networks()
	if err != nil {
		return err
	}
	for _, n := range nets {
		if err := sums.Put([]byte(n.Name), summarise(n)); err != nil {
			return err
		}
	}
	return nil
}
