//! Networking: veth, addresses, NAT through the host, isolation, no leftovers.
//! Every test runs in a throwaway world with a fake upstream (tests/world.sh).

mod common;
use common::{world, world_with};

const CURL: &str = "curl -s --max-time 2";

#[test]
fn masquerade_reaches_the_upstream_as_the_host() {
    world(&format!(
        r#"
        start_upstream_http
        snapshot
        expect_code 0 $NSRUN -- {CURL} http://198.51.100.1/
        expect_eq "$OUT" 198.51.100.2 "the upstream saw the host's address"
        # 200 kB through an MTU-1400 path: MTU right, forwarding and NAT both ways.
        expect_code 0 $NSRUN -- sh -c '{CURL} http://198.51.100.1/big | wc -c'
        expect_eq "$OUT" 200001 "a large reply arrives whole"
        expect_eq "$(cat /proc/sys/net/ipv4/ip_forward)" 0 "global forwarding left off"
        wait_holder_gone
        expect_eq "$(cat /proc/sys/net/ipv4/conf/eth0/forwarding)" 0 "uplink forwarding back off after the last sandbox"
        expect_code 0 $NSRUN -v -- true
        expect_contains "$ERR" "set net.ipv4.conf.eth0.forwarding=1 (was 0)" "--verbose names the global setting it changes"
        expect_clean
        "#
    ));
}

#[test]
fn sandbox_mtu_follows_the_uplink() {
    for mtu in ["1400", "9000"] {
        world_with(
            &[("UPLINK_MTU", mtu)],
            r#"
            snapshot
            expect_code 0 $NSRUN -- cat /sys/class/net/eth0/mtu
            expect_eq "$OUT" "$UPLINK_MTU" "sandbox eth0 MTU"
            expect_code 0 $NSRUN -v -- true
            expect_contains "$ERR" "mtu $UPLINK_MTU" "verbose shows the MTU"
            expect_clean
            "#,
        );
    }
}

