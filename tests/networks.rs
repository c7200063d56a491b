//! `--network NAME`: the tutorials' bridge lab. Members talk to each other by address
//! and by name on every port and protocol; nothing else reaches them, and they reach
//! nothing else but the internet; the network is gone with its last member, however
//! members end.

mod common;
use common::world;

/// Shell helpers: members kept running, each an HTTP server (as nobody, on port 80) that
/// answers with the client's address.
const HELPERS: &str = r#"
# member NETWORK NAME [FLAGS...]: a member serving HTTP on port 80; its nsrun's pid in
# $MEMBER.
member() {
  local network=$1 name=$2; shift 2
  $NSRUN --network "$network" --name "$name" --user nobody "$@" -- python3 "$WORK/upstream_server.py" 0.0.0.0 80 >/dev/null 2>"$WORK/$name.err" &
  MEMBER=$!
  wait_sandbox_up $MEMBER
  wait_port - "$(sandbox_addr $MEMBER)" 80
}
"#;

fn lab(script: &str) {
    world(&format!(
        "{HELPERS}\nstart_upstream_http\nstart_dns up 198.51.100.1\n{script}"
    ));
}

#[test]
fn the_lab_members_talk_to_each_other_and_nothing_else_reaches_them() {
    lab(r#"
        snapshot
        member lab db; DB=$MEMBER; DB_IP=$(sandbox_addr $DB)
        member lab web; WEB=$MEMBER; WEB_IP=$(sandbox_addr $WEB)
        case $DB_IP in 10.201.0.*) ;; *) fail "a network's subnet comes from 10.201.0.0/16: $DB_IP";; esac
        # A third member: ping, names, every port, no NAT between members; the internet
        # through NAT as usual.
        expect_code 0 $NSRUN --network lab --name client --user nobody -- sh -c '
          ping -c1 -W2 db >/dev/null && echo ping-db
          ping -c1 -W2 web.lab.nsrun.internal >/dev/null && echo ping-web
          curl -s -m2 http://db/; curl -s -m2 http://web.lab.nsrun.internal/
          curl -s -m2 http://198.51.100.1/
          getent hosts upstream.test | cut -d" " -f1
          ip -o -4 addr show eth0 | awk "{print \$4}"'
        lines=($OUT)
        expect_eq "${lines[0]} ${lines[1]}" "ping-db ping-web" "members ping each other by name"
        client=${lines[6]%/24}
        expect_eq "${lines[2]}" "$client" "db sees the client's own address (no NAT between members)"
        expect_eq "${lines[3]}" "$client" "web, by its full name"
        expect_eq "${lines[4]}" 198.51.100.2 "the internet through NAT"
        expect_eq "${lines[5]}" 198.51.100.1 "upstream names resolve as for a lone sandbox"
        # UDP and broadcast on the segment: db hears web's broadcast.
        expect_code 0 in_sandbox $DB true
        # Another network and a lone sandbox cannot reach the members, nor resolve them.
        expect_code 0 $NSRUN --network other -- sh -c "curl -s -m2 http://$DB_IP/; echo curl=\$?; getent hosts db || echo no-name"
        expect_eq "$OUT" "curl=7
no-name" "another network: refused at once, and db's name is not its"
        expect_code 0 $NSRUN -- sh -c "curl -s -m2 http://$DB_IP/; echo curl=\$?"
        expect_eq "$OUT" "curl=7" "a lone sandbox: refused at once"
        # ... and the members cannot reach them either: a lone service, another network's.
        published_service
        LONE_IP=$(sandbox_addr $SERVICE)
        member other srv; OTHER=$MEMBER; OTHER_IP=$(sandbox_addr $OTHER)
        expect_code 0 $NSRUN --network lab -- sh -c "for a in $LONE_IP $OTHER_IP; do curl -s -m2 http://\$a/; echo curl=\$?; done; getent hosts srv || echo no-name"
        expect_eq "$OUT" "curl=7
