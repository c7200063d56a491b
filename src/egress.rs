//! PURE: `--allow` and `--deny`: the destinations a sandbox may reach, or may not, as
//! rules of its own table (firewall.rs), enforced by the kernel for every program and
//! every protocol.

use std::net::Ipv4Addr;

use anyhow::{Result, anyhow};

use crate::addr::Ipv4Net;
use crate::netlink::nft::{IPPROTO_TCP, IPPROTO_UDP, Match};

/// What a destination names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Net(Ipv4Net),
    /// A host name: the addresses nsrun's resolver answers for it.
    Name(String),
    /// `*.DOMAIN`: every name under DOMAIN (not DOMAIN itself).
    Under(String),
}

impl Target {
    /// Whether a queried name (lower case, no final dot) is this one.
    pub fn covers(&self, name: &str) -> bool {
        match self {
            Target::Net(_) => false,
            Target::Name(n) => n == name,
            Target::Under(domain) => name
                .strip_suffix(domain.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        }
    }
}

/// The destinations --allow gives, shared (not copied) by the plan, the decision, each
/// policy and the init.
pub type AllowList = std::sync::Arc<[Dest]>;

/// One destination: a prefix or a name, optionally only some ports of TCP, UDP or both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dest {
    pub target: Target,
    /// A port range; None: every port, and every protocol (ICMP too).
    pub ports: Option<(u16, u16)>,
    /// TCP or UDP only; None: both (with ports) or every protocol (without).
    pub proto: Option<u8>,
}

/// The address set of the `index`th allowed destination, when it is a name.
pub fn set_name(index: usize) -> String {
    format!("names_{index}")
}

/// The most addresses one name's set holds (what nsrun's resolver can add).
pub const SET_SIZE: u32 = 4096;

/// The sets of an allow-list: (index of the destination, its set's name), for names.
pub fn name_sets(allow: &[Dest]) -> Vec<(usize, String)> {
    allow
        .iter()
        .enumerate()
        .filter(|(_, d)| !matches!(d.target, Target::Net(_)))
        .map(|(i, _)| (i, set_name(i)))
        .collect()
}

/// One set of allowed addresses and prefixes that share their ports and protocol: one
/// lookup per packet, however many there are (a hash of addresses; an interval set
/// once a prefix is among them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressSet {
    pub name: String,
    pub ports: Option<(u16, u16)>,
    pub proto: Option<u8>,
    pub nets: Vec<Ipv4Net>,
}

/// Whether an allowed destination is an address or prefix, kept in an [`AddressSet`]
/// rather than a rule of its own.
pub fn in_address_set(d: &Dest) -> bool {
    matches!(d.target, Target::Net(_))
}

/// The allowed addresses and prefixes, grouped by ports and protocol, in the order
/// first given (see [`AddressSet::distinct`]).
pub fn address_sets(allow: &[Dest]) -> Vec<AddressSet> {
    let mut sets: Vec<AddressSet> = Vec::new();
    for d in allow.iter().filter(|d| in_address_set(d)) {
        let Target::Net(net) = d.target else { continue };
        let net = Ipv4Net::new(net.network(), net.prefix);
        match sets
            .iter_mut()
            .find(|s| s.ports == d.ports && s.proto == d.proto)
        {
            Some(s) => s.nets.push(net),
            None => sets.push(AddressSet {
                name: format!("addrs_{}", sets.len()),
                ports: d.ports,
                proto: d.proto,
                nets: vec![net],
            }),
        }
    }
    sets
}

impl AddressSet {
    /// The set's addresses and prefixes in order, each once: its elements. Sorted, not
    /// hashed: a 1,000-line --allow-file is on every start's path.
    pub fn distinct(mut self) -> AddressSet {
        self.nets
            .sort_unstable_by_key(|n| (u32::from(n.addr), n.prefix));
        self.nets.dedup();
        self
    }

