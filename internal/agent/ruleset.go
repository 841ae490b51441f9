package agent

import (
	"log"
	"os"
	"time"

	"github.com/google/nftables"

	"github.com/nsnet/nsnet/internal/drivers"
	"github.com/nsnet/nsnet/internal/firewall"
	"github.com/nsnet/nsnet/internal/netns"
	"github.com/nsnet/nsnet/internal/store"
)

// settle is how long the agent lets a burst of ruleset changes go on
// (iptables-restore, a firewall reload) before it looks: one check per
// burst.
const settle = 100 * time.Millisecond

// watcher follows the nftables ruleset of one host namespace.
type watcher struct {
	host string
	mon  *nftables.Monitor
	conn *nftables.Conn
	// ino is the namespace's inode: a path made anew leads to another
	// namespace, which needs a watcher of its own.
	ino uint64
}

func (w *watcher) close() {
	w.mon.Close()
	w.conn.CloseLasting()
}

// forwardHosts lists the hosts with a network whose traffic other tables'
// forward chains may drop: those are the hosts whose ruleset the agent
// watches (issue 10, item 5).
func forwardHosts(nets []store.Network) map[string]bool {
	out := map[string]bool{}
	for _, n := range nets {
		if drivers.Caps(n).Firewall && !n.Internal && !n.NoHostFirewall {
			out[n.HostNetns] = true
		}
	}
	return out
}

// syncWatchers watches the ruleset of every host in want, and no other.
// A host it cannot watch is logged and tried again at the next refresh;
// a watcher whose path now leads to another namespace, or whose monitor
// stopped, is made anew.
func (a *agent) syncWatchers(want map[string]bool) {
	if a.onRuleset == nil {
		return
	}
	for host, w := range a.watchers {
		if !want[host] || netns.PathInode(host) != w.ino {
			w.close()
			delete(a.watchers, host)
		}
	}
	for host := range want {
		if a.watchers[host] != nil {
			continue
		}
		w, err := watch(host, a.rulesetChanged, a.watcherDied)
		if err != nil {
			log.Printf("agent: watch the ruleset of host %q: %v", host, err)
			continue
		}
		a.watchers[host] = w
	}
}

// watch subscribes to ruleset changes in the host namespace at path ("":
// the agent's own) and sends path on changed for each change to a table
// that is not nsnet's: a forward chain's policy turned to drop, or its
// rules replaced, say. When the subscription ends (the kernel dropped
// events it could not queue, or the agent closed it), it sends the watcher
// on died.
func watch(path string, changed chan<- string, died chan<- *watcher) (*watcher, error) {
	w := &watcher{host: path, ino: netns.PathInode(path)}
	// A lasting connection, so that close can end it whatever state the
	// monitor is in, with room for the bursts of a firewall reload (or
	// of nsnet's own full rebuild of a thousand networks).
	opts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(firewall.BigBuffers)}
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		// The socket is made in the namespace now; the file need not
		// stay open (it would keep a deleted namespace alive).
		defer f.Close()
		opts = append(opts, nftables.WithNetNSFd(int(f.Fd())))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		return nil, err
	}
	w.conn = conn
	w.mon = nftables.NewMonitor(nftables.WithMonitorObject(nftables.MonitorObjectTables | nftables.MonitorObjectChains | nftables.MonitorObjectRules))
	events, err := conn.AddMonitor(w.mon)
	if err != nil {
		conn.CloseLasting()
		return nil, err
	}
	go func() {
		for ev := range events {
			if ours(ev) {
				continue
			}
			select {
			case changed <- path:
			default: // a check is already due
			}
		}
		// What happened meanwhile is unknown: look again, and watch anew
		// (unless the agent closed this watcher itself).
		died <- w
	}()
	return w, nil
}

// ours reports whether ev needs no look: a change to nsnet's own tables,
// which nsnet itself made, or an event that is no change of a table, a
// chain or a rule (the generation message that ends every transaction,
// nsnet's included). An error (events lost) needs a look.
func ours(ev *nftables.MonitorEvent) bool {
	if ev.Error != nil {
		return false
	}
	var t *nftables.Table
	switch d := ev.Data.(type) {
	case *nftables.Table:
		t = d
	case *nftables.Chain:
		t = d.Table
	case *nftables.Rule:
		t = d.Table
	default:
		return true
	}
	return t != nil && t.Name == firewall.TableName && (t.Family == nftables.TableFamilyINet || t.Family == nftables.TableFamilyARP)
}
