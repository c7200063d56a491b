//! Inside the sandbox: nsrun's init (PID 1) sets up the namespaces, starts the command,
//! forwards signals, reaps zombies, and reports the command's status. Every path ends in
//! exec or `_exit`.

use std::ffi::CString;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::mount::{MsFlags, mount};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{MsgFlags, SockProtocol};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Gid, Pid, Uid, setresgid, setresuid, setsid};

use crate::addr::LOOPBACK_INDEX;
use crate::netlink::{Socket, route};
use crate::proto::init::{self as go, InitOp};
use crate::supervise::{FORWARDED, Report, to_group};
use crate::sys;
use crate::users::Identity;

/// Everything the init needs, prepared by the parent before the clone.
pub struct ChildConfig {
    pub command: Vec<CString>,
    /// The command's environment, NAME=VALUE.
    pub env: Vec<CString>,
    /// Where the command starts, if not nsrun's working directory.
    pub workdir: Option<CString>,
    /// With -t: the pseudo-terminal the command gets as its controlling terminal.
    pub tty: Option<OwnedFd>,
    pub identity: Identity,
    /// Change uid, gid and groups (root); otherwise the command keeps nsrun's own ids.
    pub change_identity: bool,
    /// The init's end of the control socket: "go" and later messages from nsrun, the
    /// relay's sockets back to it.
    pub control: OwnedFd,
    pub report_write: OwnedFd,
    /// Signals nsrun blocked before the clone; the init reads them from a signalfd.
    pub signals: SigSet,
    /// A networked sandbox's table, as far as nothing on the host's side decides it
    /// (firewall::table_batches, with the sets of these allowed destinations): made
    /// before "go", whose Firewall adds the rest.
    pub table: Option<crate::egress::AllowList>,
}

/// nsrun to init: host addresses that appeared while the sandbox runs.
pub const MSG_HOST_ADDRS: u8 = b'A';
/// nsrun to init: pull the cable (`--disconnect`); one more byte, 1 to drop silently.
/// Answered [`ACK`] or [`NACK`].
pub const MSG_DISCONNECT: u8 = b'D';
/// nsrun to init: put the cable back (`--reconnect`). Answered [`ACK`] or [`NACK`].
pub const MSG_RECONNECT: u8 = b'C';
/// nsrun to init: send the sandbox's namespaces (`--join`): one message [`NAMESPACES`]
/// with the descriptors of its network, mount, PID and UTS namespaces, in that order.
pub const MSG_NAMESPACES: u8 = b'N';
pub const ACK: u8 = b'k';
/// init to nsrun, during setup: the DNS relay's sockets; the refusals' socket.
pub const RELAY: u8 = b'L';
pub const REFUSALS: u8 = b'R';
pub const NACK: u8 = b'e';
pub const NAMESPACES: u8 = b'n';
/// The namespaces `--join` enters, in the order of [`MSG_NAMESPACES`]'s answer.
pub const JOINED: [&str; 4] = ["net", "mnt", "pid", "uts"];
/// The files that follow them in that answer, when the sandbox has them.
pub const JOINED_FILES: [&str; 2] = ["/etc/resolv.conf", "/etc/hosts"];

/// `--join` where the joiner may not enter the sandbox's mount namespace (setns needs
/// CAP_SYS_CHROOT, which a file-capability install does not have): a mount namespace of
/// its own, made as the init made the sandbox's (a fresh /proc of the sandbox's PID
/// namespace and /sys of its network, its resolv.conf and hosts, /proc/sys read-only,
/// the kernel's files masked, every mount nosuid). Runs in the joined command's
/// process, inside the sandbox's PID namespace, before it drops its privileges.
pub fn mounts_like_the_sandbox(
    resolv_conf: Option<&String>,
    hosts: Option<&String>,
) -> Result<(), StepError> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .step(|| "a mount namespace of its own (unshare)".into())?;
    private_mounts()?;
    // The mounts stay when the tmpfs's descriptor closes.
    let _files = private_files(resolv_conf, hosts)?;
    lock_proc_and_sys()?;
    no_file_privileges()
}

/// A failed step: its name and errno.
pub struct StepError(pub String, pub i32);

trait Step<T> {
    fn step(self, what: impl FnOnce() -> String) -> Result<T, StepError>;
}

