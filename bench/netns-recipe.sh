#!/usr/bin/env bash
# The recipe tutorials teach, as one command: netns, veth, addresses, route, forwarding,
# masquerade, resolv.conf, exec, teardown. The baseline nsrun is measured against.
# Usage: netns-recipe.sh COMMAND [ARG]...   (root; run it inside a throwaway world only)
set -e
ns=recipe$$
host=vr$$
ip netns add "$ns"
ip link add "$host" type veth peer name eth0 netns "$ns"
ip addr add 10.250.0.1/30 dev "$host"
ip link set "$host" up
ip -n "$ns" link set lo up
ip -n "$ns" addr add 10.250.0.2/30 dev eth0
ip -n "$ns" link set eth0 up
ip -n "$ns" route add default via 10.250.0.1
sysctl -qw net.ipv4.ip_forward=1
nft add table ip "$ns"
nft add chain ip "$ns" post '{ type nat hook postrouting priority srcnat; }'
nft add rule ip "$ns" post ip saddr 10.250.0.0/30 oifname != "$host" masquerade
mkdir -p "/etc/netns/$ns"
cp /etc/resolv.conf "/etc/netns/$ns/resolv.conf"
set +e
ip netns exec "$ns" "$@"
rc=$?
nft delete table ip "$ns"
ip netns del "$ns"
rm -rf "/etc/netns/$ns"
exit $rc
