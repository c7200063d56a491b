//! `--name NAME`: the sandbox's network namespace at /run/netns/NAME (as `ip netns`
//! names them), and the lock that says a running nsrun owns it. The lock file records
//! the inode of the namespace nsrun mounted there, so a leftover of a killed nsrun is told
//! from a namespace another tool made under the same name later (`ip netns add`), which
//! is never touched.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub const NETNS_DIR: &str = "/run/netns";
pub const STATE_DIR: &str = "/run/nsrun";

pub fn netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

pub fn lock_path(name: &str) -> PathBuf {
    Path::new(STATE_DIR).join(format!("netns-{name}.lock"))
}

/// The name of a lock file's sandbox, if `file` is one.
pub fn name_of_lock(file: &str) -> Option<&str> {
    file.strip_prefix("netns-")?.strip_suffix(".lock")
}

/// Writes the inode of the namespace mounted at `path` into the (locked) lock file.
pub fn record(lock: &mut std::fs::File, path: &Path) -> std::io::Result<()> {
    let inode = std::fs::metadata(path)?.ino();
    lock.set_len(0)?;
    lock.write_all(format!("{inode}\n").as_bytes())
}

/// Whether /run/netns/NAME is still the namespace that nsrun recorded in NAME's lock
/// file (not a symlink, not another tool's namespace).
pub fn is_ours(name: &str) -> bool {
    if crate::plan::validate_netns_name(name).is_err() {
        return false;
    }
    let recorded = std::fs::read_to_string(lock_path(name))
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok());
    let mounted = std::fs::symlink_metadata(netns_path(name))
        .ok()
        .filter(|m| !m.file_type().is_symlink())
        .map(|m| m.ino());
    matches!((recorded, mounted), (Some(r), Some(m)) if r == m)
}

/// Unmounts and removes /run/netns/NAME if it is nsrun's (see [`is_ours`]), never
/// following a symlink; the lock file goes either way. For a lock nobody holds.
pub fn remove_stale(name: &str) {
    if is_ours(name) {
        let path = netns_path(name);
        let _ = nix::mount::umount2(
            &path,
            nix::mount::MntFlags::MNT_DETACH | nix::mount::MntFlags::UMOUNT_NOFOLLOW,
        );
        let _ = std::fs::remove_file(&path);
    }
    let _ = std::fs::remove_file(lock_path(name));
}
