//! The core: namespaces, exit codes, privileges, signals, nothing outliving the sandbox.
//! Every test runs in a throwaway world (tests/world.sh).

mod common;
use common::world;

#[test]
fn exit_codes_follow_env_and_timeout() {
    world(
        r#"
        snapshot
        expect_code 0 $NSRUN --no-net -- true
        expect_code 3 $NSRUN --no-net -- sh -c 'exit 3'
        expect_code 126 $NSRUN --no-net -- /etc/passwd
        expect_contains "$ERR" "nsrun: exec /etc/passwd: Permission denied (os error 13)" "126 message"
        expect_code 127 $NSRUN --no-net -- no-such-command-here
        expect_contains "$ERR" "nsrun: exec no-such-command-here: No such file or directory (os error 2)" "127 message"
        expect_code 137 $NSRUN --no-net -- sh -c 'kill -9 $$'
        expect_code 143 $NSRUN --no-net -- sh -c 'kill -TERM $$'
        expect_code 125 $NSRUN --no-such-flag -- true
        expect_eq "$(echo "$ERR" | wc -l)" 1 "usage error is one line"
        expect_code 125 $NSRUN --no-net
        expect_clean
        "#,
    );
}

#[test]
fn argv_reaches_the_command_verbatim() {
    world(
        r#"
        snapshot
        expect_code 0 $NSRUN --no-net -- printf '%s|' --no-net -v '' 'a b' '--' "\$HOME"
        expect_eq "$OUT" '--no-net|-v||a b|--|$HOME|' "argv"
        expect_code 0 $NSRUN --no-net printf '%s' --verbose
        expect_eq "$OUT" '--verbose' "options after the command are the command's"
        expect_clean
        "#,
    );
}

#[test]
fn no_net_has_only_loopback_up_and_working() {
    world(
        r#"
        snapshot
        expect_code 0 $NSRUN --no-net -- sh -c 'ls /sys/class/net; ip -o link show lo'
        expect_eq "$(echo "$OUT" | head -1)" "lo" "only lo in /sys/class/net"
        expect_eq "$(echo "$OUT" | grep -c .)" 2 "nothing but lo"
        expect_contains "$OUT" "state UNKNOWN" "lo is up"
        expect_contains "$OUT" "LOWER_UP" "lo is up"
        expect_code 0 $NSRUN --no-net -- python3 -c '
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
c = socket.create_connection(s.getsockname()); a, _ = s.accept()
c.sendall(b"ping"); print(a.recv(4).decode())'
        expect_eq "$OUT" "ping" "loopback carries data"
        expect_clean
        "#,
    );
}

#[test]
fn the_command_has_no_capabilities_and_no_new_privs() {
    world(
        r#"
        snapshot
        for mode in --no-net ""; do
          expect_code 0 $NSRUN $mode -- grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):' /proc/self/status
          expect_eq "$(echo "$OUT" | grep -c ':[[:space:]]*0000000000000000$')" 5 "all five capability sets empty ($mode)"
          expect_contains "$OUT" "NoNewPrivs:	1" "no_new_privs ($mode)"
        done
        # The same for an ordinary user without privilege (user namespace).
        expect_code 0 setpriv --reuid=65534 --regid=65534 --clear-groups $NSRUN --no-net -- grep -E '^(Cap|NoNewPrivs)' /proc/self/status
        expect_eq "$(echo "$OUT" | grep -c ':[[:space:]]*0000000000000000$')" 5 "all empty for an unprivileged user"
        expect_contains "$OUT" "NoNewPrivs:	1" "no_new_privs for an unprivileged user"
        expect_clean
        "#,
    );
}

