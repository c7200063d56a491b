# The throwaway world nsrun's privileged tests run in. Sourced by a bash that
# tests/common/mod.rs starts under
#   unshare --net --mount --propagation private --pid --fork --kill-child --mount-proc
# so every link, route, table, mount and process made here dies with the world, and
# the real machine is never touched.
#
#   WORLD (this namespace, "the host"): eth0 198.51.100.2/24, default via 198.51.100.1
#     └─ veth ─ UPSTREAM netns "up" ("the internet"): 198.51.100.1/24 and 203.0.113.1/24
#
# Helpers fail loudly: every test script runs with `set -euo pipefail`.

set -euo pipefail

UPLINK_MTU=${UPLINK_MTU:-1400}

fail() { echo "FAIL: $*" >&2; exit 1; }

# expect_eq ACTUAL EXPECTED WHAT
expect_eq() { [ "$1" == "$2" ] || fail "$3: expected [$2], got [$1]"; }

# expect_contains HAYSTACK NEEDLE WHAT
expect_contains() { [[ "$1" == *"$2"* ]] || fail "$3: [$2] not in [$1]"; }

expect_not_contains() { [[ "$1" != *"$2"* ]] || fail "$3: [$2] unexpectedly in [$1]"; }

# expect_code EXPECTED CMD...: runs CMD, checks its exit code, keeps its output in $OUT/$ERR.
expect_code() {
  local want=$1; shift
  set +e
  "$@" >"$WORK/out" 2>"$WORK/err"
  local got=$?
  set -e
  OUT=$(cat "$WORK/out"); ERR=$(cat "$WORK/err")
  [ "$got" == "$want" ] || fail "exit code of [$*]: expected $want, got $got; stdout [$OUT] stderr [$ERR]"
}

in_up() { ip netns exec up "$@"; }

world_setup() {
  # /run of the world is its own tmpfs, and the test's files live there: nothing a test
  # writes reaches the machine. (/tmp stays as it is: the checkout may live under it.)
  mount -t tmpfs tmpfs /run
  WORK=$(mktemp -d /run/world.XXXXXX)
  chmod 755 "$WORK"
  mkdir -m 1777 "$WORK/tmp"
  export TMPDIR=$WORK/tmp
  ip link set lo up
  ip netns add up
  ip link add eth0 mtu "$UPLINK_MTU" type veth peer name up0 netns up
  # No IPv6 link-local address appearing on its own after the snapshot.
  ip link set eth0 addrgenmode none
  ip addr add 198.51.100.2/24 dev eth0
  ip link set eth0 up
  in_up ip link set lo up
  in_up ip addr add 198.51.100.1/24 dev up0
  in_up ip addr add 203.0.113.1/24 dev lo
  in_up ip link set up0 mtu "$UPLINK_MTU" up
  ip route add default via 198.51.100.1
  # The world's /etc is an overlay on the real one: tests may replace resolv.conf by a
  # symlink, rename over it or delete it; the real /etc never sees it.
  mkdir -p "$WORK/etc-upper" "$WORK/etc-work"
  mount -t overlay overlay -o "lowerdir=/etc,upperdir=$WORK/etc-upper,workdir=$WORK/etc-work" /etc
  rm -f /etc/resolv.conf
  printf 'nameserver 198.51.100.1\nsearch corp.test\noptions edns0\n' >/etc/resolv.conf
}

# An HTTP server in the upstream that answers every GET with the client address it saw.
start_upstream_http() {
  cat >"$WORK/upstream_server.py" <<'PY'
import http.server, socketserver, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (self.client_address[0] + "\n").encode()
        if self.path.startswith("/big"):
            body = b"x" * 200000 + b"\n"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
socketserver.TCPServer.allow_reuse_address = True
# Many sandboxes may connect at once: a listen queue that overflows would drop SYNs.
socketserver.TCPServer.request_queue_size = 1024
socketserver.ThreadingTCPServer.daemon_threads = True
with socketserver.ThreadingTCPServer((sys.argv[1], int(sys.argv[2])), H) as s:
    s.serve_forever()
PY
  in_up python3 "$WORK/upstream_server.py" 0.0.0.0 80 &
  wait_port up 198.51.100.1 80
}

