//! PURE: the plan (what the user asked for) and the host's facts (read once, by
//! host.rs, as a value) become everything nsrun sets up, before it sets up anything:
//! the link's MTU and addressing, DNS, the sandbox's filters, what the holder is asked
//! for (NAT, published ports, forwarding links, host exceptions), and the init's
//! operations in order. The code that acts (sandbox.rs on the host side, child.rs in
//! the sandbox) carries this out and decides nothing. No syscalls here: unit tests
//! check every host shape from recorded facts.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{Result, bail};

use crate::addr::{Ipv4Net, SandboxNet, free_subnets, suggest_address};
use crate::dns::{self, Decision};
use crate::firewall::{self, Policy};
use crate::host::{HostFacts, Internet};
use crate::plan::{NetPlan, Plan, Publish};
use crate::proto::init::InitOp;

/// MTU when the host has no uplink to copy one from.
pub const FALLBACK_MTU: u32 = 1500;
/// The MTUs an uplink's is taken from; anything else is a link in a strange state.
const USABLE_MTU: std::ops::RangeInclusive<u32> = 576..=65535;

/// What nsrun sets up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setup {
    /// None with `--no-net`.
    pub net: Option<NetSetup>,
    /// The sandbox's /etc/resolv.conf; None: the host's stays visible (--no-net, or the
    /// host has none to cover).
    pub resolv_conf: Option<String>,
    pub hostname: Option<String>,
    /// The host's /etc/hosts, which the sandbox's is made from.
    pub host_hosts: String,
}

/// The host side of a sandbox's network, and what decides its filters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetSetup {
    pub mtu: u32,
    pub dns: Decision,
    pub addressing: Addressing,
    /// Links that the sandbox's traffic and its replies may pass: forwarding on there
    /// (the holder switches it, and guards it).
    pub forwarding_links: Vec<u32>,
    pub publish: Vec<Publish>,
    pub allow_host: bool,
    pub block_lan: bool,
    /// --allow (None: not given) and --deny.
    pub allow: Option<crate::egress::AllowList>,
    pub deny: Vec<crate::egress::Dest>,
    /// --audit: report what the lists would refuse, refuse nothing of it.
    pub audit: bool,
    /// -v, --refusals or --audit: refusals are read and reported.
    pub report_refusals: bool,
    /// What the host's `local` table delivers to itself when the sandbox starts.
    pub host_nets: Vec<Ipv4Net>,
    /// The host's addresses when the sandbox starts (new ones are followed).
    pub host_addrs: Vec<Ipv4Addr>,
    /// The link the internet is reached through, for `-v`.
    pub uplink: Option<String>,
}

/// Where the sandbox's link comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addressing {
    /// `--ip`: exactly this, or an error.
    Fixed(SandboxNet),
    /// The first /30 of `pool` that nothing in `used` overlaps and no running sandbox
    /// holds, tried from a start that spreads concurrent runs.
    Pool { pool: Ipv4Net, used: Vec<Ipv4Net> },
    /// `--network`: a member of that network (networks.rs), joined or made there.
    Member(Membership),
}

/// How a sandbox joins its network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    pub network: String,
    /// `--subnet`.
    pub subnet: Option<Ipv4Net>,
    /// The subnet to make the network on, if nobody runs it: `--subnet`, else the /24
    /// around `--ip`, else the first free one of `candidates`.
    pub make_subnet: Option<Ipv4Net>,
    /// What of the host's overlaps `make_subnet` (a route, an address): refused when
    /// this run makes the network (a running network's own link is one such route).
    pub subnet_conflict: Option<String>,
    /// `--ip`.
    pub ip: Option<Ipv4Addr>,
    /// The subnets to make it on, if nobody runs it: free ones of the networks' pool.
    pub candidates: Vec<Ipv4Net>,
    /// The sandboxes' own pool: other sandboxes, refused.
    pub sandbox_pool: Ipv4Net,
    /// The networks' pool: other networks, refused.
    pub network_pool: Ipv4Net,
    /// The names the member answers to (--name, --hostname).
    pub names: Vec<String>,
}

