//! What the user typed (Cli) becomes a Plan: the checked options, and the identity the
//! command gets. Every check of the options alone lives here, before nsrun reads the
//! host; what also needs the host's facts is decided in decide.rs.

use std::ffi::CString;
use std::net::Ipv4Addr;
use std::os::unix::ffi::OsStrExt;

use anyhow::{Context, Result, anyhow, bail};

use crate::addr::{Ipv4Net, PRIVATE_RANGES, SANDBOX_PREFIX};
use crate::cli::Cli;
use crate::host::Creds;
use crate::netlink::nft::{IPPROTO_TCP, IPPROTO_UDP};
use crate::users::{self, GroupEntry, Identity, PasswdEntry};

/// What nsrun will do, validated.
#[derive(Debug)]
pub struct Plan {
    pub command: Vec<CString>,
    /// None with `--no-net`.
    pub network: Option<NetPlan>,
    /// Nameservers given with `--dns`; empty means "as the host resolves".
    pub dns: Vec<Ipv4Addr>,
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub verbose: bool,
    pub wait_teardown: bool,
    pub stop_timeout: std::time::Duration,
    pub env: EnvPlan,
    pub workdir: Option<CString>,
    pub name: Option<String>,
    pub info_file: Option<std::path::PathBuf>,
    /// --refusals FILE: what was refused, as JSON lines.
    pub refusals: Option<std::path::PathBuf>,
    /// --pcap FILE and its bound.
    pub pcap: Option<(std::path::PathBuf, u64)>,
    pub tty: bool,
}

/// What the command's environment is made of.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EnvPlan {
    pub clear: bool,
    /// NAME=VALUE settings from --env-file and -e, in order (later wins).
    pub set: Vec<(String, String)>,
}

/// One published port: HOST_IP:HOST_PORT on the host to SANDBOX_PORT in the sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Publish {
    /// Only this host address; None: every address of the host.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub sandbox_port: u16,
    /// IPPROTO_TCP or IPPROTO_UDP.
    pub proto: u8,
}

impl Publish {
    /// "tcp" or "udp", as `-p` writes it.
    pub fn proto_name(&self) -> &'static str {
        if self.proto == IPPROTO_UDP {
            "udp"
        } else {
            "tcp"
        }
    }
}

/// The most ports one sandbox may publish (ranges count each port).
pub const MAX_PUBLISHED: usize = 1024;

/// Docker's syntax: `[HOST_IP:]HOST_PORT[-END]:SANDBOX_PORT[-END][/tcp|/udp]`.
pub fn parse_publish(spec: &str) -> Result<Vec<Publish>> {
    let bad = |why: &str| {
        anyhow!(
            "--publish {:?}: {why}; give [HOST_IP:]HOST_PORT[-END]:SANDBOX_PORT[-END][/tcp|/udp], e.g. '-p 8080:80' or '-p 127.0.0.1:5353:53/udp'",
            spec
        )
    };
    let (ports, proto) = match spec.rsplit_once('/') {
        Some((p, "tcp")) => (p, IPPROTO_TCP),
        Some((p, "udp")) => (p, IPPROTO_UDP),
        Some(_) => return Err(bad("the protocol is tcp or udp")),
        None => (spec, IPPROTO_TCP),
    };
    let parts: Vec<&str> = ports.split(':').collect();
    let (host_ip, host, sandbox) = match parts.as_slice() {
        [h, s] => (None, *h, *s),
        [ip, h, s] => (
            Some(
                ip.parse::<Ipv4Addr>()
                    .map_err(|_| bad("HOST_IP is not an IPv4 address"))?,
            ),
            *h,
            *s,
        ),
        _ => return Err(bad("not HOST_PORT:SANDBOX_PORT")),
    };
    let range = |r: &str| -> Result<(u16, u16)> {
        let (a, b) = r.split_once('-').unwrap_or((r, r));
        let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0);
        match (port(a), port(b)) {
            (Some(a), Some(b)) if a <= b => Ok((a, b)),
            _ => Err(bad("a port is a number from 1 to 65535, a range LOW-HIGH")),
        }
    };
    let (h0, h1) = range(host)?;
    let (s0, s1) = range(sandbox)?;
    if h1 - h0 != s1 - s0 {
        return Err(bad("the two ranges differ in length"));
    }
    Ok((0..=(h1 - h0))
        .map(|i| Publish {
            host_ip,
            host_port: h0 + i,
            sandbox_port: s0 + i,
            proto,
        })
        .collect())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetPlan {
    /// `-p`: host ports forwarded into the sandbox.
    pub publish: Vec<Publish>,
    pub pool: Ipv4Net,
    /// `--ip`: this address, not one from the pool.
    pub ip: Option<Ipv4Addr>,
    pub allow_host: bool,
    pub block_lan: bool,
    /// --allow and --allow-file: None when neither is given (everything not refused
    /// by default is open).
    pub allow: Option<crate::egress::AllowList>,
    /// --deny.
    pub deny: Vec<crate::egress::Dest>,
    /// --audit.
    pub audit: bool,
    /// --network and --subnet.
    pub network: Option<NetworkPlan>,
}