    /// Whether the set holds ranges (an interval set).
    #[cfg(test)]
    pub fn interval(&self) -> bool {
        self.as_ranges().is_some()
    }

    /// The set's ranges, when it holds ranges (an interval set): when a prefix is among
    /// them, or when neighbouring addresses make ranges of fewer elements than the
    /// addresses (each element is work for the kernel at start-up; a list of
    /// consecutive addresses becomes a few ranges). None: a hash of the addresses.
    pub fn as_ranges(&self) -> Option<Vec<(u32, u64)>> {
        let ranges = self.ranges();
        let prefix = self.nets.iter().any(|n| n.prefix < 32);
        (prefix || 2 * ranges.len() < self.nets.len()).then_some(ranges)
    }

    /// The set's addresses as ranges [start, end), overlapping and adjacent ones merged
    /// (the kernel refuses overlapping intervals), in order.
    pub fn ranges(&self) -> Vec<(u32, u64)> {
        let mut ranges: Vec<(u32, u64)> = self
            .nets
            .iter()
            .map(|n| {
                let start = u32::from(n.network());
                (start, u64::from(start) + n.size())
            })
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u32, u64)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if u64::from(start) <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        merged
    }

    /// The rules' matches: the set, then the ports.
    pub fn matches(&self) -> Vec<Vec<Match>> {
        Dest {
            target: Target::Name(String::new()),
            ports: self.ports,
            proto: self.proto,
        }
        .matches(Some(&self.name))
    }
}

/// The most destinations one sandbox takes (each becomes a rule or two).
pub const MAX_DESTS: usize = 65_536;

fn example(option: &str) -> String {
    // A line of a file: what the line may hold.
    if option.starts_with("--allow-file ") {
        return "e.g. a line '203.0.113.0/24', '198.51.100.7:443' or '198.51.100.7:5000-5010/udp'"
            .into();
    }
    format!(
        "e.g. '{option} 203.0.113.0/24', '{option} 198.51.100.7:443' or '{option} 198.51.100.7:5000-5010/udp'"
    )
}

/// `ADDR[/LEN][:PORT[-PORT]][/tcp|/udp]`.
pub fn parse_dest(spec: &str, option: &str) -> Result<Dest> {
    let bad = |why: &str| anyhow!("{option} {spec:?}: {why}; {}", example(option));
    let s = spec.trim();
    let (s, proto) = match s.rsplit_once('/') {
        Some((rest, "tcp")) => (rest, Some(IPPROTO_TCP)),
        Some((rest, "udp")) => (rest, Some(IPPROTO_UDP)),
        _ => (s, None),
    };
    let (addr, ports) = match s.split_once(':') {
        Some((addr, ports)) => (addr, Some(ports)),
        None => (s, None),
    };
    let looks_like_name = addr
        .trim_end_matches(|c: char| c.is_ascii_digit() || c == '/')
        .chars()
        .any(|c| c.is_ascii_alphabetic() || c == '*');
    let target = if looks_like_name {
        name_target(addr).ok_or_else(|| bad("not a host name, '*.DOMAIN', address or prefix"))?
    } else {
        Target::Net(net_of(addr).ok_or_else(|| bad("not an IPv4 address or prefix"))?)
    };
    let ports = match ports {
        None => None,
        Some(p) => {
            let (low, high) = p.split_once('-').unwrap_or((p, p));
            let port = |x: &str| x.parse::<u16>().ok().filter(|v| *v > 0);
            match (port(low), port(high)) {
                (Some(l), Some(h)) if l <= h => Some((l, h)),
                _ => return Err(bad("a port is a number from 1 to 65535, a range LOW-HIGH")),
            }
        }
    };
    if proto.is_some() && ports.is_none() {
        return Err(bad("a protocol goes with a port"));
    }
    Ok(Dest {
        target,
        ports,
        proto,
    })
}

