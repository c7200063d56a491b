//! The command line: the one source of `--help`, the man page and the shell completions.

use std::ffi::OsString;

use clap::{ArgAction, Parser, ValueHint};

pub const DEFAULT_POOL: &str = "10.200.0.0/16";

// The groups of options in --help and the man page.
const NETWORK: &str = "Network";
const IDENTITY: &str = "Identity and environment";
const SERVICES: &str = "Services";
const ADVANCED: &str = "Advanced";
const RUNNING: &str = "Running sandboxes";
/// The options that act on running sandboxes instead of starting one.
pub const RUNTIME_MODES: [&str; 5] = ["list", "join", "stop", "disconnect", "reconnect"];

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
  sudo nsrun --list                            what runs: NAME PID INIT ADDRESS ... COMMAND
  sudo nsrun --join web -- ss -ltn             a command inside the running sandbox web
  sudo nsrun --stop web                        end it as Ctrl-C would; its exit status
  sudo nsrun --disconnect web; sudo nsrun --reconnect web     cable out, cable in

Exit status: the command's own; 128+N if it was killed by signal N; 126 if it could not
be executed; 127 if it was not found; 125 if nsrun itself failed.";

const AFTER_SHORT_HELP: &str = "\
Exit status: the command's own; 128+N if it was killed by signal N; 126 if it could not
be executed; 127 if it was not found; 125 if nsrun itself failed. '--help' says more, with
examples; so does 'man nsrun'.";

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
    // What only a new sandbox takes, which --join, --stop, --list, --disconnect and
    // --reconnect (a running one's) refuse.
    group(clap::ArgGroup::new("sandbox").multiple(true).conflicts_with("runtime")),
    name = "nsrun",
    version,
    about = "Run a command in its own network, mount and PID namespaces",
    override_usage = "nsrun [OPTIONS] [--] COMMAND [ARG]...",
    after_help = AFTER_SHORT_HELP,
    after_long_help = AFTER_HELP,
    max_term_width = 100
)]
pub struct Cli {
    /// No network: the sandbox has only `lo`, up; works without root
    ///
    /// Works without root where the kernel allows unprivileged user namespaces. Ports
    /// below 1024 stay closed to the command there (the kernel's default), unlike in a
    /// sandbox with a network.
    #[arg(group = "sandbox", long, help_heading = NETWORK, conflicts_with_all = ["allow_host", "block_lan", "pool", "dns"])]
    pub no_net: bool,

    /// Let the sandbox connect to the host's own addresses
    ///
    /// Also to the ports the host publishes on them with DNAT (Docker's `-p`, NodePorts).
    /// Refused by default.
    #[arg(group = "sandbox", long, help_heading = NETWORK)]
    pub allow_host: bool,

    /// Also block the LAN: the private ranges
    ///
    /// 10/8, 172.16/12, 192.168/16 and 100.64/10 are refused; the sandbox's nameservers
    /// stay reachable.
    #[arg(group = "sandbox", long, help_heading = NETWORK)]
    pub block_lan: bool,

    /// Let the sandbox reach only these destinations (repeatable)
    ///
    /// `ADDR[/LEN]`, `NAME` or `*.DOMAIN`, then `[:PORT[-PORT]][/tcp|/udp]`, e.g.
    /// `--allow 203.0.113.0/24`, `--allow registry.example.org:443` or `--allow
    /// '*.example.org'`. Once one is given, everything else is refused; the host,
    /// metadata services, other sandboxes and, with --block-lan, the LAN stay refused even
    /// if allowed. Names resolve through nsrun's resolver only, which refuses the others
    /// and lets the sandbox reach the addresses it answered. Enforced by the kernel in the
    /// sandbox's own table, for every program and protocol.
    #[arg(group = "sandbox", long, value_name = "DEST", action = ArgAction::Append, conflicts_with = "no_net", help_heading = NETWORK, value_hint = ValueHint::Other)]
    pub allow: Vec<String>,

    /// Read --allow destinations from FILE, one per line (`#` comments)
    #[arg(group = "sandbox", long, value_name = "FILE", action = ArgAction::Append, conflicts_with = "no_net", help_heading = NETWORK, value_hint = ValueHint::FilePath)]
    pub allow_file: Vec<std::path::PathBuf>,

    /// Refuse these destinations, even if allowed (repeatable)
    ///
    /// The form of --allow, e.g. `--deny 198.51.100.0/24`; without --allow it narrows
    /// what is open by default.
    #[arg(group = "sandbox", long, value_name = "DEST", action = ArgAction::Append, conflicts_with = "no_net", help_heading = NETWORK, value_hint = ValueHint::Other)]
    pub deny: Vec<String>,