#[test]
fn runs_as_the_sudo_caller_or_the_user_asked_for() {
    world(
        r#"
        snapshot
        expect_code 0 env SUDO_UID=65534 SUDO_GID=65534 SUDO_USER=nobody $NSRUN --no-net -- id -u
        expect_eq "$OUT" 65534 "uid under sudo"
        expect_code 0 env SUDO_UID=65534 SUDO_GID=65534 SUDO_USER=nobody $NSRUN --no-net -- id -g
        expect_eq "$OUT" 65534 "gid under sudo"
        expect_code 0 env -u SUDO_UID -u SUDO_GID $NSRUN --no-net -- id -u
        expect_eq "$OUT" 0 "root without sudo stays root (with no capabilities)"
        expect_code 0 env SUDO_UID=65534 SUDO_GID=65534 $NSRUN --no-net --user 4242:4343 -- id
        expect_eq "$OUT" "uid=4242 gid=4343 groups=4343" "--user overrides sudo"
        expect_code 0 $NSRUN --no-net --user nobody -- id -un
        expect_eq "$OUT" nobody "--user by name"
        expect_code 125 $NSRUN --no-net --user no-such-user-x -- true
        expect_contains "$ERR" "--user: no user 'no-such-user-x'" "unknown user"
        expect_clean
        "#,
    );
}

#[test]
fn file_capabilities_trust_nothing_from_the_environment() {
    if !common::require_tool("setcap") {
        return;
    }
    world(
        r#"
        cp $NSRUN "$WORK/nsrun"
        setcap cap_net_admin,cap_sys_admin,cap_setpcap+ep "$WORK/nsrun"
        snapshot
        expect_code 0 setpriv --reuid=65534 --regid=65534 --clear-groups env SUDO_UID=0 SUDO_GID=0 "$WORK/nsrun" -- id -u
        expect_eq "$OUT" 65534 "SUDO_UID is ignored with file capabilities"
        expect_code 125 setpriv --reuid=65534 --regid=65534 --clear-groups "$WORK/nsrun" --user root -- id -u
        expect_contains "$ERR" "only root may run the command as another user" "--user refused"
        expect_code 0 setpriv --reuid=65534 --regid=65534 --clear-groups "$WORK/nsrun" -- grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status
        expect_eq "$(echo "$OUT" | grep -c ':[[:space:]]*0000000000000000$')" 3 "no capabilities left"
        # Addresses the host reaches through its default route (a resolver, a metadata
        # service) cannot be taken without sudo; nsrun's own pool can.
        expect_code 125 setpriv --reuid=65534 --regid=65534 --clear-groups "$WORK/nsrun" --ip 10.66.0.53 -- true
        expect_contains "$ERR" "--ip 10.66.0.53: without sudo" "--ip outside nsrun's pool"
        expect_code 125 setpriv --reuid=65534 --regid=65534 --clear-groups "$WORK/nsrun" --pool 100.100.100.200/30 -- true
        expect_contains "$ERR" "--pool 100.100.100.200/30: without sudo" "--pool outside nsrun's pool"
        expect_code 0 setpriv --reuid=65534 --regid=65534 --clear-groups "$WORK/nsrun" --ip 10.200.7.2 -- sh -c 'ip -4 -o addr show eth0 | awk "{print \$4}"'
        expect_eq "$OUT" 10.200.7.2/31 "an address of nsrun's pool"
        expect_clean
        "#,
    );
}

#[test]
fn only_fds_0_1_2_reach_the_command() {
    world(
        r#"
        snapshot
        exec 7>/dev/null 8</dev/null 9>"$WORK/nine"
        for mode in --no-net ""; do
          expect_code 0 $NSRUN $mode -- sh -c 'ls /proc/$$/fd'
          expect_eq "$(echo $OUT)" "0 1 2" "open fds of the command ($mode)"
        done
        expect_clean
        "#,
    );
}

#[test]
fn a_daemon_does_not_keep_nsrun_waiting_or_outlive_it() {
    world(
        r#"
        snapshot
        # A double fork and a setsid daemon, each holding stdout open.
        expect_code 0 timeout 20 $NSRUN --no-net -- sh -c '(sleep 3131 &) ; setsid sleep 3132 & echo started'
        expect_eq "$OUT" started "the command ran"
        expect_eq "$(count_sleeps 'sleep 313[12]')" 0 "daemons left after the sandbox"
        expect_code 0 timeout 20 $NSRUN -- sh -c 'nohup sleep 3133 >/dev/null 2>&1 & echo started'
        expect_eq "$(count_sleeps 'sleep 3133')" 0 "daemons left after a networked sandbox"
        expect_clean
        "#,
    );
}

