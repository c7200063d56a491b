//! Hosts whose own firewall drops forwarded packets (Docker, ufw, firewalld, an nftables
//! filter, iptables-legacy): nsrun works there out of the box, lets nothing else through,
//! and leaves the host's rulesets as they were; where it cannot, it refuses before the
//! command runs, with a fix that works.

mod common;
use common::{require_tool, world};

/// Runs `script` in a world with the helpers below and the fake upstream's web server,
/// when `tools` are installed.
fn host_world(tools: &[&str], script: &str) {
    if tools.iter().all(|t| require_tool(t)) {
        world(&format!("{HELPERS}\nstart_upstream_http\n{script}"));
    }
}

/// Shell helpers: a sandbox kept running, the network checks, the refusal then the fix.
const HELPERS: &str = r#"
# works_through CHAIN: internet and DNS out of the box; -v names the chain nsrun let its
# interfaces through; afterwards the world is as before.
works_through() {
  snapshot
  expect_code 0 $NSRUN -v -- sh -c 'curl -s --max-time 2 http://198.51.100.1/; getent ahostsv4 upstream.test | head -1'
  expect_eq "$(echo "$OUT" | head -1)" 198.51.100.2 "internet"
  expect_contains "$(echo "$OUT" | tail -1)" "198.51.100.1 " "DNS"
  expect_contains "$ERR" "let its interfaces through $1" "-v names the chain"
  wait_holder_gone
  expect_clean
}

start_sandbox() {
  $NSRUN "$@" -- sh -c 'while [ ! -e "$TMPDIR/done" ]; do sleep 0.05; done' &
  SANDBOX=$!
  wait_sandbox_up $SANDBOX
}
stop_sandbox() { touch "$TMPDIR/done"; wait $SANDBOX; rm "$TMPDIR/done"; }

# A published port answers the internet through the host's firewall.
expect_published_port_works() {
  published_service -p 8080:80
  expect_code 0 in_up curl -s --max-time 2 http://198.51.100.2:8080/
  expect_eq "$OUT" 198.51.100.1 "a published port from the internet"
  kill $SERVICE; wait $SERVICE || true
}

# docker_host IPTABLES: Docker 28's layout (FORWARD policy DROP, DOCKER-USER first, then
# Docker's chains that accept only published ports into docker0), forwarding on, a
# container behind docker0 whose port 8081 is not published, an admin's own rule (nothing
# forwarded reaches 203.0.113.0/24), and the uplink's side routing into docker0's network.
docker_host() {
  local ipt=$1
  echo 1 >/proc/sys/net/ipv4/ip_forward
  behind_host ctr docker0 172.17.0.1/16 172.17.0.2 8081
  $ipt -N DOCKER-USER
  $ipt -N DOCKER
  $ipt -P FORWARD DROP
  $ipt -A FORWARD -j DOCKER-USER
  $ipt -A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
  $ipt -A FORWARD -o docker0 -j DOCKER
  $ipt -A FORWARD -i docker0 -j ACCEPT
  $ipt -A DOCKER-USER -d 203.0.113.0/24 -j DROP
  $ipt -A DOCKER-USER -j RETURN
  in_up ip route add 172.17.0.0/16 via 198.51.100.2
  expect_eq "$(probe_behind 172.17.0.2:8081)" not-routed "Docker drops it before"
}

expect_admin_drop_holds() {
  expect_code 0 $NSRUN -- sh -c 'curl -s --max-time 1 http://203.0.113.1/ || echo dropped'
  expect_eq "$OUT" dropped "the admin's DOCKER-USER drop still holds for sandboxes"
}

# From the uplink's side, through the host, into the network behind it.
probe_behind() { in_up curl -s --max-time 1 -o /dev/null "http://$1/" && echo routed || echo not-routed; }

