//! Facts about the host, read before nsrun changes anything: credentials, users, the
//! addresses and routes in use, and the uplink.

use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use caps::{CapSet, Capability};

use crate::addr::{Ipv4Net, LOOPBACK_INDEX};
use crate::dns::{self, HostDns};
use crate::netlink::Socket;
use crate::netlink::route::{self, Link};

const RT_TABLE_LOCAL: u8 = 255;
const RTN_UNICAST: u8 = 1;

/// What the running process has, as read from the kernel.
#[derive(Clone, Copy, Debug, Default)]
pub struct Creds {
    pub ruid: u32,
    pub euid: u32,
    pub rgid: u32,
    pub net_admin: bool,
    pub sys_admin: bool,
    pub setpcap: bool,
}

/// The running process's ids and the capabilities nsrun needs, from the kernel.
pub fn creds() -> Creds {
    let res_uid = nix::unistd::getresuid().ok();
    let res_gid = nix::unistd::getresgid().ok();
    let has = |cap| caps::has_cap(None, CapSet::Effective, cap).unwrap_or(false);
    Creds {
        ruid: res_uid.map(|r| r.real.as_raw()).unwrap_or(u32::MAX),
        euid: res_uid.map(|r| r.effective.as_raw()).unwrap_or(u32::MAX),
        rgid: res_gid.map(|r| r.real.as_raw()).unwrap_or(u32::MAX),
        net_admin: has(Capability::CAP_NET_ADMIN),
        sys_admin: has(Capability::CAP_SYS_ADMIN),
        setpcap: has(Capability::CAP_SETPCAP),
    }
}

pub fn current_groups() -> Vec<u32> {
    nix::unistd::getgroups()
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_default()
}

/// The most nsrun reads of a host configuration file.
pub const MAX_CONFIG: u64 = 1 << 20;

/// Reads a host configuration file safely: only a regular file (a FIFO would block, a
/// device like /dev/zero would never end), opened without blocking, at most
/// [`MAX_CONFIG`] bytes. `Ok(None)` when it does not exist.
pub fn read_config(path: &str) -> std::io::Result<Option<String>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    if meta.len() > MAX_CONFIG {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {} KiB", MAX_CONFIG / 1024),
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG).read_to_end(&mut bytes)?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// A host file nsrun can do without (passwd, group, hosts): empty when unusable.
pub fn read_etc(path: &str) -> String {
    read_config(path).ok().flatten().unwrap_or_default()
}

/// Reads a resolv.conf: a missing file or dangling symlink is empty; any other failure
/// is an error that says what to do.
fn read_optional(path: &str) -> Result<Option<String>> {
    read_config(path).map_err(|e| {
        anyhow::anyhow!(
            "read {path}: {e}; fix it, or give the sandbox's nameservers with --dns ADDR, e.g. '--dns 192.0.2.53'"
        )
    })
}

/// Nothing at /etc/resolv.conf, or a directory, which a file cannot cover: the resolver
/// library then falls back to 127.0.0.1, as it does on the host.
fn resolv_conf_absent() -> bool {
    match std::fs::symlink_metadata("/etc/resolv.conf") {
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        Ok(meta) => meta.is_dir(),
    }
}

/// Reads the host's DNS set-up. With `dns_given` (the user chose the nameservers) the
/// host's file is not opened at all: whatever it is (a FIFO, a device) cannot matter.
pub fn read_host_dns(dns_given: bool) -> Result<HostDns> {
    let resolv_missing = resolv_conf_absent();
    let resolv = if dns_given {
        dns::ResolvConf::default()
    } else {
        read_optional("/etc/resolv.conf")?
            .map(|t| dns::parse(&t))
            .unwrap_or_default()
    };
    let resolved_upstream = if resolv
        .nameservers
        .contains(&std::net::IpAddr::V4(dns::RESOLVED_STUB))
    {
        read_optional(dns::RESOLVED_UPSTREAM_FILE)
            .ok()
            .flatten()
            .map(|t| dns::parse(&t))
    } else {
        None
    };
    Ok(HostDns {
        resolv_missing,
        resolv,
        resolved_upstream,
    })
}