/// `--network NAME [--subnet CIDR]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkPlan {
    pub name: String,
    pub subnet: Option<Ipv4Net>,
    /// Where a new network's subnet comes from: --pool when given, else
    /// addr::NETWORK_POOL.
    pub pool: Ipv4Net,
}

/// What a user of a file-capability install may take: addresses of nsrun's own pool
/// only. Any other private address may be one the host reaches through its default
/// route (a VPC or corporate resolver, a cloud's metadata service at 100.100.100.200),
/// which no route of the host's names, so nothing on the host can tell it is in use;
/// only root, on its own command line, may hand such an address to a sandbox.
pub fn check_user_addresses(privilege: Privilege, net: &NetPlan) -> Result<()> {
    if privilege != Privilege::FileCaps {
        return Ok(());
    }
    let default: Ipv4Net = crate::cli::DEFAULT_POOL
        .parse()
        .map_err(|e| anyhow!("nsrun's default pool: {e}"))?;
    let inside = |net: &Ipv4Net| net.prefix >= default.prefix && default.overlaps(net);
    if let Some(ip) = net.ip {
        if !inside(&Ipv4Net::new(ip, 32)) {
            bail!(
                "--ip {ip}: without sudo, nsrun gives sandboxes addresses only from its pool {default}, since another address may be one the host reaches through its default route (a resolver, a metadata service); choose one there, e.g. '--ip 10.200.0.2', or run nsrun with sudo"
            );
        }
    } else if !inside(&net.pool) {
        bail!(
            "--pool {}: without sudo, nsrun takes sandbox addresses only from its pool {default}, since another range may hold destinations the host reaches through its default route; give a part of it, e.g. '--pool 10.200.64.0/18', or run nsrun with sudo",
            net.pool
        );
    }
    Ok(())
}

/// How many nameservers a resolv.conf may usefully list (glibc's MAXNS).
pub const MAX_NAMESERVERS: usize = 3;