/// A host name as DNS has it (letters, digits, `-`, dots; at most 253 bytes), lower
/// case, or `*.` and one.
fn name_target(s: &str) -> Option<Target> {
    let s = s.trim_end_matches('.').to_ascii_lowercase();
    let (under, name) = match s.strip_prefix("*.") {
        Some(rest) => (true, rest.to_string()),
        None => (false, s),
    };
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    let target = if under {
        Target::Under(name)
    } else {
        Target::Name(name)
    };
    valid.then_some(target)
}

fn net_of(addr: &str) -> Option<Ipv4Net> {
    let net = if addr.contains('/') {
        addr.parse::<Ipv4Net>().ok()?
    } else {
        Ipv4Net::new(addr.parse::<Ipv4Addr>().ok()?, 32)
    };
    Some(Ipv4Net::new(net.network(), net.prefix))
}

/// `A.B.C.D`, four decimal numbers up to 255 without leading zeros, and nothing else:
/// what parse_dest makes a /32 of, read at a fraction of its cost. None: anything else,
/// for parse_dest to read or refuse.
fn plain_address(s: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = s.split(|b| *b == b'.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || (part.len() > 1 && part[0] == b'0') {
            return None;
        }
        let mut value: u16 = 0;
        for b in part {
            if !b.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u16::from(b - b'0');
        }
        *octet = u8::try_from(value).ok()?;
    }
    parts.next().is_none().then(|| Ipv4Addr::from(octets))
}

/// `--allow-file`: one destination per line; `#` starts a comment, blank lines are
/// skipped. Errors name the file and the line.
pub fn parse_file(text: &str, file: &str) -> Result<Vec<Dest>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        // Most lines of a long list are bare addresses.
        if let Some(addr) = plain_address(line.as_bytes()) {
            out.push(Dest {
                target: Target::Net(Ipv4Net::new(addr, 32)),
                ports: None,
                proto: None,
            });
            continue;
        }
        // The line's name only for an error: formatting it for each of thousands of
        // lines costs more than parsing them.
        let dest = parse_dest(line, "--allow-file")
            .or_else(|_| parse_dest(line, &format!("--allow-file {file} line {}:", i + 1)))?;
        out.push(dest);
    }
    Ok(out)
}

impl Dest {
    /// The matches of this destination, one list per protocol it covers; `set` is the
    /// name of the address set of a name's destination.
    pub fn matches(&self, set: Option<&str>) -> Vec<Vec<Match>> {
        let to = match (&self.target, set) {
            (Target::Net(net), _) => Match::DAddr(*net),
            (_, Some(set)) => Match::DAddrInSet(set.to_string()),
            (_, None) => return Vec::new(),
        };
        let Some((low, high)) = self.ports else {
            return vec![vec![to]];
        };
        let port = if low == high {
            Match::DPort(low)
        } else {
            Match::DPortRange(low, high)
        };
        let protos = match self.proto {
            Some(p) => vec![p],
            None => vec![IPPROTO_TCP, IPPROTO_UDP],
        };
        protos
            .into_iter()
            .map(|p| vec![to.clone(), Match::L4Proto(p), port.clone()])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_address_reads_as_parse_dest_reads_it() {
        let mut lines: Vec<String> = [
            "1.2.3.4",
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "1..3.4",
            "1.2.3.4/32",
            "1.2.3.4:80",
            "a.b.c.d",
            "1.2.3.04",
            "10.0.0.1 ",
            "+1.2.3.4",
            "1.2.3.",
            ".1.2.3",
            "1000.1.1.1",
            "1.2.3.0",
            "100.200.250.255",
        ]
        .iter()
        .map(|l| l.to_string())
        .collect();
        let mut x: u32 = 7;
        for _ in 0..2000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let b = x.to_be_bytes();
            lines.push(format!(
                "{}.{}.{}.{}",
                b[0],
                b[1],
                b[2],
                u16::from(b[3]) * 2
            ));
        }
        for line in &lines {
            let fast = plain_address(line.as_bytes()).map(|a| Dest {
                target: Target::Net(Ipv4Net::new(a, 32)),
                ports: None,
                proto: None,
            });
            let slow = parse_dest(line, "--allow").ok();
            match fast {
                Some(d) => assert_eq!(Some(d), slow, "{line}"),
                // Not bare: parse_dest decides (a name, a prefix, a port, an error).
                None => assert!(
                    !matches!(
                        slow,
                        Some(Dest {
                            target: Target::Net(_),
                            ..
                        })
                    ) || line.contains(['/', ':', ' ']),
                    "{line}: read by parse_dest as {slow:?}"
                ),
            }
        }
    }

