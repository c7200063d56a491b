complete -c nsrun -l user -d 'Run the command as USER (and GROUP), by name or number, e.g. `--user nobody` or `--user 1000:1000`. Default: the invoking user (SUDO_UID/SUDO_GID under sudo). nsrun does not isolate the filesystem: a command that runs as uid 0 (root without sudo and without --user) can still read and change the host\'s files, nsrun\'s own binary included; give untrusted commands an unprivileged user' -r -f -a "(__fish_complete_users)"
complete -c nsrun -s e -l env -d 'Set an environment variable for the command: `-e NAME=VALUE`, or `-e NAME` to pass NAME\'s value from nsrun\'s environment (repeatable). By default the command gets nsrun\'s whole environment, as with `env` or `ip netns exec` (under sudo, the one sudo kept); with --user, HOME, USER, LOGNAME and SHELL come from the user\'s passwd entry, as `sudo -u` sets them' -r
complete -c nsrun -l env-file -d 'Read environment variables from FILE, one NAME=VALUE per line (`#` comments and blank lines skipped), as docker\'s --env-file (repeatable)' -r -F
complete -c nsrun -s w -l workdir -d 'Run the command in DIR, e.g. `-w /srv/app` (default: nsrun\'s working directory)' -r -f -a "(__fish_complete_directories)"
complete -c nsrun -l ip -d 'Give the sandbox exactly this IPv4 address (a private one; the host\'s end of the link is its /31 neighbour), e.g. `--ip 10.77.0.2`: the host reaches a service there, and a restart gets the same address. An address in use on the host or by another sandbox is an error that says who has it' -r
complete -c nsrun -s p -l publish -d 'Publish a port of the sandbox on the host, with docker\'s syntax: `[HOST_IP:]HOST_PORT[-END]:SANDBOX_PORT[-END][/tcp|/udp]` (repeatable), e.g. `-p 8080:80`. Other machines reach it through the host\'s addresses (their source address preserved), the host through its own addresses and, for TCP, through localhost. A host port that is taken is an error' -r
complete -c nsrun -l name -d 'Name the sandbox\'s network namespace: it appears as /run/netns/NAME while the sandbox runs, for `ip netns exec NAME ...` and `nsenter --net=/run/netns/NAME`, and NAME is also its host name unless --hostname says otherwise. Removed when the sandbox ends, also when nsrun is killed; e.g. `--name web`' -r
complete -c nsrun -l info-file -d 'Write the sandbox\'s addresses as JSON to FILE once it is set up (for scripts): {"nsrun_pid", "init_pid", "address", "gateway", "host_link", "netns"}' -r -F
complete -c nsrun -l hostname -d 'Give the sandbox its own UTS namespace with this host name; NAME also resolves inside the sandbox through a private /etc/hosts' -r
complete -c nsrun -l dns -d 'Nameserver for the sandbox\'s /etc/resolv.conf, instead of the host\'s (up to 3 times), e.g. `--dns 192.0.2.53`. The host\'s resolv.conf is then not read' -r
complete -c nsrun -l pool -d 'IPv4 pool the sandbox\'s /30 subnet is taken from, inside the private ranges (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10), e.g. `--pool 10.200.0.0/16`. Subnets in use on the host, in any routing table, are skipped' -r
complete -c nsrun -l stop-timeout -d 'After nsrun passes on SIGTERM, SIGINT, SIGHUP or SIGQUIT, how long the command has to end before nsrun kills every process of the sandbox with SIGKILL (the exit status is then 137), e.g. `--stop-timeout 30`' -r
complete -c nsrun -l no-net -d 'No network: the sandbox has only `lo`, up. Works without root where the kernel allows unprivileged user namespaces'
complete -c nsrun -l clearenv -d 'Start the command with an empty environment but PATH, HOME, USER, LOGNAME, SHELL, TERM and LANG, then add -e and --env-file: nothing else of the caller\'s (tokens, agent sockets) reaches it. Recommended for untrusted commands'
complete -c nsrun -l allow-host -d 'Let the sandbox open connections to the host\'s own addresses, and to the ports the host publishes on them with DNAT (refused by default)'
complete -c nsrun -l block-lan -d 'Also block the LAN: private ranges (10/8, 172.16/12, 192.168/16, 100.64/10). The sandbox\'s nameservers stay reachable'
complete -c nsrun -l wait-teardown -d 'Return only once nothing of the sandbox is left on the host: its link deleted, its init reaped, and the host\'s NAT table gone if no other sandbox runs. Costs about one kernel grace period; by default nsrun returns as soon as the sandbox\'s processes are gone and its link is down, and the kernel removes the rest within a fraction of a second'
complete -c nsrun -s t -l tty -d 'Give the command a pseudo-terminal of its own (job control, /dev/tty), relayed to nsrun\'s terminal, which is set raw meanwhile and restored when nsrun exits. The command still cannot inject keystrokes into the caller\'s terminal'
complete -c nsrun -s v -l verbose -d 'Say what nsrun sets up, on stderr'
complete -c nsrun -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nsrun -s V -l version -d 'Print version'

# After `--`: the command, then its own arguments through that command's completions.
function __nsrun_after_double_dash
    set -l tokens (commandline -opc)
    set -l i (contains -i -- -- $tokens)
    set -l rest $tokens[(math $i + 1)..-1]
    if test (count $rest) -eq 0
        __fish_complete_command
    else
        complete -C (string join ' ' -- (string escape -- $rest) (commandline -ct))
    end
end
complete -c nsrun -n 'contains -- -- (commandline -opc)' -f -a '(__nsrun_after_double_dash)'
