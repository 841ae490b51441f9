package main

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nsnet/nsnet/internal/bgp"
	"github.com/nsnet/nsnet/internal/engine"
	"github.com/nsnet/nsnet/internal/store"
)

// speakerWait bounds how long a bgp command waits for the host's speaker
// to take its change (or, for `bgp off`, to withdraw and exit).
const speakerWait = 10 * time.Second

func parseASN(what, s string) (uint32, error) {
	n, err := strconv.ParseUint(strings.TrimPrefix(strings.ToUpper(s), "AS"), 10, 64)
	if err != nil || n == 0 || n > 4294967295 {
		return 0, fmt.Errorf("%s: asn %q: must be a number from 1 to 4294967295", what, s)
	}
	return uint32(n), nil
}

func parseAddr(what, flag, s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return a, fmt.Errorf("%s: %s %q: not an IP address", what, flag, s)
	}
	return a.Unmap(), nil
}

// changeBGP runs a change and waits for the host's speaker to apply it.
func (g *globals) changeBGP(fn func(*engine.Manager) error) error {
	// Without the speaker's program the change could never take effect:
	// say so before making it.
	exe, err := os.Executable()
	if err == nil {
		_, err = bgp.Exe(exe)
	}
	if err != nil {
		return err
	}
	var gen uint64
	var host string
	err = g.withManager(false, func(m *engine.Manager) error {
		if err := fn(m); err != nil {
			return err
		}
		host = m.HostNetns()
		var err error
		gen, err = m.Generation()
		return err
	})
	if err != nil {
		return err
	}
	cfg, err := g.config()
	if err != nil {
		return err
	}
	if _, err := bgp.WaitApplied(cfg.StateDir, host, gen, speakerWait); err != nil {
		return fmt.Errorf("done, but %w", err)
	}
	return nil
}

func bgpCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "bgp", Short: "Announce routed networks to BGP peers and install what they announce",
		Long: `Make the host (--host-netns, or the one nsnet runs in) a BGP speaker: it
announces its routed networks' members (or their subnets, with --aggregate)
and installs the routes its peers announce (route protocol 111), never one
that covers the host's own networks or addresses. The speaker runs beside
the agent, inside the host's namespace.`}

	var asn, routerID, listen string
	var aggregate, bridge bool
	var hold uint32
	set := &cobra.Command{
		Use: "set --asn N [--router-id IP] [--listen IP] [--aggregate]", Short: "Make the host a BGP speaker, or change its settings", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("asn") {
				return fmt.Errorf("bgp set: --asn is required")
			}
			n, err := parseASN("bgp set", asn)
			if err != nil {
				return err
			}
			rid, err := parseAddr("bgp set", "--router-id", routerID)
			if err != nil {
				return err
			}
			if rid.IsValid() && !rid.Is4() {
				return fmt.Errorf("bgp set: --router-id %s: must be an IPv4 address", rid)
			}
			la, err := parseAddr("bgp set", "--listen", listen)
			if err != nil {
				return err
			}
			return g.changeBGP(func(m *engine.Manager) error {
				c := store.BGP{ASN: n, RouterID: rid, Listen: la, Aggregate: aggregate, Bridge: bridge, HoldTime: hold}
				// A second bgp set changes only what it names.
				old, ok, err := m.BGP(m.HostNetns())
				if err != nil {
					return err
				}
				if ok {
					fl := cmd.Flags()
					if !fl.Changed("router-id") {
						c.RouterID = old.RouterID
					}
					if !fl.Changed("listen") {
						c.Listen = old.Listen
					}
					if !fl.Changed("aggregate") {
						c.Aggregate = old.Aggregate
					}
					if !fl.Changed("bridge") {
						c.Bridge = old.Bridge
					}
					if !fl.Changed("hold-time") {
						c.HoldTime = old.HoldTime
					}
				}
				_, err = m.SetBGP(m.HostNetns(), c)
				return err
			})
		},
	}
	set.Flags().StringVar(&asn, "asn", "", "the host's autonomous system number")
	set.Flags().StringVar(&routerID, "router-id", "", "router id (an IPv4 address; default: the host's first)")
	set.Flags().StringVar(&listen, "listen", "", "accept sessions on this address only (default: every address, port 179)")
	set.Flags().BoolVar(&aggregate, "aggregate", false, "announce each routed network's subnet, with a blackhole route for it, instead of every member")
	set.Flags().BoolVar(&bridge, "bridge", false, "also announce bridge networks' subnets (not internal ones)")
	set.Flags().Uint32Var(&hold, "hold-time", 0, "hold time offered to peers, in seconds (default 90)")

	var peerASN, password string
	var passive bool
	peerAdd := &cobra.Command{
		Use: "add ADDR --asn N [--passive] [--password SECRET]", Short: "Add a BGP neighbour", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			what := "bgp peer " + args[0]
			a, err := parseAddr(what, "address", args[0])
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("asn") {
				return fmt.Errorf("%s: --asn is required", what)
			}
			n, err := parseASN(what, peerASN)
			if err != nil {
				return err
			}
			return g.changeBGP(func(m *engine.Manager) error {
				return m.BGPPeerAdd(m.HostNetns(), store.BGPPeer{Address: a, ASN: n, Passive: passive, Password: password})
			})
		},
	}
	peerAdd.Flags().StringVar(&peerASN, "asn", "", "the peer's autonomous system number (the host's own: iBGP)")
	peerAdd.Flags().BoolVar(&passive, "passive", false, "wait for the peer to connect")
	peerAdd.Flags().StringVar(&password, "password", "", "TCP MD5 password (RFC 2385)")
	peerRm := &cobra.Command{
		Use: "rm ADDR", Short: "Remove a BGP neighbour (its routes leave the kernel)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := parseAddr("bgp peer "+args[0], "address", args[0])
			if err != nil {
				return err
			}
			return g.changeBGP(func(m *engine.Manager) error { return m.BGPPeerRemove(m.HostNetns(), a) })
		},
	}
	peer := &cobra.Command{Use: "peer", Short: "BGP neighbours"}
	peer.AddCommand(peerAdd, peerRm)

	show := &cobra.Command{
		Use: "show", Short: "Sessions and their state, routes announced and learned (every host's; with --host-netns, that host's)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var cfgs []store.BGP
			var stateDir, host string
			err := g.withManager(true, func(m *engine.Manager) (err error) {
				stateDir, host = m.StateDir(), m.HostNetns()
				cfgs, err = m.BGPs()
				return err
			})
			if err != nil {
				return err
			}
			// --host-netns naming a speaker's host shows that one; else
			// every speaker of the state directory (a lab's hosts, say).
			if i := slices.IndexFunc(cfgs, func(c store.BGP) bool { return c.HostNetns == host }); g.hostNetns != "" && i >= 0 {
				cfgs = cfgs[i : i+1]
			}
			out := []bgpView{}
			for _, c := range cfgs {
				v := bgpView{Config: c, Host: bgp.Name(c.HostNetns)}
				v.Config.Peers = nil
				for _, p := range c.Peers {
					p.Password = strings.Repeat("*", min(len(p.Password), 1)*8)
					v.Config.Peers = append(v.Config.Peers, p)
				}
				s, ok, err := bgp.ReadStatus(stateDir, c.HostNetns)
				if err != nil {
					return err
				}
				if ok && bgp.Running(stateDir, c.HostNetns) {
					s.Host = v.Host
					v.Status = &s
				}
				out = append(out, v)
			}
			return g.print(cmd.OutOrStdout(), out, func(w io.Writer) { printBGP(w, out) })
		},
	}

	off := &cobra.Command{
		Use: "off", Short: "Withdraw everything and remove every learned route; the host is no BGP speaker", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var host string
			var was bool
			err := g.withManager(false, func(m *engine.Manager) (err error) {
				host = m.HostNetns()
				was, err = m.BGPOff(host, "")
				return err
			})
			if err != nil {
				return err
			}
			cfg, err := g.config()
			if err != nil {
				return err
			}
			if err := bgp.WaitStopped(cfg.StateDir, host, speakerWait); err != nil {
				return err
			}
			if !was {
				fmt.Fprintf(cmd.ErrOrStderr(), "bgp: host %s had no BGP\n", bgp.Name(host))
			}
			return nil
		},
	}
	c.AddCommand(set, peer, show, off)
	return c
}

