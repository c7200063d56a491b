//! `--network NAME`: several sandboxes on one private network, the tutorials' bridge lab.
//!
//! Where it lives: a network namespace of the network's own holds its bridge (`br0`),
//! one port per member (a veth whose other end is the member's eth0) and the network's
//! link to the host (`uplink` there; `nsr...` on the host, the members' gateway, with NAT
//! and the host's rules as for any sandbox's link). The bridge is never in the host's
//! namespace, so the host's firewall (Docker's br_netfilter with FORWARD policy DROP)
//! never sees what members send each other, and the host is not on their segment.
//!
//! What keeps it: descriptors only. Every member's nsrun holds the namespace, the
//! network's listening socket `@nsrun-net-NAME` and the lock of its host link; the kernel
//! frees them with the last holder, however members end, and the namespace takes the
//! bridge, the ports and the host link with it. A sandbox that joins gets the three from
//! any member over that socket (proto/network.rs); one that fails to join takes nothing
//! with it, and a network whose maker fails is gone with the maker.
//!
//! Who is on it: the kernel's own list of ports. A member's port is named after its
//! address (`nsrp` + 8 hex digits), so two sandboxes cannot take one address (EEXIST), and
//! its alias says who it is (`nsrun PID NAME...`); it goes with the member's namespace.
//! The names members' resolvers answer are read from that list, per query.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::socket::{
    Backlog, SockFlag, UnixAddr, accept4, bind, connect, getsockopt, listen, sockopt,
};
use nix::unistd::Pid;

use crate::addr::{Ipv4Net, LinkName, SandboxNet, member_range};
use crate::netlink::{self, Socket, route};
use crate::proto::network::{Offer, socket_name};

/// The bridge, in the network's namespace.
pub const BRIDGE: &str = "br0";
/// The network's end of its link to the host, a port of the bridge.
const UPLINK: &str = "uplink";
/// A member's port: this, then its address in 8 hex digits.
const PORT_PREFIX: &str = "nsrp";
/// The alias of a network's host link: this, then the network's name.
pub const HOST_LINK_ALIAS: &str = "nsrun network ";
/// The size of a subnet taken from the pool.
pub const SUBNET_PREFIX: u8 = 24;
/// How long a joining sandbox waits for a member to answer (one that is still making
/// the network answers once it has).
const JOIN_WAIT: Duration = Duration::from_secs(10);
/// How long a link or port left by a dead sandbox may take to go.
const LEFTOVER_WAIT: Duration = Duration::from_secs(2);

/// The network's names inside its members: `NAME.NETWORK.nsrun.internal` (and `NAME`).
pub fn domain(network: &str) -> String {
    format!("{}.nsrun.internal", network.to_ascii_lowercase())
}

/// The members' gateway: the host's end of the network's link.
pub fn gateway(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + 1)
}

/// The host link's name: that of a lone sandbox's /30 at the subnet's start, so the two
/// share one lock and never collide.
pub fn host_end(subnet: Ipv4Net) -> LinkName {
    SandboxNet::for_subnet(subnet.network()).host_end
}

/// A member's MAC address, derived from the network's name and the member's address:
/// locally administered (02:), the same each time, so a member restarted on its address
/// keeps its MAC and its peers' ARP caches stay right.
pub fn mac(network: &str, addr: Ipv4Addr) -> [u8; 6] {
    // FNV-1a: stable across builds and runs.
    let mut h: u32 = 0x811c_9dc5;
    for b in network.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let o = addr.octets();
    [
        0x02,
        h.to_le_bytes().iter().fold(0, |a, b| a ^ b),
        o[0],
        o[1],
        o[2],
        o[3],
    ]
}

pub fn port_name(addr: Ipv4Addr) -> String {
    format!("{PORT_PREFIX}{:08x}", u32::from(addr))
}

/// One member, as its port says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub index: i32,
    pub addr: Ipv4Addr,
    /// Its nsrun; None while the port is being made.
    pub nsrun_pid: Option<u32>,
    /// Its --name and --hostname.
    pub names: Vec<String>,
}