/// How many subnets of the pool to try when other nsrun instances take them first.
pub const MAX_ATTEMPTS: usize = 512;

impl NetSetup {
    /// The subnets to try, in order (`start` spreads concurrent runs over the pool).
    pub fn candidates(&self, start: u64) -> Vec<SandboxNet> {
        match &self.addressing {
            Addressing::Fixed(net) => vec![*net],
            Addressing::Pool { pool, used } => free_subnets(*pool, used, start)
                .take(MAX_ATTEMPTS)
                .collect(),
            Addressing::Member(_) => Vec::new(),
        }
    }

    /// The range the sandbox's link comes from: its other addresses are the host's or
    /// other sandboxes'.
    pub fn pool(&self, net: &SandboxNet) -> Ipv4Net {
        match &self.addressing {
            Addressing::Fixed(_) => net.subnet,
            Addressing::Pool { pool, .. } => *pool,
            Addressing::Member(m) => m.network_pool,
        }
    }

    /// The network this sandbox is a member of.
    pub fn membership(&self) -> Option<&Membership> {
        match &self.addressing {
            Addressing::Member(m) => Some(m),
            _ => None,
        }
    }

    /// The sandbox's filters, once its link is known.
    pub fn policy(&self, net: &SandboxNet) -> Policy {
        let member = self.membership();
        Policy {
            sandbox_addr: net.sandbox_addr,
            pool: self.pool(net),
            peers: member.map(|_| net.subnet),
            other_pools: member
                .map(|m| m.sandbox_pool)
                .filter(|p| !p.overlaps(&net.subnet))
                .into_iter()
                .collect(),
            gateway: net.host_addr,
            host_nets: self.host_nets.clone(),
            nameservers: dns::direct_nameservers(&self.dns).to_vec(),
            allow_host: self.allow_host,
            block_lan: self.block_lan,
            published: self
                .publish
                .iter()
                .map(|p| (p.proto, p.sandbox_port))
                .collect(),
            allow: self.allow.clone(),
            deny: self.deny.clone(),
            audit: self.audit,
        }
    }

    /// The nameservers on the host's own addresses: only they need a way through the
    /// holder's refusal of the host; any other is not the host.
    pub fn host_nameservers(&self) -> Vec<Ipv4Addr> {
        dns::direct_nameservers(&self.dns)
            .iter()
            .copied()
            .filter(|ns| self.host_addrs.contains(ns))
            .collect()
    }

    /// The allowed names and the sets their addresses go into (empty: no filtering).
    pub fn name_sets(&self) -> Vec<(crate::egress::Target, String)> {
        let allow = self.allow.as_deref().unwrap_or_default();
        crate::egress::name_sets(allow)
            .into_iter()
            .map(|(i, set)| (allow[i].target.clone(), set))
            .collect()
    }

    /// Where the relay asks, when there is one.
    pub fn relay_upstream(&self) -> Option<SocketAddr> {
        match &self.dns {
            Decision::Relay { upstream, .. } => Some(*upstream),
            Decision::Direct(_) => None,
        }
    }
}

/// The plan and the facts become the setup, or the reason nothing may start. `facts`
/// is None exactly when the plan has no network.
pub fn decide(plan: &Plan, facts: &HostFacts) -> Result<Setup> {
    let net = match &plan.network {
        Some(np) => Some(network(plan, np, facts)?),
        None => None,
    };
    let resolv_conf = net.as_ref().filter(|_| !facts.dns.resolv_missing).map(|n| {
        let search = n.membership().map(|m| crate::networks::domain(&m.network));
        dns::render_resolv_conf(
            &dns::sandbox_nameservers(&n.dns),
            &facts.dns,
            search.as_deref(),
        )
    });
    Ok(Setup {
        net,
        resolv_conf,
        hostname: plan.hostname.clone(),
        host_hosts: facts.hosts.clone(),
    })
}

