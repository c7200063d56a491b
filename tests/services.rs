//! Services: a name other tools can join, the host by a stable name, the sandbox's
//! addresses for scripts, low ports for an unprivileged command.

mod common;
use common::world;

#[test]
fn a_named_sandbox_is_joined_with_ip_netns_and_leaves_nothing() {
    world(
        r#"
        snapshot
        $NSRUN --name web --user nobody -- python3 -m http.server --bind 0.0.0.0 80 >/dev/null 2>&1 &
        pid=$!
        for _ in $(seq 200); do ip netns exec web ss -ltn 2>/dev/null | grep -q ':80 ' && break; sleep 0.02; done
        expect_contains "$(ip netns list)" "web" "ip netns list"
        expect_contains "$(ip netns exec web ss -ltn)" ":80 " "ip netns exec sees the service (port 80 bound by nobody)"
        expect_contains "$(nsenter --net=/run/netns/web ip -4 -o addr show eth0)" "inet 10." "nsenter --net=/run/netns/web"
        expect_eq "$(ip netns exec web hostname)" "$(hostname)" "ip netns exec keeps its own UTS"
        expect_code 125 $NSRUN --name web -- true
        expect_contains "$ERR" "--name web: a running sandbox has this name" "a name in use"
        kill -TERM $pid; wait $pid || true
        [ ! -e /run/netns/web ] || fail "the name is left after exit"
        # After kill -9 of nsrun: removed, and the next run may take the name.
        $NSRUN --name web -- sleep 30 &
        pid=$!
        wait_sandbox_up $pid
        kill -9 $pid; wait $pid || true
        for _ in $(seq 200); do [ -e /run/netns/web ] || break; sleep 0.02; done
        [ ! -e /run/netns/web ] || fail "the name is left after kill -9"
        expect_code 0 $NSRUN --name web -- hostname
        expect_eq "$OUT" web "the name is the host name"
        # nsrun and its holder killed: the stale entry is replaced by the next run.
        # (nsrun is stopped first, so that it cannot register again with a new holder.)
        killed_with_holder() {
          $NSRUN --name "$1" -- sleep 30 &
          local pid=$!
          wait_sandbox_up $pid
          kill -STOP $pid; kill -9 $(pgrep -x nsrun-holder); kill -9 $pid; wait $pid || true
          [ -e "/run/netns/$1" ] || fail "setup: nsrun and its holder killed, $1 should be left"
        }
        killed_with_holder stale
        expect_code 0 $NSRUN --name stale -- true
        [ ! -e /run/netns/stale ] || fail "a stale entry is left"
        # A stale lock never removes another tool's namespace of that name, nor
        # anything a symlink there points at.
        killed_with_holder foo
        umount /run/netns/foo; rm /run/netns/foo
        ip netns add foo
        killed_with_holder bar
        umount /run/netns/bar; rm /run/netns/bar
        ln -s /etc /run/netns/bar
        expect_code 0 $NSRUN -- true
        wait_holder_gone
        [ -e /run/netns/foo ] || fail "another tool's namespace was removed"
        expect_contains "$(ip netns list)" foo "ip netns still has foo"
        [ -L /run/netns/bar ] || fail "the symlink was removed"
        grep -q " /etc " /proc/self/mountinfo || fail "/etc was unmounted through the symlink"
        expect_code 125 $NSRUN --name foo -- true
        expect_contains "$ERR" "is not nsrun's" "another tool's name, after a stale lock"
        ip netns del foo; rm /run/netns/bar
        # Another tool's namespace of that name is not touched.
        ip netns add theirs
        expect_code 125 $NSRUN --name theirs -- true
        expect_contains "$ERR" "is not nsrun's" "another tool's name"
        ip netns del theirs
        rm -rf /run/nsrun
        expect_clean
        "#,
    );
}

