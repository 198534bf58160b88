#!/usr/bin/env bash
# Quick start: installs BIND, dovecot and what the tests need (Debian,
# .ci/packages), builds pigeon-dns and runs
# the demo: a local BIND primary and three dovecot mail nodes on loopback,
# pigeon-dns publishing them, and mail2 stopped and started again while the
# records follow. Needs root (dovecot's login processes) and loopback only.
set -euo pipefail
cd "$(dirname "$0")"

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
# The packages of the demo and of the tests (.ci/packages), so that
# `cargo test` runs next on the same machine; and cargo-deb, which the
# package test builds with.
missing=$(grep -v '^#' .ci/packages | while read -r p; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || echo "$p"
done)
if [ -n "$missing" ]; then
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  echo "$missing" | xargs $sudo apt-get install -y -q --no-install-recommends
fi
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
cargo build --bins --examples
exec $sudo ./target/debug/examples/demo "$@"
