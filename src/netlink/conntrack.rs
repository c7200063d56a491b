//! ctnetlink: the host's connection-tracking entries, dumped and deleted (what
//! `conntrack -L` and `conntrack -D` do), for the repair of a sandbox's connections that
//! began while no holder had its NAT rule.

use std::net::Ipv4Addr;

use super::{Msg, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, attrs};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_TUPLE_IP: u16 = 1;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const AF_INET: u8 = 2;

fn header(m: &mut Msg) {
    m.bytes(&[AF_INET, 0, 0, 0]); // nfgenmsg: family, version, res_id
}

/// Every IPv4 entry: `conntrack -L -f ipv4`.
pub fn dump() -> Msg {
    let mut m = Msg::new();
    let at = m.begin(
        (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET,
        NLM_F_REQUEST | NLM_F_DUMP,
    );
    header(&mut m);
    m.end(at);
    m
}

/// One entry as a dump gives it: its original tuple (the attribute's bytes, to delete it
/// by), and the addresses that tell whether it was translated.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    pub orig: Vec<u8>,
    pub orig_src: Ipv4Addr,
    pub orig_dst: Ipv4Addr,
    pub reply_dst: Ipv4Addr,
}

fn addresses(tuple: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let (_, ip) = attrs(tuple).find(|(t, _)| *t == CTA_TUPLE_IP)?;
    let get = |want: u16| -> Option<Ipv4Addr> {
        let (_, v) = attrs(ip).find(|(t, _)| *t == want)?;
        let o: [u8; 4] = v.get(..4)?.try_into().ok()?;
        Some(Ipv4Addr::from(o))
    };
    Some((get(CTA_IP_V4_SRC)?, get(CTA_IP_V4_DST)?))
}

/// An entry of a dump (the payload after the netlink header).
pub fn parse(payload: &[u8]) -> Option<Entry> {
    let body = payload.get(4..)?;
    let (_, orig) = attrs(body).find(|(t, _)| *t == CTA_TUPLE_ORIG)?;
    let (_, reply) = attrs(body).find(|(t, _)| *t == CTA_TUPLE_REPLY)?;
    let (orig_src, orig_dst) = addresses(orig)?;
    let (_, reply_dst) = addresses(reply)?;
    Some(Entry {
        orig: orig.to_vec(),
        orig_src,
        orig_dst,
        reply_dst,
    })
}

/// Deletes the entry whose original tuple is `orig` (from [`Entry::orig`]).
pub fn delete(orig: &[u8]) -> Msg {
    let mut m = Msg::new();
    let at = m.begin(
        (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE,
        NLM_F_REQUEST | NLM_F_ACK,
    );
    header(&mut m);
    let n = m.nest(CTA_TUPLE_ORIG);
    m.bytes(orig);
    m.nest_end(n);
    m.end(at);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry as the kernel dumps it: orig 10.200.0.2 -> 198.51.100.1, reply
    /// 198.51.100.1 -> 10.200.0.2 (not translated), then a nested ports tuple.
    fn entry() -> Vec<u8> {
        let tuple = |src: [u8; 4], dst: [u8; 4]| {
            let mut ip = Msg::new();
            ip.attr(CTA_IP_V4_SRC, &src);
            ip.attr(CTA_IP_V4_DST, &dst);
            let mut t = Msg::new();
            let n = t.nest(CTA_TUPLE_IP);
            t.bytes(&ip.buf);
            t.nest_end(n);
            t.buf
        };
        let mut m = Msg::new();
        header(&mut m);
        let n = m.nest(CTA_TUPLE_ORIG);
        m.bytes(&tuple([10, 200, 0, 2], [198, 51, 100, 1]));
        m.nest_end(n);
        let n = m.nest(CTA_TUPLE_REPLY);
        m.bytes(&tuple([198, 51, 100, 1], [10, 200, 0, 2]));
        m.nest_end(n);
        m.buf
    }

    #[test]
    fn an_entry_is_read_and_deleted_by_its_original_tuple() {
        let e = parse(&entry()).unwrap();
        assert_eq!(e.orig_src, Ipv4Addr::new(10, 200, 0, 2));
        assert_eq!(e.orig_dst, Ipv4Addr::new(198, 51, 100, 1));
        assert_eq!(e.reply_dst, Ipv4Addr::new(10, 200, 0, 2));
        let del = delete(&e.orig).buf;
        // nlmsg type (1 << 8) | 2, flags REQUEST | ACK; nfgenmsg AF_INET; then the tuple,
        // nested (type 1 | NLA_F_NESTED = 0x8001), holding the bytes it was dumped with.
        assert_eq!(&del[4..6], &0x0102u16.to_ne_bytes());
        assert_eq!(&del[6..8], &(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        assert_eq!(&del[16..20], &[AF_INET, 0, 0, 0]);
        assert_eq!(&del[22..24], &0x8001u16.to_ne_bytes());
        assert_eq!(&del[24..], e.orig.as_slice());
        assert_eq!(parse(b"\x02\x00\x00\x00"), None);
    }
}
