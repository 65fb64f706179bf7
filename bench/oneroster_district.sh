#!/usr/bin/env bash
# A generated district (50 schools, 50,000 students, 3,000 teachers, 20,000 classes, 400,000
# enrollments) as a OneRoster 1.2 bulk zip: `sluice import` of it beside `sqlite3 .import` of
# the same CSV files (no validation, no references: the floor), then a delta changing 1% of it.
# Prints times, the ratios, and sluice's peak memory.
#
#   bench/oneroster_district.sh [generator options, e.g. --students 5000]
#   BENCH_SLUICE=/path/to/sluice bench/oneroster_district.sh   (a binary built elsewhere)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v sqlite3 >/dev/null || apt-get install -y -qq sqlite3 >/dev/null
[ -x /usr/bin/time ] || apt-get install -y -qq time >/dev/null
. bench/sluice.sh
WORK=${BENCH_DIR:-$PWD/bench/out/district}
rm -rf "$WORK" && mkdir -p "$WORK"
python3 bench/oneroster_district.py "$WORK" "$@"
export SLUICE_DATA_DIR=$WORK/data
$SLUICE tenant add district >/dev/null
$SLUICE tenant set district types=oneroster >/dev/null

seconds() { /usr/bin/time -f '%e %M' -o "$WORK/time" "$@" >/dev/null; cat "$WORK/time"; }

read -r bulk_s bulk_kib < <(seconds $SLUICE import --tenant district --type oneroster "$WORK/bulk.zip")
$SLUICE imports --tenant district --limit 1
read -r delta_s delta_kib < <(seconds $SLUICE import --tenant district --type oneroster "$WORK/delta.zip")
$SLUICE imports --tenant district --limit 1

rm -f "$WORK/peer.db"
{
  for f in "$WORK"/bulk/*.csv; do
    echo ".import --csv $f $(basename "$f" .csv)"
  done
} > "$WORK/peer.sql"
read -r peer_s _ < <(seconds sqlite3 "$WORK/peer.db" ".read $WORK/peer.sql")

python3 - "$bulk_s" "$bulk_kib" "$delta_s" "$delta_kib" "$peer_s" <<'EOF'
import sys
bulk, bulk_kib, delta, delta_kib, peer = (float(x) for x in sys.argv[1:])
print(f"bulk   sluice {bulk:.2f} s (peak {bulk_kib/1024:.0f} MiB)   sqlite3 .import {peer:.2f} s   ratio {bulk/peer:.2f}x")
print(f"delta  sluice {delta:.2f} s (peak {delta_kib/1024:.0f} MiB)   {100*delta/bulk:.1f}% of the bulk time")
EOF
