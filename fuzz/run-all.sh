#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 30) each, one after the other, from its seeds
# and whatever corpus/<target>/ already holds; fails on the first crash (libFuzzer leaves the
# input in artifacts/<target>/). CI runs this after the tests. See README.md here.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-30}
# cargo-fuzz 0.13.2: pinned so that CI installs what was tried; installed once per machine.
if ! command -v cargo-fuzz >/dev/null; then
  cargo install cargo-fuzz --version 0.13.2 --locked
fi
# libFuzzer and the sanitizer flags need a nightly compiler; stable works with RUSTC_BOOTSTRAP.
if rustup run nightly rustc --version >/dev/null 2>&1; then
  fuzz=(cargo +nightly fuzz)
else
  fuzz=(env RUSTC_BOOTSTRAP=1 cargo fuzz)
fi
"${fuzz[@]}" build
for target in sftp_packets csv_reader done_manifest oneroster_zip; do
  echo "fuzz: $target for ${secs}s"
  "${fuzz[@]}" run "$target" -- -max_total_time="$secs" -dict="dict/$target.dict" -print_final_stats=1 2>&1 |
    grep -vE '^#[0-9]+\s+(NEW|REDUCE|pulse)'
done
