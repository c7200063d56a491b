//! Inside the sandbox: nsrun's init (PID 1) sets up the namespaces, starts the command,
//! forwards signals, reaps zombies, and reports the command's status. Every path ends in
//! exec or `_exit`.

use std::ffi::CString;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::mount::{MsFlags, mount};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::SockProtocol;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Gid, Pid, Uid, setresgid, setresuid, setsid};

use crate::netlink::{Socket, route};
use crate::supervise::{FORWARDED, Report, to_group};
use crate::sys;
use crate::users::Identity;

/// Everything the init needs, prepared by the parent before the clone.
pub struct ChildConfig {
    pub command: Vec<CString>,
    pub identity: Identity,
    /// Change uid, gid and groups (root); otherwise the command keeps nsrun's own ids.
    pub change_identity: bool,
    pub hostname: Option<CString>,
    /// Contents of the sandbox's /etc/resolv.conf, when it gets one.
    pub resolv_conf: Option<String>,
    /// Contents of the sandbox's /etc/hosts, when it gets one.
    pub hosts: Option<String>,
    pub go_read: OwnedFd,
    pub report_write: OwnedFd,
    /// Signals nsrun blocked before the clone; the init reads them from a signalfd.
    pub signals: SigSet,
}

/// What the parent sends when the host side is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Go {
    NoNetwork,
    Network {
        addr: Ipv4Addr,
        prefix: u8,
        gateway: Ipv4Addr,
    },
}

impl Go {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Go::NoNetwork => vec![1],
            Go::Network {
                addr,
                prefix,
                gateway,
            } => {
                let mut v = vec![2];
                v.extend_from_slice(&addr.octets());
                v.push(*prefix);
                v.extend_from_slice(&gateway.octets());
                v
            }
        }
    }

    pub fn decode(b: &[u8]) -> Option<Go> {
        match b {
            [1] => Some(Go::NoNetwork),
            [2, a, b, c, d, prefix, e, f, g, h] => Some(Go::Network {
                addr: Ipv4Addr::new(*a, *b, *c, *d),
                prefix: *prefix,
                gateway: Ipv4Addr::new(*e, *f, *g, *h),
            }),
            _ => None,
        }
    }
}

/// A failed step: its name and errno.
struct StepError(String, i32);

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

/// The sandbox's PID 1. Never returns.
pub fn init(cfg: ChildConfig) -> ! {
    // If nsrun dies from here on, so does the sandbox: the kernel kills every process in
    // a PID namespace when its init exits.
    if sys::set_pdeathsig(libc::SIGKILL).is_err() {
        sys_exit(125);
    }
    // Keep only stdio and our two pipe ends: nothing of nsrun's (netlink sockets, the
    // other pipe ends) stays open in the sandbox.
    let keep = [
        0,
        1,
        2,
        cfg.go_read.as_raw_fd(),
        cfg.report_write.as_raw_fd(),
    ];
    if sys::close_all_except(&keep).is_err() {
        sys_exit(125);
    }
    // Our own process group, so a terminal's Ctrl-C reaches nsrun once, and nsrun alone
    // forwards it.
    let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));

    // Wait for the host side. EOF means nsrun failed or died before PDEATHSIG was set.
    let mut buf = [0u8; 16];
    let mut go_pipe =
        std::fs::File::from(cfg.go_read.try_clone().unwrap_or_else(|_| sys_exit(125)));
    let n = loop {
        match go_pipe.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) | Ok(0) => sys_exit(125),
            Ok(n) => break n,
        }
    };
    drop(go_pipe);
    let Some(go) = Go::decode(&buf[..n]) else {
        sys_exit(125)
    };

    match setup(&cfg, go) {
        Ok((files, command)) => supervise(&cfg, files, command),
        Err(StepError(step, errno)) => {
            report(&cfg.report_write, &Report::SetupFailed { step, errno });
            sys_exit(125)
        }
    }
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

