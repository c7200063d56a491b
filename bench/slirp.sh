#!/usr/bin/env bash
# Runs COMMAND in a new user + network namespace networked by slirp4netns (the baseline
# for user-mode networking). Usage: slirp.sh COMMAND [ARG]...
set -euo pipefail
d=$(mktemp -d)
mkfifo "$d/go" "$d/ready"
unshare --user --map-root-user --net sh -c 'read _ <"$0"; exec "$@"' "$d/go" "$@" &
child=$!
# slirp4netns must attach only once the child is in its own network namespace.
while [ "$(readlink /proc/$child/ns/net)" = "$(readlink /proc/self/ns/net)" ]; do sleep 0.001; done
slirp4netns --configure --mtu=65520 --disable-host-loopback --ready-fd=3 "$child" tap0 \
  3>"$d/ready" >/dev/null 2>&1 &
slirp=$!
read -r -n1 _ <"$d/ready"
echo go >"$d/go"
set +e
wait "$child"
rc=$?
kill "$slirp" 2>/dev/null
wait "$slirp" 2>/dev/null
rm -rf "$d"
exit $rc
