// Command nsnet wires network namespaces together: namespaces, bridge
// networks with a gateway and NAT, and the state that keeps them consistent.
// This file holds only flags and output; the work is in package engine.
package main

import (
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/nsnet/nsnet/internal/agent"
	"github.com/nsnet/nsnet/internal/cliout"
	"github.com/nsnet/nsnet/internal/engine"
	"github.com/nsnet/nsnet/internal/lab"
	"github.com/nsnet/nsnet/internal/netns"
	"github.com/nsnet/nsnet/internal/store"
)

type globals struct {
	stateDir  string
	hostNetns string
	output    string
	// cluster is etcd's URL (--cluster, NSNET_CLUSTER); nsnet hands
	// cluster-scoped commands, with it, to nsnet-cluster.
	cluster string
}

func main() {
	if os.Getenv("CNI_COMMAND") != "" {
		cniMain()
		return
	}
	g := &globals{}
	root := &cobra.Command{
		Use:           "nsnet",
		Short:         "Wire Linux network namespaces together",
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if g.output != "text" && g.output != "json" {
				return fmt.Errorf("output format %q: use text or json", g.output)
			}
			if g.stateDir == "" {
				return errors.New("--state-dir is empty: give a directory (the default is " + engine.DefaultStateDir + ")")
			}
			return nil
		},
	}
	def := os.Getenv("NSNET_STATE_DIR")
	if def == "" {
		def = engine.DefaultStateDir
	}
	root.PersistentFlags().StringVar(&g.stateDir, "state-dir", def, "state directory (env NSNET_STATE_DIR)")
	root.PersistentFlags().StringVar(&g.hostNetns, "host-netns", "", "namespace (name or path) to treat as the host; default: the one nsnet runs in")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	root.PersistentFlags().StringVar(&g.cluster, "cluster", os.Getenv("NSNET_CLUSTER"), "etcd of the cluster, for cluster networks and hosts: etcd://HOST:PORT[,HOST:PORT...] (env NSNET_CLUSTER)")
	root.PersistentFlags().String("cluster-prefix", "/nsnet", "prefix of nsnet's keys in etcd")
	root.PersistentFlags().String("cluster-cert", "", "TLS client certificate for etcd")
	root.PersistentFlags().String("cluster-key", "", "TLS client key for etcd")
	root.PersistentFlags().String("cluster-ca", "", "CA that signed etcd's certificate")
	root.AddCommand(nsCmd(g), netCmd(g), linkCmd(g), tapCmd(g), execCmd(g), gcCmd(g), restoreCmd(g), agentCmd(g),
		applyCmd(g), destroyCmd(g), graphCmd(g), labCmd(g), doctorCmd(g), bgpCmd(g), hostCmd())
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return fmt.Errorf("%s: %w", c.CommandPath(), err) })
	store.Waiting = func(dir string) {
		fmt.Fprintf(os.Stderr, "nsnet: waiting for another nsnet command to finish with %s\n", dir)
	}
	stopProfile := startProfile()
	err := root.Execute()
	stopProfile()
	if err != nil {
		msg := cliout.OneLine(err.Error())
		if errors.Is(err, os.ErrPermission) && os.Geteuid() != 0 {
			msg += " (nsnet changes network namespaces: run it as root, or with CAP_NET_ADMIN and CAP_SYS_ADMIN)"
		}
		cliout.Error(os.Stderr, g.output == "json", msg)
		os.Exit(max(exitStatus, 1))
	}
	if exitStatus != 0 {
		os.Exit(exitStatus)
	}
	if agentFailed {
		os.Exit(3)
	}
}

// startProfile writes a CPU profile of the command to the file
// NSNET_CPUPROFILE names, for finding where a command's time goes
// (docs/performance.md).
func startProfile() (stop func()) {
	p := os.Getenv("NSNET_CPUPROFILE")
	if p == "" {
		return func() {}
	}
	os.Unsetenv("NSNET_CPUPROFILE") // not for the agent it may start
	f, err := os.Create(p)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "nsnet: warning: NSNET_CPUPROFILE: "+err.Error())
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

