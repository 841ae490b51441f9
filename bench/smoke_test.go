package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nsnet/nsnet/internal/nstest"
)

// TestMain re-executes the test binary, as root, in nstest's private
// namespaces with a tmpfs on /run as well, so that nothing the tests build
// is visible to the machine. It installs nothing: a tool that is missing
// makes TestSmoke skip, or fail under CI.
func TestMain(m *testing.M) { nstest.MainWithTmpfs(m, SandboxTmpfs...) }

// TestSmoke runs the smoke mode end to end and checks that every tool
// produced numbers: attach and teardown for all five on a bridge network
// and for the four routed contenders on a routed one, published ports for
// nsnet, CNI and netavark, data-path throughput and latency for every
// topology built by hand and by nsnet, and the nsnet process's peak memory
// for every command. It is a benchmark in
// miniature, not a timed assertion: no number is compared with a limit.
func TestSmoke(t *testing.T) {
	if testing.Short() && !nstest.CI() {
		t.Skip("smoke benchmark skipped in -short mode")
	}
	nstest.Require(t)
	if missing := MissingPackages(); len(missing) > 0 {
		msg := fmt.Sprintf("missing Debian packages: %s (apt-get install %s; .ci/run installs them)",
			strings.Join(missing, ", "), strings.Join(missing, " "))
		if nstest.CI() {
			t.Fatal("CI=true forbids skipping: " + msg)
		}
		t.Skip(msg)
	}
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cfg := SmokeConfig()
	cfg.Root = root
	if err := Build(root, t.TempDir(), &cfg.Bin); err != nil {
		t.Fatal(err)
	}
	cfg.Log = testLog{t}
	start := time.Now()
	res, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("smoke run took %s", time.Since(start).Round(time.Millisecond))
	for _, p := range Problems(res) {
		t.Error(p)
	}

	for _, sec := range []struct {
		name    string
		tools   []toolInfo
		results []AttachResult
	}{{"attach", attachTools, res.Attach}, {"routed attach", routedTools, res.AttachRouted}} {
		for _, ti := range sec.tools {
			var a *AttachResult
			for i := range sec.results {
				if sec.results[i].Tool == ti.key {
					a = &sec.results[i]
				}
			}
			switch {
			case a == nil:
				t.Errorf("%s: no result for %s", sec.name, ti.key)
			case a.Connect.Count != a.N || a.Teardown.Count != a.N || a.Connect.Median <= 0 || a.Teardown.Median <= 0:
				t.Errorf("%s %s: want %d timed connects and teardowns, got %d and %d (medians %s, %s)",
					sec.name, ti.key, a.N, a.Connect.Count, a.Teardown.Count, a.Connect.Median, a.Teardown.Median)
			case a.Connect.MaxRSS <= 0:
				t.Errorf("%s %s: no peak memory recorded", sec.name, ti.key)
			}
		}
	}

	for _, key := range portTools {
		for _, k := range cfg.PortCounts {
			var p *PortResult
			for i := range res.Ports {
				if res.Ports[i].Tool == key && res.Ports[i].Ports == k {
					p = &res.Ports[i]
				}
			}
			switch {
			case p == nil:
				t.Errorf("ports %s K=%d: no result", key, k)
			case p.Attach.Median <= 0 || p.Teardown.Median <= 0:
				t.Errorf("ports %s K=%d: no numbers (%+v)", key, k, *p)
			}
		}
	}

	for _, c := range dpCases {
		for _, im := range dpImpls {
			var d *DataPathResult
			for i := range res.DataPath {
				if res.DataPath[i].Case == c.key && res.DataPath[i].Impl == im.key {
					d = &res.DataPath[i]
				}
			}
			switch {
			case d == nil:
				t.Errorf("data path %s %s: no result", c.key, im.key)
			case len(d.Gbps) == 0 || d.Gbps[0] <= 0 || d.RTT.Median <= 0:
				t.Errorf("data path %s %s: no numbers (%v Gbit/s, RTT %s)", c.key, im.key, d.Gbps, d.RTT.Median)
			}
		}
	}

	if len(res.Memory) == 0 {
		t.Error("memory: no results")
	}
	for _, m := range res.Memory {
		if m.Summary.Count == 0 || m.Summary.MaxRSS <= 0 {
			t.Errorf("memory nsnet %s: no peak RSS", m.Command)
		}
	}

	if len(res.Scale) != 4 {
		t.Errorf("scale: %d results, want 4: %+v", len(res.Scale), res.Scale)
	}
	for _, x := range res.Scale {
		if x.Err != "" || x.Base.Count == 0 || x.Large.Count == 0 || x.Large.MaxRSSPeak <= 0 {
			t.Errorf("scale %s: %+v", x.What, x)
		}
	}
	if res.ScaleAgentKiB <= 0 {
		t.Error("scale: no agent peak memory")
	}
	if m := res.Members; m == nil || m.Err != "" || m.First.Count != m.Window || m.Last.Count != m.Window ||
		m.FloorFirst.Count != m.Window || m.FloorLast.Count != m.Window || m.AgentKiB <= 0 {
		t.Errorf("members: %+v", m)
	}

	if len(res.Lab) != len(labTools) {
		t.Errorf("lab: %d results, want %d: %+v", len(res.Lab), len(labTools), res.Lab)
	}
	for _, x := range res.Lab {
		if x.Err != "" || x.Up.Count == 0 || x.Down.Count == 0 || x.PeakKiB <= 0 || x.Tool == "nsnet" && x.Reapply.Count == 0 {
			t.Errorf("lab %s: %+v", x.Tool, x)
		}
	}

	if res.Cluster == nil || res.Cluster.Err != "" || res.Cluster.Cluster.Count == 0 || len(res.Cluster.VXLAN.Gbps) == 0 {
		t.Errorf("cluster: %+v", res.Cluster)
	}
	if res.BGP == nil || res.BGP.Err != "" || res.BGP.Learn <= 0 || res.BGP.Announce.Count == 0 {
		t.Errorf("bgp: %+v", res.BGP)
	}
	if res.Doctor == nil || res.Doctor.Err != "" || res.Doctor.Doctor.Count == 0 || res.Doctor.Live.Count == 0 {
		t.Errorf("doctor: %+v", res.Doctor)
	}

	dir := t.TempDir()
	report := Report(res, PlotPaths{Attach: "attach-latency.svg", AttachRouted: "attach-routed-latency.svg"})
	svg, routedSVG := Plot(res), PlotRouted(res)
	if !strings.Contains(report, "## 1. Attach and teardown") || !strings.Contains(report, "## 1b. Routed attach and teardown") ||
		!strings.Contains(report, "## 6. Labs") || !strings.Contains(PlotLab(res), "<rect") ||
		!strings.Contains(svg, "<circle") || !strings.Contains(routedSVG, "<circle") {
		t.Error("report or plots are missing their sections")
	}
	os.WriteFile(filepath.Join(dir, "benchmarks.md"), []byte(report), 0o644)
	os.WriteFile(filepath.Join(dir, "attach-latency.svg"), []byte(svg), 0o644)
	os.WriteFile(filepath.Join(dir, "attach-routed-latency.svg"), []byte(routedSVG), 0o644)
	if testing.Verbose() {
		t.Logf("report:\n%s", report)
	}
}

// TestCIInstallsPackages checks that .ci/run installs every package the
// smoke test needs, since go test installs nothing.
func TestCIInstallsPackages(t *testing.T) {
	script, err := os.ReadFile(filepath.Join("..", ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	words := strings.Fields(string(script))
	for _, pkg := range Packages {
		if !slices.Contains(words, pkg) {
			t.Errorf(".ci/run does not install %s, which the smoke test needs", pkg)
		}
	}
}

// testLog sends the benchmark's progress to the test log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