#[test]
fn sigterm_and_sigint_reach_the_command() {
    world(
        r#"
        snapshot
        for sig in TERM INT HUP USR1; do
          rm -f "$WORK/out"
          # python puts SIGINT back to its default: a background job of a script ignores it.
          python3 -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])' \
            $NSRUN --no-net -- sh -c "trap 'echo got-$sig; exit 42' $sig; echo ready; while :; do sleep 0.05; done" >"$WORK/out" &
          pid=$!
          for _ in $(seq 200); do grep -q ready "$WORK/out" 2>/dev/null && break; sleep 0.05; done
          kill -$sig $pid
          set +e; wait $pid; code=$?; set -e
          expect_eq "$code" 42 "exit code after SIG$sig"
          expect_contains "$(cat "$WORK/out")" "got-$sig" "the command saw SIG$sig"
        done
        expect_clean
        "#,
    );
}

#[test]
fn sigkill_of_nsrun_kills_the_whole_sandbox() {
    world(
        r#"
        snapshot
        for mode in --no-net ""; do
          $NSRUN $mode -- sh -c 'sleep 4141 & setsid sleep 4142 & sleep 4143' &
          pid=$!
          for _ in $(seq 200); do [ "$(count_sleeps 'sleep 414[123]')" = 3 ] && break; sleep 0.05; done
          expect_eq "$(count_sleeps 'sleep 414[123]')" 3 "sandbox running ($mode)"
          if [ -z "$mode" ]; then expect_eq "$(holder_tables)" 1 "the host's NAT table exists while it runs"; fi
          kill -9 $pid
          for _ in $(seq 100); do [ "$(count_sleeps 'sleep 414[123]')" = 0 ] && break; sleep 0.05; done
          expect_eq "$(count_sleeps 'sleep 414[123]')" 0 "processes left after kill -9 of nsrun ($mode)"
        done
        expect_clean
        "#,
    );
}

#[test]
fn the_host_mount_table_is_unchanged() {
    world(
        r#"
        snapshot
        cat /proc/self/mountinfo >"$WORK/mounts-before"
        expect_code 0 $NSRUN -- sh -c 'grep -c . /proc/self/mountinfo >/dev/null; cat /etc/resolv.conf >/dev/null'
        expect_code 0 $NSRUN --no-net --hostname box1 -- true
        cat /proc/self/mountinfo >"$WORK/mounts-after"
        cmp "$WORK/mounts-before" "$WORK/mounts-after" || fail "the mount table changed"
        expect_clean
        "#,
    );
}

#[test]
fn hostname_gets_its_own_uts_namespace() {
    world(
        r#"
        snapshot
        before=$(hostname)
        expect_code 0 $NSRUN --no-net --hostname box1 -- hostname
        expect_eq "$OUT" box1 "host name inside"
        expect_eq "$(hostname)" "$before" "host name outside"
        expect_code 125 $NSRUN --no-net --hostname 'bad name' -- true
        expect_contains "$ERR" "--hostname" "bad host name"
        expect_clean
        "#,
    );
}

#[test]
fn unprivileged_user_gets_no_net_through_a_user_namespace() {
    world(
        r#"
        snapshot
        expect_code 0 setpriv --reuid=65534 --regid=65534 --clear-groups $NSRUN --no-net -- sh -c 'id -u; ls /sys/class/net; cat /sys/class/net/lo/operstate'
        expect_eq "$(echo $OUT)" "65534 lo unknown" "uid, links and lo state"
        expect_code 3 setpriv --reuid=65534 --regid=65534 --clear-groups $NSRUN --no-net -- sh -c 'exit 3'
        expect_code 0 setpriv --reuid=65534 --regid=65534 --clear-groups $NSRUN --no-net --hostname box9 -- sh -c 'hostname; getent hosts box9'
        expect_eq "$(echo $OUT)" "box9 127.0.1.1 box9" "host name and its /etc/hosts entry, unprivileged"
        expect_code 125 setpriv --reuid=65534 --regid=65534 --clear-groups $NSRUN -- true
        expect_contains "$ERR" "need CAP_NET_ADMIN" "network needs privilege"
        expect_contains "$ERR" "setcap" "says what to do"
        expect_clean
        "#,
    );
}

