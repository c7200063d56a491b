//! iptables-legacy's `filter` table (x_tables, not nf_tables), read and written the way
//! iptables-legacy itself does (libiptc): the whole table as one blob, read with
//! IPT_SO_GET_INFO and IPT_SO_GET_ENTRIES, replaced with IPT_SO_SET_REPLACE, its
//! counters carried over with IPT_SO_SET_ADD_COUNTERS, under iptables' own lock
//! (/run/xtables.lock), so that an `iptables-legacy` or a Docker running meanwhile waits.
//! nsrun adds and removes only its own entries, which carry a comment match starting
//! `nsrun: `; every other entry is copied as the kernel gave it, with the offsets of
//! jumps, hooks and policies moved by what was added or removed before them.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, socket};

use crate::firewall::{FOREIGN_MARK, ForeignAccept};
use crate::sys;

const IPT_SO_SET_REPLACE: libc::c_int = 64;
const IPT_SO_SET_ADD_COUNTERS: libc::c_int = 65;
const IPT_SO_GET_INFO: libc::c_int = 64;
const IPT_SO_GET_ENTRIES: libc::c_int = 65;
const HOOKS: usize = 5;
pub const NF_INET_FORWARD: usize = 2;
/// struct ipt_entry: ipt_ip (84), nfcache, target_offset (u16 at 88), next_offset (u16
/// at 90), comefrom, counters; matches start at 112.
const ENTRY_HEADER: usize = 112;
/// struct xt_entry_match and xt_entry_target: size (u16), name[29], revision.
const ELEM_HEADER: usize = 32;
const COMMENT_SIZE: usize = ELEM_HEADER + 256;
/// XT_ALIGN(sizeof(struct xt_standard_target)).
const STANDARD_TARGET_SIZE: usize = 40;
pub const VERDICT_ACCEPT: i32 = -2; // -NF_ACCEPT - 1
pub const VERDICT_DROP: i32 = -1; // -NF_DROP - 1
/// struct ipt_replace up to its entries (the counters pointer at 88).
const REPLACE_HEADER: usize = 96;
const COUNTERS_POINTER_AT: usize = 88;
const LOCK: &str = "/run/xtables.lock";

fn u16_at(b: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?) as usize)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn name(b: &[u8]) -> &[u8] {
    b.split(|c| *c == 0).next().unwrap_or(b)
}

/// One entry's parts.
struct Entry<'a> {
    bytes: &'a [u8],
}

impl Entry<'_> {
    fn target(&self) -> Option<&[u8]> {
        self.bytes.get(u16_at(self.bytes, 88)?..)
    }

    /// The verdict of a standard target (empty name): negative, or a jump's offset.
    fn standard_verdict(&self) -> Option<i32> {
        let t = self.target()?;
        if !name(t.get(2..31)?).is_empty() {
            return None;
        }
        Some(i32::from_ne_bytes(t.get(32..36)?.try_into().ok()?))
    }

    /// The name of a chain head (an ERROR target whose data names the chain).
    fn chain_head(&self) -> Option<&[u8]> {
        let t = self.target()?;
        (name(t.get(2..31)?) == b"ERROR").then(|| name(t.get(32..).unwrap_or(&[])))
    }

    fn matches(&self) -> Vec<&[u8]> {
        let mut out = Vec::new();
        let end = u16_at(self.bytes, 88).unwrap_or(0).min(self.bytes.len());
        let mut at = ENTRY_HEADER;
        while let Some(size) = u16_at(self.bytes, at) {
            if size < ELEM_HEADER || at + size > end {
                break;
            }
            out.push(&self.bytes[at..at + size]);
            at += size;
        }
        out
    }

    fn is_nsruns(&self) -> bool {
        self.matches().iter().any(|m| {
            name(&m[2..31]) == b"comment"
                && m.get(ELEM_HEADER..)
                    .is_some_and(|c| c.starts_with(FOREIGN_MARK.as_bytes()))
        })
    }

    /// An entry of someone else's that accepts packets in or out of nsrun's links.
    fn accepts_sandboxes(&self) -> bool {
        let prefix = crate::addr::LINK_PREFIX.as_bytes();
        let names = [self.bytes.get(16..32), self.bytes.get(32..48)];
        names.iter().flatten().any(|n| n.starts_with(prefix))
            && self.standard_verdict() == Some(VERDICT_ACCEPT)
            && !self.is_nsruns()
    }
}

/// The filter table as the kernel holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    valid_hooks: u32,
    hook_entry: [u32; HOOKS],
    underflow: [u32; HOOKS],
    blob: Vec<u8>,
}

