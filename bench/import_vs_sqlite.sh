#!/usr/bin/env bash
# `sluice import` of a generated students file beside `sqlite3 .import` of the same file into
# a fresh database, same disk, same run. Prints the time ratio and sluice's peak memory.
#
#   bench/import_vs_sqlite.sh [ROWS...]        (default: 1000000 5000000)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v sqlite3 >/dev/null || apt-get install -y -qq sqlite3 >/dev/null
[ -x /usr/bin/time ] || apt-get install -y -qq time >/dev/null
cargo build --release -q -p sluice
SLUICE=$PWD/target/release/sluice
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

gen() {
  python3 - "$1" "$2" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
grades = ["PK","KG"] + [f"{g:02}" for g in range(1, 13)]
with open(path, "w", newline="") as f:
    f.write("sisId,stateId,firstName,middleName,lastName,birthDate,grade,gender,email,phone,schoolId,homeroom,enrollYear,ell,language\r\n")
    for i in range(n):
        f.write(f"S{i:08},ST{i*7:09},First{i % 5003},M,Last{i % 7919},20{10 + i % 9:02}-{1 + i % 12:02}-{1 + i % 28:02},"
                f"{grades[i % 14]},{'FMX'[i % 3]},student{i}@district.example.org,555-{i % 10000:04}-{i % 997:03},"
                f"SCH{i % 50:03},R{i % 40},{2015 + i % 10},{'true' if i % 7 == 0 else 'false'},English\r\n")
PY
}

peak_kib() { sed -n 's/.*Maximum resident set size (kbytes): //p' "$1"; }

printf '%-10s %12s %12s %8s %14s\n' rows sqlite_s sluice_s ratio sluice_peak_MiB
for rows in "${@:-1000000 5000000}"; do
  file="$WORK/students-$rows.csv"
  gen "$rows" "$file"
  sync
  rm -f "$WORK/sqlite.db"
  s0=$(date +%s.%N)
  sqlite3 "$WORK/sqlite.db" -cmd '.mode csv' -cmd ".import $file t" </dev/null
  s1=$(date +%s.%N)
  data="$WORK/data-$rows"
  rm -rf "$data"
  SLUICE_IMPORTS_TYPES_DIR="$WORK/types" "$SLUICE" --data-dir "$data" tenant add bench --folders bench_students >/dev/null
  sync
  t0=$(date +%s.%N)
  SLUICE_IMPORTS_TYPES_DIR="$WORK/types" /usr/bin/time -v -o "$WORK/time-$rows.txt" \
    "$SLUICE" --data-dir "$data" import --tenant bench --type bench_students "$file" >"$WORK/import-$rows.txt"
  t1=$(date +%s.%N)
  sq=$(echo "$s1 - $s0" | bc -l); sl=$(echo "$t1 - $t0" | bc -l)
  printf '%-10s %12.2f %12.2f %7.2fx %14.1f\n' "$rows" "$sq" "$sl" "$(echo "$sl / $sq" | bc -l)" "$(echo "$(peak_kib "$WORK/time-$rows.txt") / 1024" | bc -l)"
  grep -q "(complete)" "$WORK/import-$rows.txt" || { echo "import did not complete:"; cat "$WORK/import-$rows.txt"; exit 1; }
  rm -f "$file"
done
