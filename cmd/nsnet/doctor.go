package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/nsnet/nsnet/internal/doctor"
	"github.com/nsnet/nsnet/internal/engine"
)

// exitStatus, when not zero, is the status nsnet exits with after a
// command that printed its own verdict (doctor: 1 when the path fails).
var exitStatus int

func doctorCmd(g *globals) *cobra.Command {
	var port string
	var live bool
	c := &cobra.Command{
		Use:   "doctor FROM TO [--port N[/tcp|/udp]] [--live]",
		Short: "Say why two endpoints cannot talk, hop by hop",
		Long: `Walk a packet from FROM to TO and back through every namespace it crosses,
reading the kernel's state (addresses, routes, links, neighbours, forwarding,
other tables' forward chains, masquerade, listening sockets) and stop at the
first step that fails, with its cause, the kernel object that shows it, and
the fix. FROM and TO are a namespace, "host", or an address; TO may also be a
name, resolved as FROM's nsnet resolver would. It changes nothing, unless
--live is given: then it also sends a real probe from FROM (an ICMP echo, or
with --port a TCP connect or a UDP datagram) and follows it with the kernel's
nftables trace in every namespace of the path (a table nsnet-doctor-PID in
each, removed afterwards), reporting where the probe was seen, the rules that
decided, and where it died.
Exit status: 0 when the path works both ways, 1 when it does not, 2 for bad
usage.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				exitStatus = 2
				return fmt.Errorf("nsnet doctor: want FROM and TO, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var rep doctor.Report
			err := g.withManager(true, func(m *engine.Manager) error {
				nets, err := m.Networks()
				if err != nil {
					return err
				}
				in := doctor.Input{From: args[0], To: args[1], Port: port, HostPath: m.HostNetns(), Live: live}
				for _, n := range nets {
					for _, mb := range n.Members {
						dm := doctor.Member{Network: n.Name, Namespace: mb.Namespace, Aliases: mb.Aliases, Isolated: !n.NoIsolate, NAT: n.NAT, Host: n.Host,
							Closed: n.NAT && n.Driver == "bridge" && !n.Internal}
						for _, a := range mb.Addrs {
							dm.Addrs = append(dm.Addrs, a.Addr())
						}
						in.Members = append(in.Members, dm)
					}
				}
				in.PublishedPort = func(proto string, port uint16) (doctor.Published, bool) {
					for _, n := range nets {
						for _, mb := range n.Members {
							for _, p := range mb.Ports {
								if p.Proto == proto && p.HostPort <= port && int(port) < int(p.HostPort)+p.Count() {
									pub := doctor.Published{Member: mb.Namespace, Port: p.Port + (port - p.HostPort)}
									for _, a := range mb.Addrs {
										pub.Addrs = append(pub.Addrs, a.Addr())
									}
									return pub, true
								}
							}
						}
					}
					return doctor.Published{}, false
				}
				rep, err = doctor.Diagnose(in)
				return err
			})
			if errors.Is(err, doctor.ErrUsage) {
				exitStatus = 2
			}
			if err != nil {
				return err
			}
			if !rep.OK {
				exitStatus = 1
			}
			return g.print(cmd.OutOrStdout(), rep, func(w io.Writer) { printReport(w, rep) })
		},
	}
	c.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		exitStatus = 2
		return fmt.Errorf("%s: %w", c.CommandPath(), err)
	})
	c.Flags().BoolVar(&live, "live", false, "also send a real probe and follow it with the kernel's nftables trace (adds trace tables for the probe's time)")
	c.Flags().StringVar(&port, "port", "", "also check that something listens on this port at TO (N, N/tcp, N/udp)")
	return c
}

func printReport(w io.Writer, r doctor.Report) {
	fmt.Fprintf(w, "%s -> %s", r.From, r.To)
	if r.Dst != "" && r.Dst != r.To {
		fmt.Fprintf(w, " (%s)", r.Dst)
	}
	if r.Port != "" {
		fmt.Fprintf(w, " port %s", r.Port)
	}
	fmt.Fprintln(w)
	section := func(title string, steps []doctor.Step) {
		if len(steps) == 0 {
			return
		}
		fmt.Fprintln(w, title)
		for _, s := range steps {
			mark := "ok  "
			if !s.OK {
				mark = "FAIL"
			}
			fmt.Fprintf(w, "  %2d %s [%s] %s\n", s.N, mark, s.Where, s.What)
			if s.Cause != "" {
				fmt.Fprintf(w, "       cause:    %s\n", s.Cause)
			}
			if s.Evidence != "" {
				fmt.Fprintf(w, "       evidence: %s\n", s.Evidence)
			}
			if s.Fix != "" {
				fmt.Fprintf(w, "       fix:      %s\n", s.Fix)
			}
		}
	}
	section("forward:", r.Forward)
	section("reply:", r.Reply)
	if lv := r.Live; lv != nil {
		fmt.Fprintf(w, "live: %s: %s\n", lv.Probe, lv.Outcome)
		section("live trace:", lv.Steps)
		for _, n := range lv.Notes {
			fmt.Fprintf(w, "  note: %s\n", n)
		}
	}
	if r.OK {
		fmt.Fprintln(w, "verdict: the path works both ways")
	} else {
		fmt.Fprintf(w, "verdict: broken: %s\n", r.Cause)
	}
}
