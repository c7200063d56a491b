//! The command line: the one source of `--help`, the man page and the shell completions.

use std::ffi::OsString;

use clap::{ArgAction, Parser, ValueHint};

pub const DEFAULT_POOL: &str = "10.200.0.0/16";

const AFTER_HELP: &str = "\
Examples:
  sudo nsrun -- curl http://198.51.100.1/       run a command with its own address, NAT through the host
  sudo nsrun --no-net -- cargo test             offline: only loopback, up
  nsrun --no-net -- make check                  the same as an ordinary user (user namespaces)
  sudo nsrun --dns 192.0.2.53 -- getent hosts db.internal
  sudo nsrun --block-lan -- ./untrusted-tool    internet only: no host, no LAN, no metadata service
  sudo nsrun --hostname build1 --user builder -- ./service
  sudo nsrun --ip 10.77.0.2 --user www-data -- python3 -m http.server 80
                                               a service on a fixed private address
  sudo nsrun -p 8080:80 --user www-data -- ./server
                                               published: http://HOST:8080/ and localhost:8080
  sudo nsrun --name web -- ./server &          then: sudo ip netns exec web ss -ltn
  sudo nsrun --allow-host -- curl http://host.nsrun.internal:8080/   the host, by name
  sudo nsrun --clearenv -e TERM -w /srv --user nobody -- ./tool      a clean environment
  sudo nsrun --info-file /run/web.json --name web -- ./server        addresses for scripts
  sudo nsrun --stop-timeout 30 -- ./slow-to-stop                     30 s to stop, then SIGKILL
  sudo nsrun --wait-teardown -- ./job          return once nothing of the sandbox is left

Exit status: the command's own; 128+N if it was killed by signal N; 126 if it could not
be executed; 127 if it was not found; 125 if nsrun itself failed.";

/// Run a command in its own network, mount and PID namespaces.
///
/// nsrun gives COMMAND a private network stack: a veth pair to the host, a private
/// address and default route, NAT through the host's uplink, a private resolv.conf,
/// and a firewall inside the sandbox's own namespace that refuses the host, other
/// sandboxes, cloud metadata services and IPv6, and holds whatever happens to nsrun.
/// The command runs as the invoking user with no capabilities, and every process of
/// the sandbox ends when the command does, or when nsrun is killed.
#[derive(Debug, Parser)]
#[command(
    name = "nsrun",
    version,
    about = "Run a command in its own network, mount and PID namespaces",
    override_usage = "nsrun [OPTIONS] [--] COMMAND [ARG]...",
    after_help = AFTER_HELP,
    max_term_width = 100
)]
pub struct Cli {
    /// No network: the sandbox has only `lo`, up. Works without root where the kernel allows
    /// unprivileged user namespaces.
    #[arg(long, conflicts_with_all = ["allow_host", "block_lan", "pool", "dns"])]
    pub no_net: bool,

    /// Run the command as USER (and GROUP), by name or number, e.g. `--user nobody` or
    /// `--user 1000:1000`. Default: the invoking user (SUDO_UID/SUDO_GID under sudo).
    /// nsrun does not isolate the filesystem: a command that runs as uid 0 (root without
    /// sudo and without --user) can still read and change the host's files, nsrun's own
    /// binary included; give untrusted commands an unprivileged user.
    #[arg(long, value_name = "USER[:GROUP]", value_hint = ValueHint::Username)]
    pub user: Option<String>,

    /// Set an environment variable for the command: `-e NAME=VALUE`, or `-e NAME` to pass
    /// NAME's value from nsrun's environment (repeatable). By default the command gets
    /// nsrun's whole environment, as with `env` or `ip netns exec` (under sudo, the one
    /// sudo kept); with --user, HOME, USER, LOGNAME and SHELL come from the user's
    /// passwd entry, as `sudo -u` sets them.
    #[arg(short = 'e', long = "env", value_name = "NAME[=VALUE]", action = ArgAction::Append)]
    pub env: Vec<String>,

    /// Read environment variables from FILE, one NAME=VALUE per line (`#` comments and
    /// blank lines skipped), as docker's --env-file (repeatable).
    #[arg(long, value_name = "FILE", action = ArgAction::Append, value_hint = ValueHint::FilePath)]
    pub env_file: Vec<std::path::PathBuf>,

    /// Start the command with an empty environment but PATH, HOME, USER, LOGNAME, SHELL,
    /// TERM and LANG, then add -e and --env-file: nothing else of the caller's (tokens,
    /// agent sockets) reaches it. Recommended for untrusted commands.
    #[arg(long)]
    pub clearenv: bool,

    /// Run the command in DIR, e.g. `-w /srv/app` (default: nsrun's working directory).
    #[arg(short = 'w', long, value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub workdir: Option<std::path::PathBuf>,