curl=7
no-name" "a member cannot reach a lone sandbox or another network's member"
        # The host is closed to members (its gateway and other addresses), unless asked.
        expect_code 0 $NSRUN --network lab -- sh -c 'curl -s -m2 http://198.51.100.2:9/; echo curl=$?; ping -c1 -W1 host.nsrun.internal >/dev/null 2>&1 || echo no-ping'
        expect_eq "$OUT" "curl=7
no-ping" "the host is refused to a member"
        # The host reaches members, as it reaches a lone sandbox.
        expect_eq "$(curl -s -m2 http://$DB_IP/)" "$(ip -4 -o addr show | awk '/nsr/ {print $4}' | cut -d/ -f1 | grep -m1 ^10.201.0.)" "the host connects in from the gateway"
        kill $SERVICE $OTHER; wait $SERVICE $OTHER || true
        kill $DB $WEB; wait $DB $WEB || true
        wait_holder_gone
        expect_clean
        "#);
}

#[test]
fn a_member_started_later_is_found_by_name_and_forgotten_when_it_leaves() {
    lab(r#"
        snapshot
        member lab db; DB=$MEMBER
        # A member that asks again and again, from the start.
        $NSRUN --network lab --name watcher -- sh -c 'while :; do getent hosts late >/dev/null && echo found && break; sleep 0.1; done; while getent hosts late >/dev/null; do sleep 0.1; done; echo gone' >"$WORK/watch" 2>/dev/null &
        WATCH=$!
        wait_sandbox_up $WATCH
        sleep 0.3
        [ ! -s "$WORK/watch" ] || fail "late resolved before it joined: $(cat $WORK/watch)"
        member lab late; LATE=$MEMBER; LATE_IP=$(sandbox_addr $LATE)
        for _ in $(seq 20); do grep -q found "$WORK/watch" && break; sleep 0.1; done
        expect_eq "$(cat $WORK/watch)" found "a member that joined later resolves within a second"
        expect_code 0 in_sandbox $DB true
        expect_code 0 $NSRUN --network lab -- getent hosts late
        expect_contains "$OUT" "$LATE_IP" "late's address"
        kill $LATE; wait $LATE || true
        for _ in $(seq 30); do grep -q gone "$WORK/watch" && break; sleep 0.1; done
        expect_eq "$(tail -1 $WORK/watch)" gone "a member that left stops resolving"
        wait $WATCH
        kill $DB; wait $DB || true
        wait_holder_gone
        expect_clean
        "#);
}

#[test]
fn fixed_addresses_keep_their_mac_and_conflicts_are_refused_with_a_fix() {
    lab(r#"
        snapshot
        member lab red --subnet 10.10.0.0/24 --ip 10.10.0.5; RED=$MEMBER
        mac_of() { in_sandbox $1 ip -o link show eth0 | grep -o 'ether [^ ]*' | cut -d' ' -f2; }
        mac=$(mac_of $RED)
        case $mac in 02:??:0a:0a:00:05) ;; *) fail "a stable, locally administered MAC of the address: $mac";; esac
        expect_code 125 $NSRUN --network lab --ip 10.10.0.5 -- true
        expect_contains "$ERR" "--ip 10.10.0.5: member red of network lab has this address" "a taken --ip names its holder"
        expect_code 125 $NSRUN --network lab --subnet 10.11.0.0/24 -- true
        expect_contains "$ERR" "network lab runs with subnet 10.10.0.0/24; drop --subnet, or give '--subnet 10.10.0.0/24'" "another --subnet"
        expect_code 125 $NSRUN --network lab --name red -- true
        expect_contains "$ERR" "--name/--hostname red: member 10.10.0.5 of network lab" "a name taken"
        expect_code 125 $NSRUN --network lab --hostname red -- true
        expect_contains "$ERR" "member 10.10.0.5 of network lab" "a host name taken in the network"
        expect_code 125 $NSRUN --network lab --ip 10.10.0.5 -- true
        expect_contains "$ERR" "e.g. '--ip 10.10.0.2'" "a free address as the example"
        expect_code 125 $NSRUN --network lab --ip 10.12.0.5 -- true
        expect_contains "$ERR" "network lab has subnet 10.10.0.0/24" "an --ip outside the subnet"
        ip route add 10.55.0.0/16 via 198.51.100.1
        expect_code 125 $NSRUN --network lan2 --subnet 10.55.3.0/24 -- true
        expect_contains "$ERR" "--subnet 10.55.3.0/24: the host uses addresses there (route 10.55.0.0/16" "a subnet the host routes"
        expect_code 125 $NSRUN --network lan2 --subnet 198.51.100.0/24 -- true
        expect_contains "$ERR" "not a private range" "a public --subnet"
        expect_code 125 $NSRUN --network lan3 --ip 10.55.7.7 -- true
        expect_contains "$ERR" "the subnet of --ip, 10.55.7.0/24: the host uses addresses there" "a new network on a subnet the host routes"
        ip route del 10.55.0.0/16 via 198.51.100.1
        expect_code 125 $NSRUN --network lab --no-net -- true
        expect_contains "$ERR" "drop --no-net" "--network with --no-net"
        for e in "$ERR"; do expect_eq "$(echo "$e" | wc -l)" 1 "one line"; done
        # The same member again, right after it ends (the network went with it, and
        # --ip makes it again on its /24): its address and its MAC.
        kill $RED; wait $RED || true
        member lab red --ip 10.10.0.5; RED=$MEMBER
        expect_eq "$(mac_of $RED)" "$mac" "the MAC after a restart"
        kill -9 $RED; wait $RED || true
        member lab red --ip 10.10.0.5; RED=$MEMBER
        expect_eq "$(sandbox_addr $RED)" 10.10.0.5 "the address right after kill -9"
        kill $RED; wait $RED || true
        wait_holder_gone
        expect_clean
        "#);
}

