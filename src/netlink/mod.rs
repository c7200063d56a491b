//! Netlink: message building, one socket per protocol and namespace, and turning ACKs and
//! errors into `io::Error`s that name the operation and keep the errno.
//!
//! Layouts follow include/uapi/linux/netlink.h; see also netlink(7).

pub mod conntrack;
pub mod nft;
pub mod route;

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, sendto,
    socket, sockopt,
};

pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_ECHO: u16 = 0x8;
pub const NLM_F_DUMP_INTR: u16 = 0x10;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_APPEND: u16 = 0x800;
/// Reply flags on NLMSG_ERROR.
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;

pub const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;
const NLMSGERR_ATTR_MSG: u16 = 1;

const SOL_NETLINK: libc::c_int = 270;
const NETLINK_EXT_ACK: libc::c_int = 11;
/// The receive buffer every netlink socket asks for.
const RCV_BUFFER: usize = 4 << 20;
const NETLINK_CAP_ACK: libc::c_int = 10;

pub fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A buffer of one or more netlink messages under construction. Sequence numbers are
/// left 0 and filled in by [`Socket`] when sending, so builders are deterministic.
#[derive(Default, Debug, Clone)]
pub struct Msg {
    pub buf: Vec<u8>,
}

impl Msg {
    pub fn new() -> Msg {
        Msg::default()
    }

    fn pad(&mut self) {
        self.buf.resize(align4(self.buf.len()), 0);
    }

    /// Starts a message; returns its offset for [`Msg::end`].
    pub fn begin(&mut self, ty: u16, flags: u16) -> usize {
        self.pad();
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, patched by end()
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_seq, set by the socket
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: to the kernel
        at
    }

    pub fn end(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u32;
        self.buf[at..at + 4].copy_from_slice(&len.to_ne_bytes());
        self.pad();
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    pub fn attr(&mut self, ty: u16, payload: &[u8]) {
        self.pad();
        self.buf
            .extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
    }

    /// A NUL-terminated string attribute.
    pub fn attr_str(&mut self, ty: u16, s: &str) {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        self.attr(ty, &v);
    }

    pub fn nest(&mut self, ty: u16) -> usize {
        self.pad();
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        at
    }

    pub fn nest_end(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    /// How many messages the buffer holds.
    pub fn count(&self) -> usize {
        self.messages().len()
    }

    /// Offsets of each message in the buffer.
    fn messages(&self) -> Vec<usize> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 16 <= self.buf.len() {
            out.push(at);
            let len = u32::from_ne_bytes(self.buf[at..at + 4].try_into().unwrap()) as usize;
            at += align4(len.max(16));
        }
        out
    }
}

/// One parsed message: type, flags and payload (after the 16-byte header).
#[derive(Debug)]
pub struct Reply<'a> {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

/// Splits a datagram into messages, tolerating nothing malformed.
pub fn parse_messages(buf: &[u8]) -> io::Result<Vec<Reply<'_>>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
        if len < 16 || at + len > buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "malformed netlink message",
            ));
        }
        out.push(Reply {
            ty: u16::from_ne_bytes(buf[at + 4..at + 6].try_into().unwrap()),
            flags: u16::from_ne_bytes(buf[at + 6..at + 8].try_into().unwrap()),
            seq: u32::from_ne_bytes(buf[at + 8..at + 12].try_into().unwrap()),
            payload: &buf[at + 16..at + len],
        });
        at += align4(len);
    }
    Ok(out)
}

/// Iterates over the attributes in `buf`: (type without flags, payload).
pub fn attrs(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at + 4 > buf.len() {
            return None;
        }
        let len = u16::from_ne_bytes([buf[at], buf[at + 1]]) as usize;
        let ty = u16::from_ne_bytes([buf[at + 2], buf[at + 3]]) & NLA_TYPE_MASK;
        if len < 4 || at + len > buf.len() {
            return None;
        }
        let payload = &buf[at + 4..at + len];
        at += align4(len);
        Some((ty, payload))
    })
}

/// An ACK (`Ok`) or the errno and the kernel's extended-ACK message.
pub type AckResult = Result<(), (i32, Option<String>)>;