fn network(plan: &Plan, np: &NetPlan, facts: &HostFacts) -> Result<NetSetup> {
    let net = &facts.net;
    // A command must not start with a network that silently goes nowhere.
    if let Internet::Unusable(why) = &net.internet {
        bail!(
            "{why}: the sandbox would have no way out; fix the host's routes, or run the command without a network: 'nsrun --no-net -- ...'"
        );
    }
    // A published port's host address must be the host's own: with ip_nonlocal_bind=1
    // (keepalived, HAProxy hosts) binding would not say so, and DNAT to a foreign
    // address would capture the host's own connections to it.
    for p in &np.publish {
        if let Some(ip) = p.host_ip.filter(|ip| !ip.is_loopback()) {
            if !net.addrs.contains(&ip) {
                bail!(
                    "--publish {ip}:{}:{}: {ip} is not an address of this host; publish on one of its addresses, or on all of them, e.g. '-p {}:{}'",
                    p.host_port,
                    p.sandbox_port,
                    p.host_port,
                    p.sandbox_port
                );
            }
        }
    }
    let addressing = match (&np.network, np.ip) {
        (Some(n), ip) => {
            let make_subnet = n.subnet.or(ip.map(|ip| {
                let s = Ipv4Net::new(ip, crate::networks::SUBNET_PREFIX);
                Ipv4Net::new(s.network(), s.prefix)
            }));
            Addressing::Member(Membership {
                network: n.name.clone(),
                subnet: n.subnet,
                make_subnet,
                subnet_conflict: make_subnet.and_then(|s| net.user_of(&s).map(String::from)),
                ip,
                candidates: crate::networks::free_subnets(n.pool, &net.used),
                sandbox_pool: np.pool,
                network_pool: n.pool,
                names: member_names(plan),
            })
        }
        (None, Some(ip)) => {
            let fixed = SandboxNet::for_address(ip);
            if let Some(user) = net.user_of(&fixed.subnet) {
                bail!(
                    "--ip {ip}: {ip} (or its neighbour {}, the host's end of the sandbox's /31) is in use on this host: {}; choose another address{}",
                    fixed.host_addr,
                    user,
                    example_address(ip, &net.used)
                );
            }
            Addressing::Fixed(fixed)
        }
        (None, None) => Addressing::Pool {
            pool: np.pool,
            used: net.used.clone(),
        },
    };
    let uplink = net.internet.uplink();
    let mtu = uplink
        .map(|l| l.mtu)
        .filter(|m| USABLE_MTU.contains(m))
        .unwrap_or(FALLBACK_MTU);
    let dns = relay_off_uplink(
        dns::decide(&plan.dns, &facts.dns),
        !plan.dns.is_empty(),
        &facts.nameserver_links,
        uplink.map(|l| l.index as u32),
    );
    // Names in --allow: every query goes through nsrun's resolver, which answers only
    // allowed names and fills their sets; no other nameserver is open.
    let names = np
        .allow
        .as_deref()
        .is_some_and(|a| !crate::egress::name_sets(a).is_empty());
    // A member's resolver is nsrun's too: it answers the network's names.
    let names = names || np.network.is_some();
    let dns = match dns {
        Decision::Direct(servers) if names => match servers.first() {
            Some(first) => Decision::Relay {
                upstream: SocketAddr::new((*first).into(), 53),
                listen: dns::RELAY_ADDR,
            },
            None => Decision::Direct(servers),
        },
        other => other,
    };
    Ok(NetSetup {
        mtu,
        dns,
        addressing,
        forwarding_links: net.routed.clone(),
        publish: np.publish.clone(),
        allow_host: np.allow_host,
        block_lan: np.block_lan,
        allow: np.allow.clone(),
        deny: np.deny.clone(),
        audit: np.audit,
        report_refusals: plan.verbose || plan.refusals.is_some() || np.audit,
        host_nets: net.local_nets.clone(),
        host_addrs: net.addrs.clone(),
        uplink: uplink.map(|l| l.name.clone()),
    })
}

