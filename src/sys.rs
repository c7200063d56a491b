//! The only `unsafe` in nsrun: raw syscalls that `nix` does not wrap. Each error names
//! the call and keeps the errno.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sched::CloneFlags;
use nix::unistd::Pid;

/// The syscall's errno, kept raw so the sandbox's step reports still carry it; callers
/// name the call in their own context.
fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `clone(flags | SIGCHLD)` with no new stack: like fork, but into new namespaces.
/// Returns `None` in the child.
/// Refuses (EDEADLK) in a process with more than one thread: the child's copy of
/// memory could hold a lock (malloc's, stdio's) that another thread held at that
/// instant, and the child would wait for it forever.
pub fn clone_into(flags: CloneFlags) -> io::Result<Option<Pid>> {
    if !single_threaded() {
        return Err(io::Error::other(
            "clone: the process has other threads (EDEADLK)",
        ));
    }
    let flags = flags.bits() as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
    // SAFETY: with a NULL stack, clone behaves like fork: the child gets a copy of the
    // address space. The process is single-threaded (checked above), so no lock can be
    // held by another thread in the copy.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    let ret = check(ret)?;
    Ok((ret != 0).then(|| Pid::from_raw(ret as i32)))
}

/// A packet socket that receives every packet of link `ifindex`, both directions,
/// whole. Made with protocol 0 (it receives nothing) and bound to the link with
/// ETH_P_ALL, so no packet of another link slips in between; a receive waits at most
/// 100 ms (the capture looks whether to stop).
pub fn packet_socket(ifindex: i32) -> io::Result<OwnedFd> {
    // SAFETY: socket with integer arguments only.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    let fd = own_fd(check(fd.into())? as RawFd);
    let all = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: sockaddr_ll is plain data; every field nsrun does not set is zero.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = all;
    addr.sll_ifindex = ifindex;
    let buffer: libc::c_int = 64 << 20;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        if setsockopt_int(fd.as_fd(), libc::SOL_SOCKET, opt, buffer).is_ok() {
            break;
        }
    }
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    // SAFETY: the option's value is a timeval that lives through the call.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    check(ret.into())?;
    // SAFETY: addr is a valid sockaddr_ll of the size given.
    let ret = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    check(ret.into())?;
    Ok(fd)
}

/// PACKET_STATISTICS of a packet socket: (packets seen, packets dropped for want of
/// room) since the last call.
pub fn packet_stats(fd: BorrowedFd<'_>) -> io::Result<(u32, u32)> {
    let mut stats = [0u32; 2];
    let mut len = std::mem::size_of_val(&stats) as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes (struct tpacket_stats) to `stats`.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            stats.as_mut_ptr().cast(),
            &mut len,
        )
    };
    check(ret.into())?;
    Ok((stats[0], stats[1]))
}

/// Sends `bytes` with the descriptors `fds` attached (SCM_RIGHTS), in one message.
pub fn send_with_fds(fd: &OwnedFd, bytes: &[u8], fds: &[std::os::fd::RawFd]) -> nix::Result<()> {
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(fds)];
    let iov = [std::io::IoSlice::new(bytes)];
    nix::sys::socket::sendmsg::<()>(
        fd.as_raw_fd(),
        &iov,
        &cmsg,
        nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map(drop)
}

/// One message of up to four descriptors and `N` bytes: (the bytes, the descriptors).
pub fn recv_with_fds<const N: usize>(
    fd: &OwnedFd,
    flags: nix::sys::socket::MsgFlags,
) -> nix::Result<([u8; N], usize, Vec<OwnedFd>)> {
    let mut bytes = [0u8; N];
    let mut iov = [std::io::IoSliceMut::new(&mut bytes)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 8]);
    let msg = nix::sys::socket::recvmsg::<()>(
        fd.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC | flags,
    )?;
    let n = msg.bytes;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(received) = c {
            fds.extend(received.into_iter().map(own_fd));
        }
    }
    Ok((bytes, n, fds))
}

