//! Users and groups by name or number, read from /etc/passwd and /etc/group text.
//!
//! A static glibc binary cannot load NSS modules, so `getpwnam` is off limits; nsrun
//! reads the files itself. Users that exist only in LDAP or similar can still be named
//! by number.

use anyhow::{Result, bail};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, the primary group included.
    pub groups: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?;
            let _pw = f.next()?;
            let uid = f.next()?.parse().ok()?;
            let gid = f.next()?.parse().ok()?;
            let _gecos = f.next();
            Some(PasswdEntry {
                name: name.to_string(),
                uid,
                gid,
                home: f.next().unwrap_or("/").to_string(),
                shell: f.next().unwrap_or("/bin/sh").to_string(),
            })
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?;
            let _pw = f.next()?;
            let gid = f.next()?.parse().ok()?;
            let members = f
                .next()
                .unwrap_or("")
                .split(',')
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect();
            Some(GroupEntry {
                name: name.to_string(),
                gid,
                members,
            })
        })
        .collect()
}

/// Checks the shape of `--user USER[:GROUP]` without looking anything up.
pub fn validate_spec(spec: &str) -> Result<()> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 32
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-$".contains(&b))
            && !s.starts_with('-')
    };
    if !ok(user) || group.is_some_and(|g| !ok(g)) {
        bail!(
            "--user '{spec}' is not USER[:GROUP] by name or number, e.g. '--user nobody' or '--user 1000:1000'"
        );
    }
    Ok(())
}

/// Resolves `--user USER[:GROUP]` against the passwd and group files.
pub fn resolve_spec(spec: &str, passwd: &[PasswdEntry], groups: &[GroupEntry]) -> Result<Identity> {
    validate_spec(spec)?;
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entry = passwd.iter().find(|p| p.name == user);
    let (uid, name, primary) = match (entry, user.parse::<u32>()) {
        (Some(p), _) => (p.uid, Some(p.name.as_str()), Some(p.gid)),
        (None, Ok(uid)) => {
            let by_uid = passwd.iter().find(|p| p.uid == uid);
            (uid, by_uid.map(|p| p.name.as_str()), by_uid.map(|p| p.gid))
        }
        (None, Err(_)) => bail!(
            "--user: no user '{user}' in /etc/passwd; give a name from it or a number, e.g. '--user 1000'"
        ),
    };
    let gid = match group {
        Some(g) => match (groups.iter().find(|e| e.name == g), g.parse::<u32>()) {
            (Some(e), _) => e.gid,
            (None, Ok(gid)) => gid,
            (None, Err(_)) => bail!(
                "--user: no group '{g}' in /etc/group; give a name from it or a number, e.g. '--user {user}:1000'"
            ),
        },
        None => primary.unwrap_or(uid),
    };
    let groups = match (group, name) {
        // An explicit group means exactly that group, as `setpriv --regid` and `chroot --userspec` do.
        (Some(_), _) | (None, None) => vec![gid],
        (None, Some(name)) => supplementary(name, gid, groups),
    };
    Ok(Identity { uid, gid, groups })
}

/// The groups a user belongs to: the primary group and every group that lists the user.
pub fn supplementary(name: &str, primary: u32, groups: &[GroupEntry]) -> Vec<u32> {
    let mut out = vec![primary];
    for g in groups {
        if g.members.iter().any(|m| m == name) && !out.contains(&g.gid) {
            out.push(g.gid);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        # comment\n\
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
        alice:x:1000:1000:Alice:/home/alice:/bin/sh\n\
        broken line\n";
    const GROUP: &str = "root:x:0:\nnogroup:x:65534:\nalice:x:1000:\n\
        wheel:x:10:bob,alice\ndocker:x:999:alice\nstaff:x:50:\n";

    fn resolve(spec: &str) -> Result<Identity> {
        resolve_spec(spec, &parse_passwd(PASSWD), &parse_group(GROUP))
    }

    #[test]
    fn by_name_with_supplementary_groups() {
        let id = resolve("alice").unwrap();
        assert_eq!(
            id,
            Identity {
                uid: 1000,
                gid: 1000,
                groups: vec![1000, 10, 999]
            }
        );
    }

    #[test]
    fn by_number_known_and_unknown() {
        assert_eq!(resolve("65534").unwrap().gid, 65534);
        let id = resolve("4242").unwrap();
        assert_eq!(
            id,
            Identity {
                uid: 4242,
                gid: 4242,
                groups: vec![4242]
            }
        );
    }

    #[test]
    fn with_group_by_name_or_number() {
        let id = resolve("alice:staff").unwrap();
        assert_eq!(
            id,
            Identity {
                uid: 1000,
                gid: 50,
                groups: vec![50]
            }
        );
        assert_eq!(resolve("1000:77").unwrap().gid, 77);
    }

    #[test]
    fn rejects_unknown_and_malformed() {
        let e = resolve("mallory").unwrap_err().to_string();
        assert!(e.contains("no user 'mallory'"), "{e}");
        let e = resolve("alice:nogrp").unwrap_err().to_string();
        assert!(e.contains("no group 'nogrp'"), "{e}");
        for bad in ["", ":", "a:", ":b", "a b", "a\nb", "-x", "a:b:c"] {
            assert!(validate_spec(bad).is_err(), "{bad:?} accepted");
        }
    }
}