    /// Report what --allow and --deny would refuse, and refuse none of it
    ///
    /// To build a list by running the command once: every destination the lists would
    /// refuse (and every name nsrun's resolver would not answer) is reported as with -v
    /// or --refusals, and let through. The default refusals (host, metadata, other
    /// sandboxes) still refuse.
    #[arg(group = "sandbox", long, help_heading = NETWORK)]
    pub audit: bool,

    /// Write each refused destination to FILE, one JSON object per line
    ///
    /// Also what the default policy refuses (the host, metadata services, the LAN with
    /// --block-lan); each destination once: {"time", "verdict" ("refused" or, with
    /// --audit, "would refuse"), "proto", "address", "port", "name"}. FILE belongs to the
    /// invoking user.
    #[arg(group = "sandbox", long, value_name = "FILE", conflicts_with = "no_net", help_heading = NETWORK, value_hint = ValueHint::FilePath)]
    pub refusals: Option<std::path::PathBuf>,

    /// Join the private network NAME (made on first use) with other sandboxes
    ///
    /// Members of one network share one bridge and one subnet, and reach each other by
    /// address on every port and protocol (ARP and broadcast too) and by name: each
    /// member's --name and --hostname resolve for the others, as NAME and as
    /// NAME.NETWORK.nsrun.internal. Everything else holds as for a lone sandbox: NAT,
    /// -p, the refusals of the host, metadata services, other networks and sandboxes.
    /// The network ends with its last member. Needs root.
    #[arg(group = "sandbox", long, value_name = "NAME", help_heading = NETWORK, value_hint = ValueHint::Other)]
    pub network: Option<String>,

    /// The subnet of the --network this run makes, e.g. `--subnet 10.10.0.0/24`
    ///
    /// Only when the network is not running yet; a member that joins a running network
    /// may give its subnet, and must give the same. Default: the first /24 of 10.201.0.0/16
    /// (or of --pool) that the host does not route.
    #[arg(group = "sandbox", long, value_name = "CIDR", requires = "network", help_heading = NETWORK, value_hint = ValueHint::Other)]
    pub subnet: Option<String>,

    /// Nameserver for the sandbox, instead of the host's (up to 3 times)
    ///
    /// An IPv4 address for the sandbox's /etc/resolv.conf, e.g. `--dns 192.0.2.53`. The
    /// host's resolv.conf is then not read.
    #[arg(group = "sandbox", long, value_name = "ADDR", action = ArgAction::Append, help_heading = NETWORK, value_hint = ValueHint::Other)]
    pub dns: Vec<String>,

    /// IPv4 pool the sandbox's subnet is taken from
    ///
    /// The sandbox's /30 comes from this prefix, which lies inside the private ranges
    /// (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10), e.g.
    /// `--pool 10.201.0.0/16`. Subnets in use on the host, in any routing table, are
    /// skipped.
    #[arg(group = "sandbox", long, value_name = "CIDR", default_value = DEFAULT_POOL, help_heading = NETWORK, value_hint = ValueHint::Other)]
    pub pool: String,

    /// Run the command as USER (and GROUP), by name or number
    ///
    /// E.g. `--user nobody` or `--user 1000:1000`. Default: the invoking user (SUDO_UID/SUDO_GID under sudo).
    /// nsrun does not isolate the filesystem: a command that runs as uid 0 (root without
    /// sudo and without --user) can still read and change the host's files, nsrun's own
    /// binary included; give untrusted commands an unprivileged user.
    #[arg(long, value_name = "USER[:GROUP]", help_heading = IDENTITY, value_hint = ValueHint::Username)]
    pub user: Option<String>,

    /// Set an environment variable for the command (repeatable)
    ///
    /// `-e NAME=VALUE`, or `-e NAME` to pass NAME's value from nsrun's environment. By
    /// default the command gets nsrun's whole environment, as with `env` or `ip netns
    /// exec` (under sudo, the one sudo kept); with --user, HOME, USER, LOGNAME and SHELL
    /// come from the user's passwd entry, as `sudo -u` sets them.
    #[arg(short = 'e', long = "env", value_name = "NAME[=VALUE]", action = ArgAction::Append, help_heading = IDENTITY, value_hint = ValueHint::Other)]
    pub env: Vec<String>,

    /// Read environment variables from FILE (repeatable)
    ///
    /// One NAME=VALUE per line (`#` comments and blank lines skipped), as docker's
    /// --env-file.
    #[arg(long, value_name = "FILE", action = ArgAction::Append, help_heading = IDENTITY, value_hint = ValueHint::FilePath)]
    pub env_file: Vec<std::path::PathBuf>,

