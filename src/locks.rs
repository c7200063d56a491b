//! Abstract unix sockets: nsrun's names between processes (the holder, networks,
//! running sandboxes) and its locks, which the kernel releases the instant their holder
//! is gone, however it ends, with nothing on disk.

use std::os::fd::{AsRawFd, OwnedFd};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, SockFlag, SockType};

/// A close-on-exec SOCK_SEQPACKET unix socket; `what` says what for, in the error.
pub fn seqpacket(what: &str) -> Result<OwnedFd> {
    nix::sys::socket::socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .with_context(|| format!("unix socket for {what}"))
}

/// The lock on a sandbox's subnet (and its link's name): an abstract unix socket named
/// after the link, bound while nsrun lives. The kernel frees it the instant nsrun is gone,
/// however it ends, with nothing on disk (a file-capability install cannot write /run),
/// so a link of that name whose lock is free is a leftover of a dead nsrun.
pub fn lock_link(name: &str) -> Result<Option<OwnedFd>> {
    let sock = seqpacket("a link's lock")?;
    let addr = nix::sys::socket::UnixAddr::new_abstract(format!("nsrun-link-{name}").as_bytes())
        .context("a link's lock name")?;
    match nix::sys::socket::bind(sock.as_raw_fd(), &addr) {
        Ok(()) => Ok(Some(sock)),
        Err(Errno::EADDRINUSE) => Ok(None),
        Err(e) => Err(e).context(format!("bind @nsrun-link-{name}")),
    }
}
