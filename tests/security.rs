//! Attacks on the sandbox's promises (SECURITY.md): a uid-0 command and the host's
//! kernel settings, pools that would steal routes, IPv6 where the host cannot switch it
//! off, cloud metadata, forged error lines, exit codes.

mod common;
use common::world;

#[test]
fn a_uid_0_command_cannot_write_proc_sys_or_read_masked_kernel_files() {
    world(
        r#"
        snapshot
        # Root without sudo: the command runs as uid 0 (no capabilities). Every writable
        # sysctl is written back with its own value, so even a failure of the test
        # changes nothing; what matters is that no write succeeds.
        for mode in "" --no-net; do
          expect_code 0 $NSRUN $mode -- sh -c '
            id -u
            checked=0
            for f in $(find /proc/sys -type f -perm /222 2>/dev/null); do
              v=$(cat "$f" 2>/dev/null) || continue
              checked=$((checked+1))
              if (printf "%s\n" "$v" >"$f") 2>/dev/null; then echo "WROTE $f"; fi
            done
            echo "checked $checked"
            grep " /proc/sys " /proc/self/mountinfo | grep -o " ro,[^ ]*" | head -1
            echo "kcore $(head -c 64 /proc/kcore 2>/dev/null | wc -c)"
            echo "keys $(cat /proc/keys 2>/dev/null | wc -l)"
            echo "sched_debug $(cat /proc/sched_debug 2>/dev/null | wc -l)"
            echo "firmware $(ls -A /sys/firmware 2>/dev/null | wc -l)"
            echo "sysrq $( (echo h >/proc/sysrq-trigger) 2>/dev/null && echo written || echo refused)"'
          [ "$mode" = --no-net ] || expect_eq "$(echo "$OUT" | head -1)" 0 "the command runs as uid 0"
          expect_not_contains "$OUT" "WROTE" "a host sysctl written from the sandbox ($mode)"
          checked=$(echo "$OUT" | awk '/^checked/ {print $2}')
          [ "$checked" -gt 100 ] || fail "only $checked sysctls were tried"
          expect_contains "$OUT" "kcore 0" "/proc/kcore masked ($mode)"
          expect_contains "$OUT" "keys 0" "/proc/keys masked ($mode)"
          expect_contains "$OUT" "sched_debug 0" "/proc/sched_debug masked ($mode)"
          expect_contains "$OUT" "firmware 0" "/sys/firmware masked ($mode)"
          expect_contains "$OUT" "sysrq refused" "/proc/sysrq-trigger read-only ($mode)"
        done
        expect_clean
        "#,
    );
}

#[test]
fn pools_never_take_a_route_of_the_host() {
    world(
        r#"
        start_upstream_http
        snapshot
        expect_code 125 $NSRUN --pool 203.0.113.0/30 -- true
        expect_contains "$ERR" "--pool 203.0.113.0/30: not a private range" "a public pool is refused"
        expect_contains "$ERR" "10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16" "says which ranges are allowed"
        expect_clean
        # A route in another routing table (a VPN's, Tailscale's table 52) takes a pool.
        ip route add 10.90.0.0/24 dev eth0 table 52
        expect_code 125 $NSRUN --pool 10.90.0.0/28 -- true
        expect_contains "$ERR" "address pool 10.90.0.0/28 is exhausted" "a route of table 52 counts"
        expect_code 0 $NSRUN --pool 10.90.0.0/23 -- sh -c 'ip -4 -o addr show eth0'
        expect_contains "$OUT" "inet 10.90.1." "the part of the pool outside table 52's route"
        ip route del 10.90.0.0/24 dev eth0 table 52
        # OpenVPN's def1 routes cover everything but are default routes, not pool users.
        ip route add 0.0.0.0/1 via 198.51.100.1
        ip route add 128.0.0.0/1 via 198.51.100.1
        expect_code 0 $NSRUN -- curl -s --max-time 2 http://198.51.100.1/
        expect_eq "$OUT" 198.51.100.2 "a sandbox works beside def1 routes"
        ip route del 0.0.0.0/1
        ip route del 128.0.0.0/1
        expect_clean
        "#,
    );
}