fn setup(cfg: &ChildConfig, go: Go) -> Result<(Option<PrivateFiles>, Pid), StepError> {
    // Mount propagation private before the first mount, so nothing reaches the host.
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
    .step(|| "mount a fresh /sys".into())?;

    let mut rtnl =
        Socket::open(SockProtocol::NetlinkRoute).step(|| "open rtnetlink in the sandbox".into())?;
    rtnl.request(route::set_up(1), "lo up")
        .step(|| "bring lo up".into())?;
    if let Go::Network {
        addr,
        prefix,
        gateway,
    } = go
    {
        let reply = rtnl
            .get(route::get_link("eth0"), "RTM_GETLINK eth0")
            .step(|| "find eth0".into())?;
        let eth0 = route::parse_link(&reply)
            .map(|l| l.index)
            .ok_or_else(|| StepError("find eth0".into(), libc::ENODEV))?;
        rtnl.request(route::add_addr(eth0, addr, prefix), "")
            .step(|| format!("add {addr}/{prefix} to eth0"))?;
        rtnl.request(route::set_up(eth0), "")
            .step(|| "bring eth0 up".into())?;
        rtnl.request(route::add_default_route(gateway, eth0), "")
            .step(|| format!("add default route via {gateway}"))?;
    }
    drop(rtnl);

    if let Some(name) = &cfg.hostname {
        nix::unistd::sethostname(name.to_str().unwrap_or_default())
            .step(|| "set the host name".into())?;
    }

    let files = private_files(cfg)?;
    let command = match sys::fork().step(|| "fork the command".into())? {
        None => exec_command(cfg),
        Some(pid) => pid,
    };
    Ok((files, command))
}

fn private_files(cfg: &ChildConfig) -> Result<Option<PrivateFiles>, StepError> {
    let contents: Vec<(&'static str, &String)> = [
        ("resolv.conf", cfg.resolv_conf.as_ref()),
        ("hosts", cfg.hosts.as_ref()),
    ]
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
    let program = &cfg.command[0];
    let err = nix::unistd::execvp(program, &cfg.command).unwrap_err();
    report(
        &cfg.report_write,
        &Report::ExecFailed {
            command: program.to_string_lossy().into_owned(),
            errno: err as i32,
        },
    );
    sys_exit(crate::supervise::exec_failure_code(err as i32))
}

fn drop_privileges(cfg: &ChildConfig) -> Result<(), StepError> {
    sys::default_sigpipe();
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .step(|| "reset the signal mask".into())?;
    // A new session: no controlling terminal, so no TIOCSTI into the caller's terminal.
    setsid().step(|| "setsid".into())?;
    sys::drop_bounding_set().step(|| "empty the capability bounding set".into())?;
    let id = &cfg.identity;
    if cfg.change_identity {
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
fn supervise(cfg: &ChildConfig, files: Option<PrivateFiles>, command: Pid) -> ! {
    let Ok(sfd) =
        SignalFd::with_flags(&cfg.signals, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
    else {
        let _ = kill(command, Signal::SIGKILL);
        sys_exit(125)
    };
    loop {
        let watch = files.as_ref().and_then(|f| f.watch.as_ref());
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if let Some(w) = watch {
            fds.push(PollFd::new(w.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => sys_exit(125),
        }
        let inotify_ready = fds
            .get(1)
            .and_then(|f| f.revents())
            .is_some_and(|r| !r.is_empty());
        drop(fds);
        if inotify_ready {
            if let Some(f) = &files {
                f.refresh();
            }
        }
        while let Ok(Some(info)) = sfd.read_signal() {
            let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            if sig == Signal::SIGCHLD {
                continue;
            }
            if FORWARDED.contains(&sig) {
                let target = if to_group(sig) {
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

fn finish(cfg: &ChildConfig, raw_status: i32) -> ! {
    report(&cfg.report_write, &Report::Status(raw_status));
    sys_exit(0)
}

fn sys_exit(code: i32) -> ! {
    sys::exit_now(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_messages_round_trip() {
        for go in [
            Go::NoNetwork,
            Go::Network {
                addr: Ipv4Addr::new(10, 200, 0, 6),
                prefix: 30,
                gateway: Ipv4Addr::new(10, 200, 0, 5),
            },
        ] {
            assert_eq!(Go::decode(&go.encode()), Some(go));
        }
        assert_eq!(Go::decode(&[]), None);
        assert_eq!(Go::decode(&[2, 1]), None);
    }
}