/// Everything nsrun reads of the host before it changes anything, as one value
/// (decide.rs turns it and the plan into what to set up).
#[derive(Clone, Debug, Default)]
pub struct HostFacts {
    pub net: NetFacts,
    pub dns: HostDns,
    /// The link the kernel routes the host's first nameserver through (loopback for one
    /// of its own addresses): (nameserver, link); absent without a route.
    pub nameserver_links: Vec<(Ipv4Addr, u32)>,
    /// The host's /etc/hosts, copied into the sandbox's.
    pub hosts: String,
}

/// Reads the host's facts: addresses, routes and the internet (through `rtnl`), DNS
/// (not its files when the user gave `--dns`), the routes to its nameservers, its hosts
/// file. `network`: false for --no-net, which needs only the hosts file.
pub fn read_facts(rtnl: Option<&mut Socket>, dns_given: bool) -> Result<HostFacts> {
    let hosts = read_etc("/etc/hosts");
    let Some(rtnl) = rtnl else {
        return Ok(HostFacts {
            hosts,
            ..HostFacts::default()
        });
    };
    let net = net_facts(rtnl)?;
    let dns = read_host_dns(dns_given)?;
    // Only the nameserver the sandbox would ask first matters (decide.rs relays it when
    // the host reaches it off the internet's link): one lookup on the start-up path.
    let first = match dns::decide(&[], &dns) {
        dns::Decision::Direct(servers) => servers.first().copied(),
        dns::Decision::Relay { .. } => None,
    };
    let nameserver_links = first
        .into_iter()
        .filter_map(|ns| {
            let reply = rtnl
                .get(route::get_route(ns), "RTM_GETROUTE nameserver")
                .ok()?;
            Some((ns, route::parse_route(&reply)?.oif?))
        })
        .collect();
    Ok(HostFacts {
        net,
        dns,
        nameserver_links,
        hosts,
    })
}

/// What the sandbox's addressing must respect.
#[derive(Clone, Debug, Default)]
pub struct NetFacts {
    /// Every IPv4 prefix on the host: addresses and routes (default excluded), but not
    /// nsrun's own links, whose subnets are locked by their names (addr.rs).
    pub used: Vec<Ipv4Net>,
    /// Who has each prefix of `used`, for messages: "address 10.0.0.1/24 of eth1".
    pub used_by: Vec<String>,
    /// The host's own IPv4 addresses.
    pub addrs: Vec<std::net::Ipv4Addr>,
    /// What the `local` table delivers to the host: local and broadcast routes.
    pub local_nets: Vec<Ipv4Net>,
    /// Where the kernel sends the internet's traffic.
    pub internet: Internet,
    /// Every link a route leads through (loopback and sandboxes' links excluded).
    pub routed: Vec<u32>,
}

impl NetFacts {
    /// Who on the host has addresses in `net`, if anyone: "address 10.0.0.1/24 of eth1".
    pub fn user_of(&self, net: &Ipv4Net) -> Option<&str> {
        self.used
            .iter()
            .position(|u| u.overlaps(net))
            .map(|i| self.used_by[i].as_str())
    }
}

