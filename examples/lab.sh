#!/usr/bin/env bash
# Applies a lab file with nsnet, shows it, proves it with a ping, and
# destroys it, without touching the real host: run it as
#   sudo unshare -n -m --propagation private ./examples/lab.sh examples/003-routed-two-hosts.yaml
# (examples/sandbox.sh makes the world it runs in).
file=${1:-examples/003-routed-two-hosts.yaml}
source "$(dirname "$0")/sandbox.sh"

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
  *005*) for i in $(seq 50); do nsnet exec bgp01 -- ping -c1 -W1 10.0.3.2 && break; sleep 0.2; done  # once BGP converged
         nsnet bgp show ;;
esac
nsnet destroy --lab "$name"
ip netns del outside
