//! DNS: the sandbox resolves as the host does, whatever the host's set-up, and the host's
//! files and mounts never change. A real DNS server (dnsmasq) answers with fixed records.

mod common;
use common::world;

/// Records what must not change on the host: resolv.conf (link and content), the
/// resolved directory, and the mount table. (/run also holds the holder's record of the
/// forwarding it switched on while it runs.)
const HOST_FILES: &str = r#"
host_files() {
  { readlink /etc/resolv.conf || echo "(no link)"; cat /etc/resolv.conf 2>/dev/null || echo "(unreadable)";
    ls -a /run | grep -v '^nsrun-forwarding-'; ls -la /run/systemd /run/systemd/resolve 2>&1 | grep -v -e total -e ' \.\.$' || true;
    cat /proc/self/mountinfo; } >"$1"
}
lookup() { # lookup NSRUN-ARGS... -- prints the first address getent gives for upstream.test
  $NSRUN "$@" -- getent ahostsv4 upstream.test | awk 'NR==1 {print $1}'
}
"#;

fn dns_world(script: &str) {
    world(&format!("{HOST_FILES}\n{script}"));
}

#[test]
fn plain_upstream_servers() {
    dns_world(
        r#"
        start_dns up 198.51.100.1
        snapshot; host_files "$WORK/host-before"
        expect_eq "$(lookup)" 198.51.100.1 "resolved through the host's nameserver"
        expect_code 0 $NSRUN -- cat /etc/resolv.conf
        expect_contains "$OUT" "nameserver 198.51.100.1" "sandbox resolv.conf"
        expect_contains "$OUT" "search corp.test" "search kept"
        expect_contains "$OUT" "options edns0" "options kept"
        host_files "$WORK/host-after"; cmp "$WORK/host-before" "$WORK/host-after" || fail "host files changed"
        expect_clean
        "#,
    );
}

#[test]
fn systemd_resolved_stub() {
    dns_world(
        r#"
        start_dns up 198.51.100.1
        mkdir -p /run/systemd/resolve
        printf 'nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch corp.test\n' >/run/systemd/resolve/stub-resolv.conf
        printf 'nameserver 198.51.100.1\nsearch corp.test\n' >/run/systemd/resolve/resolv.conf
        rm /etc/resolv.conf; ln -s ../run/systemd/resolve/stub-resolv.conf /etc/resolv.conf
        snapshot; host_files "$WORK/host-before"
        expect_eq "$(lookup)" 198.51.100.1 "resolved through resolved's upstream"
        expect_code 0 $NSRUN -- cat /etc/resolv.conf
        expect_not_contains "$OUT" "127.0.0.53" "no stub address in the sandbox"
        expect_contains "$OUT" "options edns0 trust-ad" "options kept"
        host_files "$WORK/host-after"; cmp "$WORK/host-before" "$WORK/host-after" || fail "host files changed"
        # resolved replaces its stub file by rename: the sandbox's file covers the symlink
        # in /etc itself, so the rename does not touch it.
        $NSRUN -- sh -c 'echo ready; while [ ! -e "$TMPDIR/renamed" ]; do sleep 0.02; done; cat /etc/resolv.conf' >"$WORK/out" 2>&1 &
        pid=$!
        for _ in $(seq 200); do grep -q ready "$WORK/out" 2>/dev/null && break; sleep 0.02; done
        printf 'nameserver 127.0.0.53\nsearch renamed.test\n' >/run/systemd/resolve/stub.new
        mv /run/systemd/resolve/stub.new /run/systemd/resolve/stub-resolv.conf
        touch "$TMPDIR/renamed"
        wait $pid
        rm "$TMPDIR/renamed"
        expect_contains "$(cat "$WORK/out")" "nameserver 198.51.100.1" "the sandbox kept its resolv.conf"
        expect_not_contains "$(cat "$WORK/out")" "renamed.test" "the host's renamed stub stays out"
        expect_clean
        "#,
    );
}

