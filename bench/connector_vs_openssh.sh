#!/usr/bin/env bash
# Builds sluice in release mode and times a connector's push and pull beside OpenSSH's sftp.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v /usr/sbin/sshd >/dev/null || apt-get install -y -qq openssh-server >/dev/null
cargo build --release -q -p sluice
exec python3 bench/connector_vs_openssh.py "$@"