type bgpView struct {
	Host   string      `json:"host"`
	Config store.BGP   `json:"config"`
	Status *bgp.Status `json:"status,omitempty"`
}

func printBGP(w io.Writer, vs []bgpView) {
	if len(vs) == 0 {
		fmt.Fprintln(w, "no host has BGP (nsnet bgp set --asn N)")
		return
	}
	for i, v := range vs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		c := v.Config
		mode := "members"
		if c.Aggregate {
			mode = "subnets (aggregate)"
		}
		fmt.Fprintf(w, "host %s\tAS %d\trouter id %s\tannounces %s\n", v.Host, c.ASN, c.RouterID, mode)
		s := v.Status
		if s == nil {
			fmt.Fprintln(w, "  speaker not running (the next nsnet command starts it)")
			continue
		}
		if s.Error != "" {
			fmt.Fprintf(w, "  error: %s\n", s.Error)
		}
		fmt.Fprintln(w, "  PEER\tASN\tSTATE\tSINCE\tRECEIVED")
		for _, p := range s.Peers {
			since := "-"
			if !p.Since.IsZero() {
				since = time.Since(p.Since).Truncate(time.Second).String()
			}
			fmt.Fprintf(w, "  %s\t%d\t%s\t%s\t%d\n", p.Address, p.ASN, p.State, since, p.Received)
		}
		fmt.Fprintf(w, "  announced (%d):", len(s.Announced))
		for _, p := range s.Announced {
			fmt.Fprintf(w, " %s", p)
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "  learned (%d)\n", len(s.Learned))
		for _, l := range s.Learned {
			state := "installed"
			if l.Error != "" {
				state = "not installed: " + l.Error
			}
			fmt.Fprintf(w, "    %s via %s\tfrom %s\t%s\n", l.Prefix, l.NextHop, l.Peer, state)
		}
		for _, ig := range s.Ignored {
			fmt.Fprintf(w, "    %s\tfrom %s\tignored: %s\n", ig.Prefix, ig.Peer, ig.Reason)
		}
	}
}
