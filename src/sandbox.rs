//! The parent's sequence of steps, on the host side, and the owner of what it sets up:
//! it reads the host (host.rs), decides (decide.rs), then carries the decision out and
//! decides nothing itself.
//!
//! What the kernel undoes by itself: the veth dies with the sandbox's network namespace,
//! the sandbox's filters with it (firewall.rs), every process of the sandbox with its
//! init, the host's NAT rule with nsrun's connection to the holder (holder/). What
//! nsrun undoes on its way out is only for speed: it takes the host end down, so the
//! remains are inert from the moment it returns.

use std::io::Read;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, send, socketpair,
};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{Pid, pipe2};

use crate::addr::SandboxNet;
use crate::child::{self, ChildConfig};
use crate::dns::Decision;
use crate::host;
use crate::netlink::{self, Socket, route};
use crate::plan::{self, Plan, Privilege};
use crate::relay::Relay;
use crate::supervise::{self, FORWARDED, Report};
use crate::{decide, failpoint, holder, info, users};

/// The send buffer of the socket that carries "go" (its filters) to the init.
const GO_BUFFER: usize = 8 << 20;
/// How long a --name lock held by someone else is waited for before the name counts
/// as a running sandbox's.
const NAME_LOCK_WAIT: Duration = Duration::from_millis(200);
/// How long to try removing a dead sandbox's link that holds a wanted subnet.
const LEFTOVER_LINK_WAIT: Duration = Duration::from_secs(2);

macro_rules! verbose {
    ($plan:expr, $($arg:tt)*) => {
        if $plan.verbose { crate::say(&format!("nsrun: {}", format!($($arg)*))); }
    };
}

/// The sockets the host side is set up through, opened before the host is read.
struct NetPrep {
    rtnl: Socket,
    /// Host address changes, to close new addresses to the sandbox too.
    addr_events: Socket,
    /// Every prefix in use on the host when it was read, for refusals.
    used: Vec<crate::addr::Ipv4Net>,
}

/// `--name`: the sandbox's network namespace bind-mounted at /run/netns/NAME. A lock in
/// /run/nsrun tells a live name from one a killed nsrun left (which the holder removes,
/// and the next run replaces); a /run/netns entry without nsrun's lock is another tool's.
struct NamedNetns {
    path: std::path::PathBuf,
    lock_path: std::path::PathBuf,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

use crate::names::{NETNS_DIR, STATE_DIR};

impl NamedNetns {
    fn create(name: &str, init: Pid) -> Result<NamedNetns> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        for dir in [NETNS_DIR, STATE_DIR] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .with_context(|| format!("create {dir}"))?;
        }
        let path = crate::names::netns_path(name);
        let lock_path = crate::names::lock_path(name);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&lock_path)
            .with_context(|| format!("open {}", lock_path.display()))?;
        // A holder that cleans up after a killed nsrun takes the lock for a moment to
        // see whether anyone holds it: a restart at that instant waits it out, and only
        // a lock held longer is a running sandbox's.
        let deadline = Instant::now() + NAME_LOCK_WAIT;
        let mut lock = lock;
        let mut lock = loop {
            match nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock) {
                Ok(held) => break held,
                Err((file, _)) if Instant::now() < deadline => {
                    lock = file;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => bail!(
                    "--name {name}: a running sandbox has this name; choose another, e.g. '--name {name}-2'"
                ),
            }
        };
        if std::fs::symlink_metadata(&path).is_ok() {
            if !crate::names::is_ours(name) {
                bail!(
                    "--name {name}: {} exists and is not nsrun's (ip netns add?); choose another name, e.g. '--name {name}-2'",
                    path.display()
                );
            }
            // Left by an nsrun that was killed: replace it.
            let _ = nix::mount::umount2(
                &path,
                nix::mount::MntFlags::MNT_DETACH | nix::mount::MntFlags::UMOUNT_NOFOLLOW,
            );
            let _ = std::fs::remove_file(&path);
        }
        std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("create {}", path.display()))?;
        let netns = format!("/proc/{init}/ns/net");
        if let Err(e) = nix::mount::mount(
            Some(netns.as_str()),
            &path,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        ) {
            let _ = std::fs::remove_file(&path);
            return Err(e).with_context(|| format!("bind {netns} to {}", path.display()));
        }
        crate::names::record(&mut lock, &path)
            .with_context(|| format!("record the namespace in {}", lock_path.display()))?;
        Ok(NamedNetns {
            path,
            lock_path,
            _lock: lock,
        })
    }
}

