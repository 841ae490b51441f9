package lab

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/nsnet/nsnet/internal/crash"
	"github.com/nsnet/nsnet/internal/engine"
	"github.com/nsnet/nsnet/internal/firewall"
	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/netns"
	"github.com/nsnet/nsnet/internal/plumb"
	"github.com/nsnet/nsnet/internal/store"
	"github.com/nsnet/nsnet/internal/topology"
)

// ErrNotFound: no lab of that name.
var ErrNotFound = errors.New("no such lab")

// Action is one step of a plan.
type Action struct {
	// Op is create, change or remove.
	Op string `json:"op"`
	// Kind and Name say what: "network", "node01.pods".
	Kind string `json:"kind"`
	Name string `json:"name"`
}

func (a Action) String() string { return fmt.Sprintf("%s %s %s", a.Op, a.Kind, a.Name) }

// Plan is what an apply or destroy does, or did.
type Plan struct {
	Lab     string        `json:"lab"`
	Actions []Action      `json:"actions"`
	Created int           `json:"created"`
	Changed int           `json:"changed"`
	Removed int           `json:"removed"`
	Elapsed time.Duration `json:"elapsed_ns"`
}

// Summary is the one line a run ends with.
func (p Plan) Summary() string {
	if len(p.Actions) == 0 {
		return fmt.Sprintf("lab %s: no changes", p.Lab)
	}
	return fmt.Sprintf("lab %s: %d created, %d changed, %d removed in %.2f s", p.Lab, p.Created, p.Changed, p.Removed, p.Elapsed.Seconds())
}

// Options steer a run.
type Options struct {
	// DryRun plans and changes nothing.
	DryRun bool
	// Progress, when set, hears of each step done out of all.
	Progress func(done, total int)
}

// run is one apply or destroy under way.
type run struct {
	m     *engine.Manager
	hosts map[string]*kernel.NS
	// lab is the lab's name: what it set, it may turn off.
	lab string
}

func (r *run) close() {
	for _, h := range r.hosts {
		h.Close()
	}
}

func (r *run) host(name string) (*kernel.NS, error) {
	if h := r.hosts[name]; h != nil {
		return h, nil
	}
	h, err := plumb.OpenLiveNamespace(name)
	if err != nil || h == nil {
		return nil, err
	}
	r.hosts[name] = h
	return h, nil
}

func (r *run) setForward(host string, drop bool) error {
	h, err := r.host(host)
	if err != nil {
		return err
	}
	if h == nil {
		return fmt.Errorf("host %s: %w", host, netns.ErrNotExist)
	}
	if err := firewall.SetForwardPolicy(int(h.Fd()), drop); err != nil {
		return fmt.Errorf("host %s: %w", host, err)
	}
	// Networks made before the policy changed get their accepts now.
	_, err = r.m.RecheckForward(netns.Path(host))
	return err
}

func (r *run) route(host string, dst netip.Prefix, via netip.Addr) error {
	h, err := r.host(host)
	if err != nil {
		return err
	}
	if h == nil {
		return fmt.Errorf("host %s: %w", host, netns.ErrNotExist)
	}
	return plumb.StaticRoute(h, dst, via)
}

// remove takes away an object the lab owns; one already gone is no error.
func (r *run) remove(key string) error {
	f := strings.Fields(key)
	var err error
	switch f[0] {
	case kHost, kNamespace, kShare:
		err = r.m.RemoveNamespace(f[1])
	case kFirewall:
		var h *kernel.NS
		if h, err = r.host(f[1]); h != nil {
			err = firewall.SetForwardPolicy(int(h.Fd()), false)
		}
	case kNetwork:
		err = r.m.RemoveNetwork(f[1], true)
	case kMember:
		err = r.m.Disconnect(f[1], f[2])
	case kTap:
		err = r.m.RemoveTap(f[1])
	case kLink:
		err = r.m.RemoveLink(f[1], f[2])
	case kRoute:
		var h *kernel.NS
		if h, err = r.host(f[1]); h != nil {
			err = plumb.DeleteStaticRoute(h, netip.MustParsePrefix(f[2]))
		}
	case kBGP:
		// The speaker sees the record go once the lab's change is
		// committed (it cannot read the store before), withdraws what it
		// announced, and exits; or it exits when its host goes.
		_, err = r.m.BGPOff(netns.Path(f[1]), r.lab)
	default:
		return fmt.Errorf("unknown kind of object %q", key)
	}
	if errors.Is(err, engine.ErrNotFound) || errors.Is(err, netns.ErrNotExist) {
		return nil
	}
	return err
}