#[test]
fn the_host_has_a_stable_name_inside_every_sandbox() {
    world(
        r#"
        python3 -m http.server --bind 0.0.0.0 8080 >/dev/null 2>&1 &
        wait_port - 127.0.0.1 8080
        snapshot
        expect_code 0 $NSRUN --allow-host -- curl -s --max-time 2 -o /dev/null -w '%{http_code}' http://host.nsrun.internal:8080/
        expect_eq "$OUT" 200 "host.nsrun.internal with --allow-host"
        expect_code 0 $NSRUN -- sh -c 'curl -s --max-time 2 http://host.nsrun.internal:8080/ || echo refused'
        expect_eq "$OUT" refused "host.nsrun.internal without --allow-host"
        expect_code 0 $NSRUN --hostname b1 -- getent hosts b1 host.nsrun.internal
        expect_contains "$OUT" "b1" "the sandbox's own name still resolves"
        expect_clean
        "#,
    );
}

#[test]
fn scripts_read_the_sandbox_addresses_from_the_info_file() {
    world(
        r#"
        snapshot
        # A symlink planted at the path is replaced, never followed.
        echo precious >"$WORK/precious"
        ln -s "$WORK/precious" "$WORK/info.json"
        $NSRUN --name api -p 8080:80 --info-file "$WORK/info.json" -- sh -c 'while [ ! -e "$TMPDIR/done" ]; do sleep 0.05; done' &
        pid=$!
        for _ in $(seq 200); do [ -f "$WORK/info.json" ] && [ ! -L "$WORK/info.json" ] && break; sleep 0.02; done
        expect_eq "$(cat "$WORK/precious")" precious "the symlink's target is untouched"
        field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$WORK/info.json" "$1"; }
        addr=$(field address)
        expect_eq "$(field netns)" /run/netns/api "the netns path"
        expect_eq "$(field name)" api "the name"
        expect_eq "$(field nsrun_pid)" "$pid" "nsrun's pid"
        expect_eq "$(field ports)" "[{'proto': 'tcp', 'host_ip': '0.0.0.0', 'host_port': 8080, 'sandbox_port': 80}]" "the published ports"
        [ "$(field started)" -gt 1000000000 ] || fail "the start time"
        expect_contains "$(ip netns exec api ip -4 -o addr show eth0)" "inet $addr/$(field prefix)" "the address and prefix are the sandbox's"
        touch "$TMPDIR/done"; wait $pid
        [ ! -e "$WORK/info.json" ] || fail "the info file outlives the sandbox"
        rm "$TMPDIR/done"
        # After kill -9 of nsrun, it goes too.
        $NSRUN --info-file "$WORK/info.json" -- sleep 60 &
        pid=$!
        wait_sandbox_up $pid
        [ -f "$WORK/info.json" ] || fail "no info file while the sandbox runs"
        kill -9 $pid; wait $pid || true
        for _ in $(seq 100); do [ -e "$WORK/info.json" ] || break; sleep 0.02; done
        [ ! -e "$WORK/info.json" ] || fail "the info file outlives a killed nsrun"
        rm "$WORK/precious"; rm -rf /run/nsrun
        expect_clean
        "#,
    );
}

#[test]
fn forwarding_that_someone_else_switched_on_stays_on() {
    world(
        r#"
        snapshot
        expect_eq "$(cat /proc/sys/net/ipv4/conf/eth0/forwarding)" 0 "forwarding before"
        $NSRUN -- sleep 60 &
        pid=$!
        wait_sandbox_up $pid
        expect_eq "$(cat /proc/sys/net/ipv4/conf/eth0/forwarding)" 1 "nsrun switched the uplink on"
        expect_eq "$(nft list tables | grep -c 'inet nsrun-guard')" 1 "nsrun guards the link it switched on"
        # The admin (or Docker, libvirt, Kubernetes) makes the host a router meanwhile:
        # nsrun's guard goes at once, so as not to cut the new router's traffic.
        sysctl -qw net.ipv4.ip_forward=1
        for _ in $(seq 100); do nft list tables | grep -q 'inet nsrun-guard' || break; sleep 0.02; done
        expect_eq "$(nft list tables | grep -c 'inet nsrun-guard' || true)" 0 "the guard is gone once the host is a router"
        kill -TERM $pid; wait $pid || true
        wait_holder_gone
        expect_eq "$(cat /proc/sys/net/ipv4/conf/eth0/forwarding)" 1 "the admin's forwarding is kept"
        sysctl -qw net.ipv4.ip_forward=0
        # Without the admin's change, nsrun puts back what it found.
        $NSRUN -- true
        wait_holder_gone
        expect_eq "$(cat /proc/sys/net/ipv4/conf/eth0/forwarding)" 0 "nsrun's own change is undone"
        expect_clean
        "#,
    );
}