    fn dest(s: &str) -> Dest {
        parse_dest(s, "--allow").unwrap()
    }

    #[test]
    fn destinations() {
        let net = |s: &str| s.parse::<Ipv4Net>().unwrap();
        assert_eq!(
            dest("203.0.113.0/24"),
            Dest {
                target: Target::Net(net("203.0.113.0/24")),
                ports: None,
                proto: None
            }
        );
        assert_eq!(
            dest("198.51.100.7").target,
            Target::Net(net("198.51.100.7/32"))
        );
        assert_eq!(dest("198.51.100.7:443").ports, Some((443, 443)));
        let d = dest("198.51.100.0/24:5000-5010/udp");
        assert_eq!(
            (d.target, d.ports, d.proto),
            (
                Target::Net(net("198.51.100.0/24")),
                Some((5000, 5010)),
                Some(IPPROTO_UDP)
            )
        );
        // A prefix with host bits is its network.
        assert_eq!(
            dest("203.0.113.9/24").target,
            Target::Net(net("203.0.113.0/24"))
        );
        // Names and domains, in lower case.
        assert_eq!(
            dest("Registry.Example.org:443").target,
            Target::Name("registry.example.org".into())
        );
        assert_eq!(
            dest("*.github.com:443").target,
            Target::Under("github.com".into())
        );
        for bad in [
            "",
            "203.0.113.0/33",
            "203.0.113.1:0",
            "203.0.113.1:9-3",
            "203.0.113.1/tcp",
            "300.1.1.1",
            "203.0.113.1:80/icmp",
            "bad..name",
            "-x.example.org",
            "a*.example.org",
        ] {
            let e = parse_dest(bad, "--allow").unwrap_err().to_string();
            assert!(e.contains("e.g. '--allow 203.0.113.0/24'"), "{bad}: {e}");
        }
    }

