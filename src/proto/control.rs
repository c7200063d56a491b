//! What `nsrun --list`, `--stop`, `--join`, `--disconnect` and `--reconnect` say to a
//! running nsrun, over its abstract socket `@nsrun-ctl-PID` (SOCK_SEQPACKET, one message
//! per request and per answer). The kernel removes the name when nsrun is gone, however
//! it ends, so the sockets that exist are exactly the sandboxes that run: no daemon, no
//! file to go stale. nsrun answers only root and its own user (SO_PEERCRED).
//!
//! Requests: `I` (what runs: answered `R` with a [`Running`]), `S` timeout_ms:u32 (stop, as Ctrl-C would;
//! answered when it has ended), `D` drop:u8 (pull the cable), `C` (put it back), `J`
//! (the namespaces and identity to join). Answers: `K` text, `E` why, `X` status:i32
//! (the command's exit status), `J` uid:u32 gid:u32 count:u8 groups:count×u32 with the
//! namespaces' descriptors (net, mnt, pid, uts) attached. Integers little-endian.

/// The abstract name of nsrun `pid`'s control socket, without the leading NUL.
pub fn socket_name(pid: u32) -> String {
    format!("{PREFIX}{pid}")
}

/// What every control socket's name starts with.
pub const PREFIX: &str = "nsrun-ctl-";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Info,
    Stop { timeout_ms: u32 },
    Disconnect { drop: bool },
    Reconnect,
    Join,
}

/// What a running sandbox says about itself (`I`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Running {
    pub nsrun_pid: u32,
    pub init_pid: u32,
    pub name: Option<String>,
    /// None without a network.
    pub address: Option<std::net::Ipv4Addr>,
    /// "nat", or "none" (`--no-net`).
    pub network: String,
    /// Published ports as given: "8080:80/tcp".
    pub ports: Vec<String>,
    /// The user the command runs as.
    pub uid: u32,
    /// Seconds since the epoch.
    pub started: u64,
    pub command: Vec<String>,
}

/// The most list items one field carries (a count is one byte).
const MAX_ITEMS: usize = 255;

fn put_str(m: &mut Vec<u8>, s: &str) {
    m.extend_from_slice(&(s.len() as u32).to_le_bytes());
    m.extend_from_slice(s.as_bytes());
}

fn put_list(m: &mut Vec<u8>, items: &[String]) {
    let items = &items[..items.len().min(MAX_ITEMS)];
    m.push(items.len() as u8);
    for i in items {
        put_str(m, i);
    }
}

/// Reads fields from the front of a message.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
    fn list(&mut self) -> Option<Vec<String>> {
        let n = *self.take(1)?.first()? as usize;
        (0..n).map(|_| self.str()).collect()
    }
}

impl Running {
    fn encode_into(&self, m: &mut Vec<u8>) {
        m.extend_from_slice(&self.nsrun_pid.to_le_bytes());
        m.extend_from_slice(&self.init_pid.to_le_bytes());
        put_str(m, self.name.as_deref().unwrap_or(""));
        m.push(u8::from(self.address.is_some()));
        m.extend_from_slice(
            &self
                .address
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED)
                .octets(),
        );
        put_str(m, &self.network);
        put_list(m, &self.ports);
        m.extend_from_slice(&self.uid.to_le_bytes());
        m.extend_from_slice(&self.started.to_le_bytes());
        put_list(m, &self.command);
    }

    fn decode(b: &[u8]) -> Option<Running> {
        let mut f = Fields(b);
        let nsrun_pid = f.u32()?;
        let init_pid = f.u32()?;
        let name = Some(f.str()?).filter(|n| !n.is_empty());
        let has_address = *f.take(1)?.first()?;
        let octets: [u8; 4] = f.take(4)?.try_into().ok()?;
        let address = match has_address {
            0 => None,
            1 => Some(std::net::Ipv4Addr::from(octets)),
            _ => return None,
        };
        let running = Running {
            nsrun_pid,
            init_pid,
            name,
            address,
            network: f.str()?,
            ports: f.list()?,
            uid: f.u32()?,
            started: f.u64()?,
            command: f.list()?,
        };
        f.0.is_empty().then_some(running)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Info(Running),
    Done(String),
    Error(String),
    Status(i32),
    Join {
        uid: u32,
        gid: u32,
        groups: Vec<u32>,
    },
}

