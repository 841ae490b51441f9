package speaker

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nsnet/nsnet/internal/kernel"
)

var prefixNet = kernel.PrefixNet

// ownRoutes lists the routes of the speaker's protocol in the main table,
// both families.
func ownRoutes() ([]netlink.Route, error) {
	filter := &netlink.Route{Protocol: RouteProto, Table: unix.RT_TABLE_MAIN}
	return kernel.Retry(func() ([]netlink.Route, error) {
		return netlink.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	})
}

// delRoute removes the speaker's route to p; one already gone is no error.
func delRoute(p netip.Prefix) error {
	r := &netlink.Route{Dst: prefixNet(p), Protocol: RouteProto}
	if err := netlink.RouteDel(r); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("remove route %s: %w", p, err)
	}
	return nil
}

// syncBlackholes makes the speaker's blackhole routes exactly want.
func syncBlackholes(want []netip.Prefix) error {
	rs, err := ownRoutes()
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	var errs []error
	have := map[netip.Prefix]bool{}
	for _, r := range rs {
		if r.Type != unix.RTN_BLACKHOLE {
			continue
		}
		p, _ := kernel.ToPrefix(r.Dst)
		if slices.Contains(want, p) {
			have[p] = true
			continue
		}
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("remove blackhole %s: %w", p, err))
		}
	}
	for _, p := range want {
		if have[p] {
			continue
		}
		r := &netlink.Route{Dst: prefixNet(p), Type: unix.RTN_BLACKHOLE, Protocol: RouteProto}
		if p.Addr().Is6() {
			r.Family = netlink.FAMILY_V6
		}
		if err := netlink.RouteReplace(r); err != nil {
			errs = append(errs, fmt.Errorf("blackhole %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}
