//! The parent's sequence of steps, on the host side. Each step's undo is owned by a guard
//! or done by the kernel: the veth dies with the sandbox's network namespace, the
//! nf_tables table with nsrun's netlink socket, the sandbox with its init.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use anyhow::{Context, Result, anyhow, bail};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::SockProtocol;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, pipe2};

use crate::addr::{SANDBOX_PREFIX, SandboxNet, free_subnets};
use crate::child::{self, ChildConfig, Go};
use crate::dns::{self, Decision};
use crate::host::{self, NetFacts};
use crate::netlink::{self, Socket, nft, route};
use crate::plan::{self, NetPlan, Plan, Privilege};
use crate::relay::Relay;
use crate::supervise::{self, FORWARDED, Report};
use crate::{firewall, users};

/// MTU when the host has no default route to copy one from.
const FALLBACK_MTU: u32 = 1500;
/// How many subnets to try when other nsrun instances take them first.
const MAX_ATTEMPTS: usize = 512;

macro_rules! verbose {
    ($plan:expr, $($arg:tt)*) => {
        if $plan.verbose { eprintln!("nsrun: {}", format!($($arg)*)); }
    };
}

/// Everything read from the host before anything changes.
struct NetPrep {
    plan: NetPlan,
    rtnl: Socket,
    nft: Socket,
    facts: NetFacts,
    dns: Decision,
    host_dns: dns::HostDns,
}

/// The live host side of a sandbox's network. Dropping it closes the nf_tables socket,
/// which deletes the sandbox's table.
struct Network {
    _nft: Socket,
    net: SandboxNet,
}

/// The sandbox's init. Dropping the guard kills and reaps it, which ends every process
/// in the sandbox and, with them, its network namespace and veth pair.
struct Init {
    pid: Pid,
    status: Option<i32>,
}

