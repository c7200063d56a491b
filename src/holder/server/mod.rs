//! The holder process: its loop over clients and kernel notifications, and the host
//! table it owns.

use super::*;

mod cleanup;
mod foreign;
mod forwarding;
mod nat;

use foreign::Opened;

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
    // IPv4 forwarding's changes: someone who makes the whole host a router meanwhile
    // (Docker, libvirt, an admin) takes over the links nsrun switched on.
    let netconf_events =
        Socket::open_groups(SockProtocol::NetlinkRoute, 1 << (RTNLGRP_IPV4_NETCONF - 1)).ok();
    say("ok");
    drop(ready);
    let mut holder = Holder {
        nft_events: None,
        nft_gen: None,
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
    /// Its link is a network's, which other members share: it is never removed here.
    shared: bool,
    handle: Option<u64>,
    last_wish: bool,
    /// Its published ports, with their rules' (chain, handle).
    ports: Vec<(crate::plan::Publish, Vec<(&'static str, u64)>)>,
    /// Its --info-file and that file's inode.
    info_file: Option<(std::path::PathBuf, u64, u64)>,
}

struct Holder {
    listener: Option<OwnedFd>,
    /// nf_tables' change notifications, while other firewalls' chains hold nsrun's
    /// rules (see [`Holder::watch_firewalls`]).
    nft_events: Option<Socket>,
    /// The host's nf_tables generation as of the holder's last look at the forward
    /// path, moved on by the holder's own batches: another value means someone else
    /// changed the host's firewall since.
    nft_gen: Option<u32>,
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
        let mut gen_checked = Instant::now();
        let mut ports_checked = Instant::now();
        loop {
            let now = Instant::now();
            let mut wake = idle_since.map(|t| t + IDLE);
            let deadlines = self.links.iter().map(|(_, at)| *at);
            // iptables-legacy sends no notifications: while its FORWARD holds nsrun's
            // entries, look every second whether a restore dropped them.
            let legacy = self.legacy_opened.then_some(legacy_checked + LEGACY_CHECK);
            let routed = self.clients.iter().any(|c| c.addr.is_some());
            let firewall = routed.then_some(gen_checked + GEN_CHECK);
            let ports = self
                .clients
                .iter()
                .any(|c| !c.ports.is_empty())
                .then_some(ports_checked + PORTS_CHECK);
            if let Some(at) = deadlines
                .chain(self.names.iter().map(|(_, at)| *at))
                .chain(legacy)
                .chain(firewall)
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
                    if !trusted_uid(peer.uid(), me) && !trusted_peer(peer.uid(), peer.pid(), me) {
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
                        shared: false,
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
            if gen_checked.elapsed() >= GEN_CHECK {
                gen_checked = Instant::now();
                self.unwatch_firewalls();
                if self.clients.iter().any(|c| c.addr.is_some()) {
                    if !self.firewall_unchanged() {
                        self.open_paths();
                    } else if !self.legacy_opened {
                        // iptables-legacy has no generation: a FORWARD policy DROP set
                        // since is seen here.
                        let _ = self.open_legacy();
                    }
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
        if !trusted_peer(peer.uid(), peer.pid(), me) {
            bail!(
                "nsrun's holder (uid {me}) serves only nsrun with CAP_NET_ADMIN in its user namespace"
            );
        }
        let reply = self
            .rtnl
            .get(route::get_link_by_index(ifindex as i32), "RTM_GETLINK")
            .ok();
        let is_sandbox_link = reply
            .as_deref()
            .and_then(route::parse_link)
            .is_some_and(|l| crate::addr::is_sandbox_link(&l.name));
        if !is_sandbox_link {
            bail!("link {ifindex} is not a sandbox's");
        }
        // A network's link (its alias says so) carries every member's traffic: each
        // member registers its own address on it, and the link goes with the network.
        let shared = reply
            .as_deref()
            .and_then(route::parse_link_alias)
            .is_some_and(|a| a.starts_with(crate::networks::HOST_LINK_ALIAS));
        if self.clients[i].ifindex.is_some() {
            bail!("already registered");
        }
        if !shared && self.clients.iter().any(|c| c.ifindex == Some(ifindex)) {
            bail!("link {ifindex} is registered by another nsrun");
        }
        if shared && self.clients.iter().any(|c| c.addr == Some(sandbox)) {
            bail!("{sandbox} is registered by another nsrun");
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
        // The host's forward path, looked at again at most every 200 ms, and whenever
        // someone else changed the host's nf_tables since: when many sandboxes start at
        // once they share one look.
        let fresh = self
            .forward_checked
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < FORWARD_CHECK_TTL)
            && self.firewall_unchanged();
        if !fresh {
            self.open_paths();
        }
        if let Some((_, Some(obstacle))) = &self.forward_checked {
            bail!("{obstacle}");
        }
        let mut batch = nft::Batch::new(nft::NFPROTO_INET);
        batch.add_rule_echo(TABLE, "postrouting", &firewall::masquerade(sandbox));
        let (msg, acked) = batch.finish();
        let replies = self.commit(msg, &acked, &format!("add masquerade for {sandbox}"))?;
        self.clients[i].handle = replies.iter().find_map(|p| nft::rule_handle(p));
        #[cfg(debug_assertions)]
        eprintln!(
            "holder {} registers {ifindex} {:?}",
            std::process::id(),
            self.clients[i].name
        );
        self.clients[i].ifindex = Some(ifindex);
        self.clients[i].addr = Some(sandbox);
        self.clients[i].shared = shared;
        self.forward_through(links)
    }
}
