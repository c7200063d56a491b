//! The address plan: IPv4 prefixes, the sandbox pool, and the choice of a free /30.
//!
//! Pure: the kernel's state (addresses and routes in use) comes in as a list of prefixes.
//! A sandbox's subnet is locked by the name of its host-end link, derived from the subnet
//! itself, so two nsrun instances that pick the same subnet collide on `RTM_NEWLINK`
//! with `EEXIST` and the loser moves on. No lease file exists, so none can leak.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// Prefix length of one sandbox's subnet: network, host end, sandbox end, broadcast.
pub const SANDBOX_PREFIX: u8 = 30;

/// Name prefix of every host-end link nsrun creates.
pub const LINK_PREFIX: &str = "nsr";

/// The ranges meant for private use (RFC 1918) and shared address space (RFC 6598),
/// which no public destination uses: where sandbox addresses may come from, and what
/// `--block-lan` closes.
pub const PRIVATE_RANGES: [Ipv4Net; 4] = [
    Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 8),
    Ipv4Net::new(Ipv4Addr::new(172, 16, 0, 0), 12),
    Ipv4Net::new(Ipv4Addr::new(192, 168, 0, 0), 16),
    Ipv4Net::new(Ipv4Addr::new(100, 64, 0, 0), 10),
];

/// Where networks' (`--network`) subnets come from without `--pool`: beside the
/// sandboxes' own pool, so a lone sandbox and a network never race for one range.
pub const NETWORK_POOL: &str = "10.201.0.0/16";

/// The addresses a member of a network on `subnet` may have: all of it but its network
/// address, the gateway (the first) and the broadcast address.
pub fn member_range(subnet: Ipv4Net) -> std::ops::RangeInclusive<u32> {
    let network = u32::from(subnet.network());
    network + 2..=(network | !subnet.mask()) - 1
}

/// The loopback interface's index, the same in every network namespace.
pub const LOOPBACK_INDEX: u32 = 1;

/// Whether a link of this name is a sandbox's host end.
pub fn is_sandbox_link(name: &str) -> bool {
    name.starts_with(LINK_PREFIX)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Net {
    pub const fn new(addr: Ipv4Addr, prefix: u8) -> Self {
        Ipv4Net { addr, prefix }
    }

    /// Whether `addr` is in this prefix.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & self.mask() == u32::from(self.addr) & self.mask()
    }

    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        let shorter = self.prefix.min(other.prefix);
        let mask = Ipv4Net::new(Ipv4Addr::UNSPECIFIED, shorter).mask();
        u32::from(self.addr) & mask == u32::from(other.addr) & mask
    }

    /// Number of addresses in the prefix.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("'{s}' is not an IPv4 prefix: no '/LEN'"))?;
        let addr: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("'{ip}' is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("'{prefix}' is not a prefix length from 0 to 32"))?;
        Ok(Ipv4Net::new(addr, prefix))
    }
}

/// One sandbox's addressing, derived from its /30.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SandboxNet {
    pub subnet: Ipv4Net,
    pub host_addr: Ipv4Addr,
    pub sandbox_addr: Ipv4Addr,
    pub host_end: LinkName,
}

/// An interface name of at most 15 bytes, kept inline so it can cross a fork untouched.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LinkName {
    bytes: [u8; 16],
    len: u8,
}