impl Table {
    fn entries(&self) -> Vec<(usize, Entry<'_>)> {
        let mut out = Vec::new();
        let mut at = 0;
        while let Some(next) = u16_at(&self.blob, at + 90) {
            if next < ENTRY_HEADER || at + next > self.blob.len() {
                break;
            }
            out.push((
                at,
                Entry {
                    bytes: &self.blob[at..at + next],
                },
            ));
            at += next;
        }
        out
    }

    /// The policy of the FORWARD chain: the verdict of the entry at its underflow.
    pub fn forward_policy(&self) -> Option<i32> {
        let at = self.underflow[NF_INET_FORWARD] as usize;
        self.entries()
            .into_iter()
            .find(|(o, _)| *o == at)
            .and_then(|(_, e)| e.standard_verdict())
    }

    pub fn has_chain(&self, chain: &str) -> bool {
        self.entries()
            .iter()
            .any(|(_, e)| e.chain_head() == Some(chain.as_bytes()))
    }

    /// Whether an entry not nsrun's accepts nsrun's links (the host's own fix).
    pub fn accepts_sandboxes(&self) -> bool {
        self.entries().iter().any(|(_, e)| e.accepts_sandboxes())
    }

    pub fn nsruns(&self) -> usize {
        self.entries().iter().filter(|(_, e)| e.is_nsruns()).count()
    }

    /// The table rebuilt: `tail` last in FORWARD (before its policy), without the old
    /// entries `drop` says to leave out. Returns it and, for each of its entries, the old
    /// entry it was.
    fn rebuilt(
        &self,
        tail: &[Vec<u8>],
        drop: impl Fn(&Entry) -> bool,
    ) -> (Table, Vec<Option<usize>>) {
        let entries = self.entries();
        let policy = self.underflow[NF_INET_FORWARD] as usize;
        // Old offset -> new offset; a dropped entry's offset goes to what follows it.
        let mut moved: Vec<(usize, usize)> = Vec::new();
        let mut blob = Vec::new();
        let mut from = Vec::new();
        let mut inserted_at = None;
        let mut pending: Vec<usize> = Vec::new();
        for (i, (offset, entry)) in entries.iter().enumerate() {
            if *offset == policy && !tail.is_empty() {
                inserted_at = Some(blob.len());
                for new in tail {
                    blob.extend_from_slice(new);
                    from.push(None);
                }
            }
            pending.push(*offset);
            if drop(entry) {
                continue;
            }
            for old in pending.drain(..) {
                moved.push((old, blob.len()));
            }
            blob.extend_from_slice(entry.bytes);
            from.push(Some(i));
        }
        for old in pending.drain(..) {
            moved.push((old, blob.len()));
        }
        // `moved` is in offset order: a table of thousands of entries costs a binary
        // search per jump, not a scan.
        let map = |old: u32| -> u32 {
            moved
                .binary_search_by_key(&(old as usize), |(o, _)| *o)
                .map_or(old, |i| moved[i].1 as u32)
        };
        // Jumps: standard targets with a non-negative verdict.
        let mut at = 0;
        for origin in &from {
            let size = u16_at(&blob, at + 90).unwrap_or(0);
            if origin.is_some() {
                let entry = Entry {
                    bytes: &blob[at..at + size],
                };
                if let Some(verdict) = entry.standard_verdict().filter(|v| *v >= 0) {
                    let target = at + u16_at(&blob, at + 88).unwrap_or(0);
                    let new = map(verdict as u32) as i32;
                    blob[target + 32..target + 36].copy_from_slice(&new.to_ne_bytes());
                }
            }
            at += size;
        }
        let mut table = Table {
            valid_hooks: self.valid_hooks,
            hook_entry: self.hook_entry.map(map),
            underflow: self.underflow.map(map),
            blob,
        };
        // An empty FORWARD starts with what was inserted.
        let empty = self.hook_entry[NF_INET_FORWARD] as usize == policy;
        if let (Some(at), true) = (inserted_at, empty) {
            table.hook_entry[NF_INET_FORWARD] = at as u32;
        }
        (table, from)
    }

    /// With `new` entries last in FORWARD, before its policy: the host's own rules,
    /// its drops among them, still decide first.
    pub fn with_forward_tail(&self, new: &[Vec<u8>]) -> (Table, Vec<Option<usize>>) {
        self.rebuilt(new, |_| false)
    }

    /// Without nsrun's entries.
    pub fn without_nsruns(&self) -> (Table, Vec<Option<usize>>) {
        self.rebuilt(&[], |e| e.is_nsruns())
    }
}

