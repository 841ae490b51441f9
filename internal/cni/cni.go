// Package cni makes nsnet a CNI plugin: a network configuration of type
// "nsnet" names an nsnet network (made on the first ADD when missing), and
// each ADD attaches the runtime's namespace to it as a member keyed by
// container id and interface name, with nsnet's addresses, published
// ports, isolation and DNS. The verbs map onto the engine; the plugin
// protocol (environment, stdin, stdout, versions) is libcni's skel.
package cni

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"

	"github.com/nsnet/nsnet/internal/engine"
	"github.com/nsnet/nsnet/internal/ipam"
	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/netns"
	"github.com/nsnet/nsnet/internal/store"
)

// Versions are the CNI spec versions the plugin speaks.
var Versions = version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

// Config is a network configuration of type nsnet.
type Config struct {
	types.NetConf
	// Network is the nsnet network; default the configuration's name.
	Network  string   `json:"network"`
	Subnets  []string `json:"subnets"`
	Driver   string   `json:"driver"`
	Gateway  string   `json:"gateway"`
	NAT      *bool    `json:"nat"`
	Internal bool     `json:"internal"`
	Isolate  *bool    `json:"isolate"`
	DNS      *bool    `json:"dns"`
	MTU      int      `json:"mtu"`
	StateDir string   `json:"stateDir"`

	RuntimeConfig struct {
		PortMappings []PortMapping       `json:"portMappings"`
		IPs          []string            `json:"ips"`
		MAC          string              `json:"mac"`
		Aliases      map[string][]string `json:"aliases"`
	} `json:"runtimeConfig"`
}

// PortMapping is the portMappings capability's entry.
type PortMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP"`
}

// Load reads a configuration and its previous result.
func Load(stdin []byte) (*Config, error) {
	c := &Config{}
	if err := json.Unmarshal(stdin, c); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "nsnet: cannot decode the network configuration", err.Error())
	}
	if c.Network == "" {
		c.Network = c.Name
	}
	if c.StateDir == "" {
		c.StateDir = engine.DefaultStateDir
	}
	if !filepath.IsAbs(c.StateDir) {
		return nil, invalid("stateDir %q is not an absolute path (a runtime's working directory is no place for nsnet's state)", c.StateDir)
	}
	if err := version.ParsePrevResult(&c.NetConf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "nsnet: cannot read prevResult", err.Error())
	}
	return c, nil
}

func invalid(format string, args ...any) error {
	return types.NewError(types.ErrInvalidNetworkConfig, "nsnet: "+fmt.Sprintf(format, args...), "")
}

// asCNI turns an engine error into a CNI error with a code.
func asCNI(err error) error {
	var te *types.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &te):
		return err
	case errors.Is(err, engine.ErrBroken):
		return types.NewError(types.ErrPluginNotAvailable, "nsnet: "+err.Error(), "")
	case errors.Is(err, engine.ErrFull):
		return types.NewError(types.ErrTryAgainLater, "nsnet: "+err.Error(), "")
	}
	return types.NewError(types.ErrInternal, "nsnet: "+err.Error(), "")
}

// Spec is the network the configuration asks for.
func (c *Config) Spec() (engine.NetworkSpec, error) {
	s := engine.NetworkSpec{Name: c.Network, Driver: c.Driver, Internal: c.Internal, MTU: c.MTU, DNS: c.DNS}
	if len(c.Subnets) == 0 {
		return s, invalid("network %s does not exist and the configuration gives no subnets to make it with", c.Network)
	}
	for _, sub := range c.Subnets {
		p, err := netip.ParsePrefix(sub)
		if err != nil {
			return s, invalid("subnet %q: %v", sub, err)
		}
		s.Subnets = append(s.Subnets, p)
	}
	if c.Gateway != "" {
		g, err := netip.ParseAddr(c.Gateway)
		if err != nil {
			return s, invalid("gateway %q: %v", c.Gateway, err)
		}
		s.Gateways = []netip.Addr{g}
	}
	if c.NAT != nil {
		s.NAT, s.NoNAT = *c.NAT, !*c.NAT
	}
	if c.Isolate != nil {
		s.NoIsolate = !*c.Isolate
	}
	return s, nil
}

