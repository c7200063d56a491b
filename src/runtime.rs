//! Acting on running sandboxes: `--list`, `--join`, `--stop`, `--disconnect`,
//! `--reconnect`. Each running nsrun answers on its control socket (control.rs); the
//! sockets that exist are found in /proc/net/unix, so the list is right after any
//! `kill -9` with no daemon and nothing on disk.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{MsgFlags, UnixAddr, connect, send};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::cli::Cli;
use crate::info::json_string;
use crate::proto::control::{self, Reply, Request, Running};
use crate::supervise::{FORWARDED, exit_code};

/// How long a running nsrun may take to answer (it serves from its supervision loop).
const ANSWER: Duration = Duration::from_secs(5);

/// Whether the command line asks for one of these instead of a run.
pub fn wanted(cli: &Cli) -> bool {
    cli.list
        || cli.join.is_some()
        || cli.stop.is_some()
        || cli.disconnect.is_some()
        || cli.reconnect.is_some()
}

pub fn run(cli: Cli) -> Result<i32> {
    if cli.join.is_none() && !cli.command.is_empty() {
        bail!(
            "{} takes no COMMAND; only --join runs one, e.g. 'nsrun --join web -- ss -ltn'",
            mode(&cli)
        );
    }
    if cli.list {
        return list(cli.json, cli.names);
    }
    if let Some(target) = &cli.stop {
        let sandbox = find(target, "--stop")?;
        let timeout_ms = u32::try_from(cli.stop_timeout.as_millis()).unwrap_or(u32::MAX);
        return match ask(sandbox.nsrun_pid, &Request::Stop { timeout_ms }, None)? {
            (Reply::Status(code), _) => Ok(code),
            (Reply::Error(e), _) => bail!("--stop {target}: {e}"),
            _ => {
                bail!("--stop {target}: the sandbox ended without a status (its nsrun was killed)")
            }
        };
    }
    if let Some(target) = &cli.disconnect {
        let sandbox = find(target, "--disconnect")?;
        let request = Request::Disconnect { drop: cli.drop };
        return done(
            ask(sandbox.nsrun_pid, &request, Some(ANSWER))?.0,
            "--disconnect",
            target,
        );
    }
    if let Some(target) = &cli.reconnect {
        let sandbox = find(target, "--reconnect")?;
        return done(
            ask(sandbox.nsrun_pid, &Request::Reconnect, Some(ANSWER))?.0,
            "--reconnect",
            target,
        );
    }
    let target = cli.join.clone().unwrap_or_default();
    join(&target, cli)
}

fn mode(cli: &Cli) -> &'static str {
    if cli.list {
        "--list"
    } else if cli.stop.is_some() {
        "--stop"
    } else if cli.disconnect.is_some() {
        "--disconnect"
    } else {
        "--reconnect"
    }
}

fn done(reply: Reply, option: &str, target: &str) -> Result<i32> {
    match reply {
        Reply::Done(_) => Ok(0),
        Reply::Error(e) => bail!("{option} {target}: {e}"),
        _ => bail!("{option} {target}: an answer nsrun does not know"),
    }
}