/// The private ranges, for messages: "10.0.0.0/8, 172.16.0.0/12, ...".
fn private_ranges() -> String {
    PRIVATE_RANGES
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn from_cli(cli: Cli) -> Result<Plan> {
    let command = cli
        .command
        .iter()
        .map(|a| {
            CString::new(a.as_bytes())
                .map_err(|_| anyhow!("COMMAND: an argument contains a NUL byte"))
        })
        .collect::<Result<Vec<_>>>()?;
    if command.first().is_none_or(|c| c.as_bytes().is_empty()) {
        bail!(
            "COMMAND is empty: give the program to run after '--', e.g. 'nsrun -- sh -c \"echo hi\"'"
        );
    }
    if let (true, Some(name)) = (cli.no_net, &cli.network) {
        bail!(
            "--network {name} with --no-net: a member of a network has a network; drop --no-net, e.g. 'nsrun --network {name} -- CMD'"
        );
    }
    let network = if cli.no_net {
        None
    } else {
        let mut publish = Vec::new();
        for spec in &cli.publish {
            publish.extend(parse_publish(spec)?);
        }
        if publish.len() > MAX_PUBLISHED {
            bail!(
                "--publish: {} ports is more than {MAX_PUBLISHED}; publish fewer, e.g. '-p 8080-8089:80-89'",
                publish.len()
            );
        }
        let (allow, deny) = egress_plan(&cli.allow, &cli.allow_file, &cli.deny)?;
        if cli.audit && allow.is_none() && deny.is_empty() {
            bail!(
                "--audit reports what --allow and --deny would refuse: give them, e.g. '--audit --allow-file policy.txt'"
            );
        }
        Some(NetPlan {
            publish,
            pool: parse_pool(&cli.pool)?,
            ip: cli.ip.as_deref().map(parse_ip).transpose()?,
            allow_host: cli.allow_host,
            block_lan: cli.block_lan,
            allow: allow.map(Into::into),
            deny,
            audit: cli.audit,
            network: network_plan(&cli)?,
        })
    };
    let dns = cli
        .dns
        .iter()
        .map(|d| parse_dns(d))
        .collect::<Result<Vec<_>>>()?;
    if dns.len() > MAX_NAMESERVERS {
        bail!(
            "--dns given {} times: the resolver library uses at most {MAX_NAMESERVERS} nameservers; give at most {MAX_NAMESERVERS}, e.g. '--dns 192.0.2.53 --dns 192.0.2.54'",
            dns.len()
        );
    }
    if let Some(name) = &cli.hostname {
        validate_hostname(name)?;
    }
    if let Some(name) = &cli.name {
        validate_netns_name(name)?;
    }
    // The name is the host name too, when it is one and none is given.
    let hostname = cli
        .hostname
        .clone()
        .or_else(|| cli.name.clone().filter(|n| validate_hostname(n).is_ok()));
    if let Some(spec) = &cli.user {
        users::validate_spec(spec)?;
    }
    Ok(Plan {
        command,
        network,
        dns,
        hostname,
        user: cli.user,
        verbose: cli.verbose,
        wait_teardown: cli.wait_teardown,
        stop_timeout: cli.stop_timeout,
        name: cli.name.clone(),
        tty: cli.tty,
        info_file: cli.info_file.clone(),
        pcap: cli.pcap.clone().map(|p| (p, cli.pcap_size)),
        refusals: cli.refusals.clone(),
        env: env_plan(&cli.env, &cli.env_file, cli.clearenv, |k| {
            std::env::var(k).ok()
        })?,
        workdir: cli
            .workdir
            .as_ref()
            .map(|d| {
                CString::new(d.as_os_str().as_bytes()).map_err(|_| {
                    anyhow!("--workdir: the path contains a NUL byte; e.g. '-w /srv/app'")
                })
            })
            .transpose()?,
    })
}

/// --allow, --allow-file and --deny, checked.
type Egress = (Option<Vec<crate::egress::Dest>>, Vec<crate::egress::Dest>);

fn egress_plan(allow: &[String], files: &[std::path::PathBuf], deny: &[String]) -> Result<Egress> {
    use crate::egress::{MAX_DESTS, parse_dest, parse_file};
    let mut allowed = Vec::new();
    for spec in allow {
        allowed.push(parse_dest(spec, "--allow")?);
    }
    for file in files {
        let shown = file.display().to_string();
        let text = crate::host::read_config(&file.to_string_lossy())
            .map_err(|e| anyhow!("--allow-file {shown}: {e}; give a readable file, one destination per line"))?
            .ok_or_else(|| anyhow!("--allow-file {shown}: no such file; give a readable file, one destination per line"))?;
        allowed.extend(parse_file(&text, &shown)?);
    }
    let denied = deny
        .iter()
        .map(|spec| parse_dest(spec, "--deny"))
        .collect::<Result<Vec<_>>>()?;
    if let Some(d) = denied
        .iter()
        .find(|d| !matches!(d.target, crate::egress::Target::Net(_)))
    {
        bail!(
            "--deny {:?}: --deny takes addresses and prefixes; a name that is not allowed is refused already once --allow is given, e.g. '--deny 198.51.100.0/24'",
            d.target
        );
    }
    if allowed.len() + denied.len() > MAX_DESTS {
        bail!(
            "--allow/--deny: {} destinations is more than {MAX_DESTS}; give prefixes that cover several, e.g. '--allow 203.0.113.0/24'",
            allowed.len() + denied.len()
        );
    }
    let given = !allow.is_empty() || !files.is_empty();
    Ok((given.then_some(allowed), denied))
}

/// A variable name as a shell accepts it.
fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Parses -e, --env-file and --clearenv. `-e NAME` takes NAME from nsrun's environment
/// (and sets nothing when it is unset, as docker does).
pub fn env_plan(
    env: &[String],
    files: &[std::path::PathBuf],
    clear: bool,
    get: impl Fn(&str) -> Option<String>,
) -> Result<EnvPlan> {
    let mut set = Vec::new();
    let mut add = |item: &str, origin: &str| -> Result<()> {
        let (name, value) = match item.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (item, None),
        };
        if !valid_env_name(name) || item.contains('\0') {
            bail!(
                "{origin} {:?}: not NAME=VALUE with a name of letters, digits and '_'; e.g. '-e RUST_LOG=debug' or '-e HOME'",
                item
            );
        }
        if let Some(value) = value.or_else(|| get(name)) {
            set.push((name.to_string(), value));
        }
        Ok(())
    };
    for file in files {
        let shown = file.display();
        let text = crate::host::read_config(&file.to_string_lossy())
            .map_err(|e| {
                anyhow!("--env-file {shown}: {e}; give a readable file of NAME=VALUE lines")
            })?
            .ok_or_else(|| {
                anyhow!("--env-file {shown}: no such file; give a file of NAME=VALUE lines")
            })?;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            add(line, &format!("--env-file {shown}:"))?;
        }
    }
    for item in env {
        add(item, "--env")?;
    }
    Ok(EnvPlan { clear, set })
}

/// Whom nsrun runs the command as, for its environment: the caller (nothing changes), a
/// user with a passwd entry, or a bare uid that has none (`--user 4242`).
#[derive(Clone, Copy, Debug)]
pub enum NewUser<'a> {
    Unchanged,
    Entry(&'a users::PasswdEntry),
    Uid(u32),
}

impl<'a> From<Option<&'a users::PasswdEntry>> for NewUser<'a> {
    fn from(entry: Option<&'a users::PasswdEntry>) -> Self {
        entry.map_or(NewUser::Unchanged, NewUser::Entry)
    }
}

