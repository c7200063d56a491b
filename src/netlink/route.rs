//! rtnetlink builders and parsers: veth pairs, link state, addresses, routes, dumps.
//!
//! Layouts: include/uapi/linux/rtnetlink.h, if_link.h, if_addr.h, veth.h.

use std::net::Ipv4Addr;

use super::{Msg, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, attrs};
use crate::addr::Ipv4Net;

pub const RTM_NEWLINK: u16 = 16;
pub const RTM_DELLINK: u16 = 17;
pub const RTM_GETLINK: u16 = 18;
pub const RTM_NEWADDR: u16 = 20;
pub const RTM_DELADDR: u16 = 21;
/// The multicast group of IPv4 address changes, as a bind mask.
pub const RTMGRP_IPV4_IFADDR: u32 = 0x10;
/// The multicast group of link changes, as a bind mask.
pub const RTMGRP_LINK: u32 = 0x1;
pub const RTM_GETADDR: u16 = 22;
pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_GETROUTE: u16 = 26;

const AF_INET: u8 = 2;
const IFF_UP: u32 = 0x1;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_PID: u16 = 19;
const IFLA_IFALIAS: u16 = 20;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_NUM_TX_QUEUES: u16 = 31;
const IFLA_NUM_RX_QUEUES: u16 = 32;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_LABEL: u16 = 3;

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_MULTIPATH: u16 = 9;
const RTA_TABLE: u16 = 15;

pub const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
pub const RTN_UNICAST: u8 = 1;

const CREATE: u16 = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;

fn ifinfomsg(m: &mut Msg, index: i32, flags: u32, change: u32) {
    m.bytes(&[0, 0]); // ifi_family AF_UNSPEC, pad
    m.bytes(&0u16.to_ne_bytes()); // ifi_type
    m.bytes(&index.to_ne_bytes());
    m.bytes(&flags.to_ne_bytes());
    m.bytes(&change.to_ne_bytes());
}

/// A veth pair: `host` here, `peer` created directly in the network namespace of process
/// `peer_pid`, so the pair dies with that namespace. Both ends get `mtu` and one queue each.
pub fn new_veth(host: &str, peer: &str, peer_pid: u32, mtu: u32) -> Msg {
    veth(host, None, peer, Netns::Pid(peer_pid), None, mtu)
}

/// Where a new link goes: the network namespace of a process, or of a namespace fd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Netns {
    Pid(u32),
    Fd(i32),
}

impl Netns {
    fn attr(self, m: &mut Msg) {
        match self {
            Netns::Pid(pid) => m.attr(IFLA_NET_NS_PID, &pid.to_ne_bytes()),
            Netns::Fd(fd) => m.attr(IFLA_NET_NS_FD, &(fd as u32).to_ne_bytes()),
        }
    }
}

/// A bridge, up (`ip link add NAME mtu MTU up type bridge`): STP off, so a port
/// forwards from the moment it is up.
pub fn new_bridge(name: &str, mtu: u32) -> Msg {
    let mut m = Msg::new();
    let at = m.begin(RTM_NEWLINK, CREATE);
    ifinfomsg(&mut m, 0, IFF_UP, IFF_UP);
    m.attr_str(IFLA_IFNAME, name);
    m.attr(IFLA_MTU, &mtu.to_ne_bytes());
    let info = m.nest(IFLA_LINKINFO);
    m.attr_str(IFLA_INFO_KIND, "bridge");
    m.nest_end(info);
    m.end(at);
    m
}

/// A veth pair whose end `port` is made here, a port of bridge `master`, and up; its
/// `peer` is made directly in `peer_ns` (with `peer_mac` when given), so the pair dies
/// with either namespace.
pub fn new_port(
    port: &str,
    master: i32,
    peer: &str,
    peer_ns: Netns,
    peer_mac: Option<[u8; 6]>,
    mtu: u32,
) -> Msg {
    veth(port, Some(master), peer, peer_ns, peer_mac, mtu)
}

