package firewall

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// Fake is an in-memory stand-in for a Firewall in one host namespace, so
// that its callers can be tested without root or a kernel. It has the
// methods of *Firewall that callers use, and answers them as the kernel
// would: a failed call changes nothing, as a failed transaction, and its
// errors wrap the errno the kernel returns, so errors.Is works on them:
//
//   - Publish fails with ENOENT while there is no table (no Sync with a
//     network yet, or the last Sync had none; the port maps come with the
//     table, whatever Host.Ports says), and when it removes a port that is
//     not published. A remove matches the key (HostIP, Proto, HostPort)
//     alone. Publishing a key already published to another Addr or Port
//     fails with EEXIST; publishing it again unchanged succeeds. A port
//     without an Addr, or whose HostIP and Addr families differ, fails
//     with EINVAL.
//   - Sync refuses two networks' subnets that overlap without being equal
//     (EEXIST) when both networks are isolated, or both masquerade, as
//     the interval sets holding those subnets do, and invalid subnets
//     (EINVAL).
//
// Unlike the real one, Publish is all or nothing however many ports it is
// given, and Sync refuses every overlap within those sets, where the
// kernel lets some pass within one network. Set the exported fields
// before a call, not during one; the methods may be called from any
// goroutine.
type Fake struct {
	// DroppingForward lists the forward chains of other tables whose
	// policy is drop, where OpenForward puts its accepts. Default none.
	DroppingForward []ChainRef

	// FailSync, FailPublish, FailOpenForward and FailCloseForward, when
	// not nil, are returned by every call of the method they name, which
	// then changes nothing.
	FailSync, FailPublish, FailOpenForward, FailCloseForward error

	mu      sync.Mutex
	host    Host
	table   bool // the table, and so its port maps, exist
	ports   map[portKey]Port
	accepts map[string][]ChainRef
}

// NewFake returns a Fake of a host namespace with no nsnet table and no
// other table's forward chain dropping traffic.
func NewFake() *Fake { return &Fake{} }

// portKey is the key of a port map element, with the map it is in: one
// of four, chosen by the Addr's family and by whether HostIP is given.
type portKey struct {
	v6       bool
	hostIP   netip.Addr // zero in the any-address maps
	proto    uint8
	hostPort uint16
}

// keyOf returns the map key that publishes p, or an error wrapping EINVAL
// where the kernel would find the element malformed.
func keyOf(p Port) (portKey, error) {
	if !p.Addr.IsValid() || p.HostIP.IsValid() && p.HostIP.Is4() != p.Addr.Is4() {
		return portKey{}, fmt.Errorf("nftables port maps: %s: %w", describePort(p), unix.EINVAL)
	}
	return portKey{v6: !p.Addr.Is4(), hostIP: p.HostIP, proto: p.Proto, hostPort: p.HostPort}, nil
}

// Sync makes the fake host's table what h asks for, as Firewall.Sync
// does: with no network the table and its port maps go; otherwise the
// maps keep their elements when h.Published is nil, and hold exactly
// h.Published when it is not. As in the real one, Published is loaded
// after the rest, so a conflict among its ports fails Sync with the host
// synced and the maps empty.
func (f *Fake) Sync(h Host) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.FailSync != nil {
		return f.FailSync
	}
	return f.sync(h)
}

// sync is Sync with f.mu held.
func (f *Fake) sync(h Host) error {
	if f.table {
		if err := checkOwner(f.host.Owner, h.Owner); err != nil {
			return err
		}
	}
	// The network sets are interval sets: an overlap within one (not an
	// equal subnet) is refused.
	inSet := map[string][]netip.Prefix{}
	for _, n := range h.Networks {
		for _, p := range n.Subnets {
			if !p.IsValid() {
				return fmt.Errorf("nftables table %s: network %s: subnet %s: %w", TableName, n.Name, p, unix.EINVAL)
			}
			p = p.Masked()
			// The interval sets of subnets refuse an overlap; same4/6,
			// of concatenated ranges, let it be.
			var sets []string
			if n.Isolate {
				sets = append(sets, "isolated")
			}
			if n.Masquerade {
				sets = append(sets, "masq")
			}
			for _, set := range sets {
				for _, q := range inSet[set] {
					if p != q && p.Overlaps(q) {
						return fmt.Errorf("nftables set %s: %s overlaps %s: %w", set, p, q, unix.EEXIST)
					}
				}
				inSet[set] = append(inSet[set], p)
			}
		}
	}
	f.host = copyHost(h)
	if len(h.Networks) == 0 {
		f.table, f.ports = false, nil
		return nil
	}
	if !f.table || h.Published != nil {
		f.ports = nil
	}
	f.table = true
	return f.publish(h.Published, nil)
}

// Add adds h.Networks to the fake host's networks when the table's rules
// already serve them, as Firewall.Add does: the last Sync's needs cover
// theirs. Otherwise, or with no table, it returns false and changes
// nothing. FailSync fails it too.
func (f *Fake) Add(h Host) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.FailSync != nil {
		return false, f.FailSync
	}
	if f.table {
		if err := checkOwner(f.host.Owner, h.Owner); err != nil {
			return false, err
		}
	}
	if !f.table || f.host.Owner != h.Owner || !needsOf(f.host).covers(needsOf(h)) {
		return false, nil
	}
	whole := f.host
	whole.Networks = append(slices.Clip(f.host.Networks), h.Networks...)
	whole.Published, whole.Changes = nil, nil
	// The sets refuse what Sync refuses; a refused Add changes nothing.
	return f.sync(whole) == nil, nil
}

// Publish adds and removes published ports, removals first, as
// Firewall.Publish does, or changes nothing and fails.
func (f *Fake) Publish(add, remove []Port) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.FailPublish != nil {
		return f.FailPublish
	}
	return f.publish(add, remove)
}

