package engine

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nsnet/nsnet/internal/driver"
	"github.com/nsnet/nsnet/internal/drivers"
	"github.com/nsnet/nsnet/internal/firewall"
	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/store"
)

// dnsLabel marks the routed gateway address nsnet puts on the host's lo,
// so that nsnet only ever removes its own.
const dnsLabel = "lo:nsnet"

// hostNetworks lists the networks of one host namespace that the host's
// firewall serves (some drivers have nothing in the host), leaving out the
// one called except.
//
// The networks are summaries (store.Tx.Summaries): the fields a decision
// about the whole host reads, not ForwardAccepts, Gateways and the like.
func hostNetworks(tx *store.Tx, host, except string) ([]store.Network, error) {
	all, err := tx.Summaries()
	if err != nil {
		return nil, err
	}
	var out []store.Network
	for _, n := range all {
		if n.HostNetns == host && n.Name != except && drivers.Caps(n).Firewall {
			out = append(out, n)
		}
	}
	return out, nil
}

// syncHost makes the host namespace match what its networks need of it as
// a whole: nsnet's nftables table, and the routed gateway address that the
// resolver for routed networks listens on. Every call may be repeated.
//
// changes, when not nil, are the networks added and removed since the
// host was last synced, and let the firewall change only their elements;
// nil rebuilds the table whole.
func (m *Manager) syncHost(h *kernel.NS, nets []store.Network, ports bool, changes *firewall.Changes) error {
	return m.syncHostState(h, nets, firewall.Host{Ports: ports, Changes: changes})
}

// syncHostState is syncHost with the firewall state's other fields given.
func (m *Manager) syncHostState(h *kernel.NS, nets []store.Network, state firewall.Host) error {
	state = m.hostState(nets, state)
	fw, err := m.firewall(h)
	if err != nil {
		return err
	}
	if err := fw.Sync(state); err != nil {
		return err
	}
	if err := setLocalAddr(h, driver.LinkLocal4, state.LocalDNS.IsValid()); err != nil {
		return err
	}
	return setLocalAddr(h, driver.HostDNS6, state.LocalDNS6.IsValid())
}

// hostState adds to state what nets need of the host: their firewall
// networks, and the addresses the host holds on lo for them. While a
// network's members use the link-local gateway, the host holds it on lo:
// it answers their ARP for it like any address of its own, and their DNS
// queries if the network has DNS.
func (m *Manager) hostState(nets []store.Network, state firewall.Host) firewall.Host {
	for _, n := range nets {
		state.Networks = append(state.Networks, firewallNetwork(n))
		if drivers.Caps(n).DNS == driver.DNSLinkLocal {
			state.LocalDNS = driver.LinkLocal4
			if n.DNS && containsFamily(n.Subnets, netip.IPv6Unspecified()) {
				state.LocalDNS6 = driver.HostDNS6
			}
		}
	}
	state.Owner = m.cfg.StateDir
	return state
}

// addToHost gives the host a network new to it, as syncHost with every
// network of the host and n added would: it reads the host's other
// networks only when the table's rules must change for n. At a thousand
// networks, reading them cost `net create` about 1.6 ms (issue 11).
func (m *Manager) addToHost(tx *store.Tx, h *kernel.NS, n store.Network) error {
	state := m.hostState([]store.Network{n}, firewall.Host{Ports: tx.HostHasPorts(n.HostNetns)})
	fw, err := m.firewall(h)
	if err != nil {
		return err
	}
	if ok, err := fw.Add(state); err != nil {
		return err
	} else if ok {
		// The rules already serve n's needs, so the addresses on lo that
		// n needs are there unless someone took them away.
		if state.LocalDNS.IsValid() {
			if err := setLocalAddr(h, driver.LinkLocal4, true); err != nil {
				return err
			}
		}
		if state.LocalDNS6.IsValid() {
			return setLocalAddr(h, driver.HostDNS6, true)
		}
		return nil
	}
	nets, err := hostNetworks(tx, n.HostNetns, n.Name)
	if err != nil {
		return err
	}
	added := &firewall.Changes{Added: []firewall.Network{firewallNetwork(n)}}
	return m.syncHost(h, append(nets, n), tx.HostHasPorts(n.HostNetns), added)
}

