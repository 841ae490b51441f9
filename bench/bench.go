package bench

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nsnet/nsnet/internal/netns"
	"github.com/nsnet/nsnet/internal/nstest"
)

// Config says what to measure and how much.
type Config struct {
	// Smoke is the short mode CI runs.
	Smoke bool
	// Ns are the network sizes of the attach benchmark.
	Ns []int
	// Tools restricts every section to these tool keys; empty means all.
	Tools []string
	// Sections restricts the run to some of "attach", "attach-routed",
	// "ports", "datapath", "memory", "scale", "members", "lab", "doctor", "bgp", "cluster"; empty means all.
	Sections []string
	// PortCounts are the numbers of published ports, starting with 0 (the
	// baseline the per-port cost is measured from).
	PortCounts []int
	// PortBudget stops a tool's port sweep before a count whose attach and
	// teardown, extrapolated from the previous counts, would take longer.
	PortBudget time.Duration
	// DataSeconds is the length of one iperf3 run; DataRepeats how many
	// rounds of every data-path case; RRCount how many timed round trips
	// one request/response run makes.
	DataSeconds, DataRepeats, RRCount int
	// MemoryRepeats is how many times the memory scenario runs.
	MemoryRepeats int
	// ScaleNetworks is the number of networks of the scale section (and
	// of ported networks after them); zero skips it.
	ScaleNetworks int
	// MembersBridges bridge networks and one routed network, of
	// MembersPerNetwork members each, fill the members section's host;
	// MembersWindow connects at each end are compared. Zero skips it.
	MembersBridges, MembersPerNetwork, MembersWindow int
	// LabMembers is the size of the lab section's lab, LabRounds how
	// many times each tool builds and removes it; zero skips it.
	LabMembers, LabRounds int
	// DoctorMembers and DoctorPorts size the doctor section's host;
	// zero members skips it.
	DoctorMembers, DoctorPorts int
	// BGPRoutes is how many routes BIRD announces in the BGP section,
	// BGPRounds how many connects are announced; zero routes skips it.
	BGPRoutes, BGPRounds int
	// ClusterRounds is how many connects of each kind the cluster section
	// times; zero skips it.
	ClusterRounds int
	// Root is the nsnet module's root, for version information.
	Root string
	// Bin must have NSNet, Floor and Launcher set (see Build); Run finds
	// the rest.
	Bin Binaries
	// NSNetRev is the git revision Bin.NSNet was built from (see
	// BuildRevision); empty means Root's work tree.
	NSNetRev string
	// PrebuiltNSNet says Bin.NSNet was given, not built from Root.
	PrebuiltNSNet bool
	// Log receives progress; nil means os.Stderr.
	Log io.Writer
}

// SmokeConfig is the mode that runs in CI: small, and quick.
func SmokeConfig() Config {
	return Config{
		Smoke: true, Ns: []int{10}, PortCounts: []int{0, 1, 5},
		DataSeconds: 1, DataRepeats: 1, RRCount: 1000, MemoryRepeats: 1, ScaleNetworks: 20,
		MembersBridges: 2, MembersPerNetwork: 10, MembersWindow: 5,
		LabMembers: 20, LabRounds: 1, DoctorMembers: 20, DoctorPorts: 100,
		BGPRoutes: 1000, BGPRounds: 5, ClusterRounds: 5,
	}
}

// FullConfig is the mode behind docs/benchmarks.md.
func FullConfig() Config {
	return Config{
		Ns: []int{10, 100, 1000}, PortCounts: []int{0, 1, 10, 100, 1000, 10000}, PortBudget: 60 * time.Second,
		DataSeconds: 2, DataRepeats: 9, RRCount: 20000, MemoryRepeats: 3, ScaleNetworks: 1000,
		MembersBridges: 10, MembersPerNetwork: 1000, MembersWindow: 100,
		LabMembers: 1000, LabRounds: 3, DoctorMembers: 1000, DoctorPorts: 10000,
		BGPRoutes: 10000, BGPRounds: 21, ClusterRounds: 21,
	}
}