/// The x_tables entry of one of nsrun's accepts.
pub fn foreign_entry(a: &ForeignAccept) -> Vec<u8> {
    let iniface = a.from_sandboxes.then(ForeignAccept::sandboxes);
    accept_entry(iniface.as_deref(), Some(&a.oifname), &a.comment)
}

/// An entry that accepts packets in by `iniface` and out by `outiface` (a name, or a
/// prefix ending in `+`, as iptables writes them), with `comment`.
fn accept_entry(iniface: Option<&str>, outiface: Option<&str>, comment: &str) -> Vec<u8> {
    let size = ENTRY_HEADER + COMMENT_SIZE + STANDARD_TARGET_SIZE;
    let mut e = vec![0u8; size];
    let iface = |e: &mut [u8], at: usize, mask_at: usize, spec: &str| {
        let (bytes, len) = match spec.strip_suffix('+') {
            Some(prefix) => (prefix.as_bytes(), prefix.len()),
            None => (spec.as_bytes(), spec.len() + 1),
        };
        let n = bytes.len().min(15);
        e[at..at + n].copy_from_slice(&bytes[..n]);
        for b in &mut e[mask_at..mask_at + len.min(16)] {
            *b = 0xff;
        }
    };
    if let Some(i) = iniface {
        iface(&mut e, 16, 48, i);
    }
    if let Some(o) = outiface {
        iface(&mut e, 32, 64, o);
    }
    let target_offset = ENTRY_HEADER + COMMENT_SIZE;
    e[88..90].copy_from_slice(&(target_offset as u16).to_ne_bytes());
    e[90..92].copy_from_slice(&(size as u16).to_ne_bytes());
    // The comment match (xt_comment, revision 0): 256 bytes of text.
    let m = ENTRY_HEADER;
    e[m..m + 2].copy_from_slice(&(COMMENT_SIZE as u16).to_ne_bytes());
    e[m + 2..m + 9].copy_from_slice(b"comment");
    let text = &comment.as_bytes()[..comment.len().min(255)];
    e[m + ELEM_HEADER..m + ELEM_HEADER + text.len()].copy_from_slice(text);
    // The standard target (empty name): ACCEPT.
    let t = target_offset;
    e[t..t + 2].copy_from_slice(&(STANDARD_TARGET_SIZE as u16).to_ne_bytes());
    e[t + 32..t + 36].copy_from_slice(&VERDICT_ACCEPT.to_ne_bytes());
    e
}

fn raw_socket() -> io::Result<std::os::fd::OwnedFd> {
    socket(
        AddressFamily::Inet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Raw,
    )
    .map_err(io::Error::from)
}

/// Reads the filter table, only when /proc/net/ip_tables_names lists it, so that asking
/// never loads the module: `Ok(None)` when there is none, an error when it exists but
/// cannot be read (a raw socket needs CAP_NET_RAW, which a file-capability install may
/// not have).
pub fn read() -> io::Result<Option<Table>> {
    let Ok(names) = std::fs::read_to_string("/proc/net/ip_tables_names") else {
        return Ok(None);
    };
    if !names.lines().any(|l| l == "filter") {
        return Ok(None);
    }
    let sock = raw_socket()?;
    read_from(sock.as_fd())
        .map(Some)
        .ok_or_else(|| io::Error::other("IPT_SO_GET_ENTRIES failed"))
}

fn read_from(sock: BorrowedFd<'_>) -> Option<Table> {
    // struct ipt_getinfo: name[32], valid_hooks, hook_entry[5], underflow[5],
    // num_entries, size.
    let mut info = [0u8; 32 + 4 + 20 + 20 + 4 + 4];
    info[..6].copy_from_slice(b"filter");
    sys::getsockopt_buf(sock, IPT_SO_GET_INFO, &mut info).ok()?;
    let hooks = |at: usize| -> Option<[u32; HOOKS]> {
        let mut h = [0u32; HOOKS];
        for (i, v) in h.iter_mut().enumerate() {
            *v = u32_at(&info, at + 4 * i)?;
        }
        Some(h)
    };
    let size = u32_at(&info, 80)? as usize;
    // struct ipt_get_entries: name[32], size, then the entries (8-byte aligned).
    let mut entries = vec![0u8; 40 + size];
    entries[..6].copy_from_slice(b"filter");
    entries[32..36].copy_from_slice(&(size as u32).to_ne_bytes());
    sys::getsockopt_buf(sock, IPT_SO_GET_ENTRIES, &mut entries).ok()?;
    Some(Table {
        valid_hooks: u32_at(&info, 32)?,
        hook_entry: hooks(36)?,
        underflow: hooks(56)?,
        blob: entries.split_off(40),
    })
}

