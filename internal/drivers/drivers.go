// Package drivers is the registry of network drivers: the one place that
// maps a driver's name to its code. A new driver is a package under
// internal/driver/ and one line here.
package drivers

import (
	"fmt"
	"strings"

	"github.com/nsnet/nsnet/internal/driver"
	"github.com/nsnet/nsnet/internal/driver/bridge"
	"github.com/nsnet/nsnet/internal/driver/macvlan"
	"github.com/nsnet/nsnet/internal/driver/routed"
	"github.com/nsnet/nsnet/internal/store"
)

// Default is the driver of a network made without --driver.
const Default = "bridge"

// registry holds the drivers in the order they were registered, which is
// the order --help and errors list them in.
var registry []driver.Driver

func init() {
	for _, d := range []driver.Driver{bridge.Driver{}, routed.Driver{}, macvlan.Driver{}} {
		Register(d)
	}
}

// Register adds d under its name, replacing a driver of the same name
// (tests register fakes this way).
func Register(d driver.Driver) {
	for i, have := range registry {
		if have.Name() == d.Name() {
			registry[i] = d
			return
		}
	}
	registry = append(registry, d)
}

// Lookup returns the driver called name.
func Lookup(name string) (driver.Driver, error) {
	if name == "" {
		name = Default
	}
	for _, d := range registry {
		if d.Name() == name {
			return d, nil
		}
	}
	return nil, unknownError(fmt.Sprintf("driver %q is not supported (supported: %s)", name, strings.Join(Names(), ", ")))
}

// unknownError is driver.ErrUnknown with a message of its own.
type unknownError string

func (e unknownError) Error() string        { return string(e) }
func (e unknownError) Is(target error) bool { return target == driver.ErrUnknown }

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
	for _, d := range registry {
		out = append(out, d.Name())
	}
	return out
}

// All lists the registered drivers.
func All() []driver.Driver { return append([]driver.Driver(nil), registry...) }

// OptionOwner returns the driver that declares the option called name.
func OptionOwner(name string) (driver.Driver, bool) {
	for _, d := range registry {
		for _, o := range d.Options() {
			if o.Name == name {
				return d, true
			}
		}
	}
	return nil, false
}