#[test]
fn ipv6_stays_closed_even_where_the_host_cannot_switch_it_off() {
    world(
        r#"
        # A host service on every IPv6 address, and a /proc/sys/net/ipv6 that nsrun
        # cannot write (a container, a hardened host): the host end keeps IPv6.
        python3 -c 'import http.server, socket
class S(http.server.HTTPServer): address_family = socket.AF_INET6
S(("::", 8086), http.server.SimpleHTTPRequestHandler).serve_forever()' >/dev/null 2>&1 &
        for _ in $(seq 100); do ss -ltn | grep -q ':8086 ' && break; sleep 0.02; done
        echo 0 >/proc/sys/net/ipv6/conf/default/accept_dad
        snapshot
        unshare --mount --propagation private bash -c '
          mount -t tmpfs -o ro tmpfs /proc/sys/net/ipv6/conf
          exec $NSRUN -- sh -c "while [ ! -e \"$TMPDIR/go\" ]; do sleep 0.05; done
            curl -s -g --max-time 2 -o /dev/null \"http://[\$(cat $TMPDIR/ll)%eth0]:8086/\" && echo ipv6-open || echo ipv6-closed"' >"$WORK/out" &
        pid=$!
        for _ in $(seq 200); do ip -o link show | grep -q nsr && break; sleep 0.02; done
        link=$(ip -o link show | grep -o 'nsr[0-9a-f]*' | head -1)
        for _ in $(seq 200); do ip -6 -o addr show dev $link | grep -q fe80 && break; sleep 0.02; done
        ll=$(ip -6 -o addr show dev $link | awk '/fe80/ {print $4}' | cut -d/ -f1)
        [ -n "$ll" ] || fail "the host end has no IPv6 link-local address: the test needs one"
        echo "$ll" >"$TMPDIR/ll"
        # The sandbox side switched IPv6 off too; as if that had failed, switch it on.
        in_sandbox $pid sh -c 'echo 0 >/proc/sys/net/ipv6/conf/eth0/accept_dad; echo 0 >/proc/sys/net/ipv6/conf/eth0/disable_ipv6'
        for _ in $(seq 200); do in_sandbox $pid ip -6 -o addr show dev eth0 | grep -q fe80 && break; sleep 0.02; done
        in_sandbox $pid ip -6 -o addr show dev eth0 | grep -q fe80 || fail "the sandbox has no IPv6 link-local address: the test needs one"
        # Neighbour discovery would be dropped by the sandbox's input chain already; give
        # both ends each other's link-layer address, so only the IPv6 rule itself decides.
        sb_ll=$(in_sandbox $pid ip -6 -o addr show dev eth0 | awk '/fe80/ {print $4}' | cut -d/ -f1)
        mac() { awk '{for (i = 1; i < NF; i++) if ($i == "link/ether") print $(i+1)}'; }
        sb_mac=$(in_sandbox $pid ip -o link show dev eth0 | mac)
        ip -6 neigh replace "$sb_ll" lladdr "$sb_mac" dev $link nud permanent
        in_sandbox $pid ip -6 neigh replace "$ll" lladdr "$(ip -o link show dev $link | mac)" dev eth0 nud permanent
        touch "$TMPDIR/go"
        wait $pid
        expect_eq "$(cat $WORK/out)" "ipv6-closed" "the host's IPv6 service from a sandbox"
        rm -f "$TMPDIR/go" "$TMPDIR/ll"
        expect_clean
        "#,
    );
}