func action(op, key string) Action {
	kind, name, _ := strings.Cut(key, " ")
	if kind == kShare {
		kind = kNamespace
	}
	return Action{Op: op, Kind: kind, Name: name}
}

// Apply makes the machine match the lab file: it creates what is missing,
// makes anew what differs, and removes what the lab owns and the file no
// longer has. Every check comes before the first change.
func Apply(m *engine.Manager, l *topology.Lab, opt Options) (Plan, error) {
	start := time.Now()
	plan := Plan{Lab: l.Name, Actions: []Action{}}
	want := objects(l)
	var rec store.Lab
	var others map[string]string // key -> the other lab that owns it
	err := m.View(func(tx *store.Tx) error {
		var err error
		rec, others, err = readLabs(tx, l.Name)
		return err
	})
	if err != nil {
		return plan, err
	}
	if rec.Name != "" && rec.HostNetns != m.HostNetns() {
		return plan, fmt.Errorf("lab %s lives in host namespace %s: apply it with the same --host-netns", l.Name, describeHost(rec.HostNetns))
	}
	if err := check(m, l, want, rec, others); err != nil {
		return plan, err
	}
	// What is to be made anew: what the lab has not made (or not
	// finished), what differs, what vanished, and what is made in or of
	// any of those.
	var fresh, renewed map[string]bool
	err = m.View(func(tx *store.Tx) error {
		var err error
		fresh, renewed, err = stale(tx, want, rec)
		return err
	})
	if err != nil {
		return plan, err
	}
	wanted := map[string]bool{}
	for _, o := range want {
		wanted[o.key] = true
	}
	var gone []string // owned keys to remove, in the order of removal
	for k := range rec.Objects {
		if !wanted[k] || fresh[k] {
			gone = append(gone, k)
		}
	}
	sortRemoval(gone)
	for _, k := range gone {
		if !wanted[k] {
			plan.Actions = append(plan.Actions, action("remove", k))
			plan.Removed++
		}
	}
	var todo []*object
	for _, o := range want {
		if !fresh[o.key] {
			continue
		}
		todo = append(todo, o)
		// One the lab made as the file says, and gone since, is made
		// again: a create, not a change.
		if had, ok := rec.Objects[o.key]; ok && !(had.Done && had.Spec == o.spec && !renewed[o.key]) {
			plan.Actions = append(plan.Actions, action("change", o.key))
			plan.Changed++
		} else {
			plan.Actions = append(plan.Actions, action("create", o.key))
			plan.Created++
		}
	}
	model, err := json.Marshal(l)
	if err != nil {
		return plan, err
	}
	if opt.DryRun {
		plan.Elapsed = time.Since(start)
		return plan, nil
	}
	if len(plan.Actions) == 0 {
		// Nothing to do: not even the record is written, so that a
		// second apply changes nothing at all.
		plan.Elapsed = time.Since(start)
		return plan, nil
	}
	// Claim every object to be made before the first change, each marked
	// unfinished: an apply killed from here on leaves a record that the
	// next apply finishes and destroy can undo.
	if rec.Name == "" {
		rec = store.Lab{Name: l.Name, HostNetns: m.HostNetns(), Objects: map[string]store.LabObject{}}
	}
	rec.File, rec.Model, rec.Applied, rec.Destroying = cmp.Or(l.AbsFile, l.File), model, time.Now().UTC(), false
	for _, o := range todo {
		rec.Objects[o.key] = store.LabObject{Spec: o.spec}
	}
	if err := m.Update(func(tx *store.Tx) error { return tx.PutLab(rec) }); err != nil {
		return plan, err
	}
	crash.Point("lab-apply/claimed")
	r := &run{m: m, hosts: map[string]*kernel.NS{}, lab: rec.Name}
	defer r.close()
	total, done := len(gone)+len(todo), 0
	step := func() {
		done++
		if opt.Progress != nil {
			opt.Progress(done, total)
		}
	}
	removed, errs := r.removeAll(gone, step)
	for _, k := range removed {
		if !wanted[k] {
			delete(rec.Objects, k)
		}
	}
	if len(errs) == 0 {
		failed := map[string]bool{}
		for _, o := range todo {
			if slices.ContainsFunc(o.deps, func(d string) bool { return failed[d] }) {
				failed[o.key] = true
				continue // its error is reported for what it needs
			}
			if err := o.make(r); err != nil {
				failed[o.key] = true
				errs = append(errs, fmt.Errorf("%v: %w", l.Errorf(o.path, "%s", action("create", o.key)), err))
				continue
			}
			rec.Objects[o.key] = store.LabObject{Spec: o.spec, Done: true}
			step()
			if done == total/2 {
				crash.Point("lab-apply/half")
			}
		}
	}
	if err := m.Update(func(tx *store.Tx) error { return tx.PutLab(rec) }); err != nil {
		errs = append(errs, err)
	}
	plan.Elapsed = time.Since(start)
	if len(errs) > 0 {
		return plan, fmt.Errorf("lab %s: %w (the next apply retries what failed; destroy removes what was made)", l.Name, errors.Join(errs...))
	}
	return plan, nil
}