# published_service FLAGS...: a sandbox (as nobody, with FLAGS such as -p 8080:80) that
# runs the upstream HTTP server on its port 80, listening once this returns; the pid of
# its nsrun in $SERVICE.
published_service() {
  $NSRUN "$@" --user nobody -- python3 "$WORK/upstream_server.py" 0.0.0.0 80 &
  SERVICE=$!
  wait_sandbox_up $SERVICE
  wait_port - "$(sandbox_addr $SERVICE)" 80
}

# behind_host NETNS HOST_LINK HOST_ADDR/LEN PEER_ADDR PORT: a network behind the host: a
# namespace on a veth from the host, routed through it, with an HTTP server on PORT that
# answers with the client address it saw.
behind_host() {
  local ns=$1 link=$2 host_addr=$3 peer=$4 port=$5 len=${3#*/}
  ip netns add "$ns"
  ip link add "$link" type veth peer name peer0 netns "$ns"
  ip link set "$link" addrgenmode none
  ip addr add "$host_addr" dev "$link"
  ip link set "$link" up
  ip netns exec "$ns" ip addr add "$peer/$len" dev peer0
  ip netns exec "$ns" ip link set peer0 up
  ip netns exec "$ns" ip link set lo up
  ip netns exec "$ns" ip route add default via "${host_addr%/*}"
  ip netns exec "$ns" python3 "$WORK/upstream_server.py" 0.0.0.0 "$port" &
  wait_port "$ns" "$peer" "$port"
}

# udp_log NETNS|- PORT FILE: a UDP listener on 0.0.0.0:PORT that appends the source
# address of every datagram to FILE (emptied first), running once this returns.
udp_log() {
  local ns=$1 port=$2 file=$3 run=()
  [ "$ns" = - ] || run=(ip netns exec "$ns")
  : >"$file"
  "${run[@]}" python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
out = open(sys.argv[2], "a", buffering=1)
while True:
    data, peer = s.recvfrom(2048); out.write(peer[0] + "\n")' "$port" "$file" &
  for _ in $(seq 100); do "${run[@]}" ss -lun | grep -q ":$port " && return 0; sleep 0.02; done
  fail "no UDP listener on port $port in $ns"
}

# start_dns NETNS|- ADDR: a DNS server (UDP and TCP) with fixed records.
start_dns() {
  local ns=$1 addr=$2 run=()
  [ "$ns" = - ] || run=(ip netns exec "$ns")
  "${run[@]}" dnsmasq --keep-in-foreground --no-resolv --no-hosts --bind-interfaces \
    --listen-address="$addr" --pid-file= --user=root --port=53 \
    --address=/upstream.test/198.51.100.1 --address=/www.corp.test/203.0.113.7 &
  wait_port "$ns" "$addr" 53
}

# resolve NAME: what the sandbox's resolver library says, through nsswitch and resolv.conf.
RESOLVE="getent ahostsv4"

# wait_port NETNS|- ADDR PORT: until a TCP listener answers.
wait_port() {
  local ns=$1 addr=$2 port=$3
  for _ in $(seq 100); do
    if [ "$ns" = - ]; then
      timeout 1 bash -c "exec 3<>/dev/tcp/$addr/$port" 2>/dev/null && return 0
    else
      ip netns exec "$ns" timeout 1 bash -c "exec 3<>/dev/tcp/$addr/$port" 2>/dev/null && return 0
    fi
    sleep 0.05
  done
  fail "nothing listens on $addr:$port in $ns"
}

# What must be the same before and after nsrun: links, addresses, routes, nf_tables,
# mounts, processes.
world_state() {
  {
    echo "## links"; ip -o link show | sed -E 's/^[0-9]+: //; s/ qlen [0-9]+//' | awk '{print $1, $2}' | sort
    echo "## addrs"; ip -o addr show | awk '{print $2, $3, $4}' | sort
    echo "## routes"; ip route show table all | sort
    echo "## nft"; nft -s list ruleset 2>/dev/null
    # (A sandbox's link may vanish between the glob and the read.)
    echo "## sysctl"; { grep -Hs . /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/conf/*/forwarding || true; } | grep -v '/conf/nsr'
    # iptables-legacy, only where its filter table exists (asking would load it).
    if grep -qx filter /proc/net/ip_tables_names 2>/dev/null; then
      echo "## iptables-legacy"; iptables-legacy-save -t filter | grep -v '^#' | sed -E 's/\[[0-9]+:[0-9]+\]//'
    fi
    echo "## mounts"; awk '{print $5, $9, $10}' /proc/self/mountinfo | sort
    echo "## procs"; ps -e -o comm= | grep -v -x -e ps -e sort -e sed -e awk -e grep -e bash -e sleep -e cmp | grep -v "^pyenv" | sort || true
  }
}

snapshot() { world_state >"$WORK/before"; }

# Fails when the world differs from the snapshot. The host end of a veth goes away a
# moment after its sandbox's namespace dies, so give the kernel a little time.
expect_clean() {
  for _ in $(seq 60); do
    world_state >"$WORK/after"
    cmp -s "$WORK/before" "$WORK/after" && return 0
    sleep 0.1
  done
  diff -u "$WORK/before" "$WORK/after" >&2 || true
  fail "the world is not as it was before nsrun ran"
}

# The host's NAT table, kept by nsrun's holder while sandboxes run (0 or 1).
holder_tables() { nft list tables 2>/dev/null | grep -c '^table inet nsrun$' || true; }

# Until the holder (and its table) of earlier runs is gone.
wait_holder_gone() {
  for _ in $(seq 200); do
    [ "$(holder_tables)" = 0 ] && ! pgrep -x nsrun-holder >/dev/null && return 0
    sleep 0.02
  done
  fail "nsrun-holder did not exit"
}

# sandbox_init NSRUN_PID: the sandbox's init (nsrun's child in its own namespaces).
sandbox_init() {
  local init
  for _ in $(seq 200); do
    init=$(pgrep -P "$1" | head -1)
    [ -n "$init" ] && [ "$(readlink /proc/$init/ns/net)" != "$(readlink /proc/self/ns/net)" ] && { echo "$init"; return; }
    kill -0 "$1" 2>/dev/null || fail "nsrun $1 exited before its sandbox came up"
    sleep 0.02
  done
  fail "no sandbox init under nsrun $1"
}

# in_sandbox NSRUN_PID CMD...: runs CMD as the world's root in the sandbox's netns.
in_sandbox() { local pid=$1; shift; nsenter --net=/proc/$(sandbox_init "$pid")/ns/net "$@"; }

# wait_sandbox_up NSRUN_PID: until the sandbox's eth0 has its address (the command runs).
wait_sandbox_up() {
  for _ in $(seq 200); do
    in_sandbox "$1" ip -4 -o addr show eth0 2>/dev/null | grep -q inet && return 0
    kill -0 "$1" 2>/dev/null || fail "nsrun $1 exited before its sandbox came up"
    sleep 0.02
  done
  fail "the sandbox of nsrun $1 never came up"
}

# The address of the sandbox of nsrun NSRUN_PID.
sandbox_addr() { in_sandbox "$1" ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1; }

# count_sleeps PATTERN: how many `sleep` processes have PATTERN in their command line
# (pgrep -f would also match the test script's own bash).
count_sleeps() { pgrep -a -x sleep | grep -c -E "$1" || true; }