impl Drop for NamedNetns {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

/// The host side of a sandbox's network.
struct Network {
    rtnl: Socket,
    addr_events: Socket,
    host_index: i32,
    host_addr: Ipv4Addr,
    sandbox_addr: Ipv4Addr,
    /// The sandbox's link (its prefix), and the range it came from.
    link: crate::addr::Ipv4Net,
    pool: crate::addr::Ipv4Net,
    known_addrs: Vec<Ipv4Addr>,
    /// The sandbox's registration with the holder, kept while it runs.
    keeper: Option<holder::Keeper>,
    /// Dropped before the keeper: the holder would otherwise remove it.
    named: Option<NamedNetns>,
    /// The host end has lost its address and is down.
    inert: bool,
    /// --pcap, finished when the sandbox has ended.
    capture: Option<crate::pcap::Capture>,
    /// The lock on the subnet and the link's name, held while nsrun lives (a member's
    /// is its network's, in its membership).
    _link_lock: Option<OwnedFd>,
    /// `--network`: this sandbox's part of its network, and its port there.
    membership: Option<(crate::networks::Membership, i32)>,
    /// -v: members joining and leaving.
    watcher: Option<crate::networks::Watcher>,
    /// --info-file, removed when the sandbox ends.
    info_file: Option<info::InfoFile>,
}

/// The sandbox's init. Until it has reported, dropping the guard kills it, which ends
/// every process in the sandbox.
struct Init {
    pid: Pid,
    reported: bool,
}

impl Drop for Init {
    fn drop(&mut self) {
        if !self.reported {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

/// Everything a run holds, dropped in the order the promises need: first the sandbox's
/// processes (so nothing runs once its link is down), then the host end (inert from
/// here), then the NAT lease. Filters need no order: they live and die with the
/// sandbox's namespace.
struct Sandbox {
    init: Init,
    network: Option<Network>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !self.init.reported {
            let _ = kill(self.init.pid, Signal::SIGKILL);
            let _ = waitpid(self.init.pid, None);
            self.init.reported = true;
        }
        if let Some(n) = &mut self.network {
            n.named = None;
            n.info_file = None;
            n.make_inert();
        }
        self.network = None;
    }
}

impl Network {
    /// Inert from here, in two cheap requests (deleting the link would wait for a grace
    /// period): the host end has no address, so no route leads to it and the host
    /// answers nothing there, and it is down, so it carries nothing.
    fn make_inert(&mut self) {
        if std::mem::replace(&mut self.inert, true) {
            return; // done already (the drop after a normal end)
        }
        if self.membership.is_some() {
            return; // the network's link is its other members' too
        }
        let _ = self.rtnl.request(
            route::del_addr(self.host_index, self.host_addr, self.link.prefix),
            "delete the host end's address",
        );
        let _ = self
            .rtnl
            .request(route::set_down(self.host_index), "host end down");
    }
}

pub fn run(plan: Plan) -> Result<i32> {
    // 1. Privileges and identity, before touching anything.
    failpoint::hit("start")?;
    let creds = host::creds();
    let privilege = plan::privilege(&creds, plan.network.is_some())?;
    if let Some(net) = &plan.network {
        plan::check_user_addresses(privilege, net)?;
        if let (Some(n), false) = (&net.network, privilege == Privilege::Root) {
            bail!(
                "--network {}: networks are made and joined by root only (each member's nsrun holds the network's namespace); run nsrun with sudo",
                n.name
            );
        }
    }
    let sudo = match privilege {
        // With file capabilities the environment is the caller's to forge: ignore it.
        Privilege::Root => plan::sudo_caller(|k| std::env::var(k).ok())?,
        _ => None,
    };
    let (passwd, groups) = if plan.user.is_some() || sudo.is_some() {
        (
            users::parse_passwd(&host::read_etc("/etc/passwd")),
            users::parse_group(&host::read_etc("/etc/group")),
        )
    } else {
        Default::default()
    };
    let identity = plan::choose_identity(
        privilege,
        &creds,
        &host::current_groups(),
        sudo.as_ref(),
        plan.user.as_deref(),
        &passwd,
        &groups,
    )?;
    // With a change of user, HOME, USER, LOGNAME and SHELL follow the passwd entry.
    let changes_user = privilege == Privilege::Root && (plan.user.is_some() || sudo.is_some());
    let target_user = match (changes_user, passwd.iter().find(|p| p.uid == identity.uid)) {
        (false, _) => plan::NewUser::Unchanged,
        (true, Some(entry)) => plan::NewUser::Entry(entry),
        (true, None) => plan::NewUser::Uid(identity.uid),
    };
    let inherited: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let env = plan::command_env(&plan.env, &inherited, target_user);
    verbose!(
        plan,
        "{} mode; the command runs as uid {} gid {} groups {}",
        describe_privilege(privilege),
        identity.uid,
        identity.gid,
        identity
            .groups
            .iter()
            .map(|g| g.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );

    // 2. Read the host, once, then decide everything before anything changes.
    let mut sockets = plan.network.as_ref().map(|_| open_sockets()).transpose()?;
    let facts = host::read_facts(sockets.as_mut().map(|s| &mut s.1), !plan.dns.is_empty())?;
    let setup = decide::decide(&plan, &facts)?;
    if let Some(net) = &setup.net {
        verbose!(plan, "DNS: {}", describe_dns(&net.dns));
    }
    let prep = sockets.map(|(addr_events, rtnl)| NetPrep {
        rtnl,
        addr_events,
        used: facts.net.used.clone(),
    });
    drop(facts);

    // 3. Signals wait in a signalfd from now on; the init inherits the mask.
    let mut signals = SigSet::empty();
    for sig in FORWARDED {
        signals.add(sig);
    }
    signals.add(Signal::SIGCHLD);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signals), None).context("block signals")?;
    let sfd = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .context("signalfd")?;

    // 4. The sandbox's init, in new namespaces; it waits for "go".
    let (control, init_control) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("socketpair")?;
    // Room for a "go" message as large as the filters of a host with many addresses.
    let _ =
        nix::sys::socket::setsockopt(&control, nix::sys::socket::sockopt::SndBufForce, &GO_BUFFER)
            .or_else(|_| {
                nix::sys::socket::setsockopt(
                    &control,
                    nix::sys::socket::sockopt::SndBuf,
                    &GO_BUFFER,
                )
            });
    let (report_read, report_write) = pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    // -t: a pseudo-terminal for the command, its size taken from ours.
    let pty = if plan.tty { Some(open_pty()?) } else { None };
    let (pty_master, pty_slave) = match pty {
        Some((m, s)) => (Some(m), Some(s)),
        None => (None, None),
    };
    let mut flags = CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID;
    if plan.hostname.is_some() {
        flags |= CloneFlags::CLONE_NEWUTS;
    }
    if privilege == Privilege::UserNamespace {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    let cfg = ChildConfig {
        command: plan.command.clone(),
        env,
        workdir: plan.workdir.clone(),
        tty: pty_slave,
        identity: identity.clone(),
        change_identity: privilege == Privilege::Root,
        control: init_control,
        report_write,
        signals,
        table: match (&prep, &setup.net) {
            (Some(_), Some(net)) => Some(net.allow.clone().unwrap_or_else(|| Vec::new().into())),
            _ => None,
        },
    };
    let pid = match crate::sys::clone_into(flags) {
        Ok(None) => child::init(cfg),
        Ok(Some(pid)) => pid,
        Err(e) => {
            let hint = if privilege == Privilege::UserNamespace {
                ": this kernel does not allow unprivileged user namespaces; run with sudo"
            } else {
                ""
            };
            bail!("create the sandbox's namespaces ({e}){hint}");
        }
    };
    drop(cfg);
    let mut sandbox = Sandbox {
        init: Init {
            pid,
            reported: false,
        },
        network: None,
    };
    verbose!(plan, "sandbox init is pid {pid}");
    failpoint::hit("after-clone")?;

    if privilege == Privilege::UserNamespace {
        map_caller(pid, &identity)?;
    }

    // 5. The host side of the network, then "go": the init's operations, the sandbox's
    // filters among them.
    let mut relay_upstream = None;
    // Files nsrun writes for the user (--pcap, --refusals) belong to whoever ran it.
    let owner = sudo
        .as_ref()
        .map_or((creds.ruid, creds.rgid), |s| (s.uid, s.gid));
    let mut name_sets = Vec::new();
    let ops = match (prep, &setup.net) {
        (Some(prep), Some(net)) => {
            relay_upstream = net.relay_upstream();
            name_sets = net.name_sets();
            let (network, link) = setup_network(prep, net, pid, &plan, owner)?;
            sandbox.network = Some(network);
            decide::init_ops(&setup, Some((net, &link)))
        }
        _ => decide::init_ops(&setup, None),
    };
    verbose!(
        plan,
        "filters in the sandbox's table inet nsrun: {}",
        describe_policy(&setup)
    );
    // Said once everything is ready, so an error of nsrun's stays the only line.
    if privilege == Privilege::Root && sudo.is_none() && plan.user.is_none() && identity.uid == 0 {
        crate::say(
            "nsrun: the command runs as root (uid 0, no capabilities) because nsrun was started by root without sudo; it can still change the host's files; run it as an unprivileged user with --user, e.g. '--user nobody' ('--user root' keeps root and silences this)",
        );
    }
    match send(
        control.as_raw_fd(),
        &crate::proto::init::encode(&ops),
        MsgFlags::MSG_NOSIGNAL,
    ) {
        // The init is gone already (killed while it made the table): what ended it is
        // said below, as when it dies later.
        Ok(_) | Err(nix::errno::Errno::EPIPE) => {}
        Err(e) => return Err(e).context("start the sandbox"),
    }
    failpoint::hit("after-go")?;
    // The relay runs in a thread of its own: a slow or silent upstream resolver can
    // delay only DNS, never the forwarding of signals in the loop below. It ends with
    // nsrun.
    // The sockets the init made in the sandbox's namespace for them come first.
    let mut reporting = None;
    let report = setup.net.as_ref().is_some_and(|n| n.report_refusals);
    let (relay_fds, log) = receive_sockets(&control, relay_upstream.is_some(), report)?;
    let names: crate::refusals::Names = Default::default();
    let (report_names, names_refused) = crate::refusals::channel();
    if let (Some(upstream), Some([udp, tcp, nft])) = (relay_upstream, relay_fds) {
        let filter = (!name_sets.is_empty()).then(|| crate::relay::Filter {
            names: name_sets,
            nft: Socket::from_owned(nft),
            audit: setup.net.as_ref().is_some_and(|n| n.audit),
            report: report.then(|| report_names.clone()),
            answered: names.clone(),
        });
        // A member's resolver answers its network's names first.
        let directory = match sandbox.network.as_ref().and_then(|n| n.membership.as_ref()) {
            Some((m, _)) => Some(m.directory()?),
            None => None,
        };
        let relay = Relay::new(udp, tcp, upstream, filter, directory);
        std::thread::Builder::new()
            .name("dns-relay".into())
            .spawn(move || relay.run())
            .context("start the DNS relay")?;
    }
    if report {
        let file = match &plan.refusals {
            Some(path) => Some(crate::info::create_user_file(path, owner, "--refusals")?),
            None => None,
        };
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reporter = crate::refusals::Reporter {
            log: log.map(Socket::from_owned),
            names_refused,
            names,
            verbose: plan.verbose,
            file,
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("refusals".into())
            .spawn(move || reporter.run())
            .context("start reporting refusals")?;
        reporting = Some((stop, thread));
    }

    // 6. Supervise until the command's status arrives.
    let terminal = match pty_master {
        Some(master) => Some(Terminal::start(master)?),
        None => None,
    };
    // 7. Answer --list, --stop, --join and --disconnect while the sandbox runs.
    let running = crate::proto::control::Running {
        nsrun_pid: std::process::id(),
        init_pid: pid.as_raw() as u32,
        name: plan.name.clone(),
        address: sandbox.network.as_ref().map(|n| n.sandbox_addr),
        network: match &sandbox.network {
            Some(n) => match &n.membership {
                Some((m, _)) => m.name.clone(),
                None => "nat".into(),
            },
            None => "none".into(),
        },
        ports: plan
            .network
            .as_ref()
            .map(|n| n.publish.iter().map(describe_port).collect())
            .unwrap_or_default(),
        uid: identity.uid,
        started: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        command: plan
            .command
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect(),
    };
    let mut runtime = match crate::control::Control::bind(running, identity.clone(), creds.ruid) {
        Ok(c) => Some(c),
        Err(e) => {
            verbose!(plan, "no --list, --stop or --join for this sandbox: {e:#}");
            None
        }
    };
    let code = supervise(
        &mut sandbox,
        &sfd,
        &control,
        report_read,
        plan.stop_timeout,
        terminal.as_ref(),
        runtime.as_mut(),
    )?;
    if let Some(t) = terminal {
        t.finish();
    }
    // The last refusals, reported before nsrun returns.
    if let Some((stop, thread)) = reporting {
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = thread.join();
    }
    if plan.wait_teardown {
        teardown_and_wait(sandbox);
    }
    Ok(code)
}

/// A new pseudo-terminal sized like nsrun's own: (master, slave).
pub fn open_pty() -> Result<(OwnedFd, OwnedFd)> {
    let stdin = std::io::stdin();
    if !nix::unistd::isatty(stdin.as_raw_fd()).unwrap_or(false) {
        bail!("-t: standard input is not a terminal; run nsrun from a terminal, or drop -t");
    }
    let size = crate::sys::window_size(stdin.as_fd()).ok();
    let pty = nix::pty::openpty(size.as_ref(), None).context("-t: open a pseudo-terminal")?;
    for fd in [&pty.master, &pty.slave] {
        fcntl(
            fd.as_raw_fd(),
            FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .context("fcntl")?;
    }
    Ok((pty.master, pty.slave))
}

/// `-t`: nsrun's terminal, raw while the command runs, relayed to the command's
/// pseudo-terminal; restored on every way out of nsrun but SIGKILL.
pub struct Terminal {
    master: std::sync::Arc<OwnedFd>,
    saved: nix::sys::termios::Termios,
    output_done: std::sync::mpsc::Receiver<()>,
}

impl Terminal {
    pub fn start(master: OwnedFd) -> Result<Terminal> {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).context("-t: read the terminal's settings")?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).context("-t: set the terminal raw")?;
        let master = std::sync::Arc::new(master);
        let (done, output_done) = std::sync::mpsc::channel();
        let from = master.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut out = std::io::stdout().lock();
            // EIO once the command and everything that held its terminal are gone.
            while let Ok(n) = nix::unistd::read(from.as_raw_fd(), &mut buf) {
                if n == 0 || std::io::Write::write_all(&mut out, &buf[..n]).is_err() {
                    break;
                }
                let _ = std::io::Write::flush(&mut out);
            }
            let _ = done.send(());
        });
        let to = master.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = nix::unistd::read(std::io::stdin().as_raw_fd(), &mut buf) {
                if n == 0 || nix::unistd::write(to.as_ref(), &buf[..n]).is_err() {
                    break;
                }
            }
        });
        Ok(Terminal {
            master,
            saved,
            output_done,
        })
    }

    pub fn follow_window_size(&self) {
        if let Ok(size) = crate::sys::window_size(std::io::stdin().as_fd()) {
            let _ = crate::sys::set_window_size(self.master.as_fd(), &size);
        }
    }

    /// Waits (briefly) for the command's last output, then restores the terminal.
    pub fn finish(self) {
        let _ = self.output_done.recv_timeout(Duration::from_secs(2));
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.saved,
        );
    }
}