#[test]
fn a_service_on_its_own_fixed_address_restarts_every_time() {
    world(
        r#"
        snapshot
        $NSRUN --ip 10.77.0.2 --user nobody -- python3 -m http.server --bind 10.77.0.2 80 >/dev/null 2>&1 &
        pid=$!
        wait_port - 10.77.0.2 80
        expect_code 0 curl -s --max-time 2 -o /dev/null -w '%{http_code}' http://10.77.0.2/
        expect_eq "$OUT" 200 "the host reaches the service on its fixed address"
        expect_code 125 $NSRUN --ip 10.77.0.2 -- true
        expect_contains "$ERR" "--ip 10.77.0.2: another running sandbox has this address (link nsr" "a second sandbox on the address"
        expect_contains "$ERR" "e.g. '--ip 10.77.0.6'" "the example is the same place in the next /30"
        kill -TERM $pid; wait $pid || true
        # Restart after restart, right after the previous one ended.
        for i in $(seq 50); do
          expect_code 0 $NSRUN --ip 10.77.0.2 -- sh -c 'ip -4 -o addr show eth0 | awk "{print \$4}"'
          expect_eq "$OUT" 10.77.0.2/31 "restart $i gets the address"
        done
        # An address the host has, or routes elsewhere.
        ip addr add 10.88.0.5/24 dev lo
        expect_code 125 $NSRUN --ip 10.88.0.7 -- true
        expect_contains "$ERR" "is in use on this host: address 10.88.0.5/24 of lo" "names who has it"
        ip addr del 10.88.0.5/24 dev lo
        ip route add 10.89.0.0/16 via 198.51.100.1 table 52
        expect_code 125 $NSRUN --ip 10.89.1.1 -- true
        expect_contains "$ERR" "route 10.89.0.0/16 in table 52" "a route of another table"
        expect_contains "$ERR" "e.g. '--ip 10.200.0.2'" "with every neighbour routed, the example comes from the pool"
        ip route del 10.89.0.0/16 via 198.51.100.1 table 52
        expect_code 125 $NSRUN --ip 203.0.113.9 -- true
        expect_contains "$ERR" "not a private address" "only private addresses"
        expect_clean
        "#,
    );
}

/// The host is the host: it connects into a sandbox from any of its addresses, not only
/// from its end of the sandbox's link (`curl --interface eth0`, a connection begun before
/// the sandbox's route existed), also to ports nothing publishes.
#[test]
fn the_host_connects_in_from_any_of_its_addresses() {
    world(
        r#"
        start_upstream_http
        snapshot
        published_service
        addr=$(sandbox_addr $SERVICE)
        expect_code 0 curl -s --max-time 2 http://$addr/
        expect_eq "$OUT" "${addr%.*}.$(( ${addr##*.} - 1 ))" "from the link's end"
        expect_code 0 curl -s --max-time 2 --interface 198.51.100.2 http://$addr/
        expect_eq "$OUT" 198.51.100.2 "from another of the host's addresses"
        ip addr add 192.0.2.44/32 dev lo
        # nsrun tells the sandbox's table of the new address within moments.
        for _ in $(seq 50); do curl -s --max-time 1 --interface 192.0.2.44 http://$addr/ >/dev/null && break; sleep 0.05; done
        expect_code 0 curl -s --max-time 2 --interface 192.0.2.44 http://$addr/
        expect_eq "$OUT" 192.0.2.44 "from an address the host gained while the sandbox runs"
        ip addr del 192.0.2.44/32 dev lo
        kill -TERM $SERVICE; wait $SERVICE || true
        expect_clean
        "#,
    );
}