// Results is everything one run measured.
type Results struct {
	Mode     string            `json:"mode"`
	Date     time.Time         `json:"date"`
	Machine  Machine           `json:"machine"`
	Versions map[string]string `json:"versions"`
	Config   Config            `json:"-"`
	Attach   []AttachResult    `json:"attach"`
	// AttachRouted is section 1b: the same on a routed network.
	AttachRouted []AttachResult   `json:"attach_routed"`
	Ports        []PortResult     `json:"ports"`
	DataPath     []DataPathResult `json:"data_path"`
	Memory       []MemoryResult   `json:"memory"`
	// Scale is the networks-per-host section; ScaleAgentKiB the agent's
	// peak resident set at its end.
	Scale         []ScaleResult `json:"scale"`
	ScaleAgentKiB int64         `json:"scale_agent_peak_kib"`
	// Members is the members-per-host section.
	Members *MembersResult `json:"members,omitempty"`
	// Lab is the lab section (issue 12).
	Lab []LabResult `json:"lab"`
	// Doctor is the doctor section (issue 16).
	Doctor *DoctorResult `json:"doctor,omitempty"`
	// BGP is the BGP section (issue 13).
	BGP *BGPResult `json:"bgp,omitempty"`
	// Cluster is the cluster section (issue 14).
	Cluster *ClusterResult `json:"cluster,omitempty"`
	// MemoryFloor is the peak resident set, in KiB, that /bin/true reports
	// when started by the launcher: no reading can be lower.
	MemoryFloor int64         `json:"memory_floor_kib"`
	Elapsed     time.Duration `json:"elapsed_ns"`
	// LoadBefore and LoadAfter are /proc/loadavg's first three fields:
	// other work on the machine shows there.
	LoadBefore string `json:"load_before"`
	LoadAfter  string `json:"load_after"`
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

type runner struct {
	cfg       Config
	bin       *Binaries
	stateRoot string
	log       io.Writer
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.log, format+"\n", args...)
}

func (r *runner) wantTool(key string) bool {
	return len(r.cfg.Tools) == 0 || slices.Contains(r.cfg.Tools, key)
}

func (r *runner) wantSection(s string) bool {
	return len(r.cfg.Sections) == 0 || slices.Contains(r.cfg.Sections, s)
}

// SandboxTmpfs is what the sandbox covers with a tmpfs besides nstest's
// /run/netns and /etc/netns: /run, where every tool's state lives (in
// memory, as on a real host) and where tools may write files of their own.
var SandboxTmpfs = []string{"/run"}