impl Member {
    pub fn describe(&self) -> String {
        match self.names.first() {
            Some(n) => format!("{n} ({})", self.addr),
            None => self.addr.to_string(),
        }
    }
}

/// A member from an RTM_NEWLINK of the network's namespace; None for anything else.
pub fn parse_port(payload: &[u8]) -> Option<Member> {
    let link = route::parse_link(payload)?;
    let hex = link.name.strip_prefix(PORT_PREFIX)?;
    if hex.len() != 8 {
        return None;
    }
    let addr = Ipv4Addr::from(u32::from_str_radix(hex, 16).ok()?);
    let alias = route::parse_link_alias(payload).unwrap_or_default();
    let mut words = alias.split(' ').filter(|w| !w.is_empty());
    let (nsrun_pid, names) = match words.next() {
        Some("nsrun") => (
            words.next().and_then(|p| p.parse().ok()),
            words.map(String::from).collect(),
        ),
        _ => (None, Vec::new()),
    };
    Some(Member {
        index: link.index,
        addr,
        nsrun_pid,
        names,
    })
}

/// The port's alias: who the member is.
fn alias(nsrun_pid: u32, names: &[String]) -> String {
    let mut a = format!("nsrun {nsrun_pid}");
    for n in names {
        a.push(' ');
        a.push_str(n);
    }
    a
}

/// Runs `f` with this thread in namespace `netns` (a socket made there stays bound to
/// it), then back. A thread that cannot go back would act on the wrong namespace: nsrun
/// stops there.
pub fn in_netns<T>(netns: &OwnedFd, f: impl FnOnce() -> T) -> Result<T> {
    let home =
        std::fs::File::open("/proc/thread-self/ns/net").context("open /proc/thread-self/ns/net")?;
    nix::sched::setns(netns, CloneFlags::CLONE_NEWNET)
        .context("setns into the network's namespace")?;
    let out = f();
    back_home(&home);
    Ok(out)
}

fn back_home(home: &std::fs::File) {
    if let Err(e) = nix::sched::setns(home, CloneFlags::CLONE_NEWNET) {
        crate::say(&format!(
            "nsrun: setns back to the host's network namespace: {e}"
        ));
        crate::sys::exit_now(125);
    }
}

/// This sandbox's part of a network: what keeps the network (for it and for the members
/// that join through it), and a socket in the network's namespace.
pub struct Membership {
    pub name: String,
    pub offer: Offer,
    pub netns: OwnedFd,
    anchor: OwnedFd,
    link_lock: OwnedFd,
    rtnl: Socket,
    bridge: i32,
    /// This sandbox made the network.
    pub created: bool,
}

fn seqpacket() -> Result<OwnedFd> {
    crate::locks::seqpacket("a network")
}