/// The PIDs of the nsrun processes whose control socket exists.
fn running_pids() -> Vec<u32> {
    let text = crate::host::read_etc("/proc/net/unix");
    let mut pids: Vec<u32> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(7))
        .filter_map(|path| path.strip_prefix('@')?.strip_prefix(control::PREFIX))
        .filter_map(|pid| pid.parse().ok())
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Sends one request to nsrun `pid` and reads its answer (with any descriptors).
fn ask(pid: u32, request: &Request, timeout: Option<Duration>) -> Result<(Reply, Vec<OwnedFd>)> {
    let sock = crate::locks::seqpacket("a running sandbox's control socket")?;
    let name = control::socket_name(pid);
    let addr = UnixAddr::new_abstract(name.as_bytes()).context("control socket name")?;
    connect(sock.as_raw_fd(), &addr).with_context(|| format!("connect to @{name}"))?;
    // Anyone can bind a name of this form first: trust only a listener that is the
    // process the name says, run by root or by this user (root asks anyone's). An
    // impostor answering --join could hand over namespaces of its own: a join trusts
    // only a listener of its own uid.
    let peer = nix::sys::socket::getsockopt(&sock, nix::sys::socket::sockopt::PeerCredentials)
        .with_context(|| format!("@{name}: who listens"))?;
    let me = nix::unistd::getuid().as_raw();
    if peer.pid() as u32 != pid || !(me == 0 || peer.uid() == 0 || peer.uid() == me) {
        bail!(
            "@{name} is not nsrun {pid}'s (pid {}, uid {})",
            peer.pid(),
            peer.uid()
        );
    }
    // Another user's listener, asked by root: only nsrun's own binary (not a program
    // that took the name to show up in --list).
    if me == 0 && peer.uid() != 0 && !same_binary(pid) {
        bail!("@{name} is not nsrun's");
    }
    if matches!(request, Request::Join) && peer.uid() != nix::unistd::geteuid().as_raw() {
        bail!(
            "--join: nsrun {pid} runs as uid {}, not as you: join it as that user",
            peer.uid()
        );
    }
    if let Some(t) = timeout {
        let tv = nix::sys::time::TimeVal::new(t.as_secs() as i64, 0);
        let _ = nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::ReceiveTimeout, &tv);
    }
    send(sock.as_raw_fd(), &request.encode(), MsgFlags::MSG_NOSIGNAL)
        .with_context(|| format!("ask nsrun {pid}"))?;
    let (buf, n, fds) = crate::sys::recv_with_fds::<{ 1 << 16 }>(&sock, MsgFlags::empty())
        .with_context(|| format!("hear from nsrun {pid}"))?;
    // A closed connection: another user's sandbox, or one that just ended.
    if n == 0 {
        bail!("nsrun {pid} closed the connection");
    }
    let reply =
        Reply::decode(&buf[..n]).ok_or_else(|| anyhow!("nsrun {pid}: an unknown answer"))?;
    Ok((reply, fds))
}

/// Whether process `pid` runs this very binary.
fn same_binary(pid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata("/proc/self/exe"),
        std::fs::metadata(format!("/proc/{pid}/exe")),
    ) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Every running sandbox this user may act on, in the order of nsrun's PIDs.
fn running() -> Vec<Running> {
    running_pids()
        .into_iter()
        .filter_map(|pid| match ask(pid, &Request::Info, Some(ANSWER)) {
            Ok((Reply::Info(r), _)) => Some(r),
            _ => None,
        })
        .collect()
}

/// The sandbox `target` names: its --name, nsrun's PID or its init's.
fn find(target: &str, option: &str) -> Result<Running> {
    let pid: Option<u32> = target.parse().ok();
    running()
        .into_iter()
        .find(|r| {
            r.name.as_deref() == Some(target)
                || pid.is_some_and(|p| p == r.nsrun_pid || p == r.init_pid)
        })
        .ok_or_else(|| {
            anyhow!(
                "{option} {target}: no running sandbox of yours has this name or PID; see 'nsrun --list'"
            )
        })
}

fn user_name(uid: u32) -> String {
    crate::users::parse_passwd(&crate::host::read_etc("/etc/passwd"))
        .iter()
        .find(|p| p.uid == uid)
        .map_or_else(|| uid.to_string(), |p| p.name.clone())
}

fn uptime(started: u64) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    now.saturating_sub(started)
}

/// "42s", "5m", "3h", "2d".
pub fn human_duration(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn json_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|i| json_string(i)).collect();
    format!("[{}]", items.join(", "))
}

