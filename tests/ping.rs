//! `ping` in a sandbox (issue 24): ICMP echo sockets for every user of the sandbox's own
//! network namespace, programs with file capabilities that start and run with none, and
//! ICMP to what the policy refuses, refused at once.

mod common;
use common::world;

/// Every user pings, with and without a network, with the distribution's `ping` and with
/// one that certainly carries `cap_net_raw=ep`; the host's `ping_group_range` stays.
#[test]
fn ping_works_for_every_user_with_and_without_a_network() {
    if !common::require_tool("ping") || !common::require_tool("setcap") {
        return;
    }
    world(
        r#"
        # A ping with the file capability Debian gives it, whatever this machine's has.
        cp "$(command -v ping)" "$WORK/ping"
        setcap cap_net_raw=ep "$WORK/ping"
        expect_contains "$(getcap "$WORK/ping")" "cap_net_raw=ep" "the copy's file capability"
        cp $NSRUN "$WORK/nsrun"
        setcap cap_net_admin,cap_sys_admin,cap_setpcap+ep "$WORK/nsrun"
        host_range=$(cat /proc/sys/net/ipv4/ping_group_range)
        snapshot
        sudo_nobody=(env SUDO_UID=65534 SUDO_GID=65534 SUDO_USER=nobody)
        for ping in ping "$WORK/ping"; do
          for who in "--user root" "--user nobody" "--user 4242:4343" sudo; do
            run=($NSRUN $who)
            [ "$who" = sudo ] && run=("${sudo_nobody[@]}" $NSRUN)
            expect_code 0 timeout 20 "${run[@]}" -- $ping -c1 -W5 198.51.100.1
            expect_contains "$OUT" "1 received" "$ping to the upstream as $who"
            expect_code 0 timeout 20 "${run[@]}" --no-net -- $ping -c1 -W5 127.0.0.1
            expect_contains "$OUT" "1 received" "$ping to 127.0.0.1 with --no-net as $who"
          done
          # An ordinary user without privilege: --no-net in a user namespace.
          expect_code 0 timeout 20 setpriv --reuid=65534 --regid=65534 --clear-groups \
            $NSRUN --no-net -- $ping -c1 -W5 127.0.0.1
          expect_contains "$OUT" "1 received" "$ping to 127.0.0.1 without privilege"
        done
        # An ordinary user with nsrun's file capabilities instead of sudo (once the
        # holder of root's sandboxes, which serves root alone, is gone).
        wait_holder_gone
        for ping in ping "$WORK/ping"; do
          for mode in "" --no-net; do
            dst=198.51.100.1; [ "$mode" = --no-net ] && dst=127.0.0.1
            expect_code 0 timeout 20 setpriv --reuid=65534 --regid=65534 --clear-groups \
              "$WORK/nsrun" $mode -- $ping -c1 -W5 $dst
            expect_contains "$OUT" "1 received" "$ping to $dst $mode with nsrun's file capabilities"
          done
        done
        wait_holder_gone
        # The setting is the sandbox's own: every group there, nothing on the host.
        expect_code 0 $NSRUN --user nobody -- cat /proc/sys/net/ipv4/ping_group_range
        expect_eq "$OUT" "0	2147483647" "ping_group_range in the sandbox"
        expect_eq "$(cat /proc/sys/net/ipv4/ping_group_range)" "$host_range" "the host's ping_group_range"
        expect_clean
        "#,
    );
}

