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
        ip netns add ctr
        ip link add docker0 type veth peer name ceth0 netns ctr
        ip link set docker0 addrgenmode none
        ip addr add 172.17.0.1/16 dev docker0
        ip link set docker0 up
        ip netns exec ctr ip addr add 172.17.0.2/16 dev ceth0
        ip netns exec ctr ip link set ceth0 up
        ip netns exec ctr python3 "$WORK/upstream_server.py" 0.0.0.0 8081 &
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