/// `--wait-teardown`: deletes the host end, reaps the init, and lets the holder go if
/// this was its last sandbox, waiting for each.
fn teardown_and_wait(mut sandbox: Sandbox) {
    if let Some(n) = sandbox.network.as_mut().filter(|n| n.membership.is_none()) {
        let _ = n
            .rtnl
            .request(route::del_link(n.host_index), "delete the host end");
        n.inert = true;
    }
    let _ = waitpid(sandbox.init.pid, None);
    sandbox.init.reported = true;
    let lease = sandbox
        .network
        .as_mut()
        .and_then(|n| n.keeper.take())
        .and_then(holder::Keeper::end);
    if let Some(lease) = lease {
        lease.end_and_wait();
    }
}

/// Receives what the init made in the sandbox's namespace for nsrun: the DNS relay's
/// listeners and an nf_tables socket (when `relay`), the refusals' socket (when
/// `refusals`), in the order the init's operations made them. What the init did not
/// send (it failed first, and its report says why) is None.
#[allow(clippy::type_complexity)]
fn receive_sockets(
    control: &OwnedFd,
    relay: bool,
    refusals: bool,
) -> Result<(Option<[OwnedFd; 3]>, Option<OwnedFd>)> {
    let (mut relay_fds, mut log) = (None, None);
    for _ in 0..(usize::from(relay) + usize::from(refusals)) {
        let (tag, n, mut fds) = crate::sys::recv_with_fds::<1>(control, MsgFlags::empty())
            .context("receive the sandbox's sockets")?;
        match (n, tag[0], fds.len()) {
            (1, crate::child::RELAY, 3) => {
                let nft = fds.pop().expect("three fds");
                let tcp = fds.pop().expect("three fds");
                let udp = fds.pop().expect("three fds");
                relay_fds = Some([udp, tcp, nft]);
            }
            (1, crate::child::REFUSALS, 1) => log = fds.pop(),
            _ => break,
        }
    }
    Ok((relay_fds, log))
}

