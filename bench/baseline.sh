#!/usr/bin/env bash
# The usual health-check script, the shell loop of `cargo bench --bench failover`:
# every second, a TCP connect to each node's port (bash's /dev/tcp, as
# `nc -z -w1` would; 1 s timeout); a node that fails is deleted from the
# pool's A RRset with nsupdate, one that answers again is added back.
#
# usage: baseline.sh DNS_IP DNS_PORT ZONE NAME KEY_FILE PORT IP...
set -u
server=$1 dns_port=$2 zone=$3 name=$4 key=$5 port=$6
shift 6
declare -A up
for ip in "$@"; do up[$ip]=unknown; done
while true; do
  for ip in "$@"; do
    if timeout 1 bash -c "exec 3<>/dev/tcp/$ip/$port" 2>/dev/null; then now=1; else now=0; fi
    if [ "$now" != "${up[$ip]}" ]; then
      if [ "$now" = 1 ]; then op="add $name 60 A $ip"; else op="delete $name A $ip"; fi
      if printf 'server %s %s\nzone %s\nupdate %s\nsend\n' "$server" "$dns_port" "$zone" "$op" |
        nsupdate -k "$key"; then
        up[$ip]=$now
      fi
    fi
  done
  sleep 1
done
