//! The error messages users meet most: each is one line that says what failed, why, and
//! what to do, with exit status 125.
//!
//! Usage errors are rejected while parsing, before nsrun touches anything, so those run
//! without root and outside a throwaway world; the rest run in one.

mod common;
use common::{NSRUN, world};
use std::process::Command;

fn usage_error(args: &[&str]) -> String {
    let out = Command::new(NSRUN).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(125), "{args:?}: {stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "{args:?}: not one line: {stderr}"
    );
    assert!(stderr.starts_with("nsrun: "), "{stderr}");
    assert!(out.stdout.is_empty());
    stderr
}

#[test]
fn help_shows_examples_and_exit_codes() {
    let out = Command::new(NSRUN).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Usage: nsrun [OPTIONS] [--] COMMAND [ARG]..."),
        "{help}"
    );
    assert!(
        help.contains("Examples:") && help.contains("sudo nsrun --no-net -- cargo test"),
        "{help}"
    );
    assert!(help.contains("125 if nsrun itself failed"), "{help}");
}

/// `-h` is a summary: the options in their groups, one line each; `--help` says more.
#[test]
fn short_help_is_one_line_per_option_in_groups() {
    let out = Command::new(NSRUN).arg("-h").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    let mut headings = vec![];
    for line in help.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            headings.push(line.trim_end_matches(':'));
        }
    }
    assert_eq!(
        headings,
        [
            "Arguments",
            "Options",
            "Network",
            "Identity and environment",
            "Services",
            "Advanced",
            "Running sandboxes"
        ],
        "{help}"
    );
    for opt in [
        "--no-net",
        "--user",
        "--publish",
        "--info-file",
        "--wait-teardown",
        "--join",
        "--pcap-size",
    ] {
        let lines: Vec<&str> = help.lines().filter(|l| l.contains(opt)).collect();
        assert_eq!(lines.len(), 1, "{opt}: {help}");
        assert!(lines[0].len() <= 110, "{opt}: a long line: {}", lines[0]);
        let after = help
            .lines()
            .skip_while(|l| !l.contains(opt))
            .nth(1)
            .unwrap();
        assert!(
            after.trim_start().starts_with('-') || after.is_empty(),
            "{opt}: more than one line: {help}"
        );
    }
    assert!(!help.contains("Examples:"), "{help}");
    let long = Command::new(NSRUN).arg("--help").output().unwrap();
    let long = String::from_utf8_lossy(&long.stdout);
    assert!(long.len() > 3 * help.len(), "--help says no more than -h");
}

#[test]
fn unknown_flag() {
    let e = usage_error(&["--no-such-flag", "--", "true"]);
    assert!(e.contains("unexpected argument '--no-such-flag'"), "{e}");
    assert!(e.contains("'nsrun -- ls -l'"), "{e}");
}

