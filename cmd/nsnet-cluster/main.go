// Command nsnet-cluster is nsnet's side that talks to etcd: `nsnet host
// ...`, `nsnet net create --scope cluster` and connects to cluster networks
// are carried out here (nsnet hands them over, same arguments), and its
// `keeper` runs beside the agent while the host has joined a cluster. It
// is a program of its own so that etcd's client (gRPC) does not slow every
// nsnet command's start.
package main

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nsnet/nsnet/internal/agent"
	"github.com/nsnet/nsnet/internal/cliout"
	"github.com/nsnet/nsnet/internal/cluster"
	"github.com/nsnet/nsnet/internal/engine"
	"github.com/nsnet/nsnet/internal/netns"
	"github.com/nsnet/nsnet/internal/store"
)

type globals struct {
	stateDir, hostNetns, output string
	url, prefix, cert, key, ca  string
}

func main() {
	g := &globals{}
	root := &cobra.Command{Use: "nsnet", SilenceUsage: true, SilenceErrors: true}
	def := os.Getenv("NSNET_STATE_DIR")
	if def == "" {
		def = engine.DefaultStateDir
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.stateDir, "state-dir", def, "state directory (env NSNET_STATE_DIR)")
	pf.StringVar(&g.hostNetns, "host-netns", "", "namespace (name or path) to treat as the host")
	pf.StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	pf.StringVar(&g.url, "cluster", os.Getenv("NSNET_CLUSTER"), "etcd of the cluster: etcd://HOST:PORT[,HOST:PORT...] (env NSNET_CLUSTER)")
	pf.StringVar(&g.prefix, "cluster-prefix", "/nsnet", "prefix of nsnet's keys in etcd")
	pf.StringVar(&g.cert, "cluster-cert", "", "TLS client certificate for etcd")
	pf.StringVar(&g.key, "cluster-key", "", "TLS client key for etcd")
	pf.StringVar(&g.ca, "cluster-ca", "", "CA that signed etcd's certificate")
	root.AddCommand(hostCmd(g), netCmd(g), keeperCmd(g))
	if err := root.Execute(); err != nil {
		cliout.Error(os.Stderr, g.output == "json", cliout.OneLine(err.Error()))
		os.Exit(1)
	}
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

// clusterConfig is etcd's address from --cluster, or, when it is not
// given, the one this host joined with.
func (g *globals) clusterConfig(j *store.Joined) (cluster.Config, error) {
	if j != nil {
		// The cluster this host joined, with the certificates it joined
		// with, unless --cluster names another.
		eps, err := cluster.ParseURL(g.url)
		if g.url == "" || err == nil && slices.Equal(eps, j.Endpoints) {
			c := cluster.Config{Endpoints: j.Endpoints, Prefix: j.Prefix, Cert: j.Cert, Key: j.Key, CA: j.CA}
			for _, f := range []struct{ flag, dst *string }{{&g.cert, &c.Cert}, {&g.key, &c.Key}, {&g.ca, &c.CA}} {
				if *f.flag != "" {
					*f.dst = *f.flag
				}
			}
			return c, nil
		}
	}
	if g.url == "" {
		return cluster.Config{}, errors.New("this needs the cluster's etcd: give --cluster etcd://HOST:PORT (or NSNET_CLUSTER)")
	}
	eps, err := cluster.ParseURL(g.url)
	if err != nil {
		return cluster.Config{}, err
	}
	return cluster.Config{Endpoints: eps, Prefix: g.prefix, Cert: g.cert, Key: g.key, CA: g.ca}, nil
}

// dial connects to the cluster's etcd (see clusterConfig); what names the
// command in an error that is not etcd's.
func (g *globals) dial(what string, j *store.Joined) (*cluster.Client, error) {
	cc, err := g.clusterConfig(j)
	if err != nil {
		if what != "" {
			err = fmt.Errorf("%s: %w", what, err)
		}
		return nil, err
	}
	return cluster.Dial(cc)
}

// joined is this host's cluster membership, if it has one (and a store).
func (g *globals) joined() *store.Joined {
	var j *store.Joined
	g.withManager(true, func(m *engine.Manager) error {
		if jj, ok, err := m.Joined(); err == nil && ok {
			j = &jj
		}
		return nil
	})
	return j
}

// withManager opens the engine around fn (exclusively unless readOnly).
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
	ferr := fn(m)
	need, nerr := m.AgentNeeded()
	gen, gerr := m.Generation()
	if err := m.Close(); err != nil && ferr == nil {
		ferr = err
	}
	// As nsnet does: the agent (nsnet's, beside this program) serves the
	// change before the command returns, and starts the keeper.
	if ferr == nil && !readOnly && nerr == nil && gerr == nil && need {
		exe, err := os.Executable()
		if err == nil {
			err = agent.Ensure(cfg.StateDir, filepath.Join(filepath.Dir(exe), "nsnet"))
		}
		if err == nil {
			err = agent.Wait(cfg.StateDir, gen, true, 3*time.Second)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "nsnet: warning: done, but agent: "+cliout.OneLine(err.Error()))
		}
	}
	return ferr
}