/// A program with file capabilities starts, and runs with none of them: every capability
/// set empty and no_new_privs after its exec, as before it.
#[test]
fn a_program_with_file_capabilities_runs_with_none() {
    if !common::require_tool("setcap") {
        return;
    }
    world(
        r#"
        cp "$(command -v grep)" "$WORK/capgrep"
        setcap cap_net_raw+ep "$WORK/capgrep"
        cp "$(command -v grep)" "$WORK/admingrep"
        setcap cap_sys_admin,cap_net_admin,cap_setuid,cap_dac_override+eip "$WORK/admingrep"
        cp "$(command -v id)" "$WORK/suid-id"
        chmod 4755 "$WORK/suid-id"
        status='^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):'
        snapshot
        for prog in capgrep admingrep; do
          for mode in "--user root" "--user nobody" "--no-net --user root" "--no-net --user nobody"; do
            expect_code 0 $NSRUN $mode -- "$WORK/$prog" -E "$status" /proc/self/status
            expect_eq "$(echo "$OUT" | grep -c ':[[:space:]]*0000000000000000$')" 5 "all five capability sets empty ($prog, $mode)"
            expect_contains "$OUT" "NoNewPrivs:	1" "no_new_privs ($prog, $mode)"
          done
          expect_code 0 setpriv --reuid=65534 --regid=65534 --clear-groups \
            $NSRUN --no-net -- "$WORK/$prog" -E "$status" /proc/self/status
          expect_eq "$(echo "$OUT" | grep -c ':[[:space:]]*0000000000000000$')" 5 "all five capability sets empty ($prog, no privilege)"
          expect_contains "$OUT" "NoNewPrivs:	1" "no_new_privs ($prog, no privilege)"
        done
        # A set-user-ID root program runs too, as the user.
        expect_code 0 $NSRUN --user nobody -- "$WORK/suid-id" -u
        expect_eq "$OUT" 65534 "a set-user-ID root program's effective uid"
        expect_clean
        "#,
    );
}

/// ICMP to the host, the gateway, the metadata service and another sandbox is refused at
/// once, like TCP and UDP; echo to the internet gets its reply.
#[test]
fn icmp_to_refused_destinations_is_refused_at_once() {
    if !common::require_tool("ping") {
        return;
    }
    world(
        r#"
        snapshot
        $NSRUN --user nobody -- sleep 60 >/dev/null 2>&1 &
        other=$!
        wait_sandbox_up $other
        other_addr=$(sandbox_addr $other)
        expect_code 0 timeout 60 $NSRUN --user nobody -- bash -c '
          gw=$(ip route | awk "/default/ {print \$3}")
          for dst in 198.51.100.2 $gw 169.254.169.254 '"$other_addr"'; do
            start=$(date +%s%N)
            out=$(timeout 20 ping -c1 -W10 $dst 2>&1); rc=$?
            ms=$(( ($(date +%s%N) - start) / 1000000 ))
            # Refused: the kernel answers sendmsg with EPERM and the ICMP error arrives;
            # no reply, and no wait for one (ping itself waits its 1 s interval).
            if [ $rc = 0 ] || echo "$out" | grep -q " 1 received"; then echo "$dst answered"
            elif [ $ms -ge 5000 ]; then echo "$dst hung ${ms}ms"
            elif echo "$out" | grep -q -e "sendmsg: Operation not permitted" -e "Packet filtered" -e "Prohibited"; then echo "$dst refused"
            else echo "$dst other: $out"; fi
          done
          python3 -c "
import socket, sys, time
for dst in sys.argv[1:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    t = time.monotonic()
    try:
        s.sendto(bytes([8, 0, 0, 0, 0, 0, 0, 1]), (dst, 0)); print(dst, \"sent\")
    except PermissionError:
        print(dst, \"eperm\", \"fast\" if time.monotonic() - t < 0.5 else \"slow\")
" 198.51.100.2 $gw 169.254.169.254 '"$other_addr"'
          ping -c1 -W5 198.51.100.1 | grep -o "1 received"'
        gw=$(echo "$OUT" | sed -n 2p | awk '{print $1}')
        expect_eq "$(echo $OUT)" "198.51.100.2 refused $gw refused 169.254.169.254 refused $other_addr refused 198.51.100.2 eperm fast $gw eperm fast 169.254.169.254 eperm fast $other_addr eperm fast 1 received" "ICMP echo to refused destinations, and to the upstream"
        kill -TERM $other; wait $other || true
        expect_clean
        "#,
    );
}
