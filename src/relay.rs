//! A DNS relay for hosts whose only resolver listens on their own loopback (dnsmasq,
//! unbound, systemd-resolved without an upstream file): such an address means nothing
//! inside the sandbox's network namespace.
//!
//! nsrun listens on 127.0.0.53:53 *inside the sandbox* (UDP and TCP; on 127.0.0.1 when
//! the host has no resolv.conf, as the resolver library then asks there), and forwards each
//! query from the host's namespace to the host's resolver. It relays bytes: nothing read
//! is trusted. With `--allow NAME` it is also the sandbox's only resolver and reads each
//! UDP query: a name not allowed is answered NXDOMAIN at once and never asked
//! upstream; for one that is allowed, the A records of the upstream's answer for it
//! (CNAMEs followed) go into that name's set in the sandbox's table before the answer
//! goes back, for their TTL but at least [`MIN_ALLOWED`]. DNS over TCP is closed then.
//! Memory is bounded: at most [`MAX_QUERIES`] UDP queries and
//! [`MAX_CONNS`] TCP connections in flight (one still connecting to the upstream counts),
//! each with a deadline and at most one buffer of bytes per direction. Nothing blocks:
//! upstream connections are made without waiting, so a resolver that drops TCP delays
//! no other query.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags};
use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrStorage, bind, connect, listen,
    setsockopt, socket, sockopt,
};

const MAX_QUERIES: usize = 64;
const MAX_CONNS: usize = 16;
const QUERY_DEADLINE: Duration = Duration::from_secs(5);
const CONN_DEADLINE: Duration = Duration::from_secs(30);
const CONNECT_DEADLINE: Duration = Duration::from_secs(5);
const MAX_DATAGRAM: usize = 4096;

struct Query {
    upstream: UdpSocket,
    client: SocketAddr,
    started: Instant,
    /// With a filter: the question asked and the sets of its name.
    allowed: Option<(crate::egress::Question, Vec<String>)>,
}

struct Conn {
    client: TcpStream,
    /// The upstream connection; None once it has said all it will say.
    server: Option<TcpStream>,
    /// The upstream connection is made (non-blocking connect completed).
    connected: bool,
    /// The client has sent all it will send (it may still read the answer).
    client_done: bool,
    /// Bytes read from the client, not yet all written to the server, and back.
    up: Vec<u8>,
    down: Vec<u8>,
    started: Instant,
}

impl Conn {
    /// What to wait for: the connect to complete; then, per direction, more bytes to
    /// read once the last ones are written, or room to write them.
    fn interest(&self) -> (PollFlags, PollFlags) {
        if !self.connected {
            return (PollFlags::empty(), PollFlags::POLLOUT);
        }
        if self.server.is_none() {
            return (PollFlags::POLLOUT, PollFlags::empty()); // the rest of the answer
        }
        let (mut client, mut server) = (PollFlags::empty(), PollFlags::empty());
        if !self.up.is_empty() {
            server |= PollFlags::POLLOUT;
        } else if !self.client_done {
            client |= PollFlags::POLLIN;
        }
        if !self.down.is_empty() {
            client |= PollFlags::POLLOUT;
        } else if self.server.is_some() {
            server |= PollFlags::POLLIN;
        }
        (client, server)
    }

    /// The fd polled for the upstream side (the client's again, asking nothing, once the
    /// upstream is closed).
    fn server_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.server
            .as_ref()
            .map_or(self.client.as_fd(), |s| s.as_fd())
    }

    /// Moves what is ready; false when the connection is over.
    fn pump(&mut self, client: PollFlags, server: PollFlags, buf: &mut [u8]) -> bool {
        let readable = |r: PollFlags| r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP);
        // A client that closed both ways or failed cannot take an answer.
        if client.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
            return false;
        }
        let Some(upstream) = &mut self.server else {
            // The upstream said all: hand the rest to the client, then close.
            return flush(&mut self.client, &mut self.down) && !self.down.is_empty();
        };
        if !self.connected {
            if !server.intersects(PollFlags::POLLOUT | PollFlags::POLLHUP | PollFlags::POLLERR) {
                return self.started.elapsed() < CONNECT_DEADLINE;
            }
            // The connect's outcome.
            if !matches!(upstream.take_error(), Ok(None)) {
                return false;
            }
            self.connected = true;
        }
        if server.contains(PollFlags::POLLERR) {
            return false;
        }
        if self.up.is_empty() && !self.client_done && readable(client) {
            match fill(&mut self.client, &mut self.up, buf) {
                Filled::More => {}
                // Half-closed after the query (some clients do): the upstream is told
                // the same once it has everything, and the answer still comes back.
                Filled::End => self.client_done = true,
                Filled::Failed => return false,
            }
        }
        let mut upstream_ended = false;
        if self.down.is_empty() && readable(server) {
            match fill(upstream, &mut self.down, buf) {
                Filled::More => {}
                Filled::End => upstream_ended = true,
                Filled::Failed => return false,
            }
        }
        // Written at once where the socket has room; the rest when it says so.
        if !flush(upstream, &mut self.up) || !flush(&mut self.client, &mut self.down) {
            return false;
        }
        if self.client_done && self.up.is_empty() {
            let _ = upstream.shutdown(std::net::Shutdown::Write);
        }
        if upstream_ended {
            self.server = None;
            return !self.down.is_empty();
        }
        true
    }
}