impl LinkName {
    pub fn new(name: &str) -> Option<LinkName> {
        if name.is_empty() || name.len() > 15 || name.contains(['/', '\0']) {
            return None;
        }
        let mut bytes = [0u8; 16];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Some(LinkName {
            bytes,
            len: name.len() as u8,
        })
    }
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl fmt::Debug for LinkName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for LinkName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl SandboxNet {
    /// `--ip ADDR`: the sandbox gets exactly ADDR, on a /31 (RFC 3021: both addresses
    /// usable, so any address works, .0 and .255 included) whose other address is the
    /// host's end. The link's name is that of the /30 around it, the same lock as a
    /// pool's subnet there.
    pub fn for_address(addr: Ipv4Addr) -> SandboxNet {
        let a = u32::from(addr);
        SandboxNet {
            subnet: Ipv4Net::new(Ipv4Addr::from(a & !1), 31),
            host_addr: Ipv4Addr::from(a ^ 1),
            sandbox_addr: addr,
            host_end: LinkName::new(&format!("{LINK_PREFIX}{:08x}", a >> 2))
                .expect("11-byte name is valid"),
        }
    }

    /// The addressing of the /30 that starts at `network`.
    pub fn for_subnet(network: Ipv4Addr) -> SandboxNet {
        let base = u32::from(network);
        // "nsr" + 8 hex digits of the subnet's address >> 2: 11 bytes, unique per /30,
        // whichever pool it came from.
        let host_end = LinkName::new(&format!("{LINK_PREFIX}{:08x}", base >> 2))
            .expect("11-byte name is valid");
        SandboxNet {
            subnet: Ipv4Net::new(network, SANDBOX_PREFIX),
            host_addr: Ipv4Addr::from(base + 1),
            sandbox_addr: Ipv4Addr::from(base + 2),
            host_end,
        }
    }
}

/// The /30 subnets of `pool` that overlap nothing in `used`, in order from `start`
/// (an index into the pool, wrapped), so concurrent runs spread over the pool.
pub fn free_subnets<'a>(
    pool: Ipv4Net,
    used: &'a [Ipv4Net],
    start: u64,
) -> impl Iterator<Item = SandboxNet> + 'a {
    let count = if pool.prefix > SANDBOX_PREFIX {
        0
    } else {
        pool.size() / 4
    };
    let base = u32::from(pool.network());
    (0..count)
        .map(move |i| (start + i) % count.max(1))
        .map(move |i| Ipv4Addr::from(base + (i as u32) * 4))
        .filter(move |net| {
            let candidate = Ipv4Net::new(*net, SANDBOX_PREFIX);
            !used.iter().any(|u| u.overlaps(&candidate))
        })
        .map(SandboxNet::for_subnet)
}

