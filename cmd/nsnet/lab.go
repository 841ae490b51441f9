package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/nsnet/nsnet/internal/engine"
	"github.com/nsnet/nsnet/internal/graph"
	"github.com/nsnet/nsnet/internal/lab"
	"github.com/nsnet/nsnet/internal/topology"
)

// progress shows a bar on a terminal once a run has taken a second, and
// nothing elsewhere.
type progress struct {
	start time.Time
	bar   *progressbar.ProgressBar
	what  string
}

func newProgress(what string) *progress { return &progress{start: time.Now(), what: what} }

func (p *progress) step(done, total int) {
	if p.bar == nil {
		if time.Since(p.start) < time.Second || !term.IsTerminal(int(os.Stderr.Fd())) {
			return
		}
		p.bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(os.Stderr), progressbar.OptionSetDescription(p.what),
			progressbar.OptionShowCount(), progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(50*time.Millisecond))
	}
	p.bar.Set(done)
}

func (p *progress) finish() {
	if p.bar != nil {
		p.bar.Finish()
	}
}

func printPlan(g *globals, w io.Writer, plan lab.Plan, dryRun bool) error {
	if g.output == "json" {
		return g.print(w, plan, nil)
	}
	if dryRun {
		for _, a := range plan.Actions {
			fmt.Fprintln(w, a)
		}
		if len(plan.Actions) == 0 {
			fmt.Fprintf(w, "lab %s: no changes\n", plan.Lab)
		} else {
			fmt.Fprintf(w, "lab %s: would create %d, change %d, remove %d (dry run: nothing changed)\n", plan.Lab, plan.Created, plan.Changed, plan.Removed)
		}
		return nil
	}
	fmt.Fprintln(w, plan.Summary())
	return nil
}

