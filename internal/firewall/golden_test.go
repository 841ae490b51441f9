package firewall

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/nsnet/nsnet/internal/nstest"
)

// TestMain runs the tests in a private network namespace: the privileged
// ones change nftables there, never in the machine's own.
func TestMain(m *testing.M) { nstest.Main(m) }

var update = flag.Bool("update", false, "rewrite testdata/*.golden from what nft lists")

// goldenHosts are the host states whose tables TestGolden pins.
var goldenHosts = []struct {
	name   string
	before []Host // synced first, in order
	host   Host
}{
	{name: "empty", before: []Host{{Networks: []Network{routedDNS}, LocalDNS: addr("169.254.1.1")}}, host: Host{}},
	{name: "bridge-nat", host: Host{Networks: []Network{bridgeNAT}}},
	{name: "two-isolated", host: Host{Networks: []Network{bridgeNAT, bridgeDual}}},
	{name: "internal", host: Host{Networks: []Network{internalNet}}},
	{name: "routed-dns", host: Host{Networks: []Network{routedDNS}, LocalDNS: addr("169.254.1.1"), LocalDNS6: addr("fd6e:736e:6574::53")}},
	{name: "ports", host: Host{Networks: []Network{bridgeNAT, bridgeDual}, Ports: true, Published: []Port{
		{Proto: tcp, HostPort: 8080, Addr: addr("10.88.0.2"), Port: 80},
		{Proto: udp, HostPort: 5353, Addr: addr("10.88.0.3"), Port: 53},
		{HostIP: addr("192.0.2.10"), Proto: tcp, HostPort: 8443, Addr: addr("10.89.0.2"), Port: 443},
		{Proto: tcp, HostPort: 8080, Addr: addr("fd00:89::2"), Port: 80},
		{HostIP: addr("2001:db8::10"), Proto: tcp, HostPort: 8443, Addr: addr("fd00:89::2"), Port: 443},
	}}},
	{name: "no-isolate", host: Host{Networks: []Network{bridgeNAT, bridgeDual, openNet}}},
}

var (
	bridgeNAT   = Network{Name: "web", Bridge: "nsbr-web", Subnets: []netip.Prefix{prefix("10.88.0.0/24")}, Masquerade: true, Isolate: true}
	bridgeDual  = Network{Name: "db", Bridge: "nsbr-db", Subnets: []netip.Prefix{prefix("10.89.0.0/24"), prefix("fd00:89::/64")}, Masquerade: true, Isolate: true}
	internalNet = Network{Name: "back", Bridge: "nsbr-back", Subnets: []netip.Prefix{prefix("10.90.0.0/24")}, Internal: true, Isolate: true}
	routedDNS   = Network{Name: "lab", Subnets: []netip.Prefix{prefix("10.91.0.0/24")}, Masquerade: true, Isolate: true}
	openNet     = Network{Name: "shared", Bridge: "nsbr-shared", Subnets: []netip.Prefix{prefix("10.92.0.0/24")}, Masquerade: true}
)

// TestGolden pins the text nft lists for nsnet's tables in each host
// state: the rules are built as netlink bytecode, and this text is how a
// reviewer reads them. `go test ./internal/firewall -run Golden -update`
// rewrites the files from what the kernel holds now; review the diff.
//
// The text is nft's (1.0.6 when the files were made): another version of
// nft may spell a rule differently without nsnet having changed it.
func TestGolden(t *testing.T) {
	nstest.Require(t)
	seen := map[string]string{}
	for _, tt := range goldenHosts {
		t.Run(tt.name, func(t *testing.T) {
			fw := cleanFirewall(t)
			for _, h := range append(slices.Clone(tt.before), tt.host) {
				if err := fw.Sync(h); err != nil {
					t.Fatal(err)
				}
			}
			got := listTables(t)
			for _, r := range untagged(got) {
				t.Errorf("rule without nsnet's comment: %s", r)
			}
			if other, ok := seen[got]; ok {
				t.Errorf("lists the same tables as %s: the state is not pinned apart", other)
			}
			seen[got] = tt.name
			path := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("nft lists, for %s:\n%s\nwant (%s):\n%s\n(if the change is meant, run with -update and review the diff)", tt.name, got, path, want)
			}
		})
	}
}

