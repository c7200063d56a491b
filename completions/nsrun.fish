complete -c nsrun -l user -d 'Run the command as USER (and GROUP), by name or number, e.g. `--user nobody` or `--user 1000:1000`. Default: the invoking user (SUDO_UID/SUDO_GID under sudo). nsrun does not isolate the filesystem: a command that runs as uid 0 (root without sudo and without --user) can still read and change the host\'s files, nsrun\'s own binary included; give untrusted commands an unprivileged user' -r
complete -c nsrun -l hostname -d 'Give the sandbox its own UTS namespace with this host name; NAME also resolves inside the sandbox through a private /etc/hosts' -r
complete -c nsrun -l dns -d 'Nameserver for the sandbox\'s /etc/resolv.conf, instead of the host\'s (up to 3 times), e.g. `--dns 192.0.2.53`. The host\'s resolv.conf is then not read' -r
complete -c nsrun -l pool -d 'IPv4 pool the sandbox\'s /30 subnet is taken from, inside the private ranges (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10), e.g. `--pool 10.200.0.0/16`. Subnets in use on the host, in any routing table, are skipped' -r
complete -c nsrun -l stop-timeout -d 'After nsrun passes on SIGTERM, SIGINT, SIGHUP or SIGQUIT, how long the command has to end before nsrun kills every process of the sandbox with SIGKILL (the exit status is then 137), e.g. `--stop-timeout 30`' -r
complete -c nsrun -l no-net -d 'No network: the sandbox has only `lo`, up. Works without root where the kernel allows unprivileged user namespaces'
complete -c nsrun -l allow-host -d 'Let the sandbox open connections to the host\'s own addresses, and to the ports the host publishes on them with DNAT (refused by default)'
complete -c nsrun -l block-lan -d 'Also block the LAN: private ranges (10/8, 172.16/12, 192.168/16, 100.64/10). The sandbox\'s nameservers stay reachable'
complete -c nsrun -l wait-teardown -d 'Return only once nothing of the sandbox is left on the host: its link deleted, its init reaped, and the host\'s NAT table gone if no other sandbox runs. Costs about one kernel grace period; by default nsrun returns as soon as the sandbox\'s processes are gone and its link is down, and the kernel removes the rest within a fraction of a second'
complete -c nsrun -s v -l verbose -d 'Say what nsrun sets up, on stderr'
complete -c nsrun -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nsrun -s V -l version -d 'Print version'
