//! PURE: the nf_tables ruleset that one sandbox owns, from its addresses and the plan.
//!
//! ```text
//! table ip nsrXXXXXXXX {                  # flags owner: gone when nsrun's socket closes
//!   chain input {      filter hook input priority filter
//!     meta iif != H accept                           # not this sandbox's: done
//!     iifname H ip saddr != SANDBOX drop            # no spoofing
//!     iifname H ct state established,related accept  # replies to the host's connections
//!     iifname H ip daddr DNS udp|tcp dport 53 accept # nameservers on the host
//!     iifname H drop                                 # the host is closed (unless --allow-host)
//!   }
//!   chain forward {    filter hook forward priority filter
//!     meta iif != H meta oif != H accept             # not this sandbox's: done
//!     iifname H ip saddr != SANDBOX drop
//!     oifname H ct state established,related accept
//!     oifname H drop                                 # nobody opens connections into it
//!     iifname H ip daddr DNS udp|tcp dport 53 accept
//!     iifname H ip daddr 169.254.0.0/16 drop         # link-local, cloud metadata
//!     iifname H oifname "nsr*" drop                  # other sandboxes
//!     iifname H ip daddr LAN drop                    # --block-lan
//!   }
//!   chain postrouting { nat hook postrouting priority srcnat
//!     ip saddr SUBNET oifname != H masquerade
//!   }
//! }
//! ```

use std::net::Ipv4Addr;

use crate::addr::{Ipv4Net, LINK_PREFIX, SandboxNet};
use crate::netlink::nft::{
    Batch, CT_ESTABLISHED, CT_RELATED, Hook, IPPROTO_TCP, IPPROTO_UDP, Match, NF_ACCEPT, Rule,
    Verdict,
};
use crate::plan::{LAN_RANGES, NetPlan};

const PRIORITY_FILTER: i32 = 0;
const PRIORITY_SRCNAT: i32 = 100;

/// The rules of one chain.
pub struct Chain {
    pub name: &'static str,
    pub chain_type: &'static str,
    pub hook: Hook,
    pub priority: i32,
    pub rules: Vec<Rule>,
}

fn rule(matches: Vec<Match>, verdict: Verdict) -> Rule {
    Rule { matches, verdict }
}

fn dns_accepts(iif: &str, servers: &[Ipv4Addr]) -> Vec<Rule> {
    let mut out = Vec::new();
    for server in servers {
        for proto in [IPPROTO_UDP, IPPROTO_TCP] {
            out.push(rule(
                vec![
                    Match::IifName(iif.into()),
                    Match::DAddr(Ipv4Net::new(*server, 32)),
                    Match::L4Proto(proto),
                    Match::DPort(53),
                ],
                Verdict::Accept,
            ));
        }
    }
    out
}

/// The chains of a sandbox's table. `nameservers` are the addresses in the sandbox's
/// resolv.conf: they stay reachable on port 53 whatever else is blocked.
/// `host_index` is the ifindex of the host end: the first rule of each filter chain
/// compares it (4 bytes) rather than the name (16).
pub fn chains(
    net: &SandboxNet,
    host_index: u32,
    plan: &NetPlan,
    nameservers: &[Ipv4Addr],
) -> Vec<Chain> {
    let h = net.host_end.as_str();
    let iif = || Match::IifName(h.into());
    let no_spoof = rule(
        vec![iif(), Match::SAddrNot(net.sandbox_addr)],
        Verdict::Drop,
    );
    let established = CT_ESTABLISHED | CT_RELATED;

    // Every base chain on a hook sees every packet, so each sandbox's chains first let
    // go of what is not theirs, in one rule: with hundreds of sandboxes this keeps the
    // cost per forwarded packet low. Accept ends only this chain; others still decide.
    let not_mine_in = rule(vec![Match::IifNot(host_index)], Verdict::Accept);
    let not_mine_fwd = rule(
        vec![Match::IifNot(host_index), Match::OifNot(host_index)],
        Verdict::Accept,
    );
    let mut input = vec![
        not_mine_in,
        no_spoof.clone(),
        rule(vec![iif(), Match::CtState(established)], Verdict::Accept),
    ];
    if !plan.allow_host {
        input.extend(dns_accepts(h, nameservers));
        input.push(rule(vec![iif()], Verdict::Drop));
    }

    let mut forward = vec![
        not_mine_fwd,
        no_spoof,
        rule(
            vec![Match::OifName(h.into()), Match::CtState(established)],
            Verdict::Accept,
        ),
        rule(vec![Match::OifName(h.into())], Verdict::Drop),
    ];
    forward.extend(dns_accepts(h, nameservers));
    forward.push(rule(
        vec![iif(), Match::DAddr("169.254.0.0/16".parse().unwrap())],
        Verdict::Drop,
    ));
    forward.push(rule(
        vec![iif(), Match::OifNamePrefix(LINK_PREFIX.into())],
        Verdict::Drop,
    ));
    if plan.block_lan {
        for range in LAN_RANGES {
            forward.push(rule(
                vec![iif(), Match::DAddr(range.parse().unwrap())],
                Verdict::Drop,
            ));
        }
    }

    let postrouting = vec![rule(
        vec![Match::SAddr(net.subnet), Match::OifNameNot(h.into())],
        Verdict::Masquerade,
    )];

    vec![
        Chain {
            name: "input",
            chain_type: "filter",
            hook: Hook::Input,
            priority: PRIORITY_FILTER,
            rules: input,
        },
        Chain {
            name: "forward",
            chain_type: "filter",
            hook: Hook::Forward,
            priority: PRIORITY_FILTER,
            rules: forward,
        },
        Chain {
            name: "postrouting",
            chain_type: "nat",
            hook: Hook::PostRouting,
            priority: PRIORITY_SRCNAT,
            rules: postrouting,
        },
    ]
}