#[test]
fn cloud_metadata_endpoints_are_closed() {
    world(
        r#"
        start_upstream_http
        for ip in 100.100.100.200 168.63.129.16 169.254.0.23; do
          in_up ip addr add $ip/32 dev lo
          ip route add $ip/32 via 198.51.100.1
        done
        start_dns up 168.63.129.16
        expect_code 0 curl -s --max-time 2 http://100.100.100.200/
        snapshot
        expect_code 0 $NSRUN -- sh -c 'for ip in 100.100.100.200 168.63.129.16 169.254.0.23; do
            curl -s --max-time 2 -o /dev/null http://$ip/ && echo "$ip open" || echo "$ip closed"; done'
        expect_eq "$(echo $OUT)" "100.100.100.200 closed 168.63.129.16 closed 169.254.0.23 closed" "metadata endpoints"
        expect_code 0 $NSRUN --dns 168.63.129.16 -- sh -c 'getent ahostsv4 upstream.test | head -1'
        expect_contains "$OUT" "198.51.100.1" "Azure's resolver on port 53 stays open"
        expect_clean
        "#,
    );
}

#[test]
fn error_lines_cannot_be_forged_and_exit_codes_follow_env() {
    world(
        r#"
        snapshot
        expect_code 127 $NSRUN --no-net --user root -- "$(printf 'no-such\nnsrun: forged line')"
        expect_eq "$(echo "$ERR" | wc -l)" 1 "one line on stderr"
        expect_contains "$ERR" 'no-such\nnsrun: forged line' "the newline is shown escaped"
        # A file that is no executable for this machine (another architecture's ELF).
        printf '\177ELF\002\001\001\000\000\000\000\000\000\000\000\000\002\000\267\000' >"$WORK/foreign"
        chmod +x "$WORK/foreign"
        expect_code 126 $NSRUN --no-net -- "$WORK/foreign"
        expect_contains "$ERR" "Exec format error" "says why"
        cp "$WORK/foreign" "$TMPDIR/foreign-in-path"
        expect_code 126 env PATH="$TMPDIR:$PATH" $NSRUN --no-net -- foreign-in-path
        expect_clean
        "#,
    );
}

#[test]
fn a_blocked_connection_is_refused_at_once() {
    world(
        r#"
        python3 -m http.server --bind 0.0.0.0 8080 >/dev/null 2>&1 &
        wait_port - 127.0.0.1 8080
        snapshot
        expect_code 0 $NSRUN -- python3 -c '
import socket, subprocess, time
gw = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout.split()[2]
for dst in ("198.51.100.2", gw, "169.254.169.254"):
    t = time.monotonic()
    try:
        socket.create_connection((dst, 8080), timeout=5); print(dst, "connected")
    except ConnectionRefusedError:
        print(dst, "refused", "fast" if time.monotonic() - t < 1 else "slow")
    except OSError as e:
        print(dst, type(e).__name__)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.sendto(b"x", ("198.51.100.2", 8080)); print("udp sent")
except PermissionError:
    print("udp refused")'
        expect_eq "$(echo $OUT)" "198.51.100.2 refused fast $(echo $OUT | awk '{print $4}') refused fast 169.254.169.254 refused fast udp refused" "blocked destinations fail at once"
        expect_clean
        "#,
    );
}

/// What the host's `local` table delivers is the host, however it got there: a prefix
/// routed local on lo (AnyIP), the broadcast address of one of its networks.
#[test]
fn local_prefixes_and_directed_broadcast_are_the_host() {
    world(
        r#"
        ip addr add 198.18.0.1/24 dev lo
        udp_log - 9999 "$WORK/got"
        python3 -m http.server --bind 0.0.0.0 8888 >/dev/null 2>&1 &
        wait_port - 198.18.0.5 8888
        snapshot
        expect_code 0 $NSRUN --user nobody -- python3 -c '
import socket
try:
    socket.create_connection(("198.18.0.5", 8888), timeout=2); print("local-prefix open")
except OSError:
    print("local-prefix closed")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
for dst in ("198.51.100.255", "198.18.0.77"):
    try:
        s.sendto(b"x", (dst, 9999))
    except OSError:
        pass'
        expect_eq "$OUT" "local-prefix closed" "a prefix routed local on lo"
        sleep 0.3
        expect_eq "$(cat $WORK/got)" "" "UDP to a directed broadcast or a local prefix reached the host"
        expect_clean
        "#,
    );
}