    #[test]
    fn single_addresses_go_into_sets_by_port() {
        let allow: Vec<Dest> = [
            "203.0.113.1",
            "203.0.113.2:443",
            "203.0.113.3",
            "203.0.113.0/24",
            "203.0.113.4:443",
            "203.0.113.1",
        ]
        .iter()
        .map(|s| dest(s))
        .collect();
        let sets: Vec<AddressSet> = address_sets(&allow)
            .into_iter()
            .map(AddressSet::distinct)
            .collect();
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[0].name, "addrs_0");
        assert_eq!(sets[0].nets.len(), 3, "203.0.113.1 once, .3 and the /24");
        assert!(sets[0].interval(), "a prefix makes it an interval set");
        assert_eq!(
            sets[0].ranges(),
            [(0xcb00_7100, 0xcb00_7200)],
            "the /24 covers both addresses: one range"
        );
        assert_eq!(sets[1].ports, Some((443, 443)));
        assert_eq!(sets[1].nets.len(), 2);
        assert!(!sets[1].interval());
        assert!(in_address_set(&allow[3]), "a prefix goes into a set too");
        assert_eq!(sets[1].matches().len(), 2, "TCP and UDP");
        // Adjacent and overlapping prefixes merge; the top of the space has no end.
        let set = AddressSet {
            name: "s".into(),
            ports: None,
            proto: None,
            nets: [
                "10.0.1.0/24",
                "10.0.0.0/24",
                "10.0.0.128/25",
                "255.255.255.0/24",
                "10.0.3.7/32",
            ]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect(),
        };
        assert_eq!(
            set.ranges(),
            [
                (0x0a00_0000, 0x0a00_0200),
                (0x0a00_0307, 0x0a00_0308),
                (0xffff_ff00, 1 << 32)
            ]
        );
    }

    #[test]
    fn names_and_domains_cover_what_they_say() {
        let name = Target::Name("api.example.org".into());
        assert!(name.covers("api.example.org"));
        assert!(!name.covers("x.api.example.org"));
        let under = Target::Under("example.org".into());
        assert!(under.covers("api.example.org") && under.covers("a.b.example.org"));
        assert!(!under.covers("example.org"), "not the domain itself");
        assert!(
            !under.covers("badexample.org"),
            "not a name that ends the same"
        );
    }

    #[test]
    fn files_take_comments_and_name_the_line() {
        let got = parse_file(
            "# the registry\n203.0.113.0/24\n\n198.51.100.7:443  # the API\n",
            "p.txt",
        )
        .unwrap();
        assert_eq!(got.len(), 2);
        let e = parse_file("203.0.113.0/24\nno..pe\n", "p.txt").unwrap_err();
        assert!(e.to_string().contains("--allow-file p.txt line 2:"), "{e}");
        assert!(
            e.to_string().contains("e.g. a line '203.0.113.0/24'"),
            "{e}"
        );
        let e = parse_file("300.1.1.1\n", "p.txt").unwrap_err().to_string();
        assert_eq!(
            e,
            "--allow-file p.txt line 1: \"300.1.1.1\": not an IPv4 address or prefix; e.g. a line '203.0.113.0/24', '198.51.100.7:443' or '198.51.100.7:5000-5010/udp'"
        );
    }

    #[test]
    fn a_port_without_a_protocol_is_tcp_and_udp() {
        assert_eq!(dest("203.0.113.1:53").matches(None).len(), 2);
        assert_eq!(dest("203.0.113.1:53/tcp").matches(None).len(), 1);
        let net = "203.0.113.1/32".parse().unwrap();
        assert_eq!(dest("203.0.113.1").matches(None), [vec![Match::DAddr(net)]]);
        assert!(dest("203.0.113.1:1-9").matches(None)[0].contains(&Match::DPortRange(1, 9)));
        let named = dest("api.example.org:443/tcp").matches(Some("names_0"));
        assert_eq!(named[0][0], Match::DAddrInSet("names_0".into()));
        assert!(dest("api.example.org").matches(None).is_empty());
    }
}

/// The question of a DNS message (RFC 1035 4.1): its id, name (lower case, no final
/// dot) and type, and where the question ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    pub id: u16,
    pub name: String,
    pub qtype: u16,
    pub end: usize,
}

const DNS_HEADER: usize = 12;
const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
/// Pointers followed in one name at most (a loop of them ends there).
const MAX_JUMPS: usize = 16;

/// A name at `at`, compression pointers followed: (the name, where it ends in place).
fn read_name(msg: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut labels: Vec<String> = Vec::new();
    let mut end = None;
    for _ in 0..=MAX_JUMPS {
        loop {
            let len = *msg.get(at)? as usize;
            if len == 0 {
                let end = end.unwrap_or(at + 1);
                let name = labels.join(".").to_ascii_lowercase();
                return (name.len() <= 253).then_some((name, end));
            }
            if len & 0xc0 == 0xc0 {
                let pointer = ((len & 0x3f) << 8) | *msg.get(at + 1)? as usize;
                end.get_or_insert(at + 2);
                at = pointer;
                break;
            }
            if len > 63 {
                return None;
            }
            let label = msg.get(at + 1..at + 1 + len)?;
            labels.push(String::from_utf8_lossy(label).into_owned());
            at += 1 + len;
        }
    }
    None
}

fn u16_at(msg: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(msg.get(at..at + 2)?.try_into().ok()?))
}

