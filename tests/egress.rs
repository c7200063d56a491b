//! --allow and --deny: only the destinations a command needs, enforced by the kernel in
//! the sandbox's own table, for every program and protocol.

mod common;
use common::world;

#[test]
fn an_allow_list_opens_only_its_destinations_and_refuses_the_rest_at_once() {
    world(
        r#"
        start_upstream_http
        start_dns up 198.51.100.1
        udp_log up 9999 "$WORK/udp"
        snapshot
        probe='curl -s --max-time 2 -o /dev/null http://198.51.100.1/; echo "a $?"
          curl -s --max-time 2 -o /dev/null http://203.0.113.1/; echo "b $?"
          getent ahostsv4 upstream.test >/dev/null; echo "dns $?"
          python3 -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.sendto(b\"x\", (\"203.0.113.1\", 9999)); s.sendto(b\"x\", (\"203.0.113.1\", 9999)); print(\"udp sent\")
except OSError as e:
    print(\"udp refused\")"'
        expect_code 0 $NSRUN --allow 198.51.100.1:80 --user nobody -- sh -c "$probe"
        expect_eq "$(echo $OUT)" "a 0 b 7 dns 0 udp refused" "only 198.51.100.1:80, and the resolver"
        # The same from a file, with comments; a prefix and a port range.
        printf '# the web\n198.51.100.0/24:79-81/tcp  # http\n\n203.0.113.0/24\n' >"$WORK/policy.txt"
        expect_code 0 $NSRUN --allow-file "$WORK/policy.txt" --user nobody -- sh -c "$probe"
        expect_eq "$(echo $OUT)" "a 0 b 0 dns 0 udp sent" "--allow-file"
        # --deny wins over --allow, and alone narrows the default.
        expect_code 0 $NSRUN --allow-file "$WORK/policy.txt" --deny 203.0.113.1 --user nobody -- sh -c "$probe"
        expect_eq "$(echo $OUT)" "a 0 b 7 dns 0 udp refused" "--deny over --allow"
        expect_code 0 $NSRUN --deny 198.51.100.1:80 --user nobody -- sh -c "$probe"
        expect_eq "$(echo $OUT)" "a 7 b 0 dns 0 udp sent" "--deny alone"
        # The default refusals hold whatever the list says.
        expect_code 0 $NSRUN --allow 0.0.0.0/0 --user nobody -- sh -c 'curl -s --max-time 2 -o /dev/null http://198.51.100.2/; echo "host $?"'
        expect_eq "$OUT" "host 7" "the host stays closed"
        # Mistakes are named, with an example, and nothing starts.
        expect_code 125 $NSRUN --deny registry.example.org -- true
        expect_contains "$ERR" "--deny takes addresses and prefixes" "a name to --deny"
        expect_code 125 $NSRUN --allow 'bad..name' -- true
        expect_contains "$ERR" "not a host name" "a bad name"
        expect_code 125 $NSRUN --deny 203.0.113.1:0 -- true
        expect_contains "$ERR" "e.g. '--deny 203.0.113.0/24'" "a bad port"
        expect_code 125 $NSRUN --allow-file "$WORK/none.txt" -- true
        expect_contains "$ERR" "--allow-file $WORK/none.txt: no such file" "a missing file"
        expect_code 125 $NSRUN --no-net --allow 203.0.113.1 -- true
        wait_holder_gone
        expect_clean
        "#,
    );
}

/// --allow NAME: nsrun's resolver answers only allowed names (NXDOMAIN at once for the
/// rest), and the addresses it answered, and only those, become reachable, for any
/// program; no other nameserver is reachable.
#[test]
fn allowed_names_resolve_and_only_their_addresses_open() {
    world(
        r#"
        start_upstream_http
        start_dns up 198.51.100.1
        snapshot
        probe='curl -s --max-time 2 -o /dev/null http://upstream.test/; echo "name $?"
          getent ahostsv4 www.corp.test >/dev/null; echo "other-name $?"
          curl -s --max-time 2 -o /dev/null http://203.0.113.7/; echo "literal $?"
          python3 -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
q = bytes.fromhex(\"abcd01000001000000000000\") + b\"\\x03www\\x04corp\\x04test\\x00\\x00\\x01\\x00\\x01\"
try:
    s.sendto(q, (\"198.51.100.1\", 53)); s.recv(512); print(\"other-dns answered\")
except OSError:
    print(\"other-dns refused\")"'
        expect_code 0 $NSRUN --allow upstream.test:80 --user nobody -- sh -c "$probe"
        expect_eq "$(echo $OUT)" "name 0 other-name 2 literal 7 other-dns refused" "one name"
        # A domain: every name under it, and nothing else.
        expect_code 0 $NSRUN --allow '*.corp.test' --user nobody -- sh -c 'curl -s --max-time 2 -o /dev/null http://www.corp.test/; echo "under $?"; curl -s --max-time 2 -o /dev/null http://upstream.test/; echo "outside $?"'
        expect_eq "$(echo $OUT)" "under 0 outside 6" "*.corp.test"
        # The address of an allowed name is reachable only as the rule says (port 80).
        expect_code 0 $NSRUN --allow upstream.test:80 --user nobody -- sh -c 'getent ahostsv4 upstream.test >/dev/null; curl -s --max-time 2 -o /dev/null http://198.51.100.1:8080/; echo "other-port $?"'
        expect_eq "$OUT" "other-port 7" "another port of its address"
        wait_holder_gone
        expect_clean
        "#,
    );
}

/// -v and --refusals say what was refused, each destination once, with the name nsrun's
/// resolver gave it, for the default policy too; --audit refuses nothing of the lists
/// but reports what they would refuse; a flood of refused packets is reported once.
#[test]
fn refusals_are_reported_once_and_audit_refuses_nothing() {
    world(
        r#"
        start_upstream_http
        start_dns up 198.51.100.1
        snapshot
        probe='curl -s --max-time 2 -o /dev/null http://upstream.test/; echo "name $?"
          getent ahostsv4 www.corp.test >/dev/null; echo "other-name $?"
          curl -s --max-time 2 -o /dev/null http://www.corp.test/; curl -s --max-time 2 -o /dev/null http://203.0.113.7/; echo "literal $?"
          curl -s --max-time 2 -o /dev/null http://198.51.100.1:8080/; echo "port $?"
          curl -s --max-time 2 -o /dev/null http://169.254.169.254/; echo "metadata $?"
          python3 -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(20000):
    try:
        s.sendto(b\"x\", (\"203.0.113.9\", 9))
    except OSError:
        pass"'
        expect_code 0 $NSRUN -v --refusals "$WORK/tmp/r.json" --allow upstream.test:80 --user nobody -- sh -c "$probe"
        expect_eq "$(echo $OUT)" "name 0 other-name 2 literal 7 port 7 metadata 7" "the outcomes"
        expect_contains "$ERR" "nsrun: refused the name www.corp.test" "-v: the refused name"
        expect_contains "$ERR" "nsrun: refused tcp 203.0.113.7:80" "-v: the literal address"
        expect_contains "$ERR" "nsrun: refused tcp 198.51.100.1:8080 (upstream.test)" "-v: an allowed name's other port, named"
        expect_contains "$ERR" "nsrun: refused tcp 169.254.169.254:80" "-v: the default policy too"
        expect_eq "$(echo "$ERR" | grep -c 'refused udp 203.0.113.9:9')" 1 "a flood is reported once"
        lines=$(python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(len(rows), sorted({(r["verdict"], r["proto"], r["address"] or "-", r["port"] or 0, r["name"] or "-") for r in rows}))' "$WORK/tmp/r.json")
        expect_contains "$lines" "('refused', 'tcp', '198.51.100.1', 8080, 'upstream.test')" "--refusals: JSON lines"
        expect_contains "$lines" "('refused', 'dns', '-', 0, 'www.corp.test')" "--refusals: the name"
        expect_contains "$lines" "('refused', 'udp', '203.0.113.9', 9, '-')" "--refusals: the flood, once"
        [ "${lines%% *}" -lt 20 ] || fail "too many lines: $lines"
        expect_eq "$(stat -c %U "$WORK/tmp/r.json")" root "the invoking user's"
        # --audit: the lists refuse nothing and report what they would; the default
        # refusals stay.
        expect_code 0 $NSRUN --audit --refusals "$WORK/tmp/a.json" --allow upstream.test:80 --user nobody -- sh -c 'getent ahostsv4 www.corp.test >/dev/null; echo "other-name $?"; curl -s --max-time 2 -o /dev/null http://www.corp.test/; echo "literal $?"; curl -s --max-time 2 -o /dev/null http://169.254.169.254/; echo "metadata $?"'
        expect_eq "$(echo $OUT)" "other-name 0 literal 0 metadata 7" "--audit"
        expect_contains "$(cat "$WORK/tmp/a.json")" '"verdict": "would refuse", "proto": "tcp", "address": "203.0.113.7", "port": 80, "name": "www.corp.test"' "--audit reports it, named"
        expect_contains "$(cat "$WORK/tmp/a.json")" '"verdict": "refused", "proto": "tcp", "address": "169.254.169.254"' "the metadata service stays refused"
        expect_code 125 $NSRUN --audit -- true
        expect_contains "$ERR" "give them, e.g. '--audit --allow-file policy.txt'" "--audit alone"
        rm -f "$WORK/tmp/r.json" "$WORK/tmp/a.json"
        wait_holder_gone
        expect_clean
        "#,
    );
}

/// An answered address stays allowed for its TTL (at least a minute): after that a new
/// connection without a new lookup is refused, while one opened before keeps working.
#[test]
fn an_answered_address_expires_but_open_connections_keep_working() {
    world(
        r#"
        start_dns up 198.51.100.1
        cat >"$WORK/echo.py" <<'PY'
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7000)); s.listen()
def serve(c):
    while True:
        b = c.recv(64)
        if not b:
            return
        c.sendall(b)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
        in_up python3 "$WORK/echo.py" &
        wait_port up 198.51.100.1 7000
        snapshot
        expect_code 0 $NSRUN --allow upstream.test --user nobody -- python3 -c '
import socket, time
a = socket.getaddrinfo("upstream.test", 7000, socket.AF_INET)[0][4][0]
s = socket.create_connection((a, 7000), timeout=3)
s.sendall(b"1"); print("first", s.recv(1) == b"1")
time.sleep(63)
s.sendall(b"2"); print("open", s.recv(1) == b"2")
try:
    socket.create_connection((a, 7000), timeout=3); print("new allowed")
except OSError:
    print("new refused")'
        expect_eq "$(echo $OUT)" "first True open True new refused" "after its TTL (and the minute's floor)"
        wait_holder_gone
        expect_clean
        "#,
    );
}

/// A CNAME chain is followed to its addresses; an answer that also carries records for
/// other names (as a forged or out-of-bailiwick answer would) allows only the asked
/// name's chain.
#[test]
fn a_cname_chain_is_followed_and_extra_records_allow_nothing() {
    world(
        r#"
        start_upstream_http
        cat >"$WORK/dns.py" <<'PY'
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("198.51.100.1", 53))
def name(n):
    return b"".join(bytes([len(l)]) + l.encode() for l in n.split(".")) + b"\0"
def rr(owner, rtype, rdata):
    return name(owner) + struct.pack(">HHIH", rtype, 1, 0, len(rdata)) + rdata
while True:
    q, peer = s.recvfrom(512)
    qid, = struct.unpack(">H", q[:2])
    end = 12
    while q[end]:
        end += q[end] + 1
    question = q[12:end + 5]
    labels, i = [], 12
    while q[i]:
        labels.append(q[i + 1:i + 1 + q[i]].decode()); i += q[i] + 1
    asked = ".".join(labels).lower()
    answers = []
    if asked == "www.chain.test":
        answers = [rr("www.chain.test", 5, name("edge.cdn.test")),
                   rr("edge.cdn.test", 1, bytes([198, 51, 100, 1]))]
    elif asked == "forged.test":
        # Its own address, and records for a name nobody asked about.
        answers = [rr("forged.test", 1, bytes([198, 51, 100, 1])),
                   rr("evil.test", 1, bytes([203, 0, 113, 7]))]
    flags = 0x8180 if answers else 0x8183
    s.sendto(struct.pack(">HHHHHH", qid, flags, 1, len(answers), 0, 0) + question + b"".join(answers), peer)
PY
        in_up python3 "$WORK/dns.py" &
        sleep 0.3
        snapshot
        expect_code 0 $NSRUN --allow www.chain.test:80 --user nobody -- sh -c 'curl -s --max-time 2 -o /dev/null http://www.chain.test/; echo "chain $?"'
        expect_eq "$OUT" "chain 0" "the CNAME's target address is allowed"
        expect_code 0 $NSRUN --allow forged.test:80 --user nobody -- sh -c 'getent ahostsv4 forged.test >/dev/null; curl -s --max-time 2 -o /dev/null http://forged.test/; echo "asked $?"; curl -s --max-time 2 -o /dev/null http://203.0.113.7/; echo "extra $?"'
        expect_eq "$(echo $OUT)" "asked 0 extra 7" "the extra record allows nothing"
        wait_holder_gone
        expect_clean
        "#,
    );
}

/// A long list of addresses (10,000 lines) is one set lookup: it loads, and only its
/// addresses open.
#[test]
fn ten_thousand_allowed_addresses_load_as_a_set() {
    world(
        r#"
        start_upstream_http
        python3 -c '
for i in range(9999):
    print("10.%d.%d.%d" % (i // 62500 + 1, i // 250 % 250, i % 250 + 1))
print("198.51.100.1:80  # the one this command needs")' >"$WORK/big.txt"
        snapshot
        expect_code 0 $NSRUN --allow-file "$WORK/big.txt" --user nobody -- sh -c 'curl -s --max-time 2 -o /dev/null http://198.51.100.1/; echo "listed $?"; curl -s --max-time 2 -o /dev/null http://203.0.113.1/; echo "unlisted $?"'
        expect_eq "$(echo $OUT)" "listed 0 unlisted 7" "the list's address, and not another"
        # Prefixes too, thousands of them (overlapping and adjacent ones among them), in
        # an interval set: a lookup per packet, not a rule each.
        python3 -c '
for i in range(5000):
    print("10.%d.%d.0/24" % (i // 250 + 1, i % 250))
print("10.1.0.0/16\n10.2.0.128/25\n198.51.100.0/30")' >"$WORK/nets.txt"
        $NSRUN --allow-file "$WORK/nets.txt" --user nobody -- sh -c 'sleep 0.2; curl -s --max-time 2 -o /dev/null http://198.51.100.1/; echo "listed $?"; curl -s --max-time 2 -o /dev/null http://203.0.113.1/; echo "unlisted $?"; sleep 1' >"$WORK/nets.out" 2>&1 &
        pid=$!
        wait_sandbox_up $pid
        rules=$(in_sandbox $pid nft -a list chain inet nsrun output | grep -c handle)
        [ "$rules" -lt 40 ] || fail "the prefixes are rules ($rules in the output chain)"
        expect_contains "$(in_sandbox $pid nft list set inet nsrun addrs_0)" "flags interval" "an interval set"
        wait $pid
        expect_eq "$(echo $(cat $WORK/nets.out))" "listed 0 unlisted 7" "a listed prefix, and nothing else"
        wait_holder_gone
        expect_clean
        "#,
    );
}
