//! The holder: one small process per host network namespace that owns the host's NAT
//! table for every sandbox (firewall.rs) and removes what a sandbox leaves on the host.
//!
//! Why a separate process: an nf_tables table owned by a socket dies with it, which is
//! the cleanup nsrun wants after SIGKILL; but releasing an owned table, and closing any
//! nf_tables socket after a change, waits for an RCU grace period under the netns's
//! commit mutex (`nft_rcv_nl_event`). One table per sandbox would put that wait on every
//! nsrun's exit and serialize concurrent sandboxes. The holder pays it once, when it
//! exits, off every caller's path; nsrun itself never opens an nf_tables socket on the
//! host.
//!
//! Protocol, over the abstract unix socket `@nsrun-holder` (per network namespace,
//! SOCK_SEQPACKET), one request and one answer at a time; the messages and their codecs
//! are in proto.rs: register a sandbox (its masquerade rule, the other firewalls opened
//! for it, forwarding where needed), publish a port, its --info-file, what it may reach
//! on the host, and `--wait-teardown`'s last wish.
//!
//! When the connection closes (nsrun exits, or is killed), the holder deletes the rules
//! and, 200 ms later, the sandbox's host-side link if it still exists (a socket passed
//! out of the sandbox can keep its namespace alive; its link to the host must not outlive
//! nsrun), its --name and its --info-file.
//!
//! **Ready before the command runs.** The holder answers a request only once the kernel
//! has committed its nf_tables batch (acknowledgements come after the commit), nsrun
//! sends "go" only after the answer, and the init brings the sandbox's link up only
//! after "go". So no packet of a sandbox can meet the host before its NAT is in place,
//! and nothing begins too early. The one gap is a holder's death (below): a connection
//! begun in the milliseconds before a new holder has the sandbox's rule again passes
//! untranslated, and on a host with NAT of its own its conntrack entry would keep it so
//! for life; once the sandbox is registered again, nsrun deletes its untranslated
//! entries (`repair_conntrack`), so the connection's next packet is NATed.
//!
//! **Expendable.** The holder exits 500 ms after its last registered sandbox; a client
//! that finds none starts one (nsrun's own binary, executed as `nsrun-holder`). When a
//! holder dies (SIGKILL, OOM, the stop of the systemd unit whose cgroup it inherited),
//! the kernel deletes its table, and every nsrun registers its sandbox again at once with
//! a new holder (`Keeper`): masquerade, published ports, name and info file come back.
//!
//! **Trust.** Clients and holder trust each other only as root or as the same uid, read
//! from the credentials the kernel recorded at connect/listen time (SO_PEERCRED, taken
//! at accept and bound to the connection; anyone else is closed at once), and the holder
//! checks every request itself, never trusting the client's command line: it registers
//! only links named like a sandbox's, and only the sandbox's end of that link's subnet;
//! it publishes only on the host's own addresses, ports below
//! `ip_unprivileged_port_start` only for root, and a port only while its client's uid
//! holds it alone (looked at again every 500 ms). The peer's capabilities are looked at
//! too, but nothing rests on them: any process of a trusted uid can reach the holder
//! (it may exec a file-capability nsrun after connecting), so what a request may do is
//! bounded by what that uid could do with nsrun's command line. At most 256 connections wait to register,
//! each for at most 5 s. An unprivileged process that binds the name first can only make
//! nsrun fail, with a message naming it. With a file-capability install, one holder
//! serves one user: another user's nsrun fails while it runs.

use std::io::Read;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
use nix::sys::socket::{
    AddressFamily, Backlog, MsgFlags, SockFlag, SockProtocol, SockType, UnixAddr, accept4, bind,
    connect, getsockopt, listen, recv, send, socket, sockopt,
};
use nix::unistd::pipe2;

use crate::firewall::{self, TABLE};
use crate::netlink::{self, Socket, conntrack, nft, route};
use crate::proto::events;
use crate::proto::{Reply, Request};
use crate::sys;

const NAME: &[u8] = b"nsrun-holder";
const IDLE: Duration = Duration::from_millis(500);
const LINK_GRACE: Duration = Duration::from_millis(200);
const JOIN_DEADLINE: Duration = Duration::from_secs(5);
/// Connections that may wait to register at once (sandboxes starting together).
const MAX_UNREGISTERED: usize = 256;
const CAP_NET_ADMIN: u32 = 12;
const FORWARD_CHECK_TTL: Duration = Duration::from_millis(200);
const NFNLGRP_NFTABLES: u32 = 7;
const RTNLGRP_IPV4_NETCONF: u32 = 24;
const LEGACY_CHECK: Duration = Duration::from_secs(1);
/// How often the holder looks whether each published port is still its client's alone.
const PORTS_CHECK: Duration = Duration::from_millis(500);
use crate::firewall::{GUARD_MARK, GUARD_TABLE};

/// A sandbox's registration with the holder; dropping it (or nsrun's death) ends it.
pub struct Lease {
    sock: OwnedFd,
    holder: libc::pid_t,
    /// Links whose forwarding this registration switched on, space-separated.
    pub switched: String,
    /// Other firewalls' forward chains that hold nsrun's accept rules, comma-separated.
    pub opened: String,
}

fn addr() -> UnixAddr {
    UnixAddr::new_abstract(NAME).expect("a short abstract name")
}

fn seqpacket() -> Result<OwnedFd> {
    socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("unix socket for nsrun's holder")
}

/// Who the holder and its clients trust: root, and the uid the other runs as (a
/// file-capability install used by one user).
fn trusted_uid(peer: u32, me: u32) -> bool {
    peer == 0 || peer == me
}

/// Whether process `pid` has CAP_NET_ADMIN in its effective set.
fn has_net_admin(pid: libc::pid_t) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
}

fn recv_reply(sock: &OwnedFd, timeout: Duration) -> Option<Reply> {
    let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    match poll(&mut fds, PollTimeout::from(ms)) {
        Ok(n) if n > 0 => {}
        _ => return None,
    }
    let mut buf = [0u8; 4096];
    match recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()) {
        Ok(n) if n > 0 => Reply::decode(&buf[..n]),
        _ => None,
    }
}

/// Everything the holder is told about one sandbox: what a new holder is told again
/// when the one that served it is gone.
#[derive(Clone)]
pub struct Registration {
    /// The sandbox's host end.
    pub ifindex: u32,
    /// The sandbox's address.
    pub sandbox: Ipv4Addr,
    /// Links that need forwarding for it.
    pub links: Vec<u32>,
    /// Its --name, whose /run/netns entry the holder removes if nsrun is killed.
    pub name: Option<String>,
    pub publish: Vec<crate::plan::Publish>,
    /// --info-file (absolute) and its inode: the holder removes it if nsrun is killed.
    pub info_file: Option<(std::path::PathBuf, u64, u64)>,
    /// --allow-host: it may open connections to the host's addresses.
    pub allow_host: bool,
    /// Its nameservers, whose port 53 it may reach wherever they are (the host included).
    pub nameservers: Vec<Ipv4Addr>,
}

/// Registers a sandbox and publishes its ports, starting a holder when none runs. On
/// return the host's NAT, published ports and forwarding for it are in place, committed
/// (the holder answers once the kernel has them); the lease says which links' forwarding
/// the holder switched on for it.
pub fn register(reg: &Registration) -> Result<Lease> {
    let lease = join(reg)?;
    lease.host_access(reg.allow_host, &reg.nameservers)?;
    for p in &reg.publish {
        lease.publish(p)?;
    }
    if let Some((path, inode, device)) = &reg.info_file {
        lease.tell_info_file(path, *inode, *device)?;
    }
    Ok(lease)
}

