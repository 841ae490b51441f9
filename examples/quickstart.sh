#!/usr/bin/env bash
# Rebuilds article 000's topology with nsnet, without touching the real host:
# run it as `sudo unshare -n -m --propagation private ./examples/quickstart.sh`
# (examples/sandbox.sh makes the world it runs in).
source "$(dirname "$0")/sandbox.sh"

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
