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
//! are in proto/holder.rs: register a sandbox (its masquerade rule, the other firewalls opened
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
//! nsrun fail, with a message naming it. Root and every user of a file-capability
//! install share one holder, whichever of them started it: a peer of another uid is
//! served (and trusted as a holder) when it has CAP_NET_ADMIN in the holder's own user
//! namespace, so it could change the host's firewall itself; one of another uid without
//! it is closed at once, as is one whose capabilities are those of a user namespace of
//! its own.
//!
//! The parts: `client` (what nsrun does: register, keep the registration, start a
//! holder), `server` (the holder process: its loop and the host table), and under it
//! `nat` (masquerade, published ports, host exceptions), `forwarding` (per-link
//! forwarding and its guard), `foreign` (other firewalls' forward chains) and `cleanup`
//! (what a killed nsrun left).

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
    Backlog, MsgFlags, SockFlag, SockProtocol, UnixAddr, accept4, bind, connect, getsockopt,
    listen, recv, send, sockopt,
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
/// How often, while sandboxes are routed and no notifications come, the holder reads
/// the host's nf_tables generation for a firewall that started or changed (Docker
/// starting after a service's sandbox).
const GEN_CHECK: Duration = Duration::from_secs(1);
/// How often the holder looks whether each published port is still its client's alone.
const PORTS_CHECK: Duration = Duration::from_millis(500);
use crate::firewall::{GUARD_MARK, GUARD_TABLE};

mod client;
mod server;

pub use client::{Keeper, Registration, register};
pub use server::holder_main;

/// The environment variable that makes nsrun's binary a holder (with argv[0]
/// `nsrun-holder`): its value is the descriptor of the pipe that hears "ok", "busy" or why
/// it failed.
pub const HOLDER_ENV: &str = "NSRUN_HOLDER_READY";

fn addr() -> UnixAddr {
    UnixAddr::new_abstract(NAME).expect("a short abstract name")
}

fn seqpacket() -> Result<OwnedFd> {
    crate::locks::seqpacket("nsrun's holder")
}

/// Who the holder and its clients trust: root, and the uid the other runs as (a
/// file-capability install used by one user).
fn trusted_uid(peer: u32, me: u32) -> bool {
    peer == 0 || peer == me
}

/// Whether process `pid` (of uid `uid`) may be the holder's client, or a client's
/// holder: one that administers this host's network already. Root or our own uid with
/// CAP_NET_ADMIN, or any uid with CAP_NET_ADMIN in this user namespace (a
/// file-capability install used by several users, and root beside them: whichever
/// started the holder serves the others). Such a process can change the host's
/// firewall itself; the holder gives it nothing more. A process with capabilities in a
/// user namespace of its own has none here, and is not trusted.
fn trusted_peer(uid: u32, pid: libc::pid_t, me: u32) -> bool {
    has_net_admin(pid) && (trusted_uid(uid, me) || same_user_namespace(pid))
}

/// Whether process `pid` is in this process's user namespace (false when that cannot be
/// read: another user's process, for a client without CAP_SYS_PTRACE).
fn same_user_namespace(pid: libc::pid_t) -> bool {
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/user")).ok();
    matches!((ns(&pid.to_string()), ns("self")), (Some(a), Some(b)) if a == b)
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
