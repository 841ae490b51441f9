package lab

import (
	"os"
	"slices"
	"testing"

	"github.com/nsnet/nsnet/internal/store"
	"github.com/nsnet/nsnet/internal/topology"
)

func parse(t *testing.T, src string) *topology.Lab {
	t.Helper()
	l, err := topology.Parse("t.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func keys(objs []*object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.key)
	}
	return out
}

func TestObjectsInOrderOfMaking(t *testing.T) {
	raw, err := os.ReadFile("../../examples/003-routed-two-hosts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := keys(objects(parse(t, string(raw))))
	want := []string{
		"host node01", "host node02", "firewall node02",
		"namespace demo01", "namespace demo02", "namespace demo03",
		"network calico-two-nodes-underlay", "network node01.pods", "network node02.pods",
		"member calico-two-nodes-underlay node01", "member calico-two-nodes-underlay node02",
		"member node01.pods demo01", "member node01.pods demo02", "member node02.pods demo03",
		"route node01 10.0.2.0/24", "route node02 10.0.1.0/24",
	}
	if !slices.Equal(got, want) {
		t.Errorf("objects:\n got %q\nwant %q", got, want)
	}
	removal := slices.Clone(want)
	sortRemoval(removal)
	if removal[0] != "route node01 10.0.2.0/24" || removal[len(removal)-1] != "host node02" {
		t.Errorf("removal order: %q", removal)
	}
}

// stale makes anew what differs, what vanished, and what is made in or of
// either; the rest stays.
func TestStale(t *testing.T) {
	st, err := store.Open(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	base := "name: s\nnetworks:\n  lan: {subnet: 10.1.0.0/24}\nnamespaces:\n  a: {networks: [lan]}\n  b: {networks: [lan]}\n"
	err = st.Update(func(tx *store.Tx) error {
		tx.PutNetwork(store.Network{Name: "lan"})
		tx.PutNamespace(store.Namespace{Name: "a"})
		tx.PutNamespace(store.Namespace{Name: "b"})
		tx.PutAttachment(store.Attachment{Network: "lan", Namespace: "a"})
		return tx.PutAttachment(store.Attachment{Network: "lan", Namespace: "b"})
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := store.Lab{Name: "s", Objects: map[string]store.LabObject{}}
	for _, o := range objects(parse(t, base)) {
		rec.Objects[o.key] = store.LabObject{Spec: o.spec, Done: true}
	}
	cases := []struct {
		name, file string
		unfinished string
		fresh      []string
		renewed    []string
	}{
		{"same", base, "", nil, nil},
		{"member changed", "name: s\nnetworks:\n  lan: {subnet: 10.1.0.0/24}\nnamespaces:\n  a: {networks: {lan: {ip: 10.1.0.9}}}\n  b: {networks: [lan]}\n", "",
			[]string{"member lan a"}, nil},
		{"network changed", "name: s\nnetworks:\n  lan: {subnet: 10.1.0.0/24, mtu: 1400}\nnamespaces:\n  a: {networks: [lan]}\n  b: {networks: [lan]}\n", "",
			[]string{"network lan", "member lan a", "member lan b"}, []string{"member lan a", "member lan b"}},
		{"unfinished", base, "namespace b", []string{"namespace b", "member lan b"}, []string{"member lan b"}},
		{"new namespace", base + "  c: {}\n", "", []string{"namespace c"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := store.Lab{Objects: map[string]store.LabObject{}}
			for k, v := range rec.Objects {
				r.Objects[k] = v
			}
			if c.unfinished != "" {
				o := r.Objects[c.unfinished]
				o.Done = false
				r.Objects[c.unfinished] = o
			}
			var fresh, renewed map[string]bool
			st.View(func(tx *store.Tx) error {
				fresh, renewed, err = stale(tx, objects(parse(t, c.file)), r)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := slices.Sorted(mapKeys(fresh)); !slices.Equal(got, slices.Sorted(slices.Values(c.fresh))) {
				t.Errorf("fresh = %q, want %q", got, c.fresh)
			}
			if got := slices.Sorted(mapKeys(renewed)); !slices.Equal(got, slices.Sorted(slices.Values(c.renewed))) {
				t.Errorf("renewed = %q, want %q", got, c.renewed)
			}
		})
	}
}

func mapKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestClash(t *testing.T) {
	p := func(s string) store.PortMap {
		t.Helper()
		m, err := parsePort(s)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	cases := []struct {
		a, b string
		want bool
	}{
		{"8080:80", "8080:81", true},
		{"8080:80", "8080:80/udp", false},
		{"8000-8010:80-90", "8010:80", true},
		{"8000-8010:80-90", "8011:80", false},
		{"192.0.2.1:8080:80", "192.0.2.2:8080:80", false},
		{"192.0.2.1:8080:80", "8080:80", true},
	}
	for _, c := range cases {
		if got := clash(p(c.a), p(c.b)); got != c.want {
			t.Errorf("clash(%s, %s) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