func applyCmd(g *globals) *cobra.Command {
	var file string
	var dryRun bool
	c := &cobra.Command{
		Use:   "apply -f FILE [--dry-run]",
		Short: "Make the machine match a lab file",
		Long: `Make the machine match a lab file: create what is missing, make anew what
differs, remove what the lab owns and the file no longer has. Objects the lab
did not make are never touched. The whole file is checked before the first
change; a second apply of the same file changes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := topology.Read(file)
			if err != nil {
				return err
			}
			return g.withManager(dryRun, func(m *engine.Manager) error {
				p := newProgress("apply " + l.Name)
				plan, err := lab.Apply(m, l, lab.Options{DryRun: dryRun, Progress: p.step})
				p.finish()
				if err != nil {
					return err
				}
				return printPlan(g, cmd.OutOrStdout(), plan, dryRun)
			})
		},
	}
	c.Flags().StringVarP(&file, "file", "f", "", "the lab file (YAML)")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and change nothing")
	c.MarkFlagRequired("file")
	return c
}

// labName is the lab a command names with -f FILE or --lab NAME.
func labName(file, name string) (string, *topology.Lab, error) {
	switch {
	case file != "" && name != "":
		return "", nil, errors.New("give -f FILE or --lab NAME, not both")
	case file != "":
		l, err := topology.Read(file)
		if err != nil {
			return "", nil, err
		}
		return l.Name, l, nil
	case name != "":
		return name, nil, topology.ValidLabName(name)
	}
	return "", nil, errors.New("give -f FILE or --lab NAME")
}

func destroyCmd(g *globals) *cobra.Command {
	var file, name string
	var dryRun bool
	c := &cobra.Command{
		Use:   "destroy -f FILE | --lab NAME",
		Short: "Remove everything a lab owns",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			name, _, err := labName(file, name)
			if err != nil {
				return err
			}
			return g.withManager(dryRun, func(m *engine.Manager) error {
				p := newProgress("destroy " + name)
				plan, err := lab.Destroy(m, name, lab.Options{DryRun: dryRun, Progress: p.step})
				p.finish()
				if err != nil {
					return err
				}
				return printPlan(g, cmd.OutOrStdout(), plan, dryRun)
			})
		},
	}
	c.Flags().StringVarP(&file, "file", "f", "", "the lab file (only its name is read)")
	c.Flags().StringVar(&name, "lab", "", "the lab's name (no file needed)")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be removed and change nothing")
	return c
}

func graphCmd(g *globals) *cobra.Command {
	var file, name, format string
	c := &cobra.Command{
		Use:   "graph [-f FILE | --lab NAME] [--format dot|mermaid|svg|json]",
		Short: "Draw a lab, from its file or from what it made",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			name, l, err := labName(file, name)
			if err != nil {
				return err
			}
			if l != nil {
				return graph.Write(cmd.OutOrStdout(), graph.FromFile(l), format)
			}
			return g.withManager(true, func(m *engine.Manager) error {
				info, err := lab.Inspect(m, name)
				if err != nil {
					return err
				}
				return graph.Write(cmd.OutOrStdout(), graph.FromLab(info), format)
			})
		},
	}
	c.Flags().StringVarP(&file, "file", "f", "", "draw the lab file, offline")
	c.Flags().StringVar(&name, "lab", "", "draw what the lab made")
	c.Flags().StringVar(&format, "format", "dot", "dot, mermaid, svg or json")
	return c
}

func labCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "lab", Short: "Labs made by apply"}
	c.AddCommand(&cobra.Command{
		Use: "ls", Short: "List labs", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withManager(true, func(m *engine.Manager) error {
				labs, err := lab.List(m)
				if err != nil {
					return err
				}
				if labs == nil {
					labs = []lab.Summary{}
				}
				return g.print(cmd.OutOrStdout(), labs, func(w io.Writer) {
					fmt.Fprintln(w, "NAME\tHOSTS\tNETWORKS\tNAMESPACES\tOBJECTS\tAPPLIED\tFILE")
					for _, l := range labs {
						objs := fmt.Sprint(l.Objects)
						if l.Unfinished > 0 {
							objs += fmt.Sprintf(" (%d unfinished)", l.Unfinished)
						}
						fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%s\t%s\t%s\n", l.Name, l.Hosts, l.Networks, l.Namespaces, objs, l.Applied.Local().Format(time.DateTime), l.File)
					}
				})
			})
		},
	}, &cobra.Command{
		Use: "inspect NAME", Short: "Show a lab's hosts, networks, members with addresses, links and ports", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withManager(true, func(m *engine.Manager) error {
				info, err := lab.Inspect(m, args[0])
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), info, func(w io.Writer) { printLab(w, info) })
			})
		},
	})
	return c
}

func printLab(w io.Writer, info lab.Info) {
	fmt.Fprintf(w, "lab %s\t(from %s, applied %s)\n", info.Name, info.File, info.Applied.Local().Format(time.DateTime))
	for _, h := range info.Hosts {
		under := ""
		if h.Underlay.IsValid() {
			under = h.Underlay.String()
		}
		fmt.Fprintf(w, "host %s\tunderlay %s\tforward %s\n", h.Name, dash(under), dash(h.Forward))
	}
	for _, n := range info.Networks {
		fmt.Fprintf(w, "network %s\t%s %s\thost %s\n", n.Name, n.Driver, joinPrefixes(n.Subnets), dash(n.Host))
		for _, mb := range n.Members {
			fmt.Fprintf(w, "  %s\t%s %s%s\n", mb.Namespace, mb.IfName, joinPrefixes(mb.Addrs), portsSuffix(mb.Ports))
		}
		for _, t := range n.Taps {
			fmt.Fprintf(w, "  tap %s\t%s\n", t.Name, joinPrefixes(t.Addrs))
		}
	}
	for _, l := range info.Links {
		fmt.Fprintf(w, "link %s:%s %s\t%s:%s %s\n", l.NS1, l.If1, joinPrefixes(l.Addrs1), l.NS2, l.If2, joinPrefixes(l.Addrs2))
	}
	for _, r := range info.Routes {
		fmt.Fprintf(w, "route %s\t%s via %s\n", r.Host, r.Dst, r.Via)
	}
	for _, u := range info.Unfinished {
		fmt.Fprintf(w, "unfinished %s\t(the next apply or destroy deals with it)\n", u)
	}
}
