package agent

import (
	"log"
	"os"
	"time"

	"github.com/google/nftables"

	"github.com/nsnet/nsnet/internal/drivers"
	"github.com/nsnet/nsnet/internal/firewall"
	"github.com/nsnet/nsnet/internal/store"
)

// settle is how long the agent lets a burst of ruleset changes go on
// (iptables-restore, a firewall reload) before it looks: one check per
// burst.
const settle = 100 * time.Millisecond

// watcher follows the nftables ruleset of one host namespace.
type watcher struct {
	mon *nftables.Monitor
	f   *os.File
}

func (w *watcher) close() {
	w.mon.Close()
	if w.f != nil {
		w.f.Close()
	}
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
// A host it cannot watch is logged and tried again at the next refresh.
func (a *agent) syncWatchers(want map[string]bool) {
	if a.onRuleset == nil {
		return
	}
	for host, w := range a.watchers {
		if !want[host] {
			w.close()
			delete(a.watchers, host)
		}
	}
	for host := range want {
		if a.watchers[host] != nil {
			continue
		}
		w, err := watch(host, a.rulesetChanged)
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
// rules replaced, say.
func watch(path string, changed chan<- string) (*watcher, error) {
	w := &watcher{}
	var opts []nftables.ConnOption
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		w.f = f
		opts = append(opts, nftables.WithNetNSFd(int(f.Fd())))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		w.close()
		return nil, err
	}
	w.mon = nftables.NewMonitor(nftables.WithMonitorObject(nftables.MonitorObjectTables | nftables.MonitorObjectChains | nftables.MonitorObjectRules))
	events, err := conn.AddMonitor(w.mon)
	if err != nil {
		if w.f != nil {
			w.f.Close()
		}
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
	}()
	return w, nil
}

// ours reports whether ev is a change to nsnet's own tables, which nsnet
// itself made.
func ours(ev *nftables.MonitorEvent) bool {
	var t *nftables.Table
	switch d := ev.Data.(type) {
	case *nftables.Table:
		t = d
	case *nftables.Chain:
		t = d.Table
	case *nftables.Rule:
		t = d.Table
	default:
		return false
	}
	return t != nil && t.Name == firewall.TableName && (t.Family == nftables.TableFamilyINet || t.Family == nftables.TableFamilyARP)
}
