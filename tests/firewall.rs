//! The firewall's promises (firewall.rs): fail closed whatever happens to nsrun, the host
//! closed before any DNAT it does, nothing left that keeps a way to the host, no stale
//! state trusted, and remains inert the moment nsrun returns.

mod common;
use common::world;

/// A host UDP listener on 0.0.0.0:7777 that appends one line per packet to $WORK/got,
/// and a streamer the sandbox runs: UDP to its gateway and to the host's uplink address,
/// as fast as it can, announcing in $TMPDIR/streaming once it has sent 200 packets.
const UDP_WORLD: &str = r#"
cat >"$WORK/stream.py" <<'PY'
import socket, subprocess, os, sys
gw = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout.split()[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
n = 0
while True:
    for dst in (gw, "198.51.100.2"):
        try:
            s.sendto(b"x", (dst, 7777))
        except OSError:
            pass
    n += 1
    if n == 200:
        open(os.path.join(os.environ["TMPDIR"], "streaming"), "w").close()
PY
udp_log - 7777 "$WORK/got"
# The listener counts what reaches it: check that it would see a packet at all.
python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("198.51.100.2", 7777))'
for _ in $(seq 100); do [ -s "$WORK/got" ] && break; sleep 0.02; done
expect_eq "$(wc -l <"$WORK/got")" 1 "the listener hears a probe"
: >"$WORK/got"
wait_streaming() {
  for _ in $(seq 250); do [ -e "$TMPDIR/streaming" ] && return 0; sleep 0.02; done
  fail "the sandbox never streamed"
}
"#;

#[test]
fn kill_9_of_nsrun_never_lets_a_blocked_packet_through() {
    world(&format!(
        r#"{UDP_WORLD}
        snapshot
        for i in $(seq 20); do
          rm -f "$TMPDIR/streaming"
          $NSRUN -- python3 "$WORK/stream.py" &
          pid=$!
          wait_streaming
          kill -9 $pid
          wait $pid || true
        done
        # The same when nsrun fails on an error while the command runs.
        for i in $(seq 5); do
          rm -f "$TMPDIR/streaming"
          NSRUN_FAILPOINT=supervise:error $NSRUN -- python3 "$WORK/stream.py" &
          pid=$!
          wait_streaming
          set +e; wait $pid; code=$?; set -e
          expect_eq "$code" 125 "nsrun failed at the injected error"
        done
        expect_clean
        expect_eq "$(wc -l <"$WORK/got")" 0 "packets from sandboxes that reached the host's listener"
        "#
    ));
}

#[test]
fn a_crash_or_error_at_every_step_leaves_nothing_and_never_opens_the_filter() {
    world(&format!(
        r#"{UDP_WORLD}
        snapshot
        for step in start after-clone init-table after-veth after-address after-nat after-forwarding after-go supervise after-status init-network; do
          for action in kill error; do
            rm -f "$TMPDIR/streaming"
            set +e
            NSRUN_FAILPOINT=$step:$action $NSRUN -- timeout 0.6 python3 "$WORK/stream.py" >"$WORK/out" 2>"$WORK/err"
            code=$?
            set -e
            case $action in
              # The init's own failure is nsrun's failure: 125.
              kill) case $step in init-*) want=125 ;; *) want=137 ;; esac
                    expect_eq "$code" $want "nsrun killed at $step" ;;
              error) expect_eq "$code" 125 "nsrun failed at $step"
                     expect_contains "$(cat $WORK/err)" "failpoint" "the error names the step ($step)" ;;
            esac
            expect_clean
          done
        done
        expect_eq "$(wc -l <"$WORK/got")" 0 "packets from sandboxes that reached the host's listener"
        "#
    ));
}