// ensureNetwork makes the network on first use, and refuses a
// configuration that contradicts the network of that name.
func ensureNetwork(m *engine.Manager, c *Config) (engine.NetworkInfo, error) {
	n, err := m.Network(c.Network)
	if errors.Is(err, engine.ErrNotFound) {
		spec, serr := c.Spec()
		if serr != nil {
			return n, serr
		}
		if n, err = m.CreateNetwork(spec); err != nil && !errors.Is(err, engine.ErrExists) {
			return n, invalid("%v", err)
		}
		return m.Network(c.Network)
	}
	if err != nil {
		return n, err
	}
	if len(c.Subnets) > 0 {
		var want []string
		for _, p := range n.Subnets {
			want = append(want, p.String())
		}
		got := slices.Clone(c.Subnets)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			return n, invalid("network %s exists with subnets %s; the configuration says %s", n.Name, strings.Join(want, ","), strings.Join(got, ","))
		}
	}
	if c.Driver != "" && c.Driver != n.Driver {
		return n, invalid("network %s exists with driver %s; the configuration says %s", n.Name, n.Driver, c.Driver)
	}
	return n, nil
}

// namespaceFor names the runtime's namespace for nsnet: its own name when
// it is mounted where nsnet keeps named namespaces (podman, containerd),
// else a name of nsnet's under which the path is bind-mounted, as `ip
// netns attach` does.
func namespaceFor(path, containerID, ifName string) (name string, mounted bool, err error) {
	if path == "" {
		return "", false, types.NewError(types.ErrInvalidEnvironmentVariables, "nsnet: CNI_NETNS is not set", "")
	}
	if _, err := os.Stat(path); err != nil {
		return "", false, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("nsnet: CNI_NETNS %s: %v", path, err), "")
	}
	// Only the directory is resolved: /proc/PID/ns/net is a link that
	// leads nowhere on the file system.
	dir, _ := filepath.EvalSymlinks(filepath.Dir(path))
	ours, _ := filepath.EvalSymlinks(netns.Dir)
	if dir == ours && netns.Exists(filepath.Base(path)) {
		return filepath.Base(path), false, nil
	}
	h, err := netns.Open(path)
	if err != nil {
		return "", false, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("nsnet: CNI_NETNS %s is not a network namespace: %v", path, err), "")
	}
	h.Close()
	return attachedName(containerID, ifName), true, nil
}

// attachedPrefix starts the names under which nsnet mounts runtimes'
// namespaces that live elsewhere.
const attachedPrefix = "nsnet-cni-"

func attachedName(containerID, ifName string) string {
	sum := sha256.Sum256([]byte(containerID + "/" + ifName))
	return attachedPrefix + hex.EncodeToString(sum[:8])
}

// find returns the membership of the container's interface in the network.
func find(n engine.NetworkInfo, containerID, ifName string) (engine.MemberInfo, bool) {
	for _, mb := range n.Members {
		if mb.ContainerID == containerID && mb.IfName == ifName {
			return mb, true
		}
	}
	return engine.MemberInfo{}, false
}

