package resolver

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// Upstreams returns the name servers listed in the resolv.conf file at path,
// in file order, each on port 53. It only parses: every "nameserver" line
// with an IPv4 or IPv6 address (with a zone, as in fe80::1%eth0) counts,
// including loopback addresses such as systemd-resolved's 127.0.0.53 stub.
// Those are reachable from the resolver when it runs in the namespace the
// file belongs to, and only the caller knows whether it does. There is no
// limit of three servers as in the C library. Lines that do not parse are
// skipped, as the C library skips them, so that one bad line does not cost
// every upstream. A file with no name servers gives an empty list and no
// error; the C library's fallback to the local host is not applied.
func Upstreams(resolvConfPath string) ([]netip.AddrPort, error) {
	f, err := os.Open(resolvConfPath)
	if err != nil {
		return nil, fmt.Errorf("resolver: read name servers: %w", err)
	}
	defer f.Close()
	var ups []netip.AddrPort
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// Comments start with '#' or ';' in the first column; the fields
		// after the address (a trailing comment, say) are ignored.
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(fields[1])
		if err != nil {
			continue
		}
		ups = append(ups, netip.AddrPortFrom(a.Unmap(), 53))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("resolver: read name servers from %s: %w", resolvConfPath, err)
	}
	return ups, nil
}