func (g *globals) print(w io.Writer, v any, text func(io.Writer)) error {
	return cliout.Print(w, g.output == "json", v, text)
}

func hostCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "host", Short: "This host's membership of a cluster"}
	var name, address string
	var ttl int
	var grace time.Duration
	join := &cobra.Command{
		Use: "join [--name NAME] [--address IP]", Short: "Register this host in the cluster (a lease the agent keeps alive)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if ttl < 2 || ttl > 3600 {
				return fmt.Errorf("host join: --ttl %d: want 2 to 3600 seconds", ttl)
			}
			if grace < 0 {
				return fmt.Errorf("host join: --grace %v: want 0 or more", grace)
			}
			cc, err := g.clusterConfig(nil)
			if err != nil {
				return fmt.Errorf("host join: %w", err)
			}
			return g.withManager(false, func(m *engine.Manager) error {
				if j, ok, err := m.Joined(); err != nil {
					return err
				} else if ok {
					return fmt.Errorf("host join: this host joined already, as %s (%s)", j.Name, j.Address)
				}
				addrs, err := m.HostAddrs()
				if err != nil {
					return err
				}
				var a netip.Addr
				if address != "" {
					if a, err = netip.ParseAddr(address); err != nil || !a.Is4() {
						return fmt.Errorf("host join: --address %q: want the host's IPv4 address on the underlay", address)
					}
					if !slices.Contains(addrs, a) {
						return fmt.Errorf("host join: --address %s: not an address of this host", a)
					}
				} else {
					for _, x := range addrs {
						if x.Is4() {
							a = x
							break
						}
					}
					if !a.IsValid() {
						return errors.New("host join: this host has no IPv4 address to be reached at; give --address")
					}
				}
				if name == "" {
					name, _ = os.Hostname()
					if m.HostNetns() != "" {
						name = strings.TrimPrefix(m.HostNetns(), netns.Dir+"/")
					}
				}
				if err := netns.ValidateName(name); err != nil {
					return fmt.Errorf("host join: --name %q: %w", name, err)
				}
				c, err := cluster.Dial(cc)
				if err != nil {
					return err
				}
				defer c.Close()
				h := cluster.Host{Name: name, Address: a, Joined: time.Now().UTC(), TTL: ttl, Grace: grace}
				if _, err := c.Join(h); err != nil {
					return err
				}
				// The keeper reads the certificates later, from anywhere.
				for _, p := range []*string{&cc.Cert, &cc.Key, &cc.CA} {
					if *p != "" {
						if abs, err := filepath.Abs(*p); err == nil {
							*p = abs
						}
					}
				}
				j := store.Joined{Name: name, Address: a, Endpoints: cc.Endpoints, Prefix: cc.Prefix, Cert: cc.Cert, Key: cc.Key, CA: cc.CA,
					TTL: ttl, Grace: grace, HostNetns: m.HostNetns(), Joined: h.Joined}
				if err := m.SetJoined(j, true); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "host %s joined the cluster at %s (lease %ds)\n", name, a, ttl)
				return nil
			})
		},
	}
	join.Flags().StringVar(&name, "name", "", "this host's name in the cluster (default: the host namespace's name, or the hostname)")
	join.Flags().StringVar(&address, "address", "", "this host's underlay address (default: its first IPv4 address)")
	join.Flags().IntVar(&ttl, "ttl", cluster.DefaultTTL, "lease in seconds: the others drop this host's routes this long after it stops")
	join.Flags().DurationVar(&grace, "grace", cluster.DefaultGrace, "how long this host's blocks stay reserved after it died")

	ls := &cobra.Command{
		Use: "ls", Short: "Hosts of the cluster, live or holding blocks, with their blocks", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.dial("host ls", g.joined())
			if err != nil {
				return err
			}
			defer c.Close()
			hosts, err := c.Hosts()
			if err != nil {
				return err
			}
			blocks, err := c.Blocks("")
			if err != nil {
				return err
			}
			type view struct {
				Name    string         `json:"name"`
				Address netip.Addr     `json:"address,omitzero"`
				State   string         `json:"state"`
				Blocks  []netip.Prefix `json:"blocks"`
				Joined  time.Time      `json:"joined,omitzero"`
			}
			byName := map[string]*view{}
			var out []*view
			for _, h := range hosts {
				v := &view{Name: h.Name, Address: h.Address, State: "live", Joined: h.Joined, Blocks: []netip.Prefix{}}
				byName[h.Name] = v
				out = append(out, v)
			}
			for _, b := range blocks {
				v := byName[b.Host]
				if v == nil {
					v = &view{Name: b.Host, State: "dead", Blocks: []netip.Prefix{}}
					if !b.Orphaned.IsZero() {
						v.State = "dead, blocks reserved until " + b.Orphaned.Add(b.Grace).Format(time.RFC3339)
					}
					byName[b.Host] = v
					out = append(out, v)
				}
				v.Blocks = append(v.Blocks, b.Prefix)
			}
			slices.SortFunc(out, func(a, b *view) int { return strings.Compare(a.Name, b.Name) })
			return g.print(cmd.OutOrStdout(), out, func(w io.Writer) {
				fmt.Fprintln(w, "HOST\tADDRESS\tSTATE\tBLOCKS")
				for _, v := range out {
					addr := "-"
					if v.Address.IsValid() {
						addr = v.Address.String()
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%v\n", v.Name, addr, v.State, v.Blocks)
				}
			})
		},
	}
	rm := &cobra.Command{
		Use: "rm NAME", Short: "Remove a dead host at once: its registration and blocks", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.dial("host rm", g.joined())
			if err != nil {
				return err
			}
			defer c.Close()
			hosts, err := c.Hosts()
			if err != nil {
				return err
			}
			if slices.ContainsFunc(hosts, func(h cluster.Host) bool { return h.Name == args[0] }) {
				return fmt.Errorf("host %s: alive (its lease is renewed); host rm is for dead hosts", args[0])
			}
			found, err := c.RemoveHost(args[0])
			if err != nil {
				return err
			}
			if !found {
				return fmt.Errorf("host %s: %w in the cluster", args[0], cluster.ErrNotFound)
			}
			return nil
		},
	}
	c.AddCommand(join, ls, rm)
	return c
}

func netCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "net", Short: "Cluster networks"}
	var scope, backend string
	var subnets []string
	var blockSize, mtu int
	create := &cobra.Command{
		Use: "create NAME --scope cluster --subnet CIDR [--block-size 26] --backend host-gw|vxlan|bgp", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			what := fmt.Sprintf("network %q", args[0])
			if scope != "cluster" {
				return fmt.Errorf("%s: nsnet-cluster makes --scope cluster networks only", what)
			}
			if g.url == "" {
				return fmt.Errorf("%s: --scope cluster needs the cluster's etcd: give --cluster etcd://HOST:PORT (or NSNET_CLUSTER)", what)
			}
			if err := netns.ValidateName(args[0]); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			if len(subnets) != 1 {
				return fmt.Errorf("%s: a cluster network needs one IPv4 --subnet", what)
			}
			sub, err := netip.ParsePrefix(subnets[0])
			if err != nil || !sub.Addr().Is4() {
				return fmt.Errorf("%s: --subnet %q: want an IPv4 CIDR", what, subnets[0])
			}
			sub = sub.Masked()
			if blockSize > 30 {
				return fmt.Errorf("%s: --block-size %d: blocks below /30 hold no member", what, blockSize)
			}
			if blockSize < sub.Bits() {
				return fmt.Errorf("%s: --block-size %d: a /%d block is larger than the subnet %s", what, blockSize, blockSize, sub)
			}
			if !slices.Contains(cluster.Backends, backend) {
				return fmt.Errorf("%s: --backend %q: want host-gw, vxlan or bgp", what, backend)
			}
			if mtu != 0 && backend == "vxlan" && mtu-cluster.VXLANOverhead < 576 {
				return fmt.Errorf("%s: --mtu %d: the vxlan backend takes %d bytes of each packet, leaving members %d, below IPv4's 576; give the underlay's MTU (1500, say)", what, mtu, cluster.VXLANOverhead, mtu-cluster.VXLANOverhead)
			}
			if mtu != 0 && (mtu < 576 || mtu > 65535) {
				return fmt.Errorf("%s: --mtu %d is outside 576..65535", what, mtu)
			}
			cc, err := g.clusterConfig(nil)
			if err != nil {
				return err
			}
			return g.withManager(false, func(m *engine.Manager) error {
				c, err := cluster.Dial(cc)
				if err != nil {
					return err
				}
				defer c.Close()
				// A vxlan network's members get the underlay's MTU less the
				// encapsulation: --mtu's when given, else each host's own.
				n := cluster.Network{Name: args[0], Subnet: sub, BlockBits: blockSize, Backend: backend, MTU: mtu}
				if backend == "vxlan" && mtu != 0 {
					n.MTU = mtu - cluster.VXLANOverhead
				}
				if local, err := m.Network(n.Name); err == nil && local.Cluster == nil {
					return fmt.Errorf("%s: this host has a network of its own by that name", what)
				}
				n, err = c.CreateNetwork(n)
				if err != nil {
					return err
				}
				// This host's part is made now if it joined; others make
				// theirs at their first connect.
				if j, ok, err := m.Joined(); err == nil && ok {
					if _, err := m.Network(n.Name); errors.Is(err, engine.ErrNoNetwork) {
						ls, err := cluster.LocalSpec(m, n, j)
						if err != nil {
							return err
						}
						if _, err := m.CreateNetwork(ls); err != nil {
							return err
						}
					}
				}
				fmt.Fprintf(cmd.OutOrStdout(), "cluster network %s: %s, /%d blocks, backend %s\n", n.Name, n.Subnet, n.BlockBits, n.Backend)
				return nil
			})
		},
	}
	create.Flags().StringVar(&scope, "scope", "", "cluster: a network every joined host can use")
	create.Flags().StringArrayVar(&subnets, "subnet", nil, "the network's IPv4 subnet")
	create.Flags().IntVar(&blockSize, "block-size", 26, "prefix length of the blocks each host claims")
	create.Flags().StringVar(&backend, "backend", "", "how hosts reach each other's members: host-gw, vxlan or bgp")
	create.Flags().IntVar(&mtu, "mtu", 0, "members' MTU; for vxlan, the underlay's (members get 50 less)")

	var ip, ip6, ifname string
	var defRoute bool
	var aliases []string
	connect := &cobra.Command{
		Use: "connect NET NS [--ip IP]", Short: "Connect a namespace to a cluster network (an address of this host's blocks)", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec := engine.ConnectSpec{Network: args[0], Namespace: args[1], IfName: ifname, DefaultRoute: defRoute, Aliases: aliases}
			for _, x := range []struct {
				s   string
				dst *netip.Addr
			}{{ip, &spec.IPv4}, {ip6, &spec.IPv6}} {
				if x.s == "" {
					continue
				}
				a, err := netip.ParseAddr(x.s)
				if err != nil {
					return fmt.Errorf("connect %s to %s: %q is not an IP address", args[1], args[0], x.s)
				}
				*x.dst = a
			}
			return g.withManager(false, func(m *engine.Manager) error {
				j, ok, err := m.Joined()
				if err != nil {
					return err
				}
				if !ok {
					return fmt.Errorf("network %q: a cluster network, and this host has not joined the cluster (nsnet host join)", args[0])
				}
				c, err := g.dial("", &j)
				if err != nil {
					return err
				}
				defer c.Close()
				mi, err := cluster.Connect(m, c, j, spec)
				if err != nil {
					return err
				}
				var addrs []string
				for _, a := range mi.Addrs {
					addrs = append(addrs, a.String())
				}
				fmt.Fprintf(cmd.OutOrStdout(), "connected %s to %s: %s %s (host %s)\n", args[1], args[0], mi.IfName, strings.Join(addrs, " "), j.Name)
				return nil
			})
		},
	}
	connect.Flags().StringVar(&ip, "ip", "", "IPv4 address (of one of this host's blocks)")
	connect.Flags().StringVar(&ip6, "ip6", "", "not for cluster networks (IPv4 only)")
	connect.Flags().StringVar(&ifname, "ifname", "", "interface name inside the namespace")
	connect.Flags().BoolVar(&defRoute, "default-route", false, "move the namespace's default route to this network")
	connect.Flags().StringArrayVar(&aliases, "alias", nil, "another name the network's resolver answers for")
	var rmScope string
	var force bool
	rm := &cobra.Command{
		Use: "rm NAME --scope cluster [--force]", Short: "Remove a cluster network: this host's part, and the network from etcd", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			what := fmt.Sprintf("network %q", args[0])
			if rmScope != "cluster" {
				return fmt.Errorf("%s: nsnet-cluster removes --scope cluster networks only", what)
			}
			return g.withManager(false, func(m *engine.Manager) error {
				j, ok, err := m.Joined()
				if err != nil {
					return err
				}
				var jp *store.Joined
				if ok {
					jp = &j
				}
				c, err := g.dial("", jp)
				if err != nil {
					return err
				}
				defer c.Close()
				if _, err := c.Network(args[0]); err != nil {
					return err
				}
				// Other live hosts' members would be cut off: only with
				// --force.
				hosts, err := c.Hosts()
				if err != nil {
					return err
				}
				blocks, err := c.Blocks(args[0])
				if err != nil {
					return err
				}
				var others []string
				for _, b := range blocks {
					if b.Host != j.Name && slices.ContainsFunc(hosts, func(h cluster.Host) bool { return h.Name == b.Host }) && !slices.Contains(others, b.Host) {
						others = append(others, b.Host)
					}
				}
				if len(others) > 0 && !force {
					return fmt.Errorf("%s: hosts %s hold blocks of it (their members would be cut off); remove their parts first, or --force", what, strings.Join(others, ", "))
				}
				if local, err := m.Network(args[0]); err == nil && local.Cluster != nil {
					if err := m.RemoveNetwork(args[0], force); err != nil {
						return err
					}
				}
				// The keepers drop the network's routes and devices once
				// it is gone from etcd.
				_, err = c.RemoveNetwork(args[0])
				return err
			})
		},
	}
	rm.Flags().StringVar(&rmScope, "scope", "", "cluster: the network itself, from etcd")
	rm.Flags().BoolVar(&force, "force", false, "disconnect this host's members first, and remove it though other hosts hold blocks")
	c.AddCommand(create, connect, rm)
	return c
}

func keeperCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use: "keeper", Short: "Keep this host in the cluster (started by nsnet's agent)", Hidden: true, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log.SetFlags(log.LstdFlags | log.Lmicroseconds)
			return cluster.RunKeeper(g.stateDir)
		},
	}
}