#[test]
fn the_sandbox_sees_its_address_and_route() {
    world(
        r#"
        snapshot
        expect_code 0 $NSRUN --pool 10.77.0.0/24 -- sh -c 'ip -4 -o addr show eth0; ip route'
        expect_contains "$OUT" "inet 10.77.0." "address from the pool"
        expect_contains "$OUT" "/30" "a /30"
        expect_contains "$OUT" "default via 10.77.0." "default route via the host end"
        # Subnets in use on the host, as addresses or routes, are skipped.
        wait_holder_gone
        expect_clean
        ip route add 10.77.1.0/25 via 198.51.100.1
        ip addr add 10.77.1.130/26 dev lo
        snapshot
        for _ in $(seq 10); do
          expect_code 0 $NSRUN --pool 10.77.1.0/24 -- sh -c "ip -4 -o addr show eth0 | awk '{print \$4}'"
          ip=${OUT%/*}; last=${ip##*.}
          [ "$last" -ge 192 ] || fail "subnet of $OUT overlaps a route or address of the host"
        done
        expect_code 125 $NSRUN --pool 10.77.0.1/24 -- true
        expect_contains "$ERR" "--pool 10.77.0.1/24: host bits are set" "bad pool"
        expect_clean
        "#,
    );
}

#[test]
fn filters_live_in_the_sandbox_and_nat_with_the_holder() {
    world(
        r#"
        snapshot
        $NSRUN -- sleep 30 &
        pid=$!
        wait_sandbox_up $pid
        addr=$(sandbox_addr $pid)
        # The policy: a table in the sandbox's own netns, made before eth0 came up.
        rules=$(in_sandbox $pid nft list ruleset)
        expect_contains "$rules" "table inet nsrun" "the sandbox's table"
        expect_contains "$rules" "meta nfproto ipv6 jump refuse" "IPv6 refused"
        expect_contains "$rules" "ip saddr != $addr drop" "anti-spoofing"
        expect_contains "$rules" "ip daddr 169.254.0.0/16 jump refuse" "link-local closed"
        expect_contains "$rules" "ip daddr 198.51.100.2 jump refuse" "the host's address closed"
        expect_contains "$rules" "reject with tcp reset" "refused, not dropped"
        # The host keeps only NAT, in the holder's owned table.
        host=$(nft list ruleset)
        expect_contains "$host" "table inet nsrun" "the host's NAT table"
        expect_contains "$host" "flags owner" "owned by the holder's socket"
        expect_contains "$host" "ip saddr $addr oifname != \"nsr*\" masquerade" "NAT for this sandbox"
        link=$(ip -o link show | grep -o 'nsr[0-9a-f]*' | head -1)
        expect_eq "$(ip -6 -o addr show dev $link)" "" "no IPv6 address on the host end"
        # nft flush ruleset on the host touches neither.
        nft flush ruleset
        expect_eq "$(holder_tables)" 1 "the NAT table survives a foreign flush"
        expect_contains "$(in_sandbox $pid nft list tables)" "inet nsrun" "the sandbox's table is out of reach"
        kill -9 $pid
        # After kill -9: the NAT rule goes at once, the link within a moment.
        for _ in $(seq 100); do nft list ruleset | grep -q "$addr" || break; sleep 0.01; done
        expect_not_contains "$(nft list ruleset)" "$addr" "no NAT rule after kill -9"
        # An error once everything exists: exec fails.
        expect_code 127 $NSRUN -- no-such-command-here
        # SIGTERM to nsrun.
        $NSRUN -- sleep 30 &
        pid=$!
        wait_sandbox_up $pid
        kill -TERM $pid
        set +e; wait $pid; code=$?; set -e
        expect_eq "$code" 143 "exit code after SIGTERM"
        expect_clean
        "#,
    );
}

#[test]
fn an_exhausted_pool_is_an_error_that_leaves_nothing() {
    world(
        r#"
        ip addr add 10.78.0.1/29 dev lo
        snapshot
        expect_code 125 $NSRUN --pool 10.78.0.0/29 -- true
        expect_contains "$ERR" "address pool 10.78.0.0/29 is exhausted" "pool exhausted"
        expect_contains "$ERR" "--pool" "says what to do"
        expect_eq "$(echo "$ERR" | wc -l)" 1 "one line"
        expect_clean
        "#,
    );
}

#[test]
fn isolation_host_metadata_and_other_sandboxes() {
    world(&format!(
        r#"
        start_upstream_http
        # Host services on every host address, and a metadata stand-in beyond the uplink
        # (the upstream's server on 0.0.0.0:80 answers there).
        python3 "$WORK/upstream_server.py" 0.0.0.0 8080 &
        wait_port - 127.0.0.1 8080
        in_up ip addr add 169.254.169.254/32 dev lo
        ip route add 169.254.169.254/32 via 198.51.100.1
        expect_code 0 {CURL} http://169.254.169.254/
        snapshot

        # The host's uplink address and the sandbox's own gateway are closed.
        expect_code 0 $NSRUN -- sh -c 'gw=$(ip route | awk "/default/ {{print \$3}}"); {CURL} http://198.51.100.2:8080/ || echo uplink-blocked; {CURL} http://$gw:8080/ || echo gateway-blocked; {CURL} http://169.254.169.254/ || echo metadata-blocked; {CURL} http://198.51.100.1/'
        expect_eq "$(echo $OUT)" "uplink-blocked gateway-blocked metadata-blocked 198.51.100.2" "default reach"
        # --allow-host opens the host.
        expect_code 0 $NSRUN --allow-host -- sh -c 'gw=$(ip route | awk "/default/ {{print \$3}}"); {CURL} http://198.51.100.2:8080/; {CURL} http://$gw:8080/'
        expect_contains "$OUT" "10.200." "the host answered the sandbox"

        # Another sandbox is closed; the host can still connect in, and replies flow.
        $NSRUN -- python3 "$WORK/upstream_server.py" 0.0.0.0 9090 &
        server=$!
        # The server's link: up (a sandbox that just ended leaves its link down a moment).
        for _ in $(seq 100); do ip -4 -o addr show up | grep -q nsr && break; sleep 0.05; done
        a_net=$(ip -4 -o addr show up | awk '/nsr/ {{print $4}}' | head -1)
        a_ip=$(python3 -c "import ipaddress,sys; n=ipaddress.ip_interface(sys.argv[1]); print(n.ip+1)" $a_net)
        wait_port - $a_ip 9090
        expect_code 0 {CURL} http://$a_ip:9090/
        expect_contains "$OUT" "10.200." "the host reaches into a sandbox"
        expect_code 0 $NSRUN -- sh -c '{CURL} http://'$a_ip':9090/ || echo sandbox-blocked'
        expect_eq "$OUT" "sandbox-blocked" "one sandbox cannot reach another"
        kill -TERM $server
        wait $server || true
        expect_clean
        "#
    ));
}

#[test]
fn block_lan_closes_private_ranges() {
    world(&format!(
        r#"
        start_upstream_http
        in_up ip addr add 10.99.0.1/32 dev lo
        ip route add 10.99.0.1/32 via 198.51.100.1
        snapshot
        expect_code 0 $NSRUN -- {CURL} http://10.99.0.1/
        expect_eq "$OUT" 198.51.100.2 "the LAN is open by default"
        expect_code 0 $NSRUN --block-lan -- sh -c '{CURL} http://10.99.0.1/ || echo lan-blocked; {CURL} http://198.51.100.1/'
        expect_eq "$(echo $OUT)" "lan-blocked 198.51.100.2" "--block-lan closes the LAN, not the internet"
        expect_clean
        "#
    ));
}

#[test]
fn fifty_sandboxes_at_once_get_distinct_subnets() {
    world(
        r#"
        start_upstream_http
        snapshot
        pids=()
        for i in $(seq 50); do
          # A generous timeout: fifty sandboxes on two loaded CPUs.
          $NSRUN --user root -- sh -c 'ip -4 -o addr show eth0 | awk "{print \$4}"; curl -s --max-time 10 http://198.51.100.1/ >/dev/null && echo ok || echo "curl failed: $?"; sleep 0.5' >"$WORK/s$i" 2>&1 &
          pids+=($!)
        done
        fails=0
        for pid in "${pids[@]}"; do wait $pid || fails=$((fails+1)); done
        expect_eq "$fails" 0 "failed sandboxes: $(cat $WORK/s* | grep nsrun: | head -3)"
        oks=$(cat $WORK/s* | grep -c '^ok$' || true)
        expect_eq "$oks" 50 "all 50 sandboxes reached the upstream: $(grep -h 'curl failed' $WORK/s* | sort | uniq -c)"
        distinct=$(cat $WORK/s* | grep / | sort -u | wc -l)
        expect_eq "$distinct" 50 "50 distinct subnets"
        expect_clean
        "#,
    );
}

#[test]
fn works_with_no_network_tools_on_the_host() {
    world(&format!(
        r#"
        start_upstream_http
        snapshot
        unshare --mount --propagation private bash -c '
          for t in ip nft iptables iptables-nft iptables-legacy sysctl; do
            for p in /usr/sbin/$t /sbin/$t /usr/bin/$t /bin/$t; do [ -e $p ] && mount --bind /dev/null $p; done
          done
          command -v ip >/dev/null && [ -s "$(command -v ip)" ] && exit 99
          exec $NSRUN -- {CURL} http://198.51.100.1/' >"$WORK/out"
        expect_eq "$(cat $WORK/out)" 198.51.100.2 "nsrun needs no ip, nft, iptables or sysctl"
        expect_clean
        "#
    ));
}

#[test]
fn a_failure_after_the_veth_and_table_exist_leaves_nothing() {
    world(
        r#"
        snapshot
        # /proc/sys read-only for this nsrun only: setting up the host end fails after the
        # veth and the owned table were created.
        expect_code 125 unshare --mount --propagation private bash -c \
          'mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && exec $NSRUN -- true'
        expect_contains "$ERR" "enable forwarding: write /proc/sys/net/ipv4/conf/" "names the step"
        expect_contains "$ERR" "Read-only file system (os error 30)" "keeps the errno"
        expect_eq "$(echo "$ERR" | wc -l)" 1 "one line"
        expect_clean
        "#,
    );
}
