complete -c nsrun -l allow -d 'Let the sandbox reach only these destinations (repeatable)' -r -f
complete -c nsrun -l allow-file -d 'Read --allow destinations from FILE, one per line (`#` comments)' -r -F
complete -c nsrun -l deny -d 'Refuse these destinations, even if allowed (repeatable)' -r -f
complete -c nsrun -l refusals -d 'Write each refused destination to FILE, one JSON object per line' -r -F
complete -c nsrun -l network -d 'Join the private network NAME (made on first use) with other sandboxes' -r -f
complete -c nsrun -l subnet -d 'The subnet of the --network this run makes, e.g. `--subnet 10.10.0.0/24`' -r -f
complete -c nsrun -l dns -d 'Nameserver for the sandbox, instead of the host\'s (up to 3 times)' -r -f
complete -c nsrun -l pool -d 'IPv4 pool the sandbox\'s subnet is taken from' -r -f
complete -c nsrun -l user -d 'Run the command as USER (and GROUP), by name or number' -r -f -a "(__fish_complete_users)"
complete -c nsrun -s e -l env -d 'Set an environment variable for the command (repeatable)' -r -f -a '(set -xn)'
complete -c nsrun -l env-file -d 'Read environment variables from FILE (repeatable)' -r -F
complete -c nsrun -s w -l workdir -d 'Run the command in DIR (default: nsrun\'s working directory)' -r -f -a "(__fish_complete_directories)"
complete -c nsrun -l hostname -d 'Give the sandbox its own host name' -r -f
complete -c nsrun -l ip -d 'Give the sandbox exactly this private IPv4 address' -r -f
complete -c nsrun -s p -l publish -d 'Publish a port of the sandbox on the host, e.g. `-p 8080:80`' -r -f
complete -c nsrun -l name -d 'Name the sandbox\'s network namespace (/run/netns/NAME)' -r -f
complete -c nsrun -l info-file -d 'Keep the sandbox\'s addresses and ports in FILE (JSON) while it runs' -r -F
complete -c nsrun -l pcap -d 'Write every packet of the sandbox to FILE, in pcap format' -r -F
complete -c nsrun -l pcap-size -d 'The most --pcap writes; the rest is counted' -r -f
complete -c nsrun -l stop-timeout -d 'Seconds the command has to end after a signal, then SIGKILL' -r -f
complete -c nsrun -l join -d 'Run COMMAND (default: the user\'s shell) inside a running sandbox' -r -f -a '(nsrun --list --names 2>/dev/null)'
complete -c nsrun -l stop -d 'End a running sandbox as Ctrl-C would, and wait for it' -r -f -a '(nsrun --list --names 2>/dev/null)'
complete -c nsrun -l disconnect -d 'Take a running sandbox\'s network away, as a pulled cable' -r -f -a '(nsrun --list --names 2>/dev/null)'
complete -c nsrun -l reconnect -d 'Give a sandbox taken offline with --disconnect its network back' -r -f -a '(nsrun --list --names 2>/dev/null)'
complete -c nsrun -l no-net -d 'No network: the sandbox has only `lo`, up; works without root'
complete -c nsrun -l allow-host -d 'Let the sandbox connect to the host\'s own addresses'
complete -c nsrun -l block-lan -d 'Also block the LAN: the private ranges'
complete -c nsrun -l audit -d 'Report what --allow and --deny would refuse, and refuse none of it'
complete -c nsrun -l clearenv -d 'Start from an empty environment but for PATH, HOME and a few others'
complete -c nsrun -s t -l tty -d 'Give the command a pseudo-terminal of its own'
complete -c nsrun -l wait-teardown -d 'Return only once nothing of the sandbox is left on the host'
complete -c nsrun -s v -l verbose -d 'Say what nsrun sets up, on stderr'
complete -c nsrun -l list -d 'List the sandboxes running on this host'
complete -c nsrun -l json -d 'With --list: one JSON array of objects, for scripts'
complete -c nsrun -l names -d 'With --list: only names (or nsrun PIDs), one per line'
complete -c nsrun -l drop -d 'With --disconnect: lose packets silently instead of refusing them'
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
