#!/usr/bin/env bash
# Applies a lab file with nsnet, shows it, proves it with a ping, and
# destroys it, without touching the real host: run it as
#   sudo unshare -n -m --propagation private ./examples/lab.sh examples/003-routed-two-hosts.yaml
# The private network namespace stands for the host; "outside" is one more
# namespace holding documentation addresses (203.0.113.0/24, 198.51.100.0/24),
# behind the host's uplink (also the parent of 004's macvlan network).
set -euo pipefail
file=${1:-examples/003-routed-two-hosts.yaml}
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
ip netns add outside
ip link add uplink type veth peer name eth0 netns outside
ip addr add 203.0.113.1/24 dev uplink && ip link set uplink up
ip route add default via 203.0.113.2
ip -n outside addr add 203.0.113.2/24 dev eth0
ip -n outside link set eth0 up && ip -n outside link set lo up

set -x
nsnet apply -f "$file" --dry-run
nsnet apply -f "$file"
nsnet apply -f "$file"                     # again: no changes
nsnet lab ls
name=$(nsnet lab ls -o json | sed -n 's/.*"name": "\(.*\)".*/\1/p' | head -1)
nsnet lab inspect "$name"
nsnet graph --lab "$name" --format mermaid
case "$file" in
  *003*) nsnet exec demo01 -- ping -c1 -W1 10.0.2.2 ;;   # across the two hosts
  *000*) nsnet exec red -- ping -c1 -W1 203.0.113.2 ;;   # the outside, masqueraded
  *001*) nsnet exec test1 -- ping -c1 -W1 192.168.1.2 ;;
  *002*) nsnet exec netns1 -- ping -c1 -W1 10.20.30.41 ;;
  *004*) nsnet exec client -- getent hosts web ;;
esac
nsnet destroy --lab "$name"
ip netns del outside
rm -rf "$NSNET_STATE_DIR"
