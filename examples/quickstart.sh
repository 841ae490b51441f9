#!/usr/bin/env bash
# Rebuilds article 000's topology with nsnet, without touching the real host:
# run it as `sudo unshare -n -m --propagation private ./examples/quickstart.sh`.
# The private network namespace stands for the host; "outside" is one more
# namespace holding documentation addresses (203.0.113.0/24, 198.51.100.0/24).
set -euo pipefail
# Refuse unless this is provably another namespace than init's: one that
# cannot be told apart (/proc/1 unreadable, say) counts as the machine's.
self_ns=$(readlink /proc/self/ns/net 2>/dev/null || true)
init_ns=$(readlink /proc/1/ns/net 2>/dev/null || true)
if [ -z "$self_ns" ] || [ -z "$init_ns" ] || [ "$self_ns" = "$init_ns" ]; then
  echo "refusing to run in the machine's own network namespace (or one that cannot be told apart from it); see the comment at the top" >&2
  exit 1
fi
mkdir -p /run/netns /etc/netns
mount -t tmpfs tmpfs /run/netns
mount -t tmpfs tmpfs /etc/netns
export NSNET_STATE_DIR=$(mktemp -d)
ip link set lo up

# The outside world, behind the host's default route.
ip netns add outside
ip link add uplink type veth peer name eth0 netns outside
ip addr add 203.0.113.1/24 dev uplink && ip link set uplink up
ip route add default via 203.0.113.2
ip -n outside addr add 203.0.113.2/24 dev eth0
ip -n outside addr add 198.51.100.10/32 dev lo
ip -n outside link set eth0 up && ip -n outside link set lo up

set -x
nsnet ns create red
nsnet ns create green
nsnet net create vnet --subnet 192.168.20.0/24 --bridge-name vnet-br0
nsnet net connect vnet red
nsnet net connect vnet green
nsnet net inspect vnet
nsnet ns inspect red
nsnet exec red -- ping -c1 -W1 192.168.20.3      # green
nsnet exec red -- ping -c1 -W1 192.168.20.1      # the gateway on the bridge
ping -c1 -W1 192.168.20.2                        # the host reaches red
nsnet exec green -- ping -c1 -W1 198.51.100.10   # the outside, masqueraded
nft list table inet nsnet
nsnet ns rm red
nsnet ns rm green
nsnet net rm vnet
