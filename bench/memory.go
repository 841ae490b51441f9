package bench

import (
	"fmt"
	"slices"
)

// MemoryResult is the peak memory of the nsnet process for one command.
type MemoryResult struct {
	Command string `json:"command"`
	// Summary holds the wall times and, in MaxRSS and MaxRSSPeak, the
	// median and largest peak resident set in KiB.
	Summary Summary `json:"summary"`
	Err     string  `json:"error,omitempty"`
}

// memoryStep is one nsnet command of the memory scenario.
type memoryStep struct {
	label string
	args  []string
}

// memoryScenario exercises every nsnet command once or more, in an order
// in which each one succeeds.
func memoryScenario(id int) []memoryStep {
	ns := func(s string) string { return fmt.Sprintf("mem%d-%s", id, s) }
	return []memoryStep{
		{"ns create", []string{"ns", "create", ns("a")}},
		{"ns create", []string{"ns", "create", ns("b")}},
		{"ns create", []string{"ns", "create", ns("c")}},
		{"net create", []string{"net", "create", "mem", "--subnet", benchSubnet.String()}},
		{"net connect", []string{"net", "connect", "mem", ns("a")}},
		{"net connect --publish", []string{"net", "connect", "mem", ns("b"), "--publish", "8080:80/tcp"}},
		{"net connect", []string{"net", "connect", "mem", ns("c")}},
		{"link create", []string{"link", "create", ns("a"), ns("c"), "--subnet", pairSubnet.String()}},
		{"tap create", []string{"tap", "create", "memtap0", "--net", "mem"}},
		{"ns ls", []string{"ns", "ls"}},
		{"ns inspect", []string{"ns", "inspect", ns("a")}},
		{"net ls", []string{"net", "ls"}},
		{"net inspect", []string{"net", "inspect", "mem"}},
		{"link ls", []string{"link", "ls"}},
		{"tap ls", []string{"tap", "ls"}},
		{"exec", []string{"exec", ns("a"), "--", "/bin/true"}},
		{"tap rm", []string{"tap", "rm", "memtap0"}},
		{"link rm", []string{"link", "rm", ns("a"), ns("c")}},
		{"net disconnect", []string{"net", "disconnect", "mem", ns("a")}},
		{"ns rm", []string{"ns", "rm", ns("b")}},
		{"gc", []string{"gc"}},
		{"net rm", []string{"net", "rm", "mem", "--force"}},
		{"ns rm", []string{"ns", "rm", ns("a")}},
		{"ns rm", []string{"ns", "rm", ns("c")}},
	}
}

// runMemory runs the scenario in fresh hosts and collects each command's
// peak resident set from wait4. It also runs /bin/true through the same
// launcher: what that reports is the floor below which no reading goes.
func (r *runner) runMemory() (results []MemoryResult, floorKiB int64) {
	byCmd := map[string][]Sample{}
	errs := map[string]string{}
	var order []string
	var floor []Sample
	for rep := 0; rep < r.cfg.MemoryRepeats; rep++ {
		h, err := newHost(fmt.Sprintf("mem-%d", rep), r.bin, r.stateRoot)
		if err != nil {
			errs["(setup)"] = err.Error()
			break
		}
		t := nsnetTool{}
		if _, s, err := h.run(cmd("/bin/true")); err == nil {
			floor = append(floor, s)
		}
		for _, st := range memoryScenario(rep) {
			if !slices.Contains(order, st.label) {
				order = append(order, st.label)
			}
			_, s, err := h.run(t.nsnet(h, st.args...))
			if err != nil {
				if errs[st.label] == "" {
					errs[st.label] = err.Error()
				}
				continue
			}
			byCmd[st.label] = append(byCmd[st.label], s)
		}
		h.close()
	}
	var out []MemoryResult
	for _, label := range order {
		out = append(out, MemoryResult{Command: label, Summary: summarize(byCmd[label]), Err: errs[label]})
	}
	if e := errs["(setup)"]; e != "" {
		out = append(out, MemoryResult{Command: "(setup)", Err: e})
	}
	return out, summarize(floor).MaxRSSPeak
}
