//! PURE: the nf_tables rules that keep a sandbox in its place, and where they live.
//!
//! # Design
//!
//! **The policy lives inside the sandbox's own network namespace**, in a table that nsrun's
//! init creates there before `eth0` comes up:
//!
//! ```text
//! table inet nsrun {                       # in the SANDBOX's netns; dies exactly with it
//!   chain output { type filter hook output priority filter; policy accept;
//!     oif lo accept
//!     meta nfproto ipv6 jump refuse                    # no IPv6 beyond loopback
//!     ip saddr != SANDBOX drop                         # no spoofing
//!     ct state established,related accept              # replies to connections into it
//!     ip daddr NAMESERVER udp|tcp dport 53 accept      # its nameservers, wherever they are
//!     ip daddr 168.63.129.16 udp|tcp dport 53 accept   # Azure's resolver
//!     jump host                                        # unless --allow-host
//!     ip daddr 169.254.0.0/16 jump refuse              # link-local: cloud metadata
//!     ip daddr 100.100.100.200 jump refuse             # Alibaba Cloud metadata
//!     ip daddr 168.63.129.16 jump refuse               # Azure WireServer
//!     ip daddr 224.0.0.0/4 jump refuse                 # multicast, broadcast
//!     ip daddr LAN jump refuse                         # --block-lan
//!   }
//!   chain host { ip daddr POOL jump refuse; ip daddr HOST_ADDRESS jump refuse ... }
//!   chain refuse { meta l4proto tcp reject with tcp reset; reject with icmpx admin-prohibited }
//!                                                    # UDP, ICMP echo (ping), the rest: the
//!                                                    # ICMP error, and EPERM from send
//!   chain input { type filter hook input priority filter; policy drop;
//!     iif lo accept
//!     ct state established,related accept              # replies, echo replies included
//!     jump from_host                                   # the host may connect in,
//!     meta l4proto tcp th dport PUBLISHED accept       # anyone to a published port,
//!     jump refuse                                      # the rest refused at once
//!   }
//!   chain from_host { ip saddr GATEWAY accept; ip saddr HOST_ADDRESS accept ... }
//! }
//! ```
//!
//! Why there: the command has no CAP_NET_ADMIN in that namespace, so it cannot change the
//! table; the table exists before the link can carry a packet and is freed only when the
//! namespace itself is, that is after the sandbox's last process (and anything else holding
//! the namespace: a passed socket, a bind mount) is gone. Nothing nsrun does or suffers
//! (SIGKILL at any instant, a panic, an error path) can open a window: the kernel enforces
//! it. The rules see the destination the sandbox asked for, before any DNAT the host does
//! (Docker's published ports, NodePorts), and each packet meets only its own sandbox's
//! rules, whatever the number of sandboxes. Its conntrack table is the namespace's own and
//! starts empty, so no entry of an earlier sandbox can decide for it. Host addresses added
//! while the sandbox runs are inserted into `host` by the init when nsrun reports them.
//!
//! **The host keeps only NAT**, in one table for every sandbox, owned by nsrun's holder
//! process (see holder/), which also removes a sandbox's leftover link:
//!
//! ```text
//! table inet nsrun {                       # in the HOST's netns; flags owner (the holder)
//!   chain postrouting { type nat hook postrouting priority srcnat; policy accept;
//!     ip saddr SANDBOX oifname != "nsr*" masquerade    # one rule per sandbox, new flows only
//!   }
//!   chain forward { type filter hook forward priority filter; policy accept;
//!     iifname "nsr*" oifname "nsr*" reject  # sandbox to sandbox, through the host
//!     oifname "nsr*" ct state new ct status != dnat drop  # in: published ports only
//!   }
//!   chain input { type filter hook input priority filter; policy accept;
//!     iifname "nsr*" ct direction original fib daddr type local jump sandbox_to_host
//!     iifname "nsr*" ct direction original fib daddr type local reject  # tcp reset, icmpx
//!     (the same for fib daddr type broadcast: a network added later brings one)
//!   }
//!   chain sandbox_to_host {                 # per sandbox, while it runs
//!     iif LINK accept                       # --allow-host
//!     iif LINK ip daddr NAMESERVER udp|tcp dport 53 accept
//!   }
//! }
//! table inet nsrun-guard {                 # in the HOST's netns; owned by no socket
//!   chain forward { type filter hook forward priority filter; policy accept;
//!     iif LINK oifname != "nsr*" drop      # each link whose forwarding nsrun switched on
//!   }
//! }
//! ```
//!
//! The input chain refuses the host's own addresses from the host's side too, by a
//! per-packet lookup: an address that appears while a sandbox runs (a new sandbox's host
//! end, a burst of thousands from kube-proxy or MetalLB) is closed before the sandbox's
//! own table hears of it, and a connection a sandbox opened to an address that later
//! becomes the host's dies with its next packet. Replies to the host's own connections
//! are the other direction and pass.
//!
//! The guard outlives a killed holder (no link is ever left forwarding for the host's
//! neighbours); the next holder adopts it and deletes the table once forwarding is back.
//!
//! **Another firewall that drops forwarded packets** (a forward base chain with policy
//! drop, or one that ends by dropping or rejecting everything: Docker, ufw, firewalld, an
//! nftables filter) would drop the sandboxes' traffic whatever nsrun's tables accept. The
//! holder adds at its end (before a final refusing rule), so that the host's own rules
//! decide first, with a comment starting `nsrun`:
//!
//! ```text
//!     iifname "nsr*" oifname UPLINK accept    # for each link the internet is reached by
//!     oifname "nsr*" accept                   # replies; new: published ports only
//! ```
//!
//! They match only nsrun's links, so they are inert without a sandbox; they let no other
//! traffic through (a sandbox to Docker's bridge stays dropped). The holder removes them
//! when it exits; one that finds them left by a killed holder adopts them. A chain where
//! a rule not nsrun's already accepts `nsr` interfaces is left alone. iptables-legacy's
//! FORWARD with policy DROP gets the same two entries (with a `comment` match), written
//! as iptables-legacy writes them (xtables.rs); where that fails, nsrun refuses, with the
//! fix. A firewall reloaded while sandboxes run gets them back at once (the holder
//! follows nf_tables' change notifications).
//!
//! For what comes next: the family is `inet`, so IPv6 rules join the same tables; published
//! ports add DNAT rules to the host table and `dport` accepts to the sandbox's input chain;
//! sandboxes on one bridge keep their own tables, so they still cannot reach each other.

use std::net::Ipv4Addr;

use crate::addr::{Ipv4Net, LOOPBACK_INDEX};
use crate::netlink::nft::{
    Batch, CT_ESTABLISHED, CT_NEW, CT_RELATED, CT_STATUS_DNAT, Hook, IPPROTO_TCP, IPPROTO_UDP,
    Match, NF_ACCEPT, NF_DROP, NFPROTO_INET, NFPROTO_IPV6, NFT_TABLE_F_OWNER, Reject, Rule,
    Verdict,
};

/// The table's name, in the sandbox's netns and in the host's.
pub const TABLE: &str = "nsrun";
const PRIORITY_FILTER: i32 = 0;
const PRIORITY_SRCNAT: i32 = 100;

