//! Saying what was refused (`-v`, `--refusals FILE`, `--audit`): the sandbox's table
//! logs every refused packet (and, with --audit, every one the lists would have
//! refused) to nfnetlink_log groups of its own namespace, at most 200 a second; the
//! init binds a socket to them and passes it to nsrun, whose reporter thread says each
//! destination once, with the name nsrun's resolver gave it when there is one. Names the
//! resolver refused come from the relay.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::firewall::{AUDIT_GROUP, REFUSED_GROUP};
use crate::netlink::{self, Msg, Socket};

/// nfnetlink's subsystem of nfnetlink_log, and its messages.
const NFNL_SUBSYS_ULOG: u16 = 4;
const NFULNL_MSG_PACKET: u16 = 0;
const NFULNL_MSG_CONFIG: u16 = 1;
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULA_CFG_TIMEOUT: u16 = 4;
const NFULA_CFG_QTHRESH: u16 = 5;
const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULNL_COPY_PACKET: u8 = 2;
const NFULA_PAYLOAD: u16 = 9;
/// The most destinations reported; then one line says the rest are not.
const MAX_REPORTED: usize = 4096;

/// The configuration that binds this socket to `group`, copying `snaplen` bytes of
/// each packet.
pub fn bind_message(group: u16, snaplen: u32) -> Msg {
    let mut m = Msg::new();
    let at = m.begin(
        (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG,
        netlink::NLM_F_REQUEST | netlink::NLM_F_ACK,
    );
    // nfgenmsg: AF_UNSPEC, version 0, the group as the resource id.
    m.buf.extend_from_slice(&[0, 0]);
    m.buf.extend_from_slice(&group.to_be_bytes());
    m.attr(NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND]);
    m.attr(
        NFULA_CFG_MODE,
        &[&snaplen.to_be_bytes()[..], &[NFULNL_COPY_PACKET, 0]].concat(),
    );
    // Each report at once: by default the kernel gathers 100 or waits a second, and a
    // command that ends meanwhile would take its last refusals with it.
    m.attr(NFULA_CFG_QTHRESH, &1u32.to_be_bytes());
    m.attr(NFULA_CFG_TIMEOUT, &0u32.to_be_bytes());
    m.end(at);
    m
}

/// Opens the namespace's nfnetlink_log socket for both groups (in the init, which is
/// in the sandbox's namespace).
pub fn listen() -> std::io::Result<Socket> {
    let mut sock = Socket::open(nix::sys::socket::SockProtocol::NetlinkNetFilter)?;
    for group in [REFUSED_GROUP, AUDIT_GROUP] {
        sock.request(
            bind_message(group, crate::netlink::nft::LOG_SNAPLEN),
            "bind nfnetlink_log",
        )?;
    }
    Ok(sock)
}

/// One refused destination.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Refused {
    /// With --audit: let through, but the lists would have refused it.
    pub audit: bool,
    pub proto: String,
    pub address: Option<IpAddr>,
    pub port: Option<u16>,
    pub name: Option<String>,
}

/// The destination of a logged packet: (group, IP packet) from an nfnetlink_log
/// message.
pub fn parse_packet(ty: u16, payload: &[u8]) -> Option<Refused> {
    if ty != (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET {
        return None;
    }
    let group = u16::from_be_bytes(payload.get(2..4)?.try_into().ok()?);
    let (_, ip) = netlink::attrs(payload.get(4..)?).find(|(t, _)| *t == NFULA_PAYLOAD)?;
    let (proto, address, transport) = match ip.first()? >> 4 {
        4 => {
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            let dst: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            (*ip.get(9)?, IpAddr::V4(Ipv4Addr::from(dst)), ip.get(ihl..))
        }
        6 => {
            let dst: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            (*ip.get(6)?, IpAddr::V6(Ipv6Addr::from(dst)), ip.get(40..))
        }
        _ => return None,
    };
    let port = match proto {
        6 | 17 => transport
            .and_then(|t| t.get(2..4))
            .map(|p| u16::from_be_bytes([p[0], p[1]])),
        _ => None,
    };
    Some(Refused {
        audit: group == AUDIT_GROUP,
        proto: match proto {
            6 => "tcp".into(),
            17 => "udp".into(),
            1 => "icmp".into(),
            58 => "icmpv6".into(),
            n => format!("proto {n}"),
        },
        address: Some(address),
        port,
        name: None,
    })
}

impl Refused {
    fn verdict(&self) -> &'static str {
        if self.audit {
            "would refuse"
        } else {
            "refused"
        }
    }

    /// The line -v prints.
    pub fn line(&self) -> String {
        let what = match (&self.address, self.port) {
            (Some(a), Some(p)) => format!("{} {a}:{p}", self.proto),
            (Some(a), None) => format!("{} {a}", self.proto),
            (None, _) => format!("the name {}", self.name.as_deref().unwrap_or("?")),
        };
        let name = match (&self.address, &self.name) {
            (Some(_), Some(n)) => format!(" ({n})"),
            _ => String::new(),
        };
        format!("nsrun: {} {what}{name}", self.verdict())
    }

    /// The JSON line of --refusals.
    pub fn json(&self, time: f64) -> String {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "null".into());
        format!(
            "{{\"time\": {time:.3}, \"verdict\": \"{}\", \"proto\": {}, \"address\": {}, \"port\": {}, \"name\": {}}}\n",
            self.verdict(),
            crate::info::json_string(&self.proto),
            opt(self
                .address
                .map(|a| crate::info::json_string(&a.to_string()))),
            opt(self.port.map(|p| p.to_string())),
            opt(self.name.as_deref().map(crate::info::json_string)),
        )
    }
}

