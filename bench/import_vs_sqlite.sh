#!/usr/bin/env bash
# `sluice import` of generated files beside `sqlite3 .import` of the same files into a fresh
# database, same disk, same run, for three types: the bench-only `bench_students` (15 columns,
# no people) and the shipped person types `students` and `guardians` (every row linked to a
# person). Prints each type's time ratio and sluice's peak memory (maximum RSS).
#
#   bench/import_vs_sqlite.sh [ROWS...]        (default: 1000000 5000000)
#   BENCH_TYPES="students guardians" bench/import_vs_sqlite.sh 1000000
#   BENCH_SLUICE=/path/to/sluice bench/import_vs_sqlite.sh 1000000   (a binary built elsewhere,
#                                                                   e.g. main's, to compare)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v sqlite3 >/dev/null || apt-get install -y -qq sqlite3 >/dev/null
[ -x /usr/bin/time ] || apt-get install -y -qq time >/dev/null
. bench/sluice.sh
WORK=${BENCH_DIR:-$PWD/bench/out}
rm -rf "$WORK" && mkdir -p "$WORK/types"

# A 15-column type: ids, names, dates, email, phone, enum, integer, boolean.
cat > "$WORK/types/bench.toml" <<'TOML'
[[type]]
name = "bench_students"
folder = "bench_students"
key = ["sisId"]
mode = "mirror"
[[type.column]]
name = "sisId"
required = true
kind = "id"
[[type.column]]
name = "stateId"
kind = "id"
[[type.column]]
name = "firstName"
required = true
kind = "text"
[[type.column]]
name = "middleName"
kind = "text"
[[type.column]]
name = "lastName"
required = true
kind = "text"
[[type.column]]
name = "birthDate"
kind = "date"
formats = ["YYYY-MM-DD", "MM/DD/YYYY"]
[[type.column]]
name = "grade"
kind = "enum"
values = ["PK", "KG", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12"]
[[type.column]]
name = "gender"
kind = "enum"
values = ["F", "M", "X"]
[[type.column]]
name = "email"
kind = "email"
[[type.column]]
name = "phone"
kind = "phone"
[[type.column]]
name = "schoolId"
required = true
kind = "id"
[[type.column]]
name = "homeroom"
kind = "text"
[[type.column]]
name = "enrollYear"
kind = "integer"
[[type.column]]
name = "ell"
kind = "boolean"
[[type.column]]
name = "language"
kind = "text"
TOML

. bench/generators.sh

peak_mib() { echo "$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$1") / 1024" | bc -l; }

# sqlite3 .import of FILE, then `sluice import` of it as TYPE into DATA (a tenant `bench`
# exists there); prints one line of the table.
measure() {
  local type=$1 rows=$2 file=$3 data=$4
  sync
  rm -f "$WORK/sqlite.db"
  local s0 s1 t0 t1
  s0=$(date +%s.%N)
  sqlite3 "$WORK/sqlite.db" -cmd '.mode csv' -cmd ".import $file t" </dev/null
  s1=$(date +%s.%N)
  rm -f "$WORK/sqlite.db"
  sync
  t0=$(date +%s.%N)
  SLUICE_IMPORTS_TYPES_DIR="$WORK/types" /usr/bin/time -v -o "$WORK/time-$type-$rows.txt" \
    "$SLUICE" --data-dir "$data" import --tenant bench --type "$type" "$file" >"$WORK/import-$type-$rows.txt"
  t1=$(date +%s.%N)
  local sq sl
  sq=$(echo "$s1 - $s0" | bc -l); sl=$(echo "$t1 - $t0" | bc -l)
  printf '%-15s %10s %10.2f %10.2f %7.2fx %12.1f\n' "$type" "$rows" "$sq" "$sl" "$(echo "$sl / $sq" | bc -l)" \
    "$(peak_mib "$WORK/time-$type-$rows.txt")"
  grep -q "(complete)" "$WORK/import-$type-$rows.txt" || { echo "import did not complete:"; cat "$WORK/import-$type-$rows.txt"; exit 1; }
}

TYPES=${BENCH_TYPES:-bench_students students guardians}
printf '%-15s %10s %10s %10s %8s %12s\n' type rows sqlite_s sluice_s ratio peak_RSS_MiB
for rows in ${@:-1000000 5000000}; do
  for type in $TYPES; do
    data="$WORK/data-$type-$rows"
    rm -rf "$data"
    case $type in
      bench_students)
        SLUICE_IMPORTS_TYPES_DIR="$WORK/types" "$SLUICE" --data-dir "$data" tenant add bench --folders bench_students >/dev/null
        gen_bench "$rows" "$WORK/bench-$rows.csv"
        measure bench_students "$rows" "$WORK/bench-$rows.csv" "$data"
        rm -f "$WORK/bench-$rows.csv" ;;
      students)
        "$SLUICE" --data-dir "$data" tenant add bench --folders students >/dev/null
        gen_students "$rows" "$WORK/students-$rows.csv"
        measure students "$rows" "$WORK/students-$rows.csv" "$data"
        rm -f "$WORK/students-$rows.csv" ;;
      guardians)
        # The students the guardians refer to are imported first (not timed).
        "$SLUICE" --data-dir "$data" tenant add bench --folders students,guardians >/dev/null
        gen_students "$((rows / 2))" "$WORK/students-half-$rows.csv"
        "$SLUICE" --data-dir "$data" import --tenant bench --type students "$WORK/students-half-$rows.csv" >/dev/null
        rm -f "$WORK/students-half-$rows.csv"
        gen_guardians "$rows" "$WORK/guardians-$rows.csv"
        measure guardians "$rows" "$WORK/guardians-$rows.csv" "$data"
        rm -f "$WORK/guardians-$rows.csv" ;;
      *) echo "unknown type $type (bench_students, students, guardians)"; exit 2 ;;
    esac
    rm -rf "$data"
  done
done
