//! The messages between nsrun and its holder (`@nsrun-holder`, SOCK_SEQPACKET, one
//! message per request and per answer), with their codecs. The holder decodes what any
//! process of a trusted uid may send: a decoder refuses (None) anything but an exact,
//! well-formed message, and the holder checks every value itself (holder.rs).
//!
//! Requests, integers in the machine's byte order (both ends are one host):
//! - `R` ifindex:u32 address:4 count:u8 links:count×u32 name:rest: register a sandbox
//! - `P` proto:u8 host_address:4 host_port:u16 sandbox_port:u16: publish a port
//! - `I` inode:u64 device:u64 path:rest (absolute, no NUL): its --info-file
//! - `H` allow_host:u8 count:u8 nameservers:count×4: what it may reach on the host
//! - `W`: exit with this client if it is the last (`--wait-teardown`)
//!
//! Answers: `K` text (done; a registration's text is the links whose forwarding was
//! switched on, a newline, the foreign chains opened), `E` why, `X` (the last client).

use std::net::Ipv4Addr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::plan::Publish;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Register {
        ifindex: u32,
        sandbox: Ipv4Addr,
        links: Vec<u32>,
        /// Empty without --name.
        name: String,
    },
    Publish(Publish),
    InfoFile {
        inode: u64,
        device: u64,
        path: PathBuf,
    },
    HostAccess {
        allow_host: bool,
        nameservers: Vec<Ipv4Addr>,
    },
    LastWish,
}

/// At most this many links and nameservers in one request (a count is one byte).
pub const MAX_LIST: usize = 255;

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Request::Register {
                ifindex,
                sandbox,
                links,
                name,
            } => {
                let links = &links[..links.len().min(MAX_LIST)];
                let mut m = vec![b'R'];
                m.extend_from_slice(&ifindex.to_ne_bytes());
                m.extend_from_slice(&sandbox.octets());
                m.push(links.len() as u8);
                for l in links {
                    m.extend_from_slice(&l.to_ne_bytes());
                }
                m.extend_from_slice(name.as_bytes());
                m
            }
            Request::Publish(p) => {
                let mut m = vec![b'P', p.proto];
                m.extend_from_slice(&p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED).octets());
                m.extend_from_slice(&p.host_port.to_ne_bytes());
                m.extend_from_slice(&p.sandbox_port.to_ne_bytes());
                m
            }
            Request::InfoFile {
                inode,
                device,
                path,
            } => {
                let mut m = vec![b'I'];
                m.extend_from_slice(&inode.to_ne_bytes());
                m.extend_from_slice(&device.to_ne_bytes());
                m.extend_from_slice(path.as_os_str().as_bytes());
                m
            }
            Request::HostAccess {
                allow_host,
                nameservers,
            } => {
                let nameservers = &nameservers[..nameservers.len().min(MAX_LIST)];
                let mut m = vec![b'H', u8::from(*allow_host), nameservers.len() as u8];
                for ns in nameservers {
                    m.extend_from_slice(&ns.octets());
                }
                m
            }
            Request::LastWish => vec![b'W'],
        }
    }

    pub fn decode(b: &[u8]) -> Option<Request> {
        let u32_at = |at: usize| Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?));
        let addr_at = |at: usize| {
            let o = b.get(at..at + 4)?;
            Some(Ipv4Addr::new(o[0], o[1], o[2], o[3]))
        };
        match *b.first()? {
            b'R' => {
                let count = usize::from(*b.get(9)?);
                let links_end = 10 + 4 * count;
                let links = (0..count)
                    .map(|i| u32_at(10 + 4 * i))
                    .collect::<Option<Vec<u32>>>()?;
                let name = std::str::from_utf8(b.get(links_end..)?).ok()?.to_string();
                Some(Request::Register {
                    ifindex: u32_at(1)?,
                    sandbox: addr_at(5)?,
                    links,
                    name,
                })
            }
            b'P' if b.len() == 10 => {
                let host_ip = addr_at(2)?;
                Some(Request::Publish(Publish {
                    proto: b[1],
                    host_ip: Some(host_ip).filter(|ip| !ip.is_unspecified()),
                    host_port: u16::from_ne_bytes([b[6], b[7]]),
                    sandbox_port: u16::from_ne_bytes([b[8], b[9]]),
                }))
            }
            b'I' => {
                let inode = u64::from_ne_bytes(b.get(1..9)?.try_into().ok()?);
                let device = u64::from_ne_bytes(b.get(9..17)?.try_into().ok()?);
                let path = b.get(17..)?;
                if path.first() != Some(&b'/') || path.contains(&0) {
                    return None;
                }
                Some(Request::InfoFile {
                    inode,
                    device,
                    path: PathBuf::from(std::ffi::OsStr::from_bytes(path)),
                })
            }
            b'H' => {
                let count = usize::from(*b.get(2)?);
                if b.len() != 3 + 4 * count || b[1] > 1 {
                    return None;
                }
                Some(Request::HostAccess {
                    allow_host: b[1] == 1,
                    nameservers: (0..count)
                        .map(|i| addr_at(3 + 4 * i))
                        .collect::<Option<_>>()?,
                })
            }
            b'W' if b.len() == 1 => Some(Request::LastWish),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Done(String),
    Refused(String),
    Last,
}