/// Cloud metadata and control endpoints outside link-local, closed by default.
pub const METADATA: [(&str, &str); 3] = [
    (
        "169.254.0.0/16",
        "link-local: the metadata service of AWS, GCP, Azure, Oracle, OpenStack, DigitalOcean (169.254.169.254), Tencent (169.254.0.23)",
    ),
    ("100.100.100.200/32", "Alibaba Cloud's metadata service"),
    (
        "168.63.129.16/32",
        "Azure's WireServer (its DNS on port 53 stays open)",
    ),
];
const AZURE_DNS: Ipv4Addr = Ipv4Addr::new(168, 63, 129, 16);

/// What one sandbox may reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub sandbox_addr: Ipv4Addr,
    /// The pool the sandbox's link came from: its other addresses are the host's (other
    /// sandboxes' host ends, and this one's) or other sandboxes'.
    pub pool: Ipv4Net,
    /// A member's network (--network): its subnet, open both ways (the gateway, the
    /// host's, excepted).
    pub peers: Option<Ipv4Net>,
    /// Other sandboxes' ranges, refused as the pool is (a member's: the lone sandboxes'
    /// pool).
    pub other_pools: Vec<Ipv4Net>,
    pub gateway: Ipv4Addr,
    /// The host's own addresses when the sandbox starts.
    /// What the host's `local` routing table delivers to the host itself: its
    /// addresses, whole prefixes routed `local` (AnyIP on lo), and the broadcast
    /// addresses of its networks.
    pub host_nets: Vec<Ipv4Net>,
    pub nameservers: Vec<Ipv4Addr>,
    pub allow_host: bool,
    pub block_lan: bool,
    /// Published (protocol, sandbox port): anyone may connect in there.
    pub published: Vec<(u8, u16)>,
    /// --allow: only these (and the nameservers); None: everything not refused.
    pub allow: Option<crate::egress::AllowList>,
    /// --deny: refused, even if allowed.
    pub deny: Vec<crate::egress::Dest>,
    /// --audit: what --allow and --deny would refuse is reported, not refused.
    pub audit: bool,
}

/// The nfnetlink_log group of refused packets (the `refuse` chain), and of those
/// `--audit` lets through that the lists would have refused.
pub const REFUSED_GROUP: u16 = 1;
pub const AUDIT_GROUP: u16 = 2;
/// At most this many reports a second leave the kernel, whatever a command floods.
const REPORTS_PER_SECOND: u64 = 200;

/// `limit rate 200/second log group GROUP`: a report, then on to the next rule.
fn report(mut matches: Vec<Match>, group: u16) -> Rule {
    matches.push(Match::Limit(REPORTS_PER_SECOND, REPORTS_PER_SECOND as u32));
    rule(matches, Verdict::Log(group))
}

fn rule(matches: Vec<Match>, verdict: Verdict) -> Rule {
    Rule { matches, verdict }
}

fn to(net: Ipv4Net) -> Match {
    Match::DAddr(net)
}

fn host(addr: Ipv4Addr) -> Ipv4Net {
    Ipv4Net::new(addr, 32)
}

fn dns_accepts(server: Ipv4Addr) -> [Rule; 2] {
    [IPPROTO_UDP, IPPROTO_TCP].map(|proto| {
        rule(
            vec![to(host(server)), Match::L4Proto(proto), Match::DPort(53)],
            Verdict::Accept,
        )
    })
}

const REFUSE: Verdict = Verdict::Jump("refuse");

/// The rules of the sandbox's `output` chain, in order.
pub fn output_rules(p: &Policy) -> Vec<Rule> {
    let mut out = vec![
        rule(vec![Match::Oif(LOOPBACK_INDEX)], Verdict::Accept),
        rule(vec![], Verdict::Jump(CABLE)),
        rule(vec![Match::NfProto(NFPROTO_IPV6)], REFUSE),
        rule(vec![Match::SAddrNot(p.sandbox_addr)], Verdict::Drop),
        rule(
            vec![Match::CtState(CT_ESTABLISHED | CT_RELATED)],
            Verdict::Accept,
        ),
    ];
    for server in &p.nameservers {
        out.extend(dns_accepts(*server));
    }
    // Azure's resolver answers wherever the host is on Azure; an allow-list has its own.
    if p.allow.is_none() {
        out.extend(dns_accepts(AZURE_DNS));
    }
    // A member's network: its peers, on every port and protocol, broadcast included;
    // not the gateway (the host's), which the host chain decides.
    if let Some(peers) = p.peers {
        if !p.allow_host {
            out.push(rule(vec![to(host(p.gateway))], Verdict::Jump("host")));
        }
        out.push(rule(vec![to(peers)], Verdict::Accept));
    }
    if !p.allow_host {
        out.push(rule(vec![], Verdict::Jump("host")));
    }
    for (net, _) in METADATA {
        out.push(rule(vec![to(net.parse().unwrap())], REFUSE));
    }
    for net in ["224.0.0.0/4", "255.255.255.255/32"] {
        out.push(rule(vec![to(net.parse().unwrap())], REFUSE));
    }
    if p.block_lan {
        for range in crate::addr::PRIVATE_RANGES {
            out.push(rule(vec![to(range)], REFUSE));
        }
    }
    // --deny, then --allow and nothing else: after the default refusals, which hold
    // whatever the lists say.
    // With --audit, what they would refuse is reported and goes on.
    for d in &p.deny {
        out.extend(d.matches(None).into_iter().map(|m| match p.audit {
            false => rule(m, REFUSE),
            true => report(m, AUDIT_GROUP),
        }));
    }
    if let Some(allow) = &p.allow {
        // Single addresses in sets (one lookup, however many), prefixes and names by
        // rule (names through their own sets).
        for set in crate::egress::address_sets(allow) {
            out.extend(set.matches().into_iter().map(|m| rule(m, Verdict::Accept)));
        }
        for (i, d) in allow.iter().enumerate() {
            if crate::egress::in_address_set(d) {
                continue;
            }
            let set = crate::egress::set_name(i);
            out.extend(
                d.matches(Some(&set))
                    .into_iter()
                    .map(|m| rule(m, Verdict::Accept)),
            );
        }
        out.push(match p.audit {
            false => rule(vec![], REFUSE),
            true => report(vec![], AUDIT_GROUP),
        });
    }
    out
}

/// The rules of the sandbox's `refuse` chain: a refused destination answers at once, a
/// TCP connection with a reset, anything else (UDP, ICMP echo from `ping`) with an ICMP
/// "administratively prohibited", which `send` also reports as EPERM.
pub fn refuse_rules() -> Vec<Rule> {
    vec![
        rule(
            vec![Match::L4Proto(IPPROTO_TCP)],
            Verdict::Reject(Reject::TcpReset),
        ),
        rule(vec![], Verdict::Reject(Reject::AdminProhibited)),
    ]
}

/// The rules of the sandbox's `host` chain: one per host address.
pub fn host_rules(addrs: &[Ipv4Addr]) -> Vec<Rule> {
    addrs
        .iter()
        .map(|a| rule(vec![to(host(*a))], REFUSE))
        .collect()
}

/// The rules of the sandbox's `input` chain: replies, the host, published ports; the
/// rest is refused at once (a TCP reset, an ICMP error), never left to time out. Its
/// policy (drop) is only a backstop.
pub fn input_rules(p: &Policy) -> Vec<Rule> {
    let mut input = vec![
        rule(vec![Match::Iif(LOOPBACK_INDEX)], Verdict::Accept),
        rule(vec![], Verdict::Jump(CABLE)),
        rule(
            vec![Match::CtState(CT_ESTABLISHED | CT_RELATED)],
            Verdict::Accept,
        ),
        rule(vec![], Verdict::Jump(FROM_HOST)),
    ];
    // A member's peers connect in, on every port.
    if let Some(peers) = p.peers {
        input.push(rule(vec![Match::SAddr(peers)], Verdict::Accept));
    }
    for (proto, port) in &p.published {
        input.push(rule(
            vec![
                Match::NfProto(crate::netlink::nft::NFPROTO_IPV4),
                Match::L4Proto(*proto),
                Match::DPort(*port),
            ],
            Verdict::Accept,
        ));
    }
    input.push(rule(vec![], REFUSE));
    input
}