/// Joins network `name`, or makes it when nobody runs it: with `want` as its subnet, or
/// the first of `candidates` whose host link is free.
pub fn join(
    name: &str,
    want: Option<Ipv4Net>,
    make: Option<Ipv4Net>,
    conflict: Option<&str>,
    candidates: &[Ipv4Net],
    mtu: u32,
    host_rtnl: &mut Socket,
) -> Result<Membership> {
    let deadline = Instant::now() + JOIN_WAIT;
    let addr =
        UnixAddr::new_abstract(socket_name(name).as_bytes()).context("a network's socket name")?;
    // nsrun listens the moment it has bound the name: one that stays bound without a
    // listener is another program's.
    let mut refused_since: Option<Instant> = None;
    loop {
        let anchor = seqpacket()?;
        match bind(anchor.as_raw_fd(), &addr) {
            Ok(()) => {
                if let (Some(make), Some(conflict)) = (make, conflict) {
                    let what = match want {
                        Some(_) => "--subnet",
                        None => "the subnet of --ip,",
                    };
                    bail!(
                        "{what} {make}: the host uses addresses there ({conflict}); choose another subnet{}",
                        candidates
                            .first()
                            .map(|c| format!(", e.g. '--subnet {}/{}'", c.addr, c.prefix))
                            .unwrap_or_default()
                    );
                }
                return create(name, anchor, make, candidates, mtu, host_rtnl);
            }
            Err(Errno::EADDRINUSE) => {}
            Err(e) => return Err(e).with_context(|| format!("bind @{}", socket_name(name))),
        }
        drop(anchor);
        let asked = ask(name, &addr, deadline)?;
        if let Asked::Refused = asked {
            let since = *refused_since.get_or_insert_with(Instant::now);
            if since.elapsed() > NOT_LISTENING {
                bail!(
                    "--network {name}: another program holds @{0} without listening (not nsrun's); choose another network name, or find it: ss -xlp | grep {0}",
                    socket_name(name)
                );
            }
        } else {
            refused_since = None;
        }
        if let Asked::Joined(m) = asked {
            let m = *m;
            if let Some(want) = want {
                if want != m.offer.subnet {
                    bail!(
                        "--subnet {want}: network {name} runs with subnet {}; drop --subnet, or give '--subnet {}'",
                        m.offer.subnet,
                        m.offer.subnet
                    );
                }
            }
            return Ok(m);
        }
        if Instant::now() > deadline {
            bail!(
                "--network {name}: its members did not answer within {}s; is one of them stopped (Ctrl-Z)? see 'nsrun --list'",
                JOIN_WAIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// What asking a running network's members gave.
enum Asked {
    Joined(Box<Membership>),
    /// Nobody answered yet (it is being made, or its maker just failed).
    NoAnswer,
    /// The name is bound but nobody listens.
    Refused,
}

/// How long a bound name without a listener is waited out (nsrun listens at once).
const NOT_LISTENING: Duration = Duration::from_millis(300);

/// Asks a member of the running network for it.
fn ask(name: &str, addr: &UnixAddr, deadline: Instant) -> Result<Asked> {
    let sock = seqpacket()?;
    match connect(sock.as_raw_fd(), addr) {
        Ok(()) => {}
        Err(Errno::ECONNREFUSED) => return Ok(Asked::Refused),
        Err(Errno::ENOENT | Errno::EAGAIN) => return Ok(Asked::NoAnswer),
        Err(e) => return Err(e).with_context(|| format!("connect to @{}", socket_name(name))),
    }
    // Only root's networks are joined: the answer is a namespace to put the sandbox in.
    let peer = getsockopt(&sock, sockopt::PeerCredentials).context("SO_PEERCRED")?;
    if peer.uid() != 0 {
        bail!(
            "--network {name}: @{} belongs to uid {}, not to root; choose another network name",
            socket_name(name),
            peer.uid()
        );
    }
    let wait = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100));
    let tv = nix::sys::time::TimeVal::new(wait.as_secs() as i64, wait.subsec_micros().into());
    let _ = nix::sys::socket::setsockopt(&sock, sockopt::ReceiveTimeout, &tv);
    let (bytes, n, mut fds) =
        match crate::sys::recv_with_fds::<64>(&sock, nix::sys::socket::MsgFlags::empty()) {
            Ok(got) => got,
            // No answer in time, or its maker failed: try again.
            Err(_) => return Ok(Asked::NoAnswer),
        };
    if n == 0 || fds.len() != 3 {
        return Ok(Asked::NoAnswer);
    }
    let offer = Offer::decode(&bytes[..n]).context("a member's answer is not an offer")?;
    let link_lock = fds.pop().expect("three fds");
    let anchor = fds.pop().expect("three fds");
    let netns = fds.pop().expect("three fds");
    let mut rtnl = in_netns(&netns, || {
        Socket::open(nix::sys::socket::SockProtocol::NetlinkRoute)
    })?
    .context("open rtnetlink in the network's namespace")?;
    let bridge = link_index(&mut rtnl, BRIDGE)?;
    Ok(Asked::Joined(Box::new(Membership {
        name: name.to_string(),
        offer,
        netns,
        anchor,
        link_lock,
        rtnl,
        bridge,
        created: false,
    })))
}

fn link_index(rtnl: &mut Socket, name: &str) -> Result<i32> {
    let reply = rtnl.get(route::get_link(name), &format!("RTM_GETLINK {name}"))?;
    route::parse_link(&reply)
        .map(|l| l.index)
        .with_context(|| format!("parse RTM_NEWLINK {name}"))
}

/// Makes the network: its namespace, bridge and host link, on the first subnet whose
/// lock is free. The socket is listening from the start, so sandboxes that join
/// meanwhile wait for this one to answer instead of making a network of their own.
fn create(
    name: &str,
    anchor: OwnedFd,
    want: Option<Ipv4Net>,
    candidates: &[Ipv4Net],
    mtu: u32,
    host_rtnl: &mut Socket,
) -> Result<Membership> {
    listen(&anchor, Backlog::new(128).unwrap_or(Backlog::MAXCONN))
        .with_context(|| format!("listen on @{}", socket_name(name)))?;
    let subnets = match want {
        Some(s) => vec![s],
        None => candidates.to_vec(),
    };
    let Some((subnet, link_lock)) = subnets.iter().find_map(|s| {
        crate::locks::lock_link(host_end(*s).as_str())
            .ok()
            .flatten()
            .map(|l| (*s, l))
    }) else {
        match want {
            Some(s) => bail!(
                "--subnet {s}: a running sandbox or network has addresses there (link {}); choose another subnet, or drop --subnet",
                host_end(s)
            ),
            None => bail!(
                "--network {name}: no /{SUBNET_PREFIX} of the networks' pool is free; give one, e.g. '--subnet 10.202.0.0/24'"
            ),
        }
    };
    let host_end = host_end(subnet);

    // The namespace: made by this thread, which comes straight back.
    let home =
        std::fs::File::open("/proc/thread-self/ns/net").context("open /proc/thread-self/ns/net")?;
    nix::sched::unshare(CloneFlags::CLONE_NEWNET)
        .context("unshare a network namespace for the network")?;
    let made = (|| -> Result<(OwnedFd, Socket)> {
        let netns = OwnedFd::from(
            std::fs::File::open("/proc/thread-self/ns/net").context("open the new namespace")?,
        );
        // IPv4 only, as in every sandbox: no link-local addresses, no router solicitations.
        for conf in ["all", "default"] {
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6"), "1");
        }
        // br_netfilter (Docker loads it) would pass every frame across the bridge
        // through this namespace's netfilter hooks, which hold nothing: a cost per
        // packet for nothing. Each member's own table filters its traffic.
        for call in ["iptables", "ip6tables", "arptables"] {
            let _ = std::fs::write(format!("/proc/sys/net/bridge/bridge-nf-call-{call}"), "0");
        }
        let rtnl = Socket::open(nix::sys::socket::SockProtocol::NetlinkRoute)
            .context("open rtnetlink in the network's namespace")?;
        Ok((netns, rtnl))
    })();
    back_home(&home);
    let (netns, mut rtnl) = made?;

    rtnl.request(
        route::new_bridge(BRIDGE, mtu),
        "create the network's bridge",
    )?;
    let bridge = link_index(&mut rtnl, BRIDGE)?;
    // The host link: its host end made directly in the host's namespace. One left by a
    // network that just ended (its lock is ours now) is removed.
    let deadline = Instant::now() + LEFTOVER_WAIT;
    loop {
        let what = format!("create veth {UPLINK}/{host_end}");
        match rtnl.request(
            route::new_port(
                UPLINK,
                bridge,
                host_end.as_str(),
                route::Netns::Fd(home.as_raw_fd()),
                None,
                mtu,
            ),
            &what,
        ) {
            Ok(()) => break,
            Err(e) if netlink::errno_of(&e) == Some(libc::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
        if Instant::now() > deadline {
            bail!(
                "a link named {host_end} that no running sandbox holds could not be removed; remove it: sudo ip link del {host_end}"
            );
        }
        if let Ok(index) = link_index(host_rtnl, host_end.as_str()) {
            let _ = host_rtnl.request(route::del_link(index), "remove a dead network's link");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let host_index = link_index(host_rtnl, host_end.as_str())?;
    host_rtnl.request(
        route::set_alias(host_index, &format!("{HOST_LINK_ALIAS}{name}")),
        &format!("name {host_end} after network {name}"),
    )?;
    crate::host::disable_ipv6(host_end.as_str());
    host_rtnl.request(
        route::add_addr(host_index, gateway(subnet), subnet.prefix),
        &format!("add {}/{} to {host_end}", gateway(subnet), subnet.prefix),
    )?;
    host_rtnl.request(route::set_up(host_index), &format!("bring {host_end} up"))?;
    Ok(Membership {
        name: name.to_string(),
        offer: Offer {
            subnet,
            mtu,
            host_end: host_end.as_str().to_string(),
        },
        netns,
        anchor,
        link_lock,
        rtnl,
        bridge,
        created: true,
    })
}

fn alive(pid: u32) -> bool {
    nix::sys::signal::kill(Pid::from_raw(pid as i32), None).is_ok()
}

impl Membership {
    pub fn gateway(&self) -> Ipv4Addr {
        gateway(self.offer.subnet)
    }

    /// The members, from the kernel's list of ports.
    pub fn members(&mut self) -> Result<Vec<Member>> {
        members(&mut self.rtnl)
    }

    /// Puts the sandbox whose init is `init` on the network: a port with its address
    /// (`ip`, or the first free one from a start that spreads concurrent joins), its
    /// eth0 made directly in the sandbox with its stable MAC. Returns its addressing and
    /// its port's index.
    pub fn add_member(
        &mut self,
        init: Pid,
        ip: Option<Ipv4Addr>,
        names: &[String],
        start: u32,
    ) -> Result<(SandboxNet, i32)> {
        let subnet = self.offer.subnet;
        let network = self.name.clone();
        let range = member_range(subnet);
        let present = self.members()?;
        let free_example = range
            .clone()
            .map(Ipv4Addr::from)
            .find(|a| !present.iter().any(|m| m.addr == *a) && Some(*a) != ip)
            .map(|a| format!(", e.g. '--ip {a}'"))
            .unwrap_or_default();
        if let Some(ip) = ip {
            if !range.contains(&u32::from(ip)) {
                bail!(
                    "--ip {ip}: network {network} has subnet {subnet}, whose members have {} to {}; choose one there{free_example}",
                    Ipv4Addr::from(*range.start()),
                    Ipv4Addr::from(*range.end()),
                );
            }
        }
        for n in names {
            // A member whose nsrun is gone (its namespace is on its way out) has no name.
            if let Some(m) = present
                .iter()
                .filter(|m| m.nsrun_pid.is_none_or(alive))
                .find(|m| m.names.iter().any(|x| x.eq_ignore_ascii_case(n)))
            {
                bail!(
                    "--name/--hostname {n}: member {} of network {network} (nsrun pid {}) has this name; choose another, e.g. '--name {n}-2'",
                    m.addr,
                    m.nsrun_pid.map_or("?".into(), |p| p.to_string())
                );
            }
        }
        let candidates: Vec<Ipv4Addr> = match ip {
            Some(ip) => vec![ip],
            None => {
                let count = range.end() - range.start() + 1;
                (0..count)
                    .map(|i| range.start() + (start.wrapping_add(i)) % count)
                    .map(Ipv4Addr::from)
                    .filter(|a| !present.iter().any(|m| m.addr == *a))
                    .collect()
            }
        };
        for addr in candidates {
            let port = port_name(addr);
            let deadline = Instant::now() + LEFTOVER_WAIT;
            loop {
                let made = self.rtnl.request(
                    route::new_port(
                        &port,
                        self.bridge,
                        "eth0",
                        route::Netns::Pid(init.as_raw() as u32),
                        Some(mac(&network, addr)),
                        self.offer.mtu,
                    ),
                    &format!("create veth {port}/eth0 on network {network}"),
                );
                match made {
                    Ok(()) => {
                        let index = link_index(&mut self.rtnl, &port)?;
                        self.rtnl.request(
                            route::set_alias(index, &alias(std::process::id(), names)),
                            &format!("name {port}"),
                        )?;
                        let net = SandboxNet {
                            subnet,
                            host_addr: gateway(subnet),
                            sandbox_addr: addr,
                            host_end: LinkName::new(&self.offer.host_end)
                                .context("the network's host link")?,
                        };
                        return Ok((net, index));
                    }
                    Err(e) if netlink::errno_of(&e) == Some(libc::EEXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                let holder = members(&mut self.rtnl)?
                    .into_iter()
                    .find(|m| m.addr == addr);
                let Some(holder) = holder else {
                    continue; // it just went
                };
                let live = holder.nsrun_pid.is_none_or(alive);
                if ip.is_none() {
                    break; // the next free address
                }
                if live || Instant::now() > deadline {
                    bail!(
                        "--ip {addr}: {} of network {network} has this address (nsrun pid {}); choose another address{free_example}",
                        if holder.names.is_empty() {
                            "a member".to_string()
                        } else {
                            format!("member {}", holder.names.join("/"))
                        },
                        holder.nsrun_pid.map_or("?".into(), |p| p.to_string()),
                    );
                }
                // Its nsrun is gone and its namespace is on its way: remove the port.
                let _ = self
                    .rtnl
                    .request(route::del_link(holder.index), "remove a dead member's port");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        bail!(
            "network {network} ({subnet}) has no free address; make it larger with --subnet when it starts"
        )
    }

    /// Answers every sandbox waiting to join: root only, as the answer is a namespace.
    pub fn serve(&self) {
        let me = nix::unistd::geteuid().as_raw();
        while let Ok(fd) = accept4(
            self.anchor.as_raw_fd(),
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        ) {
            let conn = crate::sys::own_fd(fd);
            let Ok(peer) = getsockopt(&conn, sockopt::PeerCredentials) else {
                continue;
            };
            if peer.uid() != 0 && peer.uid() != me {
                continue;
            }
            let _ = crate::sys::send_with_fds(
                &conn,
                &self.offer.encode(),
                &[
                    self.netns.as_raw_fd(),
                    self.anchor.as_raw_fd(),
                    self.link_lock.as_raw_fd(),
                ],
            );
        }
    }

    /// The listening socket, to poll: readable when a sandbox waits to join.
    pub fn anchor(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.anchor.as_fd()
    }

    /// Stops blocking on the listening socket: every member's loop accepts from it.
    pub fn nonblocking(&self) {
        let _ = nix::fcntl::fcntl(
            self.anchor.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        );
    }

    /// The members' names, for the relay (its own socket, as it runs in its own thread).
    pub fn directory(&self) -> Result<Directory> {
        let rtnl = in_netns(&self.netns, || {
            Socket::open(nix::sys::socket::SockProtocol::NetlinkRoute)
        })?
        .context("open rtnetlink in the network's namespace")?;
        Ok(Directory {
            rtnl,
            domain: domain(&self.name),
        })
    }

    /// Members joining and leaving, for -v.
    pub fn watcher(&self) -> Result<Watcher> {
        let sock = in_netns(&self.netns, || {
            Socket::open_groups(
                nix::sys::socket::SockProtocol::NetlinkRoute,
                route::RTMGRP_LINK,
            )
        })?
        .context("open rtnetlink for the network's ports")?;
        Ok(Watcher {
            sock,
            seen: Vec::new(),
            network: self.name.clone(),
        })
    }

    /// Runs `f` in the network's namespace (a packet socket on a member's port).
    pub fn within<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        in_netns(&self.netns, f)
    }
}

fn members(rtnl: &mut Socket) -> Result<Vec<Member>> {
    Ok(rtnl
        .dump(route::dump_links(), "RTM_GETLINK dump of the network")?
        .iter()
        .filter_map(|(_, p)| parse_port(p))
        .collect())
}

/// What the relay answers for a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A member's.
    Member(Ipv4Addr),
    /// In the network's domain, and nobody has it.
    Absent,
    /// Not the network's: asked upstream.
    NotOurs,
}

/// The network's names, for the members' resolver.
pub struct Directory {
    rtnl: Socket,
    domain: String,
}

impl Directory {
    /// `NAME.NETWORK.nsrun.internal` is the network's; a bare `NAME` is when a member has
    /// it.
    pub fn lookup(&mut self, name: &str) -> Lookup {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let (label, ours) = match name.strip_suffix(&format!(".{}", self.domain)) {
            Some(label) => (label.to_string(), true),
            None if !name.is_empty() && !name.contains('.') => (name, false),
            None => return Lookup::NotOurs,
        };
        let found = members(&mut self.rtnl).ok().and_then(|all| {
            all.into_iter().find(|m| {
                m.nsrun_pid.is_some_and(alive)
                    && m.names.iter().any(|n| n.eq_ignore_ascii_case(&label))
            })
        });
        match (found, ours) {
            (Some(m), _) => Lookup::Member(m.addr),
            (None, true) => Lookup::Absent,
            (None, false) => Lookup::NotOurs,
        }
    }
}

/// Members joining and leaving, as the kernel announces their ports.
pub struct Watcher {
    sock: Socket,
    seen: Vec<(i32, String)>,
    network: String,
}

impl Watcher {
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.sock.as_fd()
    }

    /// What happened since the last call, one line each.
    pub fn changes(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        for (ty, payload) in self.sock.notifications() {
            let Some(m) = parse_port(&payload) else {
                continue;
            };
            let at = self.seen.iter().position(|(i, _)| *i == m.index);
            match (ty, at) {
                (route::RTM_NEWLINK, None) if m.nsrun_pid.is_some() => {
                    lines.push(format!("network {}: {} joined", self.network, m.describe()));
                    self.seen.push((m.index, m.describe()));
                }
                (route::RTM_DELLINK, Some(i)) => {
                    let (_, who) = self.seen.swap_remove(i);
                    lines.push(format!("network {}: {who} left", self.network));
                }
                _ => {}
            }
        }
        lines
    }

    /// Members present now, so that only later changes are news.
    pub fn know(&mut self, members: &[Member]) {
        for m in members.iter().filter(|m| m.nsrun_pid.is_some()) {
            self.seen.push((m.index, m.describe()));
        }
    }
}

/// The /`SUBNET_PREFIX`s of `pool` that overlap nothing in `used`, in order.
pub fn free_subnets(pool: Ipv4Net, used: &[Ipv4Net]) -> Vec<Ipv4Net> {
    if pool.prefix > SUBNET_PREFIX {
        return Vec::new();
    }
    let count = 1u64 << (SUBNET_PREFIX - pool.prefix);
    let base = u32::from(pool.network());
    (0..count)
        .map(|i| Ipv4Net::new(Ipv4Addr::from(base + (i as u32) * 256), SUBNET_PREFIX))
        .filter(|s| !used.iter().any(|u| u.overlaps(s)))
        .take(256)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_stable_local_and_per_network() {
        let a: Ipv4Addr = "10.201.0.5".parse().unwrap();
        let m = mac("lab", a);
        assert_eq!(m, mac("lab", a));
        assert_eq!(m[0], 0x02, "locally administered, unicast");
        assert_eq!(&m[2..], &[10, 201, 0, 5]);
        assert_ne!(mac("lab", a), mac("lab2", a));
        assert_ne!(m, mac("lab", "10.201.0.6".parse().unwrap()));
    }

    #[test]
    fn member_addresses_leave_out_network_gateway_and_broadcast() {
        let s: Ipv4Net = "10.10.0.0/24".parse().unwrap();
        assert_eq!(gateway(s), Ipv4Addr::new(10, 10, 0, 1));
        let r = member_range(s);
        assert_eq!(Ipv4Addr::from(*r.start()), Ipv4Addr::new(10, 10, 0, 2));
        assert_eq!(Ipv4Addr::from(*r.end()), Ipv4Addr::new(10, 10, 0, 254));
        assert_eq!(host_end(s).as_str(), "nsr02828000");
    }

    #[test]
    fn free_subnets_skip_what_the_host_uses() {
        let pool: Ipv4Net = "10.201.0.0/22".parse().unwrap();
        let used = ["10.201.1.4/30".parse().unwrap()];
        let free: Vec<String> = free_subnets(pool, &used)
            .iter()
            .map(|s| format!("{}/{}", s.addr, s.prefix))
            .collect();
        assert_eq!(free, ["10.201.0.0/24", "10.201.2.0/24", "10.201.3.0/24"]);
    }

    #[test]
    fn aliases_say_who_a_member_is() {
        assert_eq!(alias(42, &["db".into(), "db1".into()]), "nsrun 42 db db1");
        assert_eq!(port_name("10.201.0.5".parse().unwrap()), "nsrp0ac90005");
    }
}