/// The host's address changes (subscribed before the host is read, so no address
/// added in between is missed) and rtnetlink.
fn open_sockets() -> Result<(Socket, Socket)> {
    let addr_events = Socket::open_groups(SockProtocol::NetlinkRoute, route::RTMGRP_IPV4_IFADDR)
        .context("open rtnetlink for address changes")?;
    let rtnl = Socket::open(SockProtocol::NetlinkRoute).context("open rtnetlink")?;
    Ok((addr_events, rtnl))
}

/// Creates the veth with the first free subnet (see [`create_first_free`]).
fn create_veth(
    prep: &mut NetPrep,
    net: &decide::NetSetup,
    pid: Pid,
) -> Result<(SandboxNet, OwnedFd)> {
    let start = u64::from(std::process::id()).wrapping_mul(2654435761)
        ^ u64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0),
        );
    let candidates = net.candidates(start);
    create_first_free(prep, pid, net.mtu, candidates).map_err(|e| match (e, &net.addressing) {
        (Some(e), _) => e,
        (None, decide::Addressing::Fixed(fixed)) => anyhow::anyhow!(
            "--ip {ip}: another running sandbox has this address (link {}); choose another address{}",
            fixed.host_end,
            decide::example_address(fixed.sandbox_addr, &[prep.used.as_slice(), &[fixed.subnet]].concat()),
            ip = fixed.sandbox_addr,
        ),
        (None, decide::Addressing::Member(m)) => anyhow::anyhow!(
            "network {}: no link to make (a member joins through its network)",
            m.network
        ),
        (None, decide::Addressing::Pool { pool, .. }) => anyhow::anyhow!(
            "address pool {pool} is exhausted: every /30 in it is in use on this host; give a larger or other range, e.g. '--pool 10.201.0.0/16'"
        ),
    })
}