#[test]
fn a_published_port_answers_the_internet_the_host_and_localhost() {
    world(
        r#"
        start_upstream_http
        python3 -m http.server --bind 127.0.0.1 9999 >/dev/null 2>&1 &
        wait_port - 127.0.0.1 9999
        snapshot
        # The sandbox's server answers with the client address it sees.
        published_service -p 8080:80
        pid=$SERVICE
        addr=$(sandbox_addr $pid)
        expect_code 0 in_up curl -s --max-time 2 http://198.51.100.2:8080/
        expect_eq "$OUT" 198.51.100.1 "from the internet, the client's address preserved"
        expect_code 0 curl -s --max-time 2 http://198.51.100.2:8080/
        expect_eq "$OUT" 198.51.100.2 "from the host through its own address"
        expect_code 0 curl -s --max-time 2 http://localhost:8080/
        expect_contains "$OUT" "10." "from the host through localhost"
        expect_code 125 $NSRUN -p 8080:80 -- true
        expect_contains "$ERR" "port 8080/tcp on 0.0.0.0 is taken on the host" "a port another sandbox has"
        expect_code 125 $NSRUN -p 9999:80 -- true
        expect_contains "$ERR" "port 9999/tcp on 0.0.0.0 is taken on the host" "a port a host service has"
        # Nothing of this opens the host's loopback services to a sandbox.
        expect_code 0 $NSRUN -- sh -c 'gw=$(ip route | awk "/default/ {print \$3}")
          curl -s --max-time 2 -o /dev/null http://$gw:9999/ && echo open || echo closed
          curl -s --max-time 2 -o /dev/null http://127.0.0.1:9999/ && echo open || echo closed'
        expect_eq "$(echo $OUT)" "closed closed" "the host's loopback-only service"
        kill -9 $pid; wait $pid || true
        # A published port's rule is `dnat ip to ...` (the holder's forward chain also says
        # `ct status ! dnat`); grep -c reads everything, so pipefail sees no SIGPIPE.
        for _ in $(seq 100); do [ "$(nft list ruleset | grep -c 'dnat ip to')" = 0 ] && break; sleep 0.02; done
        expect_not_contains "$(nft list ruleset)" "dnat ip to" "published ports vanish after kill -9"
        expect_code 0 in_up sh -c 'curl -s --max-time 1 http://198.51.100.2:8080/ || echo gone'
        expect_eq "$OUT" gone "the port no longer answers"
        expect_clean
        "#,
    );
}

#[test]
fn a_service_keeps_its_network_when_the_holder_or_the_nsrun_that_started_it_dies() {
    world(
        r#"
        start_upstream_http
        snapshot
        # A starts the holder; web is the long-running service.
        $NSRUN -- sleep 600 &
        first=$!
        wait_sandbox_up $first
        published_service --name web -p 8080:80
        web=$SERVICE
        check() {
          expect_code 0 ip netns exec web curl -s --max-time 2 http://198.51.100.1/
          expect_eq "$OUT" 198.51.100.2 "$1: web reaches the internet through NAT"
          expect_code 0 in_up curl -s --max-time 2 http://198.51.100.2:8080/
          expect_eq "$OUT" 198.51.100.1 "$1: the published port, with the client's address"
          expect_contains "$(ip netns list)" web "$1: the name"
        }
        check "before"
        for round in 1 2 3; do
          holder=$(pgrep -x nsrun-holder)
          kill -9 $holder
          # Within 100 ms a new holder has web's NAT and port again.
          for _ in $(seq 50); do nft list ruleset 2>/dev/null | grep -q 'dnat ip to' && break; sleep 0.01; done
          [ "$(pgrep -x nsrun-holder)" != "$holder" ] || fail "round $round: no new holder"
          check "round $round after kill -9 of the holder"
        done
        # The holder's command line is its own.
        expect_eq "$(cat /proc/$(pgrep -x nsrun-holder)/cmdline | tr '\0' ' ')" "nsrun-holder " "the holder in ps"
        init=$(sandbox_init $web)
        expect_eq "$(tr -s '\0' ' ' </proc/$init/cmdline | sed 's/ *$//')" "nsrun-init" "the init in ps"
        expect_eq "$(cat /proc/$init/comm)" "nsrun-init" "the init's name"
        expect_contains "$(tr '\0' ' ' </proc/$web/cmdline)" "--name web" "nsrun keeps its own command line"
        # The nsrun that started the first holder dies too.
        kill -9 $first; wait $first || true
        kill -9 $(pgrep -x nsrun-holder)
        sleep 0.2
        check "after kill -9 of the first nsrun and the holder"
        kill -TERM $web; wait $web || true
        expect_clean
        "#,
    );
}