    /// Start from an empty environment but for PATH, HOME and a few others
    ///
    /// The command's environment keeps only PATH, HOME, USER, LOGNAME, SHELL, TERM and
    /// LANG, then -e and --env-file add to it: nothing else of the caller's (tokens,
    /// agent sockets) reaches it. Recommended for untrusted commands.
    #[arg(long, help_heading = IDENTITY)]
    pub clearenv: bool,

    /// Run the command in DIR (default: nsrun's working directory)
    ///
    /// E.g. `-w /srv/app`.
    #[arg(short = 'w', long, value_name = "DIR", help_heading = IDENTITY, value_hint = ValueHint::DirPath)]
    pub workdir: Option<std::path::PathBuf>,

    /// Give the sandbox its own host name
    ///
    /// A UTS namespace of its own with this host name; NAME also resolves inside the
    /// sandbox through a private /etc/hosts.
    #[arg(group = "sandbox", long, value_name = "NAME", help_heading = IDENTITY, value_hint = ValueHint::Other)]
    pub hostname: Option<String>,

    /// Give the sandbox exactly this private IPv4 address
    ///
    /// The host's end of the link is its /31 neighbour; e.g. `--ip 10.77.0.2`: the host reaches a service
    /// there, and a restart gets the same address. An address in use on the host or by
    /// another sandbox is an error that says who has it.
    #[arg(group = "sandbox", long, value_name = "ADDR", conflicts_with_all = ["no_net", "pool"], help_heading = SERVICES, value_hint = ValueHint::Other)]
    pub ip: Option<String>,

    /// Publish a port of the sandbox on the host, e.g. `-p 8080:80`
    ///
    /// Docker's syntax: `[HOST_IP:]HOST_PORT[-END]:SANDBOX_PORT[-END][/tcp|/udp]`
    /// (repeatable). Other machines reach it through the host's addresses (their source
    /// address preserved), the host through its own addresses and, for TCP, through
    /// localhost. A host port that is taken is an error.
    #[arg(group = "sandbox", short = 'p', long, value_name = "[HOST_IP:]PORT:PORT", action = ArgAction::Append, conflicts_with = "no_net", help_heading = SERVICES, value_hint = ValueHint::Other)]
    pub publish: Vec<String>,

    /// Name the sandbox's network namespace (/run/netns/NAME)
    ///
    /// It appears as /run/netns/NAME while the sandbox runs, for `ip netns exec NAME ...` and `nsenter --net=/run/netns/NAME`, and
    /// NAME is also its host name unless --hostname says otherwise. Removed when the
    /// sandbox ends, also when nsrun is killed; e.g. `--name web`.
    #[arg(group = "sandbox", long, value_name = "NAME", conflicts_with = "no_net", help_heading = SERVICES, value_hint = ValueHint::Other)]
    pub name: Option<String>,

    /// Keep the sandbox's addresses and ports in FILE (JSON) while it runs
    ///
    /// FILE exists exactly while the sandbox runs, for scripts: written atomically once
    /// the sandbox is set up (a new file renamed over the path, so a reader never sees
    /// half of it and a symlink there is replaced, never followed), and removed when the
    /// sandbox ends, also when nsrun is killed (then by nsrun-holder). It holds one JSON
    /// object: "nsrun_pid", "init_pid", "name" (null without --name), "address",
    /// "prefix", "gateway", "host_link", "netns", "ports" (a list of {"proto",
    /// "host_ip", "host_port", "sandbox_port"}) and "started" (unix seconds).
    #[arg(group = "sandbox", long, value_name = "FILE", conflicts_with = "no_net", help_heading = SERVICES, value_hint = ValueHint::FilePath)]
    pub info_file: Option<std::path::PathBuf>,

    /// Write every packet of the sandbox to FILE, in pcap format
    ///
    /// Both directions, captured on the host's end of the sandbox's link (the command
    /// can neither hide nor forge a packet there), for `tcpdump -r FILE` and wireshark.
    /// FILE belongs to the invoking user; see --pcap-size, e.g. `--pcap web.pcap`.
    #[arg(group = "sandbox", long, value_name = "FILE", conflicts_with = "no_net", help_heading = SERVICES, value_hint = ValueHint::FilePath)]
    pub pcap: Option<std::path::PathBuf>,

    /// The most --pcap writes; the rest is counted
    ///
    /// Bytes, or with K, M or G (powers of 1024), e.g. `--pcap-size 10M`.
    #[arg(group = "sandbox", long, value_name = "SIZE", default_value = "100M", value_parser = parse_size, requires = "pcap", help_heading = SERVICES, value_hint = ValueHint::Other)]
    pub pcap_size: u64,

