//! The kernel's change notifications the holder follows: nf_tables changes (another
//! firewall reloading while sandboxes run) and IPv4 forwarding changes (netconf). Each
//! decoder returns None for a message that is not of its kind or is malformed.

use crate::netlink;

/// nfnetlink's subsystem of nf_tables (the high byte of the message type).
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// `struct nfgenmsg`: family, version, resource id.
const NFGENMSG_LEN: usize = 4;
/// The table's name is attribute 1 of tables, chains, rules and sets alike
/// (NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, NFTA_SET_TABLE).
const NFTA_TABLE: u16 = 1;

/// What changed in nf_tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NftObject {
    Table,
    Chain,
    Rule,
    Set,
}

/// One nf_tables change notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftChange {
    pub object: NftObject,
    /// Added (true) or deleted.
    pub added: bool,
    pub family: u8,
    pub table: String,
}

/// NFT_MSG_* of the objects above: (NEW, DEL).
const NFT_MESSAGES: [(NftObject, u16, u16); 4] = [
    (NftObject::Table, 0, 2),
    (NftObject::Chain, 3, 5),
    (NftObject::Rule, 6, 8),
    (NftObject::Set, 9, 11),
];

pub fn decode_nft(ty: u16, payload: &[u8]) -> Option<NftChange> {
    if ty >> 8 != NFNL_SUBSYS_NFTABLES {
        return None;
    }
    let kind = ty & 0xff;
    let (object, added) = NFT_MESSAGES.iter().find_map(|(o, new, del)| {
        (kind == *new)
            .then_some((*o, true))
            .or((kind == *del).then_some((*o, false)))
    })?;
    let family = *payload.first()?;
    let (_, name) = netlink::attrs(payload.get(NFGENMSG_LEN..)?).find(|(t, _)| *t == NFTA_TABLE)?;
    let name = name.split(|b| *b == 0).next()?;
    Some(NftChange {
        object,
        added,
        family,
        table: String::from_utf8(name.to_vec()).ok()?,
    })
}

/// RTM_NEWNETCONF.
pub const RTM_NEWNETCONF: u16 = 80;
/// `struct netconfmsg` (one byte, the family), aligned to 4.
const NETCONFMSG_LEN: usize = 4;
const NETCONFA_IFINDEX: u16 = 1;
const NETCONFA_FORWARDING: u16 = 2;
/// NETCONFA_IFINDEX of `net.ipv4.conf.all`.
pub const NETCONF_ALL: i32 = -1;

/// A forwarding setting that changed: the link's index (or [`NETCONF_ALL`]) and the
/// new value, when the notification carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetconfChange {
    pub ifindex: i32,
    pub forwarding: Option<i32>,
}

pub fn decode_netconf(ty: u16, payload: &[u8]) -> Option<NetconfChange> {
    if ty != RTM_NEWNETCONF {
        return None;
    }
    let attrs: Vec<(u16, &[u8])> = netlink::attrs(payload.get(NETCONFMSG_LEN..)?).collect();
    let int = |want: u16| {
        attrs
            .iter()
            .find(|(t, _)| *t == want)
            .and_then(|(_, v)| Some(i32::from_ne_bytes(v.get(..4)?.try_into().ok()?)))
    };
    Some(NetconfChange {
        ifindex: int(NETCONFA_IFINDEX)?,
        forwarding: int(NETCONFA_FORWARDING),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nft_change_golden_bytes() {
        #[rustfmt::skip]
        let new_rule = [
            1, 0, 0, 0,                       // nfgenmsg: NFPROTO_INET
            7, 0, 1, 0, b'u', b'f', b'w', 0,  // NFTA_RULE_TABLE "ufw"
            10, 0, 2, 0, b'f', b'o', b'r', b'w', b'a', b'r', 0, 0, // NFTA_RULE_CHAIN
        ];
        assert_eq!(
            decode_nft(10 << 8 | 6, &new_rule),
            Some(NftChange {
                object: NftObject::Rule,
                added: true,
                family: 1,
                table: "ufw".into()
            })
        );
        let del_table = [
            2, 0, 0, 0, 10, 0, 1, 0, b'n', b's', b'r', b'u', b'n', 0, 0, 0,
        ];
        assert_eq!(
            decode_nft(10 << 8 | 2, &del_table),
            Some(NftChange {
                object: NftObject::Table,
                added: false,
                family: 2,
                table: "nsrun".into()
            })
        );
        // GETGEN (16), another subsystem, no table name, a cut payload: nothing.
        assert_eq!(decode_nft(10 << 8 | 16, &new_rule), None);
        assert_eq!(decode_nft(11 << 8 | 6, &new_rule), None);
        assert_eq!(decode_nft(10 << 8 | 6, &new_rule[..4]), None);
        assert_eq!(decode_nft(10 << 8 | 6, &[]), None);
    }

    #[test]
    fn netconf_change_golden_bytes() {
        #[rustfmt::skip]
        let all_on = [
            2, 0, 0, 0,                        // netconfmsg: AF_INET
            8, 0, 1, 0, 0xff, 0xff, 0xff, 0xff, // NETCONFA_IFINDEX -1 (all)
            8, 0, 2, 0, 1, 0, 0, 0,            // NETCONFA_FORWARDING 1
        ];
        assert_eq!(
            decode_netconf(RTM_NEWNETCONF, &all_on),
            Some(NetconfChange {
                ifindex: NETCONF_ALL,
                forwarding: Some(1)
            })
        );
        assert_eq!(
            decode_netconf(RTM_NEWNETCONF, &all_on[..12])
                .unwrap()
                .forwarding,
            None
        );
        assert_eq!(decode_netconf(RTM_NEWNETCONF, &all_on[..4]), None);
        assert_eq!(decode_netconf(81, &all_on), None);
    }
}