#[test]
fn a_service_restarted_right_after_kill_9_gets_its_address_name_and_port_back() {
    world(
        r#"
        start_upstream_http
        snapshot
        for i in $(seq 20); do
          # No pause between the SIGKILL and the restart (systemd's RestartSec=0).
          $NSRUN --ip 10.77.0.2 --name web -p 8080:80 --user nobody -- python3 "$WORK/upstream_server.py" 10.77.0.2 80 2>"$WORK/err.$i" &
          pid=$!
          # This run's sandbox, not the killed one's last processes.
          wait_sandbox_up $pid || fail "restart $i: $(cat "$WORK/err.$i")"
          wait_port - 10.77.0.2 80
          expect_code 0 in_up curl -s --max-time 2 http://198.51.100.2:8080/
          expect_eq "$OUT" 198.51.100.1 "restart $i: the published port"
          expect_contains "$(ip netns list)" web "restart $i: the name"
          kill -9 $pid; wait $pid || true
        done
        expect_code 0 $NSRUN --ip 10.77.0.2 --name web -- true
        expect_clean
        "#,
    );
}

#[test]
fn idle_localhost_clients_cannot_exhaust_nsrun() {
    world(
        r#"
        start_upstream_http
        snapshot
        published_service -p 8080:80
        pid=$SERVICE
        python3 -c '
import socket, time
socks = []
for _ in range(300):
    s = socket.create_connection(("127.0.0.1", 8080))
    socks.append(s)
print("open", flush=True)
time.sleep(30)' >"$WORK/idle" &
        idle=$!
        for _ in $(seq 200); do grep -q open "$WORK/idle" && break; sleep 0.05; done
        sleep 0.5
        threads=$(awk '/^Threads:/ {print $2}' /proc/$pid/status)
        fds=$(ls /proc/$pid/fd | wc -l)
        [ "$threads" -lt 150 ] || fail "300 idle localhost clients gave nsrun $threads threads"
        [ "$fds" -lt 400 ] || fail "300 idle localhost clients gave nsrun $fds descriptors"
        kill $idle; wait $idle || true
        sleep 0.3
        expect_code 0 curl -s --max-time 2 http://127.0.0.1:8080/
        expect_contains "$OUT" "10." "localhost is served again"
        kill -TERM $pid; wait $pid || true
        expect_clean
        "#,
    );
}

