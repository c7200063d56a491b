//! "Go": what nsrun sends its init once the host side is ready. It is the list of the
//! init's operations, in the order the init carries them out (bubblewrap's setup ops):
//! decided on the host side (decide.rs), checked by the init before it does anything
//! ([`order_problem`]), so an order the security promises need is a property a unit
//! test sees, not a convention.
//!
//! Encoding: `G`, then each operation as tag:u8 length:u32 (little-endian) payload.
//! Addresses are 4 bytes, texts UTF-8.

use std::net::Ipv4Addr;

/// One step of the init's setup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitOp {
    /// Mount propagation private (nothing reaches the host), a fresh /proc and /sys.
    PrivateMounts,
    /// `lo` up.
    LoopbackUp,
    /// The sandbox's nf_tables table: this batch (firewall.rs), sent from inside.
    Firewall(Vec<u8>),
    /// Sysctls of the sandbox's network namespace: no IPv6, any port for any user.
    NetworkSysctls,
    /// The sandbox's address on eth0.
    Address {
        addr: Ipv4Addr,
        prefix: u8,
    },
    /// eth0 up: from here packets can flow.
    LinkUp,
    /// The default route through the host's end.
    DefaultRoute(Ipv4Addr),
    /// The DNS relay's listeners on this address, passed back to nsrun.
    DnsRelay(Ipv4Addr),
    Hostname(String),
    /// The sandbox's own /etc/resolv.conf and /etc/hosts, mounted over the host's.
    PrivateFiles {
        resolv_conf: Option<String>,
        hosts: Option<String>,
    },
    /// `net.ipv4.ping_group_range` for every group, in the sandbox's namespace.
    AllowPing,
    /// /proc/sys read-only, kernel interfaces masked.
    LockProcSys,
    /// Every mount nosuid: no file capabilities, no set-user-ID.
    NoFilePrivileges,
    /// Fork the command, which drops every privilege and execs. Always last.
    Exec,
    /// Listen for the table's reports of refused packets (nfnetlink_log), and pass the
    /// socket to nsrun.
    Refusals,
}

const TAG: u8 = b'G';

impl InitOp {
    fn tag(&self) -> u8 {
        match self {
            InitOp::PrivateMounts => 1,
            InitOp::LoopbackUp => 2,
            InitOp::Firewall(_) => 3,
            InitOp::NetworkSysctls => 4,
            InitOp::Address { .. } => 5,
            InitOp::LinkUp => 6,
            InitOp::DefaultRoute(_) => 7,
            InitOp::DnsRelay(_) => 8,
            InitOp::Hostname(_) => 9,
            InitOp::PrivateFiles { .. } => 10,
            InitOp::AllowPing => 11,
            InitOp::LockProcSys => 12,
            InitOp::NoFilePrivileges => 13,
            InitOp::Exec => 14,
            InitOp::Refusals => 15,
        }
    }

    fn payload(&self) -> Vec<u8> {
        match self {
            InitOp::Firewall(batch) => batch.clone(),
            InitOp::Address { addr, prefix } => [&addr.octets()[..], &[*prefix]].concat(),
            InitOp::DefaultRoute(a) | InitOp::DnsRelay(a) => a.octets().to_vec(),
            InitOp::Hostname(name) => name.as_bytes().to_vec(),
            InitOp::PrivateFiles { resolv_conf, hosts } => {
                let mut p = Vec::new();
                for file in [resolv_conf, hosts] {
                    match file {
                        None => p.push(0),
                        Some(text) => {
                            p.push(1);
                            p.extend_from_slice(&(text.len() as u32).to_le_bytes());
                            p.extend_from_slice(text.as_bytes());
                        }
                    }
                }
                p
            }
            _ => Vec::new(),
        }
    }

