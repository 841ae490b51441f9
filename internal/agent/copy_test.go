package agent

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/nsnet/nsnet/internal/firewall"
	"github.com/nsnet/nsnet/internal/store"
)

// The agent's copy, kept up to date from the change log, is what a full
// read of the store gives, through every kind of change; and a copy the
// log cannot bring up to date is read whole.
func TestStoreCopyFollowsTheLog(t *testing.T) {
	s, err := store.Open(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var c storeCopy
	// Each step, and whether it changes a network (structural) rather
	// than only members: the agent keeps its resolvers for the latter.
	// changed is the networks the step changed, as the copy must report.
	steps := []struct {
		do         func(tx *store.Tx) error
		structural bool
		changed    string
		ports      bool // may have changed published ports
	}{
		{func(tx *store.Tx) error { return tx.PutNetwork(store.Network{Name: "a", DNS: true}) }, true, "a", true},
		{func(tx *store.Tx) error { return tx.PutAttachment(store.Attachment{Network: "a", Namespace: "x"}) }, false, "a", false},
		{func(tx *store.Tx) error { return tx.PutNetwork(store.Network{Name: "b"}) }, true, "b", true},
		{func(tx *store.Tx) error {
			return tx.PutAttachment(store.Attachment{Network: "b", Namespace: "y", Aliases: []string{"web"}})
		}, false, "b", false},
		{func(tx *store.Tx) error { return tx.PutNamespace(store.Namespace{Name: "z"}) }, false, "", false},
		// Memberships alone, before, between and after others, and one
		// changed in place.
		{func(tx *store.Tx) error {
			for _, ns := range []string{"w", "m", "zz"} {
				if err := tx.PutAttachment(store.Attachment{Network: "a", Namespace: ns}); err != nil {
					return err
				}
			}
			return nil
		}, false, "a", false},
		{func(tx *store.Tx) error {
			return tx.PutAttachment(store.Attachment{Network: "a", Namespace: "m", Aliases: []string{"db"}})
		}, false, "a", false},
		{func(tx *store.Tx) error { return tx.DeleteAttachment("a", "x") }, false, "a", false},
		// A member that publishes a port, and its leaving.
		{func(tx *store.Tx) error {
			return tx.PutAttachment(store.Attachment{Network: "a", Namespace: "p", Ports: []store.PortMap{{Proto: "tcp", HostPort: 8080, Port: 80}}})
		}, false, "a", true},
		{func(tx *store.Tx) error { return tx.DeleteAttachment("a", "p") }, false, "a", true},
		{func(tx *store.Tx) error {
			if err := tx.DeleteAttachment("a", "w"); err != nil {
				return err
			}
			return tx.PutAttachment(store.Attachment{Network: "b", Namespace: "m"})
		}, false, "a b", false},
		{func(tx *store.Tx) error {
			return tx.PutNetwork(store.Network{Name: "a", DNS: true, DNSUpstreams: nil, Gateways: nil, NAT: true})
		}, true, "a", true},
		// A network and its first member in one commit.
		{func(tx *store.Tx) error {
			if err := tx.PutNetwork(store.Network{Name: "c"}); err != nil {
				return err
			}
			return tx.PutAttachment(store.Attachment{Network: "c", Namespace: "q"})
		}, true, "c", true},
		{func(tx *store.Tx) error {
			for _, ns := range []string{"y", "m"} {
				if err := tx.DeleteAttachment("b", ns); err != nil {
					return err
				}
			}
			return tx.DeleteNetwork("b")
		}, true, "b", true},
	}
	for i, st := range steps {
		step := st.do
		if err := s.Update(step); err != nil {
			t.Fatal(err)
		}
		var full storeCopy
		s.View(func(tx *store.Tx) error {
			if err := c.update(tx); err != nil {
				t.Fatal(err)
			}
			return full.update(tx)
		})
		gotNets, gotMembers := c.list()
		wantNets, wantMembers := full.list()
		if fmt.Sprint(gotNets) != fmt.Sprint(wantNets) || fmt.Sprint(nonEmpty(gotMembers)) != fmt.Sprint(nonEmpty(wantMembers)) {
			t.Errorf("after step %d: copy %v %v, full read %v %v", i, gotNets, gotMembers, wantNets, wantMembers)
		}
		if i > 0 && c.structural != st.structural {
			t.Errorf("after step %d: structural %v, want %v", i, c.structural, st.structural)
		}
		if i > 0 && c.ports != st.ports {
			t.Errorf("after step %d: ports %v, want %v", i, c.ports, st.ports)
		}
		if got := strings.Join(slices.Sorted(maps.Keys(c.changed)), " "); i > 0 && got != st.changed {
			t.Errorf("after step %d: changed %q, want %q", i, got, st.changed)
		}
	}
	// A copy from before the log began is read whole.
	stale := storeCopy{gen: 0, nets: map[string]store.Network{"gone": {Name: "gone"}}, members: map[string][]store.Attachment{}}
	s.View(func(tx *store.Tx) error { return stale.update(tx) })
	if _, ok := stale.nets["gone"]; ok || !reflect.DeepEqual(stale.nets, c.nets) {
		t.Errorf("a stale copy was not read whole: %v", stale.nets)
	}
}

func nonEmpty(m map[string][]store.Attachment) map[string][]store.Attachment {
	out := map[string][]store.Attachment{}
	for k, v := range m {
		if len(v) > 0 {
			out[k] = v
		}
	}
	return out
}

// Only changes to other tables' tables, chains and rules, and lost events,
// make the agent look at the forward chains: not nsnet's own changes, nor
// the generation message that ends every transaction.
func TestOurs(t *testing.T) {
	mine := &nftables.Table{Family: nftables.TableFamilyINet, Name: firewall.TableName}
	theirs := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: "filter"}
	for _, tt := range []struct {
		name string
		ev   nftables.MonitorEvent
		want bool
	}{
		{"our rule", nftables.MonitorEvent{Data: &nftables.Rule{Table: mine}}, true},
		{"our chain", nftables.MonitorEvent{Data: &nftables.Chain{Table: mine}}, true},
		{"their rule", nftables.MonitorEvent{Data: &nftables.Rule{Table: theirs}}, false},
		{"their chain's policy", nftables.MonitorEvent{Data: &nftables.Chain{Table: theirs}}, false},
		{"their table", nftables.MonitorEvent{Data: theirs}, false},
		{"the generation message", nftables.MonitorEvent{Data: nil}, true},
		{"lost events", nftables.MonitorEvent{Error: errors.New("no buffer space available")}, false},
	} {
		if got := ours(&tt.ev); got != tt.want {
			t.Errorf("%s: ours = %v, want %v", tt.name, got, tt.want)
		}
	}
}