enum Filled {
    More,
    End,
    Failed,
}

/// Reads what one side has.
fn fill(from: &mut TcpStream, into: &mut Vec<u8>, buf: &mut [u8]) -> Filled {
    match from.read(buf) {
        Ok(0) => Filled::End,
        Ok(n) => {
            into.extend_from_slice(&buf[..n]);
            Filled::More
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Filled::More,
        Err(_) => Filled::Failed,
    }
}

/// Writes what it can of `pending`; false on an error.
fn flush(to: &mut TcpStream, pending: &mut Vec<u8>) -> bool {
    if pending.is_empty() {
        return true;
    }
    match to.write(pending) {
        Ok(n) => {
            pending.drain(..n);
            true
        }
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
    }
}

/// A TCP connection to `to`, begun without waiting: its completion shows as writable.
fn connect_nonblocking(to: SocketAddr) -> Option<TcpStream> {
    let family = if to.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .ok()?;
    match connect(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(to),
    ) {
        Ok(()) | Err(Errno::EINPROGRESS) => Some(TcpStream::from(fd)),
        Err(_) => None,
    }
}

pub struct Relay {
    udp: UdpSocket,
    tcp: TcpListener,
    upstream: SocketAddr,
    queries: Vec<Query>,
    conns: Vec<Conn>,
    filter: Option<Filter>,
    /// `--network`: the network's names, answered here.
    directory: Option<crate::networks::Directory>,
}

/// The time a member's name may be cached: members come and go.
const MEMBER_TTL: u32 = 1;

/// `--allow NAME`: the names the relay answers, and where their addresses go.
pub struct Filter {
    /// Each allowed name (or `*.DOMAIN`) and its set in the sandbox's table.
    pub names: Vec<(crate::egress::Target, String)>,
    /// A socket of the sandbox's nf_tables (made by its init, in its namespace).
    pub nft: crate::netlink::Socket,
    /// --audit: names not allowed are answered too, and reported.
    pub audit: bool,
    /// Where refused names are reported (-v, --refusals), and what each answered
    /// address was called.
    pub report: Option<std::sync::mpsc::Sender<crate::refusals::Refused>>,
    pub answered: crate::refusals::Names,
}

/// The least time an answered address stays allowed, whatever its TTL: a program may
/// connect some time after it resolved (TTLs of 0 and 1 s are common behind CDNs).
/// Connections made meanwhile outlive it (conntrack), so only new ones need it.
pub const MIN_ALLOWED: Duration = Duration::from_secs(60);
/// The most time an answered address stays allowed without a new answer.
const MAX_ALLOWED: Duration = Duration::from_secs(86_400);

impl Filter {
    /// The sets of the names that cover `name`; empty: refused.
    fn sets_for(&self, name: &str) -> Vec<String> {
        self.names
            .iter()
            .filter(|(target, _)| target.covers(name))
            .map(|(_, set)| set.clone())
            .collect()
    }

    /// Puts the answer's addresses for `q` into `sets`, before the answer goes back (so
    /// the program's connect that follows finds them).
    fn allow(&mut self, answer: &[u8], q: &crate::egress::Question, sets: &[String]) {
        let addrs: Vec<(Ipv4Addr, u64)> = crate::egress::answer_addresses(answer, q)
            .into_iter()
            .map(|(a, ttl)| {
                let keep = Duration::from_secs(ttl.into()).clamp(MIN_ALLOWED, MAX_ALLOWED);
                (a, keep.as_millis() as u64)
            })
            .collect();
        if addrs.is_empty() {
            return;
        }
        if let Ok(mut names) = self.answered.lock() {
            // Bounded: a wildcard's names cannot grow it without end.
            if names.len() < 65_536 {
                for (a, _) in &addrs {
                    names.insert(*a, q.name.clone());
                }
            }
        }
        if sets.is_empty() {
            return;
        }
        let mut batch = crate::netlink::nft::Batch::new(crate::netlink::nft::NFPROTO_INET);
        for set in sets {
            batch.add_addresses(crate::firewall::TABLE, set, &addrs);
        }
        let (msg, acked) = batch.finish();
        let _ = self
            .nft
            .transact(msg, &acked, "allow a resolved name's addresses");
    }
}

fn listener(ty: SockType, addr: Ipv4Addr) -> Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Inet,
        ty,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .context("DNS relay socket")?;
    setsockopt(&fd, sockopt::ReuseAddr, &true).context("SO_REUSEADDR")?;
    let sockaddr = SockaddrIn::from(SocketAddrV4::new(addr, 53));
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &sockaddr)
        .with_context(|| format!("bind the DNS relay to {addr}:53 in the sandbox"))?;
    if ty == SockType::Stream {
        listen(
            &fd,
            nix::sys::socket::Backlog::new(16).unwrap_or(nix::sys::socket::Backlog::MAXCONN),
        )
        .context("listen")?;
    }
    Ok(fd)
}