// listTables is what nft lists of nsnet's tables, normalised.
func listTables(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("nft", "list", "tables").Output()
	if err != nil {
		t.Fatalf("nft list tables: %v", err)
	}
	have := strings.Split(strings.TrimSpace(string(out)), "\n")
	var b strings.Builder
	for i, fam := range []string{"inet", "arp"} {
		if i > 0 {
			b.WriteString("\n")
		}
		name := "table " + fam + " " + TableName
		if !slices.Contains(have, name) {
			b.WriteString("# no " + name + "\n")
			continue
		}
		out, err := exec.Command("nft", "list", "table", fam, TableName).Output()
		if err != nil {
			t.Fatalf("nft list table %s %s: %v", fam, TableName, err)
		}
		b.WriteString("# nft list " + name + "\n")
		b.WriteString(normalise(string(out)))
	}
	return b.String()
}

var elementsRE = regexp.MustCompile(`elements = \{([^}]*)\}`)

// normalise puts set and map elements in one order, on one line: a hash
// map lists them in the order of its buckets.
func normalise(s string) string {
	return elementsRE.ReplaceAllStringFunc(s, func(m string) string {
		els := strings.Split(elementsRE.FindStringSubmatch(m)[1], ",")
		for i := range els {
			els[i] = strings.Join(strings.Fields(els[i]), " ")
		}
		slices.Sort(els)
		return "elements = { " + strings.Join(els, ", ") + " }"
	})
}

var commentRE = regexp.MustCompile(` comment "nsnet:(shared|network=[^"]+|fingerprint=[0-9a-f]+|needs=[^"]+|state=[^"]+)"$`)

// untagged lists the rules without nsnet's comment.
func untagged(listing string) []string {
	var out []string
	inChain := false
	for _, line := range strings.Split(listing, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "chain "):
			inChain = true
		case line == "}":
			inChain = false
		case !inChain || line == "" || strings.HasPrefix(line, "type "):
		case !commentRE.MatchString(line):
			out = append(out, line)
		}
	}
	return out
}

// TestNormalise checks that element order does not matter, and that
// nothing else changes.
func TestNormalise(t *testing.T) {
	a := "\tmap m {\n\t\telements = { tcp . 80 : 10.0.0.2 . 80,\n\t\t\t     udp . 53 : 10.0.0.3 . 53 }\n\t}\n"
	b := "\tmap m {\n\t\telements = { udp . 53 : 10.0.0.3 . 53, tcp . 80 : 10.0.0.2 . 80 }\n\t}\n"
	want := "\tmap m {\n\t\telements = { tcp . 80 : 10.0.0.2 . 80, udp . 53 : 10.0.0.3 . 53 }\n\t}\n"
	for _, in := range []string{a, b} {
		if got := normalise(in); got != want {
			t.Errorf("normalise(%q) = %q, want %q", in, got, want)
		}
	}
	if got := normalise("ip daddr 10.0.0.1 drop\n"); got != "ip daddr 10.0.0.1 drop\n" {
		t.Errorf("normalise changed a rule: %q", got)
	}
	listing := "table inet nsnet {\n\tset s {\n\t\ttype ipv4_addr\n\t}\n\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n" +
		"\t\tip saddr 10.0.0.0/24 drop comment \"nsnet:network=a\"\n\t\tct state established accept comment \"nsnet:shared\"\n\t\tip saddr 10.0.0.1 drop\n\t}\n}\n"
	if got, want := untagged(listing), []string{"ip saddr 10.0.0.1 drop"}; !slices.Equal(got, want) {
		t.Errorf("untagged = %q, want %q", got, want)
	}
}

// A Sync with Changes touches only the changed networks' set elements, and
// leaves the table exactly as a full Sync of the same host would; changes
// that do not match the sets (a network removed that was never added) fall
// back to the full rebuild.
func TestIncrementalSync(t *testing.T) {
	nstest.Require(t)
	full := func(h Host) string {
		fw := cleanFirewall(t)
		if err := fw.Sync(h); err != nil {
			t.Fatal(err)
		}
		return listTables(t)
	}
	steps := []struct {
		name string
		host Host
	}{
		{"add one", Host{Networks: []Network{bridgeNAT, bridgeDual}, Changes: &Changes{Added: []Network{bridgeDual}}}},
		{"add internal and routed", Host{Networks: []Network{bridgeNAT, bridgeDual, internalNet, routedDNS}, Ports: true, Changes: &Changes{Added: []Network{internalNet, routedDNS}}}},
		{"remove two", Host{Networks: []Network{bridgeDual, internalNet}, Changes: &Changes{Removed: []Network{bridgeNAT, routedDNS}}}},
		{"remove one never added", Host{Networks: []Network{bridgeDual}, Changes: &Changes{Removed: []Network{openNet, internalNet}}}},
	}
	want := make([]string, len(steps))
	for i, s := range steps {
		h := s.host
		h.Changes = nil
		want[i] = full(h)
	}
	fw := cleanFirewall(t)
	if err := fw.Sync(Host{Networks: []Network{bridgeNAT}}); err != nil {
		t.Fatal(err)
	}
	for i, s := range steps {
		if err := fw.Sync(s.host); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		// Chains made later are listed later: compare them whole, in
		// any order.
		if got := listTables(t); blocks(got) != blocks(want[i]) {
			t.Errorf("%s: the incremental Sync lists\n%s\nwhere a full one lists\n%s", s.name, got, want[i])
		}
	}
}