/// The command's environment: nsrun's (or, with --clearenv, only the basics), the
/// target user's HOME, USER, LOGNAME and SHELL when nsrun changes user, then -e.
/// A uid with no passwd entry gets HOME=/, USER and LOGNAME its number and
/// SHELL=/bin/sh, never the caller's (root's) HOME or name.
pub fn command_env<'a>(
    plan: &EnvPlan,
    inherited: &[(String, String)],
    user: impl Into<NewUser<'a>>,
) -> Vec<CString> {
    const BASICS: [&str; 7] = ["PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "LANG"];
    let mut env: Vec<(String, String)> = inherited
        .iter()
        .filter(|(k, _)| !plan.clear || BASICS.contains(&k.as_str()))
        .cloned()
        .collect();
    let put = |env: &mut Vec<(String, String)>, k: &str, v: String| {
        env.retain(|(name, _)| name != k);
        env.push((k.to_string(), v));
    };
    if plan.clear && !env.iter().any(|(k, _)| k == "PATH") {
        put(&mut env, "PATH", "/usr/local/bin:/usr/bin:/bin".into());
    }
    let who = match user.into() {
        NewUser::Unchanged => None,
        NewUser::Entry(u) => Some((u.home.clone(), u.name.clone(), u.shell.clone())),
        NewUser::Uid(uid) => Some(("/".into(), uid.to_string(), "/bin/sh".into())),
    };
    if let Some((home, name, shell)) = who {
        put(&mut env, "HOME", home);
        put(&mut env, "USER", name.clone());
        put(&mut env, "LOGNAME", name);
        put(&mut env, "SHELL", shell);
    }
    for (k, v) in &plan.set {
        put(&mut env, k, v.clone());
    }
    env.into_iter()
        .filter_map(|(k, v)| CString::new(format!("{k}={v}")).ok())
        .collect()
}

pub fn parse_ip(s: &str) -> Result<Ipv4Addr> {
    let ip: Ipv4Addr = s
        .parse()
        .map_err(|_| anyhow!("--ip {:?} is not an IPv4 address; e.g. '--ip 10.77.0.2'", s))?;
    if !PRIVATE_RANGES.iter().any(|r| r.contains(ip)) {
        bail!(
            "--ip {ip}: not a private address, so it could be a real destination of the host; give one from {}; e.g. '--ip 10.77.0.2'",
            private_ranges()
        );
    }
    Ok(ip)
}

pub fn parse_pool(s: &str) -> Result<Ipv4Net> {
    let pool: Ipv4Net = s.parse().map_err(|e| {
        anyhow!("--pool {s:?}: {e}; give an IPv4 prefix, e.g. '--pool 10.200.0.0/16'")
    })?;
    if pool.prefix > SANDBOX_PREFIX {
        bail!(
            "--pool {pool}: too small for one sandbox, which needs a /30; e.g. '--pool 10.200.0.0/16'"
        );
    }
    if pool.addr != pool.network() {
        bail!(
            "--pool {pool}: host bits are set; did you mean '--pool {}/{}'?",
            pool.network(),
            pool.prefix
        );
    }
    if !PRIVATE_RANGES
        .iter()
        .any(|r| r.prefix <= pool.prefix && r.overlaps(&pool))
    {
        bail!(
            "--pool {pool}: not a private range, so its addresses could be real destinations of the host; nsrun takes sandbox addresses only from {}; e.g. '--pool 10.201.0.0/16'",
            private_ranges()
        );
    }
    Ok(pool)
}

pub fn parse_dns(s: &str) -> Result<Ipv4Addr> {
    let shown = s.escape_debug();
    let ip: Ipv4Addr = s.parse().map_err(|_| {
        anyhow!("--dns \"{shown}\" is not an IPv4 address; e.g. '--dns 192.0.2.53'")
    })?;
    if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() {
        bail!("--dns {ip} cannot be a nameserver; e.g. '--dns 192.0.2.53'");
    }
    Ok(ip)
}

/// A name `ip netns` accepts: letters, digits, '.', '_', '-', not "." or "..".
/// --network NAME (a DNS label: the members' names live under NAME.nsrun.internal) and
/// --subnet CIDR.
fn network_plan(cli: &Cli) -> Result<Option<NetworkPlan>> {
    let Some(name) = &cli.network else {
        return Ok(None);
    };
    let label_ok = !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !label_ok {
        bail!(
            "--network {name:?}: not a network name (letters, digits and inner '-', at most 32); e.g. '--network lab'"
        );
    }
    let subnet = match &cli.subnet {
        None => None,
        Some(s) => {
            let subnet: Ipv4Net = s.parse().map_err(|e| {
                anyhow!("--subnet {s:?}: {e}; give an IPv4 prefix, e.g. '--subnet 10.10.0.0/24'")
            })?;
            if !(16..=29).contains(&subnet.prefix) {
                bail!(
                    "--subnet {subnet}: a network's subnet is a /16 to a /29; e.g. '--subnet {}/24'",
                    subnet.network()
                );
            }
            if subnet.addr != subnet.network() {
                bail!(
                    "--subnet {subnet}: host bits are set; did you mean '--subnet {}/{}'?",
                    subnet.network(),
                    subnet.prefix
                );
            }
            // Members would not reach the real destinations of a public range.
            if !PRIVATE_RANGES
                .iter()
                .any(|r| r.prefix <= subnet.prefix && r.overlaps(&subnet))
            {
                bail!(
                    "--subnet {subnet}: not a private range, so it could hold real destinations; give one inside 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or 100.64.0.0/10, e.g. '--subnet 10.10.0.0/24'"
                );
            }
            if let Some(ip) = cli.ip.as_deref().and_then(|i| i.parse::<Ipv4Addr>().ok()) {
                let range = crate::addr::member_range(subnet);
                if !range.contains(&u32::from(ip)) {
                    bail!(
                        "--ip {ip}: not a member's address in --subnet {subnet} (from {} to {}); e.g. '--ip {}'",
                        Ipv4Addr::from(*range.start()),
                        Ipv4Addr::from(*range.end()),
                        Ipv4Addr::from(*range.start() + 3)
                    );
                }
            }
            Some(subnet)
        }
    };
    let pool = if cli.pool == crate::cli::DEFAULT_POOL {
        crate::addr::NETWORK_POOL
            .parse()
            .map_err(|e| anyhow!("{e}"))?
    } else {
        parse_pool(&cli.pool)?
    };
    Ok(Some(NetworkPlan {
        name: name.clone(),
        subnet,
        pool,
    }))
}

pub fn validate_netns_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        bail!(
            "--name {:?}: not a namespace name (letters, digits, '.', '_', '-', at most 64); e.g. '--name web'",
            name
        );
    }
    Ok(())
}

/// RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens, at most
/// 64 bytes (the kernel's limit for the UTS name).
pub fn validate_hostname(name: &str) -> Result<()> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.len() > 64 {
        bail!(
            "--hostname: {} bytes is too long (at most 64); e.g. '--hostname build1'",
            name.len()
        );
    }
    if !name.split('.').all(label_ok) {
        bail!(
            "--hostname \"{}\" is not a host name (letters, digits, inner '-' and '.'); e.g. '--hostname build1'",
            name.escape_debug()
        );
    }
    Ok(())
}

/// How nsrun holds the power it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Privilege {
    /// Real and effective uid 0 with CAP_SYS_ADMIN and CAP_NET_ADMIN.
    Root,
    /// An ordinary user running a binary with file capabilities: trusts nothing from the
    /// environment.
    FileCaps,
    /// No privilege: only `--no-net`, through a user namespace.
    UserNamespace,
}

pub const SETCAP_HINT: &str = "run with sudo, or install with 'sudo setcap cap_net_admin,cap_sys_admin,cap_setpcap+ep $(command -v nsrun)'";

pub fn privilege(creds: &Creds, network: bool) -> Result<Privilege> {
    let admin = creds.net_admin && creds.sys_admin;
    if creds.euid == 0 && creds.ruid == 0 && admin && creds.setpcap {
        return Ok(Privilege::Root);
    }
    if admin && creds.setpcap && creds.euid != 0 {
        return Ok(Privilege::FileCaps);
    }
    if !network {
        return Ok(Privilege::UserNamespace);
    }
    let mut missing = Vec::new();
    if !creds.net_admin {
        missing.push("CAP_NET_ADMIN");
    }
    if !creds.sys_admin {
        missing.push("CAP_SYS_ADMIN");
    }
    if !creds.setpcap {
        missing.push("CAP_SETPCAP");
    }
    if missing.is_empty() {
        // Effective uid 0 without real uid 0 (a set-user-ID install): not supported.
        bail!("need real uid 0 or file capabilities, not a set-user-ID root binary: {SETCAP_HINT}");
    }
    bail!(
        "need {} to set up a network: {SETCAP_HINT}; or use --no-net",
        missing.join(" and ")
    )
}

/// The errnos with which a kernel without nf_tables answers a NETLINK_NETFILTER socket
/// or an nf_tables request.
pub fn nf_tables_missing(errno: i32) -> bool {
    errno == libc::EPROTONOSUPPORT || errno == libc::EOPNOTSUPP || errno == libc::EAFNOSUPPORT
}

/// The error for a kernel without nf_tables: what failed, and the two ways forward.
pub fn no_nf_tables(cause: &dyn std::fmt::Display) -> String {
    format!(
        "{cause}: this kernel has no nf_tables for nsrun's NAT and filters; load it ('sudo modprobe nf_tables') or use --no-net"
    )
}

/// Where SUDO_UID and friends pointed, when they can be trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SudoCaller {
    pub uid: u32,
    pub gid: u32,
    pub user: Option<String>,
}

