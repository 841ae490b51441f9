# Sourced by the example scripts: makes the private namespaces they run in
# the host of a small world, and refuses to run anywhere else. Run the
# scripts as `sudo unshare -n -m --propagation private ./examples/SCRIPT`:
# the private network namespace stands for the host; "outside" is one more
# namespace holding documentation addresses (203.0.113.0/24,
# 198.51.100.0/24), behind the host's uplink.
set -euo pipefail
# Refuse unless this is provably another namespace than init's: one that
# cannot be told apart (/proc/1 unreadable, say) counts as the machine's.
self_ns=$(readlink /proc/self/ns/net 2>/dev/null || true)
init_ns=$(readlink /proc/1/ns/net 2>/dev/null || true)
if [ -z "$self_ns" ] || [ -z "$init_ns" ] || [ "$self_ns" = "$init_ns" ]; then
  echo "refusing to run in the machine's own network namespace (or one that cannot be told apart from it); see examples/sandbox.sh" >&2
  exit 1
fi
mkdir -p /run/netns /etc/netns
mount -t tmpfs tmpfs /run/netns
mount -t tmpfs tmpfs /etc/netns
export NSNET_STATE_DIR=$(mktemp -d)
trap 'rm -rf "$NSNET_STATE_DIR"' EXIT
ip link set lo up

# The outside world, behind the host's default route; the uplink is also
# the parent of example 004's macvlan network.
ip netns add outside
ip link add uplink type veth peer name eth0 netns outside
ip addr add 203.0.113.1/24 dev uplink && ip link set uplink up
ip route add default via 203.0.113.2
ip -n outside addr add 203.0.113.2/24 dev eth0
ip -n outside addr add 198.51.100.10/32 dev lo
ip -n outside link set eth0 up && ip -n outside link set lo up