/// The README's systemd unit, its ExecStart line as written there (with this build's
/// binary), through what systemd does to it: start, stop (SIGTERM to nsrun), a crash
/// (SIGKILL) with Restart=always at once, and a stop that kills the whole cgroup
/// (KillMode=mixed: the holder too, when this nsrun started it).
#[test]
fn the_readmes_unit_starts_stops_and_restarts() {
    let readme = include_str!("../README.md");
    let unit_start = readme.find("ExecStart=").expect("the README has a unit");
    let mut exec = String::new();
    for line in readme[unit_start + "ExecStart=".len()..].lines() {
        let line = line.trim();
        match line.strip_suffix('\\') {
            Some(head) => exec.push_str(&format!("{head} ")),
            None => {
                exec.push_str(line);
                break;
            }
        }
    }
    assert!(exec.starts_with("/usr/local/bin/nsrun "), "{exec}");
    let exec = exec.replacen("/usr/local/bin/nsrun", "$NSRUN", 1);
    world(&format!(
        r#"
        snapshot
        start() {{
          {exec} 2>"$WORK/err" &
          pid=$!
          wait_sandbox_up $pid || fail "the unit did not start: $(cat "$WORK/err")"
          wait_port - 10.77.0.2 80
          expect_code 0 in_up curl -s --max-time 2 -o /dev/null -w '%{{http_code}}' http://198.51.100.2:8080/
          expect_eq "$OUT" 200 "$1: the published port"
          [ -f /run/web.json ] || fail "$1: no info file"
          expect_contains "$(ip netns list)" web "$1: the name"
        }}
        start "start"
        # systemctl stop: SIGTERM to nsrun, which passes it on.
        kill -TERM $pid; wait $pid || true
        [ ! -e /run/web.json ] || fail "the info file outlives a stop"
        [ ! -e /run/netns/web ] || fail "the name outlives a stop"
        start "start after stop"
        # A crash, and Restart=always with no pause.
        kill -9 $pid; wait $pid || true
        start "restart right after SIGKILL"
        # A stop that kills the unit's whole cgroup: nsrun and the holder it started.
        kill -9 $pid $(pgrep -x nsrun-holder); wait $pid || true
        start "restart after the cgroup was killed"
        kill -TERM $pid; wait $pid || true
        wait_holder_gone
        rm -rf /run/nsrun
        expect_clean
        "#
    ));
}

#[test]
fn a_published_host_address_must_be_the_hosts_own_even_with_nonlocal_bind() {
    world(
        r#"
        start_upstream_http
        sysctl -qw net.ipv4.ip_nonlocal_bind=1
        snapshot
        expect_code 125 $NSRUN -p 198.51.100.1:8080:80 -- true
        expect_contains "$ERR" "--publish 198.51.100.1:8080:80: 198.51.100.1 is not an address of this host" "names the option and why"
        expect_contains "$ERR" "e.g. '-p 8080:80'" "a valid example"
        # The host's own connections to that destination are untouched.
        expect_code 0 curl -s --max-time 2 http://198.51.100.1/
        expect_eq "$OUT" 198.51.100.2 "root's own connection to 198.51.100.1"
        expect_code 0 $NSRUN -p 198.51.100.2:8080:80 -- true
        expect_clean
        sysctl -qw net.ipv4.ip_nonlocal_bind=0
        "#,
    );
}

/// A connection begun while no holder had the sandbox's NAT (the holder just killed, its
/// nsrun not yet registered again) is not left dead: once NAT is back, its untranslated
/// conntrack entry goes, and its next SYN gets through. On a host with NAT of its own
/// (Docker's, a LAN's), the first packet of such a connection is tracked with no
/// translation, which would otherwise hold for the connection's life.
#[test]
fn a_connection_begun_while_no_holder_ran_is_repaired() {
    world(
        r#"
        start_upstream_http
        nft add table ip hostnat
        nft add chain ip hostnat post '{ type nat hook postrouting priority srcnat; policy accept; }'
        nft add rule ip hostnat post ip saddr 172.17.0.0/16 oifname eth0 masquerade
        snapshot
        $NSRUN -- sleep 60 &
        pid=$!
        wait_sandbox_up $pid
        # nsrun stopped, so it cannot register again yet; then the holder killed.
        kill -STOP $pid
        kill -9 $(pgrep -x nsrun-holder)
        for _ in $(seq 100); do [ "$(holder_tables)" = 0 ] && break; sleep 0.02; done
        expect_eq "$(holder_tables)" 0 "no holder, no NAT"
        # A connection begins now: its SYN leaves the host untranslated.
        in_sandbox $pid curl -s --max-time 8 http://198.51.100.1/ >"$WORK/curl" 2>&1 &
        curl_pid=$!
        sleep 0.5
        kill -CONT $pid
        wait $curl_pid || fail "the connection begun without NAT stayed dead: $(cat "$WORK/curl")"
        expect_eq "$(cat "$WORK/curl")" 198.51.100.2 "it got through, masqueraded"
        kill -TERM $pid; wait $pid || true
        expect_clean
        nft delete table ip hostnat
        "#,
    );
}