/// Creates the veth of the first candidate whose lock is free; `Err(None)` when every
/// one is taken. A link of that name whose lock is free was left by an nsrun that just
/// ended (its namespace is still being torn down) or was killed: it is removed, so a
/// service restarted right after a SIGKILL gets its address back.
fn create_first_free(
    prep: &mut NetPrep,
    pid: Pid,
    mtu: u32,
    candidates: Vec<SandboxNet>,
) -> std::result::Result<(SandboxNet, OwnedFd), Option<anyhow::Error>> {
    for candidate in candidates {
        let name = candidate.host_end.as_str();
        let Some(lock) = crate::locks::lock_link(name).map_err(Some)? else {
            continue; // a running sandbox has it
        };
        let deadline = Instant::now() + LEFTOVER_LINK_WAIT;
        loop {
            let what = format!("create veth {name}/eth0");
            match prep.rtnl.request(
                route::new_veth(name, "eth0", pid.as_raw() as u32, mtu),
                &what,
            ) {
                Ok(()) => return Ok((candidate, lock)),
                Err(e) if netlink::errno_of(&e) == Some(libc::EEXIST) => {}
                Err(e) => return Err(Some(e.into())),
            }
            if Instant::now() > deadline {
                return Err(Some(anyhow::anyhow!(
                    "a link named {name} that no running sandbox holds could not be removed; remove it: sudo ip link del {name}"
                )));
            }
            // Gone already (ENODEV): it just went. Otherwise remove it.
            if let Ok(reply) = prep.rtnl.get(route::get_link(name), "RTM_GETLINK") {
                if let Some(link) = route::parse_link(&reply).filter(|l| l.name == name) {
                    let _ = prep
                        .rtnl
                        .request(route::del_link(link.index), "remove a dead sandbox's link");
                }
            }
        }
    }
    Err(None)
}

/// `--network`: joins the network (or makes it), then puts the sandbox on it.
fn join_network(
    prep: &mut NetPrep,
    m: &decide::Membership,
    mtu: u32,
    pid: Pid,
    plan: &Plan,
) -> Result<(SandboxNet, crate::networks::Membership, i32)> {
    let mut membership = crate::networks::join(
        &m.network,
        m.subnet,
        m.make_subnet,
        m.subnet_conflict.as_deref(),
        &m.candidates,
        mtu,
        &mut prep.rtnl,
    )?;
    membership.nonblocking();
    let subnet = membership.offer.subnet;
    if membership.created {
        verbose!(
            plan,
            "network {}: made, subnet {subnet}, gateway {} (the host's link {}); its bridge {} is in a namespace of its own",
            m.network,
            membership.gateway(),
            membership.offer.host_end,
            crate::networks::BRIDGE
        );
    } else if plan.verbose {
        let members: Vec<String> = membership
            .members()?
            .iter()
            .filter(|p| p.nsrun_pid.is_some())
            .map(|p| p.describe())
            .collect();
        verbose!(
            plan,
            "network {}: joined, subnet {subnet}, gateway {}; members: {}",
            m.network,
            membership.gateway(),
            members.join(", ")
        );
    }
    let start = std::process::id().wrapping_mul(2654435761);
    let (net, port) = membership.add_member(pid, m.ip, &m.names, start)?;
    verbose!(
        plan,
        "on network {}: address {}/{}, mac {}, port {}; capture the network: sudo nsenter --net=/proc/{}/fd/{} tcpdump -ni {}",
        m.network,
        net.sandbox_addr,
        subnet.prefix,
        crate::networks::mac(&m.network, net.sandbox_addr)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
        crate::networks::port_name(net.sandbox_addr),
        std::process::id(),
        membership.netns.as_raw_fd(),
        crate::networks::BRIDGE
    );
    Ok((net, membership, port))
}

