//! `--info-file`: what scripts read about a running sandbox, in a file that exists
//! exactly while the sandbox does. Written atomically (a new file renamed over the
//! path, so a reader never sees half of it and a planted symlink is replaced, never
//! followed); removed by nsrun when the sandbox ends, and by the holder when nsrun was
//! killed (the registration carries the path and the file's device and inode, so a file someone
//! else put there since is left alone).

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::plan::Publish;

/// What the file says.
pub struct Info<'a> {
    pub nsrun_pid: u32,
    pub init_pid: i32,
    pub name: Option<&'a str>,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub host_link: &'a str,
    pub netns: &'a str,
    pub ports: &'a [Publish],
    /// Seconds since the epoch.
    pub started: u64,
}

/// A JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The file's text: one JSON object.
pub fn render(info: &Info) -> String {
    let ports: Vec<String> = info
        .ports
        .iter()
        .map(|p| {
            let proto = p.proto_name();
            format!(
                "{{\"proto\": \"{proto}\", \"host_ip\": \"{}\", \"host_port\": {}, \"sandbox_port\": {}}}",
                p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
                p.host_port,
                p.sandbox_port
            )
        })
        .collect();
    format!(
        "{{\"nsrun_pid\": {}, \"init_pid\": {}, \"name\": {}, \"address\": \"{}\", \"prefix\": {}, \"gateway\": \"{}\", \"host_link\": {}, \"netns\": {}, \"ports\": [{}], \"started\": {}}}\n",
        info.nsrun_pid,
        info.init_pid,
        info.name.map_or("null".to_string(), json_string),
        info.address,
        info.prefix,
        info.gateway,
        json_string(info.host_link),
        json_string(info.netns),
        ports.join(", "),
        info.started
    )
}

/// A file nsrun writes for the user (--pcap, --refusals), created anew, never through a
/// symlink, and given to the invoking user.
pub fn create_user_file(
    path: &std::path::Path,
    owner: (u32, u32),
    option: &str,
) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let shown = path.display();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .with_context(|| format!("{option} {shown}: create the file"))?;
    std::os::unix::fs::fchown(&file, Some(owner.0), Some(owner.1))
        .with_context(|| format!("{option} {shown}: give the file to uid {}", owner.0))?;
    Ok(file)
}
/// The written file; dropping it removes the file if it is still the one written.
pub struct InfoFile {
    pub path: PathBuf,
    pub inode: u64,
    pub device: u64,
}

impl InfoFile {
    /// Writes `text` to `path`: a new file next to it, renamed over it.
    pub fn write(path: &Path, text: &str) -> Result<InfoFile> {
        let what = || format!("--info-file {}", path.display());
        let file_name = path.file_name().with_context(|| {
            format!(
                "{}: not a file name, e.g. '--info-file /run/web.json'",
                what()
            )
        })?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // Absolute, so the holder (whose directory is /) finds it too.
        let dir =
            std::fs::canonicalize(&dir).with_context(|| format!("{}: its directory", what()))?;
        let path = dir.join(file_name);
        let tmp = dir.join(format!(
            ".{}.nsrun-{}",
            file_name.to_string_lossy(),
            std::process::id()
        ));
        let _ = std::fs::remove_file(&tmp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .with_context(|| format!("{}: create {}", what(), tmp.display()))?;
        let written = file
            .write_all(text.as_bytes())
            .and_then(|()| file.metadata())
            .and_then(|m| std::fs::rename(&tmp, &path).map(|()| (m.ino(), m.dev())));
        match written {
            Ok((inode, device)) => Ok(InfoFile {
                path,
                inode,
                device,
            }),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e).with_context(what)
            }
        }
    }
}

/// Removes `path` if it is still the file written (same device and inode; a symlink
/// there is not followed).
pub fn remove_if_same(path: &Path, inode: u64, device: u64) {
    if std::fs::symlink_metadata(path)
        .is_ok_and(|m| m.is_file() && m.ino() == inode && m.dev() == device)
    {
        let _ = std::fs::remove_file(path);
    }
}

impl Drop for InfoFile {
    fn drop(&mut self) {
        remove_if_same(&self.path, self.inode, self.device);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_field_as_json() {
        let ports = [Publish {
            host_ip: None,
            host_port: 8080,
            sandbox_port: 80,
            proto: libc::IPPROTO_TCP as u8,
        }];
        let text = render(&Info {
            nsrun_pid: 10,
            init_pid: 11,
            name: Some("web"),
            address: Ipv4Addr::new(10, 77, 0, 2),
            prefix: 31,
            gateway: Ipv4Addr::new(10, 77, 0, 3),
            host_link: "nsr02934000",
            netns: "/run/netns/web",
            ports: &ports,
            started: 1_700_000_000,
        });
        assert_eq!(
            text,
            "{\"nsrun_pid\": 10, \"init_pid\": 11, \"name\": \"web\", \"address\": \"10.77.0.2\", \"prefix\": 31, \"gateway\": \"10.77.0.3\", \"host_link\": \"nsr02934000\", \"netns\": \"/run/netns/web\", \"ports\": [{\"proto\": \"tcp\", \"host_ip\": \"0.0.0.0\", \"host_port\": 8080, \"sandbox_port\": 80}], \"started\": 1700000000}\n"
        );
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