/// The relay's UDP and TCP listeners on `listen`:53, made inside the sandbox by its init
/// (lo must be up: a socket bound to a loopback address that is not yet local answers
/// from the wrong source, which resolvers ignore), and passed to nsrun.
pub fn listeners(listen: Ipv4Addr) -> Result<(OwnedFd, OwnedFd)> {
    Ok((
        listener(SockType::Datagram, listen)?,
        listener(SockType::Stream, listen)?,
    ))
}

impl Relay {
    /// The relay over the listeners the init made; queries go to `upstream` from the
    /// host's namespace, where nsrun is.
    pub fn new(
        udp: OwnedFd,
        tcp: OwnedFd,
        upstream: SocketAddr,
        filter: Option<Filter>,
        directory: Option<crate::networks::Directory>,
    ) -> Relay {
        Relay {
            udp: UdpSocket::from(udp),
            tcp: TcpListener::from(tcp),
            upstream,
            queries: Vec::new(),
            conns: Vec::new(),
            filter,
            directory,
        }
    }

    /// A member's own network's names: answered here, at once, never asked upstream.
    fn answer_locally(
        &mut self,
        query: &[u8],
        question: Option<&crate::egress::Question>,
    ) -> Option<Vec<u8>> {
        let directory = self.directory.as_mut()?;
        let question = question?;
        match directory.lookup(&question.name) {
            crate::networks::Lookup::NotOurs => None,
            crate::networks::Lookup::Absent => Some(crate::egress::refusal(query, question)),
            crate::networks::Lookup::Member(addr) => Some(crate::egress::local_answer(
                query, question, addr, MEMBER_TTL,
            )),
        }
    }

