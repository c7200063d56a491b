//! `--pcap FILE`: every packet of the sandbox, both directions, captured on the host's
//! end of its link (so nothing the command does can hide or forge one), written in the
//! pcap format that tcpdump and wireshark read. The file is bounded (`--pcap-size`):
//! the oldest data is kept, what does not fit is counted and reported at the end.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

/// The longest packet kept whole: a GSO super-packet of a veth is up to 64 KiB.
const SNAPLEN: u32 = 262_144;
/// LINKTYPE_ETHERNET.
const LINKTYPE_ETHERNET: u32 = 1;
const PCAP_MAGIC: u32 = 0xa1b2_c3d4;
const RECORD_HEADER: u64 = 16;

/// The file's header: pcap 2.4, microseconds, Ethernet.
pub fn file_header() -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&PCAP_MAGIC.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
    h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    h
}

/// One packet's record header.
pub fn record_header(at: std::time::Duration, len: u32) -> [u8; 16] {
    let mut r = [0u8; 16];
    r[0..4].copy_from_slice(&(at.as_secs() as u32).to_le_bytes());
    r[4..8].copy_from_slice(&at.subsec_micros().to_le_bytes());
    r[8..12].copy_from_slice(&len.to_le_bytes());
    r[12..16].copy_from_slice(&len.to_le_bytes());
    r
}

/// A capture that runs in a thread of its own until [`Capture::finish`].
pub struct Capture {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(u64, u64, u64)>>,
    path: String,
}

impl Capture {
    /// Creates FILE (owned by `owner`), opens a packet socket on link `ifindex`, and
    /// starts writing. Nothing of the sandbox passes the link before this returns.
    pub fn start(path: &Path, limit: u64, ifindex: i32, owner: (u32, u32)) -> Result<Capture> {
        let shown = path.display().to_string();
        let mut file = crate::info::create_user_file(path, owner, "--pcap")?;
        file.write_all(&file_header())
            .with_context(|| format!("--pcap {shown}: write"))?;
        let sock = crate::sys::packet_socket(ifindex)
            .with_context(|| format!("--pcap {shown}: capture on the sandbox's link"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("pcap".into())
            .spawn(move || capture(sock, file, limit, &stopping))
            .context("--pcap: start the capture")?;
        Ok(Capture {
            stop,
            thread: Some(thread),
            path: shown,
        })
    }

    /// Stops once what the link carried so far is written; says what did not fit.
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some((written, lost, dropped)) = self.thread.take().and_then(|t| t.join().ok()) {
            if lost > 0 {
                crate::say(&format!(
                    "nsrun: --pcap {}: {written} packets written; {lost} more did not fit in --pcap-size and were left out",
                    self.path
                ));
            }
            if dropped > 0 {
                crate::say(&format!(
                    "nsrun: --pcap {}: the kernel dropped {dropped} packets that came faster than they could be written",
                    self.path
                ));
            }
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// How much the capture gathers before it writes: packets are received straight into
/// this buffer, after room for their record header, so each byte is copied once on its
/// way to the file.
const CHUNK: usize = 1 << 20;

/// The capture loop: (packets written, left out for the size, dropped by the kernel).
fn capture(
    sock: OwnedFd,
    mut file: std::fs::File,
    limit: u64,
    stop: &AtomicBool,
) -> (u64, u64, u64) {
    let mut size = 24u64;
    let (mut written, mut lost) = (0u64, 0u64);
    let header = RECORD_HEADER as usize;
    let mut chunk = vec![0u8; CHUNK];
    let mut used = 0usize;
    let mut failed = false;
    loop {
        if used + header + SNAPLEN as usize > chunk.len() {
            failed |= file.write_all(&chunk[..used]).is_err();
            used = 0;
        }
        let room = &mut chunk[used + header..used + header + SNAPLEN as usize];
        let n = match nix::sys::socket::recv(
            sock.as_raw_fd(),
            room,
            nix::sys::socket::MsgFlags::empty(),
        ) {
            Ok(n) => n,
            // The link was down when the socket was bound (it comes up after): the
            // kernel says so once, and delivers once it is up.
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::ENETDOWN) => continue,
            // The receive timeout: write what is gathered; stop once nothing is pending.
            Err(nix::errno::Errno::EAGAIN) => {
                failed |= file.write_all(&chunk[..used]).is_err();
                used = 0;
                if stop.load(Ordering::Relaxed) || failed {
                    break;
                }
                continue;
            }
            Err(_) => break,
        };
        let record = RECORD_HEADER + n as u64;
        if size + record > limit || failed {
            lost += 1;
            continue;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        chunk[used..used + header].copy_from_slice(&record_header(now, n as u32));
        used += header + n;
        size += record;
        written += 1;
    }
    let _ = file.write_all(&chunk[..used]);
    let dropped = crate::sys::packet_stats(sock.as_fd()).map_or(0, |(_, d)| d.into());
    (written, lost, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcap_headers_golden_bytes() {
        #[rustfmt::skip]
        let want = [
            0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, // magic, version 2.4
            0, 0, 0, 0, 0, 0, 0, 0,             // thiszone, sigfigs
            0, 0, 4, 0, 1, 0, 0, 0,             // snaplen 262144, Ethernet
        ];
        assert_eq!(file_header(), want);
        let r = record_header(std::time::Duration::new(2, 3_000), 60);
        assert_eq!(r, [2, 0, 0, 0, 3, 0, 0, 0, 60, 0, 0, 0, 60, 0, 0, 0]);
    }

    #[test]
    fn sizes() {
        use crate::cli::parse_size;
        assert_eq!(parse_size("100M"), Ok(100 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10KiB"), Ok(10 << 10));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("10T").is_err());
        assert!(parse_size("3").is_err());
    }
}