impl<T> Step<T> for nix::Result<T> {
    fn step(self, what: impl FnOnce() -> String) -> Result<T, StepError> {
        self.map_err(|e| StepError(what(), e as i32))
    }
}

impl<T> Step<T> for std::io::Result<T> {
    fn step(self, what: impl FnOnce() -> String) -> Result<T, StepError> {
        self.map_err(|e| {
            let errno = crate::netlink::errno_of(&e).unwrap_or(libc::EIO);
            // The kernel's own words (extack) are part of the step's name.
            let text = e.to_string();
            let detail = text
                .rsplit_once(" [")
                .map(|(_, m)| format!(" [{m}"))
                .unwrap_or_default();
            StepError(format!("{}{detail}", what()), errno)
        })
    }
}

fn report(fd: &OwnedFd, r: &Report) {
    let _ = nix::unistd::write(fd, &r.encode());
}

/// Reports a failed step and exits 125.
fn fail(report_write: &OwnedFd, step: &str, errno: i32) -> ! {
    report(
        report_write,
        &Report::SetupFailed {
            step: step.into(),
            errno,
        },
    );
    sys_exit(125)
}

/// The sandbox's PID 1. Never returns.
pub fn init(cfg: ChildConfig) -> ! {
    // If nsrun dies from here on, so does the sandbox: the kernel kills every process in
    // a PID namespace when its init exits.
    if let Err(e) = sys::set_pdeathsig(libc::SIGKILL) {
        fail(
            &cfg.report_write,
            "set the init's parent-death signal",
            e.raw_os_error().unwrap_or(0),
        );
    }
    // Keep only stdio and our two channels: nothing of nsrun's (netlink sockets, the
    // other ends) stays open in the sandbox.
    let keep = [
        0,
        1,
        2,
        cfg.control.as_raw_fd(),
        cfg.report_write.as_raw_fd(),
        cfg.tty.as_ref().map_or(-1, |t| t.as_raw_fd()),
    ];
    if let Err(e) = sys::close_all_except(&keep) {
        fail(
            &cfg.report_write,
            "close nsrun's files in the init",
            e.raw_os_error().unwrap_or(0),
        );
    }
    // Our own process group, so a terminal's Ctrl-C reaches nsrun once, and nsrun alone
    // forwards it.
    let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
    // What it is, in ps and pgrep, rather than a copy of nsrun's command line.
    sys::set_name(c"nsrun-init");
    sys::set_cmdline(b"nsrun-init");

    // The sandbox's table, while nsrun makes its link (an error is the Firewall step's,
    // reported when "go" comes).
    let table = cfg.table.as_deref().map(make_table);
    // Wait for the host side. EOF means nsrun failed or died before PDEATHSIG was set:
    // nothing to report to.
    let buf = read_go(&cfg);
    let Some(ops) = go::decode(&buf) else {
        fail(&cfg.report_write, "decode the go message", libc::EPROTO)
    };
    drop(buf);
    // Nothing runs in an order that breaks a promise, whoever built the list.
    if let Some(problem) = go::order_problem(&ops) {
        fail(
            &cfg.report_write,
            &format!("check the go message's operations: {problem}"),
            libc::EPROTO,
        )
    }

    match setup(&cfg, &ops, table) {
        Ok(started) => supervise(&cfg, started),
        Err(StepError(step, errno)) => fail(&cfg.report_write, &step, errno),
    }
}

/// One message from nsrun before the command runs, whole.
fn read_go(cfg: &ChildConfig) -> Vec<u8> {
    // Its size first (a host with thousands of addresses makes a large filter batch).
    let size = loop {
        let mut probe = [0u8; 1];
        match nix::sys::socket::recv(
            cfg.control.as_raw_fd(),
            &mut probe,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC,
        ) {
            Err(Errno::EINTR) => continue,
            Err(e) => fail(&cfg.report_write, "read the go message", e as i32),
            Ok(0) => sys_exit(125),
            Ok(n) => break n,
        }
    };
    let mut buf = vec![0u8; size.max(1)];
    let n = loop {
        match nix::sys::socket::recv(cfg.control.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Err(Errno::EINTR) => continue,
            Err(e) => fail(&cfg.report_write, "read the go message", e as i32),
            Ok(0) => sys_exit(125),
            Ok(n) => break n,
        }
    };
    buf.truncate(n);
    buf
}