/// Who the command runs as: `--user` when given; under sudo the caller; otherwise the
/// invoking user. With file capabilities the environment is not trusted, and the command
/// can only run as the caller.
pub fn choose_identity(
    privilege: Privilege,
    creds: &Creds,
    current_groups: &[u32],
    sudo: Option<&SudoCaller>,
    user_spec: Option<&str>,
    passwd: &[PasswdEntry],
    groups: &[GroupEntry],
) -> Result<Identity> {
    let caller = Identity {
        uid: creds.ruid,
        gid: creds.rgid,
        groups: current_groups.to_vec(),
    };
    if let Some(spec) = user_spec {
        let id = users::resolve_spec(spec, passwd, groups)?;
        if privilege != Privilege::Root && (id.uid != caller.uid || id.gid != caller.gid) {
            bail!(
                "--user {spec}: only root may run the command as another user; drop --user or run with sudo"
            );
        }
        return Ok(id);
    }
    match (privilege, sudo) {
        (Privilege::Root, Some(s)) => {
            let groups = match &s.user {
                Some(name) => users::supplementary(name, s.gid, groups),
                None => vec![s.gid],
            };
            Ok(Identity {
                uid: s.uid,
                gid: s.gid,
                groups,
            })
        }
        _ => Ok(caller),
    }
}

