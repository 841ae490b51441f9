// Package bench measures nsnet side by side with what users would use
// instead, in one run on one machine:
//
//   - attach and teardown latency of a namespace on a bridge network with a
//     gateway and masquerade, for N members, for nsnet, the same topology
//     built with ip/nft commands, the CNI reference plugins (bridge,
//     host-local, ipMasq), Podman's netavark, and a minimal Go program that
//     makes only the necessary netlink calls (the floor);
//   - the same on a routed network (article 003: a /32 per member behind a
//     proxy-ARP host end, no NAT), for nsnet, ip commands by hand, the CNI
//     ptp plugin and the floor (netavark has no routed mode);
//   - the per-port cost of published ports: nsnet, CNI portmap, netavark
//     (each a Publisher; one that cannot publish yet returns
//     errNotImplemented and its column says so);
//   - the data path: TCP throughput and request/response latency over a veth
//     pair, a bridge network, a bridge network with NAT and a routed network,
//     nsnet against the same topology built by hand;
//   - the peak memory of the nsnet process for each command;
//   - scale (issue 11): a thousand networks on one host (create, connect,
//     disconnect, published ports, early against late), and a host filled
//     with eleven thousand members, nsnet beside the floor in step;
//   - labs, doctor, BGP and clusters, each against its own baseline.
//
// Everything runs inside a sandbox: the process re-executes itself in a
// fresh network namespace and a private mount namespace with tmpfs on /run,
// /run/netns and /etc/netns (internal/nstest's, see SandboxTmpfs), and every
// measured tool keeps its state in a temporary directory there. The
// machine's own network namespace is never touched. Each tool run gets a
// namespace of its own as "the host", so no tool sees another's bridges or
// firewall rules. Measured processes are started, timed and weighed (peak
// resident set from wait4) by a small launcher process in that namespace
// (bench/cmd/launcher).
//
// Run drives a whole benchmark and Report turns its Results into
// docs/benchmarks.md and SVG plots. The command in bench/cmd/nsbench is
// what `make bench` runs; TestSmoke runs the smoke mode in CI.
package bench