/// The names nsrun's resolver answered, by address: what a refusal of that address is
/// called.
pub type Names = Arc<Mutex<HashMap<Ipv4Addr, String>>>;

/// Reports refusals until nsrun exits (its own thread).
pub struct Reporter {
    pub log: Option<Socket>,
    /// Names the resolver refused (or, with --audit, would have).
    pub names_refused: Receiver<Refused>,
    pub names: Names,
    pub verbose: bool,
    pub file: Option<std::fs::File>,
    /// Set when the sandbox has ended: one more look, then the thread ends.
    pub stop: Arc<std::sync::atomic::AtomicBool>,
}

/// A channel for the relay's refused names.
pub fn channel() -> (Sender<Refused>, Receiver<Refused>) {
    std::sync::mpsc::channel()
}

impl Reporter {
    pub fn run(mut self) {
        let mut seen: HashSet<Refused> = HashSet::new();
        let mut silenced = false;
        loop {
            let last = self.stop.load(std::sync::atomic::Ordering::Relaxed);
            let mut found: Vec<Refused> = Vec::new();
            if let Some(log) = &mut self.log {
                {
                    let mut fds = [nix::poll::PollFd::new(
                        log.as_fd(),
                        nix::poll::PollFlags::POLLIN,
                    )];
                    let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16));
                }
                found.extend(
                    log.notifications()
                        .iter()
                        .filter_map(|(ty, p)| parse_packet(*ty, p)),
                );
            } else {
                std::thread::sleep(Duration::from_millis(100));
            }
            while let Ok(r) = self.names_refused.try_recv() {
                found.push(r);
            }
            for mut r in found {
                if let Some(IpAddr::V4(a)) = r.address {
                    r.name = self.names.lock().ok().and_then(|m| m.get(&a).cloned());
                }
                if seen.contains(&r) {
                    continue;
                }
                if seen.len() >= MAX_REPORTED {
                    if !silenced && self.verbose {
                        crate::say("nsrun: more refusals than are reported; the rest are not");
                    }
                    silenced = true;
                    continue;
                }
                if self.verbose {
                    crate::say(&r.line());
                }
                if let Some(f) = &mut self.file {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64());
                    let _ = f.write_all(r.json(now).as_bytes());
                }
                seen.insert(r);
            }
            if last {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_logged_packet_says_where_it_went() {
        // nfgenmsg (AF_INET, v0, group 1), NFULA_PAYLOAD: IPv4 TCP to 203.0.113.7:443.
        let mut ip = vec![0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0];
        ip.extend_from_slice(&[10, 200, 0, 6, 203, 0, 113, 7]);
        ip.extend_from_slice(&[0x9c, 0x40, 0x01, 0xbb]);
        ip.extend_from_slice(&[0; 16]);
        let mut payload = vec![2, 0, 0, 1];
        payload.extend_from_slice(&((4 + ip.len()) as u16).to_ne_bytes());
        payload.extend_from_slice(&NFULA_PAYLOAD.to_ne_bytes());
        payload.extend_from_slice(&ip);
        let r = parse_packet(NFNL_SUBSYS_ULOG << 8, &payload).unwrap();
        assert_eq!(
            r,
            Refused {
                audit: false,
                proto: "tcp".into(),
                address: Some("203.0.113.7".parse().unwrap()),
                port: Some(443),
                name: None
            }
        );
        assert_eq!(r.line(), "nsrun: refused tcp 203.0.113.7:443");
        let named = Refused {
            name: Some("api.example.org".into()),
            ..r.clone()
        };
        assert_eq!(
            named.json(1.5),
            "{\"time\": 1.500, \"verdict\": \"refused\", \"proto\": \"tcp\", \"address\": \"203.0.113.7\", \"port\": 443, \"name\": \"api.example.org\"}\n"
        );
        // The audit group, and messages of another kind, or cut short.
        payload[3] = AUDIT_GROUP as u8;
        assert!(parse_packet(NFNL_SUBSYS_ULOG << 8, &payload).unwrap().audit);
        assert_eq!(parse_packet(NFNL_SUBSYS_ULOG << 8 | 1, &payload), None);
        assert_eq!(parse_packet(NFNL_SUBSYS_ULOG << 8, &payload[..20]), None);
    }

    #[test]
    fn the_bind_message_golden_bytes() {
        let m = bind_message(1, 64);
        #[rustfmt::skip]
        let first = [
            56, 0, 0, 0, 1, 4, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, // header: ULOG CONFIG, REQUEST|ACK
            0, 0, 0, 1,                                      // AF_UNSPEC, v0, group 1
            5, 0, 1, 0, 1, 0, 0, 0,                          // CFG_CMD BIND (padded)
        ];
        assert_eq!(&m.buf[..first.len()], first);
        assert!(
            m.buf
                .windows(10)
                .any(|w| w == [10, 0, 2, 0, 0, 0, 0, 64, 2, 0])
        );
    }
}