/// A veth pair, `name` here (up, as a port of `master`, when given), `peer` in
/// `peer_ns`; both with `mtu` and one queue each.
fn veth(
    name: &str,
    master: Option<i32>,
    peer: &str,
    peer_ns: Netns,
    peer_mac: Option<[u8; 6]>,
    mtu: u32,
) -> Msg {
    let mut m = Msg::new();
    let at = m.begin(RTM_NEWLINK, CREATE);
    let up = if master.is_some() { IFF_UP } else { 0 };
    ifinfomsg(&mut m, 0, up, up);
    m.attr_str(IFLA_IFNAME, name);
    m.attr(IFLA_MTU, &mtu.to_ne_bytes());
    if let Some(master) = master {
        m.attr(IFLA_MASTER, &(master as u32).to_ne_bytes());
    }
    m.attr(IFLA_NUM_TX_QUEUES, &1u32.to_ne_bytes());
    m.attr(IFLA_NUM_RX_QUEUES, &1u32.to_ne_bytes());
    let info = m.nest(IFLA_LINKINFO);
    m.attr_str(IFLA_INFO_KIND, "veth");
    let data = m.nest(IFLA_INFO_DATA);
    let peer_at = m.nest(VETH_INFO_PEER);
    ifinfomsg(&mut m, 0, 0, 0); // the peer's own header; IFF_UP here would be -ENOTCONN
    m.attr_str(IFLA_IFNAME, peer);
    peer_ns.attr(&mut m);
    if let Some(mac) = peer_mac {
        m.attr(IFLA_ADDRESS, &mac);
    }
    m.attr(IFLA_MTU, &mtu.to_ne_bytes());
    m.attr(IFLA_NUM_TX_QUEUES, &1u32.to_ne_bytes());
    m.attr(IFLA_NUM_RX_QUEUES, &1u32.to_ne_bytes());
    m.nest_end(peer_at);
    m.nest_end(data);
    m.nest_end(info);
    m.end(at);
    m
}

/// Sets link `index`'s alias (`ip link set ... alias TEXT`).
pub fn set_alias(index: i32, alias: &str) -> Msg {
    let mut m = Msg::new();
    let at = m.begin(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK);
    ifinfomsg(&mut m, index, 0, 0);
    m.attr_str(IFLA_IFALIAS, alias);
    m.end(at);
    m
}

/// Every link of the namespace.
pub fn dump_links() -> Msg {
    let mut m = Msg::new();
    let at = m.begin(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP);
    ifinfomsg(&mut m, 0, 0, 0);
    m.end(at);
    m
}

/// A link's alias (IFLA_IFALIAS), if it has one.
pub fn parse_link_alias(payload: &[u8]) -> Option<String> {
    attrs(payload.get(16..)?)
        .find(|(ty, _)| *ty == IFLA_IFALIAS)
        .map(|(_, v)| {
            String::from_utf8_lossy(v.split(|b| *b == 0).next().unwrap_or(v)).into_owned()
        })
        .filter(|a| !a.is_empty())
}

/// Brings link `index` up.
pub fn set_up(index: i32) -> Msg {
    let mut m = Msg::new();
    let at = m.begin(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK);
    ifinfomsg(&mut m, index, IFF_UP, IFF_UP);
    m.end(at);
    m
}

/// Takes link `index` down: it carries nothing, and the kernel drops its routes.
pub fn set_down(index: i32) -> Msg {
    let mut m = Msg::new();
    let at = m.begin(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK);
    ifinfomsg(&mut m, index, 0, IFF_UP);
    m.end(at);
    m
}

/// Deletes link `index` (a veth: both ends).
pub fn del_link(index: i32) -> Msg {
    let mut m = Msg::new();
    let at = m.begin(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK);
    ifinfomsg(&mut m, index, 0, 0);
    m.end(at);
    m
}

/// Asks for one link by index; the reply is an RTM_NEWLINK.
pub fn get_link_by_index(index: i32) -> Msg {
    getlink(index, None)
}

/// Asks for one link by name; the reply is an RTM_NEWLINK.
pub fn get_link(name: &str) -> Msg {
    getlink(0, Some(name))
}

fn getlink(index: i32, name: Option<&str>) -> Msg {
    let mut m = Msg::new();
    let at = m.begin(RTM_GETLINK, NLM_F_REQUEST);
    ifinfomsg(&mut m, index, 0, 0);
    if let Some(name) = name {
        m.attr_str(IFLA_IFNAME, name);
    }
    m.end(at);
    m
}

pub fn add_addr(index: i32, addr: Ipv4Addr, prefix: u8) -> Msg {
    addr_msg(RTM_NEWADDR, CREATE, index, addr, prefix)
}