/// The sandbox's cable (`--disconnect`, `--reconnect`): empty while it is connected;
/// while it is not, everything but loopback meets its rules, before replies of
/// established connections are let through.
pub const CABLE: &str = "cable";

/// Pulls the cable: every packet to or from the sandbox but loopback is refused at once
/// (a TCP reset, an ICMP error; `send` fails) or, with `drop`, silently lost.
pub fn disconnect(drop: bool) -> Batch {
    let mut b = Batch::new(NFPROTO_INET);
    b.flush_chain(TABLE, CABLE);
    if drop {
        b.add_rule(TABLE, CABLE, &rule(vec![], Verdict::Drop));
    } else {
        for r in refuse_rules() {
            b.add_rule(TABLE, CABLE, &r);
        }
    }
    b
}

/// Puts the cable back: the chain is empty again.
pub fn reconnect() -> Batch {
    let mut b = Batch::new(NFPROTO_INET);
    b.flush_chain(TABLE, CABLE);
    b
}

/// The chain of the host's addresses as sources: the host may connect in from any of
/// them (`curl --interface eth0`, a connection begun before the sandbox's route
/// existed), not only from the link's end.
const FROM_HOST: &str = "from_host";

/// The rules of [`FROM_HOST`]: the link's end, and every address the host has.
pub fn from_host_rules(p: &Policy) -> Vec<Rule> {
    let nets = [&[host(p.gateway)], p.host_nets.as_slice()].concat();
    aggregate(&nets)
        .into_iter()
        .filter(|n| !n.overlaps(&LOOPBACK))
        .map(|n| rule(vec![Match::SAddr(n)], Verdict::Accept))
        .collect()
}

const LOOPBACK: Ipv4Net = Ipv4Net::new(Ipv4Addr::new(127, 0, 0, 0), 8);

/// One batch that creates the sandbox's whole table, to be sent from inside its netns:
/// [`table_batches`] then [`rules_batch`], in one batch (tests).
#[cfg(test)]
pub fn sandbox_batch(p: &Policy) -> Batch {
    let mut b = Batch::new(NFPROTO_INET);
    add_table(&mut b, p.allow.as_deref());
    add_rules(&mut b, p);
    b
}

/// The part of the sandbox's table that nothing on the host's side decides: the table,
/// its refuse chain, and the allow-list's sets with their addresses. The init makes it
/// as soon as it exists, while nsrun makes the sandbox's link: a long --allow-file's
/// thousands of addresses cost the kernel time off the start's path. Several batches,
/// the addresses at most [`ELEMENTS_PER_BATCH`] to one: the kernel takes one batch at a time, of every namespace's (the holder's
/// masquerade rule for this very sandbox among them), and a link that enters the
/// namespace waits for its table's batch; none waits long.
pub fn table_batches(allow: Option<&[crate::egress::Dest]>) -> Vec<Batch> {
    let mut first = Batch::new(NFPROTO_INET);
    let elements = add_sets(&mut first, allow.unwrap_or_default());
    let mut out = vec![first];
    for (set, chunk) in elements {
        let mut b = Batch::new(NFPROTO_INET);
        chunk.add_to(&mut b, &set);
        out.push(b);
    }
    out
}

/// Addresses or ranges at most to one batch (see [`table_batches`]).
const ELEMENTS_PER_BATCH: usize = 256;

/// Elements of one set, for one batch.
enum Elements {
    Ranges(Vec<(u32, u64)>),
    Addresses(Vec<(Ipv4Addr, u64)>),
}

impl Elements {
    fn add_to(&self, b: &mut Batch, set: &str) {
        match self {
            Elements::Ranges(r) => b.add_ranges(TABLE, set, r),
            Elements::Addresses(a) => b.add_addresses(TABLE, set, a),
        }
    }
}

/// The rest of the sandbox's table, into the one [`table_batches`] made: its chains and
/// rules, which the sandbox's address and the host's decide.
pub fn rules_batch(p: &Policy) -> Batch {
    let mut b = Batch::new(NFPROTO_INET);
    add_rules(&mut b, p);
    b
}

#[cfg(test)]
fn add_table(b: &mut Batch, allow: Option<&[crate::egress::Dest]>) {
    for (set, chunk) in add_sets(b, allow.unwrap_or_default()) {
        chunk.add_to(b, &set);
    }
}

/// The table, its refuse chain and the allow-list's sets, empty; returns their elements
/// in chunks, each with its set's name.
fn add_sets(b: &mut Batch, allow: &[crate::egress::Dest]) -> Vec<(String, Elements)> {
    b.add_table(TABLE, 0, true);
    b.add_regular_chain(TABLE, "refuse");
    // Every refusal is reported to whoever listens in the namespace (nsrun, with -v or
    // --refusals); without a listener the kernel discards it.
    b.add_rule(TABLE, "refuse", &report(vec![], REFUSED_GROUP));
    for r in refuse_rules() {
        b.add_rule(TABLE, "refuse", &r);
    }
    // The addresses nsrun's resolver answers for each allowed name, before the rules
    // that look them up.
    for (_, set) in crate::egress::name_sets(allow) {
        b.add_address_set(TABLE, &set, crate::egress::SET_SIZE, true);
    }
    let mut elements = Vec::new();
    for set in crate::egress::address_sets(allow) {
        let set = set.distinct();
        if let Some(ranges) = set.as_ranges() {
            b.add_range_set(TABLE, &set.name, 2 * ranges.len() as u32);
            // Two elements a range: a start and an end.
            for chunk in ranges.chunks(ELEMENTS_PER_BATCH / 2) {
                elements.push((set.name.clone(), Elements::Ranges(chunk.to_vec())));
            }
            continue;
        }
        b.add_address_set(TABLE, &set.name, set.nets.len() as u32, false);
        let forever: Vec<(Ipv4Addr, u64)> = set.nets.iter().map(|n| (n.addr, 0)).collect();
        for chunk in forever.chunks(ELEMENTS_PER_BATCH) {
            elements.push((set.name.clone(), Elements::Addresses(chunk.to_vec())));
        }
    }
    elements
}

fn add_rules(b: &mut Batch, p: &Policy) {
    b.add_regular_chain(TABLE, CABLE);
    b.add_regular_chain(TABLE, "host");
    // The whole pool in one rule: every other sandbox's host end (a host address) and
    // every sandbox, however many start later, without a rule each.
    b.add_rule(TABLE, "host", &rule(vec![to(p.pool)], REFUSE));
    for other in &p.other_pools {
        b.add_rule(TABLE, "host", &rule(vec![to(*other)], REFUSE));
    }
    let loopback = LOOPBACK;
    for net in aggregate(&p.host_nets).iter().filter(|n| {
        // Loopback never leaves the sandbox; the pool is one rule already.
        let in_pool = p.pool.overlaps(n) && n.prefix >= p.pool.prefix;
        !(loopback.overlaps(n) || in_pool)
    }) {
        b.add_rule(TABLE, "host", &rule(vec![to(*net)], REFUSE));
    }
    b.add_chain(
        TABLE,
        "output",
        "filter",
        Hook::Output,
        PRIORITY_FILTER,
        NF_ACCEPT,
    );
    for r in output_rules(p) {
        b.add_rule(TABLE, "output", &r);
    }
    b.add_chain(
        TABLE,
        "input",
        "filter",
        Hook::Input,
        PRIORITY_FILTER,
        NF_DROP,
    );
    b.add_regular_chain(TABLE, FROM_HOST);
    for r in from_host_rules(p) {
        b.add_rule(TABLE, FROM_HOST, &r);
    }
    for r in input_rules(p) {
        b.add_rule(TABLE, "input", &r);
    }
}

