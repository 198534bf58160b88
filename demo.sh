#!/usr/bin/env bash
# Quick start: installs BIND and dovecot (Debian), builds pigeon-dns and runs
# the demo: a local BIND primary and three dovecot mail nodes on loopback,
# pigeon-dns publishing them, and mail2 stopped and started again while the
# records follow. Needs root (dovecot's login processes) and loopback only.
set -euo pipefail
cd "$(dirname "$0")"

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! command -v named >/dev/null || ! command -v dovecot >/dev/null || ! command -v dig >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends \
    bind9 bind9-utils bind9-dnsutils dovecot-core dovecot-imapd dovecot-pop3d dovecot-submissiond
fi
cargo build --bins --examples
exec $sudo ./target/debug/examples/demo "$@"
