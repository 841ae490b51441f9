package engine

import (
	"github.com/nsnet/nsnet/internal/drivers"
	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/plumb"
	"github.com/nsnet/nsnet/internal/store"
)

// unplug removes a member's devices, knowing only the journal's names.
func (m *Manager) unplug(op store.Op) error {
	d, err := drivers.ForOp(op)
	if err != nil {
		return err
	}
	// Only a driver with a host end needs the host: a macvlan member's
	// device is in its own namespace, whatever became of the host.
	var h *kernel.NS
	if d.Caps().HostEnd {
		if h, err = m.opHost(op); err != nil {
			return err
		}
	}
	return d.Unplug(h, op)
}

// restoreRoutes puts back the default routes an undone connect replaced,
// those whose interface is still there; routes still there (of another
// metric, which the connect left alone) stay as they are. The new default
// route went with the connect's own device.
func (m *Manager) restoreRoutes(op store.Op) error {
	if len(op.Routes) == 0 {
		return nil
	}
	ns, err := m.openNamespace(op.Namespace)
	if plumb.Gone(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer ns.Close()
	return plumb.RestoreRoutes(ns, op.Routes, op.Namespace)
}