/// veth, addresses, host end up, NAT through the holder, forwarding, as `setup` says;
/// returns the sandbox's link, which its filters and the init's operations name.
fn setup_network(
    mut prep: NetPrep,
    setup: &decide::NetSetup,
    pid: Pid,
    plan: &Plan,
    owner: (u32, u32),
) -> Result<(Network, SandboxNet)> {
    let mtu = setup.mtu;
    let (net, link_lock, mut membership) = match setup.membership() {
        Some(m) => {
            let (net, membership, port) = join_network(&mut prep, m, mtu, pid, plan)?;
            (net, None, Some((membership, port)))
        }
        None => {
            let (net, lock) = create_veth(&mut prep, setup, pid)?;
            verbose!(
                plan,
                "veth {}/eth0, mtu {mtu}, subnet {} (host {}, sandbox {})",
                net.host_end,
                net.subnet,
                net.host_addr,
                net.sandbox_addr
            );
            (net, Some(lock), None)
        }
    };

    let reply = prep.rtnl.get(
        route::get_link(net.host_end.as_str()),
        &format!("RTM_GETLINK {}", net.host_end),
    )?;
    failpoint::hit("after-veth")?;
    let host_index = route::parse_link(&reply)
        .map(|l| l.index)
        .context("parse RTM_NEWLINK reply")?;
    // Before the link carries anything: every packet of the sandbox is in the file. A
    // member's is its port on the network's bridge.
    let capture = match (&plan.pcap, &membership) {
        (Some((path, limit)), None) => Some(crate::pcap::Capture::start(
            path, *limit, host_index, owner,
        )?),
        (Some((path, limit)), Some((m, port))) => {
            Some(m.within(|| crate::pcap::Capture::start(path, *limit, *port, owner))??)
        }
        (None, _) => None,
    };
    let watcher = match membership.as_mut() {
        Some((m, _)) if plan.verbose => {
            let mut w = m.watcher()?;
            w.know(&m.members()?);
            Some(w)
        }
        _ => None,
    };
    let mut network = Network {
        capture,
        rtnl: prep.rtnl,
        addr_events: prep.addr_events,
        host_index,
        host_addr: net.host_addr,
        sandbox_addr: net.sandbox_addr,
        link: net.subnet,
        pool: setup.pool(&net),
        known_addrs: [setup.host_addrs.as_slice(), &[net.host_addr]].concat(),
        keeper: None,
        _link_lock: link_lock,
        membership,
        watcher,
        info_file: None,
        named: None,
        inert: false,
    };
    // A member's gateway is its network's, set up with the network.
    if network.membership.is_none() {
        host::disable_ipv6(net.host_end.as_str());
        network.rtnl.request(
            route::add_addr(host_index, net.host_addr, net.subnet.prefix),
            &format!(
                "add {}/{} to {}",
                net.host_addr, net.subnet.prefix, net.host_end
            ),
        )?;
        network.rtnl.request(
            route::set_up(host_index),
            &format!("bring {} up", net.host_end),
        )?;
    }
    failpoint::hit("after-address")?;
    // Named before the holder hears the name: it removes only what nsrun made.
    if let Some(name) = &plan.name {
        network.named = Some(NamedNetns::create(name, pid)?);
        verbose!(
            plan,
            "network namespace at {NETNS_DIR}/{name} while the sandbox runs"
        );
    }
    // Published ports: the host's port is reserved by a socket of nsrun's (so a taken
    // port is an error, and localhost is served), then DNAT goes into the host's table.
    let reserved = reserve_ports(&setup.publish)?;
    // The holder switches forwarding on where the sandbox's traffic and replies pass.
    // --info-file: written before the holder hears of it, which removes it if nsrun is
    // killed; nsrun removes it when the sandbox ends.
    let info_file = match &plan.info_file {
        Some(file) => {
            let netns = match &plan.name {
                Some(name) => format!("{NETNS_DIR}/{name}"),
                None => format!("/proc/{pid}/ns/net"),
            };
            let text = info::render(&info::Info {
                nsrun_pid: std::process::id(),
                init_pid: pid.as_raw(),
                name: plan.name.as_deref(),
                address: net.sandbox_addr,
                prefix: net.subnet.prefix,
                gateway: net.host_addr,
                host_link: net.host_end.as_str(),
                netns: &netns,
                ports: &setup.publish,
                started: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            });
            Some(info::InfoFile::write(file, &text)?)
        }
        None => None,
    };
    let reg = holder::Registration {
        info_file: info_file
            .as_ref()
            .map(|f| (f.path.clone(), f.inode, f.device)),
        allow_host: setup.allow_host,
        nameservers: setup.host_nameservers(),
        ifindex: host_index as u32,
        sandbox: net.sandbox_addr,
        links: setup.forwarding_links.clone(),
        name: plan.name.clone(),
        publish: setup.publish.clone(),
    };
    let lease = holder::register(&reg).context("set up NAT for the sandbox")?;
    if !lease.switched.is_empty() {
        let set: Vec<String> = lease
            .switched
            .split(' ')
            .map(|l| format!("set net.ipv4.conf.{l}.forwarding=1 (was 0)"))
            .collect();
        verbose!(
            plan,
            "{} while sandboxes run; only traffic to sandboxes is forwarded from there, and it goes back to 0 when the last sandbox ends",
            set.join(", ")
        );
    }
    if !lease.opened.is_empty() {
        verbose!(
            plan,
            "the host's firewall drops forwarded packets: nsrun's rules (comment \"nsrun: ...\") let its interfaces through {}, removed when the last sandbox ends",
            lease.opened
        );
    }
    if !setup.publish.is_empty() {
        verbose!(
            plan,
            "published {} port(s) of {} on the host (DNAT in table inet nsrun; localhost through nsrun)",
            setup.publish.len(),
            net.sandbox_addr
        );
    }
    for listener in reserved.into_iter().flatten() {
        let target = std::net::SocketAddr::from((net.sandbox_addr, listener.1));
        std::thread::Builder::new()
            .name("localhost-proxy".into())
            .spawn(move || proxy_localhost(listener.0, target))
            .context("start the localhost proxy")?;
    }
    network.keeper = Some(holder::Keeper::start(lease, reg)?);
    network.info_file = info_file;
    failpoint::hit("after-nat")?;
    verbose!(
        plan,
        "NAT: masquerade {} in the host's table inet nsrun (kept by nsrun-holder while sandboxes run)",
        net.sandbox_addr
    );

    host::enable_forwarding(net.host_end.as_str())?;
    match &setup.uplink {
        Some(uplink) => verbose!(
            plan,
            "the internet is reached through {uplink} (the kernel's route for it)"
        ),
        None => verbose!(
            plan,
            "the host has no route to the internet: the sandbox reaches only the host's own networks"
        ),
    }
    failpoint::hit("after-forwarding")?;
    Ok((network, net))
}

fn describe_policy(setup: &decide::Setup) -> String {
    let Some(np) = &setup.net else {
        return "no network: loopback only".into();
    };
    let host = if np.allow_host {
        "host open"
    } else {
        "host closed"
    };
    let lan = if np.block_lan { ", LAN closed" } else { "" };
    let allow = match &np.allow {
        Some(list) => format!(
            ", only {} allowed destination(s) and the nameservers open",
            list.len()
        ),
        None => String::new(),
    };
    let deny = match np.deny.len() {
        0 => String::new(),
        n => format!(", {n} denied destination(s) closed"),
    };
    format!(
        "NAT through the uplink, {host}, link-local and other sandboxes closed{lan}{allow}{deny}"
    )
}

