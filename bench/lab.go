package bench

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/nsnet/nsnet/internal/netns"
)

// LabResult is one way of building (and removing) a lab of N namespaces
// on one IPv4 bridge network with NAT and DNS (issue 12): the whole build
// as one timed operation, the whole removal as another.
type LabResult struct {
	Tool string `json:"tool"`
	N    int    `json:"n"`
	// Up and Down are over the rounds; Procs is the processes one build
	// ran, PeakKiB the largest peak resident set of any of them.
	Up      Summary `json:"up"`
	Down    Summary `json:"down"`
	Procs   int     `json:"procs"`
	PeakKiB int64   `json:"peak_kib"`
	// Reapply is a second `nsnet apply` of the unchanged file (nsnet
	// apply only).
	Reapply Summary `json:"reapply"`
	Err     string  `json:"error,omitempty"`
}

// labTool builds and removes a lab of n members in host h.
type labTool struct {
	key, label, how string
	// setup runs before each build, untimed (the network, by hand).
	setup func(h *host) error
	up    func(h *host, members []member) (Sample, error)
	down  func(h *host, members []member) (Sample, error)
}

const labPrefix = "lb"

func labMembers(n int) []member {
	ms := make([]member, n)
	for i := range ms {
		ms[i] = newMember(labPrefix, i)
		ms[i].Addr = nthHost(benchSubnet, i+2)
	}
	return ms
}

// labFile is the lab the nsnet apply contender applies.
func labFile(h *host, n int) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "name: bench\nnetworks:\n  bench: {subnet: %s, gateway: %s}\nnamespaces:\n", benchSubnet, benchGateway)
	for _, m := range labMembers(n) {
		fmt.Fprintf(&b, "  %s: {networks: [bench]}\n", m.NS)
	}
	p := filepath.Join(h.dir, "lab.yaml")
	return p, os.WriteFile(p, []byte(b.String()), 0o644)
}

var labTools = []labTool{
	{key: "nsnet", label: "nsnet apply", how: "`nsnet apply -f lab.yaml` / `nsnet destroy --lab bench`, one process each",
		up: func(h *host, ms []member) (Sample, error) {
			p, err := labFile(h, len(ms))
			if err != nil {
				return Sample{}, err
			}
			_, s, err := h.run(nsnetTool{}.nsnet(h, "apply", "-f", p))
			return s, err
		},
		down: func(h *host, _ []member) (Sample, error) {
			_, s, err := h.run(nsnetTool{}.nsnet(h, "destroy", "--lab", "bench"))
			return s, err
		}},
	{key: "floor", label: "netlink floor", how: "`floor lab`: one Go process making the namespaces and attaching them over netlink / `floor unlab`: unmount every namespace, wait for the last veth to go",
		setup: func(h *host) error { return h.handBridge("br0", benchSubnet, benchGateway) },
		up: func(h *host, ms []member) (Sample, error) {
			_, s, err := h.run(cmd(h.bin.Floor, "lab", fmt.Sprint(len(ms)), labPrefix, "br0", benchSubnet.String(), benchGateway.String()))
			return s, err
		},
		down: func(h *host, ms []member) (Sample, error) {
			_, s, err := h.run(cmd(h.bin.Floor, "unlab", fmt.Sprint(len(ms)), labPrefix))
			return s, err
		}},
	{key: "nsnet-procs", label: "nsnet, a process per object", how: "`nsnet ns create NS` + `nsnet net connect bench NS` per member / `nsnet ns rm NS` per member",
		setup: func(h *host) error {
			_, _, err := h.run(nsnetTool{}.nsnet(h, "net", "create", "bench", "--subnet", benchSubnet.String(), "--gateway", benchGateway.String()))
			return err
		},
		up: func(h *host, ms []member) (Sample, error) {
			var total Sample
			for _, m := range ms {
				s, err := h.runAll(nsnetTool{}.nsnet(h, "ns", "create", m.NS), nsnetTool{}.nsnet(h, "net", "connect", "bench", m.NS, "--ip", m.Addr.String()))
				total.add(s)
				if err != nil {
					return total, err
				}
			}
			return total, nil
		},
		down: func(h *host, ms []member) (Sample, error) {
			var total Sample
			for _, m := range ms {
				_, s, err := h.run(nsnetTool{}.nsnet(h, "ns", "rm", m.NS))
				total.add(s)
				if err != nil {
					return total, err
				}
			}
			_, _, err := h.run(nsnetTool{}.nsnet(h, "net", "rm", "bench"))
			return total, err
		}},
	{key: "iproute2", label: "ip + nft by hand", how: "`ip netns add NS` and the articles' 7 commands per member / `ip netns del NS` per member",
		setup: func(h *host) error { return h.handBridge("br0", benchSubnet, benchGateway) },
		up: func(h *host, ms []member) (Sample, error) {
			var total Sample
			for _, m := range ms {
				cs := append([]command{cmd(h.bin.IP, "netns", "add", m.NS), cmd(h.bin.IP, "-n", m.NS, "link", "set", "lo", "up")},
					handAttachCmds(h.bin, "br0", m.HostIf, "vc"+m.HostIf[2:], m.NS, m.addrPrefix(), benchGateway)...)
				s, err := h.runAll(cs...)
				total.add(s)
				if err != nil {
					return total, err
				}
			}
			return total, nil
		},
		down: func(h *host, ms []member) (Sample, error) {
			var total Sample
			for _, m := range ms {
				_, s, err := h.run(cmd(h.bin.IP, "netns", "del", m.NS))
				total.add(s)
				if err != nil {
					return total, err
				}
			}
			return total, nil
		}},
	{key: "cni", label: "CNI bridge plugin", how: "`ip netns add NS` and the bridge plugin's ADD (host-local IPAM, ipMasq) per member / DEL and `ip netns del NS` per member",
		up: func(h *host, ms []member) (Sample, error) {
			t := &cniTool{}
			t.Setup(h)
			var total Sample
			for _, m := range ms {
				_, s, err := h.run(cmd(h.bin.IP, "netns", "add", m.NS))
				total.add(s)
				if err == nil {
					s, err = t.Attach(h, m)
					total.add(s)
				}
				if err != nil {
					return total, err
				}
			}
			return total, nil
		},
		down: func(h *host, ms []member) (Sample, error) {
			t := &cniTool{}
			t.Setup(h)
			var total Sample
			for _, m := range ms {
				s, err := t.Detach(h, m)
				total.add(s)
				if err == nil {
					_, s, err = h.run(cmd(h.bin.IP, "netns", "del", m.NS))
					total.add(s)
				}
				if err != nil {
					return total, err
				}
			}
			return total, nil
		}},
}