#[test]
fn ports_the_host_publishes_with_dnat_are_the_host() {
    world(
        r#"
        start_upstream_http
        # A Docker-like bridge with a container behind it, published on the host's port
        # 8088, and a NodePort-like rule on 30080, both DNAT in prerouting and output.
        behind_host ctr docker0 172.17.0.1/16 172.17.0.2 80
        echo 1 >/proc/sys/net/ipv4/conf/docker0/forwarding
        nft -f - <<'NFT'
table ip nat {
  chain prerouting { type nat hook prerouting priority dstnat;
    fib daddr type local tcp dport 8088 dnat to 172.17.0.2:80
    fib daddr type local tcp dport 30080 dnat to 172.17.0.2:80
  }
  chain output { type nat hook output priority -100;
    fib daddr type local tcp dport 8088 dnat to 172.17.0.2:80
  }
  chain postrouting { type nat hook postrouting priority srcnat;
    ip saddr 172.17.0.0/16 oifname != "docker0" masquerade
  }
}
NFT
        expect_code 0 curl -s --max-time 2 http://198.51.100.2:8088/
        expect_eq "$OUT" 198.51.100.2 "the host reaches its published port"
        snapshot
        expect_code 0 $NSRUN -- sh -c 'gw=$(ip route | awk "/default/ {print \$3}")
          curl -s --max-time 2 http://198.51.100.2:8088/ || echo published-closed
          curl -s --max-time 2 http://$gw:8088/ || echo published-on-gateway-closed
          curl -s --max-time 2 http://198.51.100.2:30080/ || echo nodeport-closed
          curl -s --max-time 2 http://$gw:30080/ || echo nodeport-on-gateway-closed'
        expect_eq "$(echo $OUT)" "published-closed published-on-gateway-closed nodeport-closed nodeport-on-gateway-closed" "DNAT-published ports from a sandbox"
        expect_code 0 $NSRUN --allow-host -- sh -c 'curl -s --max-time 2 http://198.51.100.2:8088/ && curl -s --max-time 2 http://198.51.100.2:30080/'
        expect_eq "$(echo $OUT | wc -w)" 2 "--allow-host opens them"
        expect_clean
        "#,
    );
}

#[test]
fn a_host_address_added_while_the_sandbox_runs_is_closed_too() {
    world(
        r#"
        python3 -m http.server --bind 0.0.0.0 8080 >/dev/null 2>&1 &
        wait_port - 127.0.0.1 8080
        snapshot
        ip addr add 203.0.113.77/32 dev lo
        $NSRUN -- sh -c 'while [ ! -e "$TMPDIR/go" ]; do sleep 0.05; done
          curl -s --max-time 2 -o /dev/null http://203.0.113.88:8080/ && echo new-address-open || echo new-address-closed
          curl -s --max-time 2 -o /dev/null http://203.0.113.77:8080/ && echo old-address-open || echo old-address-closed' >"$WORK/out" &
        pid=$!
        wait_sandbox_up $pid
        ip addr add 203.0.113.88/32 dev lo
        for _ in $(seq 100); do in_sandbox $pid nft list chain inet nsrun host | grep -q 203.0.113.88 && break; sleep 0.02; done
        touch "$TMPDIR/go"
        wait $pid
        expect_eq "$(cat $WORK/out | tr '\n' ' ')" "new-address-closed old-address-closed " "host addresses, old and new"
        ip addr del 203.0.113.88/32 dev lo
        ip addr del 203.0.113.77/32 dev lo
        rm "$TMPDIR/go"
        expect_clean
        "#,
    );
}

#[test]
fn a_socket_passed_out_of_the_sandbox_reaches_nothing_of_the_host() {
    world(
        r#"
        : >"$WORK/got"
        cat >"$WORK/listen.py" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, int(sys.argv[1]))
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7777))
out = open(sys.argv[2], "a", buffering=1)
if sys.argv[1] == "1":
    s.listen()
    while True:
        c, peer = s.accept(); out.write("tcp " + peer[0] + "\n"); c.close()
while True:
    data, peer = s.recvfrom(2048); out.write("udp " + peer[0] + "\n")
PY
        python3 "$WORK/listen.py" 2 "$WORK/got" &
        python3 "$WORK/listen.py" 1 "$WORK/got" &
        wait_port - 127.0.0.1 7777
        for _ in $(seq 100); do grep -q tcp "$WORK/got" && break; sleep 0.02; done
        : >"$WORK/got"
        # Outside: a process that receives sockets over a unix socket and, once nsrun has
        # exited, tries them against the host's services.
        cat >"$WORK/catch.py" <<'PY'