/// What the init keeps while the command runs.
struct Started {
    files: Option<PrivateFiles>,
    /// The socket of the sandbox's nf_tables table, for host addresses added later.
    firewall: Option<Socket>,
    command: Pid,
}

/// The private files mounted over /etc, kept to mount them again if the host replaces
/// the originals by rename (which detaches a mount on the old file).
struct PrivateFiles {
    tmpfs: OwnedFd,
    names: Vec<&'static str>,
    watch: Option<Inotify>,
}

impl PrivateFiles {
    fn mount(&self, name: &str) -> Result<(), StepError> {
        let file = CString::new(name).unwrap_or_default();
        let target = CString::new(format!("/etc/{name}")).unwrap_or_default();
        sys::mount_file_over(self.tmpfs.as_fd(), &file, &target)
            .step(|| format!("mount private /etc/{name}"))
    }

    /// Mounts again whatever the host replaced.
    fn refresh(&self) {
        let Some(watch) = &self.watch else { return };
        let Ok(events) = watch.read_events() else {
            return;
        };
        for event in events {
            let Some(name) = event.name.as_ref().and_then(|n| n.to_str()) else {
                continue;
            };
            if self.names.contains(&name) {
                let _ = self.mount(name);
            }
        }
    }
}

/// What the operations so far have made, for the ones that follow.
#[derive(Default)]
struct Progress {
    rtnl: Option<Socket>,
    eth0: Option<i32>,
    firewall: Option<Socket>,
    /// The table made before "go", and the socket that made it.
    table: Option<Result<Socket, StepError>>,
    files: Option<PrivateFiles>,
    command: Option<Pid>,
}

impl Progress {
    fn rtnl(&mut self) -> Result<&mut Socket, StepError> {
        if self.rtnl.is_none() {
            self.rtnl = Some(
                Socket::open(SockProtocol::NetlinkRoute)
                    .step(|| "open rtnetlink in the sandbox".into())?,
            );
        }
        Ok(self.rtnl.as_mut().expect("opened above"))
    }

    fn eth0(&mut self) -> Result<i32, StepError> {
        if let Some(index) = self.eth0 {
            return Ok(index);
        }
        let reply = self
            .rtnl()?
            .get(route::get_link("eth0"), "RTM_GETLINK eth0")
            .step(|| "find eth0".into())?;
        let index = route::parse_link(&reply)
            .map(|l| l.index)
            .ok_or_else(|| StepError("find eth0".into(), libc::ENODEV))?;
        self.eth0 = Some(index);
        Ok(index)
    }
}

/// The first part of the sandbox's table (firewall::table_batches), on a socket that
/// goes on to add the rest.
fn make_table(allow: &[crate::egress::Dest]) -> Result<Socket, StepError> {
    if let Err(e) = crate::failpoint::hit("init-table") {
        return Err(StepError(format!("{e}"), libc::EINTR));
    }
    let mut nft = Socket::open(SockProtocol::NetlinkNetFilter)
        .step(|| "open nf_tables in the sandbox".into())?;
    for batch in crate::firewall::table_batches(Some(allow)) {
        transact_batch(&mut nft, batch.finish().0)
            .step(|| "create the sandbox's nf_tables table inet nsrun".into())?;
    }
    Ok(nft)
}

/// Sends one batch, every message of it acknowledged.
fn transact_batch(nft: &mut Socket, msg: crate::netlink::Msg) -> std::io::Result<Vec<Vec<u8>>> {
    let count = msg.count();
    let acked: Vec<usize> = (1..count.saturating_sub(1)).collect();
    nft.transact(msg, &acked, "the sandbox's nf_tables table")
}

/// Carries out the operations nsrun sent, in their order (checked by
/// go::order_problem before this runs).
fn setup(
    cfg: &ChildConfig,
    ops: &[InitOp],
    table: Option<Result<Socket, StepError>>,
) -> Result<Started, StepError> {
    let mut done = Progress {
        table,
        ..Progress::default()
    };
    for op in ops {
        run_op(cfg, op, &mut done)?;
    }
    let command = done
        .command
        .ok_or_else(|| StepError("the go message has no exec".into(), libc::EPROTO))?;
    Ok(Started {
        files: done.files,
        firewall: done.firewall,
        command,
    })
}