refuse_then_fix() { # refuse_then_fix WHAT-THE-MESSAGE-NAMES
  expect_code 125 $NSRUN --user root -- curl -s --max-time 2 http://198.51.100.1/
  expect_contains "$ERR" "$1" "the refusal names the obstacle"
  expect_contains "$ERR" "so the sandbox would have no network" "says why"
  expect_eq "$(echo "$ERR" | wc -l)" 1 "one line"
  fix=${ERR##*let nsrun\'s interfaces through: }
  fix=${fix//sudo /}
  ${BEFORE_FIX:-}
  eval "$fix"
  wait_holder_gone
  snapshot
  expect_code 0 $NSRUN -- curl -s --max-time 2 http://198.51.100.1/
  expect_eq "$OUT" 198.51.100.2 "internet once the fix is in"
  expect_clean
}
"#;

/// Docker 28's layout with iptables-nft: FORWARD policy DROP, DOCKER-USER first, then
/// Docker's chains that accept only published ports into docker0; forwarding on.
#[test]
fn docker_hosts_work_out_of_the_box_and_unpublished_ports_stay_closed() {
    host_world(
        &["iptables"],
        r#"
        start_dns up 198.51.100.1
        docker_host iptables
        before_rules=$(iptables -S)
        works_through "chain FORWARD of table ip filter"
        expect_admin_drop_holds

        start_sandbox
        expect_eq "$(iptables -S FORWARD | tail -2)" '-A FORWARD -i nsr+ -o eth0 -m comment --comment "nsrun: sandboxes to the internet through eth0" -j ACCEPT
-A FORWARD -o nsr+ -m comment --comment "nsrun: to sandboxes, which accept only replies and published ports" -j ACCEPT' "iptables lists nsrun's rules, last"
        expect_eq "$(probe_behind 172.17.0.2:8081)" not-routed "Docker still drops it while a sandbox runs"
        for opt in "" --allow-host; do
          expect_code 0 $NSRUN $opt -- sh -c 'curl -s --max-time 1 http://172.17.0.2:8081/ || echo closed'
          expect_eq "$OUT" closed "an unpublished container port from a sandbox ($opt)"
        done
        stop_sandbox
        # Connections from the internet to a published port pass Docker's FORWARD too.
        expect_published_port_works
        wait_holder_gone
        expect_eq "$(probe_behind 172.17.0.2:8081)" not-routed "Docker drops it after"
        expect_eq "$(iptables -S)" "$before_rules" "iptables' rules as before"
        expect_clean
        "#,
    );
}

/// The ufw package itself (default deny routed: FORWARD policy DROP, deny incoming),
/// enabled in the world with its own sysctl file emptied (some of its settings are
/// machine-wide).
#[test]
fn ufw_hosts_work_out_of_the_box() {
    host_world(
        &["ufw"],
        r#"
        start_dns up 198.51.100.1
        : >/etc/ufw/sysctl.conf
        ufw --force enable >/dev/null
        works_through "chain FORWARD of table ip filter"
        expect_contains "$(iptables -S FORWARD)" "-P FORWARD DROP" "ufw's policy stays"
        # A resolver on the host's own address, which ufw's deny incoming closes to
        # everything but loopback: relayed, so names resolve.
        start_dns - 198.51.100.2
        printf 'nameserver 198.51.100.2\n' >/etc/resolv.conf
        snapshot
        expect_code 0 $NSRUN -- getent ahostsv4 upstream.test
        expect_contains "$OUT" "198.51.100.1 " "DNS from the host's own resolver"
        wait_holder_gone
        expect_clean
        "#,
    );
}

/// firewalld's nftables layout: a forward chain with policy accept that ends by
/// rejecting what its zones did not accept; a network behind the host stays rejected
/// for the uplink's neighbours.
#[test]
fn firewalld_hosts_work_out_of_the_box() {
    host_world(
        &[],
        r#"
        start_dns up 198.51.100.1
        echo 1 >/proc/sys/net/ipv4/ip_forward
        behind_host lan eth1 192.168.50.1/24 192.168.50.2 80
        in_up ip route add 192.168.50.0/24 via 198.51.100.2
        cat >"$WORK/firewalld.nft" <<'NFT'
table inet firewalld {
  chain filter_FORWARD {
    type filter hook forward priority filter + 10; policy accept;
    ct state { established, related } accept
    ct status dnat accept
    iifname "lo" accept
    ct state invalid drop
    jump filter_FORWARD_POLICIES
    reject with icmpx admin-prohibited
  }
  chain filter_FORWARD_POLICIES {
    iifname "eth1" oifname "eth1" accept
  }
}
NFT
        nft -f "$WORK/firewalld.nft"
        expect_eq "$(probe_behind 192.168.50.2)" not-routed "firewalld rejects it before"
        # A default route of another routing table through the LAN is not the internet's.
        ip route add default via 192.168.50.2 dev eth1 table 100
        works_through "chain filter_FORWARD of table inet firewalld"
        snapshot
        start_sandbox
        expect_eq "$(probe_behind 192.168.50.2)" not-routed "while a sandbox runs"
        expect_code 0 $NSRUN -- sh -c 'curl -s --max-time 1 http://192.168.50.2/ || echo closed'
        expect_eq "$OUT" closed "the host's firewall decides for a network behind it"
        expect_not_contains "$(nft list chain inet firewalld filter_FORWARD)" "through eth1" "only the internet's link is opened"
        expect_contains "$(nft list chain inet firewalld filter_FORWARD | tail -3)" "reject with icmpx admin-prohibited" "the host's final reject stays last"
        # `firewall-cmd --reload` while the sandbox runs: the table is made anew (its
        # rules get handles nsrun was given before). nsrun's rules go back in at once,
        # and at the end only nsrun's rules go.
        nft delete table inet firewalld
        nft -f "$WORK/firewalld.nft"
        expect_code 0 in_sandbox $SANDBOX curl -s --max-time 2 http://198.51.100.1/
        expect_eq "$OUT" 198.51.100.2 "the running sandbox after the reload"
        expect_code 0 $NSRUN -- curl -s --max-time 2 http://198.51.100.1/
        expect_eq "$OUT" 198.51.100.2 "a sandbox started after the reload"
        stop_sandbox
        wait_holder_gone
        expect_clean
        wait_holder_gone
        expect_eq "$(probe_behind 192.168.50.2)" not-routed "after"
        "#,
    );
}

/// An nftables `inet filter forward` with policy drop. A holder killed while its rules
/// are in: they stay (inert), and the next holder adopts and removes them. A chain whose
/// owner already lets nsrun's interfaces through is left alone.
#[test]
fn an_nftables_forward_policy_drop_works_and_a_killed_holders_rules_are_adopted() {
    host_world(
        &[],
        r#"
        start_dns up 198.51.100.1
        echo 1 >/proc/sys/net/ipv4/ip_forward
        nft add table inet filter
        nft add chain inet filter forward '{ type filter hook forward priority 0; policy drop; }'
        works_through "chain forward of table inet filter"

        snapshot
        start_sandbox
        kill -9 $(pgrep -x nsrun-holder)
        stop_sandbox
        expect_eq "$(nft list chain inet filter forward | grep -c 'comment "nsrun: ')" 2 "a killed holder's rules stay"
        expect_code 0 $NSRUN -- curl -s --max-time 2 http://198.51.100.1/
        expect_eq "$OUT" 198.51.100.2 "the next run works"
        wait_holder_gone
        expect_clean

        nft insert rule inet filter forward iifname "nsr*" accept
        nft insert rule inet filter forward oifname "nsr*" ct state established,related accept
        snapshot
        expect_code 0 $NSRUN -v -- curl -s --max-time 2 http://198.51.100.1/
        expect_eq "$OUT" 198.51.100.2 "the owner's rules let it through"
        expect_not_contains "$ERR" "let its interfaces through" "nothing added to a chain that accepts nsr already"
        wait_holder_gone
        expect_clean
        "#,
    );
}

/// A firewall that starts while a sandbox runs (Docker or ufw started after a service's
/// sandbox) is let through within a second or so, with no notification: the holder
/// listens to nf_tables' notifications only while another firewall holds its rules
/// (while anyone listens, the kernel writes a notification for every change in every
/// namespace, each sandbox's table and allow-list included). From then on, a reload that
/// drops nsrun's rules is repaired at once.
#[test]
fn a_firewall_started_while_a_sandbox_runs_is_let_through() {
    host_world(
        &[],
        r#"
        start_dns up 198.51.100.1
        # Sockets subscribed to nf_tables' notifications (NETLINK_NETFILTER, groups set).
        nft_listeners() { awk '$2 == 12 && $4 != "00000000"' /proc/net/netlink | wc -l; }
        snapshot
        start_sandbox
        expect_eq "$(nft_listeners)" 0 "no notifications while no other firewall holds nsrun's rules"
        nft add table inet filter
        nft add chain inet filter forward '{ type filter hook forward priority 0; policy drop; }'
        for _ in $(seq 40); do nft list chain inet filter forward | grep -q 'nsrun: ' && break; sleep 0.1; done
        expect_code 0 in_sandbox $SANDBOX curl -s --max-time 2 http://198.51.100.1/
        expect_eq "$OUT" 198.51.100.2 "the running sandbox through a firewall that started after it"
        expect_eq "$(nft_listeners)" 1 "notifications while another firewall holds nsrun's rules"
        # A reload that drops nsrun's rules: back at once.
        nft flush chain inet filter forward
        expect_code 0 in_sandbox $SANDBOX curl -s --max-time 2 http://198.51.100.1/
        expect_eq "$OUT" 198.51.100.2 "the running sandbox right after a reload"
        # The firewall gone: nothing holds nsrun's rules, no more notifications.
        nft delete table inet filter
        for _ in $(seq 30); do [ "$(nft_listeners)" = 0 ] && break; sleep 0.1; done
        expect_eq "$(nft_listeners)" 0 "no notifications once the other firewall is gone"
        expect_code 0 in_sandbox $SANDBOX curl -s --max-time 2 http://198.51.100.1/
        stop_sandbox
        wait_holder_gone
        expect_clean
        "#,
    );
}

/// iptables-legacy's FORWARD set to DROP while a sandbox runs (it has no notifications
/// and no generation): let through within a second or so.
#[test]
fn an_iptables_legacy_drop_set_while_a_sandbox_runs_is_let_through() {
    host_world(
        &["iptables-legacy"],
        r#"
        start_dns up 198.51.100.1
        iptables-legacy -L FORWARD >/dev/null
        snapshot
        start_sandbox
        iptables-legacy -P FORWARD DROP
        for _ in $(seq 40); do iptables-legacy -S FORWARD | grep -q 'nsrun: ' && break; sleep 0.1; done
        expect_code 0 in_sandbox $SANDBOX curl -s --max-time 2 http://198.51.100.1/
        expect_eq "$OUT" 198.51.100.2 "the running sandbox through a FORWARD DROP set after it"
        stop_sandbox
        wait_holder_gone
        iptables-legacy -P FORWARD ACCEPT
        expect_clean
        "#,
    );
}

/// iptables-legacy (x_tables): FORWARD policy DROP works out of the box, through the
/// same entries, written as iptables-legacy writes them; iptables-legacy lists them and
/// its table is as before afterwards.
#[test]
fn iptables_legacy_forward_policy_drop_works() {
    host_world(
        &["iptables-legacy"],
        r#"
        start_dns up 198.51.100.1
        iptables-legacy -P FORWARD DROP
        iptables-legacy -A FORWARD -i eth9 -j ACCEPT
        iptables-legacy -A INPUT -p udp --dport 7000 -j ACCEPT
        in_up python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); [s.sendto(b"x", ("198.51.100.2", 7000)) for _ in range(3)]'
        udp_count() { iptables-legacy -L INPUT -v -x -n | awk '/dpt:7000/ {print $1}'; }
        expect_eq "$(udp_count)" 3 "the host's counter"
        works_through "chain FORWARD of iptables-legacy's filter table"
        expect_eq "$(udp_count)" 3 "counters carried over both replaces"
        start_sandbox
        expect_eq "$(iptables-legacy -S FORWARD | sed -n 2,4p)" '-A FORWARD -i eth9 -j ACCEPT
-A FORWARD -i nsr+ -o eth0 -m comment --comment "nsrun: sandboxes to the internet through eth0" -j ACCEPT
-A FORWARD -o nsr+ -m comment --comment "nsrun: to sandboxes, which accept only replies and published ports" -j ACCEPT' "the host's rules first, nsrun's last"
        # A restore without nsrun's entries while the sandbox runs: back within a second
        # or so (iptables-legacy has no notifications; the holder looks every second).
        iptables-legacy-save | grep -v 'nsrun: ' | iptables-legacy-restore
        for _ in $(seq 30); do iptables-legacy -S FORWARD | grep -q 'nsrun: ' && break; sleep 0.1; done
        expect_code 0 in_sandbox $SANDBOX curl -s --max-time 2 http://198.51.100.1/
        expect_eq "$OUT" 198.51.100.2 "the running sandbox after an iptables-legacy-restore"
        stop_sandbox
        wait_holder_gone
        expect_clean
        # A killed holder's entries stay (inert); the next holder adopts and removes them.
        start_sandbox
        kill -9 $(pgrep -x nsrun-holder)
        stop_sandbox
        expect_eq "$(iptables-legacy -S FORWARD | grep -c 'nsrun: ')" 2 "a killed holder's entries stay"
        start_sandbox
        expect_code 0 in_sandbox $SANDBOX curl -s --max-time 2 http://198.51.100.1/
        expect_eq "$(iptables-legacy -S FORWARD | grep -c 'nsrun: ')" 2 "adopted, not added again"
        stop_sandbox
        wait_holder_gone
        expect_clean
        "#,
    );
}

/// Docker with iptables-legacy: works out of the box, unpublished container ports stay
/// closed, published ports work; when iptables' lock stays held, nsrun refuses with the
/// DOCKER-USER fix, which works.
#[test]
fn iptables_legacy_docker_hosts_work_out_of_the_box_or_get_the_docker_user_fix() {
    host_world(
        &["iptables-legacy"],
        r#"
        start_dns up 198.51.100.1
        docker_host iptables-legacy
        works_through "chain FORWARD of iptables-legacy's filter table"
        expect_admin_drop_holds
        start_sandbox
        expect_eq "$(probe_behind 172.17.0.2:8081)" not-routed "while a sandbox runs"
        expect_code 0 $NSRUN -- sh -c 'curl -s --max-time 1 http://172.17.0.2:8081/ || echo closed'
        expect_eq "$OUT" closed "an unpublished container port from a sandbox"
        stop_sandbox
        expect_published_port_works
        wait_holder_gone
        expect_eq "$(probe_behind 172.17.0.2:8081)" not-routed "after"
        expect_clean

        # iptables' lock held by a stuck iptables: refused, with the fix.
        ( exec 9>/run/xtables.lock; flock 9; exec sleep 30 ) &
        locker=$!
        for _ in $(seq 100); do flock -n /run/xtables.lock true || break; sleep 0.02; done
        BEFORE_FIX="kill $locker" refuse_then_fix "Docker's) and nsrun could not let its interfaces through (/run/xtables.lock stays locked"
        expect_contains "$(iptables-legacy -S DOCKER-USER)" "-A DOCKER-USER -i nsr+ ! -o docker0 -j ACCEPT" "the fix went into DOCKER-USER"
        expect_code 0 $NSRUN -- sh -c 'curl -s --max-time 1 http://172.17.0.2:8081/ || echo closed'
        expect_eq "$OUT" closed "an unpublished container port, with the fix"
        "#,
    );
}

/// A host with a network behind it (eth1, 192.168.50.0/24), `ip_forward=0`: its uplink
/// neighbour must not be able to route through it into that network, before, while a
/// sandbox runs, or after.
#[test]
fn the_host_never_becomes_a_router_for_its_neighbours() {
    host_world(
        &[],
        r#"
        behind_host lan eth1 192.168.50.1/24 192.168.50.2 80
        in_up ip route add 192.168.50.0/24 via 198.51.100.2
        expect_eq "$(probe_behind 192.168.50.2)" not-routed "before"
        snapshot
        $NSRUN -v -- sh -c 'while [ ! -e "$TMPDIR/done" ]; do sleep 0.05; done' 2>"$WORK/verbose" &
        pid=$!
        wait_sandbox_up $pid
        expect_eq "$(cat /proc/sys/net/ipv4/conf/eth0/forwarding)" 1 "the uplink forwards for the sandbox"
        expect_eq "$(probe_behind 192.168.50.2)" not-routed "while a sandbox runs"
        expect_code 0 $NSRUN -- curl -s --max-time 2 http://192.168.50.2/
        expect_eq "$OUT" 192.168.50.1 "a sandbox still reaches the network behind the host"
        touch "$TMPDIR/done"; wait $pid
        expect_contains "$(cat $WORK/verbose)" "set net.ipv4.conf.eth0.forwarding=1 (was 0)" "-v says what it changes"
        expect_contains "$(cat $WORK/verbose)" "goes back to 0 when the last sandbox ends" "-v says what remains"
        wait_holder_gone
        expect_eq "$(probe_behind 192.168.50.2)" not-routed "after"
        rm "$TMPDIR/done"
        expect_clean

        # The holder itself killed while a sandbox runs (and its nsrun stopped, so that
        # nobody starts a new holder): the guard outlives it, in table inet nsrun-guard,
        # and the next nsrun's holder adopts it and switches forwarding back when it exits.
        killed_holder_stays_guarded() {
          "$@" sh -c 'while [ ! -e "$TMPDIR/done" ]; do sleep 0.05; done' &
          local pid=$!
          wait_sandbox_up $pid
          kill -STOP $pid
          kill -9 $(pgrep -x nsrun-holder)
          for _ in $(seq 100); do [ "$(holder_tables)" = 0 ] && break; sleep 0.02; done
          expect_eq "$(cat /proc/sys/net/ipv4/conf/eth0/forwarding)" 1 "left on by the killed holder ($*)"
          expect_eq "$(probe_behind 192.168.50.2)" not-routed "guarded with no holder ($*)"
          kill -9 $pid; wait $pid || true
          expect_code 0 "$@" true
          wait_holder_gone
          expect_eq "$(probe_behind 192.168.50.2)" not-routed "after the next run ($*)"
          expect_eq "$(cat /proc/sys/net/ipv4/conf/eth0/forwarding)" 0 "switched back by the next holder ($*)"
        }
        killed_holder_stays_guarded $NSRUN --
        expect_clean
        # The same for a file-capability install's holder, which runs as the user who may
        # kill it.
        cp $NSRUN "$WORK/nsrun"
        setcap cap_net_admin,cap_sys_admin,cap_setpcap+ep "$WORK/nsrun"
        snapshot
        killed_holder_stays_guarded setpriv --reuid=65534 --regid=65534 --clear-groups "$WORK/nsrun" --
        expect_clean
        "#,
    );
}

/// wg-quick's layout: the default route in table 51820, chosen by a policy rule, through
/// a link with a smaller MTU; the main table's default still points at eth0.
#[test]
fn policy_routing_and_the_mtu_follow_the_kernels_choice() {
    host_world(
        &[],
        r#"
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

/// Several uplinks: an ECMP default route over eth0 and eth1, then no default route at
/// all, then OpenVPN's def1 pair through eth1. Each time the sandbox has the network the
/// host has, and the host's sysctls are as before afterwards.
#[test]
fn multipath_no_default_and_def1_routes_work() {
    host_world(
        &[],
        r#"
        ip link add eth1 type veth peer name up1 netns up
        ip link set eth1 addrgenmode none
        ip addr add 203.0.113.66/26 dev eth1
        ip link set eth1 up
        in_up ip addr add 203.0.113.65/26 dev up1
        in_up ip link set up1 up
        ip route del default
        ip route add default nexthop via 198.51.100.1 dev eth0 nexthop via 203.0.113.65 dev eth1
        snapshot
        expect_code 0 $NSRUN -v -- sh -c 'curl -s --max-time 2 http://198.51.100.1/; curl -s --max-time 2 http://203.0.113.1/'
        expect_eq "$(echo $OUT | wc -w)" 2 "the internet over a multipath default route [$OUT]"
        expect_contains "$ERR" "net.ipv4.conf.eth0.forwarding=1" "forwarding on the first next hop's link"
        expect_contains "$ERR" "net.ipv4.conf.eth1.forwarding=1" "and on the second's"
        wait_holder_gone
        expect_clean

        ip route del default
        snapshot
        expect_code 0 $NSRUN -v -- curl -s --max-time 2 http://198.51.100.1/
        expect_eq "$OUT" 198.51.100.2 "no default route: the on-link network the host reaches"
        expect_contains "$ERR" "the host has no route to the internet" "-v says so"
        wait_holder_gone
        expect_clean

        ip route add default via 198.51.100.1
        ip route add 0.0.0.0/1 via 203.0.113.65 dev eth1
        ip route add 128.0.0.0/1 via 203.0.113.65 dev eth1
        snapshot
        expect_code 0 $NSRUN -v -- curl -s --max-time 2 http://203.0.113.1/
        expect_eq "$OUT" 203.0.113.66 "def1: the internet through eth1"
        expect_contains "$ERR" "the internet is reached through eth1" "-v names it"
        wait_holder_gone
        expect_clean
        "#,
    );
}

/// Tailscale's layout: tailnet routes and the 100.100.100.100 resolver in table 52,
/// chosen by a policy rule, through tailscale0; its ts-forward chain; MagicDNS in
/// resolv.conf. The sandbox reaches tailnet peers and the resolver, and the internet.
#[test]
fn tailscale_peers_and_its_resolver_are_reached() {
    host_world(
        &["iptables"],
        r#"
        ip netns add ts
        ip link add tailscale0 mtu 1280 type veth peer name ts0 netns ts
        ip link set tailscale0 addrgenmode none
        ip addr add 100.101.102.103/32 dev tailscale0
        ip link set tailscale0 up
        ip netns exec ts ip link set lo up
        ip netns exec ts ip link set ts0 mtu 1280 up
        ip netns exec ts ip addr add 100.100.100.100/32 dev lo
        ip netns exec ts ip addr add 100.64.0.5/32 dev lo
        ip netns exec ts ip route add 100.101.102.103/32 dev ts0
        ip route add 100.64.0.0/10 dev tailscale0 table 52
        ip route add 100.100.100.100/32 dev tailscale0 table 52
        ip rule add pref 5270 table 52
        ip netns exec ts python3 "$WORK/upstream_server.py" 100.64.0.5 80 &
        wait_port ts 100.64.0.5 80
        start_dns ts 100.100.100.100
        iptables -N ts-forward
        iptables -A FORWARD -j ts-forward
        iptables -A ts-forward -i tailscale0 -j MARK --set-xmark 0x40000/0xff0000
        iptables -A ts-forward -m mark --mark 0x40000/0xff0000 -j ACCEPT
        iptables -A ts-forward -s 100.64.0.0/10 -o tailscale0 -j DROP
        iptables -A ts-forward -o tailscale0 -j ACCEPT
        printf 'nameserver 100.100.100.100
search tail1234.ts.net
' >/etc/resolv.conf
        snapshot
        expect_code 0 $NSRUN -v -- sh -c 'curl -s --max-time 2 http://100.64.0.5/; getent ahostsv4 upstream.test | head -1; curl -s --max-time 2 http://198.51.100.1/'
        expect_eq "$(echo "$OUT" | sed -n 1p)" 100.101.102.103 "a tailnet peer, through tailscale0"
        expect_contains "$(echo "$OUT" | sed -n 2p)" "198.51.100.1 " "MagicDNS at 100.100.100.100"
        expect_eq "$(echo "$OUT" | sed -n 3p)" 198.51.100.2 "the internet, through eth0"
        expect_contains "$ERR" "net.ipv4.conf.tailscale0.forwarding=1" "-v: forwarding for tailscale0"
        wait_holder_gone
        expect_clean
        "#,
    );
}

/// kube-proxy's iptables-nft layout: KUBE-FORWARD (drops invalid), KUBE-FIREWALL on
/// input and output, a ClusterIP and a NodePort DNATed to a pod behind cni0. The sandbox
/// has the internet; the NodePort on the host's address is the host's, so closed; the
/// ClusterIP is a network behind the host, closed with --block-lan.
#[test]
fn kube_proxy_hosts_keep_nodeports_closed() {
    host_world(
        &["iptables"],
        r#"
        start_dns up 198.51.100.1
        echo 1 >/proc/sys/net/ipv4/ip_forward
        behind_host pod cni0 10.244.0.1/24 10.244.0.5 8081
        iptables -N KUBE-FORWARD
        iptables -A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
        iptables -A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
        iptables -A KUBE-FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT
        iptables -A KUBE-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
        iptables -N KUBE-FIREWALL
        iptables -A INPUT -j KUBE-FIREWALL
        iptables -A OUTPUT -j KUBE-FIREWALL
        iptables -A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
        iptables -t nat -N KUBE-SERVICES
        iptables -t nat -N KUBE-NODEPORTS
        iptables -t nat -A PREROUTING -j KUBE-SERVICES
        iptables -t nat -A OUTPUT -j KUBE-SERVICES
        iptables -t nat -A KUBE-SERVICES -d 10.96.0.10/32 -p tcp --dport 80 -j DNAT --to-destination 10.244.0.5:8081
        iptables -t nat -A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
        iptables -t nat -A KUBE-NODEPORTS -p tcp --dport 30080 -j DNAT --to-destination 10.244.0.5:8081
        iptables -t nat -A POSTROUTING -s 10.244.0.0/16 ! -o cni0 -j MASQUERADE
        expect_code 0 curl -s --max-time 2 http://198.51.100.2:30080/
        expect_eq "$OUT" 198.51.100.2 "the host reaches its NodePort"
        snapshot
        expect_code 0 $NSRUN -- sh -c 'curl -s --max-time 2 http://198.51.100.1/
          getent ahostsv4 upstream.test | head -1
          curl -s --max-time 2 http://198.51.100.2:30080/ || echo nodeport-closed
          curl -s --max-time 2 http://10.96.0.10/ || echo clusterip-closed'
        expect_eq "$(echo "$OUT" | sed -n 1p)" 198.51.100.2 "internet"
        expect_contains "$(echo "$OUT" | sed -n 2p)" "198.51.100.1 " "DNS"
        expect_eq "$(echo "$OUT" | sed -n 3p)" nodeport-closed "a NodePort on the host's address"
        expect_contains "$(echo "$OUT" | sed -n 4p)" "10." "a ClusterIP, like any network behind the host"
        expect_code 0 $NSRUN --block-lan -- sh -c 'curl -s --max-time 2 http://10.96.0.10/ || echo clusterip-closed'
        expect_eq "$OUT" clusterip-closed "--block-lan closes it"
        wait_holder_gone
        expect_clean
        "#,
    );
}

/// A nameserver on a LAN behind eth1 while the internet is reached through eth0, on a
/// host whose firewall drops forwarded packets: nsrun opens that firewall only towards
/// the internet, so the sandbox's queries go through the relay, from the host, as the
/// host's own do; the LAN itself stays closed to the sandbox.
#[test]
fn a_nameserver_off_the_internets_link_is_relayed() {
    host_world(
        &[],
        r#"
        behind_host lan eth1 192.168.50.1/24 192.168.50.2 80
        start_dns lan 192.168.50.2
        printf 'nameserver 192.168.50.2\nsearch corp.test\n' >/etc/resolv.conf
        nft add table inet filter
        nft add chain inet filter forward '{ type filter hook forward priority 0; policy drop; }'
        snapshot
        expect_code 0 $NSRUN -v -- sh -c 'getent ahostsv4 upstream.test | head -1; cat /etc/resolv.conf; curl -s --max-time 1 http://192.168.50.2/ || echo lan-closed'
        expect_contains "$ERR" "nsrun relays queries from 127.0.0.53:53 in the sandbox to 192.168.50.2:53" "-v says so"
        expect_contains "$(echo "$OUT" | sed -n 1p)" "198.51.100.1 " "names resolve"
        expect_contains "$OUT" "search corp.test" "the search line kept"
        expect_eq "$(echo "$OUT" | tail -1)" lan-closed "the LAN behind the host's firewall"
        wait_holder_gone
        expect_clean
        "#,
    );
}

/// A host that masquerades what it forwards from its LAN (as Docker does for its
/// containers) would give LAN hosts the sandbox's gateway address, which the sandbox
/// admits: a new connection forwarded to a sandbox passes only to a published port.
#[test]
fn masqueraded_lan_hosts_reach_only_published_ports() {
    host_world(
        &[],
        r#"
        behind_host lan eth1 192.168.50.1/24 192.168.50.2 80
        echo 1 >/proc/sys/net/ipv4/ip_forward
        nft add table ip hostnat
        nft add chain ip hostnat post '{ type nat hook postrouting priority srcnat; }'
        nft add rule ip hostnat post ip saddr 192.168.50.0/24 oifname != "eth1" masquerade
        snapshot
        $NSRUN -p 8080:8000 -- sh -c "python3 $WORK/upstream_server.py 0.0.0.0 8000 & python3 $WORK/upstream_server.py 0.0.0.0 9000" &
        pid=$!
        wait_sandbox_up $pid
        addr=$(sandbox_addr $pid)
        wait_port - $addr 9000
        expect_code 0 ip netns exec lan sh -c "curl -s --max-time 1 http://$addr:9000/ || echo closed"
        expect_eq "$OUT" closed "an unpublished port from a masqueraded LAN host"
        expect_code 0 ip netns exec lan curl -s --max-time 2 http://192.168.50.1:8080/
        expect_contains "$OUT" "10." "a published port from the LAN (the host's rule masquerades it)"
        expect_code 0 curl -s --max-time 2 http://$addr:9000/
        expect_contains "$OUT" "10." "the host itself still connects in"
        kill $pid; wait $pid || true
        wait_holder_gone
        expect_clean
        "#,
    );
}

/// The internet is found from the host's routes, not from one fixed address: a lab
/// network on a documentation range (where a fixed probe such as 192.0.2.1 would land)
/// does not hide the uplink, so a firewall that drops forwarded packets is still opened
/// towards the real uplink.
#[test]
fn a_lab_network_on_any_range_does_not_hide_the_uplink() {
    host_world(
        &["nft"],
        r#"
        ip netns add lab
        ip link add lab0 type veth peer name lab1 netns lab
        ip link set lab0 addrgenmode none
        ip netns exec lab ip link set lab1 up
        ip addr add 192.0.2.1/24 dev lab0
        ip addr add 1.0.0.1/8 dev lab0
        ip link set lab0 up
        nft add table inet filter
        nft add chain inet filter forward '{ type filter hook forward priority 0; policy drop; }'
        snapshot
        expect_code 0 $NSRUN -v -- curl -s --max-time 2 http://203.0.113.1/
        expect_eq "$OUT" 198.51.100.2 "the internet, through eth0 [$ERR]"
        expect_contains "$ERR" "the internet is reached through eth0" "-v names the uplink"
        wait_holder_gone
        expect_clean
        "#,
    );
}

/// A default route the kernel does not take to the internet (a blackhole or unreachable
/// default that the policy rules choose) is named before the command runs, with the fix,
/// and nothing of the host changes; a host with no default route at all still runs
/// sandboxes that reach its own networks.
#[test]
fn a_default_route_that_goes_nowhere_is_refused_up_front() {
    host_world(
        &[],
        r#"
        snapshot
        ip route add blackhole default table 100
        ip rule add pref 100 lookup 100
        expect_code 125 $NSRUN -- true
        expect_contains "$ERR" "the host has a route to the internet (blackhole 0.0.0.0/0 table 100, 0.0.0.0/0 via 198.51.100.1 dev eth0)" "names the routes"
        expect_contains "$ERR" "'nsrun --no-net -- ...'" "and the fix"
        expect_eq "$(echo "$ERR" | wc -l)" 1 "one line"
        ip rule del pref 100
        ip route del blackhole default table 100
        ip route replace unreachable default
        expect_code 125 $NSRUN -- true
        expect_contains "$ERR" "unreachable 0.0.0.0/0" "an unreachable default"
        expect_code 0 $NSRUN --no-net -- true
        ip route del unreachable default
        ip route add default via 198.51.100.1
        expect_clean
        "#,
    );
}
