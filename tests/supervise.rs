//! Supervision that nothing can stall: an ignored SIGCHLD, a closed stderr, a DNS relay
//! whose upstream drops TCP, a command that ignores the stop signal.

mod common;
use common::world;

#[test]
fn an_ignored_sigchld_does_not_hang_nsrun() {
    world(
        r#"
        snapshot
        IGN='import os, signal, sys; signal.signal(signal.SIGCHLD, signal.SIG_IGN); os.execv(sys.argv[1], sys.argv[1:])'
        for mode in --no-net ""; do
          expect_code 3 timeout 10 python3 -c "$IGN" $NSRUN $mode -- sh -c 'exit 3'
        done
        expect_clean
        "#,
    );
}

#[test]
fn a_closed_stderr_does_not_lose_the_status() {
    world(
        r#"
        snapshot
        CLOSED='import subprocess, sys
p = subprocess.Popen(sys.argv[1:], stderr=subprocess.PIPE)
p.stderr.close()
print(p.wait())'
        for mode in --no-net ""; do
          expect_code 0 python3 -c "$CLOSED" $NSRUN $mode -v -- no-such-command-here
          expect_eq "$OUT" 127 "exit status with stderr a closed pipe ($mode)"
          expect_code 0 python3 -c "$CLOSED" $NSRUN $mode -v -- sh -c 'exit 4'
          expect_eq "$OUT" 4 "the command's status with stderr a closed pipe ($mode)"
        done
        expect_clean
        "#,
    );
}

#[test]
fn a_dns_relay_with_a_silent_upstream_does_not_delay_signals() {
    world(
        r#"
        start_dns - 127.0.0.1
        printf 'nameserver 127.0.0.1\n' >/etc/resolv.conf
        # The host's resolver answers UDP but its TCP connections go nowhere.
        nft add table ip blackhole
        nft add chain ip blackhole out '{ type filter hook output priority 0; }'
        nft add rule ip blackhole out ip daddr 127.0.0.1 tcp dport 53 tcp flags syn drop
        snapshot
        # 20 connections to the relay, whose upstream connects hang: 16 wait (the limit
        # counts them), 4 are closed at once; a UDP query meanwhile is answered at once.
        $NSRUN -- python3 -c '
import socket, time, os
import select
conns = []
for _ in range(20):
    # One at a time, each established before the next: the listen queue never
    # overflows into SYN retries, whatever the load.
    s = socket.socket(); s.setblocking(False)
    try: s.connect(("127.0.0.53", 53))
    except BlockingIOError: pass
    select.select([], [s], [], 2)
    conns.append(s)
def count_closed():
    n = 0
    for s in conns:
        try: n += s.recv(1) == b""
        except BlockingIOError: pass
        except OSError: n += 1
    return n
deadline = time.monotonic() + 3
closed = count_closed()
while closed < 4 and time.monotonic() < deadline:
    time.sleep(0.05); closed = count_closed()
q = bytes.fromhex("12340100000100000000000008") + b"upstream\x04test\x00\x00\x01\x00\x01"
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5)
start = time.monotonic(); u.sendto(q, ("127.0.0.53", 53)); answer = u.recv(512)
took = int((time.monotonic() - start) * 1000)
with open(os.path.join(os.environ["TMPDIR"], "result"), "w") as f:
    f.write("%d %d %d" % (closed, answer[:2] == q[:2], took < 1000))
open(os.path.join(os.environ["TMPDIR"], "opened"), "w").close()
time.sleep(60)' &
        pid=$!
        for _ in $(seq 250); do [ -e "$TMPDIR/opened" ] && break; sleep 0.02; done
        start=$(date +%s%N)
        kill -TERM $pid
        set +e; wait $pid; code=$?; set -e
        took=$(( ($(date +%s%N) - start) / 1000000 ))
        expect_eq "$code" 143 "SIGTERM reached the command"
        [ "$took" -lt 1500 ] || fail "SIGTERM took $took ms to end the sandbox"
        expect_eq "$(cat $TMPDIR/result)" "4 1 1" "connections over the limit closed, connecting ones counted; a UDP answer within 1 s"
        rm "$TMPDIR/opened" "$TMPDIR/result"
        expect_clean
        "#,
    );
}

#[test]
fn a_command_that_ignores_sigterm_is_killed_after_the_stop_timeout() {
    world(
        r#"
        snapshot
        for mode in --no-net ""; do
          $NSRUN $mode --stop-timeout 0.5 -- sh -c 'trap "" TERM; touch "$TMPDIR/trapped"; while :; do sleep 0.1; done' 2>"$WORK/err" &
          pid=$!
          for _ in $(seq 250); do [ -e "$TMPDIR/trapped" ] && break; sleep 0.02; done
          kill -TERM $pid
          set +e; wait $pid; code=$?; set -e
          expect_eq "$code" 137 "killed after the stop timeout ($mode)"
          expect_contains "$(cat $WORK/err)" "did not stop within 0.5s of SIGTERM" "says what it did ($mode)"
          rm "$TMPDIR/trapped"
        done
        expect_code 125 $NSRUN --stop-timeout soon -- true
        expect_contains "$ERR" "--stop-timeout 30" "a bad value names a valid one"
        expect_clean
        "#,
    );
}