/// A batch that closes host addresses added after the sandbox started.
pub fn add_host_addrs(addrs: &[Ipv4Addr]) -> Batch {
    let mut b = Batch::new(NFPROTO_INET);
    for r in host_rules(addrs) {
        b.insert_rule(TABLE, "host", &r);
    }
    for a in addrs {
        b.add_rule(
            TABLE,
            FROM_HOST,
            &rule(vec![Match::SAddr(host(*a))], Verdict::Accept),
        );
    }
    b
}

/// The same addresses in as few prefixes as cover exactly them: a host with thousands
/// of addresses in a few ranges (kube-proxy's IPVS, MetalLB) needs a rule per range, not
/// per address.
pub fn aggregate(nets: &[Ipv4Net]) -> Vec<Ipv4Net> {
    let mut out: Vec<Ipv4Net> = nets
        .iter()
        .map(|n| Ipv4Net::new(n.network(), n.prefix))
        .collect();
    out.sort_by_key(|n| (u32::from(n.addr), n.prefix));
    out.dedup();
    loop {
        // Drop what another covers (sorted: a covering prefix comes first).
        let mut kept: Vec<Ipv4Net> = Vec::with_capacity(out.len());
        for n in out {
            if !kept
                .last()
                .is_some_and(|k| k.prefix <= n.prefix && k.overlaps(&n))
            {
                kept.push(n);
            }
        }
        // Merge two halves of one prefix into it.
        let mut merged: Vec<Ipv4Net> = Vec::with_capacity(kept.len());
        let mut changed = false;
        let mut i = 0;
        while i < kept.len() {
            let n = kept[i];
            if let Some(next) = kept.get(i + 1) {
                if n.prefix > 0 && next.prefix == n.prefix {
                    let parent = Ipv4Net::new(n.addr, n.prefix - 1);
                    let parent = Ipv4Net::new(parent.network(), parent.prefix);
                    if parent.addr == n.addr && parent.overlaps(next) {
                        merged.push(parent);
                        changed = true;
                        i += 2;
                        continue;
                    }
                }
            }
            merged.push(n);
            i += 1;
        }
        merged.sort_by_key(|n| (u32::from(n.addr), n.prefix));
        out = merged;
        if !changed {
            return out;
        }
    }
}

/// The holder's host table: created exclusively and owned by its socket. `stale` first
/// deletes a table of that name that nobody owns (left by an older nsrun or a restore).
pub fn holder_table(stale: bool) -> Batch {
    let mut b = Batch::new(NFPROTO_INET);
    if stale {
        b.del_table(TABLE);
    }
    b.add_table(TABLE, NFT_TABLE_F_OWNER, true);
    b.add_chain(
        TABLE,
        "postrouting",
        "nat",
        Hook::PostRouting,
        PRIORITY_SRCNAT,
        NF_ACCEPT,
    );
    b.add_chain(
        TABLE,
        "forward",
        "filter",
        Hook::Forward,
        PRIORITY_FILTER,
        NF_ACCEPT,
    );
    for r in host_forward_rules() {
        b.add_rule(TABLE, "forward", &r);
    }
    b.add_chain(
        TABLE,
        "input",
        "filter",
        Hook::Input,
        PRIORITY_FILTER,
        NF_ACCEPT,
    );
    b.add_regular_chain(TABLE, HOST_EXCEPTIONS);
    for r in host_input_rules() {
        b.add_rule(TABLE, "input", &r);
    }
    // Published ports: connections from elsewhere (prerouting) and from the host itself
    // to its own addresses (output); localhost is served by nsrun's own listener.
    for (chain, hook) in [("prerouting", Hook::PreRouting), ("output", Hook::Output)] {
        b.add_chain(TABLE, chain, "nat", hook, PRIORITY_DSTNAT, NF_ACCEPT);
    }
    b
}

const PRIORITY_DSTNAT: i32 = -100;

/// The host table's `forward` chain (policy accept: the host's own firewall decides the
/// rest).
pub fn host_forward_rules() -> Vec<Rule> {
    vec![
        // One sandbox to another, through the host (a published port, a sandbox of
        // another pool or --ip): never, and refused at once. Each sandbox also refuses
        // its own pool and accepts only the host and published ports; this closes what
        // those cannot name.
        rule(
            vec![
                Match::IifNamePrefix(crate::addr::LINK_PREFIX.into()),
                Match::OifNamePrefix(crate::addr::LINK_PREFIX.into()),
                Match::L4Proto(IPPROTO_TCP),
            ],
            Verdict::Reject(Reject::TcpReset),
        ),
        rule(
            vec![
                Match::IifNamePrefix(crate::addr::LINK_PREFIX.into()),
                Match::OifNamePrefix(crate::addr::LINK_PREFIX.into()),
            ],
            Verdict::Reject(Reject::AdminProhibited),
        ),
        // A new connection forwarded to a sandbox is a published port's (DNAT) or
        // nothing. The sandbox admits the host's addresses; a host rule that masquerades
        // forwarded traffic (Docker's for its containers, a LAN's) would give anyone one.
        rule(
            vec![
                Match::OifNamePrefix(crate::addr::LINK_PREFIX.into()),
                Match::CtState(CT_NEW),
                Match::CtStatusLacks(CT_STATUS_DNAT),
            ],
            Verdict::Drop,
        ),
    ]
}

/// The host table's `input` chain: the host's own addresses, refused from the host's
/// side as well (the sandbox's table refuses them too, but learns of a new one only from
/// an event): a per-packet lookup, so an address that appears while sandboxes run is
/// closed before any packet can reach it, however many appear at once, and a connection
/// a sandbox opened to an address that later becomes the host's does not survive it.
/// Replies to the host's own connections into a sandbox are the other direction and
/// pass. Broadcast addresses of its networks count too (a network added while a sandbox
/// runs brings one the sandbox's own table does not know). What [`HOST_EXCEPTIONS`]
/// accepts for a sandbox passes; the rest is refused at once.
pub fn host_input_rules() -> Vec<Rule> {
    let mut rules = Vec::new();
    for host_dst in [Match::DAddrLocal, Match::DAddrBroadcast] {
        let to_host = || {
            vec![
                Match::IifNamePrefix(crate::addr::LINK_PREFIX.into()),
                Match::CtOriginal,
                host_dst.clone(),
            ]
        };
        rules.push(rule(to_host(), Verdict::Jump(HOST_EXCEPTIONS)));
        let mut tcp = to_host();
        tcp.push(Match::L4Proto(IPPROTO_TCP));
        rules.push(rule(tcp, Verdict::Reject(Reject::TcpReset)));
        rules.push(rule(to_host(), Verdict::Reject(Reject::AdminProhibited)));
    }
    rules
}

/// The chain of what each sandbox may open on the host: everything with `--allow-host`,
/// its nameservers' port 53 (`--dns` may name one of the host's addresses).
pub const HOST_EXCEPTIONS: &str = "sandbox_to_host";