func (g *globals) config() (engine.Config, error) {
	cfg := engine.Config{StateDir: g.stateDir}
	if g.hostNetns != "" {
		p, err := netns.Resolve(g.hostNetns)
		if err != nil {
			return cfg, fmt.Errorf("host %w", err)
		}
		cfg.HostNetns = p
	}
	return cfg, nil
}

// ensureAgent restarts a DNS agent that died, for commands that do not
// open the store otherwise (exec): what runs in a member resolves names
// at once. A store that cannot be read is left to the commands that can
// say why.
func (g *globals) ensureAgent() {
	cfg, err := g.config()
	if err != nil {
		return
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, store.FileName)); err != nil {
		return // no state: nothing to serve
	}
	m, err := engine.OpenReadOnly(cfg)
	if err != nil {
		return
	}
	need, err := m.AgentNeeded()
	gen, gerr := m.Generation()
	m.Close()
	if err != nil || gerr != nil || !need {
		return
	}
	exe, err := os.Executable()
	if err == nil {
		err = agent.Ensure(cfg.StateDir, exe)
	}
	if err == nil {
		err = agent.Wait(cfg.StateDir, gen, true, agentWait)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "nsnet: warning: DNS agent: "+cliout.OneLine(err.Error()))
	}
}

// agentFailed: the command did its work, but the DNS agent could not serve
// it; nsnet exits with status 3.
var agentFailed bool

// agentWait bounds how long a command waits for the DNS agent to serve
// its change.
const agentWait = 3 * time.Second

// withManager opens the store (exclusively unless readOnly) around fn.
func (g *globals) withManager(readOnly bool, fn func(*engine.Manager) error) error {
	cfg, err := g.config()
	if err != nil {
		return err
	}
	open := engine.Open
	if readOnly {
		open = engine.OpenReadOnly
	}
	m, err := open(cfg)
	if err != nil {
		return err
	}
	if rerr := m.RecoverErr(); rerr != nil {
		fmt.Fprintln(os.Stderr, "nsnet: warning: "+cliout.OneLine(rerr.Error()))
	}
	ferr := fn(m)
	need, nerr := m.AgentNeeded()
	gen, gerr := m.Generation()
	nerr = errors.Join(nerr, gerr)
	if err := m.Close(); err != nil && ferr == nil {
		ferr = fmt.Errorf("close state store: %w", err)
	}
	// Any command restarts a DNS agent that died. One that changed the
	// state returns once the agent serves it: a member that connect
	// returned for resolves at once. An agent no longer needed closes its
	// sockets before the command returns, so that the next one finds the
	// ports free. The change is made and committed by then: what the
	// agent cannot serve (port 53 taken, say) is a warning line that
	// names it, with exit status 3, not an error that would claim the
	// change was not made.
	if ferr == nil && nerr == nil && (need || !readOnly) {
		var err error
		if need {
			var exe string
			if exe, err = os.Executable(); err == nil {
				err = agent.Ensure(cfg.StateDir, exe)
			}
		}
		if err == nil && !readOnly && (need || agent.Running(cfg.StateDir)) {
			err = agent.Wait(cfg.StateDir, gen, need, agentWait)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "nsnet: warning: done, but DNS agent: "+cliout.OneLine(err.Error()))
			if !readOnly {
				agentFailed = true
			}
		}
	}
	return ferr
}

func agentCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use: "agent", Short: "Serve DNS for network members (started by nsnet itself)", Hidden: true, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return agent.Run(g.stateDir, agent.Options{OnRuleset: func(host string) { recheckForward(g.stateDir, host) }})
		},
	}
}

// recheckForward is the agent's answer to a change of a host's ruleset:
// the networks' accepts in the host's forward chains are put right, as gc
// would, and the log says what changed.
func recheckForward(stateDir, host string) {
	m, err := engine.Open(engine.Config{StateDir: stateDir, HostNetns: host})
	if err != nil {
		log.Printf("agent: recheck forward accepts of host %q: %v", host, err)
		return
	}
	defer m.Close()
	done, err := m.RecheckForward(host)
	for _, d := range done {
		log.Printf("agent: %s", d)
	}
	if err != nil {
		log.Printf("agent: recheck forward accepts of host %q: %v", host, err)
	}
}