/// `--list` as text: a header and one line per sandbox.
pub fn render_table(
    sandboxes: &[Running],
    user: impl Fn(u32) -> String,
    now_uptime: impl Fn(u64) -> u64,
) -> String {
    let rows: Vec<[String; 9]> = sandboxes
        .iter()
        .map(|r| {
            [
                r.name.clone().unwrap_or_else(|| "-".into()),
                r.nsrun_pid.to_string(),
                r.init_pid.to_string(),
                r.address.map_or_else(|| "-".into(), |a| a.to_string()),
                r.network.clone(),
                if r.ports.is_empty() {
                    "-".into()
                } else {
                    r.ports.join(",")
                },
                user(r.uid),
                human_duration(now_uptime(r.started)),
                r.command.join(" "),
            ]
        })
        .collect();
    let header = [
        "NAME", "PID", "INIT", "ADDRESS", "NETWORK", "PORTS", "USER", "UPTIME", "COMMAND",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// `--list --json`: one array of objects.
pub fn render_json(
    sandboxes: &[Running],
    user: impl Fn(u32) -> String,
    now_uptime: impl Fn(u64) -> u64,
) -> String {
    let objects: Vec<String> = sandboxes
        .iter()
        .map(|r| {
            format!(
                "{{\"name\": {}, \"nsrun_pid\": {}, \"init_pid\": {}, \"address\": {}, \"network\": {}, \"ports\": {}, \"uid\": {}, \"user\": {}, \"started\": {}, \"uptime\": {}, \"command\": {}}}",
                r.name.as_deref().map_or("null".into(), json_string),
                r.nsrun_pid,
                r.init_pid,
                r.address.map_or("null".into(), |a| json_string(&a.to_string())),
                json_string(&r.network),
                json_list(&r.ports),
                r.uid,
                json_string(&user(r.uid)),
                r.started,
                now_uptime(r.started),
                json_list(&r.command),
            )
        })
        .collect();
    format!("[{}]\n", objects.join(",\n "))
}

fn list(json: bool, names: bool) -> Result<i32> {
    let sandboxes = running();
    let text = if names {
        sandboxes
            .iter()
            .map(|r| r.name.clone().unwrap_or_else(|| r.nsrun_pid.to_string()) + "\n")
            .collect()
    } else if json {
        render_json(&sandboxes, user_name, uptime)
    } else {
        render_table(&sandboxes, user_name, uptime)
    };
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error of nsrun's.
    let _ = out.write_all(text.as_bytes());
    Ok(0)
}

/// `--join`: enters the sandbox's namespaces, then runs the command as the sandbox's
/// command runs, and returns its exit status.
fn join(target: &str, cli: Cli) -> Result<i32> {
    let sandbox = find(target, "--join")?;
    let (reply, fds) = ask(sandbox.nsrun_pid, &Request::Join, Some(ANSWER))?;
    let (uid, gid, groups) = match reply {
        Reply::Join { uid, gid, groups } => (uid, gid, groups),
        Reply::Error(e) => bail!("--join {target}: {e}"),
        _ => bail!("--join {target}: an answer nsrun does not know"),
    };
    if fds.len() < crate::child::JOINED.len() {
        bail!("--join {target}: nsrun passed no namespaces");
    }
    let creds = crate::host::creds();
    let root = creds.euid == 0;
    // The user: --user (root only), else the sandbox's own.
    let passwd = crate::users::parse_passwd(&crate::host::read_etc("/etc/passwd"));
    let identity = match (&cli.user, root) {
        (Some(spec), true) => {
            let groups_file = crate::users::parse_group(&crate::host::read_etc("/etc/group"));
            crate::users::resolve_spec(spec, &passwd, &groups_file)?
        }
        (Some(_), false) => bail!(
            "--join {target} --user: only root may choose the user; without --user the command runs as the sandbox's"
        ),
        (None, _) => crate::users::Identity { uid, gid, groups },
    };
    let entry = passwd.iter().find(|p| p.uid == identity.uid);
    let env_plan = crate::plan::env_plan(&cli.env, &cli.env_file, cli.clearenv, |k| {
        std::env::var(k).ok()
    })?;
    let inherited: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let target_user = match (root, entry) {
        (false, _) => crate::plan::NewUser::Unchanged,
        (true, Some(e)) => crate::plan::NewUser::Entry(e),
        (true, None) => crate::plan::NewUser::Uid(identity.uid),
    };
    let env = crate::plan::command_env(&env_plan, &inherited, target_user);
    let command: Vec<CString> = if cli.command.is_empty() {
        let shell = entry
            .map(|e| e.shell.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "/bin/sh".into());
        vec![CString::new(shell).context("--join: the user's shell")?]
    } else {
        cli.command
            .iter()
            .map(|a| CString::new(std::os::unix::ffi::OsStrExt::as_bytes(a.as_os_str())))
            .collect::<Result<_, _>>()
            .context("--join: COMMAND contains a NUL byte")?
    };
    let stdin_tty = nix::unistd::isatty(std::io::stdin().as_raw_fd()).unwrap_or(false);
    let tty = cli.tty || (cli.command.is_empty() && stdin_tty);
    let pty = if tty {
        Some(crate::sandbox::open_pty()?)
    } else {
        None
    };
    let workdir = cli
        .workdir
        .as_ref()
        .map(|w| CString::new(w.as_os_str().as_encoded_bytes()))
        .transpose()
        .context("-w: a NUL byte")?;

    // Signals wait for the loop below from now on; the command gets an empty mask.
    let mut signals = SigSet::empty();
    for sig in FORWARDED {
        signals.add(sig);
    }
    signals.add(Signal::SIGCHLD);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signals), None).context("block signals")?;
    let sfd = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC).context("signalfd")?;

    // Into the namespaces: the network and UTS, the PID namespace for the child to come,
    // the mounts last (they change what paths mean). Without CAP_SYS_CHROOT (a
    // file-capability install) the mounts cannot be entered: the command gets a mount
    // namespace made as the sandbox's, with the sandbox's resolv.conf and hosts.
    let kinds = [
        CloneFlags::CLONE_NEWNET,
        CloneFlags::CLONE_NEWNS,
        CloneFlags::CLONE_NEWPID,
        CloneFlags::CLONE_NEWUTS,
    ];
    let enter_mounts = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_CHROOT,
    )
    .unwrap_or(false);
    let sandbox_files: Vec<Option<String>> = (0..crate::child::JOINED_FILES.len())
        .map(|i| {
            let file = fds.get(crate::child::JOINED.len() + i)?;
            let mut text = String::new();
            std::io::Read::read_to_string(
                &mut std::fs::File::from(file.try_clone().ok()?),
                &mut text,
            )
            .ok()?;
            Some(text)
        })
        .collect();
    for i in [0, 3, 2, 1] {
        if i == 1 && !enter_mounts {
            continue;
        }
        nix::sched::setns(fds[i].as_fd(), kinds[i]).with_context(|| {
            format!(
                "--join {target}: enter its {} namespace (setns)",
                crate::child::JOINED[i]
            )
        })?;
    }
    drop(fds);
    let (master, slave) = match pty {
        Some((m, s)) => (Some(m), Some(s)),
        None => (None, None),
    };
    let child = match crate::sys::fork().context("--join: fork")? {
        None => {
            if !enter_mounts {
                if let Err(crate::child::StepError(step, errno)) =
                    crate::child::mounts_like_the_sandbox(
                        sandbox_files[0].as_ref(),
                        sandbox_files[1].as_ref(),
                    )
                {
                    crate::say(&format!(
                        "nsrun: --join: {step}: {}",
                        nix::errno::Errno::from_raw(errno)
                    ));
                    crate::sys::exit_now(125);
                }
            }
            joined_command(
                &command,
                &env,
                workdir.as_ref(),
                slave.as_ref(),
                &identity,
                root,
            )
        }
        Some(pid) => pid,
    };
    drop(slave);
    let terminal = match master {
        Some(m) => Some(crate::sandbox::Terminal::start(m)?),
        None => None,
    };
    loop {
        let Ok(Some(info)) = sfd.read_signal() else {
            continue;
        };
        let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
            continue;
        };
        if sig == Signal::SIGCHLD {
            match waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => {
                    if let Some(t) = terminal {
                        t.finish();
                    }
                    return Ok(exit_code(code << 8));
                }
                Ok(WaitStatus::Signaled(_, s, core)) => {
                    if let Some(t) = terminal {
                        t.finish();
                    }
                    return Ok(exit_code(s as i32 | if core { 0x80 } else { 0 }));
                }
                _ => continue,
            }
        }
        if let (Signal::SIGWINCH, Some(t)) = (sig, terminal.as_ref()) {
            t.follow_window_size();
        }
        let _ = kill(Pid::from_raw(-child.as_raw()), sig).or_else(|_| kill(child, sig));
    }
}