func (m member) addrPrefix() netip.Prefix { return netip.PrefixFrom(m.Addr, benchSubnet.Bits()) }

// runLab builds and removes a lab of n members with every tool, rounds
// times each, in a fresh host per round; members are checked after each
// build (every one has its address and reaches the gateway's subnet) and
// gone after each removal.
func (r *runner) runLab(n, rounds int) []LabResult {
	r.logf("labs: %d namespaces on one bridge network, %d rounds", n, rounds)
	var out []LabResult
	for _, t := range labTools {
		if !r.wantTool(strings.TrimSuffix(t.key, "-procs")) {
			continue
		}
		res := LabResult{Tool: t.key, N: n}
		var ups, downs, reapplies []Sample
		for round := range rounds {
			up, down, re, err := r.labRound(t, n, round)
			if err != nil {
				res.Err = err.Error()
				r.logf("  %s: %v", t.key, err)
				break
			}
			ups, downs = append(ups, up), append(downs, down)
			if re.Wall > 0 {
				reapplies = append(reapplies, re)
			}
			res.Procs = up.Procs
			res.PeakKiB = max(res.PeakKiB, up.MaxRSS)
		}
		res.Up, res.Down, res.Reapply = summarize(ups), summarize(downs), summarize(reapplies)
		r.logf("  %-12s build median %-10s remove median %-10s", t.key, roundDur(res.Up.Median), roundDur(res.Down.Median))
		out = append(out, res)
	}
	return out
}

func (r *runner) labRound(t labTool, n, round int) (up, down, reapply Sample, err error) {
	h, err := newHost(fmt.Sprintf("lab-%s-%d", t.key, round), r.bin, r.stateRoot)
	if err != nil {
		return
	}
	members := labMembers(n)
	defer func() {
		for _, m := range members {
			netns.Delete(m.NS)
		}
		h.close()
	}()
	if t.setup != nil {
		if err = t.setup(h); err != nil {
			return
		}
	}
	if up, err = t.up(h, members); err != nil {
		return
	}
	if err = checkAttached(members); err != nil {
		return up, down, reapply, fmt.Errorf("after the build: %w", err)
	}
	if t.key == "nsnet" {
		var p string
		if p, err = labFile(h, n); err != nil {
			return
		}
		var outb []byte
		outb, reapply, err = h.run(nsnetTool{}.nsnet(h, "apply", "-f", p))
		if err == nil && !strings.Contains(string(outb), "no changes") {
			err = fmt.Errorf("second apply: %s", outb)
		}
		if err != nil {
			return
		}
	}
	if down, err = t.down(h, members); err != nil {
		return
	}
	for _, m := range members {
		if netns.Exists(m.NS) {
			return up, down, reapply, fmt.Errorf("after the removal: namespace %s is still there", m.NS)
		}
	}
	return up, down, reapply, nil
}