#[test]
fn the_sandbox_init_holds_none_of_nsruns_sockets() {
    world(
        r#"
        snapshot
        $NSRUN -- sleep 30 &
        pid=$!
        for _ in $(seq 100); do [ "$(count_sleeps 'sleep 30')" = 1 ] && break; sleep 0.05; done
        init=$(pgrep -P $pid | head -1)
        [ -n "$init" ] || fail "no init found under nsrun"
        # The init holds its control channel to nsrun (unix) and the sandbox's own
        # nf_tables socket; none of nsrun's netlink sockets in the host's namespace.
        inodes=$(ls -l /proc/$init/fd | grep -o 'socket:\[[0-9]*\]' | tr -dc '0-9\n')
        expect_eq "$(echo "$inodes" | wc -w)" 2 "the init's sockets"
        for i in $inodes; do
          if awk '{print $NF}' /proc/self/net/netlink | grep -qx "$i"; then fail "the init holds a netlink socket of the host"; fi
          cat /proc/$init/net/netlink /proc/self/net/unix | awk '{print $NF} {print $(NF-1)}' | grep -qx "$i" \
            || fail "socket $i is neither the sandbox's netlink socket nor a unix socket"
        done
        expect_contains "$(ls -l /proc/$pid/fd)" "socket:" "nsrun itself holds its netlink sockets"
        kill -TERM $pid; wait $pid || true
        expect_clean
        "#,
    );
}

#[test]
fn ctrl_c_in_a_terminal_stops_the_command() {
    world(
        r#"
        snapshot
        # nsrun in a pseudo-terminal, as from an interactive shell; type Ctrl-C. The shell
        # in the sandbox does not exec sleep: only Ctrl-C sent to the whole group (as a
        # terminal does) ends both at once.
        expect_code 0 python3 - "$NSRUN" <<'PY'
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "--no-net", "--user", "root", "--", "sh", "-c", "sleep 4545; echo after"])
# Ctrl-C once sleep runs: a shell whose child missed the signal (it raced with the
# child's exec) would wait for it, as shells do.
import subprocess
deadline = time.time() + 10
while subprocess.run(["pgrep", "-f", "^sleep 4545$"], capture_output=True).returncode != 0:
    if time.time() > deadline:
        sys.exit("the command never started")
    time.sleep(0.02)
start = time.time()
os.write(fd, b"\x03")
_, status = os.waitpid(pid, 0)
code = os.waitstatus_to_exitcode(status)
took = time.time() - start
print("exit", code, "after", took, file=sys.stderr)
sys.exit(0 if code == 130 and took < 5 else 1)
PY
        expect_clean
        "#,
    );
}