#[test]
fn every_member_killed_at_once_leaves_nothing_and_a_failed_join_takes_nothing() {
    lab(r#"
        snapshot
        pids=()
        for n in a b c; do member lab $n; pids+=($MEMBER); done
        expect_contains "$(ip -o link show)" "alias nsrun network lab" "the network's link says whose it is"
        kill -9 "${pids[@]}"; wait "${pids[@]}" || true
        wait_holder_gone
        expect_clean
        # A member whose command cannot start: the network it made is gone with it.
        expect_code 127 $NSRUN --network lab -- /nonexistent
        wait_holder_gone
        expect_clean
        # The subnet is free again: the next network takes it.
        member lab2 x; X=$MEMBER
        case $(sandbox_addr $X) in 10.201.0.*) ;; *) fail "the first subnet is free again";; esac
        kill $X; wait $X || true
        wait_holder_gone
        expect_clean
        "#);
}

/// Docker loads br_netfilter, so traffic across a bridge in the host's namespace meets
/// the host's FORWARD chain, whose policy is DROP. A network's bridge is in its own
/// namespace: its members still talk, and the host's rules are as they were.
#[test]
fn on_a_docker_like_host_members_still_talk() {
    if !common::require_tool("iptables") {
        return;
    }
    lab(r#"
        echo 1 >/proc/sys/net/ipv4/ip_forward
        iptables -P FORWARD DROP
        iptables -N DOCKER-USER
        iptables -A FORWARD -j DOCKER-USER
        if [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
          expect_eq "$(cat /proc/sys/net/bridge/bridge-nf-call-iptables)" 1 "br_netfilter calls iptables for bridged packets here"
        fi
        before=$(iptables -S)
        snapshot
        member lab db; DB=$MEMBER
        expect_code 0 $NSRUN --network lab -- sh -c 'curl -s -m2 http://db/ >/dev/null && echo member; curl -s -m2 http://198.51.100.1/'
        expect_eq "$OUT" "member
198.51.100.2" "members talk, and reach the internet, through a FORWARD policy DROP"
        kill $DB; wait $DB || true
        wait_holder_gone
        expect_eq "$(iptables -S)" "$before" "iptables' rules as before"
        expect_clean
        "#);
}

/// A hundred members started at once: each gets its own address, all reach each other
/// (a ring of pings, each member to the next, through their own tables) and every name
/// resolves; then nothing is left.
#[test]
fn a_hundred_members_start_at_once_and_reach_each_other() {
    lab(r#"
        snapshot
        pids=()
        for i in $(seq 100); do
          $NSRUN --network big --name m$i -- sleep 120 >/dev/null 2>"$WORK/m$i.err" &
          pids+=($!)
        done
        addrs=()
        for p in "${pids[@]}"; do wait_sandbox_up $p; addrs+=($(sandbox_addr $p)); done
        expect_eq "$(printf '%s\n' "${addrs[@]}" | sort -u | wc -l)" 100 "a hundred distinct addresses"
        for i in $(seq 0 99); do
          next=${addrs[$(( (i + 1) % 100 ))]}
          in_sandbox ${pids[$i]} ping -c1 -W2 $next >/dev/null || fail "member $i cannot reach $next"
        done
        expect_code 0 $NSRUN --network big -- sh -c 'for i in $(seq 100); do getent hosts m$i >/dev/null || echo m$i; done; echo done'
        expect_eq "$OUT" done "every member's name resolves"
        kill "${pids[@]}"; wait "${pids[@]}" || true
        wait_holder_gone
        expect_clean
        "#);
}

/// A member is a sandbox like any other: it publishes a port on the host, `--list`
/// names its network, `--pcap` captures its port; and members hear each other's
/// broadcasts on their segment.
#[test]
fn a_member_publishes_ports_is_listed_captured_and_hears_broadcasts() {
    lab(r#"
        snapshot
        member lab web -p 8080:80 --pcap "$WORK/web.pcap"; WEB=$MEMBER; WEB_IP=$(sandbox_addr $WEB)
        expect_code 0 in_up curl -s -m2 http://198.51.100.2:8080/
        expect_eq "$OUT" 198.51.100.1 "a member's published port, from the internet"
        expect_code 0 $NSRUN --list --json
        expect_contains "$OUT" '"network": "lab"' "--list names the member's network"
        $NSRUN --network lab --name ear --user nobody -- /usr/bin/python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 9999)); s.settimeout(5)
print(s.recvfrom(100)[0].decode())' >"$WORK/heard" 2>/dev/null &
        EAR=$!
        wait_sandbox_up $EAR
        for _ in $(seq 100); do in_sandbox $EAR ss -lun | grep -q ':9999 ' && break; sleep 0.02; done
        broadcast=${WEB_IP%.*}.255
        expect_code 0 $NSRUN --network lab --user nobody -- /usr/bin/python3 -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.sendto(b'hello', ('$broadcast', 9999))"
        wait $EAR
        expect_eq "$(cat $WORK/heard)" hello "a broadcast on the network's subnet reaches a member"
        # The whole network, as -v says: tcpdump on its bridge, in its namespace.
        $NSRUN -v --network lab -- sleep 30 2>"$WORK/v.err" &
        V=$!
        wait_sandbox_up $V
        capture=$(grep -o 'sudo nsenter --net=[^ ]* tcpdump -ni br0' "$WORK/v.err")
        expect_contains "$capture" "tcpdump -ni br0" "-v says how to capture the network"
        timeout 10 ${capture#sudo } -c 2 icmp >"$WORK/dump" 2>/dev/null &
        DUMP=$!
        sleep 0.5
        expect_code 0 $NSRUN --network lab -- ping -c5 -i0.2 -W2 web
        wait $DUMP || true
        expect_contains "$(cat $WORK/dump)" "> $WEB_IP: ICMP echo request" "member to member, on the bridge"
        kill $V; wait $V || true
        kill $WEB; wait $WEB || true
        expect_contains "$(tcpdump -nr $WORK/web.pcap 2>/dev/null)" "> $WEB_IP.80: Flags [S]" "the member's port, captured"
        wait_holder_gone
        expect_clean
        "#);
}

/// The holder is expendable: killed while members run, they keep talking to each other
/// and to the internet. And a network name someone else took first (another user's
/// socket of that name) is never joined: an error says whose it is.
#[test]
fn members_outlive_the_holder_and_a_squatted_name_is_refused() {
    lab(r#"
        snapshot
        member lab a; A=$MEMBER
        member lab b; B=$MEMBER; B_IP=$(sandbox_addr $B)
        kill -9 $(pgrep -x nsrun-holder)
        expect_code 0 in_sandbox $A ping -c1 -W2 $B_IP
        expect_code 0 in_sandbox $A curl -s -m3 http://198.51.100.1/
        expect_eq "$OUT" 198.51.100.2 "the internet, through the holder that came back"
        setpriv --reuid=65534 --regid=65534 --clear-groups /usr/bin/python3 -c '
import socket, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); s.bind(b"\0nsrun-net-taken"); s.listen(5)
time.sleep(30)' &
        SQUAT=$!
        for _ in $(seq 100); do grep -q '@nsrun-net-taken' /proc/net/unix && break; sleep 0.02; done
        expect_code 125 $NSRUN --network taken -- true
        expect_contains "$ERR" "--network taken: @nsrun-net-taken belongs to uid 65534, not to root" "a squatted name"
        kill $SQUAT; wait $SQUAT || true
        # One that binds the name without listening: refused at once too, not waited on.
        setpriv --reuid=65534 --regid=65534 --clear-groups /usr/bin/python3 -c '
import socket, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); s.bind(b"\0nsrun-net-mute")
time.sleep(30)' &
        SQUAT=$!
        for _ in $(seq 100); do grep -q '@nsrun-net-mute' /proc/net/unix && break; sleep 0.02; done
        started=$(date +%s%N)
        expect_code 125 $NSRUN --network mute -- true
        expect_contains "$ERR" "another program holds @nsrun-net-mute without listening" "a mute squatter"
        [ $(( ($(date +%s%N) - started) / 1000000 )) -lt 3000 ] || fail "the mute squatter was waited on"
        kill $SQUAT; wait $SQUAT || true
        # A member's name is free again the moment its nsrun has ended (a restart loop).
        for _ in 1 2 3; do
          expect_code 0 $NSRUN --network lab --name again -- true
        done
        kill $A $B; wait $A $B || true
        wait_holder_gone
        expect_clean
        "#);
}

/// Hosts whose firewall drops forwarded packets (iptables-legacy, an nftables filter):
/// members reach the internet and each other as lone sandboxes do, and the host's
/// rules are as before afterwards.
#[test]
fn on_hosts_that_drop_forwarding_members_still_reach_out() {
    if !common::require_tool("iptables-legacy") {
        return;
    }
    lab(r#"
        for fw in legacy nft; do
          case $fw in
            legacy) iptables-legacy -P FORWARD DROP; echo 1 >/proc/sys/net/ipv4/ip_forward;;
            nft) nft add table inet filter
                 nft add chain inet filter forward '{ type filter hook forward priority 0; policy drop; }';;
          esac
          snapshot
          member lab db; DB=$MEMBER
          expect_code 0 $NSRUN --network lab -- sh -c 'curl -s -m2 http://198.51.100.1/; curl -s -m2 http://db/ >/dev/null && echo peer'
          expect_eq "$OUT" "198.51.100.2
peer" "the internet and a peer, with $fw dropping forwarded packets"
          kill $DB; wait $DB || true
          wait_holder_gone
          expect_clean
          case $fw in
            legacy) iptables-legacy -P FORWARD ACCEPT; echo 0 >/proc/sys/net/ipv4/ip_forward;;
            nft) nft delete table inet filter;;
          esac
        done
        "#);
}
