//! The man page and shell completions are generated from the clap definition in
//! src/cli.rs and checked in. These tests fail when they are stale; regenerate with
//!
//!     NSRUN_REGENERATE_DOCS=1 cargo test --test docs

#[path = "../src/cli.rs"]
#[allow(dead_code)]
mod cli;
mod common;

use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;

const EXTRA_SECTIONS: &str = r#".SH "EXIT STATUS"
.TP
\fIN\fR
the command's own exit status
.TP
\fB128+N\fR
the command was killed by signal \fIN\fR (137 for SIGKILL, 143 for SIGTERM)
.TP
\fB125\fR
nsrun itself failed, usage errors included; the host is left as it was
.TP
\fB126\fR
the command was found but could not be executed
.TP
\fB127\fR
the command was not found
.SH EXAMPLES
Run an untrusted program with internet access but no way to the host, the LAN or the
cloud metadata service:
.PP
.RS
sudo nsrun \-\-block\-lan \-\- ./untrusted\-tool
.RE
.PP
Test software offline (only loopback), as an ordinary user:
.PP
.RS
nsrun \-\-no\-net \-\- cargo test
.RE
.PP
Use a nameserver of your own instead of the host's:
.PP
.RS
sudo nsrun \-\-dns 192.0.2.53 \-\- getent hosts db.internal
.RE
.PP
Run a long\-running service on its own private address, with its own host name, as a
service user; the host reaches it on the address \fB\-\-verbose\fR prints:
.PP
.RS
sudo nsrun \-v \-\-hostname api1 \-\-user www\-data \-\- python3 \-m http.server 8080
.RE
.PP
Let the sandbox reach services on the host itself (closed by default), by its name:
.PP
.RS
sudo nsrun \-\-allow\-host \-\- curl http://host.nsrun.internal:8080/
.RE
.PP
A service on a fixed private address, published on the host's port 8080, joinable
with \fBip netns exec web\fR:
.PP
.RS
sudo nsrun \-\-ip 10.77.0.2 \-p 8080:80 \-\-name web \-\-user www\-data \-\- ./server
.RE
.SH "RUNNING SANDBOXES"
Each running nsrun answers on an abstract unix socket, \fB@nsrun\-ctl\-\fR\fIPID\fR, that the
kernel removes the instant nsrun is gone, so what follows is right after any
\fBkill \-9\fR, with no daemon and nothing on disk. nsrun answers root and the user that
started it only; a listener of that name that is not the process it names, or runs as
another user, is not trusted. A sandbox is named by its \fB\-\-name\fR, by nsrun's PID or
by its init's.
.TP
\fB\-\-list\fR [\fB\-\-json\fR]
NAME PID INIT ADDRESS NETWORK PORTS USER UPTIME COMMAND of every sandbox you may act
on: all of them for root, your own with a file\-capability install.
.TP
\fB\-\-join\fR \fINAME|PID\fR [\fB\-\-\fR \fICOMMAND\fR]
runs COMMAND (default: the user's shell) in the sandbox's network, mount, PID and UTS
namespaces, as its user, after the same privilege drop as its command; it ends with the
sandbox. A user of a file\-capability install, which lacks CAP_SYS_CHROOT to enter
the mounts, joins in a mount namespace made as the sandbox's, with its resolv.conf and
hosts.
.TP
\fB\-\-stop\fR \fINAME|PID\fR
SIGTERM to the command, SIGKILL to the sandbox after \fB\-\-stop\-timeout\fR; returns with
the command's status once nothing of it is left.
.TP
\fB\-\-disconnect\fR \fINAME|PID\fR [\fB\-\-drop\fR], \fB\-\-reconnect\fR \fINAME|PID\fR
every packet to or from the sandbox but loopback's is refused at once (or, with
\fB\-\-drop\fR, lost), until \fB\-\-reconnect\fR; its address and routes stay.
.TP
\fB\-\-pcap\fR \fIFILE\fR
every packet of the sandbox, both directions, captured on the host's end of its link
from before the link carries anything, in pcap format, owned by the invoking user and
bounded by \fB\-\-pcap\-size\fR (the oldest packets kept). At high rates the kernel drops
what the capture cannot keep up with, and nsrun says how many.
.SH NETWORKS
\fB\-\-network\fR \fINAME\fR puts the sandbox on a private network with other sandboxes,
made by the first member and gone with the last (however members end: the kernel frees
it, as nothing but the members' nsrun processes refers to it). Members share one
bridge and one subnet (\fB\-\-subnet\fR when the network is made; else the /24 around
\fB\-\-ip\fR, else the first /24 of 10.201.0.0/16, or of \fB\-\-pool\fR, that the host does
not route), reach each other by address on every port and protocol, broadcast and ARP
included, without NAT, and by name: each member's \fB\-\-name\fR and \fB\-\-hostname\fR
resolve for the others, as \fINAME\fR and as \fINAME\fR.\fINETWORK\fR.nsrun.internal,
within a second of joining and no longer once it leaves (nsrun's resolver answers them
from the kernel's list of the network's ports). A member's MAC address is 02: followed
by a byte of the network's name and its IPv4 address, the same after a restart.
Everything else holds per member, in its own table, as for a lone sandbox: NAT to the
internet, \fB\-p\fR, and the refusals of the host (its gateway included; unless
\fB\-\-allow\-host\fR), metadata services, other networks and lone sandboxes (both ways),
and the LAN with \fB\-\-block\-lan\fR. The bridge lives in a network namespace of the
network's own, so the host's firewall (Docker's br_netfilter and FORWARD policy DROP)
never sees what members send each other; its link to the host is \fBnsr\fR... with the
alias "nsrun network \fINAME\fR". Networks are root's only.
.PP
.RS
.nf
sudo nsrun \-\-network lab \-\-name db \-\- postgres \-D /srv/pg &
sudo nsrun \-\-network lab \-\-name api \-\- ./api \-\-db db:5432 &
sudo nsrun \-\-network lab \-\- curl http://api:8080/
sudo nsrun \-\-list                 # the NETWORK column says each member's network
sudo nsrun \-v \-\-network lab \-\- sleep 1d   # prints the members as they come and go
.fi
.RE
.PP
To capture the whole network's traffic, \fB\-v\fR prints the command:
\fBnsenter \-\-net=/proc/\fR\fIPID\fR\fB/fd/\fR\fIFD\fR \fBtcpdump \-ni br0\fR (the
network's namespace as one of the member's nsrun holds it); \fB\-\-pcap\fR of a member
captures that member's port.
.SH "ONLY THE DESTINATIONS A COMMAND NEEDS"
\fB\-\-allow\fR takes an address or prefix, a host name or \fB*.\fR\fIDOMAIN\fR, with an
optional \fB:\fR\fIPORT\fR, \fB:\fR\fIPORT\-PORT\fR, \fB/tcp\fR or \fB/udp\fR. Once any is given the
sandbox reaches only those destinations; everything else is refused at once. The rules
live in the sandbox's own table, so they hold for every program and protocol and under
\fBkill \-9\fR. With a name in the list, nsrun's resolver is the sandbox's only one: it
answers names not allowed with NXDOMAIN, and puts the addresses it answers for an
allowed name (CNAMEs followed, nothing of other names) into a set of the table for their
TTL, at least a minute. An allowed address serves every name it hosts (a CDN's): a name
allow\-list narrows where a command can go, it does not guarantee which service it
reaches there. \fB\-v\fR and \fB\-\-refusals\fR say each refused destination once;
\fB\-\-audit\fR refuses nothing the lists would refuse and reports it; the default
refusals (the host, metadata services, other sandboxes) hold whatever the lists say.
.SH SECURITY
The command runs as the invoking user (the caller of sudo), in a new session, with every
capability set empty and no_new_privs set, and only file descriptors 0, 1 and 2 open.
Every process of the sandbox is killed when the command ends or nsrun dies.
.PP
By default a sandbox reaches the internet through NAT, but connections to the host's
own addresses (and ports the host publishes on them with DNAT), to other sandboxes, to
link\-local addresses such as 169.254.169.254, to Alibaba's and Azure's metadata
addresses and over IPv6 are refused at once; its nameservers stay reachable on port 53.
Nobody but the host connects into a sandbox, except to ports published with \fB\-p\fR.
These rules live in a table inside the sandbox's own network namespace, created before
its link comes up: the command cannot change them, and they hold until the namespace
is gone, whatever happens to nsrun.
\fB\-\-allow\-host\fR opens the host; \fB\-\-block\-lan\fR also closes the private ranges.
.PP
nsrun isolates the network, processes and host name. It does \fBnot\fR isolate the
filesystem: the command sees and may change every file its user may. Abstract unix
sockets belong to the network namespace, so the host's are out of reach; pathname unix
sockets are files, and a command that may open one (/run/docker.sock, an X11 socket in
/tmp/.X11\-unix, a D\-Bus socket) can talk to its server. Combine nsrun with a
filesystem sandbox (bubblewrap, a container) when that matters. A command that runs as
uid 0 (nsrun started by root without sudo and without \fB\-\-user\fR) can therefore
read /etc/shadow, change /etc and replace binaries, nsrun's own included; nsrun warns
about it. Inside the sandbox /proc/sys is read\-only and the kernel files docker masks
are masked, so no command changes a host\-wide kernel setting.
.PP
nsrun's helper \fBnsrun\-holder\fR keeps the host's NAT (and published ports) in
\fBtable inet nsrun\fR while sandboxes run, and sets
\fBnet.ipv4.conf.\fILINK\fB.forwarding=1\fR on the links routes lead through where it
was 0, forwarding only traffic to sandboxes from there; half a second after the last
sandbox it sets them back and exits, and the kernel deletes the table.
\fB\-\-verbose\fR prints every change. The holder is nsrun's own binary run anew, one
per host network namespace, started by the first nsrun that needs it and in its cgroup,
so a service manager may kill it with that nsrun's unit (\fBKillMode\fR): every other
running nsrun then registers its sandbox again at once with a new holder, and NAT,
published ports and names come back within milliseconds (open connections keep their
NAT in conntrack).
.SH ENVIRONMENT
The command gets nsrun's environment (under sudo, what sudo kept), with HOME, USER,
LOGNAME and SHELL from the passwd entry when the user changes; \fB\-\-clearenv\fR
keeps only PATH, HOME, USER, LOGNAME, SHELL, TERM and LANG; \fB\-e\fR and
\fB\-\-env\-file\fR add to it. SUDO_UID, SUDO_GID and SUDO_USER choose the user
under sudo, and are ignored with file capabilities.
.SH NOTES
Ctrl\-C, Ctrl\-\\ and Ctrl\-Z reach the command's whole process group; \fBfg\fR
resumes a stopped one. After SIGTERM, SIGINT, SIGHUP or SIGQUIT the command has
\fB\-\-stop\-timeout\fR seconds (10) to end, then the sandbox is killed.
.SH BUGS
A host firewall that drops forwarded packets (a forward chain with policy drop, or one
that ends by dropping or rejecting everything: Docker, ufw, firewalld, an nftables
filter) is opened by nsrun itself: while sandboxes run, \fBnsrun\-holder\fR adds two
rules commented \fBnsrun: ...\fR at the end of each such chain (before its final
reject), which match only nsrun's \fBnsr*\fR links, and removes them when it exits.
A firewall reloaded while a sandbox runs loses them until the holder puts them back
(at once for nf_tables, within about a second for iptables\-legacy). Where nsrun
cannot add them to iptables\-legacy (its lock stays held, no \fBxt_comment\fR
module), it refuses before the command runs and prints the commands that fix it. A
file\-capability install cannot see iptables\-legacy's tables at all: on a host whose
iptables\-legacy FORWARD drops forwarded packets it runs the command with no network;
use sudo there.
.PP
A sandbox with a network has no IPv6 at all, \fB::1\fR included: binding it fails
with EADDRNOTAVAIL; use 127.0.0.1. With \fB\-\-no\-net\fR, \fBlo\fR keeps \fB::1\fR,
but ports below 1024 cannot be bound there.
.PP
A holder killed with SIGKILL leaves the forwarding it switched on, guarded (table
\fBinet nsrun\-guard\fR, which no process owns), until a new holder takes it over: at
once while sandboxes run (their nsruns start one), otherwise with the next nsrun.
.SH FILES
.TP
/etc/resolv.conf, /run/systemd/resolve/resolv.conf
read to give the sandbox the host's nameservers; never written
.TP
/etc/hosts
read, and given to the sandbox with host.nsrun.internal (and its \fB\-\-hostname\fR)
added
.TP
/run/netns/NAME, /run/nsrun/netns\-NAME.lock
with \fB\-\-name\fR, while the sandbox runs
.TP
\fB\-\-info\-file\fR FILE
JSON about the sandbox, present exactly while it runs
.TP
/proc/sys/net/ipv4/conf/*/forwarding
forwarding on the sandbox's host\-end link and the links routes lead through
.SH "SEE ALSO"
\fBip\-netns\fR(8), \fBunshare\fR(1), \fBbwrap\fR(1), \fBfirejail\fR(1), \fBslirp4netns\fR(1),
\fBpasta\fR(1), \fBsystemd\-nspawn\fR(1), \fBnamespaces\fR(7), \fBcapabilities\fR(7),
\fBnft\fR(8)
"#;

fn man_page() -> String {
    let cmd = cli::Cli::command();
    let man = clap_mangen::Man::new(cmd).date("2026-11-22");
    let mut out = Vec::new();
    man.render_title(&mut out).unwrap();
    man.render_name_section(&mut out).unwrap();
    man.render_synopsis_section(&mut out).unwrap();
    man.render_description_section(&mut out).unwrap();
    man.render_options_section(&mut out).unwrap();
    let mut text = String::from_utf8(out).unwrap();
    // clap_mangen gives each help heading a section of its own; they are groups of
    // OPTIONS, as in --help.
    for heading in option_headings() {
        let upper = heading.to_uppercase();
        let section = if upper.contains(' ') {
            format!(".SH \"{upper}\"\n")
        } else {
            format!(".SH {upper}\n")
        };
        assert!(text.contains(&section), "no {section} in {text}");
        text = text.replace(&section, &format!(".SS \"{heading}\"\n"));
    }
    text.push_str(EXTRA_SECTIONS);
    text
}

/// The groups of options, in --help's order.
fn option_headings() -> Vec<String> {
    let mut headings: Vec<String> = Vec::new();
    for arg in cli::Cli::command().get_arguments() {
        if let Some(h) = arg.get_help_heading()
            && !headings.iter().any(|x| x == h)
        {
            headings.push(h.to_string());
        }
    }
    headings
}

fn completion(shell: Shell) -> String {
    let mut cmd = cli::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "nsrun", &mut out);
    let mut text = String::from_utf8(out).unwrap();
    // After `--`, the command and then its own arguments, as sudo's completion does
    // (zsh's _cmdambivalent does this by itself).
    match shell {
        Shell::Bash => {
            // -e completes the names of exported variables (then `=VALUE` by hand).
            for opt in ["--env", "-e"] {
                let from = format!(
                    "                {opt})\n                    COMPREPLY=(\"${{cur}}\")\n"
                );
                assert!(text.contains(&from), "no {opt} case in the bash completion");
                text = text.replace(
                    &from,
                    &format!("                {opt})\n                    COMPREPLY=($(compgen -e -- \"${{cur}}\"))\n                    [[ ${{#COMPREPLY[@]}} -gt 0 ]] || COMPREPLY=(\"${{cur}}\")\n"),
                );
            }
            // The names of running sandboxes after the options that take one.
            for opt in RUNTIME_TARGETS {
                let from = format!(
                    "                {opt})\n                    COMPREPLY=(\"${{cur}}\")\n"
                );
                assert!(text.contains(&from), "no {opt} case in the bash completion");
                text = text.replace(
                    &from,
                    &format!("                {opt})\n                    COMPREPLY=($(compgen -W \"$(nsrun --list --names 2>/dev/null)\" -- \"${{cur}}\"))\n"),
                );
            }
            text.push_str(BASH_AFTER_DOUBLE_DASH);
        }
        Shell::Fish => {
            let from = "-d 'Set an environment variable for the command (repeatable)' -r -f\n";
            assert!(text.contains(from), "no -e in the fish completion");
            text = text.replace(from, &from.replace(" -r -f\n", " -r -f -a '(set -xn)'\n"));
            for opt in RUNTIME_TARGETS {
                let line = text
                    .lines()
                    .find(|l| l.starts_with(&format!("complete -c nsrun -l {} ", &opt[2..])))
                    .expect("the option in the fish completion")
                    .to_string();
                text = text.replace(
                    &line,
                    &format!("{line} -a '(nsrun --list --names 2>/dev/null)'"),
                );
            }
            text.push_str(FISH_AFTER_DOUBLE_DASH);
        }
        // clap_complete leaves colons in value names unescaped; in zsh's _arguments a
        // colon there ends the message, and the rest would run as a command.
        Shell::Zsh => {
            for name in ["USER[:GROUP]", "[HOST_IP:]PORT:PORT"] {
                text = text.replace(
                    &format!(":{name}:"),
                    &format!(":{}:", name.replace(':', "\\:")),
                );
            }
            for opt in RUNTIME_TARGETS {
                let at = text
                    .find(&format!("'{opt}=["))
                    .expect("the option in the zsh completion");
                let end = at + text[at..].find("' \\\n").unwrap();
                assert!(text[at..end].ends_with(":NAME|PID:"), "{}", &text[at..end]);
                text.insert_str(
                    end,
                    "{compadd -- ${(f)\"$(nsrun --list --names 2>/dev/null)\"}}",
                );
            }
            // -e: the names of exported parameters.
            for opt in ["-e+", "--env="] {
                let at = text
                    .find(&format!("'*{opt}["))
                    .expect("-e in the zsh completion");
                let end = at + text[at..].find("' \\\n").unwrap();
                assert!(
                    text[at..end].ends_with(":NAME[=VALUE]:"),
                    "{}",
                    &text[at..end]
                );
                text.insert_str(end, "_parameters -g \"*export*\"");
            }
            // After `--`, the command and its own arguments, as _precommand does:
            // _arguments alone offers nothing when `--` is the first word.
            text = text.replace(
                "_nsrun() {\n",
                "_nsrun() {\n    local dd=${words[(i)--]}\n    if (( dd > 1 && dd < CURRENT )); then\n        shift $dd words\n        (( CURRENT -= dd ))\n        _normal\n        return\n    fi\n",
            );
        }
        _ => {}
    }
    text
}

/// The options whose value is a running sandbox.
const RUNTIME_TARGETS: [&str; 4] = ["--join", "--stop", "--disconnect", "--reconnect"];

const BASH_AFTER_DOUBLE_DASH: &str = r#"
# After `--`: complete the command, then its own arguments (bash-completion's
# _command_offset, as sudo's completion does).
_nsrun_command() {
    local i
    # --user=NAME: bash splits the word at `=`.
    if [[ ${COMP_WORDS[COMP_CWORD]} == = && ${COMP_WORDS[COMP_CWORD-1]} == --user ]]; then
        COMPREPLY=( $(compgen -u) )
        return 0
    fi
    if [[ ${COMP_WORDS[COMP_CWORD-1]} == = && ${COMP_WORDS[COMP_CWORD-2]} == --user ]]; then
        COMPREPLY=( $(compgen -u -- "${COMP_WORDS[COMP_CWORD]}") )
        return 0
    fi
    if [[ ${COMP_WORDS[COMP_CWORD-1]} == --user ]]; then
        COMPREPLY=( $(compgen -u -- "${COMP_WORDS[COMP_CWORD]}") )
        return 0
    fi
    for (( i = 1; i < COMP_CWORD; i++ )); do
        if [[ ${COMP_WORDS[i]} == -- ]]; then
            if declare -F _command_offset >/dev/null; then
                _command_offset $(( i + 1 ))
            else
                COMPREPLY=( $(compgen -c -- "${COMP_WORDS[COMP_CWORD]}") )
            fi
            return 0
        fi
    done
    _nsrun "$@"
}
complete -F _nsrun_command -o bashdefault -o default nsrun
"#;

const FISH_AFTER_DOUBLE_DASH: &str = r#"
# After `--`: the command, then its own arguments through that command's completions.
function __nsrun_after_double_dash
    set -l tokens (commandline -opc)
    set -l i (contains -i -- -- $tokens)
    set -l rest $tokens[(math $i + 1)..-1]
    if test (count $rest) -eq 0
        __fish_complete_command
    else
        complete -C (string join ' ' -- (string escape -- $rest) (commandline -ct))
    end
end
complete -c nsrun -n 'contains -- -- (commandline -opc)' -f -a '(__nsrun_after_double_dash)'
"#;

fn check(path: &str, want: String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    if std::env::var_os("NSRUN_REGENERATE_DOCS").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is stale against src/cli.rs: run NSRUN_REGENERATE_DOCS=1 cargo test --test docs",
        path.display()
    );
}

#[test]
fn man_page_is_fresh() {
    check("man/nsrun.1", man_page());
}

#[test]
fn man_page_has_every_section_and_flag() {
    let man = man_page();
    for section in [
        "\"RUNNING SANDBOXES\"",
        "NETWORKS",
        "\"ONLY THE DESTINATIONS A COMMAND NEEDS\"",
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "\"EXIT STATUS\"",
        "EXAMPLES",
        "SECURITY",
        "FILES",
        "\"SEE ALSO\"",
    ] {
        assert!(
            man.contains(&format!(".SH {section}")),
            "no {section} section"
        );
    }
    for arg in cli::Cli::command().get_arguments() {
        if let Some(long) = arg.get_long() {
            assert!(
                man.contains(&format!("\\-\\-{}", long.replace('-', "\\-"))),
                "--{long} is not in the man page"
            );
        }
    }
}

/// What the README says about the options and the info file agrees with the code: it
/// names every option, in --help's groups, and every field src/info.rs writes is named
/// by the README and by --info-file's help.
#[test]
fn readme_covers_every_option_and_info_file_field() {
    let top = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(top.join("README.md")).unwrap();
    let cmd = cli::Cli::command();
    for arg in cmd.get_arguments() {
        if let Some(long) = arg.get_long() {
            assert!(
                readme.contains(&format!("--{long}")),
                "--{long} is not in the README"
            );
        }
    }
    for heading in option_headings() {
        assert!(
            readme.contains(&format!("**{heading}**")),
            "the README has no group {heading}"
        );
    }
    let info = std::fs::read_to_string(top.join("src/info.rs")).unwrap();
    let render = &info[info.find("pub fn render").unwrap()..];
    let render = &render[..render.find("\n}\n").unwrap()];
    let mut fields = vec![];
    for part in render.split("\\\"").skip(1).step_by(2) {
        if part.chars().all(|c| c.is_ascii_lowercase() || c == '_') && !part.is_empty() {
            fields.push(part.to_string());
        }
    }
    for f in ["nsrun_pid", "ports", "sandbox_port", "started"] {
        assert!(fields.iter().any(|x| x == f), "{f} not found in {fields:?}");
    }
    let help = cmd
        .get_arguments()
        .find(|a| a.get_long() == Some("info-file"))
        .and_then(|a| a.get_long_help())
        .unwrap()
        .to_string();
    let section = &readme[readme.find("- `--info-file FILE`").unwrap()..];
    let section = &section[..section.find("\n\n").unwrap()];
    for f in &fields {
        assert!(section.contains(f), "the README's --info-file lacks {f}");
        assert!(help.contains(f), "--info-file's help lacks {f}");
    }
}

#[test]
fn completions_are_fresh() {
    check("completions/nsrun.bash", completion(Shell::Bash));
    check("completions/_nsrun", completion(Shell::Zsh));
    check("completions/nsrun.fish", completion(Shell::Fish));
}

/// Drives bash's real completion machinery: after `--` it offers commands, and then the
/// command's own completion; `--user` offers user names.
#[test]
fn bash_completes_the_command_after_double_dash() {
    let bash_completion = "/usr/share/bash-completion/bash_completion";
    if !std::path::Path::new(bash_completion).exists() {
        if std::env::var_os("NSRUN_TEST_REQUIRE_ROOT").is_some_and(|v| v == "1") {
            panic!("bash-completion is missing (NSRUN_TEST_REQUIRE_ROOT=1): .ci/run installs it");
        }
        eprintln!("skipped: bash-completion is missing");
        return;
    }
    let script = format!(
        r#"source {bash_completion}
source {dir}/completions/nsrun.bash
complete_line() {{ COMP_WORDS=("$@"); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); COMP_LINE="$*"; COMP_POINT=${{#COMP_LINE}}; COMPREPLY=(); _nsrun_command nsrun "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"; printf '%s\n' "${{COMPREPLY[@]}}"; }}
echo "== command"; complete_line nsrun -- sleep
echo "== options"; complete_line nsrun --wait-t
echo "== user"; complete_line nsrun --user ro
echo "== user="; complete_line nsrun --user = ro
echo "== env"; complete_line nsrun -e PAT
echo "== values"; for o in --dns --ip --pool -p --stop-timeout --name --hostname; do complete_line nsrun $o C; done
"#,
        dir = env!("CARGO_MANIFEST_DIR")
    );
    let out = std::process::Command::new("bash")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let (command, rest) = text.split_once("== options").unwrap();
    let (options, rest) = rest.split_once("== user\n").unwrap();
    let (users, rest) = rest.split_once("== user=").unwrap();
    let (users_eq, rest) = rest.split_once("== env").unwrap();
    let (env, values) = rest.split_once("== values").unwrap();
    assert!(command.lines().any(|l| l == "sleep"), "after --: {text}");
    assert!(
        options.contains("--wait-teardown"),
        "nsrun's own options: {text}"
    );
    assert!(
        users.lines().any(|l| l == "root"),
        "--user completes users: {text}"
    );
    assert!(
        users_eq.lines().any(|l| l == "root"),
        "--user=ro completes users: {text}"
    );
    assert!(
        env.lines().any(|l| l == "PATH"),
        "-e completes variable names: {text}"
    );
    // Addresses, ports, names and seconds: no file names (Cargo.toml is in the
    // working directory), only what was typed.
    assert!(
        values.lines().skip(1).all(|l| l == "C"),
        "no file names for values: {text}"
    );
}

/// Drives fish's completion: commands after `--`, then the command's own options, user
/// names for `--user`, and nsrun's own options before `--` only.
#[test]
fn fish_completes_the_command_after_double_dash() {
    if !common::require_tool("fish") {
        return;
    }
    let complete = |line: &str| {
        let script = format!(
            "source {}/completions/nsrun.fish; complete -C '{line}'",
            env!("CARGO_MANIFEST_DIR")
        );
        let out = std::process::Command::new("fish")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let words = |text: &str| -> Vec<String> {
        text.lines()
            .map(|l| l.split('\t').next().unwrap_or("").to_string())
            .collect()
    };
    assert!(words(&complete("nsrun --user root -- sle")).contains(&"sleep".to_string()));
    assert!(words(&complete("nsrun -- ls --colo")).contains(&"--color".to_string()));
    assert!(words(&complete("nsrun --user ro")).contains(&"root".to_string()));
    assert!(words(&complete("nsrun --wait-t")).contains(&"--wait-teardown".to_string()));
    assert!(!words(&complete("nsrun -- ls --wait-t")).contains(&"--wait-teardown".to_string()));
    assert!(words(&complete("nsrun -e PAT")).contains(&"PATH".to_string()));
    for opt in ["--dns", "--ip", "--pool", "-p", "--stop-timeout", "--name"] {
        let offered = complete(&format!("nsrun {opt} C"));
        assert!(offered.trim().is_empty(), "{opt}: {offered}");
    }
}

#[test]
fn make_install_lays_out_binary_man_page_and_completions() {
    if !common::which("make") {
        eprintln!("skipped: make is missing");
        return;
    }
    let stage = std::env::temp_dir().join(format!("nsrun-install-{}", std::process::id()));
    let out = std::process::Command::new("make")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("install")
        .arg(format!("DESTDIR={}", stage.display()))
        .arg("PREFIX=/usr")
        .arg(format!("BIN={}", env!("CARGO_BIN_EXE_nsrun")))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "usr/bin/nsrun",
        "usr/share/man/man1/nsrun.1",
        "usr/share/bash-completion/completions/nsrun",
        "usr/share/zsh/site-functions/_nsrun",
        "usr/share/fish/vendor_completions.d/nsrun.fish",
    ] {
        assert!(stage.join(f).is_file(), "{f} missing");
    }
    let _ = std::fs::remove_dir_all(&stage);
}

/// `make deb` and `make deb SETCAP=1`: the same files as `make install` (the man page
/// gzipped) with the copyright and changelog Debian asks for, no lintian errors, and a
/// clean `dpkg -i` and `dpkg -r`, done in a throwaway root (`dpkg --root`), never in the
/// machine's own /usr. The SETCAP=1 package depends on libcap2-bin, sets the file
/// capabilities on install, and fails to install when setcap fails.
#[test]
fn the_debian_package_carries_the_same_files() {
    if !common::which("make") || !common::which("dpkg-deb") {
        if std::env::var_os("NSRUN_TEST_REQUIRE_ROOT").is_some_and(|v| v == "1") {
            panic!(
                "make or dpkg-deb is missing (NSRUN_TEST_REQUIRE_ROOT=1): .ci/run installs them"
            );
        }
        eprintln!("skipped: make or dpkg-deb is missing");
        return;
    }
    let top = env!("CARGO_MANIFEST_DIR");
    let version = format!("{}-1", env!("CARGO_PKG_VERSION"));
    for (setcap, name) in [(false, "nsrun"), (true, "nsrun-setcap")] {
        let out = std::process::Command::new("make")
            .current_dir(top)
            .arg("deb")
            .arg(format!("SETCAP={}", u8::from(setcap)))
            .arg(format!("BIN={}", env!("CARGO_BIN_EXE_nsrun")))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let deb = PathBuf::from(top)
            .join("target")
            .join(format!("{name}_{version}_amd64.deb"));
        assert!(deb.is_file(), "{} is missing", deb.display());
        let dpkg_deb = |args: &[&str]| {
            let out = std::process::Command::new("dpkg-deb")
                .args(args)
                .arg(&deb)
                .output()
                .unwrap();
            assert!(out.status.success(), "dpkg-deb {args:?}");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let list = dpkg_deb(&["-c"]);
        for f in PACKAGE_FILES {
            assert!(
                list.contains(&format!(" .{f}\n")),
                "{f} not in the package: {list}"
            );
        }
        let control = dpkg_deb(&["-f"]);
        assert!(
            control.contains("Maintainer: nsrun developers <"),
            "{control}"
        );
        assert_eq!(
            control.contains("Depends: libcap2-bin"),
            setcap,
            "{control}"
        );
        if common::require_tool("lintian") {
            let out = std::process::Command::new("lintian")
                .arg(&deb)
                .output()
                .unwrap();
            let report = String::from_utf8_lossy(&out.stdout);
            assert!(
                !report.lines().any(|l| l.starts_with("E: ")),
                "lintian finds errors in {}:\n{report}",
                deb.display()
            );
        }
        if setcap {
            // A failing setcap fails the installation.
            let dir = std::env::temp_dir().join(format!("nsrun-deb-ctl-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let out = std::process::Command::new("dpkg-deb")
                .arg("-e")
                .arg(&deb)
                .arg(&dir)
                .output()
                .unwrap();
            assert!(out.status.success());
            let status = std::process::Command::new("sh")
                .arg(dir.join("postinst"))
                .arg("configure")
                .env("DPKG_ROOT", "/nonexistent-nsrun-root")
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(!status.success(), "postinst hides setcap's failure");
            let _ = std::fs::remove_dir_all(&dir);
        }
        if nix::unistd::geteuid().is_root() {
            install_and_remove(&deb, setcap);
        } else if std::env::var_os("NSRUN_TEST_REQUIRE_ROOT").is_some_and(|v| v == "1") {
            panic!("dpkg -i needs root (NSRUN_TEST_REQUIRE_ROOT=1)");
        }
    }
}

/// What `make install PREFIX=/usr` and the package lay out (the package's man page
/// gzipped, and Debian's copyright and changelog besides).
const PACKAGE_FILES: [&str; 7] = [
    "/usr/bin/nsrun",
    "/usr/share/man/man1/nsrun.1.gz",
    "/usr/share/bash-completion/completions/nsrun",
    "/usr/share/zsh/site-functions/_nsrun",
    "/usr/share/fish/vendor_completions.d/nsrun.fish",
    "/usr/share/doc/nsrun/copyright",
    "/usr/share/doc/nsrun/changelog.Debian.gz",
];

/// `dpkg -i` and `dpkg -r` into an empty throwaway root: maintainer scripts run without
/// chroot, with DPKG_ROOT set, as Debian's chrootless installs do.
fn install_and_remove(deb: &std::path::Path, setcap: bool) {
    let root = std::env::temp_dir().join(format!("nsrun-deb-root-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    let real = std::fs::symlink_metadata("/usr/bin/nsrun").ok().map(|m| {
        use std::os::unix::fs::MetadataExt;
        (m.ino(), m.mtime(), m.ctime())
    });
    let dpkg = |args: &[&str]| {
        let out = std::process::Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .arg("--force-script-chrootless")
            // libcap2-bin is on the machine, not in the throwaway root's database.
            .arg("--force-depends")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dpkg {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    dpkg(&["-i", deb.to_str().unwrap()]);
    for f in PACKAGE_FILES {
        assert!(root.join(&f[1..]).exists(), "{f} not installed");
    }
    if setcap {
        let caps = std::process::Command::new("getcap")
            .arg(root.join("usr/bin/nsrun"))
            .output()
            .unwrap();
        let caps = String::from_utf8_lossy(&caps.stdout);
        for cap in ["cap_net_admin", "cap_sys_admin", "cap_setpcap"] {
            assert!(caps.contains(cap), "no {cap}: {caps}");
        }
    }
    dpkg(&["-r", "nsrun"]);
    assert!(
        !root.join("usr").exists() || walk(&root.join("usr")).is_empty(),
        "left after dpkg -r: {:?}",
        walk(&root.join("usr"))
    );
    let real_after = std::fs::symlink_metadata("/usr/bin/nsrun").ok().map(|m| {
        use std::os::unix::fs::MetadataExt;
        (m.ino(), m.mtime(), m.ctime())
    });
    assert_eq!(real, real_after, "the machine's /usr/bin/nsrun changed");
    let _ = std::fs::remove_dir_all(&root);
}

/// Every file (not directory) under `dir`.
fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = vec![];
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Drives zsh's completion system in a pseudo-terminal: TAB after `--` completes a
/// command, and `--user` completes a user name.
#[test]
fn zsh_completes_the_command_after_double_dash() {
    if !common::require_tool("zsh") {
        return;
    }
    let script = r#"
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.environ["TERM"] = "dumb"
    os.execv("/usr/bin/zsh", ["zsh", "-f", "-i"])
def read(t):
    out = b""; end = time.time() + t
    while time.time() < end:
        if select.select([fd], [], [], 0.05)[0]:
            try: out += os.read(fd, 4096)
            except OSError: break
    return out
read(0.5)
os.write(fd, ("PS1='P> '; fpath=(%s $fpath); autoload -U compinit; compinit -u -D; echo RE''ADY\n" % sys.argv[1]).encode())
out = b""
end = time.time() + 10
while b"READY" not in out and time.time() < end:
    out += read(0.2)
os.write(fd, b"nsrun -- slee\t")
print("command:", read(1.5))
os.write(fd, b"\x15nsrun --user roo\t")
print("user:", read(1.5))
os.kill(pid, 9)
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("completions"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let (command, user) = text.split_once("user:").unwrap_or((&text, ""));
    assert!(command.contains("sleep"), "after --: {text}");
    assert!(user.contains("root"), "--user: {text}");
}
