package lab

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/nsnet/nsnet/internal/engine"
	"github.com/nsnet/nsnet/internal/store"
	"github.com/nsnet/nsnet/internal/topology"
)

// Summary is one line of `lab ls`.
type Summary struct {
	Name       string    `json:"name"`
	File       string    `json:"file"`
	Hosts      int       `json:"hosts"`
	Networks   int       `json:"networks"`
	Namespaces int       `json:"namespaces"`
	Objects    int       `json:"objects"`
	Unfinished int       `json:"unfinished,omitempty"`
	Applied    time.Time `json:"applied"`
}

// List summarises every lab.
func List(m *engine.Manager) ([]Summary, error) {
	var out []Summary
	err := m.View(func(tx *store.Tx) error {
		labs, err := tx.Labs()
		for _, l := range labs {
			s := Summary{Name: l.Name, File: l.File, Objects: len(l.Objects), Applied: l.Applied}
			for k, o := range l.Objects {
				switch kindOf(k) {
				case kHost:
					s.Hosts++
				case kNetwork:
					s.Networks++
				case kNamespace, kShare:
					s.Namespaces++
				}
				if !o.Done {
					s.Unfinished++
				}
			}
			out = append(out, s)
		}
		return err
	})
	return out, err
}

// Info is `lab inspect`: what the lab has now, read from the store.
type Info struct {
	Name       string               `json:"name"`
	File       string               `json:"file"`
	Applied    time.Time            `json:"applied"`
	Hosts      []HostInfo           `json:"hosts"`
	Networks   []engine.NetworkInfo `json:"networks"`
	Namespaces []string             `json:"namespaces"`
	Links      []engine.LinkInfo    `json:"links,omitempty"`
	Taps       []engine.TapInfo     `json:"taps,omitempty"`
	Routes     []RouteInfo          `json:"routes,omitempty"`
	// Unfinished lists objects an interrupted apply claimed but did not
	// make; the next apply or destroy deals with them.
	Unfinished []string `json:"unfinished,omitempty"`
	// Model is the file as last applied.
	Model *topology.Lab `json:"-"`
}

// HostInfo is one simulated host.
type HostInfo struct {
	Name     string     `json:"name"`
	Underlay netip.Addr `json:"underlay,omitzero"`
	Forward  string     `json:"forward,omitempty"`
}

// RouteInfo is a route the lab put in a host.
type RouteInfo struct {
	Host string       `json:"host"`
	Dst  netip.Prefix `json:"dst"`
	Via  netip.Addr   `json:"via"`
}

// Inspect describes the lab called name.
func Inspect(m *engine.Manager, name string) (Info, error) {
	rec, err := readLab(m, name)
	if err != nil {
		return Info{}, err
	}
	info := Info{Name: rec.Name, File: rec.File, Applied: rec.Applied, Model: &topology.Lab{}}
	if err := json.Unmarshal(rec.Model, info.Model); err != nil {
		return info, fmt.Errorf("lab %q: read its model: %w", name, err)
	}
	links, err := m.Links()
	if err != nil {
		return info, err
	}
	taps, err := m.Taps()
	if err != nil {
		return info, err
	}
	under, forward := map[string]netip.Addr{}, map[string]string{}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range rec.Objects {
			if !yield(k) {
				return
			}
		}
	})
	for _, k := range keys {
		o := rec.Objects[k]
		if !o.Done {
			info.Unfinished = append(info.Unfinished, k)
			continue
		}
		f := strings.Fields(k)
		switch f[0] {
		case kHost:
			info.Hosts = append(info.Hosts, HostInfo{Name: f[1]})
		case kFirewall:
			var policy string
			json.Unmarshal([]byte(o.Spec), &policy) // written by specOf
			forward[f[1]] = policy
		case kNamespace, kShare:
			info.Namespaces = append(info.Namespaces, f[1])
		case kNetwork:
			n, err := m.Network(f[1])
			if err != nil {
				return info, err
			}
			if f[1] == info.Model.UnderlayName() {
				for _, mb := range n.Members {
					for _, a := range mb.Addrs {
						under[mb.Namespace] = a.Addr()
					}
				}
			}
			info.Networks = append(info.Networks, n)
		case kLink:
			for _, l := range links {
				if linkKey(l.NS1, l.NS2) == k {
					info.Links = append(info.Links, l)
				}
			}
		case kTap:
			for _, t := range taps {
				if t.Name == f[1] {
					info.Taps = append(info.Taps, t)
				}
			}
		case kRoute:
			var via netip.Addr
			json.Unmarshal([]byte(o.Spec), &via) // written by specOf
			info.Routes = append(info.Routes, RouteInfo{Host: f[1], Dst: netip.MustParsePrefix(f[2]), Via: via})
		}
	}
	for i := range info.Hosts {
		info.Hosts[i].Underlay = under[info.Hosts[i].Name]
		info.Hosts[i].Forward = forward[info.Hosts[i].Name]
	}
	return info, nil
}