pub fn net_facts(rtnl: &mut Socket) -> Result<NetFacts> {
    let addrs: Vec<route::Addr> = rtnl
        .dump(route::dump_addrs(), "RTM_GETADDR dump")?
        .iter()
        .filter_map(|(_, p)| route::parse_addr(p))
        .collect();
    let routes: Vec<route::Route> = rtnl
        .dump(route::dump_routes(), "RTM_GETROUTE dump")?
        .iter()
        .filter_map(|(_, p)| route::parse_route(p))
        .collect();
    // Which links are the host's, and which a sandbox's, by name: an address's label
    // is its link's name; a link that a route leads through but that had no address in
    // the dump (a sandbox whose address came between the two dumps, a link with no IPv4
    // address) is asked for by index, and one that is gone by then counts as nobody's.
    // Telling a sandbox's link by its address alone would count such a link as one of
    // the host's (the holder would switch on and guard forwarding there, dropping that
    // sandbox's traffic for the holder's life). One request per such link, not a dump of
    // every link: the cost stays flat however many sandboxes run.
    let mut host_links: std::collections::HashMap<u32, bool> = addrs
        .iter()
        .map(|a| (a.index, !crate::addr::is_sandbox_link(&a.label)))
        .collect();
    for index in routes.iter().flat_map(|r| r.links().collect::<Vec<_>>()) {
        if host_links.contains_key(&index) {
            continue;
        }
        let name = rtnl
            .get(route::get_link_by_index(index as i32), "RTM_GETLINK")
            .ok()
            .and_then(|r| route::parse_link(&r))
            .map(|l| l.name);
        let is_host = name.is_some_and(|n| !crate::addr::is_sandbox_link(&n));
        host_links.insert(index, is_host);
    }
    let hosts_link = |index: u32| host_links.get(&index).copied().unwrap_or(false);
    let mut used: Vec<Ipv4Net> = Vec::new();
    let mut used_by: Vec<String> = Vec::new();
    for a in addrs.iter().filter(|a| hosts_link(a.index)) {
        used.push(a.net);
        used_by.push(format!("address {} of {}", a.net, a.label));
    }
    // Routes of every table count (policy routing: a VPN's or Tailscale's table), but
    // not those covering half the address space or more: default routes, and OpenVPN's
    // def1 pair 0.0.0.0/1 + 128.0.0.0/1, which would make every pool look taken.
    for r in routes
        .iter()
        .filter(|r| r.dst.prefix > 1)
        .filter(|r| r.oif.is_none_or(hosts_link))
    {
        used.push(r.dst);
        let name = |o: u32| {
            addrs
                .iter()
                .find(|a| a.index == o)
                .map(|a| a.label.clone())
                .unwrap_or_else(|| format!("index {o}"))
        };
        let via = r
            .oif
            .map(|o| format!(" through {}", name(o)))
            .unwrap_or_default();
        used_by.push(format!("route {} in table {}{via}", r.dst, r.table));
    }
    let internet = internet(rtnl, &routes, &addrs);
    // Every link some route of some table leads through: replies and traffic for the
    // sandbox may use any of them (a VPN, Tailscale, an on-link LAN).
    let mut routed: Vec<u32> = routes
        .iter()
        .filter(|r| r.table != u32::from(RT_TABLE_LOCAL))
        .flat_map(|r| r.links())
        .filter(|oif| *oif != LOOPBACK_INDEX && hosts_link(*oif))
        .collect();
    routed.sort_unstable();
    routed.dedup();
    const RTN_LOCAL: u8 = 2;
    const RTN_BROADCAST: u8 = 3;
    let local_nets = routes
        .iter()
        .filter(|r| r.table == u32::from(RT_TABLE_LOCAL))
        .filter(|r| r.rtype == RTN_LOCAL || r.rtype == RTN_BROADCAST)
        .map(|r| r.dst)
        .collect();
    Ok(NetFacts {
        local_nets,
        routed,
        used,
        used_by,
        addrs: addrs.iter().map(|a| a.net.addr).collect(),
        internet,
    })
}

/// Where the internet is, as the host's routes say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Internet {
    /// No route covers the internet (no default route, no def1 pair): the sandbox
    /// reaches only the networks the host is on.
    #[default]
    Offline,
    /// The links the kernel sends the internet's traffic through: its choice first, then
    /// the other next hops of that route (ECMP).
    Uplinks(Vec<Link>),
    /// A default route the kernel does not use to reach the internet (a blackhole or
    /// unreachable one chosen by the policy rules, one through loopback): why, in words.
    Unusable(String),
}

impl Internet {
    /// The link the kernel chose, if any.
    pub fn uplink(&self) -> Option<&Link> {
        match self {
            Internet::Uplinks(links) => links.first(),
            _ => None,
        }
    }
}