impl Reply {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Reply::Done(text) => [b"K".as_slice(), text.as_bytes()].concat(),
            Reply::Refused(why) => [b"E".as_slice(), why.as_bytes()].concat(),
            Reply::Last => b"X".to_vec(),
        }
    }

    pub fn decode(b: &[u8]) -> Option<Reply> {
        let text = |rest: &[u8]| String::from_utf8_lossy(rest).into_owned();
        match b {
            [b'K', rest @ ..] => Some(Reply::Done(text(rest))),
            [b'E', rest @ ..] => Some(Reply::Refused(text(rest))),
            [b'X'] => Some(Reply::Last),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn examples() -> Vec<Request> {
        vec![
            Request::Register {
                ifindex: 7,
                sandbox: Ipv4Addr::new(10, 200, 0, 2),
                links: vec![2, 3],
                name: "web".into(),
            },
            Request::Register {
                ifindex: 7,
                sandbox: Ipv4Addr::new(10, 200, 0, 2),
                links: vec![],
                name: String::new(),
            },
            Request::Publish(Publish {
                proto: 6,
                host_ip: None,
                host_port: 8080,
                sandbox_port: 80,
            }),
            Request::Publish(Publish {
                proto: 17,
                host_ip: Some(Ipv4Addr::new(198, 51, 100, 2)),
                host_port: 5353,
                sandbox_port: 53,
            }),
            Request::InfoFile {
                inode: 42,
                device: 7,
                path: "/run/web.json".into(),
            },
            Request::HostAccess {
                allow_host: true,
                nameservers: vec![Ipv4Addr::new(198, 51, 100, 2)],
            },
            Request::HostAccess {
                allow_host: false,
                nameservers: vec![],
            },
            Request::LastWish,
        ]
    }

    #[test]
    fn requests_and_replies_round_trip() {
        for r in examples() {
            assert_eq!(Request::decode(&r.encode()), Some(r.clone()), "{r:?}");
        }
        for r in [
            Reply::Done("eth0\n".into()),
            Reply::Refused("why".into()),
            Reply::Last,
        ] {
            assert_eq!(Reply::decode(&r.encode()), Some(r.clone()));
        }
    }

    /// The bytes, for a little-endian machine (the holder and its clients share one).
    #[test]
    #[cfg(target_endian = "little")]
    fn golden_bytes() {
        let e = examples();
        // R, ifindex 7, 10.200.0.2, 2 links (2, 3), "web"
        assert_eq!(
            e[0].encode(),
            [
                b'R', 7, 0, 0, 0, 10, 200, 0, 2, 2, 2, 0, 0, 0, 3, 0, 0, 0, b'w', b'e', b'b'
            ]
        );
        // P, tcp, 0.0.0.0, 8080 (0x1f90), 80
        assert_eq!(e[2].encode(), [b'P', 6, 0, 0, 0, 0, 0x90, 0x1f, 80, 0]);
        // I, inode 42, device 7, the path
        assert_eq!(
            &e[4].encode()[..18],
            [b'I', 42, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, b'/']
        );
        // H, allow, 1 nameserver
        assert_eq!(e[5].encode(), [b'H', 1, 1, 198, 51, 100, 2]);
        assert_eq!(e[7].encode(), b"W");
        assert_eq!(Reply::Refused("no".into()).encode(), b"Eno");
    }

    #[test]
    fn anything_but_an_exact_message_is_refused() {
        for bad in [
            &b""[..],
            b"Z",
            b"R\x07\x00\x00",                             // short
            b"R\x07\x00\x00\x00\x0a\xc8\x00\x02\x02\x02", // fewer links than it says
            b"P\x06\x00\x00\x00\x00\x90\x1f\x50",         // one byte short
            b"P\x06\x00\x00\x00\x00\x90\x1f\x50\x00\x00", // one byte long
            b"I\x2a\x00\x00\x00\x00\x00\x00\x00relative",
            b"I\x2a\x00\x00\x00\x00\x00\x00\x00/a\x00b",
            b"H\x02\x00",             // allow is 0 or 1
            b"H\x00\x01\x01\x02\x03", // a nameserver cut short
            b"WW",
        ] {
            assert_eq!(Request::decode(bad), None, "{bad:?}");
        }
        // A name that is not UTF-8 is refused too.
        let mut r = examples()[1].encode();
        r.push(0xff);
        assert_eq!(Request::decode(&r), None);
        assert_eq!(Reply::decode(b"XX"), None);
        assert_eq!(Reply::decode(b""), None);
    }
}