fn run_op(cfg: &ChildConfig, op: &InitOp, done: &mut Progress) -> Result<(), StepError> {
    match op {
        InitOp::PrivateMounts => private_mounts(),
        InitOp::LoopbackUp => done
            .rtnl()?
            .request(route::set_up(LOOPBACK_INDEX as i32), "lo up")
            .step(|| "bring lo up".into()),
        InitOp::Firewall(batch) => {
            if let Err(e) = crate::failpoint::hit("init-network") {
                return Err(StepError(format!("{e}"), libc::EINTR));
            }
            let mut nft = done.table.take().ok_or_else(|| {
                StepError(
                    "the sandbox's table was not made before go".into(),
                    libc::EPROTO,
                )
            })??;
            transact_batch(&mut nft, crate::netlink::Msg { buf: batch.clone() })
                .step(|| "add the rules of the sandbox's nf_tables table inet nsrun".into())?;
            done.firewall = Some(nft);
            Ok(())
        }
        InitOp::NetworkSysctls => {
            // IPv6 is refused by the table already; without addresses it also stays quiet.
            for conf in ["all", "default", "eth0"] {
                let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6"), "1");
            }
            // Any port, even below 1024, for any user, in this namespace only.
            sandbox_sysctl("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0")
        }
        InitOp::Address { addr, prefix } => {
            let eth0 = done.eth0()?;
            done.rtnl()?
                .request(route::add_addr(eth0, *addr, *prefix), "")
                .step(|| format!("add {addr}/{prefix} to eth0"))
        }
        InitOp::LinkUp => {
            let eth0 = done.eth0()?;
            done.rtnl()?
                .request(route::set_up(eth0), "")
                .step(|| "bring eth0 up".into())
        }
        InitOp::DefaultRoute(gateway) => {
            let eth0 = done.eth0()?;
            done.rtnl()?
                .request(route::add_default_route(*gateway, eth0), "")
                .step(|| format!("add default route via {gateway}"))
        }
        InitOp::DnsRelay(listen) => {
            let sockets = crate::relay::listeners(*listen)
                .map_err(|e| StepError(format!("{e:#}"), libc::EADDRNOTAVAIL))?;
            // And a socket of the sandbox's nf_tables, for the addresses nsrun's resolver
            // allows (--allow NAME): it stays bound to this namespace.
            let nft = Socket::open(SockProtocol::NetlinkNetFilter)
                .step(|| "open nf_tables for the resolver".into())?;
            let fds = [
                sockets.0.as_raw_fd(),
                sockets.1.as_raw_fd(),
                nft.as_fd().as_raw_fd(),
            ];
            crate::sys::send_with_fds(&cfg.control, &[RELAY], &fds)
                .step(|| "pass the DNS relay's sockets to nsrun".into())
        }
        InitOp::Hostname(name) => {
            nix::unistd::sethostname(name).step(|| "set the host name".into())
        }
        InitOp::PrivateFiles { resolv_conf, hosts } => {
            // The netlink socket is not needed past the network's operations.
            done.rtnl = None;
            done.files = private_files(resolv_conf.as_ref(), hosts.as_ref())?;
            Ok(())
        }
        InitOp::Refusals => {
            let log =
                crate::refusals::listen().step(|| "listen for refusals (nfnetlink_log)".into())?;
            crate::sys::send_with_fds(&cfg.control, &[REFUSALS], &[log.as_fd().as_raw_fd()])
                .step(|| "pass the refusals' socket to nsrun".into())
        }
        InitOp::AllowPing => allow_ping(),
        InitOp::LockProcSys => lock_proc_and_sys(),
        InitOp::NoFilePrivileges => no_file_privileges(),
        InitOp::Exec => {
            done.rtnl = None;
            let command = match sys::fork().step(|| "fork the command".into())? {
                None => exec_command(cfg),
                Some(pid) => pid,
            };
            // The command holds the terminal now; the init's copy would keep nsrun's side
            // from seeing its end.
            if let Some(tty) = &cfg.tty {
                let _ = nix::unistd::close(tty.as_raw_fd());
            }
            done.command = Some(command);
            Ok(())
        }
    }
}

