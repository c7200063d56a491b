//! The sandbox's resolv.conf and hosts files, and where its DNS queries go.
//!
//! PURE except [`read_host_config`]. The host's files are only read; the sandbox's copies
//! live in a detached tmpfs mounted over /etc/resolv.conf and /etc/hosts inside the
//! sandbox's mount namespace (see child.rs).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Where the sandbox's DNS relay listens, inside the sandbox's own loopback.
pub const RELAY_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 53);

/// systemd-resolved's stub listener and the file that lists its real upstream servers.
pub const RESOLVED_STUB: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 53);
pub const RESOLVED_UPSTREAM_FILE: &str = "/run/systemd/resolve/resolv.conf";

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    /// `search`, `domain` and `options` lines, kept as they were.
    pub other: Vec<String>,
}

pub fn parse(text: &str) -> ResolvConf {
    let mut conf = ResolvConf::default();
    for line in text.lines() {
        let line = line.trim();
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                // "nameserver fe80::1%eth0": the zone is meaningless in the sandbox; skip it.
                if let Some(ip) = words.next().and_then(|w| w.parse().ok()) {
                    conf.nameservers.push(ip);
                }
            }
            Some("search" | "domain" | "options") => conf.other.push(line.to_string()),
            _ => {}
        }
    }
    conf
}

/// How the sandbox resolves names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nameservers the sandbox reaches directly, through NAT.
    Direct(Vec<Ipv4Addr>),
    /// Only a resolver on the host's loopback (or IPv6) exists, or the host has no
    /// resolv.conf to cover: nsrun listens on `listen`:53 inside the sandbox and relays
    /// the queries to `upstream` from the host's side.
    Relay {
        upstream: SocketAddr,
        listen: Ipv4Addr,
    },
}

/// The host's configuration as read: /etc/resolv.conf and, for systemd-resolved,
/// its upstream file.
#[derive(Debug, Default, Clone)]
pub struct HostDns {
    /// /etc/resolv.conf does not exist at all, or is a directory (a dangling symlink
    /// exists, and is covered like a file): there is
    /// nothing to mount the sandbox's own over, and the resolver library falls back to
    /// 127.0.0.1, where the relay then listens.
    pub resolv_missing: bool,
    pub resolv: ResolvConf,
    pub resolved_upstream: Option<ResolvConf>,
}

pub fn decide(given: &[Ipv4Addr], host: &HostDns) -> Decision {
    if host.resolv_missing {
        let upstream = given.first().copied().unwrap_or(Ipv4Addr::LOCALHOST);
        return Decision::Relay {
            upstream: SocketAddr::new(upstream.into(), 53),
            listen: Ipv4Addr::LOCALHOST,
        };
    }
    if !given.is_empty() {
        return Decision::Direct(given.to_vec());
    }
    let usable = |conf: &ResolvConf| -> Vec<Ipv4Addr> {
        conf.nameservers
            .iter()
            .filter_map(|ip| match ip {
                IpAddr::V4(v4) if !v4.is_loopback() && !v4.is_unspecified() => Some(*v4),
                _ => None,
            })
            .collect()
    };
    let direct = usable(&host.resolv);
    if !direct.is_empty() {
        return Decision::Direct(direct);
    }
    let stub = host.resolv.nameservers.contains(&IpAddr::V4(RESOLVED_STUB));
    if let (true, Some(upstream)) = (stub, &host.resolved_upstream) {
        let servers = usable(upstream);
        if !servers.is_empty() {
            return Decision::Direct(servers);
        }
    }
    // A loopback or IPv6 resolver, or none at all (the resolver library then uses
    // 127.0.0.1): relay to it from the host's side.
    let target = host
        .resolv
        .nameservers
        .first()
        .copied()
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    Decision::Relay {
        upstream: SocketAddr::new(target, 53),
        listen: RELAY_ADDR,
    }
}

/// The nameservers the sandbox's resolv.conf lists.
pub fn sandbox_nameservers(decision: &Decision) -> Vec<Ipv4Addr> {
    match decision {
        Decision::Direct(servers) => servers.clone(),
        Decision::Relay { listen, .. } => vec![*listen],
    }
}

/// The nameservers the sandbox reaches through its veth, which its filters must let
/// through (relayed queries never cross the veth).
pub fn direct_nameservers(decision: &Decision) -> &[Ipv4Addr] {
    match decision {
        Decision::Direct(servers) => servers,
        Decision::Relay { .. } => &[],
    }
}