/// Routes that carry the internet: default routes and halves of the address space
/// (OpenVPN's def1 pair), in any table but `local`.
fn internet_routes(routes: &[route::Route]) -> impl Iterator<Item = &route::Route> {
    routes
        .iter()
        .filter(|r| r.dst.prefix <= 1 && r.table != u32::from(RT_TABLE_LOCAL))
}

/// An internet address that only the routes of the internet cover: no route of any
/// table with a longer prefix holds it, so the kernel's answer for it is where the
/// internet goes (policy rules included). Found from the routes, not fixed: a host with
/// a network on any one range (a lab on a documentation range) still has one. None
/// without a route to the internet.
pub fn internet_probe(routes: &[route::Route]) -> Option<Ipv4Addr> {
    let special: Vec<Ipv4Net> = crate::addr::PRIVATE_RANGES
        .into_iter()
        .chain([
            Ipv4Net::new(Ipv4Addr::new(0, 0, 0, 0), 8),
            Ipv4Net::new(Ipv4Addr::new(127, 0, 0, 0), 8),
            Ipv4Net::new(Ipv4Addr::new(169, 254, 0, 0), 16),
        ])
        .collect();
    (1..=223u8)
        .flat_map(|a| [Ipv4Addr::new(a, 0, 0, 1), Ipv4Addr::new(a, 128, 64, 1)])
        .filter(|c| !special.iter().any(|s| s.contains(*c)))
        .filter(|c| internet_routes(routes).any(|r| r.dst.contains(*c)))
        .find(|c| {
            !routes
                .iter()
                .any(|r| r.dst.prefix > 1 && r.dst.contains(*c))
        })
}

/// Where the kernel sends the internet's traffic: its route for an internet address
/// (see [`internet_probe`]; nothing is sent) and, when that route has several next hops
/// (ECMP), each of them. Not every default route of every table: a policy-routing
/// table's default via a LAN link, or a backup default with a higher metric, is not
/// where the internet goes.
pub fn internet(rtnl: &mut Socket, routes: &[route::Route], addrs: &[route::Addr]) -> Internet {
    let Some(probe) = internet_probe(routes) else {
        return Internet::Offline;
    };
    let name = |index: u32| {
        addrs
            .iter()
            .find(|a| a.index == index)
            .map(|a| a.label.clone())
            .unwrap_or_else(|| format!("link {index}"))
    };
    let defaults: Vec<String> = internet_routes(routes)
        .map(|r| {
            let via = r.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
            let dev = r
                .oif
                .map(|o| format!(" dev {}", name(o)))
                .unwrap_or_default();
            let table = match r.table {
                254 => String::new(),
                t => format!(" table {t}"),
            };
            let kind = match r.rtype {
                RTN_UNICAST => "",
                6 => "blackhole ",
                7 => "unreachable ",
                8 => "prohibit ",
                _ => "special ",
            };
            format!("{kind}{}{via}{dev}{table}", r.dst)
        })
        .collect();
    let unusable = |why: String| {
        Internet::Unusable(format!(
            "the host has a route to the internet ({}) but {why}",
            defaults.join(", ")
        ))
    };
    let chosen = match rtnl.get(route::get_route(probe), &format!("RTM_GETROUTE {probe}")) {
        Ok(reply) => match route::parse_route(&reply) {
            Some(r) => r,
            None => return unusable(format!("the kernel's route for {probe} is unreadable")),
        },
        Err(e) => return unusable(format!("the kernel routes {probe} nowhere ({e})")),
    };
    let oif = match (chosen.rtype, chosen.oif) {
        (RTN_UNICAST, Some(oif)) if oif != LOOPBACK_INDEX => oif,
        _ => {
            return unusable(format!(
                "the kernel routes {probe} to no link that leaves the host ('ip route get {probe}')"
            ));
        }
    };
    let mut indexes = vec![oif];
    // The route the kernel took, found in its table: its next hops are uplinks too.
    for r in internet_routes(routes) {
        if r.table == chosen.table && r.nexthops.contains(&oif) {
            for hop in &r.nexthops {
                if !indexes.contains(hop) {
                    indexes.push(*hop);
                }
            }
        }
    }
    let links: Vec<Link> = indexes
        .into_iter()
        .filter(|i| *i != LOOPBACK_INDEX)
        .filter_map(|i| {
            rtnl.get(route::get_link_by_index(i as i32), "RTM_GETLINK")
                .ok()
                .and_then(|r| route::parse_link(&r))
        })
        .filter(|l| !crate::addr::is_sandbox_link(&l.name))
        .collect();
    if links.is_empty() {
        return unusable(format!(
            "the kernel routes {probe} through no link of the host's"
        ));
    }
    Internet::Uplinks(links)
}