/// Mount propagation private before the first mount, so nothing reaches the host; a
/// fresh /proc (this PID namespace's) and /sys (this network namespace's).
fn private_mounts() -> Result<(), StepError> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .step(|| "make / private (mount --make-rprivate /)".into())?;
    let hidden = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("proc"), "/proc", Some("proc"), hidden, None::<&str>)
        .step(|| "mount a fresh /proc".into())?;
    mount(
        Some("sysfs"),
        "/sys",
        Some("sysfs"),
        hidden | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .step(|| "mount a fresh /sys".into())
}

/// Writes a sysctl of the sandbox's own network namespace.
fn sandbox_sysctl(path: &str, value: &str) -> Result<(), StepError> {
    std::fs::write(path, value).step(|| format!("write {value} to {path}"))
}

/// Which groups may open ICMP echo sockets (`socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)`,
/// what `ping` uses without CAP_NET_RAW): all of them, as in Docker and podman.
const PING_GROUPS: &str = "0 2147483647";
const PING_GROUP_RANGE: &str = "/proc/sys/net/ipv4/ping_group_range";

/// Lets any user of the sandbox ping, without a capability: `net.ipv4.ping_group_range`
/// is a sysctl of the sandbox's own network namespace (with or without --no-net), so the
/// host's stays as it is. Echo sockets send and receive only ICMP echo, through the
/// sandbox's filters like any other packet.
fn allow_ping() -> Result<(), StepError> {
    match std::fs::write(PING_GROUP_RANGE, PING_GROUPS) {
        // In a user namespace (no privilege, --no-net) only the caller's group is mapped,
        // and the kernel refuses a range naming unmapped groups: that group alone, the
        // command's.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let gid = nix::unistd::getegid();
            sandbox_sysctl(PING_GROUP_RANGE, &format!("{gid} {gid}"))
        }
        r => r.step(|| format!("write {PING_GROUPS} to {PING_GROUP_RANGE}")),
    }
}

/// Every mount the command can reach becomes `nosuid`, in the sandbox's mount namespace
/// only (its propagation is private), as bubblewrap mounts everything: exec then honours
/// neither set-user-ID bits nor file capabilities.
///
/// Why: the command's bounding set is empty, and the kernel refuses outright (EPERM) to
/// execute a file whose file capabilities have the effective bit set when the bounding
/// set lacks one of its permitted ones (security/commoncap.c, bprm_caps_from_vfs_caps:
/// "insufficient to execute correctly"). Debian's `ping` (cap_net_raw=ep) and every
/// such program would not even start. no_new_privs does not help: it only caps what a
/// started exec gains. Keeping the file's capabilities in the bounding set would let it
/// start (no_new_privs then takes them away again), but every capability of every such
/// program would have to stay there. On a nosuid mount the kernel does not read file
/// capabilities at all (get_file_caps), so the program starts with none and every
/// capability set, the bounding set included, stays empty. Set-user-ID bits give
/// nothing under no_new_privs already.
fn no_file_privileges() -> Result<(), StepError> {
    sys::set_nosuid_recursive(c"/").step(|| "make every mount nosuid (mount_setattr /)".into())
}

/// Nothing in the sandbox's /proc or /sys may change the host, even for uid 0 without
/// capabilities (a root-started command): /proc/sys is read-only (a fresh /proc shows
/// the host's kernel.*, vm.*, fs.* sysctls, and `kernel.core_pattern` alone runs a
/// program as host root); the kernel interfaces that docker and bubblewrap hide are
/// masked. Paths a kernel lacks are skipped.
fn lock_proc_and_sys() -> Result<(), StepError> {
    let read_only =
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    // proc(5): writing these changes the whole machine.
    for path in [
        "/proc/sys",
        "/proc/sysrq-trigger",
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
    ] {
        match mount(
            Some(path),
            path,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        ) {
            Err(Errno::ENOENT) => continue,
            r => r.step(|| format!("bind {path} read-only"))?,
        }
        mount(
            None::<&str>,
            path,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | read_only,
            None::<&str>,
        )
        .step(|| format!("make {path} read-only"))?;
    }
    // Files that leak kernel memory, addresses or keys, or trigger hardware.
    for path in [
        "/proc/kcore",         // the kernel's memory as an ELF core
        "/proc/keys",          // every key the kernel holds that the reader may view
        "/proc/timer_list",    // timers with kernel addresses and other processes' data
        "/proc/sched_debug",   // every task on the machine, across PID namespaces
        "/proc/latency_stats", // kernel call chains
        "/proc/timer_stats",
    ] {
        match mount(
            Some("/dev/null"),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        ) {
            Err(Errno::ENOENT) => {}
            r => r.step(|| format!("mask {path}"))?,
        }
    }
    // Directories of hardware interfaces: ACPI, SCSI and sound control, firmware tables
    // and variables (EFI variables can brick a machine), power capping.
    for path in [
        "/proc/acpi",
        "/proc/scsi",
        "/proc/asound",
        "/sys/firmware",
        "/sys/devices/virtual/powercap",
    ] {
        match mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            read_only,
            Some("size=0"),
        ) {
            Err(Errno::ENOENT) => {}
            r => r.step(|| format!("mask {path}"))?,
        }
    }
    Ok(())
}

