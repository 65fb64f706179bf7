# The sluice binary a benchmark runs (sourced: `. bench/sluice.sh`, from the checkout's root):
# BENCH_SLUICE, so that two builds can be compared in turn, or this checkout's release build,
# made here. Sets SLUICE.
if [ -n "${BENCH_SLUICE:-}" ]; then
  SLUICE=$BENCH_SLUICE
else
  cargo build --release -q -p sluice
  SLUICE=${CARGO_TARGET_DIR:-$PWD/target}/release/sluice
fi