/// A published port as `-p` takes it: "[HOST_IP:]HOST_PORT:SANDBOX_PORT/PROTO".
fn describe_port(p: &plan::Publish) -> String {
    let ip = p.host_ip.map(|ip| format!("{ip}:")).unwrap_or_default();
    format!("{ip}{}:{}/{}", p.host_port, p.sandbox_port, p.proto_name())
}

fn describe_privilege(p: Privilege) -> &'static str {
    match p {
        Privilege::Root => "root",
        Privilege::FileCaps => "file-capabilities",
        Privilege::UserNamespace => "user-namespace (no network)",
    }
}

fn describe_dns(d: &Decision) -> String {
    match d {
        Decision::Direct(servers) => {
            let list: Vec<String> = servers.iter().map(|s| s.to_string()).collect();
            format!("the sandbox asks {} directly", list.join(", "))
        }
        Decision::Relay { upstream, listen } => {
            format!("nsrun relays queries from {listen}:53 in the sandbox to {upstream}")
        }
    }
}

/// Maps the caller to itself in the sandbox's user namespace.
fn map_caller(pid: Pid, id: &users::Identity) -> Result<()> {
    let write = |file: &str, text: String| {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, text).with_context(|| format!("write {path}"))
    };
    write("setgroups", "deny".into())?;
    write("uid_map", format!("{0} {0} 1\n", id.uid))?;
    write("gid_map", format!("{0} {0} 1\n", id.gid))?;
    Ok(())
}

fn supervise(
    sandbox: &mut Sandbox,
    sfd: &SignalFd,
    control: &OwnedFd,
    report_read: OwnedFd,
    mut stop_timeout: Duration,
    terminal: Option<&Terminal>,
    mut runtime: Option<&mut crate::control::Control>,
) -> Result<i32> {
    fcntl(
        report_read.as_raw_fd(),
        FcntlArg::F_SETFL(OFlag::O_NONBLOCK),
    )
    .context("fcntl")?;
    let mut report_pipe = Some(std::fs::File::from(report_read));
    let mut reports = Vec::new();
    let pid = sandbox.init.pid;
    let started = Instant::now();
    let mut stopping: Option<(Signal, Instant)> = None;
    let mut stop_killed = false;
    loop {
        if started.elapsed() > Duration::from_millis(300) {
            failpoint::hit("supervise")?;
        }
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if let Some(p) = &report_pipe {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
        }
        let events_at = fds.len();
        if let Some(n) = &sandbox.network {
            fds.push(PollFd::new(n.addr_events.as_fd(), PollFlags::POLLIN));
        }
        // A member answers sandboxes that join its network, and with -v says who comes
        // and goes.
        let member_at = fds.len();
        let mut member_fds = 0;
        if let Some(n) = &sandbox.network {
            if let Some((m, _)) = &n.membership {
                fds.push(PollFd::new(m.anchor(), PollFlags::POLLIN));
                member_fds += 1;
            }
            if let Some(w) = &n.watcher {
                fds.push(PollFd::new(w.fd(), PollFlags::POLLIN));
                member_fds += 1;
            }
        }
        let runtime_at = fds.len();
        if let Some(r) = &runtime {
            fds.extend(
                r.fds()
                    .into_iter()
                    .map(|f| PollFd::new(f, PollFlags::POLLIN)),
            );
        }

        match poll(
            &mut fds,
            // The stop deadline; in test builds, the supervise failpoint.
            PollTimeout::from(if stopping.is_some() || cfg!(debug_assertions) {
                100u16
            } else {
                u16::MAX
            }),
        ) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e).context("poll"),
        }
        let events_ready =
            sandbox.network.is_some() && fds[events_at].revents().is_some_and(|r| !r.is_empty());
        let member_ready = fds[member_at..member_at + member_fds]
            .iter()
            .any(|f| f.revents().is_some_and(|r| !r.is_empty()));
        let runtime_ready: Vec<bool> = fds[runtime_at..]
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if let Some(r) = runtime.as_deref_mut() {
            for action in r.serve(&runtime_ready, control) {
                match action {
                    // `nsrun --stop`: as a SIGTERM from the terminal, with its timeout.
                    crate::control::Action::Stop(timeout) => {
                        let _ = kill(pid, Signal::SIGTERM);
                        if stopping.is_none() {
                            stopping = Some((Signal::SIGTERM, Instant::now()));
                            stop_timeout = timeout;
                        }
                    }
                }
            }
        }
        if events_ready {
            if let Some(n) = &mut sandbox.network {
                close_new_host_addrs(n, control);
            }
        }
        if member_ready {
            if let Some(n) = &mut sandbox.network {
                if let Some((m, _)) = &n.membership {
                    m.serve();
                }
                if let Some(w) = &mut n.watcher {
                    for line in w.changes() {
                        crate::say(&format!("nsrun: {line}"));
                    }
                }
            }
        }
        let mut init_ended = false;
        if let Some(p) = &mut report_pipe {
            if drain(p, &mut reports) {
                report_pipe = None;
                init_ended = true;
            }
        }
        while let Ok(Some(info)) = sfd.read_signal() {
            let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            if sig != Signal::SIGCHLD {
                let _ = kill(pid, sig);
            }
            if let (Signal::SIGWINCH, Some(t)) = (sig, terminal) {
                t.follow_window_size();
            }
            // Ctrl-Z: the command is stopped (above); now nsrun stops too, so the shell
            // sees its job stopped, and `fg` (SIGCONT) continues both.
            if sig == Signal::SIGTSTP {
                let _ = nix::sys::signal::raise(Signal::SIGSTOP);
            }
            if supervise::stops(sig) && stopping.is_none() {
                stopping = Some((sig, Instant::now()));
            }
        }
        // A command that ignores the stop signal it was given: after --stop-timeout the
        // whole sandbox is killed, as `timeout -k` and `docker stop` do.
        if let Some((sig, since)) = stopping {
            if since.elapsed() >= stop_timeout && !stop_killed {
                crate::say(&format!(
                    "nsrun: the command did not stop within {}s of {}; killing the sandbox (see --stop-timeout)",
                    stop_timeout.as_secs_f32(),
                    sig.as_str()
                ));
                let _ = kill(pid, Signal::SIGKILL);
                stop_killed = true;
            }
        }
        let decoded = Report::decode_all(&reports);
        let done = decoded
            .iter()
            .any(|r| !matches!(r, Report::ExecFailed { .. }));
        if !done && !init_ended {
            continue;
        }
        // The init reports once every process of the sandbox but itself is gone. Without
        // a report (killed from outside), its wait status says what happened.
        let init_status = if done {
            None
        } else {
            match waitpid(pid, None) {
                Ok(WaitStatus::Exited(_, code)) => Some(code << 8),
                Ok(WaitStatus::Signaled(_, sig, _)) => Some(sig as i32),
                _ => None,
            }
        };
        sandbox.init.reported = true;
        failpoint::hit("after-status")?;
        let (message, code) = supervise::outcome(&decoded, init_status);
        if let Some(m) = message {
            crate::say(&format!("nsrun: {m}"));
        }
        if let Some(n) = &mut sandbox.network {
            n.make_inert();
            if let Some(c) = n.capture.take() {
                c.finish();
            }
        }
        if let Some(r) = runtime {
            r.finish(code);
        }
        return Ok(code);
    }
}