/// The result carried by an NLMSG_ERROR payload: `Ok` for an ACK, or the errno and the
/// kernel's extended-ACK message.
pub fn parse_error(payload: &[u8], flags: u16) -> io::Result<(u32, AckResult)> {
    if payload.len() < 20 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "short NLMSG_ERROR",
        ));
    }
    let error = i32::from_ne_bytes(payload[0..4].try_into().unwrap());
    let orig_len = u32::from_ne_bytes(payload[4..8].try_into().unwrap()) as usize;
    let orig_seq = u32::from_ne_bytes(payload[12..16].try_into().unwrap());
    if error == 0 {
        return Ok((orig_seq, Ok(())));
    }
    let mut message = None;
    if flags & NLM_F_ACK_TLVS != 0 {
        let tlv_at = if flags & NLM_F_CAPPED != 0 {
            20
        } else {
            4 + align4(orig_len)
        };
        if let Some(tlvs) = payload.get(tlv_at..) {
            message = attrs(tlvs)
                .find(|(ty, _)| *ty == NLMSGERR_ATTR_MSG)
                .map(|(_, m)| {
                    String::from_utf8_lossy(m.split(|b| *b == 0).next().unwrap_or(m)).into_owned()
                });
        }
    }
    // i32::MIN has no negation: a kernel never sends it, a corrupt reply may.
    Ok((
        orig_seq,
        Err((error.checked_neg().unwrap_or(i32::MAX), message)),
    ))
}

/// Formats a kernel error: "<what>: File exists (os error 17)", plus the kernel's own words.
pub fn kernel_error(what: &str, errno: i32, message: Option<&str>) -> io::Error {
    let base = io::Error::from_raw_os_error(errno);
    let text = match message {
        Some(m) if !m.is_empty() => format!("{what}: {base} [{m}]"),
        _ => format!("{what}: {base}"),
    };
    io::Error::new(base.kind(), NetlinkErrno { errno, text })
}

/// An error that still knows its errno after being wrapped with context.
#[derive(Debug)]
pub struct NetlinkErrno {
    pub errno: i32,
    text: String,
}

impl std::fmt::Display for NetlinkErrno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for NetlinkErrno {}

/// The errno of an error from this module, if it came from the kernel.
pub fn errno_of(err: &io::Error) -> Option<i32> {
    err.get_ref()
        .and_then(|e| e.downcast_ref::<NetlinkErrno>())
        .map(|e| e.errno)
        .or_else(|| err.raw_os_error())
}

/// A netlink socket bound to the network namespace that was current when it was opened.
impl AsFd for Socket {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

pub struct Socket {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl Socket {
    pub fn open(protocol: SockProtocol) -> io::Result<Socket> {
        Socket::open_groups(protocol, 0)
    }