// Run measures everything cfg asks for. It must run inside the sandbox,
// the private namespaces nstest makes with a tmpfs on SandboxTmpfs
// (nstest.MainWithTmpfs in TestMain; nstest.Reexec then nstest.Enter in
// cmd/nsbench), and refuses otherwise.
func Run(cfg Config) (*Results, error) {
	if !nstest.Isolated() {
		return nil, errors.New("bench: refusing to run outside the sandbox (see nstest.Reexec and nstest.Enter)")
	}
	if cfg.Log == nil {
		cfg.Log = os.Stderr
	}
	bin := cfg.Bin
	if missing := findSystem(&bin); len(missing) > 0 {
		return nil, fmt.Errorf("bench: missing Debian packages: %s (apt-get install them)", strings.Join(missing, ", "))
	}
	if !isExec(bin.NSNet) || !isExec(bin.Floor) || !isExec(bin.Launcher) {
		return nil, fmt.Errorf("bench: nsnet (%q), floor (%q) and launcher (%q) must be built first (see Build)", bin.NSNet, bin.Floor, bin.Launcher)
	}
	stateRoot, err := os.MkdirTemp("/run", "nsbench-state-")
	if err != nil {
		return nil, fmt.Errorf("bench: state directory: %w", err)
	}
	defer os.RemoveAll(stateRoot)
	r := &runner{cfg: cfg, bin: &bin, stateRoot: stateRoot, log: cfg.Log}
	start := time.Now()
	res := &Results{Mode: "full", Date: start.UTC(), Machine: describeMachine(), Versions: versions(&bin, cfg.Root, cfg.NSNetRev), Config: cfg}
	res.LoadBefore = loadAverage()
	if cfg.PrebuiltNSNet {
		res.Versions["nsnet"] = "prebuilt binary " + bin.NSNet
	}
	if cfg.Smoke {
		res.Mode = "smoke"
	}
	if r.wantSection("attach") {
		for _, n := range cfg.Ns {
			res.Attach = append(res.Attach, r.runAttachN(n, bridgeKind)...)
		}
	}
	if r.wantSection("attach-routed") {
		for _, n := range cfg.Ns {
			res.AttachRouted = append(res.AttachRouted, r.runAttachN(n, routedKind)...)
		}
	}
	if r.wantSection("ports") {
		r.logf("published ports: %v", cfg.PortCounts)
		res.Ports = r.runPorts()
	}
	if r.wantSection("datapath") {
		r.logf("data path: %d rounds of %ds iperf3 and %d round trips", cfg.DataRepeats, cfg.DataSeconds, cfg.RRCount)
		res.DataPath = r.runDataPath()
	}
	if r.wantSection("memory") && r.wantTool("nsnet") {
		r.logf("memory: nsnet commands, %d rounds", cfg.MemoryRepeats)
		res.Memory, res.MemoryFloor = r.runMemory()
	}
	if r.wantSection("scale") && r.wantTool("nsnet") && cfg.ScaleNetworks > 0 {
		r.logf("networks per host: %d, then %d more with a published port each", cfg.ScaleNetworks, cfg.ScaleNetworks)
		res.Scale, res.ScaleAgentKiB = r.runScale(cfg.ScaleNetworks)
	}
	if r.wantSection("members") && r.wantTool("nsnet") && cfg.MembersPerNetwork > 0 {
		r.logf("members per host: %d bridge networks and a routed one, %d members each", cfg.MembersBridges, cfg.MembersPerNetwork)
		m := r.runMembers(cfg.MembersBridges, cfg.MembersPerNetwork, cfg.MembersWindow)
		res.Members = &m
	}
	if r.wantSection("lab") && cfg.LabMembers > 0 {
		res.Lab = r.runLab(cfg.LabMembers, max(cfg.LabRounds, 1))
	}
	if r.wantSection("doctor") && r.wantTool("nsnet") && cfg.DoctorMembers > 0 {
		d := r.runDoctor(cfg.DoctorMembers, cfg.DoctorPorts, 5)
		res.Doctor = &d
	}
	if r.wantSection("bgp") && r.wantTool("nsnet") && cfg.BGPRoutes > 0 {
		g := r.runBGP(cfg.BGPRoutes, max(cfg.BGPRounds, 1))
		res.BGP = &g
	}
	if r.wantSection("cluster") && r.wantTool("nsnet") && cfg.ClusterRounds > 0 {
		c := r.runCluster(cfg.ClusterRounds)
		res.Cluster = &c
	}
	res.Elapsed = time.Since(start)
	res.LoadAfter = loadAverage()
	return res, nil
}

// runAttachN creates N member namespaces, runs every tool of the kind over
// them in turn (each in a host of its own; members are scrubbed between
// tools) and deletes them.
func (r *runner) runAttachN(n int, kind attachKind) []AttachResult {
	r.logf("%s, N=%d", kind.title, n)
	members := make([]member, n)
	var out []AttachResult
	for i := range members {
		members[i] = newMember("m", i)
		members[i].Addr = kind.addr(i)
		if err := createNetns(members[i].NS, false); err != nil {
			for _, m := range members[:i] {
				netns.Delete(m.NS)
			}
			for _, ti := range kind.tools {
				if r.wantTool(ti.key) {
					out = append(out, AttachResult{Tool: ti.key, N: n, Err: err.Error()})
				}
			}
			return out
		}
	}
	defer func() {
		for _, m := range members {
			netns.Delete(m.NS)
		}
	}()
	for _, ti := range kind.tools {
		if !r.wantTool(ti.key) {
			continue
		}
		res := r.runAttach(kind, ti, members)
		r.logf("  %-9s N=%-5d connect median %-10s p95 %-10s teardown median %-10s p95 %-10s (%s)",
			ti.key, n, roundDur(res.Connect.Median), roundDur(res.Connect.P95),
			roundDur(res.Teardown.Median), roundDur(res.Teardown.P95), roundDur(res.Elapsed))
		out = append(out, res)
	}
	return out
}