/// The joined command's side of the fork: drops every privilege, then execs.
fn joined_command(
    command: &[CString],
    env: &[CString],
    workdir: Option<&CString>,
    tty: Option<&OwnedFd>,
    identity: &crate::users::Identity,
    change_identity: bool,
) -> ! {
    let fail = |what: String, code: i32| -> ! {
        crate::say(&format!("nsrun: --join: {what}"));
        crate::sys::exit_now(code)
    };
    let dir = workdir.cloned().unwrap_or_else(|| c"/".into());
    if let Err(e) = nix::unistd::chdir(dir.as_c_str()) {
        fail(
            format!(
                "change to the working directory {} ({e})",
                dir.to_string_lossy()
            ),
            125,
        );
    }
    if let Err(crate::child::StepError(step, errno)) =
        crate::child::drop_privileges_to(tty, identity, change_identity)
    {
        fail(
            format!("{step}: {}", nix::errno::Errno::from_raw(errno)),
            125,
        );
    }
    let err = crate::child::exec_path(&command[0], command, env);
    fail(
        format!("{}: {err}", command[0].to_string_lossy()),
        crate::supervise::exec_failure_code(err as i32),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_has_a_column_each_and_a_line_per_sandbox() {
        let web = Running {
            nsrun_pid: 100,
            init_pid: 101,
            name: Some("web".into()),
            address: Some("10.77.0.2".parse().unwrap()),
            network: "nat".into(),
            ports: vec!["8080:80/tcp".into()],
            uid: 33,
            started: 1000,
            command: vec!["python3".into(), "-m".into(), "http.server".into()],
        };
        let offline = Running {
            nsrun_pid: 200,
            init_pid: 201,
            network: "none".into(),
            command: vec!["cargo".into(), "test".into()],
            started: 1000,
            ..Running::default()
        };
        let user = |uid: u32| {
            if uid == 33 {
                "www-data".into()
            } else {
                uid.to_string()
            }
        };
        let table = render_table(&[web.clone(), offline.clone()], user, |_| 125);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("NAME  PID  INIT  ADDRESS"), "{table}");
        assert!(
            lines[1].starts_with("web   100  101   10.77.0.2  nat"),
            "{table}"
        );
        assert!(
            lines[1].ends_with("8080:80/tcp  www-data  2m      python3 -m http.server"),
            "{table}"
        );
        assert!(
            lines[2].starts_with("-     200  201   -          none"),
            "{table}"
        );
        let json = render_json(&[web, offline], user, |_| 125);
        assert!(
            json.starts_with("[{\"name\": \"web\", \"nsrun_pid\": 100"),
            "{json}"
        );
        assert!(json.contains("\"address\": null"), "{json}");
        assert!(
            json.contains("\"command\": [\"cargo\", \"test\"]"),
            "{json}"
        );
        assert_eq!(render_json(&[], user, |_| 0), "[]\n");
        assert_eq!(human_duration(59), "59s");
        assert_eq!(human_duration(7200), "2h");
    }
}