func ports(c *Config) ([]store.PortMap, error) {
	var out []store.PortMap
	for _, p := range c.RuntimeConfig.PortMappings {
		proto := strings.ToLower(p.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		if p.HostPort < 1 || p.HostPort > 65535 || p.ContainerPort < 1 || p.ContainerPort > 65535 {
			return nil, invalid("port mapping %d:%d: ports are 1 to 65535", p.HostPort, p.ContainerPort)
		}
		s := fmt.Sprintf("%d:%d/%s", p.HostPort, p.ContainerPort, proto)
		if p.HostIP != "" && p.HostIP != "0.0.0.0" && p.HostIP != "::" {
			a, err := netip.ParseAddr(p.HostIP)
			if err != nil {
				return nil, invalid("port mapping %d:%d: host address %q: %v", p.HostPort, p.ContainerPort, p.HostIP, err)
			}
			if a.Is6() {
				s = fmt.Sprintf("[%s]:%s", a, s)
			} else {
				s = fmt.Sprintf("%s:%s", a, s)
			}
		}
		pm, err := engine.ParsePort(s)
		if err != nil {
			return nil, invalid("%v", err)
		}
		out = append(out, pm)
	}
	return out, nil
}

// Add attaches the container; it returns the result in the newest
// version, merged after prevResult when nsnet is not first in the list.
func Add(m *engine.Manager, c *Config, args *skel.CmdArgs) (*current.Result, error) {
	n, err := ensureNetwork(m, c)
	if err != nil {
		return nil, asCNI(err)
	}
	if _, dup := find(n, args.ContainerID, args.IfName); dup {
		return nil, invalid("container %s already has interface %s on network %s", args.ContainerID, args.IfName, n.Name)
	}
	spec := engine.ConnectSpec{Network: n.Name, IfName: args.IfName, ContainerID: args.ContainerID, Aliases: c.RuntimeConfig.Aliases[c.Name]}
	if a, ok := c.RuntimeConfig.Aliases[n.Name]; ok && c.Name != n.Name {
		spec.Aliases = append(spec.Aliases, a...)
	}
	if spec.Ports, err = ports(c); err != nil {
		return nil, err
	}
	for _, s := range c.RuntimeConfig.IPs {
		p, err := netip.ParsePrefix(s)
		var a netip.Addr
		if err == nil {
			a = p.Addr()
		} else if a, err = netip.ParseAddr(s); err != nil {
			return nil, invalid("ips: %q is not an address", s)
		}
		if !slices.ContainsFunc(n.Subnets, func(q netip.Prefix) bool { return q.Contains(a) }) {
			return nil, invalid("ips: %s is outside network %s's subnets", a, n.Name)
		}
		for _, q := range n.Subnets {
			if a.Is4() && q.Contains(a) && (a == q.Masked().Addr() || a == ipam.Last(q)) {
				return nil, invalid("ips: %s is the network or broadcast address of %s", a, q)
			}
		}
		if a.Is4() {
			spec.IPv4 = a
		} else {
			spec.IPv6 = a
		}
	}
	var mac net.HardwareAddr
	if c.RuntimeConfig.MAC != "" {
		if mac, err = net.ParseMAC(c.RuntimeConfig.MAC); err != nil || len(mac) != 6 || mac[0]&1 != 0 {
			return nil, invalid("mac %q is not a unicast Ethernet address", c.RuntimeConfig.MAC)
		}
	}
	name, mounted, err := namespaceFor(args.Netns, args.ContainerID, args.IfName)
	if err != nil {
		return nil, err
	}
	nsh, err := kernel.Open(args.Netns)
	if err != nil {
		return nil, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("nsnet: CNI_NETNS %s: %v", args.Netns, err), "")
	}
	defer nsh.Close()
	if l, err := nsh.LinkByName(args.IfName); err == nil && l != nil {
		return nil, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("nsnet: the container's namespace already has an interface %s", args.IfName), "")
	}
	if mounted {
		if err := netns.Attach(name, args.Netns); err != nil {
			return nil, asCNI(err)
		}
	}
	spec.Namespace = name
	mb, err := m.Connect(spec)
	if err != nil {
		if mounted {
			netns.Delete(name)
		}
		if errors.Is(err, engine.ErrInUse) || errors.Is(err, engine.ErrExists) {
			return nil, invalid("%v", err)
		}
		return nil, asCNI(err)
	}
	r, err := func() (*current.Result, error) {
		if mac != nil {
			l, err := nsh.LinkByName(args.IfName)
			if err == nil && l != nil {
				err = nsh.NL.LinkSetHardwareAddr(l, mac)
			}
			if err != nil {
				return nil, fmt.Errorf("set MAC %s on %s: %w", mac, args.IfName, err)
			}
		}
		return result(c, n, mb, args, nsh)
	}()
	if err != nil {
		// A failed ADD leaves nothing: the runtime retries or gives up.
		return nil, asCNI(errors.Join(err, detach(m, n.Name, mb)))
	}
	return r, nil
}

func result(c *Config, n engine.NetworkInfo, mb engine.MemberInfo, args *skel.CmdArgs, nsh *kernel.NS) (*current.Result, error) {
	r := &current.Result{CNIVersion: current.ImplementedSpecVersion}
	if c.PrevResult != nil {
		prev, err := current.NewResultFromResult(c.PrevResult)
		if err != nil {
			return nil, types.NewError(types.ErrDecodingFailure, "nsnet: cannot convert prevResult", err.Error())
		}
		r = prev
	}
	if mb.HostIf != "" {
		hostMAC := ""
		if l, err := netlink.LinkByName(mb.HostIf); err == nil {
			hostMAC = l.Attrs().HardwareAddr.String()
		}
		r.Interfaces = append(r.Interfaces, &current.Interface{Name: mb.HostIf, Mac: hostMAC})
	}
	l, err := nsh.LinkByName(mb.IfName)
	if err != nil || l == nil {
		return nil, asCNI(fmt.Errorf("interface %s is gone from the container: %v", mb.IfName, err))
	}
	r.Interfaces = append(r.Interfaces, &current.Interface{Name: mb.IfName, Mac: l.Attrs().HardwareAddr.String(), Sandbox: args.Netns, Mtu: l.Attrs().MTU})
	idx := len(r.Interfaces) - 1
	for _, p := range mb.Addrs {
		ipc := &current.IPConfig{Interface: &idx, Address: *kernel.PrefixNet(p)}
		for _, g := range n.Gateways {
			if g.Is4() == p.Addr().Is4() {
				ipc.Gateway = g.AsSlice()
				if !n.Internal && defaultVia(nsh, l.Attrs().Index, g) {
					dst := "0.0.0.0/0"
					if g.Is6() {
						dst = "::/0"
					}
					_, dn, _ := net.ParseCIDR(dst)
					r.Routes = append(r.Routes, &types.Route{Dst: *dn, GW: g.AsSlice()})
				}
			}
		}
		r.IPs = append(r.IPs, ipc)
	}
	if n.DNS {
		for _, g := range n.Gateways {
			if g.Is4() || !n.Gateways[0].Is4() {
				r.DNS.Nameservers = append(r.DNS.Nameservers, g.String())
				break
			}
		}
	}
	return r, nil
}