func (g *globals) print(w io.Writer, v any, text func(io.Writer)) error {
	return cliout.Print(w, g.output == "json", v, text)
}

func nsCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "ns", Short: "Named network namespaces"}
	var share string
	create := &cobra.Command{
		Use: "create NAME [--share OTHER]", Short: "Create a namespace with only lo, up", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withManager(false, func(m *engine.Manager) error { return m.CreateNamespace(args[0], share) })
		},
	}
	create.Flags().StringVar(&share, "share", "", "give NAME the very same network namespace as OTHER (Docker's container:OTHER)")
	c.AddCommand(create, &cobra.Command{
		Use: "rm NAME", Short: "Disconnect a namespace from every network and delete it", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withManager(false, func(m *engine.Manager) error { return m.RemoveNamespace(args[0]) })
		},
	}, &cobra.Command{
		Use: "ls", Short: "List named namespaces", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withManager(true, func(m *engine.Manager) error {
				list, err := m.Namespaces()
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), list, func(w io.Writer) {
					fmt.Fprintln(w, "NAME\tMANAGED\tNETWORKS")
					for _, n := range list {
						fmt.Fprintf(w, "%s\t%v\t%s\n", n.Name, n.Managed, dash(strings.Join(n.Networks, ",")))
					}
				})
			})
		},
	}, &cobra.Command{
		Use: "inspect NAME", Short: "Show a namespace's interfaces, addresses, routes and networks", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withManager(true, func(m *engine.Manager) error {
				info, err := m.Namespace(args[0])
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), info, func(w io.Writer) {
					fmt.Fprintf(w, "namespace %s (managed: %v)\n\nINTERFACE\tTYPE\tSTATE\tMTU\tADDRESSES\n", info.Name, info.Managed)
					for _, i := range info.Interfaces {
						fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\n", i.Name, i.Type, i.State, i.MTU, dash(joinPrefixes(i.Addrs)))
					}
					fmt.Fprintln(w, "\nROUTE\tVIA\tDEV")
					for _, r := range info.Routes {
						fmt.Fprintf(w, "%s\t%s\t%s\n", r.Dst, dash(r.Via), r.Dev)
					}
					fmt.Fprintln(w, "\nNETWORK\tINTERFACE\tADDRESSES\tHOST END\tPORTS")
					for _, a := range info.Networks {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", a.Network, a.IfName, dash(joinPrefixes(a.Addrs)), dash(a.HostIf), dash(joinPorts(a.Ports)))
					}
					if len(info.Links) > 0 {
						fmt.Fprintln(w, "\nLINK\tINTERFACES\tADDRESSES")
						for _, l := range info.Links {
							fmt.Fprintf(w, "%s-%s\t%s,%s\t%s\n", l.NS1, l.NS2, l.If1, l.If2, dash(joinPrefixes(append(append([]netip.Prefix{}, l.Addrs1...), l.Addrs2...))))
						}
					}
				})
			})
		},
	})
	return c
}

func netCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "net", Short: "Networks"}
	var spec engine.NetworkSpec
	var subnets, gateways []string
	var scope string
	var isolate, dns *bool
	var upstreams, ipRanges, auxAddrs []string
	// Each driver's own flags (--bridge-name, --parent), by name.
	driverFlags := map[string]*string{}
	create := &cobra.Command{
		Use: "create NAME --subnet CIDR", Short: "Create a network", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case scope == "cluster":
				if g.cluster == "" {
					return fmt.Errorf("network %q: --scope cluster needs the cluster's etcd: give --cluster etcd://HOST:PORT (or NSNET_CLUSTER)", args[0])
				}
				// A cluster network is routed, over one IPv4 subnet; the
				// local networks' other settings do not apply.
				for _, f := range []string{"driver", "gateway", "nat", "no-nat", "internal", "isolate", "dns", "dns-upstream",
					"no-host-firewall", "ip-range", "aux-address", "bridge-name", "parent"} {
					if cmd.Flags().Changed(f) {
						return fmt.Errorf("network %q: --%s is not for --scope cluster networks (routed, one IPv4 subnet; docs/cluster.md)", args[0], f)
					}
				}
				return forwardCluster()
			case scope != "" && scope != "local":
				return fmt.Errorf("network %q: --scope %q: want local or cluster", args[0], scope)
			case cmd.Flags().Changed("backend") || cmd.Flags().Changed("block-size"):
				return fmt.Errorf("network %q: --backend and --block-size are for --scope cluster", args[0])
			}
			spec.Name = args[0]
			spec.NoIsolate = !*isolate
			spec.Options = map[string]string{}
			for k, v := range driverFlags {
				if cmd.Flags().Changed(k) {
					spec.Options[k] = *v
				}
			}
			if cmd.Flags().Changed("dns") {
				spec.DNS = dns
			}
			for _, u := range upstreams {
				a, err := netip.ParseAddr(u)
				if err != nil {
					return fmt.Errorf("network %q: --dns-upstream %q is not an IP address", spec.Name, u)
				}
				spec.DNSUpstreams = append(spec.DNSUpstreams, a)
			}
			for _, s := range subnets {
				p, err := netip.ParsePrefix(s)
				if err != nil {
					return fmt.Errorf("network %q: invalid subnet %q (want CIDR such as 10.1.0.0/24)", spec.Name, s)
				}
				spec.Subnets = append(spec.Subnets, p)
			}
			for _, s := range gateways {
				a, err := netip.ParseAddr(s)
				if err != nil {
					return fmt.Errorf("network %q: invalid gateway %q", spec.Name, s)
				}
				spec.Gateways = append(spec.Gateways, a)
			}
			for _, s := range ipRanges {
				p, err := netip.ParsePrefix(s)
				if err != nil {
					return fmt.Errorf("network %q: invalid --ip-range %q (want CIDR such as 10.1.0.128/25)", spec.Name, s)
				}
				spec.IPRanges = append(spec.IPRanges, p)
			}
			for _, s := range auxAddrs {
				name, ip, ok := strings.Cut(s, "=")
				a, err := netip.ParseAddr(ip)
				if !ok || err != nil {
					return fmt.Errorf("network %q: invalid --aux-address %q (want NAME=IP such as router=10.1.0.254)", spec.Name, s)
				}
				if spec.AuxAddresses == nil {
					spec.AuxAddresses = map[string]netip.Addr{}
				}
				if _, dup := spec.AuxAddresses[name]; dup {
					return fmt.Errorf("network %q: --aux-address %q: the name %q is given twice", spec.Name, s, name)
				}
				spec.AuxAddresses[name] = a
			}
			return g.withManager(false, func(m *engine.Manager) error {
				n, err := m.CreateNetwork(spec)
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), n, func(w io.Writer) {
					fmt.Fprintf(w, "network %s: %s, subnets %s, gateways %s\n", n.Name, n.Describe(), joinPrefixes(n.Subnets), joinAddrs(n.Gateways))
				})
			})
		},
	}
	f := create.Flags()
	f.StringArrayVar(&subnets, "subnet", nil, "subnet in CIDR form; repeat once for the other IP family")
	f.StringVar(&scope, "scope", "local", "local (this host), or cluster (every host joined to --cluster; docs/cluster.md)")
	f.String("backend", "", "--scope cluster: how hosts reach each other's members: host-gw, vxlan or bgp")
	f.Int("block-size", 26, "--scope cluster: prefix length of the address blocks each host claims")
	f.StringArrayVar(&gateways, "gateway", nil, "gateway address (default: the subnet's first usable address)")
	f.StringVar(&spec.Driver, "driver", engine.DefaultDriver, "network driver: "+strings.Join(engine.DriverNames(), ", "))
	for _, o := range engine.DriverOptions() {
		if driverFlags[o.Name] == nil {
			driverFlags[o.Name] = f.String(o.Name, "", o.Usage)
		}
	}
	f.BoolVar(&spec.NoNAT, "no-nat", false, "do not masquerade traffic leaving the network")
	f.BoolVar(&spec.NAT, "nat", false, "masquerade traffic leaving a routed network (bridge networks do by default)")
	f.BoolVar(&spec.NoHostFirewall, "no-host-firewall", false, "never add accept rules to other tables' forward chains that drop")
	dns = f.Bool("dns", true, "run a resolver for members (macvlan networks have none)")
	f.StringArrayVar(&upstreams, "dns-upstream", nil, "upstream DNS server for other names (default: the host's resolv.conf)")
	isolate = f.Bool("isolate", true, "keep members from other networks' members (published ports stay reachable)")
	f.BoolVar(&spec.Internal, "internal", false, "no default route for members and no way out")
	f.IntVar(&spec.MTU, "mtu", 0, "MTU of the bridge and members' interfaces")
	f.StringArrayVar(&ipRanges, "ip-range", nil, "hand out members' addresses from this CIDR inside the subnet only (one per family)")
	f.StringArrayVar(&auxAddrs, "aux-address", nil, "NAME=IP: keep an address of the segment from members (a router, the host's own); repeatable")

	var force bool
	var rmScope string
	rm := &cobra.Command{
		Use: "rm NAME [--scope cluster]", Short: "Remove a network (--scope cluster: from every host, and from etcd)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch rmScope {
			case "cluster":
				if g.cluster == "" {
					return fmt.Errorf("network %q: --scope cluster needs the cluster's etcd: give --cluster etcd://HOST:PORT (or NSNET_CLUSTER)", args[0])
				}
				return forwardCluster()
			case "", "local":
			default:
				return fmt.Errorf("network %q: --scope %q: want local or cluster", args[0], rmScope)
			}
			return g.withManager(false, func(m *engine.Manager) error { return m.RemoveNetwork(args[0], force) })
		},
	}
	rm.Flags().BoolVar(&force, "force", false, "disconnect members first")
	rm.Flags().StringVar(&rmScope, "scope", "local", "local (this host's part only), or cluster (the network itself, from etcd)")

	var cs engine.ConnectSpec
	var ip4, ip6 string
	var publish []string
	connect := &cobra.Command{
		Use: "connect NET NS", Short: "Connect a namespace to a network", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cs.Network, cs.Namespace = args[0], args[1]
			var err error
			if cs.IPv4, err = parseFamilyAddr(ip4, true); err != nil {
				return fmt.Errorf("connect %s to %s: --ip %w", cs.Namespace, cs.Network, err)
			}
			if cs.IPv6, err = parseFamilyAddr(ip6, false); err != nil {
				return fmt.Errorf("connect %s to %s: --ip6 %w", cs.Namespace, cs.Network, err)
			}
			for _, p := range publish {
				pm, err := engine.ParsePort(p)
				if err != nil {
					return fmt.Errorf("connect %s to %s: %w", cs.Namespace, cs.Network, err)
				}
				cs.Ports = append(cs.Ports, pm)
			}
			err = g.withManager(false, func(m *engine.Manager) error {
				a, err := m.Connect(cs)
				if errors.Is(err, engine.ErrNoNetwork) {
					// Perhaps a cluster network this host has no part of yet.
					if _, joined, jerr := m.Joined(); jerr == nil && joined {
						return errForward
					}
				}
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), a, func(w io.Writer) {
					fmt.Fprintf(w, "connected %s to %s: %s %s (host end %s)%s\n", a.Namespace, a.Network, a.IfName, joinPrefixes(a.Addrs), dash(a.HostIf), portsSuffix(a.Ports))
				})
			})
			if errors.Is(err, errForward) || errors.Is(err, engine.ErrClusterNetwork) {
				return forwardCluster()
			}
			return err
		},
	}
	connect.Flags().StringVar(&ip4, "ip", "", "IPv4 address for the member")
	connect.Flags().StringVar(&ip6, "ip6", "", "IPv6 address for the member")
	connect.Flags().StringVar(&cs.IfName, "ifname", "", "interface name inside the namespace (default: first free ethN)")
	connect.Flags().BoolVar(&cs.DefaultRoute, "default-route", false, "move the namespace's default route to this network")
	connect.Flags().StringArrayVar(&cs.Aliases, "alias", nil, "another name the network's resolver answers for (repeatable)")
	connect.Flags().StringArrayVarP(&publish, "publish", "p", nil, "publish [HOSTIP:]HOSTPORT[-END]:PORT[-END][/tcp|/udp|/sctp] (repeatable)")
	connect.Flags().BoolVar(&cs.Force, "force", false, "publish ports even where a service of the host listens")

	c.AddCommand(create, rm, connect, &cobra.Command{
		Use: "disconnect NET NS", Short: "Disconnect a namespace from a network", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withManager(false, func(m *engine.Manager) error { return m.Disconnect(args[0], args[1]) })
		},
	}, &cobra.Command{
		Use: "ls", Short: "List networks", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withManager(true, func(m *engine.Manager) error {
				nets, err := m.Networks()
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), nets, func(w io.Writer) {
					fmt.Fprintln(w, "NAME\tDRIVER\tSUBNETS\tGATEWAYS\tBRIDGE\tNAT\tINTERNAL\tMEMBERS")
					for _, n := range nets {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%v\t%v\t%d\n", n.Name, n.Driver, joinPrefixes(n.Subnets), joinAddrs(n.Gateways), n.Bridge, n.NAT, n.Internal, len(n.Members))
					}
				})
			})
		},
	}, &cobra.Command{
		Use: "inspect NAME", Short: "Show a network and its members", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withManager(true, func(m *engine.Manager) error {
				n, err := m.Network(args[0])
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), n, func(w io.Writer) {
					fmt.Fprintf(w, "network %s\ndriver\t%s\nsubnets\t%s\ngateways\t%s\nbridge\t%s\n",
						n.Name, n.Driver, joinPrefixes(n.Subnets), dash(joinAddrs(n.Gateways)), dash(n.Bridge))
					for _, o := range engine.DriverOptions() {
						if !o.Device {
							fmt.Fprintf(w, "%s\t%s\n", o.Name, dash(n.Options[o.Name]))
						}
					}
					fmt.Fprintf(w, "nat\t%v\ninternal\t%v\nhost\t%s\n", n.NAT, n.Internal, dash(n.Host))
					if len(n.IPRanges) > 0 {
						fmt.Fprintf(w, "ip ranges\t%s\n", joinPrefixes(n.IPRanges))
					}
					for _, name := range slices.Sorted(maps.Keys(n.AuxAddresses)) {
						fmt.Fprintf(w, "aux address\t%s=%s\n", name, n.AuxAddresses[name])
					}
					for _, c := range n.ForwardAccepts {
						fmt.Fprintf(w, "host forward accepts\t%s %s %s\n", c.Family, c.Table, c.Chain)
					}
					cni := slices.ContainsFunc(n.Members, func(a engine.MemberInfo) bool { return a.ContainerID != "" })
					if cni {
						// Members attached by a runtime through CNI.
						fmt.Fprintln(w, "\nMEMBER\tINTERFACE\tADDRESSES\tHOST END\tPORTS\tCONTAINER")
					} else {
						fmt.Fprintln(w, "\nMEMBER\tINTERFACE\tADDRESSES\tHOST END\tPORTS")
					}
					for _, a := range n.Members {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s", a.Namespace, a.IfName, dash(joinPrefixes(a.Addrs)), dash(a.HostIf), dash(joinPorts(a.Ports)))
						if cni {
							fmt.Fprintf(w, "\t%s", dash(a.ContainerID))
						}
						fmt.Fprintln(w)
					}
					if len(n.Taps) > 0 {
						fmt.Fprintln(w, "\nTAP\tGUEST ADDRESSES")
						for _, d := range n.Taps {
							fmt.Fprintf(w, "%s\t%s\n", d.Name, joinPrefixes(d.Addrs))
						}
					}
				})
			})
		},
	})
	return c
}

