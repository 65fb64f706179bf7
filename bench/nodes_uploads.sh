#!/usr/bin/env bash
# Many small uploads over SFTP (TENANTS tenants x FILES files of three students each, OpenSSH's
# sftp, 8 sessions at a time) to one node, then to NODES nodes sharing one PostgreSQL database
# and one data directory (each tenant's session to one node, tenants spread round-robin), same
# machine, same run. Prints, for each: the wall time from the first upload to the last import,
# imports per second, and the queue's latency (upload closed -> import finished, p50 and p95,
# read from the database); and the ratio of the two throughputs. Each run makes and drops its
# own database.
#
#   bench/nodes_uploads.sh [TENANTS] [FILES] [NODES]      (default: 100 100 3, 10,000 uploads)
#   BENCH_SLUICE=/path/to/sluice bench/nodes_uploads.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TENANTS=${1:-100}
FILES=${2:-100}
NODES=${3:-3}
. bench/sluice.sh
PG=${BENCH_PG:-host=127.0.0.1 port=5432 user=postgres}
WORK=${BENCH_DIR:-$PWD/bench/out-nodes}
rm -rf "$WORK" && mkdir -p "$WORK/files" "$WORK/batches"
q() { psql -q -X -v ON_ERROR_STOP=1 -d "$PG dbname=$1" -Atc "$2"; }
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  q postgres "DROP DATABASE IF EXISTS bench_nodes WITH (FORCE)" >/dev/null
}
trap cleanup EXIT

ssh-keygen -q -t ed25519 -N '' -f "$WORK/key"
for i in $(seq "$FILES"); do
  printf 'sisId,firstName,lastName,middleName,grade,birthDate,schoolId,email,phone\r\nS1,Ann,Lee,M,%02d,2010-01-01,SCH001,,\r\nS2,Bo,Ray,M,05,2011-02-02,SCH001,,\r\nS3,Cy,Kim,M,06,2012-03-03,SCH002,,\r\n' \
    $((i % 12 + 1)) >"$WORK/files/students-$i.csv"
  echo "put $WORK/files/students-$i.csv /students/students-$i.csv" >>"$WORK/batches/all"
done

printf '%-6s %8s %10s %12s %10s %10s\n' nodes uploads wall_s imports_per_s p50_ms p95_ms
declare -A RATE
for nodes in 1 "$NODES"; do
  q postgres "DROP DATABASE IF EXISTS bench_nodes WITH (FORCE)" >/dev/null
  q postgres "CREATE DATABASE bench_nodes" >/dev/null
  export SLUICE_DATABASE_URL="$PG dbname=bench_nodes"
  data="$WORK/data-$nodes"
  rm -rf "$data"
  tenants=()
  for t in $(seq -f "t%03g" "$TENANTS"); do
    "$SLUICE" --data-dir "$data" tenant add "$t" --folders students >/dev/null
    "$SLUICE" --data-dir "$data" key add "$t" "$WORK/key.pub" >/dev/null
    tenants+=("$t")
  done
  ports=()
  PIDS=()
  for n in $(seq "$nodes"); do
    RUST_LOG=warn "$SLUICE" --data-dir "$data" serve --sftp-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
      >"$WORK/node$n.out" 2>"$WORK/node$n.log" &
    PIDS+=($!)
  done
  for n in $(seq "$nodes"); do
    for _ in $(seq 300); do grep -q '^sftp listening on' "$WORK/node$n.out" && break; sleep 0.1; done
    ports+=("$(sed -n 's/^sftp listening on .*:\([0-9]*\)$/\1/p' "$WORK/node$n.out" | head -1)")
  done
  start_ms=$(date +%s%3N)
  i=0
  for t in "${tenants[@]}"; do
    echo "$t ${ports[$((i % nodes))]}"
    i=$((i + 1))
  done | xargs -P 8 -n 2 sh -c 'sftp -q -b "$0/batches/all" -i "$0/key" -P "$2" -o StrictHostKeyChecking=no \
      -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "$1@127.0.0.1" >/dev/null' "$WORK"
  total=$((TENANTS * FILES))
  for _ in $(seq 3600); do
    done_n=$(q bench_nodes "SELECT count(*) FROM imports WHERE finished_ms IS NOT NULL")
    [ "$done_n" -ge "$total" ] && break
    sleep 0.5
  done
  [ "$done_n" -ge "$total" ] || { echo "only $done_n of $total imported"; exit 1; }
  stats=$(q bench_nodes "SELECT MAX(i.finished_ms),
      percentile_disc(0.5) WITHIN GROUP (ORDER BY i.finished_ms - u.at_ms),
      percentile_disc(0.95) WITHIN GROUP (ORDER BY i.finished_ms - u.at_ms),
      count(*) FILTER (WHERE i.status NOT IN ('complete')), count(DISTINCT i.upload_id)
      FROM imports i JOIN upload_events u ON u.id = i.upload_id")
  IFS='|' read -r last_ms p50 p95 bad distinct <<<"$stats"
  [ "$bad" = 0 ] && [ "$distinct" = "$total" ] || { echo "$bad imports not complete, $distinct uploads imported of $total"; exit 1; }
  wall=$(echo "($last_ms - $start_ms) / 1000" | bc -l)
  RATE[$nodes]=$(echo "$total / $wall" | bc -l)
  printf '%-6s %8s %10.2f %12.1f %10s %10s\n' "$nodes" "$total" "$wall" "${RATE[$nodes]}" "$p50" "$p95"
  for p in "${PIDS[@]}"; do kill "$p"; done
  wait "${PIDS[@]}" 2>/dev/null || true
  PIDS=()
  unset SLUICE_DATABASE_URL
done
printf 'throughput %s nodes / 1 node: %.2fx\n' "$NODES" "$(echo "${RATE[$NODES]} / ${RATE[1]}" | bc -l)"
