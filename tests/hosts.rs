//! Hosts whose own firewall drops forwarded packets (Docker, ufw, an nftables filter):
//! nsrun works there once nsrun's interfaces are let through, and before that refuses
//! to run the command with a dead network, naming the chain and the fix.

mod common;
use common::{require_tool, world};

/// Runs nsrun, expects the refusal, applies the fix it names, and expects the network.
const REFUSE_THEN_FIX: &str = r#"
refuse_then_fix() { # refuse_then_fix WHAT-THE-MESSAGE-NAMES
  expect_code 125 $NSRUN --user root -- curl -s --max-time 2 http://198.51.100.1/
  expect_contains "$ERR" "$1" "the refusal names the obstacle"
  expect_contains "$ERR" "so the sandbox would have no network" "says why"
  expect_eq "$(echo "$ERR" | wc -l)" 1 "one line"
  fix=${ERR##*let nsrun\'s interfaces through: }
  fix=${fix//sudo /}
  eval "$fix"
  wait_holder_gone
  snapshot
  expect_code 0 $NSRUN -- curl -s --max-time 2 http://198.51.100.1/
  expect_eq "$OUT" 198.51.100.2 "internet once the fix is in"
  expect_clean
}
"#;

#[test]
fn iptables_forward_policy_drop_is_refused_then_works_with_the_fix() {
    if !require_tool("iptables") {
        return;
    }
    world(&format!(
        r#"{REFUSE_THEN_FIX}
        start_upstream_http
        iptables -P FORWARD DROP
        refuse_then_fix "chain FORWARD of table ip filter, iptables has policy drop"
        "#
    ));
}

#[test]
fn docker_hosts_get_the_docker_user_fix_and_unpublished_ports_stay_closed() {
    if !require_tool("iptables") {
        return;
    }
    world(&format!(
        r#"{REFUSE_THEN_FIX}
        start_upstream_http
        # Docker 28's layout: FORWARD policy DROP, DOCKER-USER first, then Docker's chains
        # that accept only published ports into docker0.
        behind_host ctr docker0 172.17.0.1/16 172.17.0.2 8081
        iptables -N DOCKER-USER
        iptables -N DOCKER
        iptables -P FORWARD DROP
        iptables -A FORWARD -j DOCKER-USER
        iptables -A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
        iptables -A FORWARD -o docker0 -j DOCKER
        iptables -A FORWARD -i docker0 -j ACCEPT
        iptables -A DOCKER-USER -j RETURN
        refuse_then_fix "Docker's has policy drop"
        expect_code 0 $NSRUN --allow-host -- sh -c 'curl -s --max-time 2 http://172.17.0.2:8081/ || echo unpublished-closed'
        expect_eq "$OUT" "unpublished-closed" "Docker's unpublished container port"
        "#
    ));
}

#[test]
fn an_nftables_forward_chain_with_policy_drop_is_refused_then_works_with_the_fix() {
    world(&format!(
        r#"{REFUSE_THEN_FIX}
        start_upstream_http
        nft add table inet filter
        nft add chain inet filter forward '{{ type filter hook forward priority 0; policy drop; }}'
        refuse_then_fix "chain forward of table inet filter has policy drop"
        "#
    ));
}

/// A host with a network behind it (eth1, 192.168.50.0/24), `ip_forward=0`: its uplink
/// neighbour must not be able to route through it into that network, before, while a
/// sandbox runs, or after.
#[test]
fn the_host_never_becomes_a_router_for_its_neighbours() {
    world(
        r#"
        start_upstream_http
        behind_host lan eth1 192.168.50.1/24 192.168.50.2 80
        in_up ip route add 192.168.50.0/24 via 198.51.100.2
        probe() { in_up curl -s --max-time 1 -o /dev/null http://192.168.50.2/ && echo routed || echo not-routed; }
        expect_eq "$(probe)" not-routed "before"
        snapshot
        $NSRUN -v -- sh -c 'while [ ! -e "$TMPDIR/done" ]; do sleep 0.05; done' 2>"$WORK/verbose" &
        pid=$!
        wait_sandbox_up $pid
        expect_eq "$(cat /proc/sys/net/ipv4/conf/eth0/forwarding)" 1 "the uplink forwards for the sandbox"
        expect_eq "$(probe)" not-routed "while a sandbox runs"
        expect_code 0 $NSRUN -- curl -s --max-time 2 http://192.168.50.2/
        expect_eq "$OUT" 192.168.50.1 "a sandbox still reaches the network behind the host"
        touch "$TMPDIR/done"; wait $pid
        expect_contains "$(cat $WORK/verbose)" "set net.ipv4.conf.eth0.forwarding=1 (was 0)" "-v says what it changes"
        expect_contains "$(cat $WORK/verbose)" "goes back to 0 when the last sandbox ends" "-v says what remains"
        wait_holder_gone
        expect_eq "$(probe)" not-routed "after"
        rm "$TMPDIR/done"
        expect_clean
        "#,
    );
}

/// wg-quick's layout: the default route in table 51820, chosen by a policy rule, through
/// a link with a smaller MTU; the main table's default still points at eth0.
#[test]
fn policy_routing_and_the_mtu_follow_the_kernels_choice() {
    world(
        r#"
        start_upstream_http
        # "wg0": a second link to the upstream, MTU 1280, taken by policy routing.
        ip link add wg0 mtu 1280 type veth peer name wgpeer netns up
        ip link set wg0 addrgenmode none
        ip addr add 203.0.113.2/25 dev wg0
        ip link set wg0 up
        in_up ip addr add 203.0.113.1/25 dev wgpeer
        in_up ip link set wgpeer mtu 1280 up
        in_up ip addr add 203.0.113.200/32 dev lo
        ip route add default via 203.0.113.1 dev wg0 table 51820
        ip rule add not fwmark 0xca6c table 51820 pref 32000
        ip rule add table main suppress_prefixlength 0 pref 31999
        snapshot
        expect_code 0 $NSRUN -v -- sh -c 'cat /sys/class/net/eth0/mtu; curl -s --max-time 2 http://203.0.113.200/'
        expect_eq "$(echo $OUT)" "1280 203.0.113.2" "MTU of wg0, traffic through wg0"
        expect_contains "$ERR" "the internet is reached through wg0" "-v names the route it uses"
        wait_holder_gone
        expect_clean
        "#,
    );
}

#[test]
fn iptables_legacy_forward_policy_drop_is_refused_then_works_with_the_fix() {
    if !require_tool("iptables-legacy") {
        return;
    }
    world(&format!(
        r#"{REFUSE_THEN_FIX}
        start_upstream_http
        iptables-legacy -P FORWARD DROP
        refuse_then_fix "chain FORWARD of iptables-legacy's filter table has policy DROP"
        iptables-legacy -F FORWARD
        iptables-legacy -P FORWARD ACCEPT
        "#
    ));
}

/// The ufw package itself (default deny routed: FORWARD policy DROP), enabled in the
/// world with its own sysctl file emptied (some of its settings are machine-wide).
#[test]
fn ufw_deny_routed_is_refused_then_works_with_the_fix() {
    if !require_tool("ufw") {
        return;
    }
    world(&format!(
        r#"{REFUSE_THEN_FIX}
        start_upstream_http
        : >/etc/ufw/sysctl.conf
        ufw --force enable >/dev/null
        refuse_then_fix "chain FORWARD of table ip filter, iptables has policy drop"
        "#
    ));
}