// blocks sorts the sets, maps and chains of a listing, each kept whole.
func blocks(s string) string {
	var out []string
	cur := ""
	for _, line := range strings.Split(s, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || trimmed == "}" {
			continue
		}
		for _, kind := range []string{"chain ", "set ", "map ", "#"} {
			if strings.HasPrefix(trimmed, kind) {
				out = append(out, cur)
				cur = ""
			}
		}
		cur += trimmed + "\n"
	}
	out = append(out, cur)
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// BenchmarkSyncChange adds and removes one network on a table of N (issue
// 11): with the networks in sets, the change should cost the same at
// 1000 as at 10.
func BenchmarkSyncChange(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			nstest.Require(b)
			fw := cleanFirewall(b)
			var nets []Network
			for i := range n {
				p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + i/250), byte(i % 250), 0}), 24)
				nets = append(nets, Network{Name: fmt.Sprintf("n%d", i), Bridge: fmt.Sprintf("nsbr-n%d", i), Subnets: []netip.Prefix{p}, Masquerade: true, Isolate: true})
			}
			if err := fw.Sync(Host{Networks: nets}); err != nil {
				b.Fatal(err)
			}
			extra := Network{Name: "x", Bridge: "nsbr-x", Subnets: []netip.Prefix{netip.MustParsePrefix("10.99.0.0/24")}, Masquerade: true, Isolate: true}
			b.ResetTimer()
			for range b.N {
				if err := fw.Sync(Host{Networks: append(slices.Clone(nets), extra), Changes: &Changes{Added: []Network{extra}}}); err != nil {
					b.Fatal(err)
				}
				if err := fw.Sync(Host{Networks: nets, Changes: &Changes{Removed: []Network{extra}}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A table an older nsnet made (per-network rules, no fingerprint) is
// rebuilt whole by a Sync with Changes, not given the changed network
// alone: its other networks are in none of the sets yet.
func TestIncrementalSyncOnOlderTable(t *testing.T) {
	nstest.Require(t)
	h := Host{Networks: []Network{bridgeNAT, bridgeDual}}
	fw := cleanFirewall(t)
	if err := fw.Sync(h); err != nil {
		t.Fatal(err)
	}
	want := listTables(t)
	for _, older := range []func(*Firewall){
		script(t, `table inet nsnet {
	chain postrouting { type nat hook postrouting priority srcnat; policy accept; ip saddr 10.88.0.0/24 oifname != "nsbr-web" masquerade comment "nsnet:network=web"; }
}`),
		// Shared rules with a fingerprint, and sets of subnets that the
		// current layout does without.
		script(t, `table inet nsnet {
	set closed4 { type ipv4_addr; flags interval; elements = { 10.88.0.0/24 } }
	chain owner { return comment "nsnet:rules=0123456789abcdef01234567"; }
	chain forward { type filter hook forward priority filter; policy accept; ip daddr @closed4 iifname != "nsbr-web" drop comment "nsnet:shared"; }
}`),
		// Layout 2: an interface-name set without the byte order nft
		// lists it by (nft's own script cannot make one), used by a rule.
		func(fw *Firewall) {
			nft(t, `table inet nsnet {
	chain owner { return comment "nsnet:needs=layout=2 iso=2 v4 iso4 masq4 closed ct"; }
	chain input { type filter hook input priority filter; policy accept; }
}`)
			s := &nftables.Set{Table: fw.table, Name: setBridges, KeyType: nftables.TypeIFName}
			if err := fw.conn.AddSet(s, []nftables.SetElement{{Key: ifname("nsbr-web")}}); err != nil {
				t.Fatal(err)
			}
			fw.conn.AddRule(&nftables.Rule{Table: fw.table, Chain: &nftables.Chain{Name: chainInput, Table: fw.table},
				Exprs: append(lookupIfname(expr.MetaKeyIIFNAME, s, false), &expr.Verdict{Kind: expr.VerdictDrop})})
			if err := fw.conn.Flush(); err != nil {
				t.Fatal(err)
			}
			if got := listTables(t); !strings.Contains(got, `elements = { "" }`) {
				t.Fatalf("the layout-2 set lists its names:\n%s", got)
			}
		},
	} {
		fw = cleanFirewall(t)
		older(fw)
		h.Changes = &Changes{Added: []Network{bridgeDual}}
		if err := fw.Sync(h); err != nil {
			t.Fatal(err)
		}
		if got := listTables(t); blocks(got) != blocks(want) {
			t.Errorf("after an incremental Sync of an older table:\n%s\nwant\n%s", got, want)
		}
		if ok, err := fw.Add(Host{Networks: []Network{openNet}}); err != nil || !ok {
			t.Errorf("Add after the table was rebuilt = %v, %v; want true", ok, err)
		}
	}
}

// script is a table that nft makes from text.
func script(t *testing.T, text string) func(*Firewall) {
	return func(*Firewall) { nft(t, text) }
}

// adder is what TestAdd runs against: the kernel's firewall or the fake.
type adder interface {
	Sync(Host) error
	Add(Host) (bool, error)
}

// Add puts a network's elements in alone when the table's rules serve it,
// leaving the table as a full Sync of every network would; when they do
// not, or the kernel refuses the elements, it changes nothing and says so.
// The fake answers as the kernel does.
func TestAdd(t *testing.T) {
	nstest.Require(t)
	base := Host{Networks: []Network{bridgeNAT, bridgeDual}, Owner: "/state"}
	overlapping := Network{Name: "half", Bridge: "nsbr-half", Subnets: []netip.Prefix{prefix("10.88.0.0/25")}, Masquerade: true, Isolate: true}
	tests := []struct {
		name string
		add  Host
		want bool
	}{
		{"covered", Host{Networks: []Network{openNet}, Owner: "/state"}, true},
		{"a new need", Host{Networks: []Network{internalNet}, Owner: "/state"}, false},
		{"the routed resolver", Host{Networks: []Network{routedDNS}, LocalDNS: addr("169.254.1.1"), Owner: "/state"}, false},
		{"ports", Host{Networks: []Network{openNet}, Ports: true, Owner: "/state"}, false},
		{"refused by the sets", Host{Networks: []Network{overlapping}, Owner: "/state"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			whole := base
			whole.Networks = append(slices.Clone(base.Networks), tt.add.Networks...)
			fw := cleanFirewall(t)
			var want string
			if tt.want {
				if err := fw.Sync(whole); err != nil {
					t.Fatal(err)
				}
				want = listTables(t)
			}
			fw = cleanFirewall(t)
			if err := fw.Sync(base); err != nil {
				t.Fatal(err)
			}
			if !tt.want {
				want = listTables(t)
			}
			for _, a := range []adder{fw, NewFake()} {
				if f, ok := a.(*Fake); ok {
					if err := f.Sync(base); err != nil {
						t.Fatal(err)
					}
				}
				got, err := a.Add(tt.add)
				if err != nil || got != tt.want {
					t.Errorf("%T: Add = %v, %v; want %v", a, got, err, tt.want)
				}
			}
			if got := listTables(t); blocks(got) != blocks(want) {
				t.Errorf("after Add the table lists\n%s\nwant\n%s", got, want)
			}
		})
	}
	t.Run("no table", func(t *testing.T) {
		for _, a := range []adder{cleanFirewall(t), NewFake()} {
			if got, err := a.Add(Host{Networks: []Network{openNet}}); err != nil || got {
				t.Errorf("%T: Add = %v, %v; want false", a, got, err)
			}
		}
	})
	t.Run("another state directory's table", func(t *testing.T) {
		fw := cleanFirewall(t)
		for _, a := range []adder{fw, NewFake()} {
			if err := a.Sync(base); err != nil {
				t.Fatal(err)
			}
			_, err := a.Add(Host{Networks: []Network{openNet}, Owner: "/other"})
			var owned *OwnedError
			if !errors.As(err, &owned) {
				t.Errorf("%T: Add = %v, want an OwnedError", a, err)
			}
		}
	})
	t.Run("older table", func(t *testing.T) {
		fw := cleanFirewall(t)
		nft(t, `table inet nsnet {
	chain postrouting { type nat hook postrouting priority srcnat; policy accept; ip saddr 10.88.0.0/24 oifname != "nsbr-web" masquerade comment "nsnet:network=web"; }
}`)
		if got, err := fw.Add(Host{Networks: []Network{openNet}}); err != nil || got {
			t.Errorf("Add = %v, %v; want false", got, err)
		}
	})
}
