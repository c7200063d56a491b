//! A DNS relay for hosts whose only resolver listens on their own loopback (dnsmasq,
//! unbound, systemd-resolved without an upstream file): such an address means nothing
//! inside the sandbox's network namespace.
//!
//! nsrun listens on 127.0.0.53:53 *inside the sandbox* (UDP and TCP; on 127.0.0.1 when
//! the host has no resolv.conf, as the resolver library then asks there), and forwards each
//! query from the host's namespace to the host's resolver. It relays bytes: nothing read
//! is parsed or trusted. Memory is bounded: at most [`MAX_QUERIES`] UDP queries and
//! [`MAX_CONNS`] TCP connections in flight, each with a deadline.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::poll::{PollFd, PollFlags};
use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrIn, bind, listen, setsockopt, socket, sockopt,
};

const MAX_QUERIES: usize = 64;
const MAX_CONNS: usize = 16;
const QUERY_DEADLINE: Duration = Duration::from_secs(5);
const CONN_DEADLINE: Duration = Duration::from_secs(30);
const MAX_DATAGRAM: usize = 4096;

struct Query {
    upstream: UdpSocket,
    client: SocketAddr,
    started: Instant,
}

struct Conn {
    client: TcpStream,
    server: TcpStream,
    started: Instant,
}

pub struct Relay {
    udp: UdpSocket,
    tcp: TcpListener,
    upstream: SocketAddr,
    queries: Vec<Query>,
    conns: Vec<Conn>,
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
    pub fn new(udp: OwnedFd, tcp: OwnedFd, upstream: SocketAddr) -> Relay {
        Relay {
            udp: UdpSocket::from(udp),
            tcp: TcpListener::from(tcp),
            upstream,
            queries: Vec::new(),
            conns: Vec::new(),
        }
    }

    /// Relays until nsrun exits (its own thread).
    pub fn run(mut self) {
        loop {
            let mut fds = self.poll_fds();
            let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(1000u16));
            let ready: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
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
            fds.push(PollFd::new(c.client.as_fd(), PollFlags::POLLIN));
            fds.push(PollFd::new(c.server.as_fd(), PollFlags::POLLIN));
        }
        fds
    }

    /// Moves whatever is ready; drops what is past its deadline or broken.
    pub fn service(&mut self, ready: &[bool]) {
        let is = |i: usize| ready.get(i).copied().unwrap_or(false);
        let mut buf = [0u8; MAX_DATAGRAM];

        // Answers from the host's resolver go back to the client that asked.
        let mut done = vec![false; self.queries.len()];
        for (i, q) in self.queries.iter().enumerate() {
            if is(2 + i) {
                if let Ok(n) = q.upstream.recv(&mut buf) {
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
            let mut pump = |from: &mut TcpStream, to: &mut TcpStream| match from.read(&mut buf) {
                Ok(0) | Err(_) => false,
                Ok(n) => to.write_all(&buf[..n]).is_ok(),
            };
            let mut ok = c.started.elapsed() < CONN_DEADLINE;
            if ok && is(base + 2 * i) {
                ok = pump(&mut c.client, &mut c.server);
            }
            if ok && is(base + 2 * i + 1) {
                ok = pump(&mut c.server, &mut c.client);
            }
            closed[i] = !ok;
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
                    });
                }
            }
        }
        if is(1) {
            while let Ok((client, _)) = self.tcp.accept() {
                if self.conns.len() >= MAX_CONNS {
                    continue; // closed at once
                }
                let Ok(server) = TcpStream::connect_timeout(&self.upstream, Duration::from_secs(2))
                else {
                    continue;
                };
                let timeout = Some(Duration::from_secs(2));
                let setup = client.set_nonblocking(false).is_ok()
                    && client.set_write_timeout(timeout).is_ok()
                    && client.set_read_timeout(timeout).is_ok()
                    && server.set_write_timeout(timeout).is_ok()
                    && server.set_read_timeout(timeout).is_ok();
                if setup {
                    self.conns.push(Conn {
                        client,
                        server,
                        started: Instant::now(),
                    });
                }
            }
        }
    }
}