/// The links the internet is reached by now (see [`internet`]), read afresh.
pub fn uplinks(rtnl: &mut Socket) -> Vec<Link> {
    let routes: Vec<route::Route> = match rtnl.dump(route::dump_routes(), "RTM_GETROUTE dump") {
        Ok(dump) => dump
            .iter()
            .filter_map(|(_, p)| route::parse_route(p))
            .collect(),
        Err(_) => return Vec::new(),
    };
    match internet(rtnl, &routes, &[]) {
        Internet::Uplinks(links) => links,
        _ => Vec::new(),
    }
}

/// The IPv4 sockets bound in this namespace as `/proc/net/tcp` or `/proc/net/udp` lists
/// them: (address, port, state, owner's uid).
pub fn parse_proc_net(text: &str) -> Vec<(Ipv4Addr, u16, u8, u32)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (addr, port) = f.get(1)?.split_once(':')?;
            // The address as the kernel keeps it (network order), printed as a number.
            let addr = u32::from_str_radix(addr, 16).ok()?.to_ne_bytes();
            Some((
                Ipv4Addr::from(addr),
                u16::from_str_radix(port, 16).ok()?,
                u8::from_str_radix(f.get(3)?, 16).ok()?,
                f.get(7)?.parse().ok()?,
            ))
        })
        .collect()
}

/// The host's bound sockets, read once from /proc/net (TCP ones listening, UDP ones
/// bound): who holds which port, for the holder's checks of published ports.
pub struct BoundPorts {
    tcp: Vec<(Ipv4Addr, u16, u32)>,
    udp: Vec<(Ipv4Addr, u16, u32)>,
}

impl BoundPorts {
    pub fn read() -> BoundPorts {
        const TCP_LISTEN: u8 = 0x0a;
        let read = |file: &str, listening: bool| -> Vec<(Ipv4Addr, u16, u32)> {
            parse_proc_net(&std::fs::read_to_string(file).unwrap_or_default())
                .into_iter()
                .filter(|(_, _, st, _)| !listening || *st == TCP_LISTEN)
                .map(|(a, p, _, u)| (a, p, u))
                .collect()
        };
        BoundPorts {
            tcp: read("/proc/net/tcp", true),
            udp: read("/proc/net/udp", false),
        }
    }

    fn of(&self, proto: u8, port: u16) -> impl Iterator<Item = (Ipv4Addr, u32)> + '_ {
        let sockets = if proto == crate::netlink::nft::IPPROTO_UDP {
            &self.udp
        } else {
            &self.tcp
        };
        sockets
            .iter()
            .filter(move |(_, p, _)| *p == port)
            .map(|(a, _, u)| (*a, *u))
    }

    /// Whether a socket of `uid` holds `addr`:`port` for `proto`: how nsrun reserves a
    /// port it publishes, which the kernel let it bind.
    pub fn held_by(&self, proto: u8, addr: Ipv4Addr, port: u16, uid: u32) -> bool {
        self.of(proto, port).any(|(a, u)| a == addr && u == uid)
    }

    /// Whether a socket of another uid than `uid` holds `port` for `proto` on `addr` or
    /// on every address: a port shared with SO_REUSEADDR, or someone else's service.
    pub fn held_by_others(&self, proto: u8, addr: Ipv4Addr, port: u16, uid: u32) -> bool {
        self.of(proto, port)
            .any(|(a, u)| u != uid && (a == addr || a.is_unspecified() || addr.is_unspecified()))
    }

    /// Held by `uid` on `addr`, and by nobody else.
    pub fn held_alone(&self, proto: u8, addr: Ipv4Addr, port: u16, uid: u32) -> bool {
        self.held_by(proto, addr, port, uid) && !self.held_by_others(proto, addr, port, uid)
    }
}