import array, os, socket, sys, time
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(sys.argv[1]); srv.listen(); os.chmod(sys.argv[1], 0o777)
c, _ = srv.accept()
msg, anc, _, _ = c.recvmsg(16, socket.CMSG_SPACE(8))
fds = array.array("i"); fds.frombytes(anc[0][2][:8])
udp = socket.socket(fileno=fds[0]); tcp = socket.socket(fileno=fds[1])
open(sys.argv[2], "w").close()
while not os.path.exists(sys.argv[3]):
    time.sleep(0.02)
results = []
for dst in ("198.51.100.2", msg.decode()):
    try:
        udp.sendto(b"x", (dst, 7777)); results.append("udp-sent")
    except OSError as e:
        results.append("udp-" + e.__class__.__name__)
tcp.settimeout(1)
try:
    tcp.connect(("198.51.100.2", 7777)); results.append("tcp-connected")
except OSError as e:
    results.append("tcp-" + e.__class__.__name__)
print(" ".join(results))
PY
        snapshot
        python3 "$WORK/catch.py" "$TMPDIR/pass.sock" "$TMPDIR/caught" "$TMPDIR/exited" >"$WORK/catch.out" &
        catcher=$!
        for _ in $(seq 100); do [ -S "$TMPDIR/pass.sock" ] && break; sleep 0.02; done
        expect_code 0 $NSRUN -- python3 -c '
import array, socket, subprocess, sys
gw = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout.split()[2]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); t = socket.socket()
c = socket.socket(socket.AF_UNIX); c.connect(sys.argv[1])
c.sendmsg([gw.encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [u.fileno(), t.fileno()]))])
import os, time
while not os.path.exists(sys.argv[2]): time.sleep(0.02)
' "$TMPDIR/pass.sock" "$TMPDIR/caught"
        # nsrun has returned; the sandbox's namespace lives on in the catcher's sockets.
        for _ in $(seq 100); do ip -o link show | grep -q nsr || break; sleep 0.02; done
        expect_eq "$(ip -o link show | grep -c nsr || true)" 0 "the sandbox's link to the host is gone"
        touch "$TMPDIR/exited"
        wait $catcher
        expect_not_contains "$(cat $WORK/catch.out)" "tcp-connected" "TCP through a passed socket"
        sleep 0.2
        expect_eq "$(cat $WORK/got)" "" "what reached the host's services through passed sockets"
        rm -f "$TMPDIR/pass.sock" "$TMPDIR/caught" "$TMPDIR/exited"
        expect_clean
        "#,
    );
}

#[test]
fn stale_state_is_neither_trusted_nor_in_the_way() {
    world(
        r#"
        cat >"$WORK/listen.py" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 7777))
out = open(sys.argv[1], "a", buffering=1)
while True:
    data, peer = s.recvfrom(2048); out.write(data.decode() + "\n")
PY
        : >"$WORK/got"
        python3 "$WORK/listen.py" "$WORK/got" &
        for _ in $(seq 100); do ss -lun | grep -q ':7777 ' && break; sleep 0.02; done
        # Leftovers named like nsrun's: an old per-sandbox table, a table inet nsrun that
        # nobody owns.
        nft add table ip nsr02b20001
        nft add table inet nsrun
        nft add chain inet nsrun leftover
        SEND='import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 5000))
try:
    s.sendto(sys.argv[1].encode(), ("198.51.100.2", 7777)); print("sent")
except OSError as e:
    print("refused")'
        # A pool with room for one sandbox: both runs get the same address and port.
        expect_code 0 $NSRUN --pool 10.79.0.0/30 --allow-host -- python3 -c "$SEND" first
        for _ in $(seq 100); do grep -q first "$WORK/got" && break; sleep 0.02; done
        expect_eq "$(cat $WORK/got)" "first" "the --allow-host sandbox reached the host"
        wait_holder_gone
        expect_not_contains "$(nft list tables)" "table inet nsrun" "the stale table went with the holder"
        expect_contains "$(nft list tables)" "table ip nsr02b20001" "a foreign table is left alone"
        # The world as the stale state left it, less the stale table: the next run
        # leaves it as it is.
        snapshot
        expect_code 0 $NSRUN --pool 10.79.0.0/30 -- python3 -c "$SEND" second
        sleep 0.3
        expect_eq "$(cat $WORK/got)" "first" "a conntrack entry of an earlier sandbox opened the host"
        expect_clean
        nft delete table ip nsr02b20001
        "#,
    );
}