#[test]
fn loopback_only_resolver_is_relayed_over_udp_and_tcp() {
    dns_world(
        r#"
        start_dns - 127.0.0.1
        printf 'nameserver 127.0.0.1\n' >/etc/resolv.conf
        snapshot; host_files "$WORK/host-before"
        expect_eq "$(lookup)" 198.51.100.1 "resolved through the relay (UDP)"
        # The same over TCP, with a query of our own: 2-byte length, header, question.
        # Also from a client that half-closes after its query, as some do.
        expect_code 0 $NSRUN -- python3 -c '
import socket, struct
q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"\x08upstream\x04test\x00" + struct.pack(">HH", 1, 1)
for half_close in (False, True):
    s = socket.create_connection(("127.0.0.53", 53), timeout=3)
    s.sendall(struct.pack(">H", len(q)) + q)
    if half_close: s.shutdown(socket.SHUT_WR)
    n = struct.unpack(">H", s.recv(2))[0]
    r = b""
    while len(r) < n: r += s.recv(n - len(r))
    print(".".join(str(b) for b in r[-4:]))'
        expect_eq "$(echo $OUT)" "198.51.100.1 198.51.100.1" "resolved through the relay (TCP, then half-closed)"
        host_files "$WORK/host-after"; cmp "$WORK/host-before" "$WORK/host-after" || fail "host files changed"
        expect_clean
        "#,
    );
}

#[test]
fn dangling_or_missing_resolv_conf_with_dns_flag() {
    dns_world(
        r#"
        start_dns up 198.51.100.1
        rm /etc/resolv.conf; ln -s ../run/systemd/resolve/stub-resolv.conf /etc/resolv.conf
        snapshot; host_files "$WORK/host-before"
        expect_eq "$(lookup --dns 198.51.100.1)" 198.51.100.1 "dangling symlink, --dns"
        host_files "$WORK/host-after"; cmp "$WORK/host-before" "$WORK/host-after" || fail "host files changed"
        [ -e /run/systemd ] && fail "nsrun created files on the host"
        rm /etc/resolv.conf
        expect_eq "$(lookup --dns 198.51.100.1)" 198.51.100.1 "missing resolv.conf, --dns"
        [ -e /etc/resolv.conf ] && fail "nsrun created /etc/resolv.conf"
        expect_clean
        "#,
    );
}

#[test]
fn a_nameserver_with_a_newline_is_rejected() {
    dns_world(
        r#"
        snapshot; host_files "$WORK/host-before"
        expect_code 125 $NSRUN --dns "$(printf '192.0.2.1\nsearch evil')" -- true
        expect_contains "$ERR" 'nsrun: --dns "192.0.2.1\nsearch evil" is not an IPv4 address' "injection rejected"
        expect_eq "$(echo "$ERR" | wc -l)" 1 "one line"
        host_files "$WORK/host-after"; cmp "$WORK/host-before" "$WORK/host-after" || fail "host files changed"
        expect_clean
        "#,
    );
}

#[test]
fn the_host_rewriting_resolv_conf_by_rename_does_not_reach_the_sandbox() {
    dns_world(
        r#"
        start_dns up 198.51.100.1
        snapshot
        $NSRUN -- sh -c 'echo ready; while [ ! -e "$TMPDIR/renamed" ]; do sleep 0.02; done; cat /etc/resolv.conf; getent ahostsv4 upstream.test' >"$WORK/out" 2>&1 &
        pid=$!
        for _ in $(seq 200); do grep -q ready "$WORK/out" 2>/dev/null && break; sleep 0.02; done
        # As NetworkManager and resolved do: write a new file, rename it over the old.
        printf 'nameserver 127.0.0.99\n' >/etc/resolv.conf.new
        mv /etc/resolv.conf.new /etc/resolv.conf
        touch "$TMPDIR/renamed"
        wait $pid
        rm "$TMPDIR/renamed"
        out=$(cat "$WORK/out")
        expect_contains "$out" "nameserver 198.51.100.1" "the sandbox kept its own resolv.conf"
        expect_not_contains "$out" "127.0.0.99" "the host's new file stays out"
        expect_contains "$out" "198.51.100.1    STREAM upstream.test" "names still resolve"
        expect_eq "$(cat /etc/resolv.conf)" "nameserver 127.0.0.99" "the host has its new file"
        expect_clean
        "#,
    );
}