impl Drop for Init {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

pub fn run(plan: Plan) -> Result<i32> {
    // 1. Privileges and identity, before touching anything.
    let creds = host::creds();
    let privilege = plan::privilege(&creds, plan.network.is_some())?;
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
    verbose!(
        plan,
        "{privilege:?} mode; the command runs as uid {} gid {} groups {:?}",
        identity.uid,
        identity.gid,
        identity.groups
    );

    // 2. Read the host: addresses, routes, uplink, DNS; check nf_tables is there.
    let prep = plan
        .network
        .map(|np| prepare_network(np, &plan))
        .transpose()?;
    let resolv_conf = prep
        .as_ref()
        .filter(|p| !p.host_dns.resolv_missing)
        .map(|p| dns::render_resolv_conf(&dns::sandbox_nameservers(&p.dns), &p.host_dns));
    let hosts = plan
        .hostname
        .as_ref()
        .map(|h| dns::render_hosts(&host::read_etc("/etc/hosts"), h));

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
    let (go_read, go_write) = pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    let (report_read, report_write) = pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    let mut flags = CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID;
    if plan.hostname.is_some() {
        flags |= CloneFlags::CLONE_NEWUTS;
    }
    if privilege == Privilege::UserNamespace {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    let cfg = ChildConfig {
        command: plan.command.clone(),
        identity: identity.clone(),
        change_identity: privilege == Privilege::Root,
        hostname: plan
            .hostname
            .as_ref()
            .and_then(|h| std::ffi::CString::new(h.as_str()).ok()),
        resolv_conf,
        hosts,
        go_read,
        report_write,
        signals,
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
    let mut init = Init { pid, status: None };
    verbose!(plan, "sandbox init is pid {pid} (namespaces: {flags:?})");

    if privilege == Privilege::UserNamespace {
        map_caller(pid, &identity)?;
    }

    // 5. The host side of the network, then "go".
    let relay_plan = match prep.as_ref().map(|p| &p.dns) {
        Some(Decision::Relay { upstream, listen }) => Some((*upstream, *listen)),
        _ => None,
    };
    let network = prep
        .map(|prep| setup_network(prep, pid, &plan))
        .transpose()?;
    let relay = match relay_plan {
        Some((upstream, listen)) => Some(Relay::start(pid, upstream, listen).with_context(|| {
            format!("start the DNS relay to {upstream} (give the sandbox nameservers with --dns ADDR instead)")
        })?),
        None => None,
    };
    let go = match &network {
        Some(n) => Go::Network {
            addr: n.net.sandbox_addr,
            prefix: SANDBOX_PREFIX,
            gateway: n.net.host_addr,
        },
        None => Go::NoNetwork,
    };
    nix::unistd::write(&go_write, &go.encode()).context("start the sandbox")?;
    drop(go_write);

    // 6. Supervise until the sandbox's init ends.
    let code = supervise(&mut init, &sfd, report_read, relay)?;
    drop(network);
    Ok(code)
}

fn prepare_network(np: NetPlan, plan: &Plan) -> Result<NetPrep> {
    let mut rtnl = Socket::open(SockProtocol::NetlinkRoute).context("open rtnetlink")?;
    let facts = host::net_facts(&mut rtnl)?;
    let mut nft = Socket::open(SockProtocol::NetlinkNetFilter)
        .map_err(|e| anyhow!(plan::no_nf_tables(&e)))?;
    // A harmless query: ENOENT means nf_tables answers.
    match nft.get(nft::get_table("nsrun-probe"), "nf_tables GETTABLE") {
        Err(e) if netlink::errno_of(&e) == Some(libc::ENOENT) => {}
        Err(e) if netlink::errno_of(&e).is_some_and(plan::nf_tables_missing) => {
            bail!(plan::no_nf_tables(&e))
        }
        Err(e) => return Err(e.into()),
        Ok(_) => {}
    }
    let host_dns = dns::read_host_config(!plan.dns.is_empty())?;
    let decision = dns::decide(&plan.dns, &host_dns);
    verbose!(plan, "DNS: {decision:?}");
    Ok(NetPrep {
        plan: np,
        rtnl,
        nft,
        facts,
        dns: decision,
        host_dns,
    })
}

/// veth, owned nf_tables table, addresses, link up, forwarding. The table exists before
/// either end of the veth is up, so no packet passes unfiltered.
fn setup_network(mut prep: NetPrep, pid: Pid, plan: &Plan) -> Result<Network> {
    let mtu = prep
        .facts
        .uplink
        .as_ref()
        .map(|l| l.mtu)
        .filter(|m| *m >= 576)
        .unwrap_or(FALLBACK_MTU);
    let pool = prep.plan.pool;
    let start = u64::from(std::process::id()).wrapping_mul(2654435761)
        ^ u64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0),
        );
    let mut chosen = None;
    for (attempt, candidate) in free_subnets(pool, &prep.facts.used, start).enumerate() {
        if attempt >= MAX_ATTEMPTS {
            break;
        }
        let what = format!("create veth {}/eth0", candidate.host_end);
        match prep.rtnl.request(
            route::new_veth(
                candidate.host_end.as_str(),
                "eth0",
                pid.as_raw() as u32,
                mtu,
            ),
            &what,
        ) {
            Ok(()) => {
                chosen = Some(candidate);
                break;
            }
            // Another nsrun holds this subnet (its link name is taken): try the next.
            Err(e) if netlink::errno_of(&e) == Some(libc::EEXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let net = chosen.ok_or_else(|| {
        anyhow!("address pool {pool} is exhausted: every /30 in it is in use on this host; give a larger or other range, e.g. '--pool 10.201.0.0/16'")
    })?;
    verbose!(
        plan,
        "veth {}/eth0, mtu {mtu}, subnet {} (host {}, sandbox {})",
        net.host_end,
        net.subnet,
        net.host_addr,
        net.sandbox_addr
    );

    let reply = prep.rtnl.get(
        route::get_link(net.host_end.as_str()),
        &format!("RTM_GETLINK {}", net.host_end),
    )?;
    let index = route::parse_link(&reply)
        .map(|l| l.index)
        .context("parse RTM_NEWLINK reply")?;
    let chains = firewall::chains(
        &net,
        index as u32,
        &prep.plan,
        dns::direct_nameservers(&prep.dns),
    );
    let (msg, acked) = firewall::batch(&net, &chains).finish();
    let table = firewall::table_name(&net);
    prep.nft
        .transact(msg, &acked, &format!("create nf_tables table ip {table}"))
        .map_err(|e| anyhow!("{e}: is nf_tables with NAT (nft_masq, nft_chain_nat) available?"))?;
    verbose!(
        plan,
        "nf_tables table ip {table} (owner: removed when nsrun exits): {}",
        describe_policy(&prep.plan)
    );

    host::disable_ipv6(net.host_end.as_str())?;
    prep.rtnl.request(
        route::add_addr(index, net.host_addr, SANDBOX_PREFIX),
        &format!("add {}/{SANDBOX_PREFIX} to {}", net.host_addr, net.host_end),
    )?;
    prep.rtnl
        .request(route::set_up(index), &format!("bring {} up", net.host_end))?;

    host::enable_forwarding(net.host_end.as_str())?;
    match &prep.facts.uplink {
        Some(uplink) => {
            if host::enable_forwarding(&uplink.name)? {
                verbose!(
                    plan,
                    "set net.ipv4.conf.{}.forwarding=1 (was 0); left set, as replies to every sandbox arrive there",
                    uplink.name
                );
            } else {
                verbose!(
                    plan,
                    "net.ipv4.conf.{}.forwarding is already 1",
                    uplink.name
                );
            }
        }
        None => verbose!(
            plan,
            "the host has no default route: the sandbox reaches only the host's own networks"
        ),
    }
    Ok(Network {
        _nft: prep.nft,
        net,
    })
}

fn describe_policy(np: &NetPlan) -> String {
    let host = if np.allow_host {
        "host open"
    } else {
        "host closed"
    };
    let lan = if np.block_lan { ", LAN closed" } else { "" };
    format!("NAT through the uplink, {host}, link-local and other sandboxes closed{lan}")
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
    init: &mut Init,
    sfd: &SignalFd,
    report_read: OwnedFd,
    mut relay: Option<Relay>,
) -> Result<i32> {
    fcntl(
        report_read.as_raw_fd(),
        FcntlArg::F_SETFL(OFlag::O_NONBLOCK),
    )
    .context("fcntl")?;
    let mut report_pipe = Some(std::fs::File::from(report_read));
    let mut reports = Vec::new();
    loop {
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if let Some(p) = &report_pipe {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
        }
        let relay_at = fds.len();
        if let Some(r) = &relay {
            fds.extend(r.poll_fds());
        }
        match poll(
            &mut fds,
            PollTimeout::from(if relay.is_some() { 1000u16 } else { u16::MAX }),
        ) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e).context("poll"),
        }
        let relay_ready: Vec<bool> = fds[relay_at..]
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if let Some(r) = &mut relay {
            r.service(&relay_ready);
        }
        if let Some(p) = &mut report_pipe {
            if drain(p, &mut reports) {
                report_pipe = None;
            }
        }
        while let Ok(Some(info)) = sfd.read_signal() {
            let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            if sig != Signal::SIGCHLD {
                let _ = kill(init.pid, sig);
            }
        }
        match waitpid(init.pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => init.status = Some(code << 8),
            Ok(WaitStatus::Signaled(_, sig, _)) => init.status = Some(sig as i32),
            Ok(_) => continue,
            Err(e) => return Err(e).context("wait for the sandbox"),
        }
        // Every process of the sandbox is gone with its init: read what is left.
        if let Some(p) = &mut report_pipe {
            drain(p, &mut reports);
        }
        let (message, code) = supervise::outcome(&Report::decode_all(&reports), init.status);
        if let Some(m) = message {
            eprintln!("nsrun: {m}");
        }
        return Ok(code);
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
