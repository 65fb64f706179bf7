#!/usr/bin/env bash
# `sluice export` of the shipped `students` preset's records (CSV and XLSX) beside
# `sqlite3 -csv` of the same rows from a plain table, same disk, same run. Prints the time
# ratio of the CSV export and the XLSX export's time, and sluice's peak memory.
#
#   bench/export_vs_sqlite.sh [ROWS...]        (default: 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v sqlite3 >/dev/null || apt-get install -y -qq sqlite3 >/dev/null
[ -x /usr/bin/time ] || apt-get install -y -qq time >/dev/null
cargo build --release -q -p sluice
SLUICE=${CARGO_TARGET_DIR:-$PWD/target}/release/sluice
WORK=${BENCH_DIR:-$PWD/bench/out-export}
rm -rf "$WORK" && mkdir -p "$WORK"

# The `students` preset's generator, shared with the import benchmarks.
. bench/generators.sh

peak_mib() { echo "$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$1") / 1024" | bc -l; }
now() { date +%s.%N; }

printf '%-8s %10s %10s %10s %8s %12s\n' format rows sqlite_s sluice_s ratio peak_RSS_MiB
for rows in ${@:-1000000}; do
  data="$WORK/data-$rows"
  "$SLUICE" --data-dir "$data" tenant add bench --folders students >/dev/null
  gen_students "$rows" "$WORK/students.csv"
  "$SLUICE" --data-dir "$data" import --tenant bench --type students "$WORK/students.csv" >/dev/null
  sqlite3 "$WORK/sqlite.db" -cmd '.mode csv' -cmd ".import $WORK/students.csv t" </dev/null
  rm -f "$WORK/students.csv"
  sync
  s0=$(now)
  sqlite3 -csv -header "$WORK/sqlite.db" 'SELECT * FROM t' >"$WORK/sqlite.csv"
  s1=$(now)
  sq=$(echo "$s1 - $s0" | bc -l)
  for format in csv xlsx; do
    sync
    t0=$(now)
    /usr/bin/time -v -o "$WORK/time-$format.txt" "$SLUICE" --data-dir "$data" export --tenant bench --type students \
      --format "$format" --out "$WORK/sluice.$format" >"$WORK/export-$format.txt"
    t1=$(now)
    sl=$(echo "$t1 - $t0" | bc -l)
    printf '%-8s %10s %10.2f %10.2f %7.2fx %12.1f\n' "$format" "$rows" "$sq" "$sl" "$(echo "$sl / $sq" | bc -l)" \
      "$(peak_mib "$WORK/time-$format.txt")"
    grep -q "exported $rows records" "$WORK/export-$format.txt" || { cat "$WORK/export-$format.txt"; exit 1; }
  done
  # The same rows: sluice's CSV has as many lines as sqlite3's.
  [ "$(wc -l <"$WORK/sluice.csv")" = "$(wc -l <"$WORK/sqlite.csv")" ] || { echo "row counts differ"; exit 1; }
  rm -rf "$data" "$WORK/sqlite.db" "$WORK"/*.csv "$WORK"/*.xlsx
done