#[test]
fn ctrl_z_stops_the_command_and_fg_resumes_it() {
    world(
        r#"
        snapshot
        expect_code 0 python3 - "$NSRUN" <<'PY'
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.environ["PS1"] = "PROMPT> "
    os.execv("/bin/bash", ["bash", "--norc", "--noprofile", "-i"])
buf = b""
def until(needle, timeout=10):
    global buf
    deadline = time.time() + timeout
    while needle not in buf:
        if time.time() > deadline:
            sys.exit("never saw %r in %r" % (needle, buf[-300:]))
        if select.select([fd], [], [], 0.1)[0]:
            buf += os.read(fd, 4096)
    seen, buf = buf.split(needle, 1)[0], buf.split(needle, 1)[1]
    return seen
def quiet_for(seconds):
    global buf
    got = b""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if select.select([fd], [], [], 0.05)[0]:
            got += os.read(fd, 4096)
    return got
until(b"PROMPT> ")
# The terminal echoes what is typed: the command prints "tick" from "ti""ck".
os.write(fd, sys.argv[1].encode() + b" --no-net --user root -- sh -c 'while :; do echo ti\"\"ck; sleep 0.1; done'\n")
until(b"tick\r\n")
os.write(fd, b"\x1a")
until(b"Stopped")
until(b"PROMPT> ")
after = quiet_for(0.6)
if b"tick" in after:
    sys.exit("the command kept running after Ctrl-Z: %r" % after)
os.write(fd, b"fg\n")
until(b"tick")
until(b"tick")
os.write(fd, b"\x03")
until(b"PROMPT> ")
os.write(fd, b"exit\n")
os.waitpid(pid, 0)
PY
        expect_clean
        "#,
    );
}

#[test]
fn the_command_has_no_controlling_terminal_to_inject_into() {
    world(
        r#"
        snapshot
        # Run from a terminal, the command must not have it as its controlling terminal
        # (TIOCSTI would type into the caller's shell).
        expect_code 0 python3 - "$NSRUN" <<'PY'
import os, pty, sys
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "--no-net", "--", "python3", "-c", """
import fcntl, os, termios
try:
    os.open("/dev/tty", os.O_RDWR)
    print("has-controlling-tty")
except OSError as e:
    print("no-controlling-tty", e.errno)
try:
    fcntl.ioctl(0, termios.TIOCSTI, b"x")
    print("tiocsti-worked")
except OSError as e:
    print("tiocsti-refused", e.errno)
"""])
out = b""
while True:
    try:
        chunk = os.read(fd, 1024)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
os.waitpid(pid, 0)
text = out.decode()
print(text, file=sys.stderr)
ok = "no-controlling-tty" in text and "tiocsti-refused" in text
sys.exit(0 if ok else 1)
PY
        expect_clean
        "#,
    );
}

#[test]
fn root_without_sudo_is_warned_about_once() {
    world(
        r#"
        snapshot
        expect_code 0 $NSRUN --no-net -- id -u
        expect_eq "$OUT" 0 "root without sudo runs the command as root"
        expect_contains "$ERR" "runs as root (uid 0, no capabilities) because nsrun was started by root without sudo" "warned"
        expect_contains "$ERR" "--user nobody" "names the flag that avoids it"
        expect_eq "$(echo "$ERR" | wc -l)" 1 "one line"
        expect_code 0 $NSRUN --no-net --user root -- id -u
        expect_eq "$ERR" "" "no warning when root is asked for"
        expect_code 0 env SUDO_UID=65534 SUDO_GID=65534 $NSRUN --no-net -- id -u
        expect_eq "$ERR$OUT" "65534" "no warning under sudo"
        expect_code 0 $NSRUN --no-net --user nobody -- id -u
        expect_eq "$ERR" "" "no warning with --user"
        expect_clean
        "#,
    );
}

#[test]
fn environment_and_working_directory_options() {
    world(
        r#"
        snapshot
        printf '# comment\n\nFROM_FILE=file value\nBOTH=file\n' >"$WORK/env"
        export SECRET_TOKEN=s3cret PASSED=from-caller
        expect_code 0 $NSRUN --no-net --user root --env-file "$WORK/env" -e BOTH=flag -e PASSED -e NEW=1 -- sh -c 'echo "$FROM_FILE|$BOTH|$PASSED|$NEW|$SECRET_TOKEN"'
        expect_eq "$OUT" "file value|flag|from-caller|1|s3cret" "-e and --env-file over the caller's environment"
        expect_code 0 $NSRUN --no-net --user root --clearenv -e NEW=1 -- sh -c 'echo "$NEW|${SECRET_TOKEN:-unset}|$PATH"; env | cut -d= -f1 | sort | tr "\n" " "'
        expect_contains "$OUT" "1|unset|" "--clearenv keeps nothing but the basics and -e"
        expect_not_contains "$OUT" "SECRET_TOKEN" "--clearenv"
        expect_code 0 $NSRUN --no-net --user root -w /usr/share -- pwd
        expect_eq "$OUT" /usr/share "-w"
        expect_code 125 $NSRUN --no-net --user root -w /no/such/dir -- pwd
        expect_contains "$ERR" "change to the working directory /no/such/dir (-w): No such file or directory" "a bad -w"
        expect_code 0 $NSRUN --user nobody -- sh -c 'echo "$HOME|$USER|$LOGNAME"'
        expect_eq "$OUT" "$(getent passwd nobody | cut -d: -f6)|nobody|nobody" "HOME, USER, LOGNAME follow --user"
        expect_code 125 $NSRUN -e 'BAD NAME=1' -- true
        expect_contains "$ERR" "-e RUST_LOG=debug" "a bad -e names a valid one"
        expect_clean
        "#,
    );
}