/// Sandboxes outside one pool (`--ip`) still cannot reach each other, published ports
/// included: only the host and the world reach a published port.
#[test]
fn sandboxes_of_other_pools_cannot_reach_each_other() {
    world(
        r#"
        snapshot
        $NSRUN --ip 10.77.0.2 -p 8080:80 --user nobody -- python3 -m http.server --bind 0.0.0.0 80 >/dev/null 2>&1 &
        a=$!
        wait_port - 10.77.0.2 80
        expect_code 0 $NSRUN -- sh -c 'curl -s --max-time 2 -o /dev/null http://10.77.0.2/ && echo open || echo closed'
        expect_eq "$OUT" closed "a default sandbox to an --ip sandbox's published port"
        expect_code 0 $NSRUN --ip 10.78.0.2 -- sh -c 'curl -s --max-time 2 -o /dev/null http://10.77.0.2/ && echo open || echo closed'
        expect_eq "$OUT" closed "an --ip sandbox to another"
        expect_code 0 curl -s --max-time 2 -o /dev/null -w '%{http_code}' http://10.77.0.2/
        expect_eq "$OUT" 200 "the host still reaches it"
        kill -TERM $a; wait $a || true
        expect_clean
        "#,
    );
}

/// A host whose address puts the probe's range on lo: nsrun still starts (no uplink MTU
/// of 65536 copied from lo).
#[test]
fn an_address_of_the_documentation_range_on_lo_does_not_break_start_up() {
    world(
        r#"
        start_upstream_http
        ip addr add 192.0.2.77/24 dev lo
        snapshot
        expect_code 0 $NSRUN --user root -- curl -s --max-time 2 http://198.51.100.1/
        expect_eq "$OUT" 198.51.100.2 "the sandbox works"
        expect_clean
        "#,
    );
}