/// How often a sandbox whose holder is gone asks again while no holder can serve it.
const REJOIN_RETRY: Duration = Duration::from_millis(100);

/// Keeps a sandbox registered for as long as it lives: a holder that dies (SIGKILL, OOM,
/// the stop of the systemd unit it was started from) takes the host's table with it, and
/// the keeper registers the sandbox again at once, with a new holder if none runs. The
/// command notices at most the packets that met the host in between (connections
/// already open keep their NAT in conntrack). A thread of nsrun's: the supervision loop
/// never waits for a holder.
pub struct Keeper {
    /// Closing it stops the thread.
    stop: Option<OwnedFd>,
    thread: Option<std::thread::JoinHandle<Option<Lease>>>,
}

impl Keeper {
    pub fn start(lease: Lease, reg: Registration) -> Result<Keeper> {
        let (stop_read, stop_write) = pipe2(OFlag::O_CLOEXEC).context("pipe")?;
        let thread = std::thread::Builder::new()
            .name("holder-lease".into())
            .spawn(move || keep(lease, &reg, &stop_read))
            .context("start the holder's lease keeper")?;
        Ok(Keeper {
            stop: Some(stop_write),
            thread: Some(thread),
        })
    }

    /// Stops keeping the registration and hands back the lease (none while a new holder
    /// was still being found).
    pub fn end(mut self) -> Option<Lease> {
        drop(self.stop.take());
        self.thread.take()?.join().ok().flatten()
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        // The thread returns, and the lease it drops ends the registration.
        drop(self.stop.take());
    }
}

/// Whether `fd` is readable (or hung up) within `ms` milliseconds.
fn ready_within(fd: &OwnedFd, ms: u16) -> bool {
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::from(ms)), Ok(n) if n > 0)
}

