//! PURE: `--allow` and `--deny`: the destinations a sandbox may reach, or may not, as
//! rules of its own table (firewall.rs), enforced by the kernel for every program and
//! every protocol.

use std::net::Ipv4Addr;

use anyhow::{Result, anyhow, bail};

use crate::addr::Ipv4Net;
use crate::netlink::nft::{IPPROTO_TCP, IPPROTO_UDP, Match};

/// One destination: a prefix, optionally only some ports of TCP, UDP or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dest {
    pub net: Ipv4Net,
    /// A port range; None: every port, and every protocol (ICMP too).
    pub ports: Option<(u16, u16)>,
    /// TCP or UDP only; None: both (with ports) or every protocol (without).
    pub proto: Option<u8>,
}

/// The most destinations one sandbox takes (each becomes a rule or two).
pub const MAX_DESTS: usize = 4096;

fn example(option: &str) -> String {
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
    if looks_like_name {
        bail!(
            "{option} {spec:?}: host names are not taken yet, only addresses and prefixes; give the addresses, {}",
            example(option)
        );
    }
    let net = if addr.contains('/') {
        addr.parse::<Ipv4Net>()
            .map_err(|_| bad("not an IPv4 address or prefix"))?
    } else {
        Ipv4Net::new(
            addr.parse::<Ipv4Addr>()
                .map_err(|_| bad("not an IPv4 address or prefix"))?,
            32,
        )
    };
    let net = Ipv4Net::new(net.network(), net.prefix);
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
    Ok(Dest { net, ports, proto })
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
        out.push(parse_dest(
            line,
            &format!("--allow-file {file} line {}:", i + 1),
        )?);
    }
    Ok(out)
}

impl Dest {
    /// The matches of this destination: one set per protocol it covers.
    pub fn matches(&self) -> Vec<Vec<Match>> {
        let to = Match::DAddr(self.net);
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

    fn dest(s: &str) -> Dest {
        parse_dest(s, "--allow").unwrap()
    }

    #[test]
    fn destinations() {
        let net = |s: &str| s.parse::<Ipv4Net>().unwrap();
        assert_eq!(
            dest("203.0.113.0/24"),
            Dest {
                net: net("203.0.113.0/24"),
                ports: None,
                proto: None
            }
        );
        assert_eq!(dest("198.51.100.7").net, net("198.51.100.7/32"));
        assert_eq!(dest("198.51.100.7:443").ports, Some((443, 443)));
        let d = dest("198.51.100.0/24:5000-5010/udp");
        assert_eq!(
            (d.net, d.ports, d.proto),
            (
                net("198.51.100.0/24"),
                Some((5000, 5010)),
                Some(IPPROTO_UDP)
            )
        );
        // A prefix with host bits is its network.
        assert_eq!(dest("203.0.113.9/24").net, net("203.0.113.0/24"));
        for bad in [
            "",
            "203.0.113.0/33",
            "203.0.113.1:0",
            "203.0.113.1:9-3",
            "203.0.113.1/tcp",
            "300.1.1.1",
            "203.0.113.1:80/icmp",
        ] {
            let e = parse_dest(bad, "--allow").unwrap_err().to_string();
            assert!(e.contains("e.g. '--allow 203.0.113.0/24'"), "{bad}: {e}");
        }
        let e = parse_dest("registry.example.org:443", "--allow").unwrap_err();
        assert!(
            e.to_string().contains("host names are not taken yet"),
            "{e}"
        );
        assert!(parse_dest("*.example.org", "--deny").is_err());
    }

    #[test]
    fn files_take_comments_and_name_the_line() {
        let got = parse_file(
            "# the registry\n203.0.113.0/24\n\n198.51.100.7:443  # the API\n",
            "p.txt",
        )
        .unwrap();
        assert_eq!(got.len(), 2);
        let e = parse_file("203.0.113.0/24\nnope\n", "p.txt").unwrap_err();
        assert!(e.to_string().contains("--allow-file p.txt line 2:"), "{e}");
    }

    #[test]
    fn a_port_without_a_protocol_is_tcp_and_udp() {
        assert_eq!(dest("203.0.113.1:53").matches().len(), 2);
        assert_eq!(dest("203.0.113.1:53/tcp").matches().len(), 1);
        assert_eq!(
            dest("203.0.113.1").matches(),
            [vec![Match::DAddr(dest("203.0.113.1").net)]]
        );
        assert!(dest("203.0.113.1:1-9").matches()[0].contains(&Match::DPortRange(1, 9)));
    }
}