/// iptables' lock, held while nsrun reads and replaces the table.
fn lock() -> io::Result<nix::fcntl::Flock<std::fs::File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK)?;
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut file = file;
    loop {
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(held) => return Ok(held),
            Err((f, _)) if Instant::now() < deadline => {
                file = f;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err((_, e)) => {
                return Err(io::Error::new(
                    io::Error::from(e).kind(),
                    format!("{LOCK} stays locked (an iptables command running?)"),
                ));
            }
        }
    }
}

/// Reads the table under the lock, lets `change` rebuild it, and replaces it, counters
/// carried over. `change` returns None to leave the table as it is.
pub fn update(
    change: impl FnOnce(&Table) -> Option<(Table, Vec<Option<usize>>)>,
) -> io::Result<bool> {
    let _held = lock()?;
    let sock = raw_socket()?;
    let Some(old) = read_from(sock.as_fd()) else {
        return Ok(false);
    };
    let Some((new, from)) = change(&old) else {
        return Ok(false);
    };
    let old_count = old.entries().len();
    let mut replace = vec![0u8; REPLACE_HEADER];
    replace[..6].copy_from_slice(b"filter");
    replace[32..36].copy_from_slice(&new.valid_hooks.to_ne_bytes());
    replace[36..40].copy_from_slice(&(from.len() as u32).to_ne_bytes());
    replace[40..44].copy_from_slice(&(new.blob.len() as u32).to_ne_bytes());
    for i in 0..HOOKS {
        replace[44 + 4 * i..48 + 4 * i].copy_from_slice(&new.hook_entry[i].to_ne_bytes());
        replace[64 + 4 * i..68 + 4 * i].copy_from_slice(&new.underflow[i].to_ne_bytes());
    }
    replace[84..88].copy_from_slice(&(old_count as u32).to_ne_bytes());
    replace.extend_from_slice(&new.blob);
    let mut counters = vec![0u8; 16 * old_count];
    sys::ipt_replace(
        sock.as_fd(),
        IPT_SO_SET_REPLACE,
        &mut replace,
        COUNTERS_POINTER_AT,
        &mut counters,
    )
    .map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("replace iptables-legacy's filter table: {e}"),
        )
    })?;
    // struct xt_counters_info: name[32], num_counters, then the counters (8-aligned).
    let mut add = vec![0u8; 40];
    add[..6].copy_from_slice(b"filter");
    add[32..36].copy_from_slice(&(from.len() as u32).to_ne_bytes());
    for origin in &from {
        match origin {
            Some(i) => add.extend_from_slice(&counters[16 * i..16 * i + 16]),
            None => add.extend_from_slice(&[0; 16]),
        }
    }
    // Best effort, as iptables does: the counters, not the rules, are at stake.
    let _ = sys::setsockopt_buf(sock.as_fd(), IPT_SO_SET_ADD_COUNTERS, &add);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry with no match and a standard target.
    fn standard(verdict: i32) -> Vec<u8> {
        let size = ENTRY_HEADER + STANDARD_TARGET_SIZE;
        let mut e = vec![0u8; size];
        e[88..90].copy_from_slice(&(ENTRY_HEADER as u16).to_ne_bytes());
        e[90..92].copy_from_slice(&(size as u16).to_ne_bytes());
        e[ENTRY_HEADER..ENTRY_HEADER + 2]
            .copy_from_slice(&(STANDARD_TARGET_SIZE as u16).to_ne_bytes());
        e[ENTRY_HEADER + 32..ENTRY_HEADER + 36].copy_from_slice(&verdict.to_ne_bytes());
        e
    }

    /// A chain head, or the table's last entry: an ERROR target naming it.
    fn error(chain: &str) -> Vec<u8> {
        let size = ENTRY_HEADER + 64;
        let mut e = vec![0u8; size];
        e[88..90].copy_from_slice(&(ENTRY_HEADER as u16).to_ne_bytes());
        e[90..92].copy_from_slice(&(size as u16).to_ne_bytes());
        e[ENTRY_HEADER..ENTRY_HEADER + 2].copy_from_slice(&64u16.to_ne_bytes());
        e[ENTRY_HEADER + 2..ENTRY_HEADER + 7].copy_from_slice(b"ERROR");
        e[ENTRY_HEADER + 32..ENTRY_HEADER + 32 + chain.len()].copy_from_slice(chain.as_bytes());
        e
    }

    /// Docker's shape: INPUT policy; FORWARD: jump DOCKER-USER, policy DROP; OUTPUT
    /// policy; DOCKER-USER: RETURN; the final ERROR.
    fn docker_like() -> Table {
        let s = (ENTRY_HEADER + STANDARD_TARGET_SIZE) as u32; // 152
        let parts = [
            standard(VERDICT_ACCEPT), // 0: INPUT policy
            standard(784),            // 152: FORWARD -j DOCKER-USER: its first rule
            standard(VERDICT_DROP),   // 304: FORWARD policy
            standard(VERDICT_ACCEPT), // 456: OUTPUT policy
            error("DOCKER-USER"),     // 608: the chain's head (176 bytes)
            standard(-5),             // 784: RETURN
            error("ERROR"),           // 936: the table's end
        ];
        Table {
            valid_hooks: 0b01110,
            hook_entry: [0, 0, s, 3 * s, 0],
            underflow: [0, 0, 2 * s, 3 * s, 0],
            blob: parts.concat(),
        }
    }

    #[test]
    fn nsruns_entries_go_last_in_forward_and_every_offset_follows() {
        let old = docker_like();
        assert_eq!(old.forward_policy(), Some(VERDICT_DROP));
        assert!(old.has_chain("DOCKER-USER") && !old.accepts_sandboxes());
        let ours = vec![
            accept_entry(Some("nsr+"), Some("eth0"), "nsrun: out"),
            accept_entry(None, Some("nsr+"), "nsrun: in"),
        ];
        let added: u32 = ours.iter().map(|e| e.len() as u32).sum();
        let (new, from) = old.with_forward_tail(&ours);
        // After the host's jump into DOCKER-USER, before FORWARD's policy.
        assert_eq!(
            from,
            [
                Some(0),
                Some(1),
                None,
                None,
                Some(2),
                Some(3),
                Some(4),
                Some(5),
                Some(6)
            ]
        );
        assert_eq!(new.hook_entry, [0, 0, 152, 456 + added, 0]);
        assert_eq!(new.underflow, [0, 0, 304 + added, 456 + added, 0]);
        assert_eq!(new.forward_policy(), Some(VERDICT_DROP));
        assert_eq!(new.nsruns(), 2);
        assert!(
            !new.accepts_sandboxes(),
            "nsrun's own entries are not the host's fix"
        );
        let entries = new.entries();
        // The jump into DOCKER-USER moved with the chain.
        assert_eq!(entries[1].1.standard_verdict(), Some((784 + added) as i32));
        assert_eq!(&entries[2].1.bytes[16..19], b"nsr");
        assert_eq!(entries[2].1.bytes[48..52], [0xff, 0xff, 0xff, 0]);
        assert_eq!(&entries[2].1.bytes[32..37], b"eth0\0");
        assert_eq!(
            entries[2].1.bytes[64..70],
            [0xff, 0xff, 0xff, 0xff, 0xff, 0]
        );
        // And back: exactly the table it was.
        let (back, from) = new.without_nsruns();
        assert_eq!(back, old);
        assert_eq!(
            from,
            [
                Some(0),
                Some(1),
                Some(4),
                Some(5),
                Some(6),
                Some(7),
                Some(8)
            ]
        );
    }

    /// An empty FORWARD (its entry is its policy) starts with nsrun's entries.
    #[test]
    fn an_empty_forward_starts_with_nsruns_entries() {
        let s = (ENTRY_HEADER + STANDARD_TARGET_SIZE) as u32;
        let old = Table {
            valid_hooks: 0b01110,
            hook_entry: [0, 0, s, 2 * s, 0],
            underflow: [0, 0, s, 2 * s, 0],
            blob: [
                standard(VERDICT_ACCEPT),
                standard(VERDICT_DROP),
                standard(VERDICT_ACCEPT),
                error("ERROR"),
            ]
            .concat(),
        };
        let ours = vec![accept_entry(None, Some("nsr+"), "nsrun: in")];
        let (new, _) = old.with_forward_tail(&ours);
        let added = ours[0].len() as u32;
        assert_eq!(new.hook_entry, [0, 0, s, 2 * s + added, 0]);
        assert_eq!(new.underflow, [0, 0, s + added, 2 * s + added, 0]);
        assert_eq!(new.without_nsruns().0, old);
    }

    #[test]
    fn a_hosts_own_accept_counts_and_a_corrupt_blob_ends_the_walk() {
        let mut t = docker_like();
        let fix = accept_entry(Some("nsr+"), None, "the admin's");
        let (with_fix, _) = t.with_forward_tail(&[fix]);
        assert!(with_fix.accepts_sandboxes());
        assert_eq!(with_fix.nsruns(), 0);
        t.blob.truncate(200);
        assert_eq!(t.entries().len(), 1);
        t.blob[90] = 0;
        t.blob[91] = 0;
        assert!(t.entries().is_empty());
    }
}