    /// Relays until nsrun exits (its own thread).
    pub fn run(mut self) {
        loop {
            let mut fds = self.poll_fds();
            let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(1000u16));
            let ready: Vec<PollFlags> = fds
                .iter()
                .map(|f| f.revents().unwrap_or(PollFlags::empty()))
                .collect();
            drop(fds);
            self.service(&ready);
        }
    }

    /// The fds to poll, in the order [`Relay::service`] expects their readiness.
    pub fn poll_fds(&self) -> Vec<PollFd<'_>> {
        let mut fds = vec![
            PollFd::new(self.udp.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.tcp.as_fd(), PollFlags::POLLIN),
        ];
        fds.extend(
            self.queries
                .iter()
                .map(|q| PollFd::new(q.upstream.as_fd(), PollFlags::POLLIN)),
        );
        for c in &self.conns {
            let (client, server) = c.interest();
            fds.push(PollFd::new(c.client.as_fd(), client));
            fds.push(PollFd::new(c.server_fd(), server));
        }
        fds
    }

    /// Moves whatever is ready; drops what is past its deadline or broken.
    pub fn service(&mut self, ready: &[PollFlags]) {
        let revents = |i: usize| ready.get(i).copied().unwrap_or(PollFlags::empty());
        let is = |i: usize| !revents(i).is_empty();
        let mut buf = [0u8; MAX_DATAGRAM];

        // Answers from the host's resolver go back to the client that asked.
        let mut done = vec![false; self.queries.len()];
        for (i, q) in self.queries.iter().enumerate() {
            if is(2 + i) {
                if let Ok(n) = q.upstream.recv(&mut buf) {
                    if let (Some(filter), Some((question, sets))) = (&mut self.filter, &q.allowed) {
                        filter.allow(&buf[..n], question, sets);
                    }
                    let _ = self.udp.send_to(&buf[..n], q.client);
                }
                done[i] = true;
            } else if q.started.elapsed() > QUERY_DEADLINE {
                done[i] = true;
            }
        }
        let mut i = 0;
        self.queries.retain(|_| {
            i += 1;
            !done[i - 1]
        });

        // TCP: copy whatever one side sent to the other.
        let base = 2 + done.len();
        let mut closed = vec![false; self.conns.len()];
        for (i, c) in self.conns.iter_mut().enumerate() {
            closed[i] = !(c.started.elapsed() < CONN_DEADLINE
                && c.pump(revents(base + 2 * i), revents(base + 2 * i + 1), &mut buf));
        }
        let mut i = 0;
        self.conns.retain(|_| {
            i += 1;
            !closed[i - 1]
        });

        // New queries, from the host's namespace (where nsrun is) to the host's resolver.
        if is(0) {
            while let Ok((n, client)) = self.udp.recv_from(&mut buf) {
                if self.queries.len() >= MAX_QUERIES {
                    continue; // dropped: the client retries
                }
                // Read once, for the network's names and for --allow's.
                let question = (self.directory.is_some() || self.filter.is_some())
                    .then(|| crate::egress::parse_question(&buf[..n]))
                    .flatten();
                if let Some(answer) = self.answer_locally(&buf[..n], question.as_ref()) {
                    let _ = self.udp.send_to(&answer, client);
                    continue;
                }
                // --allow NAME: a name not allowed is refused at once (NXDOMAIN), and
                // never asked upstream; one that is allowed is remembered with its sets.
                let mut allowed = None;
                if let Some(filter) = &self.filter {
                    let Some(question) = question else {
                        continue; // not a query: dropped
                    };
                    let sets = filter.sets_for(&question.name);
                    if sets.is_empty() {
                        if let Some(report) = &filter.report {
                            let _ = report.send(crate::refusals::Refused {
                                audit: filter.audit,
                                proto: "dns".into(),
                                address: None,
                                port: None,
                                name: Some(question.name.clone()),
                            });
                        }
                        if !filter.audit {
                            let _ = self
                                .udp
                                .send_to(&crate::egress::refusal(&buf[..n], &question), client);
                            continue;
                        }
                    }
                    // With --audit, a name not allowed is asked too; its answer only
                    // names its addresses in the reports.
                    allowed = Some((question, sets));
                }
                let bind_addr: SocketAddr = if self.upstream.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                }
                .parse()
                .unwrap();
                let Ok(upstream) = UdpSocket::bind(bind_addr) else {
                    continue;
                };
                if upstream.connect(self.upstream).is_ok() && upstream.send(&buf[..n]).is_ok() {
                    let _ = upstream.set_nonblocking(true);
                    self.queries.push(Query {
                        upstream,
                        client,
                        started: Instant::now(),
                        allowed,
                    });
                }
            }
        }
        if is(1) {
            while let Ok((client, _)) = self.tcp.accept() {
                // Under --allow NAME, queries are read one datagram at a time: DNS over
                // TCP is closed at once.
                if self.conns.len() >= MAX_CONNS || self.filter.is_some() {
                    continue; // closed at once
                }
                let Some(server) = connect_nonblocking(self.upstream) else {
                    continue;
                };
                if client.set_nonblocking(true).is_ok() {
                    self.conns.push(Conn {
                        client,
                        server: Some(server),
                        connected: false,
                        client_done: false,
                        up: Vec::new(),
                        down: Vec::new(),
                        started: Instant::now(),
                    });
                }
            }
        }
    }
}