func parseFamilyAddr(s string, v4 bool) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return a, fmt.Errorf("%q is not an IP address", s)
	}
	if a.Is4() != v4 {
		return a, fmt.Errorf("%s is of the wrong IP family", s)
	}
	return a, nil
}

func execCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "exec NAME -- CMD [ARG...]",
		Short: "Run a command inside a namespace, as ip netns exec does",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 || cmd.ArgsLenAtDash() != 1 {
				return errors.New("exec: usage: nsnet exec NAME -- CMD [ARG...]")
			}
			return nil
		},
		// Flags after NAME belong to the command being run.
		DisableFlagParsing: false,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 {
				return errors.New("exec: usage: nsnet exec NAME -- CMD [ARG...]")
			}
			g.ensureAgent()
			return netns.Exec(args[0], args[1:])
		},
	}
}

func gcCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use: "gc", Short: "Finish or roll back what interrupted commands left", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withManager(false, func(m *engine.Manager) error {
				done, err := m.GC()
				// Labs go after the single objects: an apply resumed
				// builds on what gc repaired.
				more, lerr := lab.Resume(m)
				for _, d := range append(done, more...) {
					fmt.Fprintln(cmd.OutOrStdout(), d)
				}
				return errors.Join(err, lerr)
			})
		},
	}
}

func restoreCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "restore",
		Short: "Rebuild the recorded networks after a reboot",
		Long: `Rebuild, after a reboot (or in a host namespace made anew under the same
path), what the state directory records: the namespaces nsnet made are made
again, empty; the host namespace is adopted; then, as gc does, bridges,
firewall tables, members with their addresses, routes, published ports and
DNS, TAPs and links are rebuilt. Memberships of namespaces nsnet did not make
are removed if those namespaces are gone. A host namespace whose nsnet table
belongs to another state directory is refused.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withManager(false, func(m *engine.Manager) error {
				done, err := m.Restore()
				for _, d := range done {
					fmt.Fprintln(cmd.OutOrStdout(), d)
				}
				if err == nil && len(done) == 0 {
					fmt.Fprintln(cmd.OutOrStdout(), "nothing to restore")
				}
				return err
			})
		},
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func joinPrefixes(ps []netip.Prefix) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return strings.Join(s, ",")
}

func joinAddrs(as []netip.Addr) string {
	var s []string
	for _, a := range as {
		if a.IsValid() {
			s = append(s, a.String())
		}
	}
	return strings.Join(s, ",")
}

func linkCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "link", Short: "Point-to-point veth links between two namespaces (either may be \"host\")"}
	var spec engine.LinkSpec
	var subnet, names string
	var addrs []string
	create := &cobra.Command{
		Use: "create NS1 NS2", Short: "Join two namespaces with one veth pair", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec.NS1, spec.NS2 = args[0], args[1]
			fail := func(format string, a ...any) error {
				return fmt.Errorf("link %s-%s: "+format, append([]any{spec.NS1, spec.NS2}, a...)...)
			}
			if subnet != "" {
				p, err := netip.ParsePrefix(subnet)
				if err != nil {
					return fail("invalid subnet %q (want CIDR such as 192.168.1.0/24)", subnet)
				}
				spec.Subnet = p
			}
			for _, a := range addrs {
				ns, cidr, ok := strings.Cut(a, "=")
				p, err := netip.ParsePrefix(cidr)
				if !ok || err != nil {
					return fail("invalid --addr %q (want NS=IP/LEN)", a)
				}
				switch ns {
				case spec.NS1:
					spec.Addr1 = p
				case spec.NS2:
					spec.Addr2 = p
				default:
					return fail("--addr %q names neither end", a)
				}
			}
			if names != "" {
				a, b, ok := strings.Cut(names, ",")
				if !ok || strings.Contains(b, ",") || a == "" || b == "" {
					return fail("invalid --name %q (want IF1,IF2)", names)
				}
				spec.If1, spec.If2 = a, b
			}
			return g.withManager(false, func(m *engine.Manager) error {
				l, err := m.CreateLink(spec)
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), l, func(w io.Writer) {
					fmt.Fprintf(w, "linked %s (%s %s) and %s (%s %s)\n", l.NS1, l.If1, dash(joinPrefixes(l.Addrs1)), l.NS2, l.If2, dash(joinPrefixes(l.Addrs2)))
				})
			})
		},
	}
	create.Flags().StringVar(&subnet, "subnet", "", "give the ends the subnet's first two usable addresses")
	create.Flags().StringArrayVar(&addrs, "addr", nil, "NS=IP/LEN for one end (give both)")
	create.Flags().StringVar(&names, "name", "", "interface names IF1,IF2 (default: first free vethN in each)")
	create.Flags().IntVar(&spec.MTU, "mtu", 0, "MTU of both ends")
	c.AddCommand(create, &cobra.Command{
		Use: "rm NS1 NS2", Short: "Remove the link between two namespaces", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withManager(false, func(m *engine.Manager) error { return m.RemoveLink(args[0], args[1]) })
		},
	}, &cobra.Command{
		Use: "ls", Short: "List links", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withManager(true, func(m *engine.Manager) error {
				links, err := m.Links()
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), links, func(w io.Writer) {
					fmt.Fprintln(w, "NS1\tIF1\tADDRESSES\tNS2\tIF2\tADDRESSES")
					for _, l := range links {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", l.NS1, l.If1, dash(joinPrefixes(l.Addrs1)), l.NS2, l.If2, dash(joinPrefixes(l.Addrs2)))
					}
				})
			})
		},
	})
	return c
}

func tapCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "tap", Short: "Persistent TAP devices on bridge networks, for virtual machines"}
	var spec engine.TapSpec
	var ip string
	create := &cobra.Command{
		Use: "create NAME --net NET [--ip IP]", Short: "Create a TAP device on a bridge network", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec.Name = args[0]
			var err error
			if spec.IP, err = parseFamilyAddr(ip, true); err != nil {
				return fmt.Errorf("tap %s: --ip %w", spec.Name, err)
			}
			if spec.Network == "" {
				return fmt.Errorf("tap %s: --net is required", spec.Name)
			}
			return g.withManager(false, func(m *engine.Manager) error {
				d, err := m.CreateTap(spec)
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), d, func(w io.Writer) {
					fmt.Fprintf(w, "TAP %s on %s, guest address %s (QEMU: -netdev tap,id=n0,ifname=%s,script=no,downscript=no)\n", d.Name, d.Network, joinPrefixes(d.Addrs), d.Name)
				})
			})
		},
	}
	create.Flags().StringVar(&spec.Network, "net", "", "bridge network to join")
	create.Flags().StringVar(&ip, "ip", "", "IPv4 address to reserve for the guest")
	c.AddCommand(create, &cobra.Command{
		Use: "rm NAME", Short: "Remove a TAP device", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withManager(false, func(m *engine.Manager) error { return m.RemoveTap(args[0]) })
		},
	}, &cobra.Command{
		Use: "ls", Short: "List TAP devices", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withManager(true, func(m *engine.Manager) error {
				taps, err := m.Taps()
				if err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), taps, func(w io.Writer) {
					fmt.Fprintln(w, "NAME\tNETWORK\tGUEST ADDRESSES")
					for _, d := range taps {
						fmt.Fprintf(w, "%s\t%s\t%s\n", d.Name, d.Network, joinPrefixes(d.Addrs))
					}
				})
			})
		},
	})
	return c
}

func joinPorts(ps []engine.PortMap) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return strings.Join(s, ",")
}

func portsSuffix(ps []engine.PortMap) string {
	if len(ps) == 0 {
		return ""
	}
	return ", publishing " + joinPorts(ps)
}

// errForward: the command is nsnet-cluster's.
var errForward = errors.New("a cluster command")

// forwardCluster hands the command, as given, to nsnet-cluster beside
// nsnet: what needs etcd is done there, so that etcd's client does not
// slow every nsnet command's start.
func forwardCluster() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	p := filepath.Join(filepath.Dir(exe), "nsnet-cluster")
	if _, err := os.Stat(p); err != nil {
		return fmt.Errorf("cluster: nsnet-cluster is not beside %s; install it (README: Build and install)", exe)
	}
	return syscall.Exec(p, append([]string{p}, os.Args[1:]...), os.Environ())
}

func hostCmd() *cobra.Command {
	return &cobra.Command{
		Use: "host join|ls|rm", Short: "This host's membership of a cluster (docs/cluster.md)", DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error { return forwardCluster() },
	}
}