    fn decode(tag: u8, p: &[u8]) -> Option<InitOp> {
        let empty = |op: InitOp| p.is_empty().then_some(op);
        let addr = || -> Option<Ipv4Addr> {
            let b: [u8; 4] = p.try_into().ok()?;
            Some(Ipv4Addr::from(b))
        };
        match tag {
            1 => empty(InitOp::PrivateMounts),
            2 => empty(InitOp::LoopbackUp),
            3 => Some(InitOp::Firewall(p.to_vec())),
            4 => empty(InitOp::NetworkSysctls),
            5 => {
                let b: [u8; 5] = p.try_into().ok()?;
                let prefix = b[4];
                (prefix <= 32).then(|| InitOp::Address {
                    addr: Ipv4Addr::new(b[0], b[1], b[2], b[3]),
                    prefix,
                })
            }
            6 => empty(InitOp::LinkUp),
            7 => Some(InitOp::DefaultRoute(addr()?)),
            8 => Some(InitOp::DnsRelay(addr()?)),
            9 => Some(InitOp::Hostname(String::from_utf8(p.to_vec()).ok()?)),
            10 => {
                let mut rest = p;
                let mut file = || -> Option<Option<String>> {
                    let (&present, after) = rest.split_first()?;
                    match present {
                        0 => {
                            rest = after;
                            Some(None)
                        }
                        1 => {
                            let len = u32::from_le_bytes(after.get(..4)?.try_into().ok()?);
                            let text = after.get(4..4usize.checked_add(len as usize)?)?;
                            rest = &after[4 + len as usize..];
                            Some(Some(String::from_utf8(text.to_vec()).ok()?))
                        }
                        _ => None,
                    }
                };
                let resolv_conf = file()?;
                let hosts = file()?;
                rest.is_empty()
                    .then_some(InitOp::PrivateFiles { resolv_conf, hosts })
            }
            11 => empty(InitOp::AllowPing),
            12 => empty(InitOp::LockProcSys),
            13 => empty(InitOp::NoFilePrivileges),
            14 => empty(InitOp::Exec),
            15 => empty(InitOp::Refusals),
            _ => None,
        }
    }
}

/// The whole message.
pub fn encode(ops: &[InitOp]) -> Vec<u8> {
    let mut m = vec![TAG];
    for op in ops {
        let payload = op.payload();
        m.push(op.tag());
        m.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        m.extend_from_slice(&payload);
    }
    m
}

pub fn decode(bytes: &[u8]) -> Option<Vec<InitOp>> {
    let (&tag, mut rest) = bytes.split_first()?;
    if tag != TAG {
        return None;
    }
    let mut ops = Vec::new();
    while let Some((&tag, after)) = rest.split_first() {
        let len = u32::from_le_bytes(after.get(..4)?.try_into().ok()?) as usize;
        let payload = after.get(4..4usize.checked_add(len)?)?;
        ops.push(InitOp::decode(tag, payload)?);
        rest = &after[4 + len..];
    }
    Some(ops)
}