/// The sandbox's resolv.conf: its nameservers, then the host's search, domain and
/// options lines (the same names resolve the same way). At most three nameservers are
/// used by the resolver library; more are listed anyway, as the host does.
///
/// `search_first` (a network's domain) goes first in the search list, so a member's
/// name is asked there before the host's domains (the resolver library reads only the
/// last `search` or `domain` line, so the host's list follows it on the same line).
pub fn render_resolv_conf(
    nameservers: &[Ipv4Addr],
    host: &HostDns,
    search_first: Option<&str>,
) -> String {
    let mut out =
        String::from("# Generated by nsrun for this sandbox; the host's file is unchanged.\n");
    for ns in nameservers {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    let keyword = |l: &str| l.split_whitespace().next().map(str::to_string);
    let last_list = host
        .resolv
        .other
        .iter()
        .rposition(|l| matches!(keyword(l).as_deref(), Some("search" | "domain")));
    for (i, line) in host.resolv.other.iter().enumerate() {
        match (search_first, keyword(line).as_deref()) {
            (Some(_), Some("search" | "domain")) if Some(i) != last_list => continue,
            (Some(first), Some("search" | "domain")) => {
                let rest: Vec<&str> = line.split_whitespace().skip(1).collect();
                out.push_str(&format!("search {first} {}\n", rest.join(" ")));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    if let (Some(first), None) = (search_first, last_list) {
        out.push_str(&format!("search {first}\n"));
    }
    out
}

/// The sandbox's /etc/hosts: the host's, plus the sandbox's own name on loopback.
pub fn render_hosts(host_hosts: &str, hostname: Option<&str>, host: Option<Ipv4Addr>) -> String {
    let mut out = host_hosts.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    if let Some(name) = hostname {
        out.push_str(&format!("127.0.1.1\t{name}\n"));
    }
    if let Some(host) = host {
        out.push_str(&format!("{host}\t{HOST_NAME}\n"));
    }
    out
}

/// The host's name inside every sandbox: its end of the sandbox's link.
pub const HOST_NAME: &str = "host.nsrun.internal";

#[cfg(test)]
mod tests {
    use super::*;

    fn host(resolv: &str, upstream: Option<&str>) -> HostDns {
        HostDns {
            resolv_missing: false,
            resolv: parse(resolv),
            resolved_upstream: upstream.map(parse),
        }
    }

    #[test]
    fn parses_nameservers_and_keeps_search_options() {
        let c = parse(
            "# c\nnameserver 198.51.100.53\nnameserver fe80::1%eth0\nnameserver 2001:db8::1\nsearch corp.test\noptions edns0 trust-ad\nbogus\n",
        );
        assert_eq!(
            c.nameservers,
            [
                "198.51.100.53".parse::<IpAddr>().unwrap(),
                "2001:db8::1".parse().unwrap()
            ]
        );
        assert_eq!(c.other, ["search corp.test", "options edns0 trust-ad"]);
    }

    #[test]
    fn plain_upstream_servers_are_used_directly() {
        let h = host("nameserver 198.51.100.53\nnameserver 127.0.0.1\n", None);
        assert_eq!(
            decide(&[], &h),
            Decision::Direct(vec!["198.51.100.53".parse().unwrap()])
        );
    }

    #[test]
    fn given_servers_win() {
        let h = host("nameserver 198.51.100.53\n", None);
        let given = ["192.0.2.1".parse().unwrap()];
        assert_eq!(decide(&given, &h), Decision::Direct(given.to_vec()));
    }

    #[test]
    fn systemd_resolved_stub_uses_its_upstream_file() {
        let h = host(
            "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n",
            Some("nameserver 198.51.100.53\nsearch lan\n"),
        );
        assert_eq!(
            decide(&[], &h),
            Decision::Direct(vec!["198.51.100.53".parse().unwrap()])
        );
        let text = render_resolv_conf(&sandbox_nameservers(&decide(&[], &h)), &h, None);
        assert!(text.contains("nameserver 198.51.100.53\n"), "{text}");
        assert!(
            text.contains("search lan\n") && text.contains("options edns0 trust-ad\n"),
            "{text}"
        );
        assert!(!text.contains("127.0.0.53"));
    }

    #[test]
    fn loopback_only_or_nothing_is_relayed() {
        let h = host("nameserver 127.0.0.1\n", None);
        assert_eq!(decide(&[], &h), relay("127.0.0.1:53"));
        // resolved stub whose upstream file is missing or lists only loopback
        let h = host("nameserver 127.0.0.53\n", Some("nameserver 127.0.0.2\n"));
        assert_eq!(decide(&[], &h), relay("127.0.0.53:53"));
        let h = host("", None);
        assert_eq!(decide(&[], &h), relay("127.0.0.1:53"));
        assert_eq!(sandbox_nameservers(&decide(&[], &h)), [RELAY_ADDR]);
    }

    fn relay(upstream: &str) -> Decision {
        Decision::Relay {
            upstream: upstream.parse().unwrap(),
            listen: RELAY_ADDR,
        }
    }

    #[test]
    fn missing_resolv_conf_relays_on_the_fallback_address() {
        let mut h = host("", None);
        h.resolv_missing = true;
        let given = ["192.0.2.1".parse().unwrap()];
        let want = Decision::Relay {
            upstream: "192.0.2.1:53".parse().unwrap(),
            listen: Ipv4Addr::LOCALHOST,
        };
        assert_eq!(decide(&given, &h), want);
        assert_eq!(sandbox_nameservers(&want), [Ipv4Addr::LOCALHOST]);
        assert!(direct_nameservers(&want).is_empty());
    }

    #[test]
    fn hosts_gets_the_sandbox_name() {
        assert_eq!(
            render_hosts("127.0.0.1 localhost", Some("build1"), None),
            "127.0.0.1 localhost\n127.0.1.1\tbuild1\n"
        );
        assert_eq!(render_hosts("", Some("b"), None), "127.0.1.1\tb\n");
        assert_eq!(
            render_hosts("", None, Some(Ipv4Addr::new(10, 200, 0, 5))),
            "10.200.0.5\thost.nsrun.internal\n"
        );
    }
}
