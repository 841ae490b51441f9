// Command nsbench runs nsnet's benchmarks against the alternatives and
// writes docs/benchmarks.md. It checks for the Debian packages it needs
// (with -install it apt-gets the missing ones), builds nsnet and the
// netlink floor program, then re-executes itself in private network, mount
// and PID namespaces (nstest's sandbox), where everything is measured; the
// machine's own network is never touched. It must run as root.
//
// Usage, from the repository's root:
//
//	go run ./bench/cmd/nsbench                  # full run, writes docs/benchmarks.md
//	go run ./bench/cmd/nsbench -install         # the same, installing missing packages first
//	go run ./bench/cmd/nsbench -rev HEAD        # nsnet as committed, not the work tree
//	go run ./bench/cmd/nsbench -smoke -out /tmp/smoke.md
//	go run ./bench/cmd/nsbench -sections attach-routed -out /tmp/rt/benchmarks.md -assets /tmp/rt
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nsnet/nsnet/bench"
	"github.com/nsnet/nsnet/internal/nstest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "nsbench:", err)
		os.Exit(1)
	}
}

func run() error {
	smoke := flag.Bool("smoke", false, "short run: N=10, a handful of ports, short data-path runs")
	out := flag.String("out", "docs/benchmarks.md", "report to write (relative to the module root)")
	assets := flag.String("assets", "bench/results", "directory for the plot and raw results (relative to the module root)")
	ns := flag.String("n", "", "comma-separated network sizes (default 10,100,1000; smoke: 10)")
	tools := flag.String("tools", "", "comma-separated tool keys to measure (nsnet,iproute2,cni,netavark,floor; cni is the ptp plugin in attach-routed); default all")
	sections := flag.String("sections", "", "comma-separated sections (attach,attach-routed,ports,datapath,memory,scale,members,lab,doctor,bgp,cluster); default all")
	install := flag.Bool("install", false, "apt-get install missing Debian packages first (needs the machine's network)")
	prebuilt := flag.String("nsnet", "", "use this nsnet binary instead of building ./cmd/nsnet")
	rev := flag.String("rev", "", "build nsnet from this git revision (via git archive) instead of the work tree")
	flag.Parse()

	root, err := bench.ModuleRoot()
	if err != nil {
		return err
	}
	if !nstest.Isolated() {
		if os.Geteuid() != 0 {
			return fmt.Errorf("must run as root (it creates network namespaces, in a sandbox of its own)")
		}
		if missing := bench.MissingPackages(); len(missing) > 0 {
			if !*install {
				return fmt.Errorf("missing Debian packages: %s (apt-get install %s, or run with -install)",
					strings.Join(missing, ", "), strings.Join(missing, " "))
			}
			if err := installPackages(missing); err != nil {
				return err
			}
		}
		dir, err := os.MkdirTemp("", "nsbench-bin-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		fmt.Fprintln(os.Stderr, "building nsnet, the floor program and the launcher")
		var b bench.Binaries
		switch {
		case *prebuilt != "" && *rev != "":
			return fmt.Errorf("-nsnet and -rev exclude each other")
		case *prebuilt != "":
			if b.NSNet, err = filepath.Abs(*prebuilt); err != nil {
				return err
			}
		case *rev != "":
			fmt.Fprintf(os.Stderr, "building nsnet at %s\n", *rev)
			if b.NSNet, err = bench.BuildRevision(root, *rev, dir); err != nil {
				return err
			}
		}
		if err := bench.Build(root, dir, &b); err != nil {
			return err
		}
		code, err := nstest.Reexec("NSBENCH_NSNET="+b.NSNet, "NSBENCH_FLOOR="+b.Floor, "NSBENCH_LAUNCHER="+b.Launcher)
		if err != nil {
			return fmt.Errorf("re-execute in private namespaces: %w", err)
		}
		if code != 0 {
			return fmt.Errorf("the sandboxed run exited with status %d", code)
		}
		return nil
	}

	if err := nstest.Enter(bench.SandboxTmpfs...); err != nil {
		return err
	}
	cfg := bench.FullConfig()
	if *smoke {
		cfg = bench.SmokeConfig()
	}
	if *ns != "" {
		cfg.Ns = nil
		for _, f := range strings.Split(*ns, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > 1000 {
				return fmt.Errorf("-n: %q is not a size in 1..1000", f)
			}
			cfg.Ns = append(cfg.Ns, n)
		}
	}
	cfg.Tools = splitList(*tools)
	cfg.Sections = splitList(*sections)
	cfg.Root = root
	cfg.Bin.NSNet, cfg.Bin.Floor, cfg.Bin.Launcher = os.Getenv("NSBENCH_NSNET"), os.Getenv("NSBENCH_FLOOR"), os.Getenv("NSBENCH_LAUNCHER")
	cfg.Log = os.Stderr

	cfg.PrebuiltNSNet, cfg.NSNetRev = *prebuilt != "", *rev
	res, err := bench.Run(cfg)
	if err != nil {
		return err
	}
	outPath := inRoot(root, *out)
	assetDir := inRoot(root, *assets)
	if err := os.MkdirAll(assetDir, 0o755); err != nil {
		return err
	}
	svgPath := filepath.Join(assetDir, "attach-latency.svg")
	if err := os.WriteFile(svgPath, []byte(bench.Plot(res)), 0o644); err != nil {
		return fmt.Errorf("write plot: %w", err)
	}
	raw, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(assetDir, "results.json"), append(raw, '\n'), 0o644); err != nil {
		return fmt.Errorf("write raw results: %w", err)
	}
	// The routed plot is written only when its section ran, so a run of
	// other sections leaves the last one in place.
	written := []string{svgPath}
	routedPath := filepath.Join(assetDir, "attach-routed-latency.svg")
	if len(res.AttachRouted) > 0 {
		if err := os.WriteFile(routedPath, []byte(bench.PlotRouted(res)), 0o644); err != nil {
			return fmt.Errorf("write routed plot: %w", err)
		}
		written = append(written, routedPath)
	}
	labPath := filepath.Join(assetDir, "lab.svg")
	if len(res.Lab) > 0 {
		if err := os.WriteFile(labPath, []byte(bench.PlotLab(res)), 0o644); err != nil {
			return fmt.Errorf("write lab plot: %w", err)
		}
		written = append(written, labPath)
	}
	rel := func(p string) string {
		r, err := filepath.Rel(filepath.Dir(outPath), p)
		if err != nil {
			return p
		}
		return r
	}
	report := bench.Report(res, bench.PlotPaths{Attach: rel(svgPath), AttachRouted: rel(routedPath), Lab: rel(labPath)})
	if err := os.WriteFile(outPath, []byte(report), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	fmt.Fprintf(os.Stderr, "wrote %s, %s and results.json in %s (run took %s)\n", outPath, strings.Join(written, ", "), assetDir, res.Elapsed.Round(time.Second))
	// A tool failing at some size is a result, reported in the document;
	// it is listed here too, but the run itself succeeded.
	if probs := bench.Problems(res); len(probs) > 0 {
		fmt.Fprintf(os.Stderr, "%d measurement(s) failed (see \"Failures in this run\" in the report):\n  %s\n", len(probs), strings.Join(probs, "\n  "))
	}
	return nil
}

func inRoot(root, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(root, p)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// installPackages apt-gets bench.Packages, as root, in the machine's own
// namespaces (it needs the network): only on -install, never from go test.
func installPackages(missing []string) error {
	fmt.Fprintf(os.Stderr, "installing %s from Debian's packages\n", strings.Join(missing, " "))
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	for _, args := range [][]string{
		{"apt-get", "update", "-q"},
		append([]string{"apt-get", "install", "-y", "-q", "--no-install-recommends"}, bench.Packages...),
	} {
		c := exec.Command(args[0], args[1:]...)
		c.Env, c.Stdout, c.Stderr = env, os.Stderr, os.Stderr
		if err := c.Run(); err != nil {
			return fmt.Errorf("%s: %w", strings.Join(args, " "), err)
		}
	}
	if still := bench.MissingPackages(); len(still) > 0 {
		return fmt.Errorf("after apt-get install, still missing: %s", strings.Join(still, ", "))
	}
	return nil
}