fn keep(mut lease: Lease, reg: &Registration, stop: &OwnedFd) -> Option<Lease> {
    loop {
        let mut fds = [
            PollFd::new(lease.sock.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        if poll(&mut fds, PollTimeout::NONE).is_err() {
            continue;
        }
        let (holder_said, stopped) = (
            fds[0].revents().is_some_and(|r| !r.is_empty()),
            fds[1].revents().is_some_and(|r| !r.is_empty()),
        );
        if stopped {
            return Some(lease);
        }
        if !holder_said {
            continue;
        }
        let mut buf = [0u8; 64];
        match recv(lease.sock.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            Ok(n) if n > 0 => continue, // nothing the holder says unasked matters
            Err(Errno::EAGAIN | Errno::EINTR) => continue,
            _ => {} // closed: the holder is gone
        }
        drop(lease);
        let mut warned = false;
        lease = loop {
            if ready_within(stop, 0) {
                return None;
            }
            match register(reg) {
                Ok(lease) => break lease,
                Err(e) => {
                    if !warned {
                        crate::say(&format!(
                            "nsrun: the sandbox {} lost the host's NAT (its holder is gone) and could not get it back yet: {}; retrying",
                            reg.sandbox,
                            format!("{e:#}").replace('\n', " ")
                        ));
                        warned = true;
                    }
                    if ready_within(stop, REJOIN_RETRY.as_millis() as u16) {
                        return None;
                    }
                }
            }
        };
        repair_conntrack(reg.sandbox);
        if warned {
            crate::say(&format!(
                "nsrun: the sandbox {} has the host's NAT again",
                reg.sandbox
            ));
        }
    }
}

/// Once a new holder has a sandbox's NAT again: a connection the sandbox began while no
/// holder had it passed the host untranslated, and its conntrack entry would keep every
/// later packet of it untranslated too. Those entries (from the sandbox, replies to the
/// sandbox: no NAT) are deleted, so the connection's next packet (a SYN's retransmission)
/// is tracked anew and NATed: the command sees a lost packet, not a dead connection.
fn repair_conntrack(sandbox: Ipv4Addr) {
    let Ok(mut sock) = Socket::open(SockProtocol::NetlinkNetFilter) else {
        return;
    };
    let Ok(entries) = sock.dump(conntrack::dump(), "list conntrack entries") else {
        return;
    };
    for entry in entries.iter().filter_map(|(_, p)| conntrack::parse(p)) {
        if entry.orig_src == sandbox && entry.reply_dst == sandbox {
            let _ = sock.request(
                conntrack::delete(&entry.orig),
                "delete an untranslated conntrack entry",
            );
        }
    }
}

fn join(reg: &Registration) -> Result<Lease> {
    let deadline = Instant::now() + JOIN_DEADLINE;
    // The sandbox's --name: the holder removes its /run/netns entry if nsrun is killed.
    let request = Request::Register {
        ifindex: reg.ifindex,
        sandbox: reg.sandbox,
        links: reg.links.clone(),
        name: reg.name.clone().unwrap_or_default(),
    }
    .encode();
    loop {
        if Instant::now() > deadline {
            bail!(
                "nsrun's holder (@nsrun-holder) did not answer within {}s",
                JOIN_DEADLINE.as_secs()
            );
        }
        let sock = seqpacket()?;
        match connect(sock.as_raw_fd(), &addr()) {
            Ok(()) => {}
            Err(Errno::ECONNREFUSED | Errno::ENOENT) => {
                spawn()?;
                continue;
            }
            Err(e) => return Err(e).context("connect to nsrun's holder @nsrun-holder"),
        }
        let peer =
            getsockopt(&sock, sockopt::PeerCredentials).context("SO_PEERCRED of nsrun's holder")?;
        let holder = peer.pid();
        // The credentials the kernel recorded when the holder listened: a process that
        // gains privilege later (by exec of a set-user-ID program) does not pass.
        let me = nix::unistd::geteuid().as_raw();
        if !(trusted_uid(peer.uid(), me) && has_net_admin(holder)) {
            bail!(
                "process {holder} (uid {}) listens on @nsrun-holder but is not nsrun's holder for uid {me}: stop it (kill {holder}) and run nsrun again",
                peer.uid()
            );
        }
        if send(sock.as_raw_fd(), &request, MsgFlags::MSG_NOSIGNAL).is_err() {
            continue; // the holder was exiting: start again
        }
        match recv_reply(&sock, JOIN_DEADLINE) {
            Some(Reply::Done(answer)) => {
                let (switched, opened) = answer.split_once('\n').unwrap_or((&answer, ""));
                return Ok(Lease {
                    sock,
                    holder,
                    switched: switched.to_string(),
                    opened: opened.to_string(),
                });
            }
            Some(Reply::Refused(why)) => bail!("{why}"),
            _ => continue, // closed while exiting: start again
        }
    }
}

impl Lease {
    /// Publishes one port of the sandbox (DNAT in the host's table).
    fn publish(&self, p: &crate::plan::Publish) -> Result<()> {
        if p.host_ip.is_some_and(|ip| ip.is_loopback()) {
            return Ok(()); // localhost only: nsrun's own listener serves it
        }
        self.ask(
            &Request::Publish(*p),
            "ask nsrun's holder to publish a port",
        )
    }

    /// Sends one request and waits for the holder's answer: `K`, or `E` and why.
    fn ask(&self, request: &Request, what: &str) -> Result<()> {
        send(
            self.sock.as_raw_fd(),
            &request.encode(),
            MsgFlags::MSG_NOSIGNAL,
        )
        .context(what.to_string())?;
        match recv_reply(&self.sock, JOIN_DEADLINE) {
            Some(Reply::Done(_)) => Ok(()),
            Some(Reply::Refused(why)) => bail!("{why}"),
            _ => bail!("nsrun's holder did not answer"),
        }
    }

    /// Tells the holder what the sandbox may open on the host (see
    /// [`firewall::host_exceptions`]).
    fn host_access(&self, allow_host: bool, nameservers: &[Ipv4Addr]) -> Result<()> {
        if !allow_host && nameservers.is_empty() {
            return Ok(()); // nothing of the host for it: the holder refuses it all
        }
        let request = Request::HostAccess {
            allow_host,
            nameservers: nameservers.to_vec(),
        };
        self.ask(
            &request,
            "tell nsrun's holder what the sandbox may reach on the host",
        )
    }

    /// Tells the holder the sandbox's --info-file, to remove if nsrun is killed.
    fn tell_info_file(&self, path: &std::path::Path, inode: u64, device: u64) -> Result<()> {
        let request = Request::InfoFile {
            inode,
            device,
            path: path.to_path_buf(),
        };
        self.ask(&request, "tell nsrun's holder the info file")
    }

    /// For `--wait`: ends the lease and, if this was the holder's last sandbox, waits
    /// until the holder (and with it the host's NAT table) is gone.
    pub fn end_and_wait(self) {
        let pidfd = sys::pidfd_open(self.holder).ok();
        let last = send(
            self.sock.as_raw_fd(),
            &Request::LastWish.encode(),
            MsgFlags::MSG_NOSIGNAL,
        )
        .is_ok()
            && recv_reply(&self.sock, Duration::from_secs(1)) == Some(Reply::Last);
        drop(self.sock);
        if let (true, Some(pidfd)) = (last, pidfd) {
            let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(3000u16));
        }
    }
}

/// The environment variable that makes nsrun's binary a holder (with argv[0]
/// `nsrun-holder`): its value is the descriptor of the pipe that hears "ok", "busy" or why
/// it failed.
pub const HOLDER_ENV: &str = "NSRUN_HOLDER_READY";

/// Starts a holder, detached (its own session, stdio on /dev/null, no child of nsrun's),
/// and waits until it listens, lost the race to another, or failed. The holder is nsrun's
/// own binary executed anew (`/proc/self/exe`, argv[0] `nsrun-holder`): `ps` shows it as
/// what it is, and nsrun may start one from any thread (a fork of a threaded process may
/// run nothing but exec).
fn spawn() -> Result<()> {
    use std::os::unix::process::CommandExt;
    let (ready_read, ready_write) = pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    // The write end becomes the new process's stdout: the one descriptor it inherits.
    let status = std::process::Command::new("/proc/self/exe")
        .arg0("nsrun-holder")
        .env(HOLDER_ENV, "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(ready_write))
        .stderr(std::process::Stdio::null())
        .current_dir("/")
        .status()
        .context("start nsrun's holder (/proc/self/exe)")?;
    if !status.success() {
        bail!("nsrun's holder could not start ({status})");
    }
    let mut answer = String::new();
    let _ = std::fs::File::from(ready_read).read_to_string(&mut answer);
    match answer.as_str() {
        "ok" | "busy" => Ok(()),
        "" => bail!("nsrun's holder exited before it was ready"),
        why => bail!("{why}"),
    }
}

/// The process that [`spawn`] executes: forks the holder (so that it is nobody's child
/// and leads its own session) and leaves. The holder says on stdout when it is ready.
pub fn holder_main() -> ! {
    match sys::fork() {
        Ok(None) => match nix::unistd::dup(1) {
            Ok(fd) => run(sys::own_fd(fd)),
            Err(_) => sys::exit_now(1),
        },
        Ok(Some(_)) => sys::exit_now(0),
        Err(_) => sys::exit_now(1),
    }
}

/// The holder's life. Never returns.
fn run(ready: OwnedFd) -> ! {
    let say = |text: &str| {
        let _ = nix::unistd::write(&ready, text.as_bytes());
    };
    let _ = nix::unistd::setsid();
    let _ = std::env::set_current_dir("/");
    if let Ok(null) = nix::fcntl::open("/dev/null", OFlag::O_RDWR, nix::sys::stat::Mode::empty()) {
        for fd in 0..3 {
            let _ = nix::unistd::dup2(null, fd);
        }
    }
    // Test builds: where the holder's own panics and errors go, if anywhere.
    #[cfg(debug_assertions)]
    if let Some(log) = std::env::var_os("NSRUN_HOLDER_LOG") {
        if let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&file), 2);
        }
    }
    if sys::close_all_except(&[0, 1, 2, ready.as_raw_fd()]).is_err() {
        sys::exit_now(1);
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    sys::set_name(c"nsrun-holder");

    let listener = match seqpacket() {
        Ok(l) => l,
        Err(e) => {
            say(&format!("{e:#}"));
            sys::exit_now(1)
        }
    };
    match bind(listener.as_raw_fd(), &addr()) {
        Ok(()) => {}
        Err(Errno::EADDRINUSE) => {
            say("busy");
            sys::exit_now(0)
        }
        Err(e) => {
            say(&format!("bind @nsrun-holder: {e}"));
            sys::exit_now(1)
        }
    }
    // Listening before the table exists: sandboxes that start meanwhile queue here and
    // wait for their answer, instead of each starting a holder of its own.
    if let Err(e) = listen(&listener, Backlog::new(512).unwrap_or(Backlog::MAXCONN)) {
        say(&format!("listen on @nsrun-holder: {e}"));
        sys::exit_now(1)
    }
    let tables = match create_table() {
        Ok(s) => s,
        Err(e) => {
            say(&format!("{e:#}"));
            sys::exit_now(1)
        }
    };
    let rtnl = match Socket::open(SockProtocol::NetlinkRoute) {
        Ok(s) => s,
        Err(e) => {
            say(&format!("open rtnetlink: {e}"));
            sys::exit_now(1)
        }
    };
    let _ = nix::fcntl::fcntl(
        listener.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK),
    );
    // nf_tables' change notifications: a firewall that reloads while sandboxes run
    // (firewalld, ufw) loses nsrun's accept rules, which go back in at once.
    let nft_events =
        Socket::open_groups(SockProtocol::NetlinkNetFilter, 1 << (NFNLGRP_NFTABLES - 1)).ok();
    // IPv4 forwarding's changes: someone who makes the whole host a router meanwhile
    // (Docker, libvirt, an admin) takes over the links nsrun switched on.
    let netconf_events =
        Socket::open_groups(SockProtocol::NetlinkRoute, 1 << (RTNLGRP_IPV4_NETCONF - 1)).ok();
    say("ok");
    drop(ready);
    let mut holder = Holder {
        nft_events,
        netconf_events,
        listener: Some(listener),
        nft: tables,
        rtnl,
        clients: Vec::new(),
        links: Vec::new(),
        names: Vec::new(),
        forwarding: Vec::new(),
        forward_checked: None,
        opened: Vec::new(),
        legacy_opened: false,
    };
    holder.adopt_forwarding();
    holder.serve()
}