#[test]
fn the_holder_checks_every_request_itself_and_cannot_be_starved() {
    world(
        r#"
        cat >"$WORK/client.py" <<'PY'
import socket, struct, sys, time
def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect("\0nsrun-holder")
    s.settimeout(3)
    return s
def ask(s, msg):
    s.send(msg)
    try:
        return s.recv(512).decode(errors="replace")
    except socket.timeout:
        return "timeout"
def reg(index, addr):
    return b"R" + struct.pack("=I", index) + socket.inet_aton(addr) + b"\0"
def pub(host_ip, port):
    return b"P\x06" + socket.inet_aton(host_ip) + struct.pack("=HH", port, 80)
cmd = sys.argv[1]
if cmd == "forge":
    index = int(sys.argv[2])
    s = conn()
    print("other address:", ask(s, reg(index, "192.168.7.7")))
    print("own address:", ask(s, reg(index, "10.250.0.2")))
    print("foreign host ip:", ask(s, pub("198.51.100.1", 8080)))
    print("loopback host ip:", ask(s, pub("127.0.0.1", 8081)))
    print("unreserved:", ask(s, pub("0.0.0.0", 8082)))
    r = socket.socket()
    r.bind(("0.0.0.0", 8083))
    r.listen()
    print("reserved:", ask(s, pub("0.0.0.0", 8083)))
    # A port let go of is no longer redirected.
    r.close()
    time.sleep(1.5)
    import subprocess
    rules = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    print("after letting go:", "still" if "dport 8083" in rules else "gone")
    # A UDP port shared (SO_REUSEADDR) with another user's socket is not published.
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    u.bind(("0.0.0.0", 5353))
    print("shared udp:", ask(s, b"P\x11" + socket.inet_aton("0.0.0.0") + struct.pack("=HH", 5353, 53)))
    s2 = conn()
    print("taken link:", ask(s2, reg(index, "10.250.0.2")))
elif cmd == "other-user":
    try:
        s = conn()
        time.sleep(0.2)
        s.send(reg(1, "10.250.0.2"))
        answer = s.recv(512)
        print("other user:", "closed" if answer == b"" else repr(answer))
    except (BrokenPipeError, ConnectionResetError, ConnectionRefusedError):
        print("other user: closed")
elif cmd == "flood":
    socks = [conn() for _ in range(int(sys.argv[2]))]
    print("flooded", len(socks))
    time.sleep(float(sys.argv[3]))
PY
        chmod 644 "$WORK/client.py"
        snapshot
        # The holder gets the usual limit of 1,024 descriptors (it inherits nsrun's).
        ( ulimit -n 1024; exec $NSRUN -- sleep 60 ) &
        pid=$!
        wait_sandbox_up $pid
        # A link named like a sandbox's, with a sandbox's subnet.
        ip link add nsrfake0 type veth peer name fakepeer
        ip addr add 10.250.0.1/30 dev nsrfake0
        ip link set fakepeer up; ip link set nsrfake0 up
        index=$(ip -o link show nsrfake0 | cut -d: -f1)
        # Another user's UDP service, bound with SO_REUSEADDR (as avahi binds 5353).
        setpriv --reuid 1000 --regid 1000 --clear-groups /usr/bin/python3 -c '
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5353))
time.sleep(30)' &
        theirs=$!
        sleep 0.3
        expect_code 0 python3 "$WORK/client.py" forge $index
        kill $theirs; wait $theirs || true
        expect_contains "$OUT" "other address: E192.168.7.7 is not the sandbox's address" "masquerade for any address"
        expect_contains "$OUT" "own address: K" "the sandbox's own address"
        expect_contains "$OUT" "foreign host ip: E-p 198.51.100.1:8080: 198.51.100.1 is not an address of the host" "a destination that is not the host's"
        expect_contains "$OUT" "loopback host ip: E" "loopback is never DNATed"
        expect_contains "$OUT" "unreserved: E-p 0.0.0.0:8082: the port is not reserved by its nsrun (uid 0)" "a port the client does not hold"
        expect_contains "$OUT" "reserved: K" "a port the client holds"
        expect_contains "$OUT" "after letting go: gone" "a port its client let go of"
        expect_contains "$OUT" "shared udp: E-p 0.0.0.0:5353: another user holds the port too" "a UDP port shared with another user"
        expect_contains "$OUT" "taken link: E" "another nsrun's link"
        expect_not_contains "$(nft list ruleset)" "198.51.100.1 tcp dport 8080" "no rule for the forged request"
        # Another user is closed at once, without an answer.
        expect_code 0 setpriv --reuid 1000 --regid 1000 --clear-groups /usr/bin/python3 "$WORK/client.py" other-user
        expect_eq "$OUT" "other user: closed" "another user's connection"
        # 1,500 idle connections of root's own: a new nsrun still starts.
        ( ulimit -n 4096; exec python3 "$WORK/client.py" flood 1500 8 ) >"$WORK/flood" 2>&1 &
        flood=$!
        for _ in $(seq 200); do grep -q flooded "$WORK/flood" && break; sleep 0.05; done
        expect_contains "$(cat "$WORK/flood")" "flooded 1500" "the flood is in place"
        expect_code 0 timeout 20 $NSRUN -- true
        kill $flood; wait $flood || true
        # (A registered link goes with its registration: the holder removed it.)
        ip link del nsrfake0 2>/dev/null || true
        kill -TERM $pid; wait $pid || true
        expect_clean
        "#,
    );
}

/// A sandbox that keeps trying host addresses that do not exist yet: prints OPEN for
/// every connection that got through, during `seconds`.
const PROBE_PY: &str = r#"
import select, socket, sys, time
# Many connections in flight, a new one every few hundred microseconds: any moment in
# which one of the addresses is open is seen.
port, seconds, addrs = int(sys.argv[1]), float(sys.argv[2]), open(sys.argv[3]).read().split()
end = time.time() + seconds
pending = {}
print("probing", flush=True)
i = 0
while time.time() < end:
    while len(pending) < 400:
        a = addrs[i % len(addrs)]; i += 1
        s = socket.socket(); s.setblocking(False)
        s.connect_ex((a, port))
        pending[s] = (a, time.time())
    _, ready, _ = select.select([], list(pending), [], 0.002)
    for s in ready:
        a, _ = pending.pop(s)
        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
            print("OPEN", a, flush=True)
        s.close()
    now = time.time()
    for s, (a, t) in list(pending.items()):
        if now - t > 0.05:
            del pending[s]; s.close()