/// Turns IPv6 off on a link nsrun created, where the host allows it. Best effort: the
/// sandbox's own table refuses every IPv6 packet but loopback's, so a host whose
/// /proc/sys is read-only (a container) stays closed; this only keeps the link quiet.
pub fn disable_ipv6(link: &str) {
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{link}/disable_ipv6"), "1");
}

fn forwarding_path(link: &str) -> String {
    format!("/proc/sys/net/ipv4/conf/{link}/forwarding")
}

/// Whether `net.ipv4.conf.<link>.forwarding` is 1 (false when it cannot be read).
pub fn forwarding_on(link: &str) -> bool {
    std::fs::read_to_string(forwarding_path(link)).is_ok_and(|v| v.trim() == "1")
}

/// Sets `net.ipv4.conf.<link>.forwarding` through /proc (no sysctl binary).
pub fn set_forwarding(link: &str, on: bool) -> Result<()> {
    let path = forwarding_path(link);
    let (value, what) = if on {
        ("1", "enable")
    } else {
        ("0", "disable")
    };
    std::fs::write(&path, value).with_context(|| format!("{what} forwarding: write {path}"))
}

/// Sets `net.ipv4.conf.<link>.forwarding` to 1. Returns whether it changed.
pub fn enable_forwarding(link: &str) -> Result<bool> {
    let path = forwarding_path(link);
    let was = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    if was.trim() == "1" {
        return Ok(false);
    }
    set_forwarding(link, true)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(list: &[(&str, u32)]) -> Vec<route::Route> {
        list.iter()
            .map(|(dst, table)| route::Route {
                dst: dst.parse().unwrap(),
                table: *table,
                rtype: RTN_UNICAST,
                oif: Some(2),
                nexthops: vec![],
                gateway: None,
                priority: 0,
            })
            .collect()
    }

    #[test]
    fn the_internet_probe_is_an_address_only_the_internet_routes_cover() {
        // No default route: no internet.
        assert_eq!(internet_probe(&routes(&[("198.51.100.0/24", 254)])), None);
        let probe = internet_probe(&routes(&[("0.0.0.0/0", 254)])).unwrap();
        assert_eq!(probe, Ipv4Addr::new(1, 0, 0, 1));
        // A lab on that range (or any other) pushes the probe elsewhere.
        let lab = routes(&[
            ("0.0.0.0/0", 254),
            ("1.0.0.0/8", 254),
            ("2.0.0.0/8", 100),
            ("3.0.0.1/32", 255),
            ("192.0.2.0/24", 254),
        ]);
        let probe = internet_probe(&lab).unwrap();
        assert!(!lab[1..].iter().any(|r| r.dst.contains(probe)), "{probe}");
        // OpenVPN's def1 pair is the internet too; private ranges never are.
        let def1 = routes(&[("0.0.0.0/1", 254), ("128.0.0.0/1", 254)]);
        let probe = internet_probe(&def1).unwrap();
        assert!(!probe.is_private());
        // A default route only in the local table is not one.
        assert_eq!(internet_probe(&routes(&[("0.0.0.0/0", 255)])), None);
    }

    #[test]
    fn proc_net_sockets_are_read() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4243 1 0000000000000000 100 0 0 10 0
";
        let got = parse_proc_net(text);
        assert_eq!(got[0], (Ipv4Addr::UNSPECIFIED, 8080, 0x0a, 1000));
        assert_eq!(got[1], (Ipv4Addr::LOCALHOST, 53, 0x0a, 0));
    }
}