#[test]
fn back_to_back_runs_on_a_pool_for_one_all_succeed_and_leave_nothing_live() {
    world(
        r#"
        snapshot
        for i in $(seq 20); do
          expect_code 0 $NSRUN --pool 10.81.0.0/30 -- true
          # Inert from the moment nsrun returns: no sandbox link up, nothing routed to it.
          expect_eq "$(ip -o link show up | grep -c nsr || true)" 0 "a sandbox link is up after run $i"
          expect_eq "$(ip route show table all | grep -c 10.81.0 || true)" 0 "routes to the sandbox after run $i"
        done
        expect_clean
        "#,
    );
}

#[test]
fn wait_teardown_returns_with_nothing_left() {
    world(
        r#"
        snapshot
        for i in $(seq 100); do
          expect_code 0 $NSRUN --wait-teardown --pool 10.82.0.0/30 -- true
          world_state >"$WORK/after"
          cmp -s "$WORK/before" "$WORK/after" || { diff -u "$WORK/before" "$WORK/after" >&2; fail "something is left after --wait-teardown (run $i)"; }
        done
        "#,
    );
}

#[test]
fn spoofed_packets_and_connections_from_outside_are_dropped() {
    world(
        r#"
        udp_log up 5353 "$WORK/got"
        in_up ip route add 10.83.0.0/24 via 198.51.100.2
        snapshot
        $NSRUN --pool 10.83.0.0/24 -- python3 -m http.server --bind 0.0.0.0 8000 >/dev/null 2>&1 &
        pid=$!
        wait_sandbox_up $pid
        addr=$(sandbox_addr $pid)
        # Spoofing: a packet leaving the sandbox with a source that is not its own (sent
        # by the world's root inside it; the command itself has no CAP_NET_RAW).
        SPOOF='import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setsockopt(socket.SOL_IP, 19, 1); s.bind(("10.83.0.250", 0)); s.sendto(b"x", ("198.51.100.1", 5353))'
        expect_code 1 in_sandbox $pid python3 -c "$SPOOF"
        expect_contains "$ERR" "Operation not permitted" "the spoofed packet is dropped on its way out"
        # The real address gets through, masqueraded: the listener works.
        in_sandbox $pid python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("198.51.100.1", 5353))'
        for _ in $(seq 100); do [ -s "$WORK/got" ] && break; sleep 0.02; done
        sleep 0.2
        expect_eq "$(cat $WORK/got)" "198.51.100.2" "only the sandbox's own address leaves it"
        # Nobody connects into the sandbox but the host: the upstream, routed through the
        # host, is dropped; the host itself gets in.
        wait_port - $addr 8000
        expect_code 0 in_up sh -c "curl -s --max-time 1 -o /dev/null http://$addr:8000/ || echo closed"
        expect_eq "$OUT" "closed" "a connection from beyond the host"
        kill -TERM $pid; wait $pid || true
        expect_clean
        "#,
    );
}

/// One sandbox never reaches another, not even through a port the other publishes on
/// the host's address, with or without --allow-host (the host table's
/// `iifname "nsr*" oifname "nsr*" reject` is what closes it with --allow-host: the
/// sandbox's own table lets the host, and with it its DNATed ports, through).
#[test]
fn a_sandbox_never_reaches_another_through_its_published_port() {
    world(
        r#"
        start_upstream_http
        snapshot
        published_service -p 8080:80
        pid=$SERVICE
        expect_code 0 in_up curl -s --max-time 2 http://198.51.100.2:8080/
        expect_eq "$OUT" 198.51.100.1 "the internet reaches the published port"
        for flags in "" "--allow-host"; do
          expect_code 0 $NSRUN $flags --user nobody -- sh -c 'curl -s --max-time 2 http://198.51.100.2:8080/; echo "curl exit $?"'
          expect_eq "$OUT" "curl exit 7" "another sandbox through the host's address is refused at once [$flags]"
        done
        expect_code 0 $NSRUN --allow-host --user nobody -- sh -c 'curl -s --max-time 2 -o /dev/null -w "%{http_code}" http://198.51.100.1/ || echo closed'
        expect_eq "$OUT" 200 "the same sandbox still reaches the internet"
        kill -TERM $pid; wait $pid || true
        expect_clean
        "#,
    );
}