// stale finds the wanted objects to make (anew), and of those the ones
// made anew only because something they are made in or of is.
func stale(tx *store.Tx, want []*object, rec store.Lab) (fresh, renewed map[string]bool, err error) {
	fresh, renewed = map[string]bool{}, map[string]bool{}
	for _, o := range want {
		had, ok := rec.Objects[o.key]
		if ok && had.Done && had.Spec == o.spec {
			there, err := exists(tx, o.key)
			if err != nil {
				return nil, nil, err
			}
			if there {
				continue
			}
		}
		fresh[o.key] = true
	}
	// Objects are listed in the order of making, so one pass carries
	// a dependency's renewal to everything made of it.
	for _, o := range want {
		if !fresh[o.key] && slices.ContainsFunc(o.deps, func(d string) bool { return fresh[d] }) {
			fresh[o.key], renewed[o.key] = true, true
		}
	}
	return fresh, renewed, nil
}

// removalOrder is the order objects go in: what is made in or of a
// namespace before it, but namespaces before networks, since they take
// their memberships along in one batch (see removeAll).
var removalOrder = []string{kBGP, kRoute, kLink, kTap, kMember, kShare, kNamespace, kNetwork, kFirewall, kHost}

func sortRemoval(keys []string) {
	slices.SortFunc(keys, func(a, b string) int {
		if d := slices.Index(removalOrder, kindOf(a)) - slices.Index(removalOrder, kindOf(b)); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
}

// removeAll removes objects, sorted by sortRemoval, and returns those it
// removed. Namespaces (and hosts) go in batches: the kernel then removes
// their devices together, many times faster than one by one, and their
// memberships go with them rather than by one disconnect each.
func (r *run) removeAll(keys []string, step func()) ([]string, []error) {
	dying := map[string]bool{}
	for _, k := range keys {
		if kind := kindOf(k); kind == kNamespace || kind == kShare || kind == kHost {
			dying[strings.Fields(k)[1]] = true
		}
	}
	var removed []string
	var errs []error
	pending := map[string][]string{} // namespace -> its member keys
	for i := 0; i < len(keys); {
		k := keys[i]
		f := strings.Fields(k)
		switch kind := f[0]; {
		case kind == kMember && dying[f[2]]:
			pending[f[2]] = append(pending[f[2]], k)
			i++
		case kind == kNamespace || kind == kShare || kind == kHost:
			var group []string
			for ; i < len(keys) && (kindOf(keys[i]) == kind || kind != kHost && kindOf(keys[i]) == kNamespace); i++ {
				group = append(group, keys[i])
			}
			names := make([]string, len(group))
			for j, g := range group {
				names[j] = strings.Fields(g)[1]
			}
			if err := r.m.RemoveNamespaces(names); err != nil {
				// Learn which one failed, one at a time.
				for _, g := range group {
					if err := r.remove(g); err != nil {
						errs = append(errs, fmt.Errorf("remove %s: %w", g, err))
						continue
					}
					removed = append(append(removed, g), pending[strings.Fields(g)[1]]...)
					step()
				}
				continue
			}
			for _, g := range group {
				removed = append(append(removed, g), pending[strings.Fields(g)[1]]...)
				for range 1 + len(pending[strings.Fields(g)[1]]) {
					step()
				}
			}
		default:
			i++
			if err := r.remove(k); err != nil {
				errs = append(errs, fmt.Errorf("remove %s: %w", k, err))
				continue
			}
			removed = append(removed, k)
			step()
		}
	}
	return removed, errs
}

// readLabs reads the lab called name (zero if new) and which objects
// other labs own.
func readLabs(tx *store.Tx, name string) (store.Lab, map[string]string, error) {
	labs, err := tx.Labs()
	if err != nil {
		return store.Lab{}, nil, err
	}
	var rec store.Lab
	others := map[string]string{}
	for _, l := range labs {
		if l.Name == name {
			rec = l
			continue
		}
		for k := range l.Objects {
			others[k] = l.Name
		}
	}
	return rec, others, nil
}

// readLab reads the lab called name, or fails with ErrNotFound.
func readLab(m *engine.Manager, name string) (store.Lab, error) {
	var rec store.Lab
	err := m.View(func(tx *store.Tx) (err error) {
		rec, _, err = tx.Lab(name)
		return err
	})
	if err == nil && rec.Name == "" {
		err = fmt.Errorf("lab %q: %w", name, ErrNotFound)
	}
	return rec, err
}

// Destroy removes everything the lab owns, and the lab.
func Destroy(m *engine.Manager, name string, opt Options) (Plan, error) {
	start := time.Now()
	plan := Plan{Lab: name, Actions: []Action{}}
	rec, err := readLab(m, name)
	if err != nil {
		return plan, err
	}
	keys := slices.Collect(maps.Keys(rec.Objects))
	sortRemoval(keys)
	for _, k := range keys {
		plan.Actions = append(plan.Actions, action("remove", k))
		plan.Removed++
	}
	if opt.DryRun {
		plan.Elapsed = time.Since(start)
		return plan, nil
	}
	if !rec.Destroying {
		rec.Destroying = true
		if err := m.Update(func(tx *store.Tx) error { return tx.PutLab(rec) }); err != nil {
			return plan, err
		}
	}
	r := &run{m: m, hosts: map[string]*kernel.NS{}, lab: rec.Name}
	defer r.close()
	done := 0
	removed, errs := r.removeAll(keys, func() {
		done++
		if opt.Progress != nil {
			opt.Progress(done, len(keys))
		}
		if done == len(keys)/2 {
			crash.Point("lab-destroy/half")
		}
	})
	for _, k := range removed {
		delete(rec.Objects, k)
	}
	err = m.Update(func(tx *store.Tx) error {
		if len(rec.Objects) == 0 {
			return tx.DeleteLab(name)
		}
		return tx.PutLab(rec)
	})
	if err != nil {
		errs = append(errs, err)
	}
	plan.Elapsed = time.Since(start)
	if len(errs) > 0 {
		return plan, fmt.Errorf("lab %s: %w (destroy again to retry)", name, errors.Join(errs...))
	}
	return plan, nil
}

func describeHost(path string) string {
	if path == "" {
		return "the one nsnet runs in"
	}
	return path
}

// Resume carries labs that an apply or a destroy left unfinished (killed,
// say) to their end, as gc does for single commands: an apply to the lab
// it was making, from the model it recorded before its first change, and
// a destroy to no lab at all. It says what it did.
func Resume(m *engine.Manager) ([]string, error) {
	var labs []store.Lab
	if err := m.View(func(tx *store.Tx) error {
		var err error
		labs, err = tx.Labs()
		return err
	}); err != nil {
		return nil, err
	}
	var done []string
	var errs []error
	for _, rec := range labs {
		unfinished := rec.Destroying
		for _, o := range rec.Objects {
			unfinished = unfinished || !o.Done
		}
		if !unfinished {
			continue
		}
		if rec.Destroying {
			if _, err := Destroy(m, rec.Name, Options{}); err != nil {
				errs = append(errs, err)
				continue
			}
			done = append(done, fmt.Sprintf("finished destroying lab %s", rec.Name))
			continue
		}
		l := &topology.Lab{}
		if err := json.Unmarshal(rec.Model, l); err != nil {
			errs = append(errs, fmt.Errorf("lab %s: read its model: %w", rec.Name, err))
			continue
		}
		l.File = rec.File
		plan, err := Apply(m, l, Options{})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, "finished applying "+strings.TrimPrefix(plan.Summary(), "lab "))
	}
	return done, errors.Join(errs...)
}