func (f *Fake) publish(add, remove []Port) error {
	if len(add) == 0 && len(remove) == 0 {
		return nil // nothing is sent, so nothing can fail
	}
	if !f.table {
		return fmt.Errorf("nftables port maps: table inet %s: %w", TableName, unix.ENOENT)
	}
	next := make(map[portKey]Port, len(f.ports)+len(add))
	for k, p := range f.ports {
		next[k] = p
	}
	// The kernel answers each failed message of the batch with an error
	// and commits none of them; nftables.Conn.Flush joins the errors.
	var errs []error
	for _, p := range remove {
		k, err := keyOf(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, ok := next[k]; !ok {
			errs = append(errs, fmt.Errorf("nftables port maps: remove %s: %w", describePort(p), unix.ENOENT))
			continue
		}
		delete(next, k)
	}
	for _, p := range add {
		k, err := keyOf(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if have, ok := next[k]; ok && (have.Addr != p.Addr || have.Port != p.Port) {
			errs = append(errs, fmt.Errorf("nftables port maps: add %s: published to %s: %w",
				describePort(p), netip.AddrPortFrom(have.Addr, have.Port), unix.EEXIST))
			continue
		}
		next[k] = p
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	f.ports = next
	return nil
}

// OpenForward records accepts for the network in each chain of
// DroppingForward where Firewall.OpenForward would insert some: every
// chain for a bridge network; for a routed one, those of a family that
// matches one of its subnets. It returns those chains.
func (f *Fake) OpenForward(n Network) ([]ChainRef, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.FailOpenForward != nil {
		return nil, f.FailOpenForward
	}
	refs := f.fills(n)
	if len(refs) == 0 {
		return nil, nil
	}
	if f.accepts == nil {
		f.accepts = map[string][]ChainRef{}
	}
	f.accepts[n.Name] = append(f.accepts[n.Name], refs...)
	return refs, nil
}

// fills lists the chains of DroppingForward that OpenForward fills for n:
// not nsnet's own table's, and only where it has rules for n.
func (f *Fake) fills(n Network) []ChainRef {
	var refs []ChainRef
	for _, c := range f.DroppingForward {
		if !(c.Family == nftables.TableFamilyINet && c.Table == TableName) && fakeForwardMatches(c.Family, n) {
			refs = append(refs, c)
		}
	}
	return refs
}

// fakeForwardMatches reports whether OpenForward has rules for n in a chain
// of a table of family fam.
func fakeForwardMatches(fam nftables.TableFamily, n Network) bool {
	switch fam {
	case nftables.TableFamilyIPv4, nftables.TableFamilyIPv6, nftables.TableFamilyINet:
	default:
		return false // not a chain that can drop forwarded IP traffic
	}
	if n.Bridge != "" {
		return true
	}
	for _, p := range n.Subnets {
		if fam == nftables.TableFamilyINet || (fam == nftables.TableFamilyIPv4) == p.Addr().Is4() {
			return true
		}
	}
	return false
}

// ForwardStale reports, as Firewall.ForwardStale, the networks whose
// accepts are elsewhere than in the chains of DroppingForward that
// OpenForward would fill for them, once each.
func (f *Fake) ForwardStale(nets []Network) (map[string]bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	stale := map[string]bool{}
	for _, n := range nets {
		if !slices.Equal(f.fills(n), f.accepts[n.Name]) {
			stale[n.Name] = true
		}
	}
	return stale, nil
}

// CloseForward forgets every accept of the network, wherever it is.
func (f *Fake) CloseForward(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.FailCloseForward != nil {
		return f.FailCloseForward
	}
	delete(f.accepts, name)
	return nil
}

// Owner returns the state directory that owns the table, as Firewall.Owner.
func (f *Fake) Owner() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.table {
		return "", nil
	}
	return f.host.Owner, nil
}

// Host returns the host state of the last Sync that did not fail before
// changing it (the zero Host before any). The table exists while it has
// networks.
func (f *Fake) Host() Host {
	f.mu.Lock()
	defer f.mu.Unlock()
	return copyHost(f.host)
}

// Published returns the ports in the port maps, ordered by family, host
// address, protocol and host port.
func (f *Fake) Published() []Port {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Port, 0, len(f.ports))
	for _, p := range f.ports {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Port) int {
		return cmp.Or(cmpBool(!a.Addr.Is4(), !b.Addr.Is4()), a.HostIP.Compare(b.HostIP),
			cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.HostPort, b.HostPort))
	})
	return out
}

// Accepts returns, by network, the chains of other tables holding its
// accepts: one entry per chain for each OpenForward since the network's
// last CloseForward, so accepts opened twice show twice.
func (f *Fake) Accepts() map[string][]ChainRef {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string][]ChainRef, len(f.accepts))
	for name, refs := range f.accepts {
		out[name] = slices.Clone(refs)
	}
	return out
}

func copyHost(h Host) Host {
	out := h
	out.Networks = slices.Clone(h.Networks)
	for i := range out.Networks {
		out.Networks[i].Subnets = slices.Clone(out.Networks[i].Subnets)
	}
	out.Published = slices.Clone(h.Published) // keeps nil apart from empty
	return out
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case b:
		return -1
	}
	return 1
}

func describePort(p Port) string {
	host := "*"
	if p.HostIP.IsValid() {
		host = p.HostIP.String()
	}
	return fmt.Sprintf("%s %s:%d to %s", protoName(p.Proto), host, p.HostPort, netip.AddrPortFrom(p.Addr, p.Port))
}

func protoName(p uint8) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	case unix.IPPROTO_SCTP:
		return "sctp"
	}
	return fmt.Sprintf("proto-%d", p)
}
