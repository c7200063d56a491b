//! nf_tables over NETLINK_NETFILTER: batches of tables, base chains and rules.
//!
//! Layouts: include/uapi/linux/netfilter/nf_tables.h and nfnetlink.h. Every nf_tables
//! integer attribute is big-endian; `ct state` data is host-endian.

use std::net::Ipv4Addr;

use super::{Msg, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_ECHO, NLM_F_REQUEST};
use crate::addr::Ipv4Net;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_NEWSETELEM: u16 = 12;
/// nf_tables' set attributes (uapi nf_tables.h, enum nft_set_attributes).
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_DESC: u16 = 9;
/// A set's id within its batch: the kernel requires one (nf_tables_newset).
const NFTA_SET_ID: u16 = 10;
const NFTA_SET_DESC_SIZE: u16 = 1;
/// The set's elements expire (each with its own timeout).
const NFT_SET_TIMEOUT: u32 = 0x10;
const NFT_SET_INTERVAL: u32 = 0x4;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFT_SET_ELEM_INTERVAL_END: u32 = 0x1;
/// nft's type `ipv4_addr`, for `nft list` (the kernel only stores it).
const TYPE_IPADDR: u32 = 7;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_TIMEOUT: u16 = 4;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_GETGEN: u16 = 16;
const NFTA_GEN_ID: u16 = 1;

/// Table family `inet`: one table for IPv4 and IPv6.
pub const NFPROTO_INET: u8 = 1;
/// `meta nfproto ipv4`, and table family `ip`.
pub const NFPROTO_IPV4: u8 = 2;
/// `meta nfproto ipv6`.
pub const NFPROTO_IPV6: u8 = 10;

pub const NFT_TABLE_F_OWNER: u32 = 0x2;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_FLAGS: u16 = 2;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_HANDLE: u16 = 3;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_POSITION: u16 = 6;
const NFTA_RULE_USERDATA: u16 = 7;
/// libnftnl's user-data TLV type for a rule's comment, as `nft` and iptables-nft read it.
const NFTNL_UDATA_RULE_COMMENT: u8 = 0;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NFTA_REJECT_TYPE: u16 = 1;
const NFTA_REJECT_ICMP_CODE: u16 = 2;

const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NFT_CMP_LTE: u32 = 3;
const NFT_CMP_GTE: u32 = 5;
const NFT_META_IIF: u32 = 4;
const NFT_META_OIF: u32 = 5;
const NFT_META_IIFNAME: u32 = 6;
const NFT_META_OIFNAME: u32 = 7;
const NFT_META_NFPROTO: u32 = 15;
const NFT_META_L4PROTO: u32 = 16;
const NFT_CT_STATE: u32 = 0;
const NFT_CT_STATUS: u32 = 2;
const NFT_CT_DIRECTION: u32 = 1;
const NFT_REG_2: u32 = 2;
const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
const NFTA_FIB_F_DADDR: u32 = 1 << 1;
const RTN_LOCAL: u32 = 2;
const RTN_BROADCAST: u32 = 3;
const NFT_NAT_DNAT: u32 = 1;
const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 2;
const NFT_JUMP: i32 = -3;
const NFT_REJECT_TCP_RST: u32 = 1;
const NFT_REJECT_ICMPX_UNREACH: u32 = 2;
const NFT_REJECT_ICMPX_ADMIN_PROHIBITED: u8 = 3;

pub const NF_DROP: u32 = 0;
pub const NF_ACCEPT: u32 = 1;

/// `NF_INET_*` hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    PreRouting = 0,
    Input = 1,
    Forward = 2,
    Output = 3,
    PostRouting = 4,
}

pub const CT_ESTABLISHED: u32 = 0x2;
pub const CT_RELATED: u32 = 0x4;
pub const CT_NEW: u32 = 0x8;
/// IPS_DST_NAT: the connection's destination was rewritten (DNAT).
pub const CT_STATUS_DNAT: u32 = 1 << 5;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// One condition of a rule, in the words `nft` would print.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Match {
    /// `meta nfproto ipv4|ipv6`
    NfProto(u8),
    /// `meta iif INDEX`: a 4-byte compare
    Iif(u32),
    /// `meta oif INDEX`
    Oif(u32),
    /// `oifname "NAME"` (exact; the reference's worked example uses it)
    OifName(String),
    /// `oifname != "PREFIX*"`
    OifNamePrefixNot(String),
    /// `iifname "PREFIX*"`
    IifNamePrefix(String),
    /// `oifname "PREFIX*"`
    OifNamePrefix(String),
    /// `ip saddr NET`
    SAddr(Ipv4Net),
    /// `ip saddr != ADDR`
    SAddrNot(Ipv4Addr),
    /// `ip daddr NET`
    DAddr(Ipv4Net),
    /// `ip daddr != NET`
    DAddrNot(Ipv4Net),
    /// `ip daddr @SET`: one of the set's addresses
    DAddrInSet(String),
    /// `limit rate PER/second burst BURST packets`: over it, the rule does not match
    Limit(u64, u32),
    /// `ct state established,related` (any bit of the mask)
    CtState(u32),
    /// `ct status & MASK == 0`, e.g. not `dnat`
    CtStatusLacks(u32),
    /// `meta l4proto udp`
    L4Proto(u8),
    /// `th dport PORT` (after an L4Proto match)
    DPort(u16),
    /// `th dport LOW-HIGH` (after an L4Proto match): two compares on the big-endian
    /// port, which order as the numbers do
    DPortRange(u16, u16),
    /// `ct direction original`: a packet of the side that opened the connection
    CtOriginal,
    /// `fib daddr type broadcast`: a broadcast address of one of this namespace's
    /// networks (a per-packet lookup, so networks added later count)
    DAddrBroadcast,
    /// `fib daddr type local`: the destination is one of this namespace's addresses,
    /// looked up per packet (addresses added later count)
    DAddrLocal,
}

impl Match {
    fn is_ipv4_payload(&self) -> bool {
        matches!(
            self,
            Match::SAddr(_)
                | Match::SAddrNot(_)
                | Match::DAddr(_)
                | Match::DAddrNot(_)
                | Match::DAddrInSet(_)
        )
    }
}

/// How a refused packet is answered, so a blocked connection fails at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// `reject with tcp reset`
    TcpReset,
    /// `reject with icmpx admin-prohibited`
    AdminProhibited,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    Masquerade,
    /// `dnat ip to ADDR:PORT`
    Dnat(Ipv4Addr, u16),
    Reject(Reject),
    /// `jump CHAIN`
    Jump(&'static str),
    /// `log group GROUP snaplen SNAPLEN`: a copy of the packet's first bytes to the
    /// namespace's nfnetlink_log listener of that group; the packet goes on to the next
    /// rule.
    Log(u16),
}

/// How much of a logged packet the listener gets: the IP and transport headers.
pub const LOG_SNAPLEN: u32 = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub verdict: Verdict,
}

/// A transaction: BATCH_BEGIN, object messages (each with NLM_F_ACK), BATCH_END.
pub struct Batch {
    msg: Msg,
    family: u8,
    acked: Vec<usize>,
    count: usize,
}

fn nfgenmsg(m: &mut Msg, family: u8, res_id: u16) {
    m.bytes(&[family, 0]);
    m.bytes(&res_id.to_be_bytes());
}