/// Removes an address, and with it the host's local and connected routes for it.
pub fn del_addr(index: i32, addr: Ipv4Addr, prefix: u8) -> Msg {
    addr_msg(RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, index, addr, prefix)
}

fn addr_msg(ty: u16, flags: u16, index: i32, addr: Ipv4Addr, prefix: u8) -> Msg {
    let mut m = Msg::new();
    let at = m.begin(ty, flags);
    m.bytes(&[AF_INET, prefix, 0, 0]); // family, prefixlen, flags, scope universe
    m.bytes(&(index as u32).to_ne_bytes());
    m.attr(IFA_LOCAL, &addr.octets());
    m.attr(IFA_ADDRESS, &addr.octets());
    m.end(at);
    m
}

fn rtmsg(m: &mut Msg, dst_len: u8, table: u8, protocol: u8, rtype: u8) {
    m.bytes(&[
        AF_INET,
        dst_len,
        0,
        0,
        table,
        protocol,
        RT_SCOPE_UNIVERSE,
        rtype,
    ]);
    m.bytes(&0u32.to_ne_bytes()); // rtm_flags
}

pub fn add_default_route(gateway: Ipv4Addr, oif: i32) -> Msg {
    let mut m = Msg::new();
    let at = m.begin(RTM_NEWROUTE, CREATE);
    rtmsg(&mut m, 0, RT_TABLE_MAIN, RTPROT_BOOT, RTN_UNICAST);
    m.attr(RTA_GATEWAY, &gateway.octets());
    m.attr(RTA_OIF, &(oif as u32).to_ne_bytes());
    m.end(at);
    m
}

pub fn dump_addrs() -> Msg {
    let mut m = Msg::new();
    let at = m.begin(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP);
    m.bytes(&[AF_INET, 0, 0, 0]);
    m.bytes(&0u32.to_ne_bytes());
    m.end(at);
    m
}

/// `ip route get DST`: the kernel's own choice (policy rules, every table, multipath),
/// answered by one RTM_NEWROUTE.
pub fn get_route(dst: Ipv4Addr) -> Msg {
    let mut m = Msg::new();
    let at = m.begin(RTM_GETROUTE, NLM_F_REQUEST);
    rtmsg(&mut m, 32, 0, 0, 0);
    m.attr(RTA_DST, &dst.octets());
    m.end(at);
    m
}

pub fn dump_routes() -> Msg {
    let mut m = Msg::new();
    let at = m.begin(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP);
    rtmsg(&mut m, 0, 0, 0, 0);
    m.end(at);
    m
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: i32,
    pub flags: u32,
    pub name: String,
    pub mtu: u32,
}

pub fn parse_link(payload: &[u8]) -> Option<Link> {
    let header = payload.get(..16)?;
    let mut link = Link {
        index: i32::from_ne_bytes(header[4..8].try_into().ok()?),
        flags: u32::from_ne_bytes(header[8..12].try_into().ok()?),
        name: String::new(),
        mtu: 0,
    };
    for (ty, value) in attrs(&payload[16..]) {
        match ty {
            IFLA_IFNAME => {
                link.name =
                    String::from_utf8_lossy(value.split(|b| *b == 0).next().unwrap_or(value))
                        .into_owned()
            }
            IFLA_MTU if value.len() == 4 => link.mtu = u32::from_ne_bytes(value.try_into().ok()?),
            _ => {}
        }
    }
    Some(link)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    pub index: u32,
    pub net: Ipv4Net,
    /// The link's name (IFA_LABEL).
    pub label: String,
}