/// Reads SUDO_UID, SUDO_GID and SUDO_USER from an environment lookup.
pub fn sudo_caller(get: impl Fn(&str) -> Option<String>) -> Result<Option<SudoCaller>> {
    let (Some(uid), Some(gid)) = (get("SUDO_UID"), get("SUDO_GID")) else {
        return Ok(None);
    };
    let uid = uid.parse().context("SUDO_UID is not a number")?;
    let gid = gid.parse().context("SUDO_GID is not a number")?;
    let user = get("SUDO_USER").filter(|u| users::validate_spec(u).is_ok() && !u.contains(':'));
    Ok(Some(SudoCaller { uid, gid, user }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn plan(args: &[&str]) -> Result<Plan> {
        let cli = Cli::try_parse_from(std::iter::once("nsrun").chain(args.iter().copied()))?;
        from_cli(cli)
    }

    #[test]
    fn command_is_verbatim_after_double_dash() {
        let p = plan(&["--", "printf", "%s", "--no-net"]).unwrap();
        assert_eq!(p.command, [c"printf", c"%s", c"--no-net"]);
        assert!(p.network.is_some());
        let p = plan(&["--no-net", "sh", "-c", "exit 3"]).unwrap();
        assert_eq!(p.command, [c"sh", c"-c", c"exit 3"]);
        assert!(p.network.is_none());
    }

    #[test]
    fn missing_or_empty_command_is_rejected() {
        assert!(plan(&[]).is_err());
        assert!(plan(&["--no-net"]).is_err());
        let e = plan(&["--", ""]).unwrap_err().to_string();
        assert!(e.contains("COMMAND is empty"), "{e}");
    }

    #[test]
    fn dns_must_be_one_ipv4_address() {
        let p = plan(&["--dns", "192.0.2.53", "--dns", "198.51.100.1", "true"]).unwrap();
        assert_eq!(p.dns.len(), 2);
        let e = plan(&["--dns", "1.1.1.1\nsearch evil", "true"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--dns \"1.1.1.1\\nsearch evil\" is not an IPv4 address"),
            "{e}"
        );
        assert!(!e.contains('\n'));
        assert!(plan(&["--dns", "0.0.0.0", "true"]).is_err());
        assert!(plan(&["--dns", "example", "true"]).is_err());
    }

    #[test]
    fn environment_is_built_as_documented() {
        let get = |k: &str| (k == "FROM_CALLER").then(|| "yes".to_string());
        let p = env_plan(
            &[
                "A=1".into(),
                "FROM_CALLER".into(),
                "UNSET".into(),
                "A=2".into(),
            ],
            &[],
            false,
            get,
        )
        .unwrap();
        assert_eq!(
            p.set,
            [
                ("A".into(), "1".into()),
                ("FROM_CALLER".into(), "yes".into()),
                ("A".into(), "2".into())
            ]
        );
        assert!(env_plan(&["1A=x".into()], &[], false, get).is_err());
        assert!(env_plan(&["A B=x".into()], &[], false, get).is_err());
        let inherited = vec![
            ("PATH".to_string(), "/bin".to_string()),
            ("SSH_AUTH_SOCK".to_string(), "/tmp/agent".to_string()),
            ("HOME".to_string(), "/root".to_string()),
        ];
        let www = users::parse_passwd("www-data:x:33:33:www:/var/www:/usr/sbin/nologin\n");
        let all = command_env(&p, &inherited, Some(&www[0]));
        let text: Vec<String> = all
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect();
        assert!(text.contains(&"SSH_AUTH_SOCK=/tmp/agent".to_string()));
        assert!(text.contains(&"HOME=/var/www".to_string()));
        assert!(text.contains(&"USER=www-data".to_string()));
        assert!(text.contains(&"A=2".to_string()) && !text.contains(&"A=1".to_string()));
        let clear = EnvPlan {
            clear: true,
            set: vec![],
        };
        let text: Vec<String> = command_env(&clear, &inherited, None)
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect();
        assert_eq!(text, ["PATH=/bin", "HOME=/root"]);
    }

    /// `--user 4242`, a uid with no passwd entry: not the caller's HOME or name.
    #[test]
    fn a_uid_without_passwd_entry_gets_home_slash_and_its_number() {
        let inherited = vec![
            ("HOME".to_string(), "/root".to_string()),
            ("USER".to_string(), "root".to_string()),
            ("SHELL".to_string(), "/bin/bash".to_string()),
            ("TERM".to_string(), "xterm".to_string()),
        ];
        let keep = EnvPlan {
            clear: false,
            set: vec![("HOME".into(), "/tmp".into())],
        };
        for plan in [EnvPlan::default(), keep] {
            let text: Vec<String> = command_env(&plan, &inherited, NewUser::Uid(4242))
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect();
            let home = plan.set.first().map_or("/", |(_, v)| v.as_str());
            assert!(text.contains(&format!("HOME={home}")), "{text:?}");
            assert!(text.contains(&"USER=4242".to_string()), "{text:?}");
            assert!(text.contains(&"LOGNAME=4242".to_string()), "{text:?}");
            assert!(text.contains(&"SHELL=/bin/sh".to_string()), "{text:?}");
            assert!(text.contains(&"TERM=xterm".to_string()), "{text:?}");
            assert!(!text.iter().any(|v| v.contains("root")), "{text:?}");
        }
        // No change of user: the caller's own values stay.
        let text: Vec<String> = command_env(&EnvPlan::default(), &inherited, NewUser::Unchanged)
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect();
        assert!(text.contains(&"HOME=/root".to_string()), "{text:?}");
    }

    #[test]
    fn publish_takes_dockers_syntax() {
        let p = parse_publish("8080:80").unwrap();
        assert_eq!(
            p,
            [Publish {
                host_ip: None,
                host_port: 8080,
                sandbox_port: 80,
                proto: 6
            }]
        );
        let p = parse_publish("127.0.0.1:5353:53/udp").unwrap();
        assert_eq!(p[0].host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(p[0].proto, 17);
        let p = parse_publish("8000-8002:9000-9002/tcp").unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!((p[2].host_port, p[2].sandbox_port), (8002, 9002));
        for bad in [
            "80",
            "0:80",
            "8080:80/sctp",
            "a:80",
            "1-3:1-2",
            "1.2.3:80:80",
            "70000:80",
            "9-8:9-8",
        ] {
            let e = parse_publish(bad).unwrap_err().to_string();
            assert!(e.contains("-p 8080:80"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_file_capability_user_takes_addresses_of_the_default_pool_only() {
        let net = |ip: Option<&str>, pool: &str| NetPlan {
            publish: Vec::new(),
            pool: pool.parse().unwrap(),
            ip: ip.map(|i| i.parse().unwrap()),
            allow_host: false,
            block_lan: false,
            allow: None,
            deny: vec![],
            audit: false,
            network: None,
        };
        let user = Privilege::FileCaps;
        assert!(check_user_addresses(user, &net(None, "10.200.0.0/16")).is_ok());
        assert!(check_user_addresses(user, &net(None, "10.200.64.0/18")).is_ok());
        assert!(check_user_addresses(user, &net(Some("10.200.3.2"), "10.200.0.0/16")).is_ok());
        let e = check_user_addresses(user, &net(Some("10.66.0.53"), "10.200.0.0/16"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--ip 10.66.0.53") && e.contains("e.g. '--ip 10.200.0.2'"),
            "{e}"
        );
        for pool in ["100.100.100.200/30", "10.0.0.0/8", "10.201.0.0/16"] {
            let e = check_user_addresses(user, &net(None, pool))
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("--pool {pool}")), "{e}");
        }
        // Root decides on its own command line.
        assert!(
            check_user_addresses(Privilege::Root, &net(Some("10.66.0.53"), "10.200.0.0/16"))
                .is_ok()
        );
        assert!(check_user_addresses(Privilege::Root, &net(None, "100.100.100.200/30")).is_ok());
    }

    #[test]
    fn pool_is_validated() {
        assert_eq!(
            parse_pool("10.201.0.0/24").unwrap().to_string(),
            "10.201.0.0/24"
        );
        let e = parse_pool("10.201.0.1/24").unwrap_err().to_string();
        assert!(e.contains("did you mean '--pool 10.201.0.0/24'"), "{e}");
        assert!(parse_pool("10.201.0.0/31").is_err());
        assert!(parse_pool("127.0.0.0/8").is_err());
        assert!(parse_pool("169.254.0.0/16").is_err());
        assert!(parse_pool("10.0.0.0").is_err());
        assert!(parse_pool("0.0.0.0/0").is_err());
        // Only private ranges: a public pool would take over real destinations.
        for public in [
            "203.0.113.0/30",
            "8.8.8.0/24",
            "10.0.0.0/7",
            "172.32.0.0/16",
            "100.128.0.0/16",
        ] {
            let e = parse_pool(public).unwrap_err().to_string();
            assert!(
                e.contains("not a private range") && e.contains("10.0.0.0/8"),
                "{e}"
            );
        }
        for private in [
            "10.0.0.0/8",
            "172.31.0.0/16",
            "192.168.77.0/24",
            "100.64.0.0/10",
        ] {
            assert!(parse_pool(private).is_ok(), "{private}");
        }
    }

    #[test]
    fn hostname_is_validated() {
        validate_hostname("build1").unwrap();
        validate_hostname("a.b-c.d").unwrap();
        for bad in ["", "-a", "a-", "a..b", "a b", "a\nb", &"x".repeat(65)] {
            assert!(validate_hostname(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn no_net_conflicts_with_network_flags() {
        assert!(plan(&["--no-net", "--allow-host", "true"]).is_err());
        assert!(plan(&["--no-net", "--dns", "192.0.2.1", "true"]).is_err());
    }

    fn creds(uid: u32, caps: bool) -> Creds {
        Creds {
            ruid: uid,
            euid: uid,
            rgid: uid,
            net_admin: caps,
            sys_admin: caps,
            setpcap: caps,
        }
    }

    #[test]
    fn privilege_modes() {
        assert_eq!(privilege(&creds(0, true), true).unwrap(), Privilege::Root);
        assert_eq!(
            privilege(&creds(1000, true), true).unwrap(),
            Privilege::FileCaps
        );
        assert_eq!(
            privilege(&creds(1000, false), false).unwrap(),
            Privilege::UserNamespace
        );
        let e = privilege(&creds(1000, false), true)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("need CAP_NET_ADMIN and CAP_SYS_ADMIN and CAP_SETPCAP"),
            "{e}"
        );
        assert!(e.contains("setcap") && e.contains("--no-net"), "{e}");
        // root in a container without CAP_SYS_ADMIN
        let mut c = creds(0, true);
        c.sys_admin = false;
        assert!(privilege(&c, true).is_err());
        assert_eq!(privilege(&c, false).unwrap(), Privilege::UserNamespace);
    }

    #[test]
    fn identity_follows_sudo_user_and_trust() {
        let passwd =
            users::parse_passwd("alice:x:1000:1000::/:/bin/sh\nbob:x:1001:1001::/:/bin/sh\n");
        let groups = users::parse_group("wheel:x:10:alice\n");
        let sudo = SudoCaller {
            uid: 1000,
            gid: 1000,
            user: Some("alice".into()),
        };
        let root = creds(0, true);
        let id = choose_identity(
            Privilege::Root,
            &root,
            &[0],
            Some(&sudo),
            None,
            &passwd,
            &groups,
        )
        .unwrap();
        assert_eq!(
            id,
            Identity {
                uid: 1000,
                gid: 1000,
                groups: vec![1000, 10]
            }
        );
        let id =
            choose_identity(Privilege::Root, &root, &[0], None, None, &passwd, &groups).unwrap();
        assert_eq!(id.uid, 0);
        let id = choose_identity(
            Privilege::Root,
            &root,
            &[0],
            Some(&sudo),
            Some("bob"),
            &passwd,
            &groups,
        )
        .unwrap();
        assert_eq!(id.uid, 1001);
        // File capabilities: SUDO_* is ignored, --user may only name the caller.
        let user = creds(1001, true);
        let id = choose_identity(
            Privilege::FileCaps,
            &user,
            &[1001, 7],
            Some(&sudo),
            None,
            &passwd,
            &groups,
        )
        .unwrap();
        assert_eq!(
            id,
            Identity {
                uid: 1001,
                gid: 1001,
                groups: vec![1001, 7]
            }
        );
        assert!(
            choose_identity(
                Privilege::FileCaps,
                &user,
                &[],
                None,
                Some("alice"),
                &passwd,
                &groups
            )
            .is_err()
        );
        assert!(
            choose_identity(
                Privilege::FileCaps,
                &user,
                &[],
                None,
                Some("bob"),
                &passwd,
                &groups
            )
            .is_ok()
        );
    }

    #[test]
    fn kernel_without_nf_tables_says_what_to_do() {
        let cause = std::io::Error::from_raw_os_error(libc::EPROTONOSUPPORT);
        assert!(nf_tables_missing(libc::EPROTONOSUPPORT));
        assert!(!nf_tables_missing(libc::ENOENT));
        assert_eq!(
            no_nf_tables(&format!("netlink socket (NetlinkNetFilter): {cause}")),
            "netlink socket (NetlinkNetFilter): Protocol not supported (os error 93): this kernel has no nf_tables for nsrun's NAT and filters; load it ('sudo modprobe nf_tables') or use --no-net"
        );
    }

    #[test]
    fn sudo_variables_are_parsed_strictly() {
        let env = |k: &str| match k {
            "SUDO_UID" => Some("1000".to_string()),
            "SUDO_GID" => Some("1000".to_string()),
            "SUDO_USER" => Some("alice".to_string()),
            _ => None,
        };
        assert_eq!(sudo_caller(env).unwrap().unwrap().uid, 1000);
        assert!(sudo_caller(|_| None).unwrap().is_none());
        assert!(sudo_caller(|k| (k != "SUDO_USER").then(|| "x".to_string())).is_err());
    }
}