/// Why `ops` must not run, if they must not: the order the sandbox's promises rest on.
/// - mounts are private before anything is mounted;
/// - the sandbox's table exists before eth0 has an address, is up or has a route (no
///   packet passes unfiltered), and eth0 is never up without it;
/// - sysctls are written before /proc/sys becomes read-only, and it does before exec;
/// - every mount is nosuid before exec;
/// - exec comes last, once: the command drops every privilege right before it.
pub fn order_problem(ops: &[InitOp]) -> Option<&'static str> {
    let at = |want: fn(&InitOp) -> bool| ops.iter().position(want);
    let last = |want: fn(&InitOp) -> bool| ops.iter().rposition(want);
    if ops.first() != Some(&InitOp::PrivateMounts) {
        return Some("the mounts are not made private first");
    }
    if ops.last() != Some(&InitOp::Exec) || at(|o| *o == InitOp::Exec) != Some(ops.len() - 1) {
        return Some("exec is not last, or not once");
    }
    let firewall = at(|o| matches!(o, InitOp::Firewall(_)));
    let network = at(|o| {
        matches!(
            o,
            InitOp::Address { .. } | InitOp::LinkUp | InitOp::DefaultRoute(_)
        )
    });
    match (firewall, network) {
        (None, Some(_)) => return Some("eth0 is set up without the sandbox's table"),
        (Some(f), Some(n)) if f > n => {
            return Some("eth0 is set up before the sandbox's table exists");
        }
        _ => {}
    }
    let lock = at(|o| *o == InitOp::LockProcSys);
    let Some(lock) = lock else {
        return Some("/proc/sys is never made read-only");
    };
    if last(|o| matches!(o, InitOp::NetworkSysctls | InitOp::AllowPing)).is_some_and(|s| s > lock) {
        return Some("a sysctl is written after /proc/sys is read-only");
    }
    if at(|o| *o == InitOp::NoFilePrivileges).is_none() {
        return Some("the mounts are never made nosuid");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network_ops() -> Vec<InitOp> {
        vec![
            InitOp::PrivateMounts,
            InitOp::LoopbackUp,
            InitOp::Firewall(vec![1, 2, 3]),
            InitOp::NetworkSysctls,
            InitOp::Address {
                addr: Ipv4Addr::new(10, 200, 0, 6),
                prefix: 30,
            },
            InitOp::LinkUp,
            InitOp::DefaultRoute(Ipv4Addr::new(10, 200, 0, 5)),
            InitOp::DnsRelay(Ipv4Addr::new(127, 0, 0, 53)),
            InitOp::Hostname("web".into()),
            InitOp::PrivateFiles {
                resolv_conf: Some("nameserver 198.51.100.1\n".into()),
                hosts: None,
            },
            InitOp::AllowPing,
            InitOp::LockProcSys,
            InitOp::NoFilePrivileges,
            InitOp::Exec,
        ]
    }

    #[test]
    fn go_round_trips() {
        let ops = network_ops();
        assert_eq!(decode(&encode(&ops)), Some(ops));
        let files = vec![InitOp::PrivateFiles {
            resolv_conf: None,
            hosts: Some(String::new()),
        }];
        assert_eq!(decode(&encode(&files)), Some(files));
        assert_eq!(decode(&encode(&[])), Some(vec![]));
    }

    #[test]
    fn go_golden_bytes() {
        #[rustfmt::skip]
        let want = [
            b'G',
            1, 0, 0, 0, 0,                          // PrivateMounts
            5, 5, 0, 0, 0, 10, 200, 0, 6, 30,       // Address 10.200.0.6/30
            3, 2, 0, 0, 0, 0xab, 0xcd,              // Firewall, a 2-byte batch
            10, 8, 0, 0, 0, 1, 2, 0, 0, 0, b'h', b'i', 0, // PrivateFiles "hi", no hosts
            14, 0, 0, 0, 0,                         // Exec
        ];
        let ops = vec![
            InitOp::PrivateMounts,
            InitOp::Address {
                addr: Ipv4Addr::new(10, 200, 0, 6),
                prefix: 30,
            },
            InitOp::Firewall(vec![0xab, 0xcd]),
            InitOp::PrivateFiles {
                resolv_conf: Some("hi".into()),
                hosts: None,
            },
            InitOp::Exec,
        ];
        assert_eq!(encode(&ops), want);
        assert_eq!(decode(&want), Some(ops));
    }

    #[test]
    fn go_refuses_anything_malformed() {
        let good = encode(&network_ops());
        for cut in 0..good.len() - 1 {
            // A cut inside an operation never decodes as something else.
            if let Some(ops) = decode(&good[..cut]) {
                assert!(ops.len() < network_ops().len());
                assert!(network_ops().starts_with(&ops));
            }
        }
        assert_eq!(decode(b""), None);
        assert_eq!(decode(b"X"), None);
        assert_eq!(decode(&[b'G', 99, 0, 0, 0, 0]), None, "unknown operation");
        assert_eq!(
            decode(&[b'G', 1, 1, 0, 0, 0, 0]),
            None,
            "payload on an empty op"
        );
        assert_eq!(
            decode(&[b'G', 5, 5, 0, 0, 0, 10, 0, 0, 1, 33]),
            None,
            "prefix 33"
        );
        assert_eq!(decode(&[b'G', 9, 1, 0, 0, 0, 0xff]), None, "not UTF-8");
        assert_eq!(
            decode(&[b'G', 7, 0xff, 0xff, 0xff, 0xff]),
            None,
            "length beyond"
        );
    }

    #[test]
    fn the_order_the_promises_need_is_checked() {
        assert_eq!(order_problem(&network_ops()), None);
        let moved = |from: usize, to: usize| {
            let mut ops = network_ops();
            let op = ops.remove(from);
            ops.insert(to, op);
            order_problem(&ops)
        };
        // The table after the address, the link or the route.
        for to in 4..=6 {
            assert!(moved(2, to).is_some(), "table moved to {to}");
        }
        assert!(
            moved(6, 1).is_some(),
            "the route before the table: {:?}",
            moved(6, 1)
        );
        // A sysctl after /proc/sys is read-only.
        assert!(moved(10, 11).is_some());
        assert!(moved(3, 11).is_some());
        // Exec before the end; mounts not private first.
        assert!(moved(13, 12).is_some());
        assert!(moved(0, 1).is_some());
        let without = |drop: InitOp| {
            let ops: Vec<InitOp> = network_ops().into_iter().filter(|o| *o != drop).collect();
            order_problem(&ops)
        };
        assert!(without(InitOp::Firewall(vec![1, 2, 3])).is_some());
        assert!(without(InitOp::LockProcSys).is_some());
        assert!(without(InitOp::NoFilePrivileges).is_some());
        assert!(without(InitOp::Exec).is_some());
        // Without a network: no table, no eth0.
        let offline = vec![
            InitOp::PrivateMounts,
            InitOp::LoopbackUp,
            InitOp::AllowPing,
            InitOp::LockProcSys,
            InitOp::NoFilePrivileges,
            InitOp::Exec,
        ];
        assert_eq!(order_problem(&offline), None);
    }
}