func firewallNetwork(n store.Network) firewall.Network {
	return firewall.Network{Name: n.Name, Bridge: deviceOf(n), Subnets: n.Subnets, Masquerade: n.NAT, Internal: n.Internal, Isolate: !n.NoIsolate}
}

// setLocalAddr adds (or removes) addr on the host's lo: 169.254.1.1, the
// routed members' gateway and resolver, and HostDNS6, their IPv6
// resolver. With the address local, the agent's resolver answers there
// directly; redirecting the queries with DNAT instead would turn on
// connection tracking for every packet the host forwards. Scope host
// keeps the kernel from choosing the address as a source for anything
// else; an IPv6 address is added without DAD, so it serves at once.
func setLocalAddr(h *kernel.NS, addr netip.Addr, want bool) error {
	lo, err := h.LinkByName("lo")
	if err != nil {
		return err
	}
	if lo == nil {
		return errors.New("the host namespace has no lo")
	}
	nl := &netlink.Addr{IPNet: kernel.PrefixNet(netip.PrefixFrom(addr, addr.BitLen())), Scope: unix.RT_SCOPE_HOST}
	family := netlink.FAMILY_V4
	if addr.Is4() {
		nl.Label = dnsLabel
	} else {
		family = netlink.FAMILY_V6
		nl.Flags = unix.IFA_F_NODAD
	}
	if want {
		if err := h.NL.AddrReplace(lo, nl); err != nil {
			return fmt.Errorf("add %s to lo for routed networks' DNS: %w", addr, err)
		}
		return nil
	}
	// Listing lo's addresses dumps every address of the host (one per
	// network): ask the routing table first whether addr is local at all,
	// which it rarely is when not wanted.
	// (A lookup that fails finds no route, so no local address either.)
	if rs, err := h.NL.RouteGet(addr.AsSlice()); err != nil || len(rs) == 0 || rs[0].Type != unix.RTN_LOCAL {
		return nil
	}
	have, err := kernel.Retry(func() ([]netlink.Addr, error) { return h.NL.AddrList(lo, family) })
	if err != nil {
		return fmt.Errorf("read addresses of lo: %w", err)
	}
	for _, a := range have {
		// IPv4 addresses carry nsnet's label; IPv6 has no labels, but
		// HostDNS6 is in a block no subnet may use.
		if p, ok := kernel.ToPrefix(a.IPNet); ok && p.Addr() == addr && (addr.Is6() || a.Label == dnsLabel) {
			if err := h.NL.AddrDel(lo, nl); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				return fmt.Errorf("remove %s from lo: %w", addr, err)
			}
		}
	}
	return nil
}

// resyncHost rebuilds the host namespace at path from the store, leaving
// out the network called except, port maps included. It must not run
// inside a store transaction. A host namespace that is gone needs nothing.
func (m *Manager) resyncHost(path, except string) error {
	h, err := m.liveHost(path)
	if err != nil || h == nil {
		return err
	}
	var nets []store.Network
	state := firewall.Host{Published: []firewall.Port{}}
	if err := m.st.View(func(tx *store.Tx) (err error) {
		state.Ports = tx.HostHasPorts(path)
		if nets, err = hostNetworks(tx, path, except); err != nil {
			return err
		}
		all, err := tx.AllMembers()
		for _, n := range nets {
			for _, a := range all[n.Name] {
				state.Published = append(state.Published, expandPorts(a.Ports, a.Addrs)...)
			}
		}
		return err
	}); err != nil {
		return err
	}
	return m.syncHostState(h, nets, state)
}

// resyncPorts rebuilds the host of an interrupted connect or disconnect
// that published ports, whose table may still carry the chains for ports
// that are gone.
func (m *Manager) resyncPorts(o store.Op) error {
	if len(o.Ports) == 0 {
		return nil
	}
	return m.resyncHost(o.HostNetns, "")
}