/// Whether this process has one thread: /proc/self/task lists one entry per thread.
/// Without a readable /proc nsrun could not run at all; it then counts as one.
fn single_threaded() -> bool {
    std::fs::read_dir("/proc/self/task").map_or(true, |d| d.take(2).count() <= 1)
}

/// `fork()`. Returns `None` in the child.
pub fn fork() -> io::Result<Option<Pid>> {
    clone_into(CloneFlags::empty())
}

pub fn set_pdeathsig(sig: libc::c_int) -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let ret = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) };
    check(ret.into()).map(drop)
}

pub fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let ret = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    check(ret.into()).map(drop)
}

/// Empties the capability bounding set, whatever the kernel's last capability is.
pub fn drop_bounding_set() -> io::Result<()> {
    for cap in 0..64 {
        // SAFETY: prctl with integer arguments only.
        let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINVAL) {
                break; // past the kernel's last capability
            }
            return Err(io::Error::new(
                err.kind(),
                format!("prctl(PR_CAPBSET_DROP, {cap}): {err}"),
            ));
        }
    }
    Ok(())
}

/// Makes the mount at `path` and every mount below it `nosuid` (`mount_setattr` with
/// `AT_RECURSIVE`, Linux 5.12): exec on them honours neither set-user-ID and set-group-ID
/// bits nor file capabilities. Only the caller's mount namespace is changed; other flags
/// of each mount stay as they are.
pub fn set_nosuid_recursive(path: &CStr) -> io::Result<()> {
    /// `struct mount_attr` (MOUNT_ATTR_SIZE_VER0).
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_NOSUID: u64 = 0x2;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_NOSUID,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads a NUL-terminated path and a mount_attr of the size
    // given, both alive for the whole call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            (libc::AT_RECURSIVE | libc::AT_NO_AUTOMOUNT) as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check(ret).map(drop)
}

/// Marks every fd from `first` up close-on-exec, so only 0, 1 and 2 survive exec.
pub fn cloexec_from(first: RawFd) -> io::Result<()> {
    // SAFETY: close_range takes integers; CLOSE_RANGE_CLOEXEC closes nothing now.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    check(ret).map(drop)
}

/// Gives the command SIGPIPE's default action: Rust's runtime ignores it, and an ignored
/// signal stays ignored across exec (`yes | head` would never end). Other signals keep
/// the dispositions nsrun inherited, as they would without nsrun.
pub fn default_sigpipe() {
    // SAFETY: installing SIG_DFL has no handler to be unsafe about.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

/// A detached tmpfs mount (`fsopen` + `fsmount`), attached nowhere: files written into it
/// never touch the host's filesystem.
pub fn detached_tmpfs() -> io::Result<OwnedFd> {
    // SAFETY: fsopen reads a NUL-terminated name.
    let fs = unsafe {
        libc::syscall(
            libc::SYS_fsopen,
            c"tmpfs".as_ptr(),
            1, /* FSOPEN_CLOEXEC */
        )
    };
    let fs = own_fd(check(fs)? as RawFd);
    for (key, value) in [(c"size", c"64k"), (c"mode", c"0755")] {
        // SAFETY: fsconfig(FSCONFIG_SET_STRING) reads two NUL-terminated strings.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                1,
                key.as_ptr(),
                value.as_ptr(),
                0,
            )
        };
        check(ret)?;
    }
    // SAFETY: FSCONFIG_CMD_CREATE takes no pointers.
    let ret = unsafe { libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), 6, 0usize, 0usize, 0) };
    check(ret)?;
    // SAFETY: fsmount takes integers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            1, /* FSMOUNT_CLOEXEC */
            0,
        )
    };
    Ok(own_fd(check(ret)? as RawFd))
}

/// Mounts the file `name` of the detached mount `from` onto `target`, without following a
/// symlink at `target`: a link such as /etc/resolv.conf -> ../run/... is covered itself,
/// dangling or not, and the host's file is never touched.
pub fn mount_file_over(from: BorrowedFd<'_>, name: &CStr, target: &CStr) -> io::Result<()> {
    // SAFETY: open_tree reads a NUL-terminated path relative to a valid fd.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            from.as_raw_fd(),
            name.as_ptr(),
            1 | libc::O_CLOEXEC, /* OPEN_TREE_CLONE */
        )
    };
    let tree = own_fd(check(tree)? as RawFd);
    // SAFETY: move_mount reads two NUL-terminated paths; MOVE_MOUNT_F_EMPTY_PATH (4) uses
    // the fd itself as the source, and without MOVE_MOUNT_T_SYMLINKS the target is not
    // followed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            4,
        )
    };
    check(ret).map(drop)
}