"#;

#[test]
fn a_host_address_that_appears_is_never_reachable_not_even_for_a_moment() {
    world(&format!(
        r#"
        cat >"$WORK/probe.py" <<'PY'
{PROBE_PY}
PY
        chmod 644 "$WORK/probe.py"
        python3 -m http.server --bind 0.0.0.0 8081 >/dev/null 2>&1 &
        wait_port - 127.0.0.1 8081
        snapshot
        # The host end of a new sandbox (--ip 10.77.0.2 puts 10.77.0.3 on the host) while
        # another sandbox keeps trying it.
        echo 10.77.0.3 >"$WORK/hostend"
        for round in 1 2 3 4; do
          $NSRUN --user nobody -- python3 "$WORK/probe.py" 8081 2.5 "$WORK/hostend" >"$WORK/probe" 2>&1 &
          probe=$!
          for _ in $(seq 200); do grep -q probing "$WORK/probe" && break; sleep 0.02; done
          $NSRUN --ip 10.77.0.2 -- sleep 1
          wait $probe || true
          expect_not_contains "$(cat "$WORK/probe")" OPEN "round $round: the new host end's address"
        done
        # 10,000 host addresses at once, on lo, while a sandbox tries every one of them.
        python3 -c '
for i in range(10000):
    print("10.99.%d.%d" % (i // 250, i % 250 + 1))' >"$WORK/list"
        sed 's|^|address add |; s|$|/32 dev lo|' "$WORK/list" >"$WORK/addrs"
        $NSRUN --user nobody -- python3 "$WORK/probe.py" 8081 8 "$WORK/list" >"$WORK/probe" 2>&1 &
        probe=$!
        for _ in $(seq 200); do grep -q probing "$WORK/probe" && break; sleep 0.02; done
        ip -batch "$WORK/addrs"
        wait $probe || true
        expect_not_contains "$(cat "$WORK/probe")" OPEN "a burst of 10,000 host addresses"
        # --allow-host still opens them.
        echo 10.99.0.1 >"$WORK/one"
        expect_code 0 $NSRUN --allow-host --user nobody -- python3 "$WORK/probe.py" 8081 0.3 "$WORK/one"
        expect_contains "$OUT" "OPEN 10.99.0.1" "--allow-host"
        ip -batch <(sed 's/^address add/address del/' "$WORK/addrs")
        expect_clean
        "#
    ));
}

/// The broadcast address of a host network added while a sandbox runs (Docker creating
/// a network, a VPN coming up) is the host too.
#[test]
fn a_new_host_networks_broadcast_address_is_the_host_too() {
    world(
        r#"
        udp_log - 9999 "$WORK/got"
        snapshot
        $NSRUN --user nobody -- python3 -c '
import socket, time
time.sleep(1.5)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
for dst in ("192.168.77.255", "10.99.0.255"):
    for _ in range(5):
        try:
            s.sendto(b"x", (dst, 9999))
        except OSError:
            pass
' &
        pid=$!
        sleep 0.5
        ip link add lan7 type veth peer name lan7p
        ip addr add 192.168.77.1/24 dev lan7
        ip link set lan7 up; ip link set lan7p up
        ip addr add 10.99.0.1/24 dev eth0
        wait $pid
        sleep 0.3
        expect_eq "$(wc -l <"$WORK/got")" 0 "datagrams to the broadcast addresses of networks added later"
        ip addr del 10.99.0.1/24 dev eth0
        ip link del lan7
        expect_clean
        "#,
    );
}
