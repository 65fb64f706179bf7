#!/usr/bin/env bash
# `sluice import` of a generated file of the shipped `students` preset (a person type: every
# row linked to a person) with its state in PostgreSQL (`[database] url`), beside `psql \copy`
# of the same file into an unindexed table, same server, same run. Prints the time ratio and
# sluice's peak memory (maximum RSS). Needs PostgreSQL (BENCH_PG, default the local server
# with trust auth); each run creates and drops its own databases.
#
#   bench/import_pg_vs_copy.sh [ROWS...]          (default: 1000000)
#   BENCH_SLUICE=/path/to/sluice bench/import_pg_vs_copy.sh 1000000
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /usr/bin/time ] || apt-get install -y -qq time >/dev/null
. bench/sluice.sh
PG=${BENCH_PG:-host=127.0.0.1 port=5432 user=postgres}
WORK=${BENCH_DIR:-$PWD/bench/out-pg}
rm -rf "$WORK" && mkdir -p "$WORK"
. bench/generators.sh
peak_mib() { echo "$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$1") / 1024" | bc -l; }
sql() { psql -q -X -v ON_ERROR_STOP=1 -d "$PG dbname=postgres" -c "$1" >/dev/null; }
cleanup() { sql "DROP DATABASE IF EXISTS bench_copy WITH (FORCE)"; sql "DROP DATABASE IF EXISTS bench_sluice WITH (FORCE)"; }
trap cleanup EXIT

printf '%-10s %10s %10s %10s %8s %12s\n' type rows copy_s sluice_s ratio peak_RSS_MiB
for rows in ${@:-1000000}; do
  cleanup
  sql "CREATE DATABASE bench_copy"
  sql "CREATE DATABASE bench_sluice"
  gen_students "$rows" "$WORK/students.csv"
  psql -q -X -d "$PG dbname=bench_copy" -c "CREATE UNLOGGED TABLE t (sisId text, firstName text, lastName text,
    middleName text, grade text, birthDate text, schoolId text, email text, phone text)" >/dev/null
  sync
  c0=$(date +%s.%N)
  psql -q -X -v ON_ERROR_STOP=1 -d "$PG dbname=bench_copy" -c "\\copy t FROM '$WORK/students.csv' CSV HEADER" >/dev/null
  c1=$(date +%s.%N)
  export SLUICE_DATABASE_URL="$PG dbname=bench_sluice"
  "$SLUICE" --data-dir "$WORK/data" tenant add bench --folders students >/dev/null
  sync
  t0=$(date +%s.%N)
  /usr/bin/time -v -o "$WORK/time.txt" "$SLUICE" --data-dir "$WORK/data" import --tenant bench --type students \
    "$WORK/students.csv" >"$WORK/import.txt"
  t1=$(date +%s.%N)
  unset SLUICE_DATABASE_URL
  grep -q "(complete)" "$WORK/import.txt" || { echo "import did not complete:"; cat "$WORK/import.txt"; exit 1; }
  cp=$(echo "$c1 - $c0" | bc -l); sl=$(echo "$t1 - $t0" | bc -l)
  printf '%-10s %10s %10.2f %10.2f %7.2fx %12.1f\n' students "$rows" "$cp" "$sl" "$(echo "$sl / $cp" | bc -l)" \
    "$(peak_mib "$WORK/time.txt")"
  rm -rf "$WORK/data" "$WORK/students.csv"
done
