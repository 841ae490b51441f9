// Package drivers is the registry of network drivers: the one place that
// maps a driver's name to its code. A new driver is a package under
// internal/driver/ and one line here.
package drivers

import (
	"fmt"
	"sort"
	"strings"

	"github.com/nsnet/nsnet/internal/driver"
	"github.com/nsnet/nsnet/internal/driver/bridge"
	"github.com/nsnet/nsnet/internal/driver/macvlan"
	"github.com/nsnet/nsnet/internal/driver/routed"
	"github.com/nsnet/nsnet/internal/store"
)

// Default is the driver of a network made without --driver.
const Default = "bridge"

var registry = map[string]driver.Driver{}

func init() {
	for _, d := range []driver.Driver{bridge.Driver{}, routed.Driver{}, macvlan.Driver{}} {
		Register(d)
	}
}

// Register adds d under its name, replacing a driver of the same name
// (tests register fakes this way).
func Register(d driver.Driver) { registry[d.Name()] = d }

// Lookup returns the driver called name.
func Lookup(name string) (driver.Driver, error) {
	if name == "" {
		name = Default
	}
	d, ok := registry[name]
	if !ok {
		return nil, fmt.Errorf("driver %q is not supported (supported: %s): %w", name, strings.Join(Names(), ", "), driver.ErrUnknown)
	}
	return d, nil
}

// Of returns network n's driver.
func Of(n store.Network) (driver.Driver, error) { return Lookup(n.Driver) }

// Caps returns the capabilities of network n's driver; an unknown driver
// (a store written by a newer nsnet) has none.
func Caps(n store.Network) driver.Capabilities {
	d, err := Of(n)
	if err != nil {
		return driver.Capabilities{}
	}
	return d.Caps()
}

// ForOp returns the driver of the network an operation is about. Journal
// entries written before operations named their driver carry its devices
// only: a member with no host end was a macvlan's.
func ForOp(op store.Op) (driver.Driver, error) {
	if op.Driver != "" {
		return Lookup(op.Driver)
	}
	if op.HostIf == "" && op.Kind != store.OpNetCreate && op.Kind != store.OpNetRemove {
		return Lookup(macvlan.Driver{}.Name())
	}
	return Lookup(Default)
}

// Names lists the registered drivers.
func Names() []string {
	var out []string
	for n := range registry {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