/// Creates the host table, owned by a new socket. A table of that name owned by another
/// socket is an exiting holder's: wait for it. One that nobody owns is stale: replace it.
fn create_table() -> Result<Socket> {
    let mut nft = Socket::open(SockProtocol::NetlinkNetFilter)
        .map_err(|e| anyhow::anyhow!(crate::plan::no_nf_tables(&e)))?;
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (msg, acked) = firewall::holder_table(false).finish();
        let err = match nft.transact(msg, &acked, &format!("create nf_tables table inet {TABLE}")) {
            Ok(_) => return Ok(nft),
            Err(e) => e,
        };
        match netlink::errno_of(&err) {
            Some(libc::EEXIST) => {}
            Some(errno) if crate::plan::nf_tables_missing(errno) || errno == libc::ENOENT => {
                bail!(crate::plan::no_nf_tables(&format!(
                    "{err}: NAT (nft_chain_nat, nft_masq) missing?"
                )))
            }
            _ => return Err(err.into()),
        }
        let owned = nft
            .get(
                nft::get_table(nft::NFPROTO_INET, TABLE),
                "GETTABLE inet nsrun",
            )
            .ok()
            .and_then(|p| nft::table_flags(&p))
            .is_some_and(|f| f & nft::NFT_TABLE_F_OWNER != 0);
        if !owned {
            let (msg, acked) = firewall::holder_table(true).finish();
            match nft.transact(msg, &acked, "replace a stale table inet nsrun") {
                Ok(_) => return Ok(nft),
                Err(e) if netlink::errno_of(&e) == Some(libc::ENOENT) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        if Instant::now() > deadline {
            bail!(
                "table inet {TABLE} stays owned by another socket: is an old nsrun holder stuck?"
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The refusal where nsrun cannot let its links through iptables-legacy's FORWARD.
fn legacy_refusal(docker: bool, why: &dyn std::fmt::Display) -> String {
    // On Docker's hosts in DOCKER-USER, and not towards docker0: containers' unpublished
    // ports stay closed.
    let (chain, out) = if docker {
        ("DOCKER-USER", " ! -o docker0")
    } else {
        ("FORWARD", "")
    };
    format!(
        "the host's firewall drops forwarded packets (chain FORWARD of iptables-legacy's filter table has policy DROP{}) and nsrun could not let its interfaces through ({why}), so the sandbox would have no network; let nsrun's interfaces through: sudo iptables-legacy -I {chain} -i nsr+{out} -j ACCEPT && sudo iptables-legacy -I {chain} -o nsr+ -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        if docker { ", Docker's" } else { "" }
    )
}

/// Another firewall's chain that holds nsrun's rules.
#[derive(PartialEq)]
struct Opened {
    family: u8,
    table: String,
    chain: String,
}

impl std::fmt::Display for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let family = family_name(self.family);
        write!(f, "chain {} of table {family} {}", self.chain, self.table)
    }
}

fn is_ours(rule: &nft::RuleInfo) -> bool {
    rule.comment
        .as_deref()
        .is_some_and(|c| c.starts_with(firewall::FOREIGN_MARK))
}

fn family_name(family: u8) -> &'static str {
    if family == nft::NFPROTO_INET {
        "inet"
    } else {
        "ip"
    }
}

struct Client {
    sock: OwnedFd,
    /// The peer's uid when it connected (SO_PEERCRED).
    uid: u32,
    /// When it connected: one that has not registered within [`JOIN_DEADLINE`] is closed.
    since: Instant,
    /// The sandbox's address, once registered.
    addr: Option<Ipv4Addr>,
    /// Its rules in the host's table besides the masquerade (published ports, what it
    /// may reach on the host): (chain, handle).
    published: Vec<(&'static str, u64)>,
    /// The sandbox's --name, whose /run/netns entry a killed nsrun leaves behind.
    name: Option<String>,
    ifindex: Option<u32>,
    handle: Option<u64>,
    last_wish: bool,
    /// Its published ports, with their rules' (chain, handle).
    ports: Vec<(crate::plan::Publish, Vec<(&'static str, u64)>)>,
    /// Its --info-file and that file's inode.
    info_file: Option<(std::path::PathBuf, u64, u64)>,
}

struct Holder {
    listener: Option<OwnedFd>,
    nft_events: Option<Socket>,
    netconf_events: Option<Socket>,
    nft: Socket,
    rtnl: Socket,
    clients: Vec<Client>,
    /// Host ends to remove once their grace period is over.
    links: Vec<(u32, Instant)>,
    /// Names (--name) to remove once their grace period is over.
    names: Vec<(String, Instant)>,
    /// Links whose forwarding the holder switched on, to switch off when it exits.
    forwarding: Vec<(u32, String)>,
    /// When the forward path was last looked at, and what blocks it.
    forward_checked: Option<(Instant, Option<String>)>,
    /// Rules in other firewalls' forward chains, removed when the holder exits.
    opened: Vec<Opened>,
    /// nsrun's entries are in iptables-legacy's FORWARD.
    legacy_opened: bool,
}

impl Holder {
    fn serve(&mut self) -> ! {
        let mut idle_since = Some(Instant::now());
        let mut legacy_checked = Instant::now();
        let mut ports_checked = Instant::now();
        loop {
            let now = Instant::now();
            let mut wake = idle_since.map(|t| t + IDLE);
            let deadlines = self.links.iter().map(|(_, at)| *at);
            // iptables-legacy sends no notifications: while its FORWARD holds nsrun's
            // entries, look every second whether a restore dropped them.
            let legacy = self.legacy_opened.then_some(legacy_checked + LEGACY_CHECK);
            let ports = self
                .clients
                .iter()
                .any(|c| !c.ports.is_empty())
                .then_some(ports_checked + PORTS_CHECK);
            if let Some(at) = deadlines
                .chain(self.names.iter().map(|(_, at)| *at))
                .chain(legacy)
                .chain(ports)
                .min()
            {
                wake = Some(wake.map_or(at, |w| w.min(at)));
            }
            let timeout = wake.map_or(PollTimeout::NONE, |w| {
                PollTimeout::from(
                    u16::try_from(w.saturating_duration_since(now).as_millis() + 1)
                        .unwrap_or(u16::MAX),
                )
            });
            let Some(listener) = &self.listener else {
                sys::exit_now(0)
            };
            let mut fds = vec![PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
            fds.extend(
                self.clients
                    .iter()
                    .map(|c| PollFd::new(c.sock.as_fd(), PollFlags::POLLIN)),
            );
            let mut nft_at = None;
            if let Some(events) = &self.nft_events {
                nft_at = Some(fds.len());
                fds.push(PollFd::new(events.as_fd(), PollFlags::POLLIN));
            }
            let mut netconf_at = None;
            if let Some(events) = &self.netconf_events {
                netconf_at = Some(fds.len());
                fds.push(PollFd::new(events.as_fd(), PollFlags::POLLIN));
            }
            if let Err(e) = poll(&mut fds, timeout) {
                if e != Errno::EINTR {
                    sys::exit_now(1);
                }
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            drop(fds);

            let clients = self.clients.len();
            if nft_at.is_some_and(|at| ready[at]) {
                self.firewall_changed();
            }
            if netconf_at.is_some_and(|at| ready[at]) {
                self.forwarding_changed();
            }
            for (i, _) in ready
                .iter()
                .enumerate()
                .take(clients + 1)
                .skip(1)
                .filter(|(_, r)| **r)
                .rev()
            {
                self.serve_client(i - 1);
            }
            let listening = self.listener.as_ref().map(|l| l.as_raw_fd());
            if let (true, Some(listener)) = (ready[0], listening) {
                while let Ok(sock) = accept4(listener, SockFlag::SOCK_CLOEXEC) {
                    let sock = sys::own_fd(sock);
                    // Who connected, as the kernel recorded it at connect: bound to the
                    // connection for its life. Anyone else is closed at once, so no
                    // other user can fill the holder's descriptors or keep it alive.
                    let me = nix::unistd::geteuid().as_raw();
                    let Ok(peer) = getsockopt(&sock, sockopt::PeerCredentials) else {
                        continue;
                    };
                    if !trusted_uid(peer.uid(), me) {
                        continue;
                    }
                    self.limit_unregistered();
                    self.clients.push(Client {
                        uid: peer.uid(),
                        since: Instant::now(),
                        sock,
                        addr: None,
                        published: Vec::new(),
                        name: None,
                        ifindex: None,
                        handle: None,
                        last_wish: false,
                        info_file: None,
                        ports: Vec::new(),
                    });
                }
            }
            self.remove_links(false);
            self.remove_names(false);
            if self.legacy_opened && legacy_checked.elapsed() >= LEGACY_CHECK {
                legacy_checked = Instant::now();
                if self.clients.iter().any(|c| c.addr.is_some()) {
                    let _ = self.open_legacy();
                }
            }
            if ports_checked.elapsed() >= PORTS_CHECK {
                ports_checked = Instant::now();
                self.check_held_ports();
            }
            self.close_stale_connections();
            if self.clients.is_empty() && self.names.is_empty() {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= IDLE {
                    self.exit();
                }
            } else {
                idle_since = None;
            }
        }
    }

    /// At most [`MAX_UNREGISTERED`] connections wait to register: the oldest goes first.
    fn limit_unregistered(&mut self) {
        let waiting: Vec<usize> = (0..self.clients.len())
            .filter(|i| self.clients[*i].ifindex.is_none())
            .collect();
        if waiting.len() >= MAX_UNREGISTERED {
            if let Some(oldest) = waiting.into_iter().min_by_key(|i| self.clients[*i].since) {
                let client = self.clients.swap_remove(oldest);
                self.release(&client);
            }
        }
    }

    /// Closes connections that did not register in time: an idle connection neither
    /// holds a descriptor for long nor keeps the holder (and its table, and the uplink's
    /// forwarding) alive after the last sandbox.
    fn close_stale_connections(&mut self) {
        let mut i = 0;
        while i < self.clients.len() {
            let c = &self.clients[i];
            if c.ifindex.is_none() && c.since.elapsed() > JOIN_DEADLINE {
                let client = self.clients.swap_remove(i);
                self.release(&client);
            } else {
                i += 1;
            }
        }
    }

    /// Stops listening, removes what is pending, and exits: the kernel then deletes the
    /// owned table.
    fn exit(&mut self) -> ! {
        #[cfg(debug_assertions)]
        eprintln!(
            "holder {} exits, {} clients",
            std::process::id(),
            self.clients.len()
        );
        // Forwarding back as it was before the listener goes: a new holder can start
        // only once the name is free. Not when someone switched forwarding on for the
        // whole host meanwhile (`sysctl -w net.ipv4.ip_forward=1`, as Docker, libvirt and
        // Kubernetes do when they start): that is theirs now, and switching a link back
        // would cut their routing through it, which writing ip_forward again would not
        // repair (the kernel passes `all` on to the links only when it changes).
        // Then the guards go: forwarding is off again, or it is someone else's.
        if !crate::host::forwarding_on("all") {
            for (_, name) in &self.forwarding {
                let _ = crate::host::set_forwarding(name, false);
            }
        }
        if !self.forwarding.is_empty() {
            self.drop_guards();
        }
        self.close_forward_path();
        self.close_legacy();
        self.listener.take();
        self.remove_links(true);
        self.remove_names(true);
        sys::exit_now(0)
    }

    fn serve_client(&mut self, i: usize) {
        let mut buf = [0u8; 4096];
        let n = match recv(
            self.clients[i].sock.as_raw_fd(),
            &mut buf,
            MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(n) => n,
            Err(Errno::EAGAIN | Errno::EINTR) => return,
            Err(_) => 0,
        };
        if n == 0 {
            let client = self.clients.swap_remove(i);
            self.release(&client);
            if client.last_wish && self.clients.is_empty() {
                self.exit();
            }
            return;
        }
        let refused = |e: anyhow::Error| Reply::Refused(format!("{e:#}"));
        let reply = match Request::decode(&buf[..n]) {
            Some(Request::Register {
                ifindex,
                sandbox,
                links,
                name,
            }) => {
                if crate::plan::validate_netns_name(&name).is_ok() {
                    self.clients[i].name = Some(name);
                }
                match self.register(i, ifindex, sandbox, &links) {
                    Ok(switched) => {
                        let mut chains: Vec<String> =
                            self.opened.iter().map(Opened::to_string).collect();
                        if self.legacy_opened {
                            chains.push("chain FORWARD of iptables-legacy's filter table".into());
                        }
                        Reply::Done(format!("{}\n{}", switched.join(" "), chains.join(", ")))
                    }
                    Err(e) => refused(e),
                }
            }
            Some(Request::Publish(publish)) => match self.publish(i, &publish) {
                Ok(()) => Reply::Done(String::new()),
                Err(e) => refused(e),
            },
            Some(Request::InfoFile {
                inode,
                device,
                path,
            }) => {
                self.clients[i].info_file = Some((path, inode, device));
                Reply::Done(String::new())
            }
            Some(Request::HostAccess {
                allow_host,
                nameservers,
            }) => match self.allow_on_host(i, allow_host, &nameservers) {
                Ok(()) => Reply::Done(String::new()),
                Err(e) => refused(e),
            },
            Some(Request::LastWish) => {
                self.clients[i].last_wish = true;
                if self.clients.len() == 1 {
                    Reply::Last
                } else {
                    Reply::Done(String::new())
                }
            }
            None => Reply::Refused("unknown request".into()),
        };
        let reply = reply.encode();
        let _ = send(
            self.clients[i].sock.as_raw_fd(),
            &reply,
            MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
        );
    }

    /// Returns the links whose forwarding this registration switched on.
    fn register(
        &mut self,
        i: usize,
        ifindex: u32,
        sandbox: Ipv4Addr,
        links: &[u32],
    ) -> Result<Vec<String>> {
        let peer =
            getsockopt(&self.clients[i].sock, sockopt::PeerCredentials).context("SO_PEERCRED")?;
        // SO_PEERCRED holds the credentials of connect(): a client that execs a
        // set-user-ID program afterwards keeps the uid it connected with.
        let me = nix::unistd::geteuid().as_raw();
        if !trusted_uid(peer.uid(), me) || !has_net_admin(peer.pid()) {
            bail!(
                "nsrun's holder (uid {me}) serves only nsrun run by root or by uid {me}, with CAP_NET_ADMIN"
            );
        }
        let is_sandbox_link = self
            .rtnl
            .get(route::get_link_by_index(ifindex as i32), "RTM_GETLINK")
            .ok()
            .and_then(|r| route::parse_link(&r))
            .is_some_and(|l| crate::addr::is_sandbox_link(&l.name));
        if !is_sandbox_link {
            bail!("link {ifindex} is not a sandbox's");
        }
        if self.clients[i].ifindex.is_some() {
            bail!("already registered");
        }
        if self.clients.iter().any(|c| c.ifindex == Some(ifindex)) {
            bail!("link {ifindex} is registered by another nsrun");
        }
        // The address must be the sandbox's end of that link's subnet: a client cannot
        // have the host masquerade (or publish into) any other address. The kernel's own
        // route to it says so in one request, however many addresses the host has: out
        // through that link, on it (no gateway), a unicast address (not the host's end,
        // which is local, nor the subnet's broadcast).
        const RTN_UNICAST: u8 = 1;
        let on_link = self
            .rtnl
            .get(route::get_route(sandbox), "RTM_GETROUTE sandbox")
            .ok()
            .and_then(|r| route::parse_route(&r))
            .is_some_and(|r| {
                r.oif == Some(ifindex) && r.rtype == RTN_UNICAST && r.gateway.is_none()
            });
        if !on_link {
            bail!("{sandbox} is not the sandbox's address on link {ifindex}");
        }
        // The host's forward path, looked at again at most every 200 ms: when many
        // sandboxes start at once they share one look.
        let fresh = self
            .forward_checked
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < FORWARD_CHECK_TTL);
        if !fresh {
            self.open_paths();
        }
        if let Some((_, Some(obstacle))) = &self.forward_checked {
            bail!("{obstacle}");
        }
        let mut batch = nft::Batch::new(nft::NFPROTO_INET);
        batch.add_rule_echo(TABLE, "postrouting", &firewall::masquerade(sandbox));
        let (msg, acked) = batch.finish();
        let replies = self
            .nft
            .transact(msg, &acked, &format!("add masquerade for {sandbox}"))?;
        self.clients[i].handle = replies.iter().find_map(|p| nft::rule_handle(p));
        #[cfg(debug_assertions)]
        eprintln!(
            "holder {} registers {ifindex} {:?}",
            std::process::id(),
            self.clients[i].name
        );
        self.clients[i].ifindex = Some(ifindex);
        self.clients[i].addr = Some(sandbox);
        self.forward_through(links)
    }

    /// Lets the sandboxes' traffic through other firewalls (iptables-legacy's, then every
    /// nf_tables one), and keeps what stands in the way, if anything, for 200 ms.
    fn open_paths(&mut self) {
        let obstacle = match self.open_legacy() {
            Err(e) => Some(e),
            Ok(()) => self.open_forward_path().err().map(|e| format!("{e:#}")),
        };
        self.forward_checked = Some((Instant::now(), obstacle));
    }

    /// iptables-legacy's FORWARD with policy DROP: the same accept entries as for
    /// nf_tables, last in FORWARD (before its policy), unless the host accepts nsrun's links
    /// already.
    fn open_legacy(&mut self) -> Result<(), String> {
        let table = match crate::xtables::read() {
            Ok(Some(table)) => table,
            Ok(None) => return Ok(()),
            Err(e) => {
                return Err(format!(
                    "the host has an iptables-legacy filter table that nsrun cannot read ({e}), so it cannot tell whether the sandbox would have a network; run nsrun with sudo on this host"
                ));
            }
        };
        if table.forward_policy() != Some(crate::xtables::VERDICT_DROP) || table.accepts_sandboxes()
        {
            return Ok(());
        }
        if table.nsruns() > 0 {
            self.legacy_opened = true; // in already (a killed holder's): adopted
            return Ok(());
        }
        let uplinks: Vec<String> = crate::host::uplinks(&mut self.rtnl)
            .into_iter()
            .map(|l| l.name)
            .collect();
        let entries: Vec<Vec<u8>> = firewall::foreign_accepts(&uplinks)
            .iter()
            .map(crate::xtables::foreign_entry)
            .collect();
        crate::xtables::update(|t| (t.nsruns() == 0).then(|| t.with_forward_tail(&entries)))
            .map_err(|e| legacy_refusal(table.has_chain("DOCKER-USER"), &e))?;
        self.legacy_opened = true;
        Ok(())
    }

    fn close_legacy(&mut self) {
        if std::mem::take(&mut self.legacy_opened) {
            let _ = crate::xtables::update(|t| (t.nsruns() > 0).then(|| t.without_nsruns()));
        }
    }

    /// Lets the sandboxes' traffic through every other firewall's forward chain that
    /// would drop it (firewall.rs, "Another firewall"): adds what is missing at its end, adopts
    /// what a killed holder left, leaves alone a chain whose owner let nsrun's
    /// interfaces through already.
    fn open_forward_path(&mut self) -> Result<()> {
        const NF_INET_FORWARD: u32 = 2;
        let chains: Vec<nft::ChainInfo> = self
            .nft
            .dump(nft::dump_chains(), "list the host's nf_tables chains")?
            .iter()
            .filter_map(|(_, p)| nft::parse_chain(p))
            .filter(|c| c.family == nft::NFPROTO_IPV4 || c.family == nft::NFPROTO_INET)
            .filter(|c| {
                !(c.family == nft::NFPROTO_INET && (c.table == TABLE || c.table == GUARD_TABLE))
            })
            .collect();
        let mut uplinks: Option<Vec<String>> = None;
        let mut tables_seen: Vec<(u8, String)> = Vec::new();
        for chain in &chains {
            let table = (chain.family, chain.table.clone());
            let first_look = !tables_seen.contains(&table);
            let forward = chain.hook == Some(NF_INET_FORWARD);
            if !forward && !first_look {
                continue;
            }
            let rules: Vec<nft::RuleInfo> = self
                .nft
                .dump(
                    nft::dump_rules(chain.family, &chain.table),
                    &format!("list table {} {}", family_name(chain.family), chain.table),
                )?
                .iter()
                .filter_map(|(_, p)| nft::parse_rule(p))
                .collect();
            if first_look {
                tables_seen.push(table);
                // What a killed holder left, anywhere in this table: ours to remove.
                for r in rules.iter().filter(|r| is_ours(r)) {
                    self.note_opened(chain.family, &chain.table, &r.chain);
                }
            }
            if !forward {
                continue;
            }
            let own: Vec<&nft::RuleInfo> = rules.iter().filter(|r| r.chain == chain.name).collect();
            let drops =
                chain.policy == Some(nft::NF_DROP) || own.last().is_some_and(|r| r.refuses_all());
            let let_through_by_owner = own
                .iter()
                .any(|r| !is_ours(r) && r.names_sandboxes && r.accepts());
            if !drops || let_through_by_owner {
                continue;
            }
            let uplinks = uplinks.get_or_insert_with(|| {
                crate::host::uplinks(&mut self.rtnl)
                    .into_iter()
                    .map(|l| l.name)
                    .collect()
            });
            // Last, so that the host's own rules (an admin's drop in DOCKER-USER, a
            // blocked destination) still decide first: just before a final refusing
            // rule, or at the end of a chain whose policy drops.
            let before = own
                .last()
                .filter(|r| r.refuses_all() && !is_ours(r))
                .map(|r| r.handle);
            let mut batch = nft::Batch::new(chain.family);
            let mut added = 0;
            for accept in firewall::foreign_accepts(uplinks) {
                if own
                    .iter()
                    .any(|r| r.comment.as_ref() == Some(&accept.comment))
                {
                    continue;
                }
                batch.add_rule_commented(
                    &chain.table,
                    &chain.name,
                    &accept.rule(),
                    &accept.comment,
                    before,
                );
                added += 1;
            }
            if added == 0 {
                continue;
            }
            let (msg, acked) = batch.finish();
            let what = format!(
                "let nsrun's interfaces through chain {} of table {} {}, which drops forwarded packets",
                chain.name,
                family_name(chain.family),
                chain.table
            );
            self.nft.transact(msg, &acked, &what)?;
            self.note_opened(chain.family, &chain.table, &chain.name);
        }
        Ok(())
    }

    fn note_opened(&mut self, family: u8, table: &str, chain: &str) {
        let opened = Opened {
            family,
            table: table.to_string(),
            chain: chain.to_string(),
        };
        if !self.opened.contains(&opened) {
            self.opened.push(opened);
        }
    }

    /// IPv4 forwarding changed somewhere. When the whole host became a router
    /// (`net.ipv4.ip_forward=1`, written by an admin, Docker, libvirt, Kubernetes), the
    /// links nsrun switched on are no longer nsrun's: their guards go (they would cut the
    /// new router's traffic through them), and they stay on when the holder exits.
    fn forwarding_changed(&mut self) {
        let Some(events) = &mut self.netconf_events else {
            return;
        };
        let all_on = events.notifications().iter().any(|(ty, payload)| {
            events::decode_netconf(*ty, payload)
                .is_some_and(|c| c.ifindex == events::NETCONF_ALL && c.forwarding == Some(1))
        });
        if all_on && !self.forwarding.is_empty() {
            self.forwarding.clear();
            self.drop_guards();
        }
    }

    /// Something changed in nf_tables. If it was another firewall's table while
    /// sandboxes run, look at the forward path again: a reload (which drops nsrun's
    /// rules) is repaired at once, and the next registration does not trust an old look.
    fn firewall_changed(&mut self) {
        let Some(events) = &mut self.nft_events else {
            return;
        };
        // New or deleted tables, chains and rules of a table not nsrun's.
        let foreign = events.notifications().iter().any(|(ty, payload)| {
            events::decode_nft(*ty, payload).is_some_and(|c| {
                c.object != events::NftObject::Set
                    && !(c.family == nft::NFPROTO_INET
                        && (c.table == TABLE || c.table == GUARD_TABLE))
            })
        });
        if !foreign {
            return;
        }
        self.forward_checked = None;
        if self.clients.iter().any(|c| c.addr.is_some()) {
            self.open_paths();
        }
    }

    /// Removes what nsrun put into other firewalls: every rule that carries its comment,
    /// found again by its comment. A firewall reloaded meanwhile may reuse the handles
    /// the holder was given, for rules of its own.
    fn close_forward_path(&mut self) {
        if self.opened.is_empty() {
            return;
        }
        let mut tables: Vec<(u8, String)> = Vec::new();
        for o in self.opened.drain(..) {
            if !tables.contains(&(o.family, o.table.clone())) {
                tables.push((o.family, o.table));
            }
        }
        for (family, table) in tables {
            let Ok(rules) = self.nft.dump(nft::dump_rules(family, &table), "list rules") else {
                continue;
            };
            let ours: Vec<nft::RuleInfo> = rules
                .iter()
                .filter_map(|(_, p)| nft::parse_rule(p))
                .filter(is_ours)
                .collect();
            for r in ours {
                let mut batch = nft::Batch::new(family);
                batch.del_rule(&table, &r.chain, r.handle);
                let (msg, acked) = batch.finish();
                let _ = self
                    .nft
                    .transact(msg, &acked, "remove nsrun's rule from another firewall");
            }
        }
    }

    /// Switches forwarding on for the links the sandboxes' traffic and replies use, and
    /// guards each one it switched: a packet that arrives there is forwarded only to a
    /// sandbox, so the host does not become a router for its neighbours. Restored when
    /// the holder exits.
    fn forward_through(&mut self, links: &[u32]) -> Result<Vec<String>> {
        let mut switched = Vec::new();
        for &index in links {
            if self.forwarding.iter().any(|(i, _)| *i == index) {
                continue;
            }
            let Some(link) = self
                .rtnl
                .get(route::get_link_by_index(index as i32), "RTM_GETLINK")
                .ok()
                .and_then(|r| route::parse_link(&r))
            else {
                continue;
            };
            if crate::addr::is_sandbox_link(&link.name) {
                continue; // a sandbox's own link: its nsrun switches it, and it is no uplink
            }
            if crate::host::forwarding_on(&link.name) {
                continue; // already a router here: not nsrun's to change or guard
            }
            // Guarded before it is switched on, in a table that outlives the holder: a
            // holder killed at any point leaves no link forwarding without its guard,
            // and the next one adopts it from there.
            self.guard(index, &link.name)?;
            self.forwarding.push((index, link.name.clone()));
            crate::host::set_forwarding(&link.name, true)?;
            switched.push(link.name);
        }
        Ok(switched)
    }

    /// On a link whose forwarding nsrun switched on: forward only to sandboxes.
    fn guard(&mut self, index: u32, name: &str) -> Result<()> {
        let batch = firewall::guard(index, name);
        let (msg, acked) = batch.finish();
        self.nft
            .transact(msg, &acked, &format!("guard forwarding on {name}"))?;
        Ok(())
    }

    /// The guards in [`GUARD_TABLE`]: (link name, index) of each.
    fn guards(&mut self) -> Vec<(String, u32)> {
        let Ok(rules) = self.nft.dump(
            nft::dump_rules(nft::NFPROTO_INET, GUARD_TABLE),
            "list table inet nsrun-guard",
        ) else {
            return Vec::new();
        };
        rules
            .iter()
            .filter_map(|(_, p)| nft::parse_rule(p))
            .filter_map(|r| {
                let comment = r.comment?;
                let (name, index) = comment.strip_prefix(GUARD_MARK)?.split_once(' ')?;
                Some((name.to_string(), index.parse().ok()?))
            })
            .collect()
    }

    /// Links a killed holder switched on (the guards it left): this holder keeps them
    /// guarded and switches them back when it exits. A link whose forwarding someone
    /// switched off since, or that is gone, is not nsrun's any more.
    fn adopt_forwarding(&mut self) {
        let guards = self.guards();
        if guards.is_empty() {
            return;
        }
        for (name, index) in guards {
            if name.contains('/') || self.forwarding.iter().any(|(_, n)| *n == name) {
                continue;
            }
            let link = self
                .rtnl
                .get(route::get_link(&name), "RTM_GETLINK")
                .ok()
                .and_then(|r| route::parse_link(&r));
            let Some(link) = link.filter(|_| crate::host::forwarding_on(&name)) else {
                continue;
            };
            let current = link.index as u32;
            if current != index && self.guard(current, &name).is_err() {
                continue;
            }
            self.forwarding.push((current, link.name));
        }
        if self.forwarding.is_empty() {
            self.drop_guards();
        }
    }

    /// Removes [`GUARD_TABLE`]: once forwarding is back as it was, or not nsrun's.
    fn drop_guards(&mut self) {
        let mut batch = nft::Batch::new(nft::NFPROTO_INET);
        batch.del_table(GUARD_TABLE);
        let (msg, acked) = batch.finish();
        let _ = self
            .nft
            .transact(msg, &acked, "delete table inet nsrun-guard");
    }

    /// What one registered sandbox may open on the host's addresses (the holder's input
    /// chain refuses the rest).
    fn allow_on_host(
        &mut self,
        i: usize,
        allow_host: bool,
        nameservers: &[Ipv4Addr],
    ) -> Result<()> {
        let Some(link) = self.clients[i].ifindex else {
            bail!("host access before registration");
        };
        let rules = firewall::host_exceptions(link, allow_host, nameservers);
        if rules.is_empty() {
            return Ok(());
        }
        // One transaction for all of them.
        let mut batch = nft::Batch::new(nft::NFPROTO_INET);
        for rule in &rules {
            batch.add_rule_echo(TABLE, firewall::HOST_EXCEPTIONS, rule);
        }
        let (msg, acked) = batch.finish();
        let replies = self
            .nft
            .transact(msg, &acked, "let a sandbox reach the host")?;
        for handle in replies.iter().filter_map(|r| nft::rule_handle(r)) {
            self.clients[i]
                .published
                .push((firewall::HOST_EXCEPTIONS, handle));
        }
        Ok(())
    }

    /// DNAT for one published port of a registered sandbox.
    fn publish(&mut self, i: usize, p: &crate::plan::Publish) -> Result<()> {
        let Some(sandbox) = self.clients[i].addr else {
            bail!("publish before registration");
        };
        if p.proto != nft::IPPROTO_TCP && p.proto != nft::IPPROTO_UDP {
            bail!("only tcp and udp ports are published");
        }
        self.check_publish(self.clients[i].uid, p)?;
        let rule = firewall::publish_rule(p, sandbox);
        let mut handles = Vec::new();
        for chain in ["prerouting", "output"] {
            let mut batch = nft::Batch::new(nft::NFPROTO_INET);
            batch.add_rule_echo(TABLE, chain, &rule);
            let (msg, acked) = batch.finish();
            let replies = self.nft.transact(
                msg,
                &acked,
                &format!(
                    "publish port {} to {sandbox}:{}",
                    p.host_port, p.sandbox_port
                ),
            )?;
            if let Some(handle) = replies.iter().find_map(|r| nft::rule_handle(r)) {
                self.clients[i].published.push((chain, handle));
                handles.push((chain, handle));
            }
        }
        self.clients[i].ports.push((*p, handles));
        Ok(())
    }

    /// A published port stays only while its client holds it (the reservation nsrun keeps
    /// for the sandbox's life) and nobody else does: a client that let go of the port
    /// must not keep redirecting it, from the network, away from whoever binds it next.
    fn check_held_ports(&mut self) {
        let bound = crate::host::BoundPorts::read();
        for i in 0..self.clients.len() {
            let uid = self.clients[i].uid;
            let (kept, lost): (Vec<_>, Vec<_>) = std::mem::take(&mut self.clients[i].ports)
                .into_iter()
                .partition(|(p, _)| {
                    let on = p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
                    bound.held_alone(p.proto, on, p.host_port, uid)
                });
            self.clients[i].ports = kept;
            for (_, handles) in lost {
                for (chain, handle) in handles {
                    let mut batch = nft::Batch::new(nft::NFPROTO_INET);
                    batch.del_rule(TABLE, chain, handle);
                    let (msg, acked) = batch.finish();
                    let _ = self
                        .nft
                        .transact(msg, &acked, "delete a port no longer held");
                    self.clients[i].published.retain(|h| *h != (chain, handle));
                }
            }
        }
    }

    /// A published port is checked here as nsrun's command line and the kernel's bind
    /// check it for the user who asks (a client's request is never trusted): the host
    /// address must be one of the host's own (or every address), and a port below
    /// `ip_unprivileged_port_start` needs root.
    fn check_publish(&mut self, uid: u32, p: &crate::plan::Publish) -> Result<()> {
        if p.host_port == 0 || p.sandbox_port == 0 {
            bail!("port 0 is not published");
        }
        if let Some(ip) = p.host_ip {
            let local = self
                .rtnl
                .dump(route::dump_addrs(), "RTM_GETADDR dump")?
                .iter()
                .filter_map(|(_, p)| route::parse_addr(p))
                .filter(|a| !crate::addr::is_sandbox_link(&a.label))
                .any(|a| a.net.addr == ip);
            if !local || ip.is_loopback() {
                bail!(
                    "-p {ip}:{}: {ip} is not an address of the host",
                    p.host_port
                );
            }
        }
        // The port must be one the client holds itself (nsrun reserves every port it
        // publishes, so a port a service or another user has is refused): otherwise a
        // user could redirect another's service from the network into their sandbox.
        let on = p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let bound = crate::host::BoundPorts::read();
        if !bound.held_by(p.proto, on, p.host_port, uid) {
            bail!(
                "-p {on}:{}: the port is not reserved by its nsrun (uid {uid})",
                p.host_port
            );
        }
        if bound.held_by_others(p.proto, on, p.host_port, uid) {
            bail!(
                "-p {on}:{}: another user holds the port too (SO_REUSEADDR)",
                p.host_port
            );
        }
        let unprivileged_start =
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
                .ok()
                .and_then(|v| v.trim().parse::<u32>().ok())
                .unwrap_or(1024);
        if uid != 0 && u32::from(p.host_port) < unprivileged_start {
            bail!(
                "-p {}: ports below {unprivileged_start} are published only by root",
                p.host_port
            );
        }
        Ok(())
    }

    fn release(&mut self, client: &Client) {
        // The holder serves only root or its own uid (a file-capability install): a
        // client can have it remove only a file of its own, still of the same inode.
        if let Some((path, inode, device)) = &client.info_file {
            crate::info::remove_if_same(path, *inode, *device);
        }
        for (chain, handle) in &client.published {
            let mut batch = nft::Batch::new(nft::NFPROTO_INET);
            batch.del_rule(TABLE, chain, *handle);
            let (msg, acked) = batch.finish();
            let _ = self.nft.transact(msg, &acked, "delete a published port");
        }
        #[cfg(debug_assertions)]
        eprintln!(
            "holder {} releases {:?} {:?}",
            std::process::id(),
            client.ifindex,
            client.name
        );
        if let Some(handle) = client.handle {
            let mut batch = nft::Batch::new(nft::NFPROTO_INET);
            batch.del_rule(TABLE, "postrouting", handle);
            let (msg, acked) = batch.finish();
            let _ = self.nft.transact(msg, &acked, "delete a masquerade rule");
        }
        if let Some(index) = client.ifindex {
            self.links.push((index, Instant::now() + LINK_GRACE));
        }
        if let Some(name) = &client.name {
            self.names.push((name.clone(), Instant::now() + LINK_GRACE));
        }
    }

    /// A name nsrun did not remove itself (it was killed): remove it, unless another
    /// sandbox holds the name by now (its lock). Done after the grace period, when a
    /// killed nsrun's files, its lock among them, are surely closed.
    fn remove_names(&mut self, all: bool) {
        let now = Instant::now();
        let (mut due, later): (Vec<_>, Vec<_>) =
            self.names.drain(..).partition(|(_, at)| all || *at <= now);
        self.names = later;
        if all || !due.is_empty() {
            // Also names whose nsrun was killed before it told the holder: their lock
            // files are old and nobody holds them (a lock file seconds old is an nsrun
            // still starting).
            if let Ok(dir) = std::fs::read_dir(crate::names::STATE_DIR) {
                for entry in dir.flatten() {
                    let file = entry.file_name().to_string_lossy().into_owned();
                    let Some(name) = crate::names::name_of_lock(&file) else {
                        continue;
                    };
                    let old = entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > Duration::from_secs(2));
                    if (old || all) && !due.iter().any(|(n, _)| n == name) {
                        due.push((name.to_string(), now));
                    }
                }
            }
        }
        for (name, _) in due {
            if crate::plan::validate_netns_name(&name).is_err() {
                continue;
            }
            let Ok(file) = std::fs::File::open(crate::names::lock_path(&name)) else {
                continue; // nsrun removed it on its way out
            };
            // Held: a running nsrun has the name (again). Otherwise it is a killed
            // nsrun's, and only a namespace it recorded is removed.
            if let Ok(_held) =
                nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            {
                crate::names::remove_stale(&name);
            }
        }
    }

    /// Deletes host ends whose sandbox is over but whose namespace something still holds.
    /// Normally the kernel has removed them with the namespace already.
    fn remove_links(&mut self, all: bool) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) =
            self.links.drain(..).partition(|(_, at)| all || *at <= now);
        self.links = later;
        for (index, _) in due {
            let Ok(reply) = self
                .rtnl
                .get(route::get_link_by_index(index as i32), "RTM_GETLINK")
            else {
                continue; // gone already
            };
            let is_ours =
                route::parse_link(&reply).is_some_and(|l| crate::addr::is_sandbox_link(&l.name));
            if is_ours {
                let _ = self
                    .rtnl
                    .request(route::del_link(index as i32), "RTM_DELLINK");
            }
        }
    }
}