#[test]
fn tty_gives_the_command_a_terminal_of_its_own_and_restores_the_callers() {
    world(
        r#"
        snapshot
        expect_code 0 python3 - "$NSRUN" <<'PY'
import fcntl, os, select, signal, struct, subprocess, sys, termios, time
master, slave = os.openpty()
before = termios.tcgetattr(slave)
fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 90, 0, 0))
p = subprocess.Popen([sys.argv[1], "-t", "--no-net", "--user", "root", "--", "bash", "--norc", "--noprofile", "-i"],
                     stdin=slave, stdout=slave, stderr=slave, env=dict(os.environ, PS1="PROMPT> "))
buf = b""
def until(needle, timeout=10):
    global buf
    deadline = time.time() + timeout
    while needle not in buf:
        if time.time() > deadline:
            sys.exit("never saw %r in %r" % (needle, buf[-400:]))
        if select.select([master], [], [], 0.1)[0]:
            buf += os.read(master, 4096)
    head, buf = buf.split(needle, 1)
    return head
until(b"PROMPT> ")
# The terminal echoes what is typed: the marker is printed from "E""ND".
os.write(master, b"tty; stty size; : </dev/tty && echo dev-tty-opens; sleep 30 & jobs; echo E''ND\n")
until(b"E''ND")
out = until(b"END\r\n")
if b"/dev/pts/" not in out: sys.exit("no terminal: %r" % out)
if b"30 90" not in out: sys.exit("window size not taken: %r" % out)
if b"Running" not in out: sys.exit("no job control: %r" % out)
if b"dev-tty-opens" not in out: sys.exit("/dev/tty does not open: %r" % out)
until(b"PROMPT> ")
# The window grows: nsrun passes it on.
fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
p.send_signal(signal.SIGWINCH)
time.sleep(0.2)
os.write(master, b"stty size; echo E''ND\n")
until(b"E''ND")
out = until(b"END\r\n")
if b"40 120" not in out: sys.exit("window size did not follow: %r" % out)
# The command is killed outright: the caller's terminal comes back as it was.
children = lambda pid: subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
init = children(p.pid)[0]
command = children(init)[0]
os.kill(int(command), signal.SIGKILL)
code = p.wait(timeout=10)
if code != 137: sys.exit("exit status %d" % code)
if termios.tcgetattr(slave) != before: sys.exit("the caller's terminal was not restored")
print("ok")
PY
        expect_clean
        "#,
    );
}

#[test]
fn a_uid_without_a_passwd_entry_gets_its_own_environment() {
    world(
        r#"
        expect_code 0 env HOME=/root USER=root $NSRUN --no-net --user 4242 -- sh -c 'echo "$HOME $USER $LOGNAME $(id -u)"'
        expect_eq "$OUT" "/ 4242 4242 4242" "HOME, USER, LOGNAME of uid 4242"
        expect_code 0 $NSRUN --no-net --user 4242 -e HOME=/srv -- sh -c 'echo "$HOME"'
        expect_eq "$OUT" "/srv" "-e still decides"
        "#,
    );
}