#[test]
fn nameservers_stay_reachable_on_the_lan_and_the_host() {
    dns_world(
        r#"
        start_upstream_http
        # A LAN nameserver, behind --block-lan.
        in_up ip addr add 10.99.0.53/32 dev lo
        ip route add 10.99.0.53/32 via 198.51.100.1
        start_dns up 10.99.0.53
        in_up python3 "$WORK/upstream_server.py" 10.99.0.53 80 &
        wait_port up 10.99.0.53 80
        printf 'nameserver 10.99.0.53\n' >/etc/resolv.conf
        snapshot
        expect_eq "$(lookup --block-lan)" 198.51.100.1 "LAN nameserver reachable with --block-lan"
        expect_code 0 $NSRUN --block-lan -- sh -c 'curl -s --max-time 1 http://10.99.0.53/ || echo blocked'
        expect_eq "$OUT" blocked "nothing but DNS on the LAN nameserver"
        expect_clean
        # A nameserver on the host's own address, while the host is otherwise closed.
        start_dns - 198.51.100.2
        printf 'nameserver 198.51.100.2\n' >/etc/resolv.conf
        python3 "$WORK/upstream_server.py" 198.51.100.2 8080 &
        wait_port - 198.51.100.2 8080
        snapshot
        expect_eq "$(lookup)" 198.51.100.1 "host nameserver reachable"
        expect_code 0 $NSRUN -- sh -c 'curl -s --max-time 1 http://198.51.100.2:8080/ || echo blocked'
        expect_eq "$OUT" blocked "nothing but DNS on the host"
        expect_clean
        "#,
    );
}

#[test]
fn the_sandbox_host_name_resolves_inside() {
    dns_world(
        r#"
        snapshot
        expect_code 0 $NSRUN --hostname box1 -- getent hosts box1
        expect_contains "$OUT" "127.0.1.1" "box1 resolves"
        expect_code 0 $NSRUN --no-net --hostname box2 -- getent hosts box2
        expect_contains "$OUT" "127.0.1.1" "box2 resolves without a network"
        expect_code 0 getent hosts localhost
        if grep -q box1 /etc/hosts; then fail "box1 leaked into the host's /etc/hosts"; fi
        expect_clean
        "#,
    );
}

#[test]
fn a_file_capability_install_resolves_with_every_dns_layout() {
    if !common::require_tool("setcap") {
        return;
    }
    dns_world(
        r#"
        start_dns up 198.51.100.1
        start_dns - 127.0.0.1
        cp $NSRUN "$WORK/nsrun"
        setcap cap_net_admin,cap_sys_admin,cap_setpcap+ep "$WORK/nsrun"
        mkdir -p /run/systemd/resolve
        printf 'nameserver 198.51.100.1\n' >/run/systemd/resolve/resolv.conf
        snapshot
        as_user() { setpriv --reuid=65534 --regid=65534 --clear-groups "$WORK/nsrun" "$@" -- getent ahostsv4 upstream.test | awk 'NR==1 {print $1}'; }
        for layout in 'nameserver 198.51.100.1' 'nameserver 127.0.0.53' 'nameserver 127.0.0.1'; do
          printf '%s\n' "$layout" >/etc/resolv.conf
          expect_eq "$(as_user)" 198.51.100.1 "a setcap install as an ordinary user, resolv.conf [$layout]"
        done
        expect_eq "$(as_user --dns 198.51.100.1)" 198.51.100.1 "a setcap install with --dns"
        expect_clean
        "#,
    );
}

#[test]
fn a_hostile_resolv_conf_neither_blocks_nor_bloats_nsrun() {
    dns_world(
        r#"
        start_dns up 198.51.100.1
        snapshot
        rm /etc/resolv.conf
        mkfifo /etc/resolv.conf
        expect_code 125 timeout 5 $NSRUN -- true
        expect_contains "$ERR" "read /etc/resolv.conf: not a regular file" "a FIFO is refused, not waited on"
        expect_contains "$ERR" "--dns" "says what to do"
        expect_eq "$(lookup --dns 198.51.100.1)" 198.51.100.1 "--dns does not open the host's file"
        rm /etc/resolv.conf
        ln -s /dev/zero /etc/resolv.conf
        expect_code 125 timeout 5 $NSRUN -- true
        expect_contains "$ERR" "not a regular file" "a device is refused"
        rm /etc/resolv.conf
        head -c 2000000 /dev/zero | tr '\0' '#' >/etc/resolv.conf
        expect_code 125 timeout 5 $NSRUN -- true
        expect_contains "$ERR" "larger than 1024 KiB" "a huge file is refused"
        printf 'nameserver 198.51.100.1\n' >/etc/resolv.conf
        expect_clean
        "#,
    );
}