/// The rules of one sandbox (host end `link`) in [`HOST_EXCEPTIONS`].
pub fn host_exceptions(
    link: u32,
    source: Option<Ipv4Addr>,
    allow_host: bool,
    nameservers: &[Ipv4Addr],
) -> Vec<Rule> {
    let from = |mut m: Vec<Match>| {
        if let Some(s) = source {
            m.insert(1, Match::SAddr(host(s)));
        }
        m
    };
    if allow_host {
        return vec![rule(from(vec![Match::Iif(link)]), Verdict::Accept)];
    }
    nameservers
        .iter()
        .flat_map(|ns| {
            [IPPROTO_UDP, IPPROTO_TCP].map(|proto| {
                rule(
                    from(vec![
                        Match::Iif(link),
                        to(host(*ns)),
                        Match::L4Proto(proto),
                        Match::DPort(53),
                    ]),
                    Verdict::Accept,
                )
            })
        })
        .collect()
}

/// The DNAT rule of one published port, for the `prerouting` and `output` chains:
/// to one host address, or to any of the host's addresses (a per-packet lookup, so
/// addresses added later count) but loopback's.
pub fn publish_rule(p: &crate::plan::Publish, sandbox: Ipv4Addr) -> Rule {
    let mut matches = match p.host_ip {
        Some(ip) => vec![to(host(ip))],
        None => vec![
            Match::NfProto(crate::netlink::nft::NFPROTO_IPV4),
            Match::DAddrNot("127.0.0.0/8".parse().unwrap()),
            Match::DAddrLocal,
        ],
    };
    matches.extend([Match::L4Proto(p.proto), Match::DPort(p.host_port)]);
    rule(matches, Verdict::Dnat(sandbox, p.sandbox_port))
}

/// On a link whose forwarding nsrun switched on: forward only to sandboxes.
/// The table that guards the links whose forwarding a holder switched on: owned by no
/// socket, so it outlives a holder that is killed (by root, by the user of a
/// file-capability install, by a unit's stop), and no link is ever left forwarding
/// without its guard. It is also the record a later holder adopts: each rule's comment
/// names its link.
pub const GUARD_TABLE: &str = "nsrun-guard";
/// The comment of a guard rule: this, then the link's name and index.
pub const GUARD_MARK: &str = "nsrun: guard ";

/// `table inet nsrun-guard { chain forward { ... iif LINK oifname != "nsr*" drop } }`,
/// made if missing, with one more guard.
pub fn guard(link: u32, name: &str) -> Batch {
    let mut b = Batch::new(NFPROTO_INET);
    b.add_table(GUARD_TABLE, 0, false);
    b.add_chain(
        GUARD_TABLE,
        "forward",
        "filter",
        Hook::Forward,
        PRIORITY_FILTER,
        NF_ACCEPT,
    );
    b.add_rule_commented(
        GUARD_TABLE,
        "forward",
        &forward_guard(link),
        &format!("{GUARD_MARK}{name} {link}"),
        None,
    );
    b
}

pub fn forward_guard(link: u32) -> Rule {
    rule(
        vec![
            Match::Iif(link),
            Match::OifNamePrefixNot(crate::addr::LINK_PREFIX.into()),
        ],
        Verdict::Drop,
    )
}

/// Every rule nsrun puts into a chain of another firewall carries a comment that starts
/// so: that is how a later holder finds what a killed one left.
pub const FOREIGN_MARK: &str = "nsrun: ";

/// One accept nsrun adds to another firewall's forward chain, in the words iptables
/// uses for interfaces (`nsr+` is a prefix), so that it renders as an nf_tables rule
/// ([`ForeignAccept::rule`]) or as an x_tables entry (xtables.rs) alike.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignAccept {
    /// The rule's identity, starting with [`FOREIGN_MARK`].
    pub comment: String,
    /// Only packets that come in from a sandbox's link.
    pub from_sandboxes: bool,
    /// Where they go out: a link's name, or `nsr+`.
    pub oifname: String,
}

impl ForeignAccept {
    /// The interface spec of a sandbox's link, as iptables writes it.
    pub fn sandboxes() -> String {
        format!("{}+", crate::addr::LINK_PREFIX)
    }

    pub fn rule(&self) -> Rule {
        let iif = self
            .from_sandboxes
            .then(|| Match::IifNamePrefix(crate::addr::LINK_PREFIX.into()));
        let oif = match self.oifname.strip_suffix('+') {
            Some(prefix) => Match::OifNamePrefix(prefix.into()),
            None => Match::OifName(self.oifname.clone()),
        };
        rule(iif.into_iter().chain([oif]).collect(), Verdict::Accept)
    }
}

/// What nsrun adds to another firewall's forward chain that would drop its sandboxes'
/// traffic (Docker's, ufw's, firewalld's, an nftables filter): sandboxes out through the
/// links the internet is reached by, and anything to a sandbox (whose new connections the
/// holder lets through only to published ports). Nothing else: not a sandbox to
/// Docker's bridge or a network behind the host. With no sandbox link, nothing matches.
pub fn foreign_accepts(uplinks: &[String]) -> Vec<ForeignAccept> {
    let mut accepts: Vec<ForeignAccept> = uplinks
        .iter()
        .map(|link| ForeignAccept {
            comment: format!("{FOREIGN_MARK}sandboxes to the internet through {link}"),
            from_sandboxes: true,
            oifname: link.clone(),
        })
        .collect();
    accepts.push(ForeignAccept {
        comment: format!(
            "{FOREIGN_MARK}to sandboxes, which accept only replies and published ports"
        ),
        from_sandboxes: false,
        oifname: ForeignAccept::sandboxes(),
    });
    accepts
}