/// The one question of a query (or of the answer to one).
pub fn parse_question(msg: &[u8]) -> Option<Question> {
    if msg.len() < DNS_HEADER || u16_at(msg, 4)? != 1 {
        return None;
    }
    let (name, at) = read_name(msg, DNS_HEADER)?;
    Some(Question {
        id: u16_at(msg, 0)?,
        name,
        qtype: u16_at(msg, at)?,
        end: at + 4,
    })
    .filter(|q| q.end <= msg.len())
}

/// The answer that refuses a name: NXDOMAIN, at once, with the query's id and question.
pub fn refusal(query: &[u8], q: &Question) -> Vec<u8> {
    let rd = query.get(2).copied().unwrap_or(0) & 0x01;
    let mut m = Vec::with_capacity(q.end);
    m.extend_from_slice(&q.id.to_be_bytes());
    m.push(0x80 | rd); // QR, RD as asked
    m.push(0x80 | 3); // RA, NXDOMAIN
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    m.extend_from_slice(&query[DNS_HEADER..q.end]);
    m
}

/// The answer nsrun gives itself for a name it knows (a network's member): `addr` for
/// an A question, no records (NODATA) for any other type, with the query's id and
/// question, authoritative.
pub fn local_answer(query: &[u8], q: &Question, addr: Ipv4Addr, ttl: u32) -> Vec<u8> {
    let rd = query.get(2).copied().unwrap_or(0) & 0x01;
    let a = q.qtype == TYPE_A;
    let mut m = Vec::with_capacity(q.end + 16);
    m.extend_from_slice(&q.id.to_be_bytes());
    m.push(0x80 | 0x04 | rd); // QR, AA, RD as asked
    m.push(0x80); // RA, NOERROR
    m.extend_from_slice(&[0, 1, 0, u8::from(a), 0, 0, 0, 0]);
    m.extend_from_slice(&query[DNS_HEADER..q.end]);
    if a {
        m.extend_from_slice(&[0xc0, DNS_HEADER as u8]); // the question's name
        m.extend_from_slice(&TYPE_A.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes()); // IN
        m.extend_from_slice(&ttl.to_be_bytes());
        m.extend_from_slice(&4u16.to_be_bytes());
        m.extend_from_slice(&addr.octets());
    }
    m
}

/// The IPv4 addresses an answer gives for the question's name, following its CNAMEs
/// (in the answer section only; records for other names, in any section, give
/// nothing), each with its TTL in seconds. Nothing unless the answer is to `q`.
pub fn answer_addresses(msg: &[u8], q: &Question) -> Vec<(Ipv4Addr, u32)> {
    let Some(asked) = parse_question(msg) else {
        return Vec::new();
    };
    let is_answer = msg.get(2).is_some_and(|f| f & 0x80 != 0);
    if !is_answer || asked.id != q.id || asked.name != q.name {
        return Vec::new();
    }
    let count = u16_at(msg, 6).unwrap_or(0) as usize;
    let mut records = Vec::new();
    let mut at = asked.end;
    for _ in 0..count {
        let Some((owner, after)) = read_name(msg, at) else {
            break;
        };
        let (Some(rtype), Some(ttl), Some(len)) = (
            u16_at(msg, after),
            msg.get(after + 4..after + 8)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            u16_at(msg, after + 8),
        ) else {
            break;
        };
        let data = after + 10;
        let Some(rdata) = msg.get(data..data + len as usize) else {
            break;
        };
        records.push((owner, rtype, ttl, data, rdata.to_vec()));
        at = data + len as usize;
    }
    // The chain of names: the question's, then each CNAME target in turn.
    let mut chain = vec![q.name.clone()];
    for _ in 0..MAX_JUMPS {
        let last = chain.last().cloned().unwrap_or_default();
        let next = records
            .iter()
            .find(|(owner, rtype, ..)| *rtype == TYPE_CNAME && *owner == last)
            .and_then(|(_, _, _, data, _)| read_name(msg, *data))
            .map(|(target, _)| target);
        match next {
            Some(target) if !chain.contains(&target) => chain.push(target),
            _ => break,
        }
    }
    records
        .iter()
        .filter(|(owner, rtype, _, _, rdata)| {
            *rtype == TYPE_A && rdata.len() == 4 && chain.contains(owner)
        })
        .map(|(_, _, ttl, _, rdata)| (Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]), *ttl))
        .collect()
}