pub fn parse_addr(payload: &[u8]) -> Option<Addr> {
    let header = payload.get(..8)?;
    if header[0] != AF_INET {
        return None;
    }
    let index = u32::from_ne_bytes(header[4..8].try_into().ok()?);
    let mut local = None;
    let mut address = None;
    let mut label = String::new();
    for (ty, value) in attrs(&payload[8..]) {
        let ip = <[u8; 4]>::try_from(value).ok().map(Ipv4Addr::from);
        match ty {
            IFA_LOCAL => local = ip,
            IFA_ADDRESS => address = ip,
            IFA_LABEL => {
                label = String::from_utf8_lossy(value.split(|b| *b == 0).next().unwrap_or(value))
                    .into_owned()
            }
            _ => {}
        }
    }
    Some(Addr {
        index,
        net: Ipv4Net::new(local.or(address)?, header[1]),
        label,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: Ipv4Net,
    pub table: u32,
    pub rtype: u8,
    pub oif: Option<u32>,
    /// The links of a multipath route's next hops (RTA_MULTIPATH; no RTA_OIF then).
    pub nexthops: Vec<u32>,
    pub gateway: Option<Ipv4Addr>,
    pub priority: u32,
}

impl Route {
    /// Every link the route leads through.
    pub fn links(&self) -> impl Iterator<Item = u32> + '_ {
        self.oif
            .iter()
            .copied()
            .chain(self.nexthops.iter().copied())
    }
}

pub fn parse_route(payload: &[u8]) -> Option<Route> {
    let header = payload.get(..12)?;
    if header[0] != AF_INET {
        return None;
    }
    let mut route = Route {
        dst: Ipv4Net::new(Ipv4Addr::UNSPECIFIED, header[1]),
        table: u32::from(header[4]),
        rtype: header[7],
        oif: None,
        nexthops: Vec::new(),
        gateway: None,
        priority: 0,
    };
    for (ty, value) in attrs(&payload[12..]) {
        let ip = <[u8; 4]>::try_from(value).ok().map(Ipv4Addr::from);
        let int = <[u8; 4]>::try_from(value).ok().map(u32::from_ne_bytes);
        match ty {
            RTA_DST => route.dst.addr = ip?,
            RTA_OIF => route.oif = int,
            RTA_GATEWAY => route.gateway = ip,
            RTA_PRIORITY => route.priority = int.unwrap_or(0),
            RTA_TABLE => route.table = int.unwrap_or(route.table),
            RTA_MULTIPATH => {
                // struct rtnexthop { u16 len; u8 flags; u8 hops; i32 ifindex; } + attrs.
                let mut at = 0;
                while let Some(nh) = value.get(at..at + 8) {
                    let len = usize::from(u16::from_ne_bytes([nh[0], nh[1]]));
                    route
                        .nexthops
                        .push(u32::from_ne_bytes([nh[4], nh[5], nh[6], nh[7]]));
                    if len < 8 {
                        break;
                    }
                    at += (len + 3) & !3;
                }
            }
            _ => {}
        }
    }
    Some(route)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ip link add nsr1 mtu 1400 numtxqueues 1 numrxqueues 1 type veth peer name eth0
    /// netns <pid 4242> mtu 1400 numtxqueues 1 numrxqueues 1`, laid out as in
    /// reference/netlink.md §3.3 and §5(a), with seq 0.
    #[test]
    fn veth_with_peer_in_netns_golden_bytes() {
        #[rustfmt::skip]
        let want: &[u8] = &[
            0x98, 0, 0, 0,  16, 0,  0x05, 0x06,  0, 0, 0, 0,  0, 0, 0, 0, // hdr(152, RTM_NEWLINK, REQUEST|ACK|EXCL|CREATE)
            0, 0, 0, 0,  0, 0, 0, 0,  0, 0, 0, 0,  0, 0, 0, 0,           // ifinfomsg{0}
            9, 0, 3, 0,  b'n', b's', b'r', b'1', 0, 0, 0, 0,             // IFLA_IFNAME "nsr1\0" + pad
            8, 0, 4, 0,  0x78, 0x05, 0, 0,                               // IFLA_MTU 1400
            8, 0, 31, 0,  1, 0, 0, 0,                                    // IFLA_NUM_TX_QUEUES 1
            8, 0, 32, 0,  1, 0, 0, 0,                                    // IFLA_NUM_RX_QUEUES 1
            0x54, 0, 18, 0x80,                                           // IFLA_LINKINFO nest, 84
            9, 0, 1, 0,  b'v', b'e', b't', b'h', 0, 0, 0, 0,             //   IFLA_INFO_KIND "veth\0" + pad
            0x44, 0, 2, 0x80,                                            //   IFLA_INFO_DATA nest, 68
            0x40, 0, 1, 0x80,                                            //     VETH_INFO_PEER nest, 64
            0, 0, 0, 0,  0, 0, 0, 0,  0, 0, 0, 0,  0, 0, 0, 0,           //     peer ifinfomsg{0}
            9, 0, 3, 0,  b'e', b't', b'h', b'0', 0, 0, 0, 0,             //     IFLA_IFNAME "eth0\0" + pad
            8, 0, 19, 0,  0x92, 0x10, 0, 0,                              //     IFLA_NET_NS_PID 4242
            8, 0, 4, 0,  0x78, 0x05, 0, 0,                               //     IFLA_MTU 1400
            8, 0, 31, 0,  1, 0, 0, 0,                                    //     IFLA_NUM_TX_QUEUES 1
            8, 0, 32, 0,  1, 0, 0, 0,                                    //     IFLA_NUM_RX_QUEUES 1
        ];
        assert_eq!(new_veth("nsr1", "eth0", 4242, 1400).buf, want);
    }

    /// `ip link set dev <index 2> up`
    #[test]
    fn link_up_golden_bytes() {
        #[rustfmt::skip]
        let want: &[u8] = &[
            0x20, 0, 0, 0,  16, 0,  0x05, 0,  0, 0, 0, 0,  0, 0, 0, 0, // hdr(32, RTM_NEWLINK, REQUEST|ACK)
            0, 0, 0, 0,  2, 0, 0, 0,  1, 0, 0, 0,  1, 0, 0, 0,         // ifinfomsg{index 2, IFF_UP, change IFF_UP}
        ];
        assert_eq!(set_up(2).buf, want);
    }

    /// `ip addr add 10.201.0.1/30 dev <index 2>`: reference/netlink.md §5(b).
    #[test]
    fn address_golden_bytes() {
        #[rustfmt::skip]
        let want: &[u8] = &[
            0x28, 0, 0, 0,  0x14, 0,  0x05, 0x06,  0, 0, 0, 0,  0, 0, 0, 0, // hdr(40, RTM_NEWADDR, 0x605)
            0x02, 0x1e, 0, 0,  2, 0, 0, 0,                                  // ifaddrmsg{AF_INET, 30, 0, 0, index 2}
            8, 0, 2, 0,  0x0a, 0xc9, 0, 1,                                  // IFA_LOCAL 10.201.0.1
            8, 0, 1, 0,  0x0a, 0xc9, 0, 1,                                  // IFA_ADDRESS 10.201.0.1
        ];
        assert_eq!(add_addr(2, Ipv4Addr::new(10, 201, 0, 1), 30).buf, want);
    }

    /// `ip route add default via 10.201.0.1 dev <index 2>`: reference/netlink.md §5(b).
    #[test]
    fn default_route_golden_bytes() {
        #[rustfmt::skip]
        let want: &[u8] = &[
            0x2c, 0, 0, 0,  0x18, 0,  0x05, 0x06,  0, 0, 0, 0,  0, 0, 0, 0, // hdr(44, RTM_NEWROUTE, 0x605)
            2, 0, 0, 0,  254, 3, 0, 1,  0, 0, 0, 0,                         // rtmsg{AF_INET, main, boot, universe, unicast}
            8, 0, 5, 0,  0x0a, 0xc9, 0, 1,                                  // RTA_GATEWAY 10.201.0.1
            8, 0, 4, 0,  2, 0, 0, 0,                                        // RTA_OIF 2
        ];
        assert_eq!(add_default_route(Ipv4Addr::new(10, 201, 0, 1), 2).buf, want);
    }

    /// `ip link set dev <index 2> down`: flags 0 under the IFF_UP change mask;
    /// `ip link del dev <index 2>`: RTM_DELLINK by index.
    #[test]
    fn link_down_and_delete_golden_bytes() {
        #[rustfmt::skip]
        let down: &[u8] = &[
            0x20, 0, 0, 0,  16, 0,  0x05, 0,  0, 0, 0, 0,  0, 0, 0, 0, // hdr(32, RTM_NEWLINK, REQUEST|ACK)
            0, 0, 0, 0,  2, 0, 0, 0,  0, 0, 0, 0,  1, 0, 0, 0,         // ifinfomsg{index 2, flags 0, change IFF_UP}
        ];
        assert_eq!(set_down(2).buf, down);
        #[rustfmt::skip]
        let del: &[u8] = &[
            0x20, 0, 0, 0,  17, 0,  0x05, 0,  0, 0, 0, 0,  0, 0, 0, 0, // hdr(32, RTM_DELLINK, REQUEST|ACK)
            0, 0, 0, 0,  2, 0, 0, 0,  0, 0, 0, 0,  0, 0, 0, 0,         // ifinfomsg{index 2}
        ];
        assert_eq!(del_link(2).buf, del);
    }

    /// `ip addr del 10.201.0.1/30 dev <index 2>`: as the add, type RTM_DELADDR (21)
    /// without CREATE|EXCL.
    #[test]
    fn address_delete_golden_bytes() {
        #[rustfmt::skip]
        let want: &[u8] = &[
            0x28, 0, 0, 0,  0x15, 0,  0x05, 0,  0, 0, 0, 0,  0, 0, 0, 0, // hdr(40, RTM_DELADDR, REQUEST|ACK)
            0x02, 0x1e, 0, 0,  2, 0, 0, 0,                             // ifaddrmsg{AF_INET, 30, index 2}
            8, 0, 2, 0,  0x0a, 0xc9, 0, 1,                             // IFA_LOCAL 10.201.0.1
            8, 0, 1, 0,  0x0a, 0xc9, 0, 1,                             // IFA_ADDRESS 10.201.0.1
        ];
        assert_eq!(del_addr(2, Ipv4Addr::new(10, 201, 0, 1), 30).buf, want);
    }

    /// `ip route get 192.0.2.1`: RTM_GETROUTE, REQUEST only, dst_len 32, RTA_DST.
    #[test]
    fn route_get_golden_bytes() {
        #[rustfmt::skip]
        let want: &[u8] = &[
            0x24, 0, 0, 0,  26, 0,  0x01, 0,  0, 0, 0, 0,  0, 0, 0, 0, // hdr(36, RTM_GETROUTE, REQUEST)
            2, 32, 0, 0,  0, 0, 0, 0,  0, 0, 0, 0,                     // rtmsg{AF_INET, dst_len 32}
            8, 0, 1, 0,  192, 0, 2, 1,                                 // RTA_DST 192.0.2.1
        ];
        assert_eq!(get_route(Ipv4Addr::new(192, 0, 2, 1)).buf, want);
    }

    #[test]
    fn dump_and_get_requests() {
        #[rustfmt::skip]
        let want: &[u8] = &[
            0x18, 0, 0, 0,  22, 0,  0x01, 0x03,  0, 0, 0, 0,  0, 0, 0, 0, // hdr(24, RTM_GETADDR, REQUEST|DUMP)
            2, 0, 0, 0,  0, 0, 0, 0,                                      // ifaddrmsg{AF_INET}
        ];
        assert_eq!(dump_addrs().buf, want);
        let get = get_link("eth0").buf;
        assert_eq!(&get[4..8], &[18, 0, 1, 0]); // RTM_GETLINK, REQUEST only
        assert_eq!(&get[32..41], &[9, 0, 3, 0, b'e', b't', b'h', b'0', 0]);
        assert_eq!(dump_routes().buf.len(), 28);
        assert_eq!(&get_link_by_index(4).buf[20..24], &4i32.to_ne_bytes());
    }

    #[test]
    fn parses_link_addr_route_replies() {
        // An RTM_NEWLINK payload: ifinfomsg{index 4, flags UP} + IFNAME "eth0" + MTU 1400.
        let mut m = Msg::new();
        m.bytes(&[0, 0, 1, 0]);
        m.bytes(&4i32.to_ne_bytes());
        m.bytes(&1u32.to_ne_bytes());
        m.bytes(&0u32.to_ne_bytes());
        m.attr_str(IFLA_IFNAME, "eth0");
        m.attr(IFLA_MTU, &1400u32.to_ne_bytes());
        let link = parse_link(&m.buf).unwrap();
        assert_eq!(
            link,
            Link {
                index: 4,
                flags: 1,
                name: "eth0".into(),
                mtu: 1400
            }
        );

        let mut a = Msg::new();
        a.bytes(&[2, 24, 0, 0]);
        a.bytes(&4u32.to_ne_bytes());
        a.attr(IFA_ADDRESS, &[198, 51, 100, 2]);
        a.attr(IFA_LOCAL, &[198, 51, 100, 2]);
        assert_eq!(
            parse_addr(&a.buf).unwrap().net.to_string(),
            "198.51.100.2/24"
        );

        let mut r = Msg::new();
        r.bytes(&[2, 0, 0, 0, 254, 3, 0, 1]);
        r.bytes(&0u32.to_ne_bytes());
        r.attr(RTA_GATEWAY, &[198, 51, 100, 1]);
        r.attr(RTA_OIF, &4u32.to_ne_bytes());
        r.attr(RTA_TABLE, &254u32.to_ne_bytes());
        let route = parse_route(&r.buf).unwrap();
        assert_eq!(route.dst.prefix, 0);
        assert_eq!(route.oif, Some(4));
        assert_eq!(route.gateway, Some(Ipv4Addr::new(198, 51, 100, 1)));
        assert_eq!(route.table, 254);
        assert!(parse_route(&[10u8; 12]).is_none()); // AF_INET6 is not ours
    }

    /// `ip route add default nexthop via 198.51.100.1 dev eth0 nexthop via 203.0.113.1
    /// dev eth1`: no RTA_OIF, the links are in RTA_MULTIPATH's rtnexthop entries.
    #[test]
    fn multipath_routes_name_every_next_hop() {
        #[rustfmt::skip]
        let payload: &[u8] = &[
            2, 0, 0, 0,  254, 3, 0, 1,  0, 0, 0, 0,           // rtmsg: AF_INET, /0, main, unicast
            8, 0, 15, 0,  254, 0, 0, 0,                        // RTA_TABLE 254
            36, 0, 9, 0,                                       // RTA_MULTIPATH, 2 next hops
            16, 0, 0, 0,  2, 0, 0, 0,  8, 0, 5, 0,  198, 51, 100, 1, // len 16, ifindex 2, gateway
            16, 0, 0, 0,  3, 0, 0, 0,  8, 0, 5, 0,  203, 0, 113, 1,  // len 16, ifindex 3, gateway
        ];
        let route = parse_route(payload).unwrap();
        assert_eq!(route.oif, None);
        assert_eq!(route.nexthops, [2, 3]);
        assert_eq!(route.links().collect::<Vec<_>>(), [2, 3]);
        assert_eq!(route.dst.prefix, 0);
    }

    #[test]
    fn alias_and_port_bytes() {
        let m = set_alias(7, "nsrun 42 db");
        #[rustfmt::skip]
        let golden: Vec<u8> = [
            &[48u8, 0, 0, 0][..],             // length 48: header, ifinfomsg, alias
            &RTM_NEWLINK.to_ne_bytes(), &5u16.to_ne_bytes(), // REQUEST|ACK
            &[0; 8],                          // seq, pid (set on send)
            &[0, 0, 0, 0], &7i32.to_ne_bytes(), &[0; 8], // ifinfomsg: index 7
            &16u16.to_ne_bytes(), &IFLA_IFALIAS.to_ne_bytes(), b"nsrun 42 db\0",
        ]
        .concat();
        assert_eq!(m.buf, golden);
        // A member's port: up, a port of its bridge, its peer in the sandbox with its MAC.
        let p = new_port(
            "nsrp0ac90005",
            3,
            "eth0",
            Netns::Pid(99),
            Some([2, 1, 10, 201, 0, 5]),
            1500,
        );
        let b = &p.buf;
        assert_eq!(
            &b[16 + 8..16 + 16],
            &[1, 0, 0, 0, 1, 0, 0, 0],
            "IFF_UP, change IFF_UP"
        );
        let has = |needle: &[u8]| b.windows(needle.len()).any(|w| w == needle);
        assert!(
            has(&[8, 0, IFLA_MASTER as u8, 0, 3, 0, 0, 0]),
            "IFLA_MASTER 3"
        );
        assert!(
            has(&[10, 0, IFLA_ADDRESS as u8, 0, 2, 1, 10, 201, 0, 5]),
            "IFLA_ADDRESS"
        );
        assert!(
            has(&[8, 0, IFLA_NET_NS_PID as u8, 0, 99, 0, 0, 0]),
            "peer in pid 99's netns"
        );
        let up = new_port("uplink", 3, "nsr0", Netns::Fd(5), None, 1500);
        assert!(
            up.buf
                .windows(8)
                .any(|w| w == [8, 0, IFLA_NET_NS_FD as u8, 0, 5, 0, 0, 0])
        );
    }
}