/// The most groups a join answer carries (a count is one byte).
const MAX_GROUPS: usize = 255;

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Request::Info => vec![b'I'],
            Request::Stop { timeout_ms } => [&[b'S'][..], &timeout_ms.to_le_bytes()].concat(),
            Request::Disconnect { drop } => vec![b'D', u8::from(*drop)],
            Request::Reconnect => vec![b'C'],
            Request::Join => vec![b'J'],
        }
    }

    pub fn decode(b: &[u8]) -> Option<Request> {
        match b {
            [b'I'] => Some(Request::Info),
            [b'S', rest @ ..] => Some(Request::Stop {
                timeout_ms: u32::from_le_bytes(rest.try_into().ok()?),
            }),
            [b'D', d @ (0 | 1)] => Some(Request::Disconnect { drop: *d == 1 }),
            [b'C'] => Some(Request::Reconnect),
            [b'J'] => Some(Request::Join),
            _ => None,
        }
    }
}

impl Reply {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Reply::Info(r) => {
                let mut m = vec![b'R'];
                r.encode_into(&mut m);
                m
            }
            Reply::Done(text) => [b"K", text.as_bytes()].concat(),
            Reply::Error(text) => [b"E", text.as_bytes()].concat(),
            Reply::Status(code) => [&[b'X'][..], &code.to_le_bytes()].concat(),
            Reply::Join { uid, gid, groups } => {
                let groups = &groups[..groups.len().min(MAX_GROUPS)];
                let mut m = vec![b'J'];
                m.extend_from_slice(&uid.to_le_bytes());
                m.extend_from_slice(&gid.to_le_bytes());
                m.push(groups.len() as u8);
                for g in groups {
                    m.extend_from_slice(&g.to_le_bytes());
                }
                m
            }
        }
    }

    pub fn decode(b: &[u8]) -> Option<Reply> {
        let (&tag, rest) = b.split_first()?;
        let u32_at = |at: usize| Some(u32::from_le_bytes(rest.get(at..at + 4)?.try_into().ok()?));
        match tag {
            b'R' => Some(Reply::Info(Running::decode(rest)?)),
            b'K' => Some(Reply::Done(String::from_utf8(rest.to_vec()).ok()?)),
            b'E' => Some(Reply::Error(String::from_utf8(rest.to_vec()).ok()?)),
            b'X' => Some(Reply::Status(i32::from_le_bytes(rest.try_into().ok()?))),
            b'J' => {
                let count = *rest.get(8)? as usize;
                if rest.len() != 9 + 4 * count {
                    return None;
                }
                Some(Reply::Join {
                    uid: u32_at(0)?,
                    gid: u32_at(4)?,
                    groups: (0..count)
                        .map(|i| u32_at(9 + 4 * i))
                        .collect::<Option<_>>()?,
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_round_trip() {
        for r in [
            Request::Info,
            Request::Stop { timeout_ms: 1500 },
            Request::Disconnect { drop: true },
            Request::Disconnect { drop: false },
            Request::Reconnect,
            Request::Join,
        ] {
            assert_eq!(Request::decode(&r.encode()), Some(r));
        }
        for r in [
            Reply::Info(Running {
                nsrun_pid: 10,
                init_pid: 11,
                name: Some("web".into()),
                address: Some("10.200.0.6".parse().unwrap()),
                network: "nat".into(),
                ports: vec!["8080:80/tcp".into()],
                uid: 65534,
                started: 1_700_000_000,
                command: vec!["python3".into(), "-m".into(), "http.server".into()],
            }),
            Reply::Info(Running::default()),
            Reply::Done("{}".into()),
            Reply::Error("no".into()),
            Reply::Status(137),
            Reply::Join {
                uid: 65534,
                gid: 65534,
                groups: vec![65534, 27],
            },
        ] {
            assert_eq!(Reply::decode(&r.encode()), Some(r));
        }
    }

    #[test]
    fn control_golden_bytes() {
        assert_eq!(
            Request::Stop { timeout_ms: 258 }.encode(),
            [b'S', 2, 1, 0, 0]
        );
        assert_eq!(Request::Disconnect { drop: true }.encode(), [b'D', 1]);
        #[rustfmt::skip]
        let join = [b'J', 0xe8, 3, 0, 0, 0xe8, 3, 0, 0, 1, 27, 0, 0, 0]; // uid 1000 gid 1000 [27]
        assert_eq!(
            Reply::decode(&join),
            Some(Reply::Join {
                uid: 1000,
                gid: 1000,
                groups: vec![27]
            })
        );
        assert_eq!(Reply::decode(&join[..13]), None);
        assert_eq!(Request::decode(b"D\x02"), None);
        assert_eq!(Request::decode(b"S\x01"), None);
        assert_eq!(Request::decode(b"Ix"), None);
        assert_eq!(Reply::decode(b"X\x01\x02"), None);
    }
}
