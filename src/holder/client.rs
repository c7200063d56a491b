//! The holder's clients: nsrun registers its sandbox, keeps the registration while the
//! sandbox runs (again with a new holder if the old one dies), and starts a holder when
//! none runs.

use super::*;

/// A sandbox's registration with the holder; dropping it (or nsrun's death) ends it.
pub struct Lease {
    sock: OwnedFd,
    holder: libc::pid_t,
    /// Links whose forwarding this registration switched on, space-separated.
    pub switched: String,
    /// Other firewalls' forward chains that hold nsrun's accept rules, comma-separated.
    pub opened: String,
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
        if !trusted_peer(peer.uid(), holder, me) {
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