/// `setsockopt` with an int value, for options nix does not wrap (NETLINK_EXT_ACK, ...).
pub fn setsockopt_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    opt: libc::c_int,
    val: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the value pointer and length describe a live c_int.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&val as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    check(ret.into()).map(drop)
}

/// `_exit`: leaves at once, without running destructors or flushing the parent's buffers
/// that a forked child shares a copy of.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

/// Takes ownership of an fd that a syscall just returned.
pub fn own_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: callers pass only fresh fds returned to them, owned by no one else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Closes every fd except `keep` (a forked child's copies of its parent's sockets and
/// pipe ends: the init must not hold nsrun's netlink sockets, nor the write end of the
/// pipe whose EOF tells it that nsrun died).
pub fn close_all_except(keep: &[RawFd]) -> io::Result<()> {
    let mut keep: Vec<RawFd> = keep.iter().copied().filter(|k| *k >= 0).collect();
    keep.sort_unstable();
    let mut first: libc::c_uint = 0;
    for k in keep {
        let k = k as libc::c_uint;
        if k > first {
            // SAFETY: close_range takes integers; the fds closed are our own copies.
            let ret = unsafe { libc::syscall(libc::SYS_close_range, first, k - 1, 0) };
            check(ret)?;
        }
        first = first.max(k + 1);
    }
    // SAFETY: as above.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, 0) };
    check(ret).map(drop)
}

/// `pidfd_open(pid, 0)`: an fd that polls readable once the process has exited.
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes integers.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    Ok(own_fd(check(ret)? as RawFd))
}

/// Names the calling thread (what `ps -o comm` shows).
/// Rewrites this process's command line in place (what `ps` and `pgrep -a` show): its
/// argument area, `arg_start..arg_end` of /proc/self/stat, then holds `name` and NULs.
/// Only for a process that reads its own arguments no more (the init, after clone).
pub fn set_cmdline(name: &[u8]) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // The fields after the command name, whose parentheses may hold anything: the first
    // of them is field 3, so arg_start (field 48) and arg_end (49) are at 45 and 46.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return;
    };
    let fields: Vec<usize> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let (Some(&start), Some(&end)) = (fields.get(45), fields.get(46)) else {
        return;
    };
    if start == 0 || end <= start + name.len() {
        return;
    }
    // SAFETY: [arg_start, arg_end) is this process's own argument area, on its stack
    // and writable, as the kernel reports it; nothing in this process holds a reference
    // into it any more (the init's configuration owns copies of what it needs).
    unsafe {
        let area = start as *mut u8;
        std::ptr::write_bytes(area, 0, end - start);
        std::ptr::copy_nonoverlapping(name.as_ptr(), area, name.len());
    }
}

pub fn set_name(name: &CStr) {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
}

/// Restores the default action of SIGCHLD: a parent that ignored it would make the
/// kernel reap nsrun's children before nsrun could read their status.
pub fn default_sigchld() {
    // SAFETY: installing SIG_DFL has no handler to be unsafe about.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
}

/// Makes `fd` (a terminal) the calling process's controlling terminal (TIOCSCTTY); the
/// caller has just become a session leader.
pub fn set_controlling_tty(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an int argument (0: do not steal).
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) };
    check(ret.into()).map(drop)
}

/// The window size of terminal `fd`.
pub fn window_size(fd: BorrowedFd<'_>) -> io::Result<libc::winsize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we own.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    check(ret.into()).map(|_| ws)
}

/// Sets the window size of terminal `fd` (the kernel signals its foreground group).
pub fn set_window_size(fd: BorrowedFd<'_>, ws: &libc::winsize) -> io::Result<()> {
    // SAFETY: TIOCSWINSZ reads one winsize from a struct we own.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, ws as *const libc::winsize) };
    check(ret.into()).map(drop)
}