/// Binds each published host port, so that a port someone else has is an error before
/// anything runs. TCP listeners are kept to serve localhost (connections to the host's
/// other addresses are DNATed before they reach them).
fn reserve_ports(
    publish: &[crate::plan::Publish],
) -> Result<Vec<Option<(std::net::TcpListener, u16)>>> {
    publish
        .iter()
        .map(|p| {
            let addr = std::net::SocketAddr::from((
                p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
                p.host_port,
            ));
            let taken = |e: std::io::Error| {
                let proto = p.proto_name();
                anyhow::anyhow!(
                    "--publish: port {}/{proto} on {} is taken on the host ({e}: a service or another sandbox has it); choose another host port, e.g. '-p {}:{}'",
                    p.host_port,
                    addr.ip(),
                    p.host_port.wrapping_add(1).max(1),
                    p.sandbox_port
                )
            };
            if p.proto == 6 {
                let listener = std::net::TcpListener::bind(addr).map_err(taken)?;
                Ok(Some((listener, p.sandbox_port)))
            } else {
                // Held for the sandbox's life by leaking the fd into the process: the
                // kernel closes it when nsrun exits.
                let socket = std::net::UdpSocket::bind(addr).map_err(taken)?;
                std::mem::forget(socket);
                Ok(None)
            }
        })
        .collect()
}

/// Relays connections to a published port that come in over localhost (which DNAT
/// cannot send into the sandbox without route_localnet, which a sandbox could abuse).
/// Connections the localhost relay of one published port carries at once; more are
/// closed at once, so that idle clients cannot exhaust nsrun's threads and descriptors
/// (as the DNS relay's limit does).
const MAX_LOCALHOST_CONNECTIONS: usize = 64;

fn proxy_localhost(listener: std::net::TcpListener, target: std::net::SocketAddr) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let open = Arc::new(AtomicUsize::new(0));
    for client in listener.incoming().flatten() {
        if open.load(Ordering::SeqCst) >= MAX_LOCALHOST_CONNECTIONS {
            drop(client);
            continue;
        }
        /// One open connection, counted until its thread ends (or never starts).
        struct Counted(Arc<AtomicUsize>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        open.fetch_add(1, Ordering::SeqCst);
        let counted = Counted(Arc::clone(&open));
        let _ = std::thread::Builder::new()
            .name("localhost-conn".into())
            .spawn(move || {
                let _counted = counted;
                let Ok(server) =
                    std::net::TcpStream::connect_timeout(&target, Duration::from_secs(5))
                else {
                    return;
                };
                let (Ok(mut c2), Ok(mut s2)) = (client.try_clone(), server.try_clone()) else {
                    return;
                };
                let up = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut s2);
                    let _ = s2.shutdown(std::net::Shutdown::Write);
                });
                let (mut c, mut s) = (client, server);
                let _ = std::io::copy(&mut s, &mut c);
                let _ = c.shutdown(std::net::Shutdown::Write);
                let _ = up.join();
            });
    }
}

/// Tells the init about host addresses that appeared since the sandbox started.
fn close_new_host_addrs(network: &mut Network, control: &OwnedFd) {
    let mut new = Vec::new();
    for (ty, payload) in network.addr_events.notifications() {
        if ty != route::RTM_NEWADDR {
            continue;
        }
        if let Some(a) = route::parse_addr(&payload) {
            // The sandbox's pool is closed as a whole already.
            let in_pool = network
                .pool
                .overlaps(&crate::addr::Ipv4Net::new(a.net.addr, 32));
            if !in_pool && !network.known_addrs.contains(&a.net.addr) {
                network.known_addrs.push(a.net.addr);
                new.push(a.net.addr);
            }
        }
    }
    if !new.is_empty() {
        let mut msg = vec![child::MSG_HOST_ADDRS];
        for a in new.iter().take(1000) {
            msg.extend_from_slice(&a.octets());
        }
        let _ = send(control.as_raw_fd(), &msg, MsgFlags::MSG_NOSIGNAL);
    }
}

/// Reads what is available; true at end of file.
fn drain(pipe: &mut std::fs::File, into: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => into.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}
