//! What a member of a network (`--network NAME`) hands a sandbox that joins it, over the
//! network's abstract socket `@nsrun-net-NAME` (SOCK_SEQPACKET, listening, shared by
//! every member's nsrun: whichever accepts first answers). One message, with three
//! descriptors attached: the network's namespace, the listening socket itself (so the
//! name stays bound while any member lives) and the lock of the network's host link.
//!
//! Layout: `N` version:u8(1) subnet:4 bytes prefix:u8 mtu:u32le name_len:u8 host_end.

use std::net::Ipv4Addr;

use crate::addr::Ipv4Net;

/// The abstract name of network `name`'s socket, without the leading NUL.
pub fn socket_name(name: &str) -> String {
    format!("nsrun-net-{name}")
}

/// A running network, as a member describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    pub subnet: Ipv4Net,
    pub mtu: u32,
    /// The host's end of the network's link.
    pub host_end: String,
}

const VERSION: u8 = 1;

impl Offer {
    pub fn encode(&self) -> Vec<u8> {
        let mut m = vec![b'N', VERSION];
        m.extend_from_slice(&self.subnet.addr.octets());
        m.push(self.subnet.prefix);
        m.extend_from_slice(&self.mtu.to_le_bytes());
        m.push(self.host_end.len() as u8);
        m.extend_from_slice(self.host_end.as_bytes());
        m
    }

    pub fn decode(b: &[u8]) -> Option<Offer> {
        if b.len() < 12 || b[0] != b'N' || b[1] != VERSION {
            return None;
        }
        let addr = Ipv4Addr::new(b[2], b[3], b[4], b[5]);
        let prefix = b[6];
        let mtu = u32::from_le_bytes(b[7..11].try_into().ok()?);
        let len = usize::from(b[11]);
        let name = b.get(12..)?;
        if name.len() != len
            || prefix > 32
            || crate::addr::LinkName::new(std::str::from_utf8(name).ok()?).is_none()
        {
            return None;
        }
        Some(Offer {
            subnet: Ipv4Net::new(addr, prefix),
            mtu,
            host_end: String::from_utf8(name.to_vec()).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes_and_round_trip() {
        let offer = Offer {
            subnet: "10.201.3.0/24".parse().unwrap(),
            mtu: 1500,
            host_end: "nsr0ac900c0".into(),
        };
        let bytes = offer.encode();
        #[rustfmt::skip]
        let golden = [
            b'N', 1,                 // an offer, version 1
            10, 201, 3, 0, 24,       // the subnet
            0xdc, 0x05, 0, 0,        // mtu 1500
            11, b'n', b's', b'r', b'0', b'a', b'c', b'9', b'0', b'0', b'c', b'0',
        ];
        assert_eq!(bytes, golden);
        assert_eq!(Offer::decode(&bytes), Some(offer));
        // Anything else is refused.
        assert_eq!(Offer::decode(&bytes[..bytes.len() - 1]), None);
        let mut bad = bytes.clone();
        bad[6] = 33;
        assert_eq!(Offer::decode(&bad), None);
        assert_eq!(Offer::decode(b"N\x02"), None);
    }
}