fn be32(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

impl Batch {
    /// A batch for tables of `family` ([`NFPROTO_INET`] or [`NFPROTO_IPV4`]).
    pub fn new(family: u8) -> Batch {
        let mut msg = Msg::new();
        let at = msg.begin(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST);
        nfgenmsg(&mut msg, 0, NFNL_SUBSYS_NFTABLES);
        msg.end(at);
        Batch {
            msg,
            family,
            acked: Vec::new(),
            count: 1,
        }
    }

    fn object(&mut self, ty: u16, flags: u16) -> usize {
        self.acked.push(self.count);
        self.count += 1;
        let at = self.msg.begin(
            (NFNL_SUBSYS_NFTABLES << 8) | ty,
            flags | NLM_F_REQUEST | NLM_F_ACK,
        );
        nfgenmsg(&mut self.msg, self.family, 0);
        at
    }

    /// `add table FAMILY NAME { flags ...; }`. With [`NFT_TABLE_F_OWNER`] the kernel
    /// deletes the table when the netlink socket that created it closes, even if its
    /// process is killed. `exclusive` fails with EEXIST if the table exists.
    pub fn add_table(&mut self, name: &str, flags: u32, exclusive: bool) {
        let excl = if exclusive { super::NLM_F_EXCL } else { 0 };
        let at = self.object(NFT_MSG_NEWTABLE, NLM_F_CREATE | excl);
        self.msg.attr_str(NFTA_TABLE_NAME, name);
        if flags != 0 {
            self.msg.attr(NFTA_TABLE_FLAGS, &be32(flags));
        }
        self.msg.end(at);
    }

    /// `delete table FAMILY NAME` with everything in it.
    pub fn del_table(&mut self, name: &str) {
        let at = self.object(NFT_MSG_DELTABLE, 0);
        self.msg.attr_str(NFTA_TABLE_NAME, name);
        self.msg.end(at);
    }

    /// A base chain: `type TYPE hook HOOK priority PRIORITY; policy POLICY;`
    pub fn add_chain(
        &mut self,
        table: &str,
        name: &str,
        chain_type: &str,
        hook: Hook,
        priority: i32,
        policy: u32,
    ) {
        let at = self.object(NFT_MSG_NEWCHAIN, NLM_F_CREATE);
        self.msg.attr_str(NFTA_CHAIN_TABLE, table);
        self.msg.attr_str(NFTA_CHAIN_NAME, name);
        let h = self.msg.nest(NFTA_CHAIN_HOOK);
        self.msg.attr(NFTA_HOOK_HOOKNUM, &be32(hook as u32));
        self.msg.attr(NFTA_HOOK_PRIORITY, &priority.to_be_bytes());
        self.msg.nest_end(h);
        self.msg.attr(NFTA_CHAIN_POLICY, &be32(policy));
        self.msg.attr_str(NFTA_CHAIN_TYPE, chain_type);
        self.msg.end(at);
    }

    /// A regular chain, reached only by `jump`.
    pub fn add_regular_chain(&mut self, table: &str, name: &str) {
        let at = self.object(NFT_MSG_NEWCHAIN, NLM_F_CREATE);
        self.msg.attr_str(NFTA_CHAIN_TABLE, table);
        self.msg.attr_str(NFTA_CHAIN_NAME, name);
        self.msg.end(at);
    }

    /// `add set TABLE NAME { type ipv4_addr; [flags timeout;] size SIZE; }`: addresses,
    /// with `expiring` each expiring on its own.
    pub fn add_address_set(&mut self, table: &str, name: &str, size: u32, expiring: bool) {
        self.address_set(
            table,
            name,
            size,
            if expiring { NFT_SET_TIMEOUT } else { 0 },
        );
    }

    /// `add set TABLE NAME { type ipv4_addr; flags interval; }`: ranges of addresses,
    /// filled with [`Batch::add_ranges`].
    pub fn add_range_set(&mut self, table: &str, name: &str, size: u32) {
        self.address_set(table, name, size, NFT_SET_INTERVAL);
    }

    /// `add element TABLE SET { START-END, ... }`, ranges [start, end) of addresses: a
    /// start element each, and an end element (flag interval end, the first address past
    /// it) unless it reaches the top of the address space.
    pub fn add_ranges(&mut self, table: &str, set: &str, ranges: &[(u32, u64)]) {
        let end = be32(NFT_SET_ELEM_INTERVAL_END).to_vec();
        self.elements(
            table,
            set,
            ranges.iter().flat_map(|(start, past)| {
                let last = u32::try_from(*past)
                    .ok()
                    .map(|e| (e.to_be_bytes(), Some((NFTA_SET_ELEM_FLAGS, end.clone()))));
                std::iter::once((start.to_be_bytes(), None)).chain(last)
            }),
        );
    }

    /// `add element TABLE SET { ... }`: each element an address key and at most one more
    /// attribute (its timeout, its flags).
    fn elements(
        &mut self,
        table: &str,
        set: &str,
        elements: impl Iterator<Item = ([u8; 4], Option<(u16, Vec<u8>)>)>,
    ) {
        let at = self.object(NFT_MSG_NEWSETELEM, NLM_F_CREATE);
        self.msg.attr_str(NFTA_SET_ELEM_LIST_TABLE, table);
        self.msg.attr_str(NFTA_SET_ELEM_LIST_SET, set);
        let list = self.msg.nest(NFTA_SET_ELEM_LIST_ELEMENTS);
        for (key, extra) in elements {
            let elem = self.msg.nest(NFTA_LIST_ELEM);
            data_value(&mut self.msg, NFTA_SET_ELEM_KEY, &key);
            if let Some((ty, value)) = extra {
                self.msg.attr(ty, &value);
            }
            self.msg.nest_end(elem);
        }
        self.msg.nest_end(list);
        self.msg.end(at);
    }

    fn address_set(&mut self, table: &str, name: &str, size: u32, flags: u32) {
        let at = self.object(NFT_MSG_NEWSET, NLM_F_CREATE);
        self.msg.attr_str(NFTA_SET_TABLE, table);
        self.msg.attr_str(NFTA_SET_NAME, name);
        if flags != 0 {
            self.msg.attr(NFTA_SET_FLAGS, &be32(flags));
        }
        self.msg.attr(NFTA_SET_KEY_TYPE, &be32(TYPE_IPADDR));
        self.msg.attr(NFTA_SET_KEY_LEN, &be32(4));
        self.msg.attr(NFTA_SET_ID, &be32(self.count as u32));
        let desc = self.msg.nest(NFTA_SET_DESC);
        self.msg.attr(NFTA_SET_DESC_SIZE, &be32(size));
        self.msg.nest_end(desc);
        self.msg.end(at);
    }

    /// `add element TABLE SET { ADDR timeout MS, ... }`; a timeout of 0: for good.
    pub fn add_addresses(&mut self, table: &str, set: &str, elements: &[(Ipv4Addr, u64)]) {
        self.elements(
            table,
            set,
            elements.iter().map(|(addr, timeout_ms)| {
                let timeout = (*timeout_ms > 0)
                    .then(|| (NFTA_SET_ELEM_TIMEOUT, timeout_ms.to_be_bytes().to_vec()));
                (addr.octets(), timeout)
            }),
        );
    }

    /// Appends `rule` to `table`/`chain`.
    pub fn add_rule(&mut self, table: &str, chain: &str, rule: &Rule) {
        self.rule(table, chain, rule, NLM_F_CREATE | NLM_F_APPEND, None);
    }

    /// Inserts `rule` at the head of `table`/`chain`.
    pub fn insert_rule(&mut self, table: &str, chain: &str, rule: &Rule) {
        self.rule(table, chain, rule, NLM_F_CREATE, None);
    }

    /// Appends `rule` and asks the kernel to echo it back, with its handle
    /// (see [`rule_handle`]).
    pub fn add_rule_echo(&mut self, table: &str, chain: &str, rule: &Rule) {
        self.rule(
            table,
            chain,
            rule,
            NLM_F_CREATE | NLM_F_APPEND | NLM_F_ECHO,
            None,
        );
    }

    /// Adds `rule` to a chain nsrun does not own, with `comment` (what `nft list` prints
    /// as `comment "..."` and iptables-nft as `/* ... */`): just before the rule with
    /// handle `before`, or at the end; echoed back with its handle.
    pub fn add_rule_commented(
        &mut self,
        table: &str,
        chain: &str,
        rule: &Rule,
        comment: &str,
        before: Option<u64>,
    ) {
        let flags = match before {
            Some(_) => NLM_F_CREATE | NLM_F_ECHO,
            None => NLM_F_CREATE | NLM_F_APPEND | NLM_F_ECHO,
        };
        self.rule_at(table, chain, rule, flags, Some(comment), before);
    }

    fn rule(&mut self, table: &str, chain: &str, rule: &Rule, flags: u16, comment: Option<&str>) {
        self.rule_at(table, chain, rule, flags, comment, None);
    }

    fn rule_at(
        &mut self,
        table: &str,
        chain: &str,
        rule: &Rule,
        flags: u16,
        comment: Option<&str>,
        position: Option<u64>,
    ) {
        let at = self.object(NFT_MSG_NEWRULE, flags);
        self.msg.attr_str(NFTA_RULE_TABLE, table);
        self.msg.attr_str(NFTA_RULE_CHAIN, chain);
        if let Some(handle) = position {
            // Without NLM_F_APPEND: before that rule.
            self.msg.attr(NFTA_RULE_POSITION, &handle.to_be_bytes());
        }
        let list = self.msg.nest(NFTA_RULE_EXPRESSIONS);
        // An inet table sees IPv4 and IPv6: an IPv4 header field is read only after
        // `meta nfproto ipv4`, as nft adds it.
        if self.family == NFPROTO_INET
            && rule.matches.iter().any(Match::is_ipv4_payload)
            && !rule.matches.iter().any(|m| matches!(m, Match::NfProto(_)))
        {
            encode_match(&mut self.msg, &Match::NfProto(NFPROTO_IPV4));
        }
        for m in &rule.matches {
            encode_match(&mut self.msg, m);
        }
        match &rule.verdict {
            Verdict::Accept => verdict(&mut self.msg, NF_ACCEPT as i32, None),
            Verdict::Drop => verdict(&mut self.msg, NF_DROP as i32, None),
            Verdict::Jump(chain) => verdict(&mut self.msg, NFT_JUMP, Some(chain)),
            Verdict::Log(group) => {
                let e = expr(&mut self.msg, "log");
                self.msg.attr(1, &group.to_be_bytes()); // GROUP
                self.msg.attr(3, &be32(LOG_SNAPLEN)); // SNAPLEN
                expr_end(&mut self.msg, e);
            }
            Verdict::Masquerade => {
                let e = expr(&mut self.msg, "masq");
                expr_end(&mut self.msg, e);
            }
            Verdict::Dnat(addr, port) => {
                immediate(&mut self.msg, NFT_REG_1, &addr.octets());
                immediate(&mut self.msg, NFT_REG_2, &port.to_be_bytes());
                let e = expr(&mut self.msg, "nat");
                self.msg.attr(1, &be32(NFT_NAT_DNAT)); // TYPE
                self.msg.attr(2, &be32(u32::from(NFPROTO_IPV4))); // FAMILY
                self.msg.attr(3, &be32(NFT_REG_1)); // REG_ADDR_MIN
                self.msg.attr(5, &be32(NFT_REG_2)); // REG_PROTO_MIN
                self.msg.attr(7, &be32(NF_NAT_RANGE_PROTO_SPECIFIED)); // FLAGS
                expr_end(&mut self.msg, e);
            }
            Verdict::Reject(how) => {
                let e = expr(&mut self.msg, "reject");
                match how {
                    Reject::TcpReset => {
                        self.msg.attr(NFTA_REJECT_TYPE, &be32(NFT_REJECT_TCP_RST));
                        self.msg.attr(NFTA_REJECT_ICMP_CODE, &[0]);
                    }
                    Reject::AdminProhibited => {
                        self.msg
                            .attr(NFTA_REJECT_TYPE, &be32(NFT_REJECT_ICMPX_UNREACH));
                        self.msg
                            .attr(NFTA_REJECT_ICMP_CODE, &[NFT_REJECT_ICMPX_ADMIN_PROHIBITED]);
                    }
                }
                expr_end(&mut self.msg, e);
            }
        }
        self.msg.nest_end(list);
        if let Some(comment) = comment {
            // libnftnl's TLV: type, length (with the NUL), the string.
            let mut udata = vec![NFTNL_UDATA_RULE_COMMENT, (comment.len() + 1) as u8];
            udata.extend_from_slice(comment.as_bytes());
            udata.push(0);
            self.msg.attr(NFTA_RULE_USERDATA, &udata);
        }
        self.msg.end(at);
    }

    /// Empties a chain: a DELRULE without a handle.
    pub fn flush_chain(&mut self, table: &str, chain: &str) {
        let at = self.object(NFT_MSG_DELRULE, 0);
        self.msg.attr_str(NFTA_RULE_TABLE, table);
        self.msg.attr_str(NFTA_RULE_CHAIN, chain);
        self.msg.end(at);
    }

    /// Deletes the rule with `handle` (a DELRULE without a handle would empty the chain).
    pub fn del_rule(&mut self, table: &str, chain: &str, handle: u64) {
        let at = self.object(NFT_MSG_DELRULE, 0);
        self.msg.attr_str(NFTA_RULE_TABLE, table);
        self.msg.attr_str(NFTA_RULE_CHAIN, chain);
        self.msg.attr(NFTA_RULE_HANDLE, &handle.to_be_bytes());
        self.msg.end(at);
    }

    /// The whole batch and the indexes of the messages that will be ACKed.
    pub fn finish(mut self) -> (Msg, Vec<usize>) {
        let at = self.msg.begin(NFNL_MSG_BATCH_END, NLM_F_REQUEST);
        nfgenmsg(&mut self.msg, 0, NFNL_SUBSYS_NFTABLES);
        self.msg.end(at);
        (self.msg, self.acked)
    }
}

/// `nft list chains`: a dump of every chain of every family.
pub fn dump_chains() -> Msg {
    let mut m = Msg::new();
    let at = m.begin(
        (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETCHAIN,
        NLM_F_REQUEST | super::NLM_F_DUMP,
    );
    nfgenmsg(&mut m, 0, 0);
    m.end(at);
    m
}

/// A dump of every rule of one table.
pub fn dump_rules(family: u8, table: &str) -> Msg {
    let mut m = Msg::new();
    let at = m.begin(
        (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE,
        NLM_F_REQUEST | super::NLM_F_DUMP,
    );
    nfgenmsg(&mut m, family, 0);
    m.attr_str(NFTA_RULE_TABLE, table);
    m.end(at);
    m
}

/// A base chain as a chain dump describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainInfo {
    pub family: u8,
    pub table: String,
    pub name: String,
    pub hook: Option<u32>,
    pub policy: Option<u32>,
}

fn attr_string(v: &[u8]) -> String {
    String::from_utf8_lossy(v.split(|b| *b == 0).next().unwrap_or(v)).into_owned()
}

/// Parses one message of a chain dump.
pub fn parse_chain(payload: &[u8]) -> Option<ChainInfo> {
    let family = *payload.first()?;
    let mut chain = ChainInfo {
        family,
        table: String::new(),
        name: String::new(),
        hook: None,
        policy: None,
    };
    for (ty, v) in super::attrs(payload.get(4..)?) {
        match ty {
            NFTA_CHAIN_TABLE => chain.table = attr_string(v),
            NFTA_CHAIN_NAME => chain.name = attr_string(v),
            NFTA_CHAIN_POLICY => chain.policy = v.try_into().ok().map(u32::from_be_bytes),
            NFTA_CHAIN_HOOK => {
                chain.hook = super::attrs(v)
                    .find(|(t, _)| *t == NFTA_HOOK_HOOKNUM)
                    .and_then(|(_, n)| n.try_into().ok().map(u32::from_be_bytes))
            }
            _ => {}
        }
    }
    Some(chain)
}

/// The handle of a rule echoed back by the kernel (an `NFT_MSG_NEWRULE` payload).
pub fn rule_handle(payload: &[u8]) -> Option<u64> {
    super::attrs(payload.get(4..)?)
        .find(|(ty, _)| *ty == NFTA_RULE_HANDLE)
        .and_then(|(_, v)| Some(u64::from_be_bytes(v.try_into().ok()?)))
}

/// A rule as a rule dump describes it: enough to tell what it does at the end of a chain
/// and whether nsrun put it there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleInfo {
    pub chain: String,
    pub handle: u64,
    /// The names of its expressions, in order (`meta`, `cmp`, `immediate`, `reject`...).
    pub exprs: Vec<String>,
    /// The verdict of an `immediate` expression, if it has one.
    pub verdict: Option<i32>,
    pub comment: Option<String>,
    /// Whether a compare in it names nsrun's interfaces (a `nsr` prefix).
    pub names_sandboxes: bool,
}

impl RuleInfo {
    /// A rule that drops or rejects whatever reaches it: nothing but counters and logs
    /// before a drop or a reject.
    pub fn refuses_all(&self) -> bool {
        let refuses =
            self.verdict == Some(NF_DROP as i32) || self.exprs.iter().any(|e| e == "reject");
        refuses
            && self
                .exprs
                .iter()
                .all(|e| matches!(e.as_str(), "counter" | "log" | "immediate" | "reject"))
    }

    pub fn accepts(&self) -> bool {
        self.verdict == Some(NF_ACCEPT as i32)
    }
}

/// Parses one message of a rule dump (or an echoed NEWRULE).
pub fn parse_rule(payload: &[u8]) -> Option<RuleInfo> {
    let mut rule = RuleInfo::default();
    for (ty, v) in super::attrs(payload.get(4..)?) {
        match ty {
            NFTA_RULE_CHAIN => rule.chain = attr_string(v),
            NFTA_RULE_HANDLE => rule.handle = u64::from_be_bytes(v.try_into().ok()?),
            NFTA_RULE_USERDATA => {
                let mut at = 0;
                while let (Some(&kind), Some(&len)) = (v.get(at), v.get(at + 1)) {
                    let value = v.get(at + 2..at + 2 + usize::from(len))?;
                    if kind == NFTNL_UDATA_RULE_COMMENT {
                        rule.comment = Some(attr_string(value));
                    }
                    at += 2 + usize::from(len);
                }
            }
            NFTA_RULE_EXPRESSIONS => {
                for (_, elem) in super::attrs(v) {
                    let mut name = String::new();
                    for (ty, v) in super::attrs(elem) {
                        match ty {
                            NFTA_EXPR_NAME => name = attr_string(v),
                            NFTA_EXPR_DATA if name == "immediate" => {
                                rule.verdict = super::attrs(v)
                                    .filter(|(t, _)| *t == 2) // NFTA_IMMEDIATE_DATA
                                    .flat_map(|(_, d)| super::attrs(d))
                                    .filter(|(t, _)| *t == NFTA_DATA_VERDICT)
                                    .flat_map(|(_, d)| super::attrs(d))
                                    .find(|(t, _)| *t == NFTA_VERDICT_CODE)
                                    .and_then(|(_, c)| Some(i32::from_be_bytes(c.try_into().ok()?)))
                                    .or(rule.verdict);
                            }
                            NFTA_EXPR_DATA if name == "cmp" => {
                                let prefix = crate::addr::LINK_PREFIX.as_bytes();
                                rule.names_sandboxes |= super::attrs(v)
                                    .filter(|(t, _)| *t == 3) // NFTA_CMP_DATA
                                    .flat_map(|(_, d)| super::attrs(d))
                                    .any(|(t, d)| t == NFTA_DATA_VALUE && d.starts_with(prefix));
                            }
                            _ => {}
                        }
                    }
                    rule.exprs.push(name);
                }
            }
            _ => {}
        }
    }
    Some(rule)
}

/// The flags of a table, from a GETTABLE reply.
pub fn table_flags(payload: &[u8]) -> Option<u32> {
    super::attrs(payload.get(4..)?)
        .find(|(ty, _)| *ty == NFTA_TABLE_FLAGS)
        .and_then(|(_, v)| Some(u32::from_be_bytes(v.try_into().ok()?)))
}

/// `NFT_MSG_GETGEN`: the namespace's nf_tables generation, which every committed batch
/// (anyone's) moves on by one; read with [`gen_id`].
pub fn get_gen() -> Msg {
    let mut m = Msg::new();
    let at = m.begin((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN, NLM_F_REQUEST);
    nfgenmsg(&mut m, 0, 0);
    m.end(at);
    m
}

/// The generation in a NEWGEN message's payload (nfgenmsg, then NFTA_GEN_ID).
pub fn gen_id(payload: &[u8]) -> Option<u32> {
    super::attrs(payload.get(4..)?)
        .find(|(ty, _)| *ty == NFTA_GEN_ID)
        .and_then(|(_, v)| Some(u32::from_be_bytes(v.try_into().ok()?)))
}

/// A plain GETTABLE request for one table (not batched), to probe for nf_tables.
pub fn get_table(family: u8, name: &str) -> Msg {
    let mut m = Msg::new();
    let at = m.begin(
        (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE,
        NLM_F_REQUEST | NLM_F_ACK,
    );
    nfgenmsg(&mut m, family, 0);
    m.attr_str(NFTA_TABLE_NAME, name);
    m.end(at);
    m
}

/// Opens NFTA_LIST_ELEM { NFTA_EXPR_NAME, NFTA_EXPR_DATA { ... } }; returns both nests.
fn expr(m: &mut Msg, name: &str) -> (usize, usize) {
    let elem = m.nest(NFTA_LIST_ELEM);
    m.attr_str(NFTA_EXPR_NAME, name);
    let data = m.nest(NFTA_EXPR_DATA);
    (elem, data)
}

fn expr_end(m: &mut Msg, (elem, data): (usize, usize)) {
    m.nest_end(data);
    m.nest_end(elem);
}

fn data_value(m: &mut Msg, ty: u16, value: &[u8]) {
    let n = m.nest(ty);
    m.attr(NFTA_DATA_VALUE, value);
    m.nest_end(n);
}

fn payload(m: &mut Msg, base: u32, offset: u32, len: u32) {
    let e = expr(m, "payload");
    m.attr(1, &be32(NFT_REG_1)); // DREG
    m.attr(2, &be32(base)); // BASE
    m.attr(3, &be32(offset)); // OFFSET
    m.attr(4, &be32(len)); // LEN
    expr_end(m, e);
}

fn bitwise(m: &mut Msg, mask: &[u8]) {
    let e = expr(m, "bitwise");
    m.attr(1, &be32(NFT_REG_1)); // SREG
    m.attr(2, &be32(NFT_REG_1)); // DREG
    m.attr(3, &be32(mask.len() as u32)); // LEN
    data_value(m, 4, mask); // MASK
    data_value(m, 5, &vec![0u8; mask.len()]); // XOR
    expr_end(m, e);
}

fn cmp(m: &mut Msg, op: u32, value: &[u8]) {
    let e = expr(m, "cmp");
    m.attr(1, &be32(NFT_REG_1)); // SREG
    m.attr(2, &be32(op)); // OP
    data_value(m, 3, value); // DATA
    expr_end(m, e);
}

fn meta(m: &mut Msg, key: u32) {
    let e = expr(m, "meta");
    m.attr(2, &be32(key)); // KEY
    m.attr(1, &be32(NFT_REG_1)); // DREG
    expr_end(m, e);
}

/// `immediate reg REG VALUE`
fn immediate(m: &mut Msg, reg: u32, value: &[u8]) {
    let e = expr(m, "immediate");
    m.attr(1, &be32(reg)); // DREG
    data_value(m, 2, value); // DATA
    expr_end(m, e);
}

fn verdict(m: &mut Msg, code: i32, chain: Option<&str>) {
    let e = expr(m, "immediate");
    m.attr(1, &be32(NFT_REG_VERDICT)); // DREG
    let data = m.nest(2); // NFTA_IMMEDIATE_DATA
    let v = m.nest(NFTA_DATA_VERDICT);
    m.attr(NFTA_VERDICT_CODE, &code.to_be_bytes());
    if let Some(chain) = chain {
        m.attr_str(NFTA_VERDICT_CHAIN, chain);
    }
    m.nest_end(v);
    m.nest_end(data);
    expr_end(m, e);
}

fn addr_match(m: &mut Msg, offset: u32, net: &Ipv4Net) {
    if net.prefix == 0 {
        return;
    }
    payload(m, NFT_PAYLOAD_NETWORK_HEADER, offset, 4);
    if net.prefix < 32 {
        bitwise(m, &net.mask().to_be_bytes());
    }
    cmp(m, NFT_CMP_EQ, &net.network().octets());
}

/// `ct KEY & MASK OP 0`.
fn ct_bits(m: &mut Msg, key: u32, mask: u32, op: u32) {
    let e = expr(m, "ct");
    m.attr(2, &be32(key)); // KEY
    m.attr(1, &be32(NFT_REG_1)); // DREG
    expr_end(m, e);
    bitwise(m, &mask.to_ne_bytes());
    cmp(m, op, &[0; 4]);
}

fn encode_match(m: &mut Msg, what: &Match) {
    match what {
        Match::NfProto(p) => {
            meta(m, NFT_META_NFPROTO);
            cmp(m, NFT_CMP_EQ, &[*p]);
        }
        Match::Iif(index) => {
            meta(m, NFT_META_IIF);
            cmp(m, NFT_CMP_EQ, &index.to_ne_bytes());
        }
        Match::Oif(index) => {
            meta(m, NFT_META_OIF);
            cmp(m, NFT_CMP_EQ, &index.to_ne_bytes());
        }
        Match::OifName(n) => {
            meta(m, NFT_META_OIFNAME);
            let mut name = [0u8; 16];
            name[..n.len().min(15)].copy_from_slice(&n.as_bytes()[..n.len().min(15)]);
            cmp(m, NFT_CMP_EQ, &name);
        }
        Match::IifNamePrefix(p) => {
            meta(m, NFT_META_IIFNAME);
            cmp(m, NFT_CMP_EQ, p.as_bytes());
        }
        Match::OifNamePrefix(p) => {
            meta(m, NFT_META_OIFNAME);
            cmp(m, NFT_CMP_EQ, p.as_bytes());
        }
        Match::OifNamePrefixNot(p) => {
            meta(m, NFT_META_OIFNAME);
            cmp(m, NFT_CMP_NEQ, p.as_bytes());
        }
        Match::SAddr(net) => addr_match(m, 12, net),
        Match::DAddr(net) => addr_match(m, 16, net),
        Match::Limit(per_second, burst) => {
            let e = expr(m, "limit");
            m.attr(1, &per_second.to_be_bytes()); // RATE
            m.attr(2, &1u64.to_be_bytes()); // UNIT: seconds
            m.attr(3, &be32(*burst)); // BURST
            m.attr(4, &be32(0)); // TYPE: packets
            expr_end(m, e);
        }
        Match::DAddrInSet(set) => {
            payload(m, NFT_PAYLOAD_NETWORK_HEADER, 16, 4);
            let e = expr(m, "lookup");
            m.attr_str(1, set); // SET
            m.attr(2, &be32(NFT_REG_1)); // SREG
            expr_end(m, e);
        }
        Match::DAddrNot(net) => {
            payload(m, NFT_PAYLOAD_NETWORK_HEADER, 16, 4);
            if net.prefix < 32 {
                bitwise(m, &net.mask().to_be_bytes());
            }
            cmp(m, NFT_CMP_NEQ, &net.network().octets());
        }
        Match::SAddrNot(ip) => {
            payload(m, NFT_PAYLOAD_NETWORK_HEADER, 12, 4);
            cmp(m, NFT_CMP_NEQ, &ip.octets());
        }
        // Any bit of the mask set, or none.
        Match::CtState(mask) => ct_bits(m, NFT_CT_STATE, *mask, NFT_CMP_NEQ),
        Match::CtStatusLacks(mask) => ct_bits(m, NFT_CT_STATUS, *mask, NFT_CMP_EQ),
        Match::CtOriginal => {
            // One byte: IP_CT_DIR_ORIGINAL is 0.
            let e = expr(m, "ct");
            m.attr(2, &be32(NFT_CT_DIRECTION)); // KEY
            m.attr(1, &be32(NFT_REG_1)); // DREG
            expr_end(m, e);
            cmp(m, NFT_CMP_EQ, &[0]);
        }
        Match::L4Proto(p) => {
            meta(m, NFT_META_L4PROTO);
            cmp(m, NFT_CMP_EQ, &[*p]);
        }
        Match::DPort(port) => {
            payload(m, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
            cmp(m, NFT_CMP_EQ, &port.to_be_bytes());
        }
        Match::DPortRange(low, high) => {
            payload(m, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
            cmp(m, NFT_CMP_GTE, &low.to_be_bytes());
            cmp(m, NFT_CMP_LTE, &high.to_be_bytes());
        }
        Match::DAddrLocal | Match::DAddrBroadcast => {
            let e = expr(m, "fib");
            m.attr(1, &be32(NFT_REG_1)); // DREG
            m.attr(2, &be32(NFT_FIB_RESULT_ADDRTYPE)); // RESULT
            m.attr(3, &be32(NFTA_FIB_F_DADDR)); // FLAGS
            expr_end(m, e);
            let rtype = if *what == Match::DAddrLocal {
                RTN_LOCAL
            } else {
                RTN_BROADCAST
            };
            cmp(m, NFT_CMP_EQ, &rtype.to_ne_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_seqs(mut msg: Msg, first: u32) -> Vec<u8> {
        for (i, at) in msg.messages().into_iter().enumerate() {
            msg.buf[at + 8..at + 12].copy_from_slice(&(first + i as u32).to_ne_bytes());
        }
        msg.buf
    }

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    /// reference/netlink.md §5(c), the 492-byte batch verified against a 6.18 kernel:
    /// `table ip nsrun { flags owner; chain postrouting { type nat hook postrouting
    /// priority srcnat; policy accept; ip saddr 10.201.0.0/30 oifname "eth0" masquerade } }`
    #[test]
    fn owner_table_nat_chain_masquerade_golden_bytes() {
        let mut b = Batch::new(NFPROTO_IPV4);
        b.add_table("nsrun", NFT_TABLE_F_OWNER, false);
        b.add_chain(
            "nsrun",
            "postrouting",
            "nat",
            Hook::PostRouting,
            100,
            NF_ACCEPT,
        );
        b.add_rule(
            "nsrun",
            "postrouting",
            &Rule {
                matches: vec![
                    Match::SAddr("10.201.0.0/30".parse().unwrap()),
                    Match::OifName("eth0".into()),
                ],
                verdict: Verdict::Masquerade,
            },
        );
        let (msg, acked) = b.finish();
        assert_eq!(acked, [1, 2, 3]);
        let want = hex("
            14 00 00 00 10 00 01 00 0a 00 00 00 00 00 00 00
            00 00 00 0a 28 00 00 00 00 0a 05 04 0b 00 00 00
            00 00 00 00 02 00 00 00 0a 00 01 00 6e 73 72 75
            6e 00 00 00 08 00 02 00 00 00 00 02 54 00 00 00
            03 0a 05 04 0c 00 00 00 00 00 00 00 02 00 00 00
            0a 00 01 00 6e 73 72 75 6e 00 00 00 10 00 03 00
            70 6f 73 74 72 6f 75 74 69 6e 67 00 14 00 04 80
            08 00 01 00 00 00 00 04 08 00 02 00 00 00 00 64
            08 00 05 00 00 00 00 01 08 00 07 00 6e 61 74 00
            48 01 00 00 06 0a 05 0c 0d 00 00 00 00 00 00 00
            02 00 00 00 0a 00 01 00 6e 73 72 75 6e 00 00 00
            10 00 02 00 70 6f 73 74 72 6f 75 74 69 6e 67 00
            18 01 04 80 34 00 01 80 0c 00 01 00 70 61 79 6c
            6f 61 64 00 24 00 02 80 08 00 01 00 00 00 00 01
            08 00 02 00 00 00 00 01 08 00 03 00 00 00 00 0c
            08 00 04 00 00 00 00 04 44 00 01 80 0c 00 01 00
            62 69 74 77 69 73 65 00 34 00 02 80 08 00 01 00
            00 00 00 01 08 00 02 00 00 00 00 01 08 00 03 00
            00 00 00 04 0c 00 04 80 08 00 01 00 ff ff ff fc
            0c 00 05 80 08 00 01 00 00 00 00 00 2c 00 01 80
            08 00 01 00 63 6d 70 00 20 00 02 80 08 00 01 00
            00 00 00 01 08 00 02 00 00 00 00 00 0c 00 03 80
            08 00 01 00 0a c9 00 00 24 00 01 80 09 00 01 00
            6d 65 74 61 00 00 00 00 14 00 02 80 08 00 02 00
            00 00 00 07 08 00 01 00 00 00 00 01 38 00 01 80
            08 00 01 00 63 6d 70 00 2c 00 02 80 08 00 01 00
            00 00 00 01 08 00 02 00 00 00 00 00 18 00 03 80
            14 00 01 00 65 74 68 30 00 00 00 00 00 00 00 00
            00 00 00 00 14 00 01 80 09 00 01 00 6d 61 73 71
            00 00 00 00 04 00 02 80 14 00 00 00 11 00 01 00
            0e 00 00 00 00 00 00 00 00 00 00 0a");
        assert_eq!(with_seqs(msg, 10), want);
    }

    fn rule_bytes(rule: Rule) -> Vec<u8> {
        let mut b = Batch::new(NFPROTO_IPV4);
        b.add_rule("t", "c", &rule);
        let (msg, _) = b.finish();
        // Skip BATCH_BEGIN (20 bytes), the NEWRULE header and nfgenmsg (20), and the
        // table and chain names (8 + 8): what is left is NFTA_RULE_EXPRESSIONS.
        let rule_len = u32::from_ne_bytes(msg.buf[20..24].try_into().unwrap()) as usize;
        msg.buf[20 + 36..20 + rule_len].to_vec()
    }

    /// `meta oif 1 accept`: meta OIF (key 5) into reg 1, a 4-byte host-endian compare,
    /// the accept verdict. `nft list` prints it as `oif "lo" accept`.
    #[test]
    fn oif_index_accept_golden_bytes() {
        let got = rule_bytes(Rule {
            matches: vec![Match::Oif(1)],
            verdict: Verdict::Accept,
        });
        let want = hex("
            84 00 04 80
            24 00 01 80 09 00 01 00 6d 65 74 61 00 00 00 00
              14 00 02 80 08 00 02 00 00 00 00 05 08 00 01 00 00 00 00 01
            2c 00 01 80 08 00 01 00 63 6d 70 00
              20 00 02 80 08 00 01 00 00 00 00 01 08 00 02 00 00 00 00 00
              0c 00 03 80 08 00 01 00 01 00 00 00
            30 00 01 80 0e 00 01 00 69 6d 6d 65 64 69 61 74 65 00 00 00
              1c 00 02 80 08 00 01 00 00 00 00 00
              10 00 02 80 0c 00 02 80 08 00 01 00 00 00 00 01");
        assert_eq!(got, want);
    }

    /// `jump host`: immediate into the verdict register, code NFT_JUMP (-3, ff ff ff fd)
    /// and NFTA_VERDICT_CHAIN "host".
    #[test]
    fn jump_golden_bytes() {
        let got = rule_bytes(Rule {
            matches: vec![],
            verdict: Verdict::Jump("host"),
        });
        let want = hex("
            40 00 04 80
            3c 00 01 80 0e 00 01 00 69 6d 6d 65 64 69 61 74 65 00 00 00
              28 00 02 80 08 00 01 00 00 00 00 00
              1c 00 02 80 18 00 02 80 08 00 01 00 ff ff ff fd
                09 00 02 00 68 6f 73 74 00 00 00 00");
        assert_eq!(got, want);
    }

    /// `meta l4proto tcp reject with tcp reset` and `reject with icmpx admin-prohibited`:
    /// NFTA_REJECT_TYPE be32 (1 = tcp reset, 2 = icmpx), NFTA_REJECT_ICMP_CODE u8 (3 =
    /// admin-prohibited).
    #[test]
    fn reject_golden_bytes() {
        let got = rule_bytes(Rule {
            matches: vec![],
            verdict: Verdict::Reject(Reject::AdminProhibited),
        });
        let want = hex("
            28 00 04 80
            24 00 01 80 0b 00 01 00 72 65 6a 65 63 74 00 00
              14 00 02 80 08 00 01 00 00 00 00 02 05 00 02 00 03 00 00 00");
        assert_eq!(got, want);
        let got = rule_bytes(Rule {
            matches: vec![Match::L4Proto(IPPROTO_TCP)],
            verdict: Verdict::Reject(Reject::TcpReset),
        });
        let tail = hex("
            24 00 01 80 0b 00 01 00 72 65 6a 65 63 74 00 00
              14 00 02 80 08 00 01 00 00 00 00 01 05 00 02 00 00 00 00 00");
        assert_eq!(&got[got.len() - tail.len()..], tail.as_slice());
        // meta l4proto (key 16), cmp eq one byte 06
        assert!(got.windows(8).any(|w| w == [8, 0, 2, 0, 0, 0, 0, 16]));
        assert!(got.windows(8).any(|w| w == [5, 0, 1, 0, 6, 0, 0, 0]));
    }

    /// In an inet table an IPv4 field is read only after `meta nfproto ipv4` (key 15,
    /// one byte 02), as nft adds it; an explicit nfproto match is not doubled.
    #[test]
    fn inet_rules_guard_ipv4_payload_with_nfproto() {
        let mut b = Batch::new(NFPROTO_INET);
        b.add_rule(
            "t",
            "c",
            &Rule {
                matches: vec![Match::DAddr("192.0.2.1/32".parse().unwrap())],
                verdict: Verdict::Drop,
            },
        );
        let (msg, _) = b.finish();
        let nfproto = hex("08 00 02 00 00 00 00 0f");
        let at = msg
            .buf
            .windows(8)
            .position(|w| w == nfproto.as_slice())
            .unwrap();
        let payload = msg.buf.windows(7).position(|w| w == b"payload").unwrap();
        assert!(at < payload);
        assert!(msg.buf.windows(8).any(|w| w == [5, 0, 1, 0, 2, 0, 0, 0]));
        // nfgenmsg family inet (1) on the rule message
        assert_eq!(msg.buf[36], NFPROTO_INET);
        let mut b = Batch::new(NFPROTO_INET);
        b.add_rule(
            "t",
            "c",
            &Rule {
                matches: vec![Match::NfProto(NFPROTO_IPV6)],
                verdict: Verdict::Drop,
            },
        );
        let (msg, _) = b.finish();
        assert_eq!(
            msg.buf
                .windows(8)
                .filter(|w| *w == nfproto.as_slice())
                .count(),
            1
        );
    }

    /// DELRULE carries the handle (be64); DELTABLE the name; a regular chain has no hook.
    #[test]
    fn delete_messages_and_regular_chain_golden_bytes() {
        let mut b = Batch::new(NFPROTO_INET);
        b.del_rule("nsrun", "postrouting", 7);
        b.del_table("nsrun");
        b.add_regular_chain("nsrun", "host");
        let (msg, acked) = b.finish();
        assert_eq!(acked, [1, 2, 3]);
        let want = hex("
            14 00 00 00 10 00 01 00 01 00 00 00 00 00 00 00 00 00 00 0a
            3c 00 00 00 08 0a 05 00 02 00 00 00 00 00 00 00 01 00 00 00
              0a 00 01 00 6e 73 72 75 6e 00 00 00
              10 00 02 00 70 6f 73 74 72 6f 75 74 69 6e 67 00
              0c 00 03 00 00 00 00 00 00 00 00 07
            20 00 00 00 02 0a 05 00 03 00 00 00 00 00 00 00 01 00 00 00
              0a 00 01 00 6e 73 72 75 6e 00 00 00
            2c 00 00 00 03 0a 05 04 04 00 00 00 00 00 00 00 01 00 00 00
              0a 00 01 00 6e 73 72 75 6e 00 00 00
              09 00 03 00 68 6f 73 74 00 00 00 00
            14 00 00 00 11 00 01 00 05 00 00 00 00 00 00 00 00 00 00 0a");
        assert_eq!(with_seqs(msg, 1), want);
    }

    /// `fib daddr type local tcp dport 8080 dnat ip to 10.77.0.2:80`: fib (dreg 1, result
    /// addrtype 3, flags daddr 2) and cmp eq RTN_LOCAL (2, host-endian); two immediates
    /// (address into reg 1, port big-endian into reg 2); nat (type dnat 1, family ip 2,
    /// addr reg 1, proto reg 2, flags proto-specified 2). `nft list` shows exactly that.
    #[test]
    fn dnat_to_a_sandbox_golden_pieces() {
        let got = rule_bytes(Rule {
            matches: vec![Match::DAddrLocal],
            verdict: Verdict::Dnat(Ipv4Addr::new(10, 77, 0, 2), 80),
        });
        let fib = hex("
            28 00 01 80 08 00 01 00 66 69 62 00
              1c 00 02 80 08 00 01 00 00 00 00 01 08 00 02 00 00 00 00 03 08 00 03 00 00 00 00 02");
        assert_eq!(&got[4..4 + fib.len()], fib.as_slice());
        assert!(
            got.windows(12)
                .any(|w| w == hex("0c 00 03 80 08 00 01 00 02 00 00 00").as_slice())
        );
        let addr = hex("0c 00 02 80 08 00 01 00 0a 4d 00 02");
        let port = hex("0c 00 02 80 06 00 01 00 00 50 00 00");
        assert!(got.windows(12).any(|w| w == addr.as_slice()));
        assert!(got.windows(12).any(|w| w == port.as_slice()));
        let nat = hex("
            38 00 01 80 08 00 01 00 6e 61 74 00
              2c 00 02 80 08 00 01 00 00 00 00 01 08 00 02 00 00 00 00 02
              08 00 03 00 00 00 00 01 08 00 05 00 00 00 00 02 08 00 07 00 00 00 00 02");
        assert_eq!(&got[got.len() - nat.len()..], nat.as_slice());
    }

    /// The plain (unbatched) requests: GETTABLE of one table, the chain dump of every
    /// family (nfgenmsg family 0), the rule dump of one table.
    #[test]
    fn get_and_dump_requests_golden_bytes() {
        let want = hex("
            20 00 00 00 01 0a 05 00 00 00 00 00 00 00 00 00 01 00 00 00
            0a 00 01 00 6e 73 72 75 6e 00 00 00");
        assert_eq!(get_table(NFPROTO_INET, "nsrun").buf, want);
        let want = hex("14 00 00 00 04 0a 01 03 00 00 00 00 00 00 00 00 00 00 00 00");
        assert_eq!(dump_chains().buf, want);
        let want = hex("
            20 00 00 00 07 0a 01 03 00 00 00 00 00 00 00 00 02 00 00 00
            0b 00 01 00 66 69 6c 74 65 72 00 00");
        assert_eq!(dump_rules(NFPROTO_IPV4, "filter").buf, want);
    }

    #[test]
    fn echoed_rule_handle_and_table_flags_parse() {
        let mut m = Msg::new();
        m.bytes(&[1, 0, 0, 0]);
        m.attr_str(NFTA_RULE_TABLE, "nsrun");
        m.attr(NFTA_RULE_HANDLE, &42u64.to_be_bytes());
        assert_eq!(rule_handle(&m.buf), Some(42));
        assert_eq!(rule_handle(&m.buf[..4]), None);
        let mut t = Msg::new();
        t.bytes(&[1, 0, 0, 0]);
        t.attr(NFTA_TABLE_FLAGS, &be32(NFT_TABLE_F_OWNER));
        assert_eq!(table_flags(&t.buf), Some(NFT_TABLE_F_OWNER));
    }

    /// `oifname "vh0" ct state established,related accept`: the ct mask is host-endian.
    #[test]
    fn ct_state_mask_is_host_endian() {
        let got = rule_bytes(Rule {
            matches: vec![Match::CtState(CT_ESTABLISHED | CT_RELATED)],
            verdict: Verdict::Drop,
        });
        let want_ct = hex(
            "20 00 01 80 07 00 01 00 63 74 00 00 14 00 02 80 08 00 02 00 00 00 00 00 08 00 01 00 00 00 00 01",
        );
        assert_eq!(&got[4..4 + want_ct.len()], want_ct.as_slice());
        let mask = hex("0c 00 04 80 08 00 01 00 06 00 00 00");
        assert!(got.windows(mask.len()).any(|w| w == mask.as_slice()));
        // cmp neq 0, then the drop verdict code 0.
        let neq = hex("08 00 02 00 00 00 00 01 0c 00 03 80 08 00 01 00 00 00 00 00");
        assert!(got.windows(neq.len()).any(|w| w == neq.as_slice()));
        assert_eq!(&got[got.len() - 4..], &[0, 0, 0, 0]);
    }

    /// `ct direction original drop`: ct (key 1 = direction, dreg 1), then a cmp eq of one
    /// byte 0 (IP_CT_DIR_ORIGINAL).
    #[test]
    fn ct_direction_original_bytes() {
        let mut b = Batch::new(NFPROTO_INET);
        b.add_rule(
            "t",
            "c",
            &Rule {
                matches: vec![Match::CtOriginal],
                verdict: Verdict::Drop,
            },
        );
        let (msg, _) = b.finish();
        let got = msg.buf;
        // ct: name "ct", data { KEY = be32 1, DREG = be32 1 }
        let ct = hex(
            "07 00 01 00 63 74 00 00 14 00 02 80 08 00 02 00 00 00 00 01 08 00 01 00 00 00 00 01",
        );
        assert!(
            got.windows(ct.len()).any(|w| w == ct.as_slice()),
            "ct expression"
        );
        // cmp: sreg 1, op eq (0), data { value: 1 byte 0 } (attribute length 5)
        let eq = hex(
            "08 00 01 00 00 00 00 01 08 00 02 00 00 00 00 00 0c 00 03 80 05 00 01 00 00 00 00 00",
        );
        assert!(
            got.windows(eq.len()).any(|w| w == eq.as_slice()),
            "cmp eq 0"
        );
    }

    #[test]
    fn prefix_and_port_matches() {
        // /32 has no bitwise; daddr is at offset 16.
        let got = rule_bytes(Rule {
            matches: vec![Match::DAddr("169.254.169.254/32".parse().unwrap())],
            verdict: Verdict::Drop,
        });
        assert!(!got.windows(7).any(|w| w == b"bitwise"));
        assert!(got.windows(8).any(|w| w == [8, 0, 3, 0, 0, 0, 0, 16]));
        assert!(got.windows(4).any(|w| w == [169, 254, 169, 254]));
        // udp dport 53: l4proto is one byte; the port is two bytes at transport + 2.
        let got = rule_bytes(Rule {
            matches: vec![Match::L4Proto(IPPROTO_UDP), Match::DPort(53)],
            verdict: Verdict::Accept,
        });
        assert!(got.windows(8).any(|w| w == [5, 0, 1, 0, 17, 0, 0, 0]));
        assert!(got.windows(6).any(|w| w == [6, 0, 1, 0, 0, 53]));
        // th dport 8000-8080: cmp gte 8000, cmp lte 8080 (big-endian).
        let got = rule_bytes(Rule {
            matches: vec![Match::L4Proto(IPPROTO_TCP), Match::DPortRange(8000, 8080)],
            verdict: Verdict::Accept,
        });
        let op = |code: u8, port: u16| {
            let [hi, lo] = port.to_be_bytes();
            let at = got
                .windows(8)
                .position(|w| w == [8, 0, 2, 0, 0, 0, 0, code])
                .is_some();
            at && got.windows(6).any(|w| w == [6, 0, 1, 0, hi, lo])
        };
        assert!(op(5, 8000) && op(3, 8080));
        // oifname != "nsr*": prefix compare without NUL, op NEQ.
        let got = rule_bytes(Rule {
            matches: vec![Match::OifNamePrefixNot("nsr".into())],
            verdict: Verdict::Masquerade,
        });
        assert!(got.windows(7).any(|w| w == [7, 0, 1, 0, b'n', b's', b'r']));
        assert!(got.windows(8).any(|w| w == [8, 0, 2, 0, 0, 0, 0, 1]));
    }

    /// The message nsrun inserts into another firewall's chain, and what a dump of it
    /// reads back: the head insert (no NLM_F_APPEND), the echo, the comment as libnftnl
    /// writes it (type 0, length with NUL), and the fields the holder decides on.
    #[test]
    fn commented_insert_golden_bytes_and_read_back() {
        let mut b = Batch::new(NFPROTO_IPV4);
        let rule = Rule {
            matches: vec![
                Match::IifNamePrefix("nsr".into()),
                Match::OifName("eth0".into()),
            ],
            verdict: Verdict::Accept,
        };
        b.add_rule_commented("filter", "FORWARD", &rule, "nsrun: x", Some(7));
        let (msg, acked) = b.finish();
        assert_eq!(acked, vec![1]);
        let replies = crate::netlink::parse_messages(&msg.buf).unwrap();
        let newrule = &replies[1];
        assert_eq!(newrule.ty, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE);
        assert_eq!(
            newrule.flags,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_ECHO
        );
        // NFTA_RULE_POSITION: before the rule with handle 7.
        let position: &[u8] = &[12, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 7];
        assert!(newrule.payload.windows(12).any(|w| w == position));
        // NFTA_RULE_USERDATA: len 4 + 2 + 9 = 15, type 7, then TLV {0, 9, "nsrun: x\0"}.
        #[rustfmt::skip]
        let udata: &[u8] = &[15, 0, 7, 0, 0, 9, b'n', b's', b'r', b'u', b'n', b':', b' ', b'x', 0];
        assert!(newrule.payload.windows(udata.len()).any(|w| w == udata));
        // oifname "eth0": the 16-byte name, NUL-padded, as `nft` sends it.
        let mut eth0 = vec![20, 0, 1, 0];
        eth0.extend_from_slice(b"eth0");
        eth0.extend_from_slice(&[0; 12]);
        assert!(
            newrule
                .payload
                .windows(eth0.len())
                .any(|w| w == eth0.as_slice())
        );

        let info = parse_rule(newrule.payload).unwrap();
        assert_eq!(info.comment.as_deref(), Some("nsrun: x"));
        assert_eq!(info.chain, "FORWARD");
        assert_eq!(info.exprs, ["meta", "cmp", "meta", "cmp", "immediate"]);
        assert!(info.accepts() && info.names_sandboxes && !info.refuses_all());
    }

    /// `ct status & dnat == 0`: the ct expression's key STATUS (2) into register 1, the
    /// mask 0x20 (IPS_DST_NAT) in host order, compared EQ to zero.
    #[test]
    fn ct_status_lacks_dnat_bytes() {
        let got = rule_bytes(Rule {
            matches: vec![Match::CtStatusLacks(CT_STATUS_DNAT)],
            verdict: Verdict::Drop,
        });
        assert!(got.windows(8).any(|w| w == [8, 0, 2, 0, 0, 0, 0, 2]));
        // NFTA_BITWISE_MASK (4, nested) holding NFTA_DATA_VALUE 0x20.
        let mask = [12, 0, 4, 0x80, 8, 0, 1, 0, 0x20, 0, 0, 0];
        assert!(got.windows(12).any(|w| w == mask));
        // cmp: op EQ (0), data four zero bytes.
        assert!(got.windows(8).any(|w| w == [8, 0, 2, 0, 0, 0, 0, 0]));
    }

    /// What ends a chain by refusing everything, and what does not.
    #[test]
    fn a_rule_that_refuses_everything() {
        let read = |rule: Rule| {
            let mut b = Batch::new(NFPROTO_INET);
            b.add_rule("t", "c", &rule);
            let (msg, _) = b.finish();
            let replies = crate::netlink::parse_messages(&msg.buf).unwrap();
            parse_rule(replies[1].payload).unwrap()
        };
        let reject = read(Rule {
            matches: vec![],
            verdict: Verdict::Reject(Reject::AdminProhibited),
        });
        assert!(reject.refuses_all());
        let drop = read(Rule {
            matches: vec![],
            verdict: Verdict::Drop,
        });
        assert!(drop.refuses_all() && drop.verdict == Some(NF_DROP as i32));
        let conditional = read(Rule {
            matches: vec![Match::CtState(CT_ESTABLISHED)],
            verdict: Verdict::Drop,
        });
        assert!(!conditional.refuses_all());
        let accept = read(Rule {
            matches: vec![],
            verdict: Verdict::Accept,
        });
        assert!(!accept.refuses_all() && !accept.names_sandboxes);
        assert_eq!(parse_rule(&[]), None);
    }

    #[test]
    fn a_range_set_and_its_elements() {
        let mut b = Batch::new(NFPROTO_INET);
        b.add_range_set("nsrun", "addrs_0", 4);
        b.add_ranges(
            "nsrun",
            "addrs_0",
            &[(0x0a00_0000, 0x0a00_0100), (0xffff_ff00, 1 << 32)],
        );
        let (msg, _) = b.finish();
        let has = |needle: &[u8]| msg.buf.windows(needle.len()).any(|w| w == needle);
        // NFTA_SET_FLAGS: interval.
        assert!(has(&[8, 0, 3, 0, 0, 0, 0, 4]), "flags interval");
        // The first range: start 10.0.0.0, end 10.0.1.0 flagged interval end.
        assert!(has(&[10, 0, 0, 0]) && has(&[10, 0, 1, 0]));
        assert!(
            has(&[8, 0, NFTA_SET_ELEM_FLAGS as u8, 0, 0, 0, 0, 1]),
            "interval end"
        );
        // The second reaches the top: a start element only.
        let ends = msg
            .buf
            .windows(8)
            .filter(|w| *w == [8, 0, NFTA_SET_ELEM_FLAGS as u8, 0, 0, 0, 0, 1])
            .count();
        assert_eq!(ends, 1);
    }
}
