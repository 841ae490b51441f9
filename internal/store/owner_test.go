package store

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestOwnersRoundTrip(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	// Names that the old string owners could not tell apart: a namespace
	// called like a TAP's lease owner, or like the gateway's.
	owners := []Owner{
		MemberOwner("n", "tap:vm0"), MemberOwner("n", "(gateway)"), TapOwner("n", "vm0"),
		GatewayOwner("n"), NetworkOwner("n"), MemberOwner("n", "a:b(c)"),
	}
	err := s.Update(func(tx *Tx) error {
		for i, o := range owners {
			a := netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 2)})
			if err := tx.PutLease("n", a, o); err != nil {
				return err
			}
			if err := tx.ReserveIfName("if"+string(rune('a'+i)), o); err != nil {
				return err
			}
			if err := tx.PutPort("", "tcp", uint16(1000+i), netip.Addr{}, o); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.View(func(tx *Tx) error {
		for i, want := range owners {
			a := netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 2)})
			if got, ok := tx.LeaseOwner("n", a); !ok || got != want {
				t.Errorf("lease owner of %s = %+v, %v; want %+v", a, got, ok, want)
			}
			if got, ok := tx.IfNameOwner("if" + string(rune('a'+i))); !ok || got != want {
				t.Errorf("ifname owner %d = %+v; want %+v", i, got, want)
			}
			if got, ok := tx.PortHolder("", "tcp", uint16(1000+i), netip.Addr{}); !ok || got != want {
				t.Errorf("port holder %d = %+v; want %+v", i, got, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Stores written before owners were typed keep their meaning.
func TestLegacyOwners(t *testing.T) {
	for _, tt := range []struct {
		raw  string
		want Owner
	}{
		{"(gateway)", GatewayOwner("n")},
		{"tap:vm0", TapOwner("n", "vm0")},
		{"red", MemberOwner("n", "red")},
		{"network\x00n", NetworkOwner("n")},
		{"member\x00n\x00red", MemberOwner("n", "red")},
		{"tap\x00vm0", Owner{Kind: OwnerTap, Name: "vm0"}},
	} {
		if got := decodeOwner("n", []byte(tt.raw)); got != tt.want {
			t.Errorf("decodeOwner(%q) = %+v, want %+v", tt.raw, got, tt.want)
		}
	}
	if !(Owner{Kind: OwnerTap, Name: "vm0"}).Same(TapOwner("n", "vm0")) {
		t.Error("a legacy TAP name owner is not the same TAP")
	}
}

// Two operations in flight that name the same objects, as two TAP creates
// on one network do, keep two journal entries (issue 9, bug 1).
func TestJournalEntriesAreUnique(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	now := time.Now()
	for _, name := range []string{"vm0", "vm1"} {
		if err := s.Begin(Op{ID: NewOpID(), Kind: OpTapCreate, Network: "n", HostIf: name, Started: now}); err != nil {
			t.Fatal(err)
		}
	}
	ops, err := s.Pending()
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != 2 {
		t.Fatalf("pending = %d operations, want 2: %+v", len(ops), ops)
	}
	for _, o := range ops {
		if err := s.End(o); err != nil {
			t.Fatal(err)
		}
	}
	if ops, _ := s.Pending(); len(ops) != 0 {
		t.Errorf("after End, pending = %+v", ops)
	}
	if err := s.Begin(Op{Kind: OpTapCreate}); err == nil {
		t.Error("Begin took an operation without an id")
	}
}

// A journal entry written before ops had ids is read, named by its file,
// and ended.
func TestLegacyJournalEntry(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	defer s.Close()
	raw, _ := json.Marshal(map[string]any{"kind": OpConnect, "network": "n", "namespace": "red", "pid": 1})
	p := filepath.Join(dir, "journal", "0123456789abcdef.json")
	if err := os.WriteFile(p, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	ops, err := s.Pending()
	if err != nil || len(ops) != 1 || ops[0].ID != "0123456789abcdef" {
		t.Fatalf("pending = %+v, %v", ops, err)
	}
	if err := s.End(ops[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Errorf("legacy entry still there: %v", err)
	}
}

// Network records written before drivers had options keep their bridge
// and parent.
func TestLegacyNetworkRecord(t *testing.T) {
	var n Network
	if err := json.Unmarshal([]byte(`{"name":"a","driver":"bridge","bridge":"nsbr-a","parent":"eth9"}`), &n); err != nil {
		t.Fatal(err)
	}
	if n.Options["bridge-name"] != "nsbr-a" || n.Options["parent"] != "eth9" || n.Name != "a" {
		t.Errorf("decoded %+v", n)
	}
	raw, _ := json.Marshal(n)
	var back Network
	if err := json.Unmarshal(raw, &back); err != nil || back.Options["bridge-name"] != "nsbr-a" {
		t.Errorf("round trip: %s -> %+v, %v", raw, back, err)
	}
}