    /// Seconds the command has to end after a signal, then SIGKILL
    ///
    /// After nsrun passes on SIGTERM, SIGINT, SIGHUP or SIGQUIT, the command has this long
    /// to end; then nsrun kills every process of the sandbox with SIGKILL (the exit status
    /// is then 137), e.g. `--stop-timeout 30`.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds, help_heading = SERVICES, value_hint = ValueHint::Other)]
    pub stop_timeout: std::time::Duration,

    /// Give the command a pseudo-terminal of its own
    ///
    /// Job control and /dev/tty for the command, relayed to nsrun's terminal, which is set raw meanwhile and restored when nsrun exits. The
    /// command still cannot inject keystrokes into the caller's terminal.
    #[arg(short = 't', long, help_heading = ADVANCED)]
    pub tty: bool,

    /// Return only once nothing of the sandbox is left on the host
    ///
    /// Its link deleted, its init reaped, and the host's NAT table gone if no other sandbox runs. Costs about
    /// one kernel grace period; by default nsrun returns as soon as the sandbox's
    /// processes are gone and its link is down, and the kernel removes the rest within
    /// a fraction of a second.
    #[arg(group = "sandbox", long, help_heading = ADVANCED)]
    pub wait_teardown: bool,

    /// Say what nsrun sets up, on stderr
    #[arg(short, long, help_heading = ADVANCED)]
    pub verbose: bool,

    /// List the sandboxes running on this host
    ///
    /// NAME PID INIT ADDRESS NETWORK PORTS USER UPTIME COMMAND, one line each, for
    /// every sandbox you may act on (all of them for root; your own with a
    /// file-capability install). Read from the running nsrun processes themselves: right
    /// after any of them is killed.
    #[arg(long, help_heading = RUNNING, group = "runtime")]
    pub list: bool,

    /// With --list: one JSON array of objects, for scripts
    #[arg(long, requires = "list", help_heading = RUNNING)]
    pub json: bool,

    /// With --list: only names (or nsrun PIDs), one per line
    ///
    /// What the shells' completions offer after --join, --stop, --disconnect and
    /// --reconnect.
    #[arg(long, requires = "list", help_heading = RUNNING)]
    pub names: bool,

    /// Run COMMAND (default: the user's shell) inside a running sandbox
    ///
    /// The sandbox is named by its --name or by nsrun's or its init's PID (see --list).
    /// COMMAND enters its network, mount, PID and UTS namespaces, runs as the sandbox's
    /// user (or --user) and gives up every privilege as the sandbox's command did; -e,
    /// --clearenv, -w and -t work as for a run, and -t is implied without COMMAND on a
    /// terminal. It ends when the sandbox ends, e.g. `--join web -- ss -ltn`.
    #[arg(long, value_name = "NAME|PID", help_heading = RUNNING, group = "runtime", value_hint = ValueHint::Other)]
    pub join: Option<String>,

    /// End a running sandbox as Ctrl-C would, and wait for it
    ///
    /// SIGTERM to its command, SIGKILL to the whole sandbox after --stop-timeout; returns
    /// once nothing of it is left, with the command's exit status, e.g. `--stop web`.
    #[arg(long, value_name = "NAME|PID", help_heading = RUNNING, group = "runtime", value_hint = ValueHint::Other)]
    pub stop: Option<String>,

    /// Take a running sandbox's network away, as a pulled cable
    ///
    /// Every packet to or from it but loopback is refused at once (connection refused,
    /// network unreachable), or with --drop silently lost (timeouts), until --reconnect;
    /// its address and routes stay, e.g. `--disconnect web`.
    #[arg(long, value_name = "NAME|PID", help_heading = RUNNING, group = "runtime", value_hint = ValueHint::Other)]
    pub disconnect: Option<String>,

    /// With --disconnect: lose packets silently instead of refusing them
    #[arg(long, requires = "disconnect", help_heading = RUNNING)]
    pub drop: bool,

    /// Give a sandbox taken offline with --disconnect its network back
    #[arg(long, value_name = "NAME|PID", help_heading = RUNNING, group = "runtime", value_hint = ValueHint::Other)]
    pub reconnect: Option<String>,

    /// The command to run and its arguments, passed verbatim.
    #[arg(
        value_name = "COMMAND",
        required_unless_present_any = RUNTIME_MODES,
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

/// `--pcap-size`: bytes, or with a K, M or G suffix (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let shift = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        _ => return Err(format!("'{s}' is not a size; e.g. '--pcap-size 10M'")),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .filter(|n| *n >= 24)
        .ok_or_else(|| format!("'{s}' is not a size of at least 24 bytes; e.g. '--pcap-size 10M'"))
}