/// The table's name: the host end's name, so `nft list tables` and `ip link` line up.
pub fn table_name(net: &SandboxNet) -> &str {
    net.host_end.as_str()
}

/// One batch that creates the owned table with all its chains and rules.
pub fn batch(net: &SandboxNet, chains: &[Chain]) -> Batch {
    let table = table_name(net);
    let mut b = Batch::new();
    b.add_table(table, true);
    for c in chains {
        b.add_chain(table, c.name, c.chain_type, c.hook, c.priority, NF_ACCEPT);
        for r in &c.rules {
            b.add_rule(table, c.name, r);
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(allow_host: bool, block_lan: bool) -> Vec<Chain> {
        let net = SandboxNet::for_subnet("10.200.0.4".parse().unwrap());
        let plan = NetPlan {
            pool: "10.200.0.0/16".parse().unwrap(),
            allow_host,
            block_lan,
        };
        chains(&net, 7, &plan, &["198.51.100.53".parse().unwrap()])
    }

    fn find<'a>(chains: &'a [Chain], name: &str) -> &'a [Rule] {
        &chains.iter().find(|c| c.name == name).unwrap().rules
    }

    #[test]
    fn default_closes_host_metadata_and_other_sandboxes() {
        let c = setup(false, false);
        let input = find(&c, "input");
        assert_eq!(input.last().unwrap().verdict, Verdict::Drop);
        assert_eq!(
            input.last().unwrap().matches,
            [Match::IifName("nsr02b20001".into())]
        );
        // the nameserver is accepted before the final drop, on udp and tcp
        assert_eq!(
            input
                .iter()
                .filter(|r| r.matches.contains(&Match::DPort(53)))
                .count(),
            2
        );
        let forward = find(&c, "forward");
        assert!(forward.iter().any(|r| {
            r.matches
                .contains(&Match::DAddr("169.254.0.0/16".parse().unwrap()))
        }));
        assert!(
            forward
                .iter()
                .any(|r| r.matches.contains(&Match::OifNamePrefix("nsr".into())))
        );
        assert!(!forward.iter().any(|r| {
            r.matches
                .contains(&Match::DAddr("10.0.0.0/8".parse().unwrap()))
        }));
        let post = find(&c, "postrouting");
        assert_eq!(post[0].verdict, Verdict::Masquerade);
        assert_eq!(
            post[0].matches[0],
            Match::SAddr("10.200.0.4/30".parse().unwrap())
        );
    }

    #[test]
    fn chains_first_let_go_of_other_traffic() {
        let c = setup(false, false);
        assert_eq!(find(&c, "input")[0].matches, [Match::IifNot(7)]);
        assert_eq!(
            find(&c, "forward")[0].matches,
            [Match::IifNot(7), Match::OifNot(7)]
        );
        assert_eq!(find(&c, "forward")[0].verdict, Verdict::Accept);
    }

    #[test]
    fn allow_host_opens_input_and_block_lan_closes_private_ranges() {
        let c = setup(true, true);
        assert!(
            !find(&c, "input")
                .iter()
                .any(|r| r.verdict == Verdict::Drop && r.matches.len() == 1)
        );
        let forward = find(&c, "forward");
        for range in LAN_RANGES {
            assert!(
                forward
                    .iter()
                    .any(|r| r.matches.contains(&Match::DAddr(range.parse().unwrap())))
            );
        }
        // DNS accepts come before the LAN drops.
        let dns = forward
            .iter()
            .position(|r| r.matches.contains(&Match::DPort(53)))
            .unwrap();
        let lan = forward
            .iter()
            .position(|r| {
                r.matches
                    .contains(&Match::DAddr("10.0.0.0/8".parse().unwrap()))
            })
            .unwrap();
        assert!(dns < lan);
    }
}