// Del detaches the container's interface; one already gone, or a network
// or namespace that is gone, is no error.
func Del(m *engine.Manager, c *Config, args *skel.CmdArgs) error {
	n, err := m.Network(c.Network)
	if errors.Is(err, engine.ErrNotFound) {
		return nil
	}
	if err != nil {
		return asCNI(err)
	}
	mb, ok := find(n, args.ContainerID, args.IfName)
	if !ok {
		// An ADD killed after it mounted the runtime's namespace and
		// before its connect committed leaves only that mount.
		if name := attachedName(args.ContainerID, args.IfName); netns.Exists(name) {
			return asCNI(netns.Delete(name))
		}
		return nil
	}
	return asCNI(detach(m, n.Name, mb))
}

func detach(m *engine.Manager, network string, mb engine.MemberInfo) error {
	if err := m.Disconnect(network, mb.Namespace); err != nil && !errors.Is(err, engine.ErrNotFound) {
		return err
	}
	if strings.HasPrefix(mb.Namespace, attachedPrefix) {
		return netns.Delete(mb.Namespace)
	}
	return nil
}

// Check verifies the container's attachment.
func Check(m *engine.Manager, c *Config, args *skel.CmdArgs) error {
	n, err := m.Network(c.Network)
	if err != nil {
		return asCNI(err)
	}
	mb, ok := find(n, args.ContainerID, args.IfName)
	if !ok {
		return types.NewError(types.ErrUnknownContainer, fmt.Sprintf("nsnet: container %s has no interface %s on network %s", args.ContainerID, args.IfName, n.Name), "")
	}
	return asCNI(m.CheckMember(n.Name, mb.Namespace))
}

// GC removes every attachment of the network made through CNI that is not
// among the valid ones, going on past failures and reporting them all.
func GC(m *engine.Manager, c *Config) error {
	n, err := m.Network(c.Network)
	if errors.Is(err, engine.ErrNotFound) {
		return nil
	}
	if err != nil {
		return asCNI(err)
	}
	valid := map[[2]string]bool{}
	for _, a := range c.ValidAttachments {
		valid[[2]string{a.ContainerID, a.IfName}] = true
	}
	var errs []string
	for _, mb := range n.Members {
		if mb.ContainerID == "" || valid[[2]string{mb.ContainerID, mb.IfName}] {
			continue
		}
		if err := detach(m, n.Name, mb); err != nil {
			errs = append(errs, fmt.Sprintf("%s/%s: %v", mb.ContainerID, mb.IfName, err))
		}
	}
	// Mounts of runtimes' namespaces that no membership uses are what
	// killed ADDs left. No ADD is under way: this process holds the store.
	if err := orphanMounts(m); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return types.NewError(types.ErrInternal, fmt.Sprintf("nsnet: GC of network %s: %d attachments not removed", n.Name, len(errs)), strings.Join(errs, "; "))
	}
	return nil
}

func orphanMounts(m *engine.Manager) error {
	names, err := netns.List()
	if err != nil {
		return err
	}
	used := map[string]bool{}
	nets, err := m.Networks()
	if err != nil {
		return err
	}
	for _, n := range nets {
		for _, mb := range n.Members {
			used[mb.Namespace] = true
		}
	}
	var errs []error
	for _, name := range names {
		if strings.HasPrefix(name, attachedPrefix) && !used[name] {
			errs = append(errs, netns.Delete(name))
		}
	}
	return errors.Join(errs...)
}

// Status says whether the network can take ADDs: a network not made yet
// can (the first ADD makes it), one whose host state is broken cannot.
func Status(m *engine.Manager, c *Config) error {
	err := m.NetworkStatus(c.Network)
	if errors.Is(err, engine.ErrNotFound) {
		if _, serr := c.Spec(); serr != nil {
			return serr
		}
		return nil
	}
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "nsnet: "+err.Error(), "")
	}
	return nil
}

// defaultVia says whether the container's default route of g's family
// goes out of its interface with index ifindex: a container already routed
// by another network keeps that route, and the result says what is there.
func defaultVia(nsh *kernel.NS, ifindex int, g netip.Addr) bool {
	routes, err := nsh.Routes(kernel.Family(g))
	if err != nil {
		return true
	}
	for _, r := range routes {
		if (!r.Dst.IsValid() || r.Dst.Bits() == 0) && r.Oif == ifindex {
			return true
		}
	}
	return false
}
