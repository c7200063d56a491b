//! Sandboxes started together: each one's network is whole before its command runs.
//! A sandbox's first packet is the one that counts: a connection whose first packet
//! meets a host that is not ready yet (no NAT, a guard that drops it) can stay broken
//! for its whole life, so these commands make one attempt each, with no retry.

mod common;
use common::world;

/// How many rounds of the concurrent start each test makes: a race that hits 1 in 200
/// sandboxes shows within a few rounds.
const ROUNDS: &str = "3";

#[test]
fn two_hundred_sandboxes_at_once_each_connect_on_their_first_try() {
    world(&format!(
        r#"
        start_upstream_http
        snapshot
        for round in $(seq {ROUNDS}); do
          pids=()
          for i in $(seq 200); do
            # One SYN and its retransmissions within 3 s: no new connection.
            ( set +e; $NSRUN --user nobody -- curl -s -o /dev/null --max-time 3 -w '%{{http_code}}' http://198.51.100.1/ >"$WORK/out.$i" 2>"$WORK/err.$i"; echo $? >"$WORK/code.$i" ) &
            pids+=($!)
          done
          wait "${{pids[@]}}"
          failed=0
          for i in $(seq 200); do
            if [ "$(cat "$WORK/code.$i")" != 0 ] || [ "$(cat "$WORK/out.$i")" != 200 ]; then
              failed=$((failed + 1))
              echo "sandbox $i: exit $(cat "$WORK/code.$i"), [$(cat "$WORK/out.$i")] $(cat "$WORK/err.$i")" >&2
            fi
          done
          expect_eq "$failed" 0 "round $round: sandboxes whose only connection failed"
        done
        expect_clean
        "#
    ));
}

#[test]
fn a_hundred_sandboxes_at_once_each_get_their_one_dns_answer() {
    world(&format!(
        r#"
        start_dns up 198.51.100.1
        cat >"$WORK/query.py" <<'PY'
import socket
# One query for upstream.test, sent once: no retry, as a resolver's first try.
q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x08upstream\x04test\x00\x00\x01\x00\x01"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(q, ("198.51.100.1", 53))
try:
    a = s.recv(512)
    print("answered" if a[:2] == q[:2] and a[-4:] == bytes([198, 51, 100, 1]) else "wrong answer")
except socket.timeout:
    print("no answer")
PY
        chmod 644 "$WORK/query.py"
        snapshot
        for round in $(seq {ROUNDS}); do
          pids=()
          for i in $(seq 100); do
            ( set +e; $NSRUN --user nobody -- python3 "$WORK/query.py" >"$WORK/out.$i" 2>"$WORK/err.$i" ) &
            pids+=($!)
          done
          wait "${{pids[@]}}"
          failed=0
          for i in $(seq 100); do
            if [ "$(cat "$WORK/out.$i")" != answered ]; then
              failed=$((failed + 1))
              echo "sandbox $i: [$(cat "$WORK/out.$i")] $(cat "$WORK/err.$i")" >&2
            fi
          done
          expect_eq "$failed" 0 "round $round: sandboxes whose one query got no answer"
        done
        expect_clean
        "#
    ));
}