    /// Give the sandbox exactly this IPv4 address (a private one; the host's end of the
    /// link is its /31 neighbour), e.g. `--ip 10.77.0.2`: the host reaches a service
    /// there, and a restart gets the same address. An address in use on the host or by
    /// another sandbox is an error that says who has it.
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["no_net", "pool"])]
    pub ip: Option<String>,

    /// Publish a port of the sandbox on the host, with docker's syntax:
    /// `[HOST_IP:]HOST_PORT[-END]:SANDBOX_PORT[-END][/tcp|/udp]` (repeatable), e.g.
    /// `-p 8080:80`. Other machines reach it through the host's addresses (their source
    /// address preserved), the host through its own addresses and, for TCP, through
    /// localhost. A host port that is taken is an error.
    #[arg(short = 'p', long, value_name = "[HOST_IP:]PORT:PORT", action = ArgAction::Append, conflicts_with = "no_net")]
    pub publish: Vec<String>,

    /// Name the sandbox's network namespace: it appears as /run/netns/NAME while the
    /// sandbox runs, for `ip netns exec NAME ...` and `nsenter --net=/run/netns/NAME`, and
    /// NAME is also its host name unless --hostname says otherwise. Removed when the
    /// sandbox ends, also when nsrun is killed; e.g. `--name web`.
    #[arg(long, value_name = "NAME", conflicts_with = "no_net")]
    pub name: Option<String>,

    /// Write the sandbox's addresses as JSON to FILE once it is set up (for scripts):
    /// {"nsrun_pid", "init_pid", "address", "gateway", "host_link", "netns"}.
    #[arg(long, value_name = "FILE", conflicts_with = "no_net", value_hint = ValueHint::FilePath)]
    pub info_file: Option<std::path::PathBuf>,

    /// Give the sandbox its own UTS namespace with this host name; NAME also resolves
    /// inside the sandbox through a private /etc/hosts.
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,

    /// Nameserver for the sandbox's /etc/resolv.conf, instead of the host's (up to 3
    /// times), e.g. `--dns 192.0.2.53`. The host's resolv.conf is then not read.
    #[arg(long, value_name = "ADDR", action = ArgAction::Append)]
    pub dns: Vec<String>,

    /// Let the sandbox open connections to the host's own addresses, and to the ports the
    /// host publishes on them with DNAT (refused by default).
    #[arg(long)]
    pub allow_host: bool,

    /// Also block the LAN: private ranges (10/8, 172.16/12, 192.168/16, 100.64/10).
    /// The sandbox's nameservers stay reachable.
    #[arg(long)]
    pub block_lan: bool,

    /// IPv4 pool the sandbox's /30 subnet is taken from, inside the private ranges
    /// (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10), e.g.
    /// `--pool 10.200.0.0/16`. Subnets in use on the host, in any routing table, are
    /// skipped.
    #[arg(long, value_name = "CIDR", default_value = DEFAULT_POOL)]
    pub pool: String,

    /// Return only once nothing of the sandbox is left on the host: its link deleted, its
    /// init reaped, and the host's NAT table gone if no other sandbox runs. Costs about
    /// one kernel grace period; by default nsrun returns as soon as the sandbox's
    /// processes are gone and its link is down, and the kernel removes the rest within
    /// a fraction of a second.
    #[arg(long)]
    pub wait_teardown: bool,

    /// After nsrun passes on SIGTERM, SIGINT, SIGHUP or SIGQUIT, how long the command
    /// has to end before nsrun kills every process of the sandbox with SIGKILL (the exit
    /// status is then 137), e.g. `--stop-timeout 30`.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub stop_timeout: std::time::Duration,

    /// Give the command a pseudo-terminal of its own (job control, /dev/tty), relayed to
    /// nsrun's terminal, which is set raw meanwhile and restored when nsrun exits. The
    /// command still cannot inject keystrokes into the caller's terminal.
    #[arg(short = 't', long)]
    pub tty: bool,

    /// Say what nsrun sets up, on stderr.
    #[arg(short, long)]
    pub verbose: bool,

    /// The command to run and its arguments, passed verbatim.
    #[arg(
        value_name = "COMMAND",
        required = true,
        trailing_var_arg = true,
        value_hint = ValueHint::CommandWithArguments
    )]
    pub command: Vec<OsString>,
}

fn parse_seconds(s: &str) -> Result<std::time::Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0 && *v <= 86_400.0)
        .map(std::time::Duration::from_secs_f64)
        .ok_or_else(|| {
            format!("'{s}' is not a number of seconds from 0 to 86400; e.g. '--stop-timeout 30'")
        })
}