#[cfg(test)]
mod wire_tests {
    use super::*;

    fn name(n: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for label in n.split('.') {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
        out
    }

    fn query(id: u16, n: &str) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        m.extend(name(n));
        m.extend_from_slice(&[0, 1, 0, 1]);
        m
    }

    fn rr(owner: &[u8], rtype: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
        let mut r = owner.to_vec();
        r.extend_from_slice(&rtype.to_be_bytes());
        r.extend_from_slice(&[0, 1]);
        r.extend_from_slice(&ttl.to_be_bytes());
        r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        r.extend_from_slice(rdata);
        r
    }

    /// An answer to `query` with `records` (ANCOUNT = their number).
    fn answer(query: &[u8], records: &[Vec<u8>]) -> Vec<u8> {
        let mut m = query.to_vec();
        m[2] = 0x81;
        m[3] = 0x80;
        m[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
        for r in records {
            m.extend_from_slice(r);
        }
        m
    }

    #[test]
    fn questions_and_refusals() {
        let q = query(0x1234, "Api.Example.org");
        let parsed = parse_question(&q).unwrap();
        assert_eq!(
            parsed,
            Question {
                id: 0x1234,
                name: "api.example.org".into(),
                qtype: 1,
                end: q.len()
            }
        );
        let r = refusal(&q, &parsed);
        assert_eq!(&r[..4], [0x12, 0x34, 0x81, 0x83], "QR RD, RA NXDOMAIN");
        assert_eq!(&r[4..12], [0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&r[12..], &q[12..]);
        assert_eq!(parse_question(&q[..q.len() - 1]), None);
        assert_eq!(parse_question(&[0; 11]), None);
    }

    #[test]
    fn addresses_follow_cnames_and_nothing_else() {
        let q = query(7, "www.example.org");
        let asked = parse_question(&q).unwrap();
        // www -> (pointer to the question's name) CNAME edge.example.net; its A records.
        let edge = name("edge.example.net");
        let a = answer(
            &q,
            &[
                rr(&[0xc0, 12], TYPE_CNAME, 300, &edge),
                rr(&edge, TYPE_A, 20, &[203, 0, 113, 7]),
                rr(&edge, TYPE_A, 20, &[203, 0, 113, 8]),
                // A record for a name not in the chain: ignored.
                rr(&name("evil.example.com"), TYPE_A, 999, &[198, 51, 100, 66]),
            ],
        );
        assert_eq!(
            answer_addresses(&a, &asked),
            [
                (Ipv4Addr::new(203, 0, 113, 7), 20),
                (Ipv4Addr::new(203, 0, 113, 8), 20)
            ]
        );
        // An answer with another id, or to another question, gives nothing.
        let mut other = a.clone();
        other[1] = 8;
        assert!(answer_addresses(&other, &asked).is_empty());
        let elsewhere = answer(
            &query(7, "evil.example.com"),
            &[rr(&[0xc0, 12], TYPE_A, 60, &[198, 51, 100, 66])],
        );
        assert!(answer_addresses(&elsewhere, &asked).is_empty());
        // A pointer loop ends.
        let looped = answer(&q, &[rr(&[0xc0, 0x30], TYPE_A, 1, &[1, 2, 3, 4])]);
        let mut looped = looped;
        let at = looped.len() - 14;
        looped[at] = 0xc0;
        looped[at + 1] = at as u8;
        let _ = answer_addresses(&looped, &asked);
    }
}