/// A member's names on its network: --name (when it is a host name) and --hostname.
fn member_names(plan: &Plan) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for n in [plan.name.as_deref(), plan.hostname.as_deref()]
        .into_iter()
        .flatten()
    {
        let n = n.to_ascii_lowercase();
        if crate::plan::validate_hostname(&n).is_ok() && !n.contains('.') && !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

/// ", e.g. '--ip ADDR'" with a free address, for the refusal of `--ip ip`.
pub fn example_address(ip: Ipv4Addr, used: &[Ipv4Net]) -> String {
    let pool = crate::cli::DEFAULT_POOL
        .parse()
        .expect("valid default pool");
    match suggest_address(ip, used, pool) {
        Some(free) => format!(", e.g. '--ip {free}'"),
        None => String::new(),
    }
}

/// The host's first nameserver, when the host reaches it through another link than the
/// internet's (a LAN resolver while the default route goes through a VPN, Tailscale's
/// 100.100.100.100 in its own table, one of the host's own addresses), is asked through
/// the relay, from the host, as the host itself asks it: a firewall that drops forwarded
/// packets is opened for the sandboxes only towards the internet (holder), and a VPN's
/// resolver may answer only the host. `--dns` is taken as given.
fn relay_off_uplink(
    decision: Decision,
    dns_given: bool,
    nameserver_links: &[(Ipv4Addr, u32)],
    uplink: Option<u32>,
) -> Decision {
    let Decision::Direct(servers) = &decision else {
        return decision;
    };
    let (Some(first), false) = (servers.first(), dns_given) else {
        return decision;
    };
    let via = nameserver_links
        .iter()
        .find(|(ns, _)| ns == first)
        .map(|(_, link)| *link);
    match via {
        // Through the internet's link the sandbox asks directly. A nameserver on one of
        // the host's own addresses (reached through lo) is relayed too: the host's input
        // firewall (ufw, firewalld) may close port 53 to everything but loopback.
        Some(link) if Some(link) != uplink => Decision::Relay {
            upstream: SocketAddr::new((*first).into(), 53),
            listen: dns::RELAY_ADDR,
        },
        _ => decision,
    }
}

/// The init's operations, in the order the promises need (proto::init::order_problem
/// says which): mounts private first; the sandbox's table before eth0 has an address, is
/// up or has a route; sysctls before /proc/sys is read-only; every mount nosuid; exec,
/// where the command drops every privilege, last.
pub fn init_ops(setup: &Setup, link: Option<(&NetSetup, &SandboxNet)>) -> Vec<InitOp> {
    let mut ops = vec![InitOp::PrivateMounts, InitOp::LoopbackUp];
    let mut hosts = None;
    if let Some((net, sandbox)) = link {
        // Into the table the init made before "go" (firewall::table_batches).
        let (batch, _) = firewall::rules_batch(&net.policy(sandbox)).finish();
        ops.push(InitOp::Firewall(batch.buf));
        // Before the link is up: no refusal goes unreported.
        if net.report_refusals {
            ops.push(InitOp::Refusals);
        }
        ops.push(InitOp::NetworkSysctls);
        ops.push(InitOp::Address {
            addr: sandbox.sandbox_addr,
            prefix: sandbox.subnet.prefix,
        });
        ops.push(InitOp::LinkUp);
        ops.push(InitOp::DefaultRoute(sandbox.host_addr));
        if let Decision::Relay { listen, .. } = net.dns {
            ops.push(InitOp::DnsRelay(listen));
        }
        // It names the host's end of the link (host.nsrun.internal).
        hosts = Some(dns::render_hosts(
            &setup.host_hosts,
            setup.hostname.as_deref(),
            Some(sandbox.host_addr),
        ));
    } else if setup.hostname.is_some() {
        hosts = Some(dns::render_hosts(
            &setup.host_hosts,
            setup.hostname.as_deref(),
            None,
        ));
    }
    if let Some(name) = &setup.hostname {
        ops.push(InitOp::Hostname(name.clone()));
    }
    if setup.resolv_conf.is_some() || hosts.is_some() {
        ops.push(InitOp::PrivateFiles {
            resolv_conf: setup.resolv_conf.clone(),
            hosts,
        });
    }
    ops.extend([
        InitOp::AllowPing,
        InitOp::LockProcSys,
        InitOp::NoFilePrivileges,
        InitOp::Exec,
    ]);
    ops
}

#[cfg(test)]
mod tests {
    //! Every host shape the integration tests build, as recorded facts.

    use super::*;
    use crate::host::NetFacts;
    use crate::netlink::route::Link;
    use clap::Parser;

    fn plan(args: &[&str]) -> Plan {
        let argv = ["nsrun"].iter().chain(args).chain(&["--", "true"]);
        crate::plan::from_cli(crate::cli::Cli::try_parse_from(argv).unwrap()).unwrap()
    }

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn link(index: i32, name: &str, mtu: u32) -> Link {
        Link {
            index,
            flags: 0,
            name: name.into(),
            mtu,
        }
    }

    /// eth0 (index 2) 198.51.100.2/24, default via 198.51.100.1, which is also the
    /// nameserver.
    fn plain() -> HostFacts {
        HostFacts {
            net: NetFacts {
                used: vec![net("198.51.100.2/24"), net("198.51.100.0/24")],
                used_by: vec!["address".into(), "route".into()],
                addrs: vec![ip("198.51.100.2")],
                local_nets: vec![net("198.51.100.2/32"), net("198.51.100.255/32")],
                internet: Internet::Uplinks(vec![link(2, "eth0", 1500)]),
                routed: vec![2],
            },
            dns: crate::dns::HostDns {
                resolv_missing: false,
                resolv: crate::dns::parse("nameserver 198.51.100.1\nsearch corp.test\n"),
                resolved_upstream: None,
            },
            nameserver_links: vec![(ip("198.51.100.1"), 2)],
            hosts: "127.0.0.1\tlocalhost\n".into(),
        }
    }

    fn with_resolv(mut f: HostFacts, text: &str, links: &[(&str, u32)]) -> HostFacts {
        f.dns.resolv = crate::dns::parse(text);
        f.nameserver_links = links.iter().map(|(a, l)| (ip(a), *l)).collect();
        f
    }

    fn add_link(mut f: HostFacts, index: u32, addr: &str, route: &str) -> HostFacts {
        f.net.used.extend([net(addr), net(route)]);
        f.net.used_by.extend(["address".into(), "route".into()]);
        f.net.addrs.push(net(addr).addr);
        f.net.local_nets.push(Ipv4Net::new(net(addr).addr, 32));
        f.net.routed.push(index);
        f
    }

    fn direct(servers: &[&str]) -> Decision {
        Decision::Direct(servers.iter().map(|s| ip(s)).collect())
    }

    fn relay(upstream: &str) -> Decision {
        Decision::Relay {
            upstream: SocketAddr::new(ip(upstream).into(), 53),
            listen: dns::RELAY_ADDR,
        }
    }

    fn net_setup(p: &Plan, f: &HostFacts) -> NetSetup {
        decide(p, f).unwrap().net.unwrap()
    }

    /// The init's operations for the first candidate link: in an order the init accepts,
    /// the table before eth0 carries anything, and the filters this setup decided.
    fn check_ops(setup: &Setup) -> Vec<InitOp> {
        let (ops, net) = match &setup.net {
            Some(n) => {
                let link = n.candidates(0).remove(0);
                (init_ops(setup, Some((n, &link))), Some((n, link)))
            }
            None => (init_ops(setup, None), None),
        };
        assert_eq!(crate::proto::init::order_problem(&ops), None, "{ops:?}");
        let at = |f: fn(&InitOp) -> bool| ops.iter().position(f);
        if let Some((n, link)) = net {
            let table = at(|o| matches!(o, InitOp::Firewall(_))).unwrap();
            let up = at(|o| *o == InitOp::LinkUp).unwrap();
            let addr = at(|o| matches!(o, InitOp::Address { .. })).unwrap();
            let route = at(|o| matches!(o, InitOp::DefaultRoute(_))).unwrap();
            assert!(table < addr && table < up && table < route, "{ops:?}");
            let (batch, _) = firewall::rules_batch(&n.policy(&link)).finish();
            assert_eq!(ops[table], InitOp::Firewall(batch.buf));
        }
        let lock = at(|o| *o == InitOp::LockProcSys).unwrap();
        let ping = at(|o| *o == InitOp::AllowPing).unwrap();
        assert!(ping < lock);
        assert_eq!(ops.last(), Some(&InitOp::Exec), "privileges dropped last");
        ops
    }

    #[test]
    fn a_plain_host() {
        let f = plain();
        let setup = decide(&plan(&[]), &f).unwrap();
        let n = setup.net.as_ref().unwrap();
        assert_eq!(n.mtu, 1500);
        assert_eq!(n.dns, direct(&["198.51.100.1"]));
        assert_eq!(n.uplink.as_deref(), Some("eth0"));
        assert_eq!(n.forwarding_links, [2]);
        assert_eq!(n.host_nameservers(), Vec::<Ipv4Addr>::new());
        let resolv = setup.resolv_conf.as_deref().unwrap();
        assert!(resolv.contains("\nnameserver 198.51.100.1\n"), "{resolv}");
        assert!(resolv.contains("search corp.test"));
        let ops = check_ops(&setup);
        assert!(!ops.iter().any(|o| matches!(o, InitOp::DnsRelay(_))));
        // The sandbox's hosts file names the host's end of its link.
        let link = n.candidates(0).remove(0);
        let hosts = ops.iter().find_map(|o| match o {
            InitOp::PrivateFiles { hosts, .. } => hosts.clone(),
            _ => None,
        });
        assert!(
            hosts
                .unwrap()
                .contains(&format!("{}\thost.nsrun.internal", link.host_addr))
        );
    }

    #[test]
    fn a_docker_host_keeps_its_bridge_and_forwards_there() {
        let f = add_link(plain(), 3, "172.17.0.1/16", "172.17.0.0/16");
        let n = net_setup(&plan(&["--pool", "172.16.0.0/12"]), &f);
        assert_eq!(n.forwarding_links, [2, 3]);
        for c in n.candidates(0) {
            assert!(!net("172.17.0.0/16").overlaps(&c.subnet), "{}", c.subnet);
        }
        // The bridge's address is the host's: refused to the sandbox, and it connects in.
        let link = n.candidates(0).remove(0);
        let policy = n.policy(&link);
        assert!(policy.host_nets.contains(&net("172.17.0.1/32")));
        check_ops(&decide(&plan(&[]), &f).unwrap());
    }

    #[test]
    fn ufw_and_firewalld_hosts_decide_as_a_plain_one() {
        // Their firewalls are the holder's business (it reads their chains when it
        // opens them); what nsrun decides for the sandbox is the same.
        let f = plain();
        assert_eq!(
            decide(&plan(&[]), &f).unwrap(),
            decide(&plan(&[]), &plain()).unwrap()
        );
    }

    #[test]
    fn a_vpn_uplink_gives_its_mtu_and_its_resolver_is_asked_directly() {
        let mut f = add_link(plain(), 4, "10.8.0.2/24", "10.8.0.0/24");
        f.net.internet = Internet::Uplinks(vec![link(4, "tun0", 1420)]);
        let f = with_resolv(f, "nameserver 10.8.0.1\n", &[("10.8.0.1", 4)]);
        let n = net_setup(&plan(&[]), &f);
        assert_eq!(n.mtu, 1420);
        assert_eq!(n.uplink.as_deref(), Some("tun0"));
        assert_eq!(n.dns, direct(&["10.8.0.1"]));
        // A LAN resolver while the internet goes through the VPN: relayed from the host.
        let lan = with_resolv(f, "nameserver 198.51.100.1\n", &[("198.51.100.1", 2)]);
        let n = net_setup(&plan(&[]), &lan);
        assert_eq!(n.dns, relay("198.51.100.1"));
        let ops = check_ops(&decide(&plan(&[]), &lan).unwrap());
        assert!(ops.contains(&InitOp::DnsRelay(dns::RELAY_ADDR)));
        // --dns is taken as given.
        let n = net_setup(&plan(&["--dns", "198.51.100.1"]), &lan);
        assert_eq!(n.dns, direct(&["198.51.100.1"]));
    }

    #[test]
    fn a_tailscale_resolver_in_its_own_table_is_relayed() {
        let f = add_link(plain(), 5, "100.90.1.2/32", "100.64.0.0/10");
        let f = with_resolv(f, "nameserver 100.100.100.100\n", &[("100.100.100.100", 5)]);
        let n = net_setup(&plan(&[]), &f);
        assert_eq!(n.dns, relay("100.100.100.100"));
        assert_eq!(n.forwarding_links, [2, 5]);
        for c in n.candidates(7) {
            assert!(!net("100.64.0.0/10").overlaps(&c.subnet));
        }
    }

    #[test]
    fn ecmp_takes_the_kernels_choice_for_the_mtu() {
        let mut f = add_link(plain(), 6, "203.0.113.66/26", "203.0.113.64/26");
        f.net.internet = Internet::Uplinks(vec![link(2, "eth0", 1500), link(6, "eth1", 9000)]);
        let n = net_setup(&plan(&[]), &f);
        assert_eq!((n.mtu, n.uplink.as_deref()), (1500, Some("eth0")));
        assert_eq!(n.forwarding_links, [2, 6]);
    }

    #[test]
    fn odd_mtus() {
        let mut f = plain();
        f.net.internet = Internet::Uplinks(vec![link(2, "eth0", 9000)]);
        assert_eq!(net_setup(&plan(&[]), &f).mtu, 9000);
        f.net.internet = Internet::Uplinks(vec![link(2, "eth0", 68)]);
        assert_eq!(net_setup(&plan(&[]), &f).mtu, FALLBACK_MTU);
    }

    #[test]
    fn no_default_route_runs_offline_with_the_host_networks() {
        let mut f = plain();
        f.net.internet = Internet::Offline;
        let n = net_setup(&plan(&[]), &f);
        assert_eq!((n.mtu, n.uplink.as_deref()), (FALLBACK_MTU, None));
        // No uplink to ask it through: from the host, through the relay (the host's
        // forward firewall is opened towards uplinks only).
        assert_eq!(n.dns, relay("198.51.100.1"));
        check_ops(&decide(&plan(&[]), &f).unwrap());
    }

    #[test]
    fn a_default_route_that_goes_nowhere_is_refused() {
        let mut f = plain();
        f.net.internet = Internet::Unusable("the host has a route to the internet (x)".into());
        let e = decide(&plan(&[]), &f).unwrap_err().to_string();
        assert!(e.contains("nsrun --no-net"), "{e}");
        // Without a network, the routes do not matter.
        check_ops(&decide(&plan(&["--no-net"]), &f).unwrap());
    }

    #[test]
    fn loopback_resolvers() {
        // systemd-resolved's stub: its upstream servers, asked directly.
        let mut f = with_resolv(plain(), "nameserver 127.0.0.53\n", &[]);
        f.dns.resolved_upstream = Some(crate::dns::parse("nameserver 198.51.100.53\n"));
        assert_eq!(net_setup(&plan(&[]), &f).dns, direct(&["198.51.100.53"]));
        // dnsmasq on 127.0.0.1: relayed.
        let f = with_resolv(plain(), "nameserver 127.0.0.1\n", &[]);
        assert_eq!(net_setup(&plan(&[]), &f).dns, relay("127.0.0.1"));
        // A resolver on one of the host's own addresses (routed through lo): relayed.
        let f = with_resolv(plain(), "nameserver 198.51.100.2\n", &[("198.51.100.2", 1)]);
        assert_eq!(net_setup(&plan(&[]), &f).dns, relay("198.51.100.2"));
        // ... unless given with --dns: then the holder lets it through to the host.
        let n = net_setup(&plan(&["--dns", "198.51.100.2"]), &f);
        assert_eq!(n.host_nameservers(), [ip("198.51.100.2")]);
        // No resolv.conf at all: the relay on 127.0.0.1, nothing mounted over it.
        let mut f = plain();
        f.dns.resolv_missing = true;
        let setup = decide(&plan(&[]), &f).unwrap();
        assert_eq!(setup.resolv_conf, None);
        check_ops(&setup);
    }

    #[test]
    fn a_fixed_address_in_use_is_refused_with_a_free_example() {
        let mut f = plain();
        f.net.used.push(net("10.77.0.0/16"));
        f.net.used_by.push("route 10.77.0.0/16 in table 52".into());
        let e = decide(&plan(&["--ip", "10.77.0.2"]), &f)
            .unwrap_err()
            .to_string();
        assert!(e.contains("route 10.77.0.0/16 in table 52"), "{e}");
        assert!(e.contains("e.g. '--ip 10.200.0.2'"), "{e}");
        let n = net_setup(&plan(&["--ip", "10.78.0.2"]), &f);
        assert_eq!(n.candidates(99), [SandboxNet::for_address(ip("10.78.0.2"))]);
        assert_eq!(n.pool(&n.candidates(0)[0]), net("10.78.0.2/31"));
    }

    #[test]
    fn a_published_port_on_a_foreign_address_is_refused() {
        let e = decide(&plan(&["-p", "203.0.113.9:8080:80"]), &plain())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("203.0.113.9 is not an address of this host"),
            "{e}"
        );
        let n = net_setup(&plan(&["-p", "198.51.100.2:8080:80"]), &plain());
        let link = n.candidates(0).remove(0);
        assert_eq!(n.policy(&link).published, [(6, 80)]);
    }

    #[test]
    fn no_network_and_a_hostname() {
        let setup = decide(&plan(&["--no-net", "--hostname", "box"]), &plain()).unwrap();
        assert_eq!(setup.net, None);
        let ops = check_ops(&setup);
        assert!(ops.contains(&InitOp::Hostname("box".into())));
        assert!(
            !ops.iter()
                .any(|o| matches!(o, InitOp::Firewall(_) | InitOp::LinkUp))
        );
        let files = ops.iter().find_map(|o| match o {
            InitOp::PrivateFiles { resolv_conf, hosts } => Some((resolv_conf, hosts)),
            _ => None,
        });
        let (resolv, hosts) = files.unwrap();
        assert_eq!(
            *resolv, None,
            "the host's resolv.conf stays without a network"
        );
        assert!(hosts.as_deref().unwrap().contains("127.0.1.1\tbox"));
    }

    #[test]
    fn a_network_member_asks_through_its_relay_and_opens_its_peers_only() {
        let mut f = plain();
        f.net.used.push(net("10.55.0.0/16"));
        f.net.used_by.push("route 10.55.0.0/16".into());
        let setup = decide(&plan(&["--network", "lab", "--name", "db"]), &f).unwrap();
        let n = setup.net.as_ref().unwrap();
        // Its resolver is nsrun's, which answers the network's names.
        assert_eq!(n.dns, relay("198.51.100.1"));
        let m = n.membership().unwrap();
        assert_eq!(m.names, ["db"]);
        assert_eq!(m.candidates[0], net("10.201.0.0/24"));
        assert_eq!((m.make_subnet, m.subnet_conflict.as_deref()), (None, None));
        let resolv = setup.resolv_conf.as_deref().unwrap();
        assert!(
            resolv.contains("\nsearch lab.nsrun.internal corp.test\n"),
            "{resolv}"
        );
        let subnet = net("10.201.0.0/24");
        let link = SandboxNet {
            subnet,
            host_addr: ip("10.201.0.1"),
            sandbox_addr: ip("10.201.0.7"),
            host_end: crate::networks::host_end(subnet),
        };
        let p = n.policy(&link);
        assert_eq!(p.peers, Some(subnet));
        assert_eq!(p.pool, net("10.201.0.0/16"), "other networks refused");
        assert_eq!(
            p.other_pools,
            [net("10.200.0.0/16")],
            "lone sandboxes refused"
        );
        let ops = init_ops(&setup, Some((n, &link)));
        assert_eq!(crate::proto::init::order_problem(&ops), None);
        assert!(ops.contains(&InitOp::DefaultRoute(ip("10.201.0.1"))));
        // --ip alone makes the network on its /24, which must be free on the host.
        let n = net_setup(&plan(&["--network", "lab", "--ip", "10.55.7.7"]), &f);
        let m = n.membership().unwrap();
        assert_eq!(m.make_subnet, Some(net("10.55.7.0/24")));
        assert_eq!(m.subnet_conflict.as_deref(), Some("route 10.55.0.0/16"));
    }
}