/// A new sandbox's option given to --join, --stop, --list, --disconnect or --reconnect
/// is refused (a running sandbox keeps the options it started with), not ignored;
/// --join's own (--user, -e, -w, -t, -v) and --stop's --stop-timeout are not.
#[test]
fn a_new_sandboxs_option_with_a_running_one_is_refused() {
    for (args, option) in [
        (
            &["--join", "web", "--allow", "203.0.113.5", "--", "true"][..],
            "--allow",
        ),
        (
            &[
                "--join",
                "web",
                "--allow-file",
                "/etc/hostname",
                "--",
                "true",
            ],
            "--allow-file",
        ),
        (&["--stop", "web", "-p", "8080:80"], "--publish"),
        (&["--list", "--pool", "10.0.0.0/8"], "--pool"),
        (&["--disconnect", "web", "--pcap", "/tmp/x.pcap"], "--pcap"),
        (&["--reconnect", "web", "--no-net"], "--no-net"),
    ] {
        let e = usage_error(args);
        assert!(
            e.starts_with(&format!("nsrun: {option} is for starting a sandbox;")),
            "{args:?}: {e}"
        );
        assert!(e.contains("'nsrun --join web -- ss -ltn'"), "{e}");
    }
    // Not a usage error: --join's own options get as far as looking for the sandbox.
    let out = Command::new(NSRUN)
        .args([
            "--join",
            "no-such-sandbox",
            "--user",
            "nobody",
            "-e",
            "A=1",
            "-w",
            "/",
            "-v",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--join no-such-sandbox: no running sandbox"),
        "{stderr}"
    );
}

#[test]
fn missing_command() {
    let e = usage_error(&["--no-net"]);
    assert!(
        e.contains("missing COMMAND") && e.contains("nsrun -- "),
        "{e}"
    );
    let e = usage_error(&["--", ""]);
    assert!(e.contains("COMMAND is empty"), "{e}");
}

#[test]
fn nameserver_with_a_newline() {
    let e = usage_error(&["--dns", "1.1.1.1\nsearch evil", "--", "true"]);
    assert!(
        e.contains(
            r#"--dns "1.1.1.1\nsearch evil" is not an IPv4 address; e.g. '--dns 192.0.2.53'"#
        ),
        "{e}"
    );
}

#[test]
fn bad_address_or_prefix() {
    let e = usage_error(&["--pool", "10.200.0.0", "--", "true"]);
    assert!(
        e.contains("--pool") && e.contains("'--pool 10.200.0.0/16'"),
        "{e}"
    );
    let e = usage_error(&["--pool", "10.200.0.0/33", "--", "true"]);
    assert!(e.contains("not a prefix length from 0 to 32"), "{e}");
    let e = usage_error(&["--pool", "10.200.0.7/16", "--", "true"]);
    assert!(e.contains("did you mean '--pool 10.200.0.0/16'"), "{e}");
}

#[test]
fn host_name_too_long_or_malformed() {
    let long = "a".repeat(65);
    let e = usage_error(&["--hostname", &long, "--", "true"]);
    assert!(
        e.contains("--hostname: 65 bytes is too long (at most 64)"),
        "{e}"
    );
    let e = usage_error(&["--hostname", "a_b", "--", "true"]);
    assert!(e.contains("--hostname \"a_b\" is not a host name"), "{e}");
}

#[test]
fn malformed_user() {
    let e = usage_error(&["--user", "a b", "--", "true"]);
    assert!(
        e.contains("--user 'a b' is not USER[:GROUP]") && e.contains("'--user nobody'"),
        "{e}"
    );
}

#[test]
fn privileged_errors_in_a_world() {
    world(
        r#"
        snapshot
        # Missing privileges, as an ordinary user.
        expect_code 125 setpriv --reuid=65534 --regid=65534 --clear-groups $NSRUN -- true
        expect_eq "$ERR" "nsrun: need CAP_NET_ADMIN and CAP_SYS_ADMIN and CAP_SETPCAP to set up a network: run with sudo, or install with 'sudo setcap cap_net_admin,cap_sys_admin,cap_setpcap+ep \$(command -v nsrun)'; or use --no-net" "missing privileges"
        # Address pool exhausted.
        ip addr add 10.79.0.1/30 dev lo
        expect_code 125 $NSRUN --pool 10.79.0.0/30 -- true
        expect_eq "$ERR" "nsrun: address pool 10.79.0.0/30 is exhausted: every /30 in it is in use on this host; give a larger or other range, e.g. '--pool 10.201.0.0/16'" "pool exhausted"
        ip addr del 10.79.0.1/30 dev lo
        # Command not found (--user root: no warning that root runs it).
        expect_code 127 $NSRUN --user root -- no-such-command-here
        expect_eq "$ERR" "nsrun: exec no-such-command-here: No such file or directory (os error 2): check the name and the PATH of the user it runs as" "not found"
        # A resolv.conf nsrun cannot read.
        rm /etc/resolv.conf; mkdir /etc/resolv.conf
        expect_code 125 $NSRUN -- true
        expect_eq "$ERR" "nsrun: read /etc/resolv.conf: not a regular file; fix it, or give the sandbox's nameservers with --dns ADDR, e.g. '--dns 192.0.2.53'" "unreadable resolv.conf"
        expect_eq "$(echo "$ERR" | wc -l)" 1 "one line"
        expect_code 0 $NSRUN --dns 198.51.100.1 -- true
        rmdir /etc/resolv.conf; printf 'nameserver 198.51.100.1\n' >/etc/resolv.conf
        expect_clean
        "#,
    );
}

#[test]
fn too_many_nameservers() {
    let e = usage_error(&[
        "--dns",
        "192.0.2.1",
        "--dns",
        "192.0.2.2",
        "--dns",
        "192.0.2.3",
        "--dns",
        "192.0.2.4",
        "true",
    ]);
    assert!(e.contains("--dns given 4 times"), "{e}");
    assert!(e.contains("at most 3"), "{e}");
}