/// NAT for one sandbox: its address, leaving by any link that is not a sandbox's.
pub fn masquerade(sandbox_addr: Ipv4Addr) -> Rule {
    rule(
        vec![
            Match::SAddr(host(sandbox_addr)),
            Match::OifNamePrefixNot(crate::addr::LINK_PREFIX.into()),
        ],
        Verdict::Masquerade,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_addresses_are_aggregated_exactly() {
        let nets = |v: &[&str]| -> Vec<Ipv4Net> { v.iter().map(|s| s.parse().unwrap()).collect() };
        assert_eq!(
            aggregate(&nets(&[
                "10.0.0.1/32",
                "10.0.0.0/32",
                "10.0.0.2/32",
                "10.0.0.3/32"
            ])),
            nets(&["10.0.0.0/30"])
        );
        // Not a covering prefix that would take in an address the host does not have.
        assert_eq!(
            aggregate(&nets(&["10.0.0.1/32", "10.0.0.2/32"])),
            nets(&["10.0.0.1/32", "10.0.0.2/32"])
        );
        assert_eq!(
            aggregate(&nets(&[
                "198.51.100.2/24",
                "198.51.100.7/32",
                "10.1.0.0/16",
                "10.0.0.0/16"
            ])),
            nets(&["10.0.0.0/15", "198.51.100.0/24"])
        );
        // 1..=250 of each of 40 /24s: 13 prefixes each, not 10,000 rules.
        let many: Vec<Ipv4Net> = (0..10_000u32)
            .map(|i| {
                Ipv4Net::new(
                    std::net::Ipv4Addr::new(10, 99, (i / 250) as u8, (i % 250 + 1) as u8),
                    32,
                )
            })
            .collect();
        let got = aggregate(&many);
        // 1, 2-3, 4-7, ..., 128-191, 192-223, ..., 248-249, 250: 13 for each /24.
        assert_eq!(got.len(), 40 * 13);
        let covered: u64 = got.iter().map(|n| n.size()).sum();
        assert_eq!(covered, 10_000, "exactly the addresses, no more");
    }

    fn policy(allow_host: bool, block_lan: bool) -> Policy {
        Policy {
            sandbox_addr: "10.200.0.6".parse().unwrap(),
            pool: "10.200.0.0/16".parse().unwrap(),
            peers: None,
            other_pools: Vec::new(),
            gateway: "10.200.0.5".parse().unwrap(),
            host_nets: vec![
                "198.51.100.2/32".parse().unwrap(),
                "10.200.0.5/32".parse().unwrap(),
            ],
            nameservers: vec!["198.51.100.53".parse().unwrap()],
            allow_host,
            block_lan,
            published: vec![],
            allow: None,
            deny: vec![],
            audit: false,
        }
    }

    fn position(rules: &[Rule], m: &Match) -> Option<usize> {
        rules.iter().position(|r| r.matches.contains(m))
    }

    #[test]
    fn loopback_first_then_ipv6_and_spoofing_closed() {
        let out = output_rules(&policy(false, false));
        assert_eq!(out[0], rule(vec![Match::Oif(1)], Verdict::Accept));
        assert_eq!(out[1], rule(vec![], Verdict::Jump(CABLE)));
        assert_eq!(out[2], rule(vec![Match::NfProto(NFPROTO_IPV6)], REFUSE));
        assert_eq!(
            out[3],
            rule(
                vec![Match::SAddrNot("10.200.0.6".parse().unwrap())],
                Verdict::Drop
            )
        );
    }

    #[test]
    fn nameservers_open_before_the_host_and_metadata_close() {
        let out = output_rules(&policy(false, true));
        let dns = position(&out, &to("198.51.100.53/32".parse().unwrap())).unwrap();
        let host = out
            .iter()
            .position(|r| r.verdict == Verdict::Jump("host"))
            .unwrap();
        let metadata = position(&out, &to("169.254.0.0/16".parse().unwrap())).unwrap();
        let lan = position(&out, &to("10.0.0.0/8".parse().unwrap())).unwrap();
        assert!(dns < host && host < metadata && metadata < lan);
        for (net, _) in METADATA {
            assert!(position(&out, &to(net.parse().unwrap())).is_some(), "{net}");
        }
    }

    #[test]
    fn allow_host_skips_the_host_chain_and_lan_is_open_by_default() {
        let out = output_rules(&policy(true, false));
        assert!(!out.iter().any(|r| r.verdict == Verdict::Jump("host")));
        assert!(position(&out, &to("10.0.0.0/8".parse().unwrap())).is_none());
    }

    #[test]
    fn refused_icmp_and_udp_get_an_error_not_silence() {
        let refuse = refuse_rules();
        assert_eq!(refuse[0].matches, [Match::L4Proto(IPPROTO_TCP)]);
        // Every other protocol, ICMP echo included, meets the unconditional reject.
        let last = refuse.last().unwrap();
        assert!(last.matches.is_empty());
        assert_eq!(last.verdict, Verdict::Reject(Reject::AdminProhibited));
        assert!(!refuse.iter().any(|r| r.verdict == Verdict::Drop));
    }

    #[test]
    fn every_host_address_connects_in_and_the_rest_is_refused_at_once() {
        let mut p = policy(false, false);
        p.published = vec![(IPPROTO_TCP, 8080)];
        let input = input_rules(&p);
        let from_host = from_host_rules(&p);
        let at = |saddr: &str, dport: u16| {
            let pkt = Packet {
                saddr: saddr.parse().unwrap(),
                daddr: p.sandbox_addr,
                dport,
                ..Packet::default()
            };
            verdict(
                &[("input", &input), (FROM_HOST, &from_host), (CABLE, &vec![])],
                "input",
                &pkt,
            )
        };
        // The link's end and another of the host's addresses (curl --interface eth0).
        assert_eq!(at("10.200.0.5", 22), Some(Verdict::Accept));
        assert_eq!(at("198.51.100.2", 22), Some(Verdict::Accept));
        // Anyone else: only the published port, the rest refused with an answer.
        assert_eq!(at("203.0.113.9", 8080), Some(Verdict::Accept));
        assert_eq!(at("203.0.113.9", 22), Some(REFUSE));
        // Replies first, whoever sends them.
        let reply = Packet {
            saddr: "203.0.113.9".parse().unwrap(),
            ct_established: true,
            ..Packet::default()
        };
        assert_eq!(
            verdict(
                &[("input", &input), (FROM_HOST, &from_host), (CABLE, &vec![])],
                "input",
                &reply
            ),
            Some(Verdict::Accept)
        );
        // An address the host gains later is let in as well as refused as a destination.
        let (msg, _) = add_host_addrs(&["192.0.2.77".parse().unwrap()]).finish();
        assert!(msg.buf.windows(4).any(|w| w == [192, 0, 2, 77]));
    }

    /// A packet as the rules see it; what a field does not say is "no".
    #[derive(Clone)]
    struct Packet {
        iif: u32,
        oif: u32,
        iifname: &'static str,
        oifname: &'static str,
        saddr: Ipv4Addr,
        daddr: Ipv4Addr,
        proto: u8,
        dport: u16,
        ct_new: bool,
        ct_established: bool,
        ct_dnat: bool,
        reply_direction: bool,
        daddr_local: bool,
        /// The sets the destination is in.
        sets: Vec<String>,
    }

    impl Default for Packet {
        fn default() -> Packet {
            Packet {
                iif: 0,
                oif: 0,
                iifname: "",
                oifname: "",
                saddr: Ipv4Addr::UNSPECIFIED,
                daddr: Ipv4Addr::UNSPECIFIED,
                proto: 0,
                dport: 0,
                ct_new: false,
                ct_established: false,
                ct_dnat: false,
                reply_direction: false,
                daddr_local: false,
                sets: Vec::new(),
            }
        }
    }

    fn matches(m: &Match, p: &Packet) -> bool {
        let proto = if p.proto == 0 { IPPROTO_TCP } else { p.proto };
        match m {
            Match::NfProto(f) => *f == crate::netlink::nft::NFPROTO_IPV4,
            Match::Iif(i) => *i == p.iif,
            Match::Oif(i) => *i == p.oif,
            Match::OifName(n) => n == p.oifname,
            Match::OifNamePrefixNot(n) => !p.oifname.starts_with(n.as_str()),
            Match::IifNamePrefix(n) => p.iifname.starts_with(n.as_str()),
            Match::OifNamePrefix(n) => p.oifname.starts_with(n.as_str()),
            Match::SAddr(n) => n.contains(p.saddr),
            Match::SAddrNot(a) => *a != p.saddr,
            Match::DAddr(n) => n.contains(p.daddr),
            Match::DAddrNot(n) => !n.contains(p.daddr),
            Match::DAddrInSet(set) => p.sets.contains(set),
            Match::Limit(..) => true,
            Match::CtState(mask) => {
                (mask & CT_NEW != 0 && p.ct_new) || (mask & CT_ESTABLISHED != 0 && p.ct_established)
            }
            Match::CtStatusLacks(CT_STATUS_DNAT) => !p.ct_dnat,
            Match::CtStatusLacks(other) => panic!("status {other}"),
            Match::L4Proto(x) => *x == proto,
            Match::DPort(port) => *port == p.dport,
            Match::DPortRange(low, high) => (*low..=*high).contains(&p.dport),
            Match::CtOriginal => !p.reply_direction,
            Match::DAddrBroadcast => false,
            Match::DAddrLocal => p.daddr_local,
        }
    }

    /// The verdict a packet meets from `start`, following jumps (a regular chain that
    /// ends returns); None when it falls through to the policy.
    fn verdict(chains: &[(&str, &Vec<Rule>)], start: &str, p: &Packet) -> Option<Verdict> {
        let rules = chains.iter().find(|(n, _)| *n == start)?.1;
        for r in rules {
            if !r.matches.iter().all(|m| matches(m, p)) {
                continue;
            }
            match &r.verdict {
                Verdict::Jump(chain) if chains.iter().any(|(n, _)| n == chain) => {
                    if let Some(v) = verdict(chains, chain, p) {
                        return Some(v);
                    }
                }
                v => return Some(v.clone()),
            }
        }
        None
    }

    #[test]
    fn a_pulled_cable_refuses_everything_but_loopback_even_replies() {
        let p = policy(true, false);
        let output = output_rules(&p);
        let input = input_rules(&p);
        let from_host = from_host_rules(&p);
        let refuse = refuse_rules();
        let cable = refuse_rules();
        let pulled = [
            ("output", &output),
            ("input", &input),
            (FROM_HOST, &from_host),
            ("refuse", &refuse),
            (CABLE, &cable),
        ];
        let reply = Packet {
            saddr: p.sandbox_addr,
            daddr: "198.51.100.1".parse().unwrap(),
            ct_established: true,
            ..Packet::default()
        };
        assert_eq!(
            verdict(&pulled, "output", &reply),
            Some(Verdict::Reject(Reject::TcpReset))
        );
        let inbound = Packet {
            saddr: "10.200.0.5".parse().unwrap(),
            ct_established: true,
            ..Packet::default()
        };
        assert_eq!(
            verdict(&pulled, "input", &inbound),
            Some(Verdict::Reject(Reject::TcpReset))
        );
        let lo = Packet {
            oif: 1,
            iif: 1,
            ..reply.clone()
        };
        assert_eq!(verdict(&pulled, "output", &lo), Some(Verdict::Accept));
        assert_eq!(verdict(&pulled, "input", &lo), Some(Verdict::Accept));
        // Plugged in (an empty chain), replies pass again.
        let empty = vec![];
        let plugged = [
            ("output", &output),
            ("input", &input),
            (FROM_HOST, &from_host),
            ("refuse", &refuse),
            (CABLE, &empty),
        ];
        assert_eq!(verdict(&plugged, "output", &reply), Some(Verdict::Accept));
        let (msg, _) = disconnect(true).finish();
        assert!(msg.count() >= 4, "batch begin, flush, drop, end");
    }

    #[test]
    fn an_allow_list_opens_only_its_destinations_and_deny_wins() {
        let dest = |s: &str| crate::egress::parse_dest(s, "--allow").unwrap();
        let mut p = policy(false, true);
        p.allow = Some(vec![dest("203.0.113.0/24"), dest("198.51.100.7:443/tcp")].into());
        p.deny = vec![dest("203.0.113.66")];
        let out = output_rules(&p);
        let host = host_rules(&["198.51.100.2".parse().unwrap()]);
        let refuse = refuse_rules();
        let chains = [
            ("output", &out),
            ("host", &host),
            ("refuse", &refuse),
            (CABLE, &vec![]),
        ];
        // The list's addresses and prefixes are in sets: a packet is in those that hold
        // its destination.
        let sets = crate::egress::address_sets(p.allow.as_deref().unwrap());
        assert_eq!(sets.len(), 2, "every port and protocol; 443/tcp");
        let to = |daddr: &str, proto: u8, dport: u16| Packet {
            saddr: p.sandbox_addr,
            daddr: daddr.parse().unwrap(),
            proto,
            dport,
            sets: sets
                .iter()
                .filter(|s| s.nets.iter().any(|n| n.contains(daddr.parse().unwrap())))
                .map(|s| s.name.clone())
                .collect(),
            ..Packet::default()
        };
        let tcp = IPPROTO_TCP;
        let reset = Some(Verdict::Reject(Reject::TcpReset));
        assert_eq!(
            verdict(&chains, "output", &to("203.0.113.9", tcp, 80)),
            Some(Verdict::Accept)
        );
        assert_eq!(
            verdict(&chains, "output", &to("198.51.100.7", tcp, 443)),
            Some(Verdict::Accept)
        );
        assert_eq!(
            verdict(&chains, "output", &to("198.51.100.7", tcp, 80)),
            reset
        );
        assert_eq!(
            verdict(&chains, "output", &to("198.51.100.7", IPPROTO_UDP, 443)),
            Some(Verdict::Reject(Reject::AdminProhibited))
        );
        assert_eq!(verdict(&chains, "output", &to("192.0.2.1", tcp, 80)), reset);
        // --deny wins over --allow; the nameserver stays open; the default refusals hold.
        assert_eq!(
            verdict(&chains, "output", &to("203.0.113.66", tcp, 80)),
            reset
        );
        assert_eq!(
            verdict(&chains, "output", &to("198.51.100.53", IPPROTO_UDP, 53)),
            Some(Verdict::Accept)
        );
        assert_eq!(
            verdict(&chains, "output", &to("169.254.169.254", tcp, 80)),
            reset
        );
        assert_eq!(
            verdict(&chains, "output", &to("198.51.100.2", tcp, 22)),
            reset
        );
        // --deny alone narrows the default: the rest stays open.
        p.allow = None;
        let out = output_rules(&p);
        let chains = [
            ("output", &out),
            ("host", &host),
            ("refuse", &refuse),
            (CABLE, &vec![]),
        ];
        assert_eq!(
            verdict(&chains, "output", &to("203.0.113.66", tcp, 80)),
            reset
        );
        assert_eq!(verdict(&chains, "output", &to("192.0.2.1", tcp, 80)), None);
    }

    #[test]
    fn the_host_never_forwards_one_sandbox_to_another() {
        let forward = host_forward_rules();
        let chains = [("forward", &forward)];
        // A sandbox to another sandbox's published port through the host's address:
        // DNAT made it a new connection to a sandbox link, which the DNAT alone would
        // let through.
        let published = Packet {
            iifname: "nsr0a000001",
            oifname: "nsr0a000002",
            ct_new: true,
            ct_dnat: true,
            ..Packet::default()
        };
        assert_eq!(
            verdict(&chains, "forward", &published),
            Some(Verdict::Reject(Reject::TcpReset))
        );
        let udp = Packet {
            proto: IPPROTO_UDP,
            ..published.clone()
        };
        assert_eq!(
            verdict(&chains, "forward", &udp),
            Some(Verdict::Reject(Reject::AdminProhibited))
        );
        // The internet to a published port passes; to anything else it does not.
        let inbound = Packet {
            iifname: "eth0",
            ..published.clone()
        };
        assert_eq!(verdict(&chains, "forward", &inbound), None);
        let unpublished = Packet {
            ct_dnat: false,
            ..inbound.clone()
        };
        assert_eq!(
            verdict(&chains, "forward", &unpublished),
            Some(Verdict::Drop)
        );
        // Out to the internet, and replies back in, pass.
        let out = Packet {
            iifname: "nsr0a000001",
            oifname: "eth0",
            ct_new: true,
            ..Packet::default()
        };
        assert_eq!(verdict(&chains, "forward", &out), None);
        let reply = Packet {
            iifname: "eth0",
            oifname: "nsr0a000001",
            ct_established: true,
            ..Packet::default()
        };
        assert_eq!(verdict(&chains, "forward", &reply), None);
    }

    #[test]
    fn the_host_refuses_sandboxes_but_its_exceptions() {
        let input = host_input_rules();
        let open = host_exceptions(7, None, false, &["198.51.100.2".parse().unwrap()]);
        let all = host_exceptions(8, None, true, &[]);
        let exceptions: Vec<Rule> = open.into_iter().chain(all).collect();
        let chains = [("input", &input), (HOST_EXCEPTIONS, &exceptions)];
        let to_host = |iif: u32, dport: u16, proto: u8| Packet {
            iif,
            iifname: "nsr0a000001",
            daddr: "198.51.100.2".parse().unwrap(),
            daddr_local: true,
            dport,
            proto,
            ..Packet::default()
        };
        let tcp = IPPROTO_TCP;
        let udp = IPPROTO_UDP;
        assert_eq!(
            verdict(&chains, "input", &to_host(7, 22, tcp)),
            Some(Verdict::Reject(Reject::TcpReset))
        );
        assert_eq!(
            verdict(&chains, "input", &to_host(7, 9, udp)),
            Some(Verdict::Reject(Reject::AdminProhibited))
        );
        assert_eq!(
            verdict(&chains, "input", &to_host(7, 53, udp)),
            Some(Verdict::Accept)
        );
        assert_eq!(
            verdict(&chains, "input", &to_host(8, 22, tcp)),
            Some(Verdict::Accept)
        );
        // Replies to the host's own connections into a sandbox pass.
        let reply = Packet {
            reply_direction: true,
            ..to_host(7, 22, tcp)
        };
        assert_eq!(verdict(&chains, "input", &reply), None);
        // The host's own traffic is not nsrun's to judge.
        let host = Packet {
            iifname: "eth0",
            ..to_host(7, 22, tcp)
        };
        assert_eq!(verdict(&chains, "input", &host), None);
    }

    #[test]
    fn published_ports_translate_on_every_host_address_but_loopback() {
        let any = crate::plan::parse_publish("8080:80").unwrap().remove(0);
        let r = publish_rule(&any, "10.200.0.6".parse().unwrap());
        assert_eq!(r.verdict, Verdict::Dnat("10.200.0.6".parse().unwrap(), 80));
        let chains = [("prerouting", &vec![r])];
        let pkt = |daddr: &str, local: bool, dport: u16| Packet {
            daddr: daddr.parse().unwrap(),
            daddr_local: local,
            dport,
            ..Packet::default()
        };
        let dnat = Some(Verdict::Dnat("10.200.0.6".parse().unwrap(), 80));
        assert_eq!(
            verdict(&chains, "prerouting", &pkt("198.51.100.2", true, 8080)),
            dnat
        );
        assert_eq!(
            verdict(&chains, "prerouting", &pkt("127.0.0.1", true, 8080)),
            None
        );
        assert_eq!(
            verdict(&chains, "prerouting", &pkt("203.0.113.9", false, 8080)),
            None
        );
        assert_eq!(
            verdict(&chains, "prerouting", &pkt("198.51.100.2", true, 8081)),
            None
        );
        let one = crate::plan::parse_publish("198.51.100.2:8080:80/udp")
            .unwrap()
            .remove(0);
        let r = publish_rule(&one, "10.200.0.6".parse().unwrap());
        let chains = [("prerouting", &vec![r])];
        let udp = |daddr: &str| Packet {
            proto: IPPROTO_UDP,
            ..pkt(daddr, true, 8080)
        };
        assert!(verdict(&chains, "prerouting", &udp("198.51.100.2")).is_some());
        assert_eq!(verdict(&chains, "prerouting", &udp("198.51.100.3")), None);
        assert_eq!(
            verdict(&chains, "prerouting", &pkt("198.51.100.2", true, 8080)),
            None
        );
    }

    #[test]
    fn a_guarded_link_forwards_only_to_sandboxes() {
        let guard = vec![forward_guard(3)];
        let chains = [("forward", &guard)];
        let from = |oifname| Packet {
            iif: 3,
            oifname,
            ..Packet::default()
        };
        assert_eq!(
            verdict(&chains, "forward", &from("eth1")),
            Some(Verdict::Drop)
        );
        assert_eq!(verdict(&chains, "forward", &from("nsr0a000001")), None);
        let other = Packet {
            iif: 4,
            ..from("eth1")
        };
        assert_eq!(verdict(&chains, "forward", &other), None);
    }

    #[test]
    fn masquerade_translates_one_sandbox_leaving_the_host() {
        let r = vec![masquerade("10.200.0.6".parse().unwrap())];
        let chains = [("postrouting", &r)];
        let pkt = |saddr: &str, oifname| Packet {
            saddr: saddr.parse().unwrap(),
            oifname,
            ..Packet::default()
        };
        let out = verdict(&chains, "postrouting", &pkt("10.200.0.6", "eth0"));
        assert_eq!(out, Some(Verdict::Masquerade));
        assert_eq!(
            verdict(&chains, "postrouting", &pkt("10.200.0.6", "nsr0a000002")),
            None
        );
        assert_eq!(
            verdict(&chains, "postrouting", &pkt("10.200.0.10", "eth0")),
            None
        );
    }

    #[test]
    fn a_long_allow_list_loads_in_small_batches() {
        let dest = |s: &str| crate::egress::parse_dest(s, "--allow").unwrap();
        let scattered: Vec<crate::egress::Dest> = (0..1000u32)
            .map(|i| dest(&Ipv4Addr::from(i.wrapping_mul(2_654_435_761) | 1).to_string()))
            .collect();
        let batches = table_batches(Some(&scattered));
        // The table, its chain and the set; then the addresses.
        assert_eq!(batches.len(), 1 + 1000usize.div_ceil(ELEMENTS_PER_BATCH));
        let consecutive: Vec<crate::egress::Dest> = (0..1000u32)
            .map(|i| dest(&format!("203.0.{}.{}", i / 250, i % 250 + 1)))
            .collect();
        assert_eq!(
            table_batches(Some(&consecutive)).len(),
            2,
            "4 ranges: one batch"
        );
        assert_eq!(table_batches(None).len(), 1);
    }

    #[test]
    fn host_chain_covers_the_link_and_every_host_address_once() {
        let b = sandbox_batch(&policy(false, false));
        let (msg, acked) = b.finish();
        // table, refuse chain + its report + 2 rules, host chain + the pool + 198.51.100.2 (the gateway
        // is in the pool), output + its rules, from_host + the gateway and 198.51.100.2,
        // input + 5, the cable chain.
        let out = output_rules(&policy(false, false)).len();
        assert_eq!(
            acked.len(),
            1 + 1 + 1 + 2 + 1 + 1 + 2 + 1 + out + 1 + 2 + 1 + 5
        );
        assert!(msg.buf.windows(4).any(|w| w == [198, 51, 100, 2]));
        assert!(msg.buf.windows(4).any(|w| w == [255, 255, 0, 0])); // the pool's mask
    }

    #[test]
    fn masquerade_matches_one_address_leaving_by_a_non_sandbox_link() {
        let r = masquerade("10.200.0.6".parse().unwrap());
        assert_eq!(r.verdict, Verdict::Masquerade);
        assert_eq!(r.matches[1], Match::OifNamePrefixNot("nsr".into()));
    }
}