/// `getsockopt(fd, IPPROTO_IP, opt, buf)` for iptables' table queries, where the buffer
/// carries input (the table's name) as well as output. Returns the length written.
pub fn getsockopt_buf(fd: BorrowedFd<'_>, opt: libc::c_int, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: the pointer and length describe a buffer we own for the whole call.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IP,
            opt,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    check(ret.into()).map(|_| len as usize)
}

/// `setsockopt(IPPROTO_IP, opt)` with a buffer, for x_tables' replace and add-counters.
pub fn setsockopt_buf(fd: BorrowedFd<'_>, opt: libc::c_int, buf: &[u8]) -> io::Result<()> {
    // SAFETY: the pointer and length describe a buffer we own for the whole call.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IP,
            opt,
            buf.as_ptr().cast(),
            buf.len() as libc::socklen_t,
        )
    };
    check(ret.into()).map(|_| ())
}

/// sizeof(struct xt_counters): packets and bytes, two u64.
const XT_COUNTERS_SIZE: usize = 16;

/// x_tables' IPT_SO_SET_REPLACE: `replace` is a `struct ipt_replace` with its entries;
/// its `counters` pointer (at `counters_at`) is set here to `old_counters`, where the
/// kernel writes the replaced table's counters (`num_counters` of 16 bytes each).
pub fn ipt_replace(
    fd: BorrowedFd<'_>,
    opt: libc::c_int,
    replace: &mut [u8],
    counters_at: usize,
    old_counters: &mut [u8],
) -> io::Result<()> {
    // The kernel writes num_counters (a u32 at counters_at - 4) * sizeof(struct
    // xt_counters) bytes to `old_counters`: refuse a buffer smaller than that, and a
    // header too short to hold the count and the pointer.
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
    let pointer = (old_counters.as_mut_ptr() as usize).to_ne_bytes();
    let count_at = counters_at
        .checked_sub(4)
        .ok_or_else(|| invalid("ipt_replace: counters pointer before num_counters"))?;
    let count_bytes = replace
        .get(count_at..counters_at)
        .ok_or_else(|| invalid("ipt_replace: header too short"))?;
    let num_counters = u32::from_ne_bytes(count_bytes.try_into().expect("4 bytes")) as usize;
    if num_counters.saturating_mul(XT_COUNTERS_SIZE) > old_counters.len() {
        return Err(invalid(
            "ipt_replace: counters buffer smaller than num_counters * 16",
        ));
    }
    replace
        .get_mut(counters_at..counters_at + pointer.len())
        .ok_or_else(|| invalid("ipt_replace: header too short"))?
        .copy_from_slice(&pointer);
    // SAFETY (of what the kernel does with the pointer): it writes at most
    // num_counters * 16 bytes there, checked above to fit; the buffer outlives the call.
    setsockopt_buf(fd, opt, replace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_with_other_threads_is_never_cloned() {
        // The test harness runs this test on a thread of its own.
        let parked =
            std::thread::spawn(|| std::thread::park_timeout(std::time::Duration::from_secs(5)));
        assert!(!single_threaded());
        let e = fork().unwrap_err();
        assert!(e.to_string().contains("other threads"), "{e}");
        parked.thread().unpark();
        let _ = parked.join();
    }

    #[test]
    fn ipt_replace_refuses_counters_the_kernel_would_overrun() {
        let mut replace = vec![0u8; 96];
        replace[84..88].copy_from_slice(&3u32.to_ne_bytes());
        let mut counters = vec![0u8; 2 * XT_COUNTERS_SIZE];
        // SAFETY: fd 0 is only borrowed; both calls fail before they use it.
        let stdin = unsafe { BorrowedFd::borrow_raw(0) };
        let e = ipt_replace(stdin, 64, &mut replace, 88, &mut counters).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        let e = ipt_replace(stdin, 64, &mut replace[..90], 88, &mut counters).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        // The pointer was not written for a refused call.
        assert_eq!(&replace[88..96], &[0; 8]);
    }
}