/// An address for the refusal of `--ip ip`: the same place in the nearest following
/// /30s, then anywhere in `pool`, whose /30 (a sandbox's lock) overlaps nothing in
/// `used` and is not `ip`'s own /30. None when nothing is free.
pub fn suggest_address(ip: Ipv4Addr, used: &[Ipv4Net], pool: Ipv4Net) -> Option<Ipv4Addr> {
    let own = Ipv4Net::new(ip, SANDBOX_PREFIX);
    let free = |a: Ipv4Addr| {
        let quad = Ipv4Net::new(a, SANDBOX_PREFIX);
        quad.network() != own.network() && !used.iter().any(|u| u.overlaps(&quad))
    };
    (1..=64u32)
        .map(|i| Ipv4Addr::from(u32::from(ip).wrapping_add(4 * i)))
        .find(|a| free(*a))
        .or_else(|| {
            free_subnets(pool, used, 0)
                .map(|n| n.sandbox_addr)
                .find(|a| free(*a))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggested_address_is_never_one_in_use() {
        let pool = net("10.200.0.0/16");
        // A host route over the whole neighbourhood: the suggestion comes from the pool.
        let used = [net("10.77.0.0/16")];
        let s = suggest_address("10.77.0.2".parse().unwrap(), &used, pool).unwrap();
        assert_eq!(s, "10.200.0.2".parse::<Ipv4Addr>().unwrap());
        // Taken by a running sandbox: not the same /30 (its lock), even at .1 or .3.
        for ip in ["10.77.0.1", "10.77.0.2", "10.77.0.3"] {
            let ip: Ipv4Addr = ip.parse().unwrap();
            let s = suggest_address(ip, &[Ipv4Net::new(ip, 31)], pool).unwrap();
            assert_ne!(
                Ipv4Net::new(s, 30).network(),
                Ipv4Net::new(ip, 30).network()
            );
            assert_eq!(u32::from(s) - u32::from(ip), 4, "{ip} -> {s}");
        }
        assert_eq!(
            suggest_address(
                "10.77.0.2".parse().unwrap(),
                &[net("0.0.0.0/1"), net("128.0.0.0/1")],
                pool
            ),
            None
        );
    }

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_rejects_prefixes() {
        assert_eq!(net("10.200.0.0/16").prefix, 16);
        assert!("10.200.0.0".parse::<Ipv4Net>().is_err());
        assert!("10.200.0.0/33".parse::<Ipv4Net>().is_err());
        assert!("10.200.0/16".parse::<Ipv4Net>().is_err());
        assert!("10.200.0.0/-1".parse::<Ipv4Net>().is_err());
    }

    #[test]
    fn overlap_is_symmetric_and_exact() {
        assert!(net("10.0.0.0/8").overlaps(&net("10.200.0.4/30")));
        assert!(net("10.200.0.4/30").overlaps(&net("10.0.0.0/8")));
        assert!(!net("10.200.0.4/30").overlaps(&net("10.200.0.8/30")));
        assert!(net("0.0.0.0/0").overlaps(&net("192.0.2.1/32")));
        assert!(net("10.200.0.6/32").overlaps(&net("10.200.0.4/30")));
    }

    #[test]
    fn sandbox_net_layout_and_name() {
        let s = SandboxNet::for_subnet("10.200.0.4".parse().unwrap());
        assert_eq!(s.subnet, net("10.200.0.4/30"));
        assert_eq!(s.host_addr, "10.200.0.5".parse::<Ipv4Addr>().unwrap());
        assert_eq!(s.sandbox_addr, "10.200.0.6".parse::<Ipv4Addr>().unwrap());
        // 10.200.0.4 = 0x0ac80004, >> 2 = 0x02b20001
        assert_eq!(s.host_end.as_str(), "nsr02b20001");
    }

    #[test]
    fn free_subnets_skip_used_and_wrap() {
        let pool = net("10.200.0.0/28"); // four /30s
        let used = [net("10.200.0.0/30"), net("10.200.0.9/32")];
        let got: Vec<String> = free_subnets(pool, &used, 0)
            .map(|s| s.subnet.to_string())
            .collect();
        assert_eq!(got, ["10.200.0.4/30", "10.200.0.12/30"]);
        let got: Vec<String> = free_subnets(pool, &used, 3)
            .map(|s| s.subnet.to_string())
            .collect();
        assert_eq!(got, ["10.200.0.12/30", "10.200.0.4/30"]);
    }

    #[test]
    fn pool_exhausted_or_too_small_gives_nothing() {
        let pool = net("10.200.0.0/30");
        assert_eq!(free_subnets(pool, &[net("10.0.0.0/8")], 0).count(), 0);
        assert_eq!(free_subnets(net("10.200.0.0/31"), &[], 0).count(), 0);
    }

    #[test]
    fn distinct_names_for_distinct_subnets() {
        let pool = net("10.200.0.0/16");
        let mut names: Vec<String> = free_subnets(pool, &[], 0)
            .map(|s| s.host_end.to_string())
            .collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n);
        assert_eq!(n, 16384);
    }

    #[test]
    fn a_fixed_address_gets_a_slash_31_and_the_name_of_its_slash_30() {
        let s = SandboxNet::for_address("10.77.0.2".parse().unwrap());
        assert_eq!(s.subnet, net("10.77.0.2/31"));
        assert_eq!(s.host_addr, "10.77.0.3".parse::<Ipv4Addr>().unwrap());
        let pool = SandboxNet::for_subnet("10.77.0.0".parse().unwrap());
        assert_eq!(s.host_end, pool.host_end);
        let edge = SandboxNet::for_address("10.77.0.255".parse().unwrap());
        assert_eq!(edge.host_addr, "10.77.0.254".parse::<Ipv4Addr>().unwrap());
    }

    #[test]
    fn link_name_limits() {
        assert!(LinkName::new("a23456789012345").is_some());
        assert!(LinkName::new("a234567890123456").is_none());
        assert!(LinkName::new("").is_none());
        assert!(LinkName::new("a/b").is_none());
    }
}