fn private_files(
    resolv_conf: Option<&String>,
    hosts: Option<&String>,
) -> Result<Option<PrivateFiles>, StepError> {
    let contents: Vec<(&'static str, &String)> = [("resolv.conf", resolv_conf), ("hosts", hosts)]
        .into_iter()
        .filter_map(|(n, c)| Some((n, c?)))
        .collect();
    if contents.is_empty() {
        return Ok(None);
    }
    let tmpfs = sys::detached_tmpfs().step(|| "create the sandbox's private tmpfs".into())?;
    for (name, text) in &contents {
        let fd = nix::fcntl::openat(
            Some(tmpfs.as_raw_fd()),
            *name,
            nix::fcntl::OFlag::O_CREAT | nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .step(|| format!("write the sandbox's {name}"))?;
        let mut file = std::fs::File::from(crate::sys::own_fd(fd));
        file.write_all(text.as_bytes())
            .step(|| format!("write the sandbox's {name}"))?;
    }
    let watch = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).ok();
    if let Some(w) = &watch {
        let _ = w.add_watch(
            "/etc",
            AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CREATE,
        );
    }
    let files = PrivateFiles {
        tmpfs,
        names: contents.iter().map(|(n, _)| *n).collect(),
        watch,
    };
    for name in &files.names {
        files.mount(name)?;
    }
    Ok(Some(files))
}

/// The command's side of the fork: drop everything, then exec. Never returns.
fn exec_command(cfg: &ChildConfig) -> ! {
    if let Err(StepError(step, errno)) = drop_privileges(cfg) {
        report(&cfg.report_write, &Report::SetupFailed { step, errno });
        sys_exit(125);
    }
    if let Some(dir) = &cfg.workdir {
        if let Err(e) = nix::unistd::chdir(dir.as_c_str()) {
            report(
                &cfg.report_write,
                &Report::SetupFailed {
                    step: format!(
                        "change to the working directory {} (-w)",
                        dir.to_string_lossy().escape_debug()
                    ),
                    errno: e as i32,
                },
            );
            sys_exit(125);
        }
    }
    let program = &cfg.command[0];
    let err = exec_path(program, &cfg.command, &cfg.env);
    report(
        &cfg.report_write,
        &Report::ExecFailed {
            command: program.to_string_lossy().into_owned(),
            errno: err as i32,
        },
    );
    sys_exit(crate::supervise::exec_failure_code(err as i32))
}

/// `execvp` without its fallback of running a file that is no executable (ENOEXEC) with
/// /bin/sh: a binary for another architecture must fail as "cannot execute" (126), as
/// `env` reports it. Searches PATH (or the default search path) like the shell.
pub fn exec_path(program: &CString, argv: &[CString], env: &[CString]) -> Errno {
    let name = program.as_bytes();
    if name.contains(&b'/') {
        return nix::unistd::execve(program, argv, env).unwrap_err();
    }
    // The PATH the command will have, as `env NAME=... cmd` searches it.
    let path = env
        .iter()
        .find_map(|e| e.as_bytes().strip_prefix(b"PATH="))
        .unwrap_or(b"/usr/local/bin:/usr/bin:/bin");
    let mut first_error = None;
    for dir in path.split(|b| *b == b':') {
        let dir = if dir.is_empty() { b".".as_slice() } else { dir };
        let Ok(full) = CString::new([dir, b"/", name].concat()) else {
            continue;
        };
        let err = nix::unistd::execve(&full, argv, env).unwrap_err();
        match err {
            // Not here: look further, as execvp does.
            Errno::ENOENT | Errno::ENOTDIR | Errno::ENAMETOOLONG | Errno::ELOOP => {}
            // Found but unusable: remember it, and keep looking for a usable one.
            _ => {
                first_error.get_or_insert(err);
            }
        }
    }
    first_error.unwrap_or(Errno::ENOENT)
}

fn drop_privileges(cfg: &ChildConfig) -> Result<(), StepError> {
    drop_privileges_to(cfg.tty.as_ref(), &cfg.identity, cfg.change_identity)
}

/// What a command of the sandbox gives up right before exec, also one started by
/// `--join`: the signal mask, the caller's terminal (a new session; with `tty`, that
/// pseudo-terminal as its own), every capability (the bounding set too), the ids of
/// `id` when `change_identity`, and every fd but 0-2; no_new_privs.
pub fn drop_privileges_to(
    tty: Option<&OwnedFd>,
    id: &Identity,
    change_identity: bool,
) -> Result<(), StepError> {
    sys::default_sigpipe();
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .step(|| "reset the signal mask".into())?;
    // A new session: no controlling terminal, so no TIOCSTI into the caller's terminal.
    setsid().step(|| "setsid".into())?;
    // With -t, a terminal of its own instead: job control, /dev/tty.
    if let Some(tty) = tty {
        sys::set_controlling_tty(tty.as_fd()).step(|| "take the pseudo-terminal (-t)".into())?;
        for fd in 0..3 {
            nix::unistd::dup2(tty.as_raw_fd(), fd)
                .step(|| "give the command its terminal".into())?;
        }
    }
    // All of it: no capability has to stay for programs with file capabilities (ping),
    // which start on the sandbox's nosuid mounts without them (no_file_privileges).
    sys::drop_bounding_set().step(|| "empty the capability bounding set".into())?;
    if change_identity {
        let groups: Vec<Gid> = id.groups.iter().map(|g| Gid::from_raw(*g)).collect();
        nix::unistd::setgroups(&groups).step(|| format!("setgroups {:?}", id.groups))?;
        setresgid(
            Gid::from_raw(id.gid),
            Gid::from_raw(id.gid),
            Gid::from_raw(id.gid),
        )
        .step(|| format!("setresgid {}", id.gid))?;
        setresuid(
            Uid::from_raw(id.uid),
            Uid::from_raw(id.uid),
            Uid::from_raw(id.uid),
        )
        .step(|| format!("setresuid {}", id.uid))?;
    }
    for set in [
        caps::CapSet::Ambient,
        caps::CapSet::Inheritable,
        caps::CapSet::Effective,
        caps::CapSet::Permitted,
    ] {
        caps::clear(None, set)
            .map_err(|e| StepError(format!("clear the {set:?} capabilities: {e}"), libc::EPERM))?;
    }
    sys::set_no_new_privs().step(|| "set no_new_privs".into())?;
    // Only 0, 1 and 2 cross exec; the report pipe closes on a successful exec.
    sys::cloexec_from(3).step(|| "mark fds close-on-exec".into())?;
    Ok(())
}

/// PID 1's loop: reap, forward, keep the private files mounted; report and exit when
/// the command ends (the kernel then kills everything else in the namespace).
fn supervise(cfg: &ChildConfig, mut started: Started) -> ! {
    let command = started.command;
    let sfd =
        match SignalFd::with_flags(&cfg.signals, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) {
            Ok(sfd) => sfd,
            Err(e) => {
                end_everything();
                fail(&cfg.report_write, "signalfd in the init", e as i32)
            }
        };
    let mut control_open = true;
    loop {
        let watch = started.files.as_ref().and_then(|f| f.watch.as_ref());
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if control_open {
            fds.push(PollFd::new(cfg.control.as_fd(), PollFlags::POLLIN));
        }
        let watch_at = fds.len();
        if let Some(w) = watch {
            fds.push(PollFd::new(w.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                end_everything();
                fail(&cfg.report_write, "poll in the init", e as i32)
            }
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (control_ready, inotify_ready) =
            (control_open && ready(1), watch.is_some() && ready(watch_at));
        drop(fds);
        if inotify_ready {
            if let Some(f) = &started.files {
                f.refresh();
            }
        }
        if control_ready {
            control_open = read_control(cfg, &mut started.firewall);
        }
        while let Ok(Some(info)) = sfd.read_signal() {
            let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            if sig == Signal::SIGCHLD {
                continue;
            }
            if FORWARDED.contains(&sig) {
                // The command is in a session of its own: the terminal's stop signal
                // would be ignored by an orphaned group, SIGSTOP is not.
                let sig = if sig == Signal::SIGTSTP {
                    Signal::SIGSTOP
                } else {
                    sig
                };
                let target = if to_group(sig) || sig == Signal::SIGSTOP {
                    Pid::from_raw(-command.as_raw())
                } else {
                    command
                };
                if kill(target, sig).is_err() {
                    let _ = kill(command, sig);
                }
            }
        }
        // Reap every child that ended; stop when the command is one of them.
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == command => finish(cfg, code << 8),
                Ok(WaitStatus::Signaled(pid, sig, core)) if pid == command => {
                    finish(cfg, sig as i32 | if core { 0x80 } else { 0 })
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}

/// Handles what nsrun sends while the command runs; false once nsrun has gone.
fn read_control(cfg: &ChildConfig, firewall: &mut Option<Socket>) -> bool {
    let mut buf = [0u8; 4096];
    let n = match nix::sys::socket::recv(cfg.control.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT)
    {
        Ok(0) => return false,
        Ok(n) => n,
        Err(Errno::EAGAIN | Errno::EINTR) => return true,
        Err(_) => return false,
    };
    let answer = |ok: bool| {
        let _ = nix::sys::socket::send(
            cfg.control.as_raw_fd(),
            &[if ok { ACK } else { NACK }],
            MsgFlags::MSG_NOSIGNAL,
        );
    };
    match (&buf[..n], firewall.as_mut()) {
        ([MSG_HOST_ADDRS, addrs @ ..], Some(nft)) => {
            let addrs: Vec<Ipv4Addr> = addrs
                .chunks_exact(4)
                .map(|a| Ipv4Addr::new(a[0], a[1], a[2], a[3]))
                .collect();
            let (msg, acked) = crate::firewall::add_host_addrs(&addrs).finish();
            // A failure leaves the address open only to a sandbox that already runs; the
            // rules for every address known at the start stay.
            let _ = nft.transact(msg, &acked, "close new host addresses");
        }
        ([MSG_DISCONNECT, drop], Some(nft)) => {
            let (msg, acked) = crate::firewall::disconnect(*drop == 1).finish();
            answer(nft.transact(msg, &acked, "pull the cable").is_ok());
        }
        ([MSG_RECONNECT], Some(nft)) => {
            let (msg, acked) = crate::firewall::reconnect().finish();
            answer(nft.transact(msg, &acked, "put the cable back").is_ok());
        }
        ([MSG_DISCONNECT, ..] | [MSG_RECONNECT], None) => answer(false),
        ([MSG_NAMESPACES], _) => {
            let mut files: Vec<std::fs::File> = JOINED
                .iter()
                .filter_map(|ns| std::fs::File::open(format!("/proc/self/ns/{ns}")).ok())
                .collect();
            if files.len() != JOINED.len() {
                answer(false);
            } else {
                // Then the sandbox's own resolv.conf and hosts, for a joiner that cannot
                // enter the mount namespace (see mounts_like_the_sandbox).
                files.extend(
                    JOINED_FILES
                        .iter()
                        .filter_map(|f| std::fs::File::open(f).ok()),
                );
                let fds: Vec<i32> = files.iter().map(|f| f.as_raw_fd()).collect();
                let _ = crate::sys::send_with_fds(&cfg.control, &[NAMESPACES], &fds);
            }
        }
        _ => {}
    }
    true
}

/// Kills every other process of the sandbox and reaps them: when the init reports, the
/// sandbox has no process but the init left.
fn end_everything() {
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    while waitpid(Pid::from_raw(-1), None).is_ok() {}
}

fn finish(cfg: &ChildConfig, raw_status: i32) -> ! {
    end_everything();
    report(&cfg.report_write, &Report::Status(raw_status));
    sys_exit(0)
}

fn sys_exit(code: i32) -> ! {
    sys::exit_now(code)
}