    /// A socket that also receives the kernel's notifications for `groups` (a bind mask).
    pub fn open_groups(protocol: SockProtocol, groups: u32) -> io::Result<Socket> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            protocol,
        )
        .map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("netlink socket ({protocol:?}): {e}"),
            )
        })?;
        for opt in [NETLINK_EXT_ACK, NETLINK_CAP_ACK] {
            // Best effort: only the detail of error messages depends on these.
            let _ = crate::sys::setsockopt_int(fd.as_fd(), SOL_NETLINK, opt, 1);
        }
        // Room for the acknowledgements of a large batch (a sandbox's filters on a host
        // with thousands of addresses): each one counts an skb's size against the
        // receive buffer, and the kernel drops what does not fit (ENOBUFS).
        let _ = nix::sys::socket::setsockopt(&fd, sockopt::RcvBufForce, &RCV_BUFFER)
            .or_else(|_| nix::sys::socket::setsockopt(&fd, sockopt::RcvBuf, &RCV_BUFFER));
        // And room to send such a batch at all: netlink refuses a message larger than
        // the send buffer (EMSGSIZE).
        let _ = nix::sys::socket::setsockopt(&fd, sockopt::SndBufForce, &RCV_BUFFER)
            .or_else(|_| nix::sys::socket::setsockopt(&fd, sockopt::SndBuf, &RCV_BUFFER));
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, groups)).map_err(io::Error::from)?;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(1);
        Ok(Socket {
            fd,
            seq: seed,
            buf: vec![0u8; 64 * 1024],
        })
    }

    /// A socket made elsewhere (the sandbox's init passes one of its namespace).
    pub fn from_owned(fd: OwnedFd) -> Socket {
        Socket {
            fd,
            seq: 1,
            buf: vec![0u8; 64 * 1024],
        }
    }

    /// Assigns sequence numbers and sends; returns the seqs of the messages.
    fn send(&mut self, msg: &mut Msg) -> io::Result<Vec<u32>> {
        let mut seqs = Vec::new();
        for at in msg.messages() {
            self.seq = self.seq.wrapping_add(1);
            msg.buf[at + 8..at + 12].copy_from_slice(&self.seq.to_ne_bytes());
            seqs.push(self.seq);
        }
        sendto(
            self.fd.as_raw_fd(),
            &msg.buf,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )
        .map_err(io::Error::from)?;
        Ok(seqs)
    }

    /// Notifications waiting on a socket opened with [`Socket::open_groups`], without
    /// blocking: (type, payload) of each message.
    pub fn notifications(&mut self) -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        while let Ok(n) = recv(self.fd.as_raw_fd(), &mut self.buf, MsgFlags::MSG_DONTWAIT) {
            match parse_messages(&self.buf[..n]) {
                Ok(messages) => out.extend(messages.iter().map(|m| (m.ty, m.payload.to_vec()))),
                Err(_) => break,
            }
        }
        out
    }

    fn recv(&mut self) -> io::Result<usize> {
        loop {
            match recv(self.fd.as_raw_fd(), &mut self.buf, MsgFlags::empty()) {
                Ok(n) => return Ok(n),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Sends one or more messages that each carry NLM_F_ACK and waits for every ACK.
    /// For an nf_tables batch, `acked` lists which messages (by index) asked for an ACK;
    /// an error on any other message (BATCH_BEGIN) also fails the whole request.
    pub fn transact(
        &mut self,
        mut msg: Msg,
        acked: &[usize],
        what: &str,
    ) -> io::Result<Vec<Vec<u8>>> {
        let seqs = self.send(&mut msg)?;
        let mut pending: Vec<u32> = acked.iter().map(|i| seqs[*i]).collect();
        let mut first_error = None;
        let mut data = Vec::new();
        while !pending.is_empty() {
            let n = self.recv()?;
            for reply in parse_messages(&self.buf[..n])? {
                if !seqs.contains(&reply.seq) {
                    continue; // stale reply to an earlier request
                }
                if reply.ty != NLMSG_ERROR {
                    data.push(reply.payload.to_vec());
                    continue;
                }
                let (seq, result) = parse_error(reply.payload, reply.flags)?;
                pending.retain(|s| *s != seq);
                if let Err((errno, message)) = result {
                    first_error.get_or_insert((errno, message));
                    if !acked.iter().any(|i| seqs[*i] == seq) {
                        pending.clear(); // a batch-level error: no per-message ACKs follow
                    }
                    if errno == libc::EPERM || errno == libc::ENOBUFS || errno == libc::ENOMEM {
                        pending.clear(); // the kernel stops ACKing after these
                    }
                }
            }
        }
        match first_error {
            Some((errno, message)) => Err(kernel_error(what, errno, message.as_deref())),
            None => Ok(data),
        }
    }

    /// A single request with NLM_F_ACK.
    pub fn request(&mut self, msg: Msg, what: &str) -> io::Result<()> {
        self.transact(msg, &[0], what).map(drop)
    }

    /// A GET request answered by exactly one message (or an error).
    pub fn get(&mut self, mut msg: Msg, what: &str) -> io::Result<Vec<u8>> {
        let seqs = self.send(&mut msg)?;
        loop {
            let n = self.recv()?;
            for reply in parse_messages(&self.buf[..n])? {
                if reply.seq != seqs[0] {
                    continue;
                }
                if reply.ty == NLMSG_ERROR {
                    let (_, result) = parse_error(reply.payload, reply.flags)?;
                    if let Err((errno, message)) = result {
                        return Err(kernel_error(what, errno, message.as_deref()));
                    }
                    continue;
                }
                return Ok(reply.payload.to_vec());
            }
        }
    }

    /// A dump: every message until NLMSG_DONE. When the kernel flags the dump as
    /// interrupted by a change, it is redone; under constant churn (hundreds of
    /// sandboxes starting at once) the last, possibly inconsistent, view is returned:
    /// callers use dumps as hints, and the kernel's own EEXIST checks stay the truth.
    pub fn dump(&mut self, msg: Msg, what: &str) -> io::Result<Vec<(u16, Vec<u8>)>> {
        const ATTEMPTS: usize = 20;
        for attempt in 1..=ATTEMPTS {
            let seqs = self.send(&mut msg.clone())?;
            let mut out = Vec::new();
            let mut interrupted = false;
            let messages = loop {
                let n = self.recv()?;
                let mut done = false;
                for reply in parse_messages(&self.buf[..n])? {
                    if reply.seq != seqs[0] {
                        continue;
                    }
                    interrupted |= reply.flags & NLM_F_DUMP_INTR != 0;
                    match reply.ty {
                        NLMSG_DONE => done = true,
                        NLMSG_ERROR => {
                            let (_, result) = parse_error(reply.payload, reply.flags)?;
                            if let Err((errno, message)) = result {
                                return Err(kernel_error(what, errno, message.as_deref()));
                            }
                        }
                        ty => out.push((ty, reply.payload.to_vec())),
                    }
                }
                if done {
                    break out;
                }
            };
            if !interrupted || attempt == ATTEMPTS {
                return Ok(messages);
            }
        }
        unreachable!("the last attempt returns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_pads_and_patches_lengths() {
        let mut m = Msg::new();
        let at = m.begin(16, NLM_F_REQUEST | NLM_F_ACK);
        m.attr_str(3, "vh0");
        let n = m.nest(18);
        m.attr_str(1, "veth");
        m.nest_end(n);
        m.end(at);
        #[rustfmt::skip]
        let want: &[u8] = &[
            0x28, 0, 0, 0,  16, 0,  5, 0,  0, 0, 0, 0,  0, 0, 0, 0, // hdr(40, RTM_NEWLINK, REQUEST|ACK): padding counts
            8, 0, 3, 0,  b'v', b'h', b'0', 0,                       // IFLA_IFNAME "vh0"
            0x10, 0, 18, 0x80,                                      // IFLA_LINKINFO nest, len 16
            9, 0, 1, 0,  b'v', b'e', b't', b'h', 0, 0, 0, 0,        // "veth\0" + 3 pad
        ];
        assert_eq!(m.buf, want);
    }

    #[test]
    fn parses_ack_and_error_with_extack() {
        // Success ACK, capped: error 0, echoed header with seq 7.
        let mut ack = vec![0u8; 20];
        ack[4..8].copy_from_slice(&32u32.to_ne_bytes());
        ack[12..16].copy_from_slice(&7u32.to_ne_bytes());
        assert_eq!(parse_error(&ack, NLM_F_CAPPED).unwrap(), (7, Ok(())));

        // -EEXIST, capped, with an extack message TLV after the echoed header.
        let mut err = vec![0u8; 20];
        err[0..4].copy_from_slice(&(-17i32).to_ne_bytes());
        err[12..16].copy_from_slice(&9u32.to_ne_bytes());
        let text = b"ipv4: Address already assigned\0";
        err.extend_from_slice(&((4 + text.len()) as u16).to_ne_bytes());
        err.extend_from_slice(&1u16.to_ne_bytes());
        err.extend_from_slice(text);
        let (seq, res) = parse_error(&err, NLM_F_CAPPED | NLM_F_ACK_TLVS).unwrap();
        assert_eq!(seq, 9);
        let (errno, msg) = res.unwrap_err();
        assert_eq!(errno, 17);
        assert_eq!(msg.as_deref(), Some("ipv4: Address already assigned"));
        let e = kernel_error("RTM_NEWADDR 10.200.0.1/30 on nsr1", errno, msg.as_deref());
        assert_eq!(
            e.to_string(),
            "RTM_NEWADDR 10.200.0.1/30 on nsr1: File exists (os error 17) [ipv4: Address already assigned]"
        );
        assert_eq!(errno_of(&e), Some(17));

        // Uncapped error without TLVs: the whole request is echoed; no message.
        let mut full = vec![0u8; 20 + 16];
        full[0..4].copy_from_slice(&(-1i32).to_ne_bytes());
        full[4..8].copy_from_slice(&32u32.to_ne_bytes());
        assert_eq!(parse_error(&full, 0).unwrap().1, Err((1, None)));
        assert!(parse_error(&full[..10], 0).is_err());
    }

    #[test]
    fn parse_messages_rejects_truncation() {
        let mut m = Msg::new();
        let at = m.begin(3, 2);
        m.bytes(&0i32.to_ne_bytes());
        m.end(at);
        let parsed = parse_messages(&m.buf).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].ty, NLMSG_DONE);
        let mut bad = m.buf.clone();
        bad[0] = 200;
        assert!(parse_messages(&bad).is_err());
    }

    #[test]
    fn attrs_iterates_and_masks_flags() {
        let mut m = Msg::new();
        m.attr(1, &[1, 2, 3]);
        let n = m.nest(2);
        m.attr(3, &[9; 4]);
        m.nest_end(n);
        let got: Vec<(u16, usize)> = attrs(&m.buf).map(|(t, p)| (t, p.len())).collect();
        assert_eq!(got, [(1, 3), (2, 8)]);
    }
}
