#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) with cargo-fuzz (installed on first
# use) and prints how many inputs each ran; any crash stops with its reproducer in
# fuzz/artifacts/. Usage: fuzz/run.sh [SECONDS] [TARGET...]; RUNS=N stops each target after N
# inputs instead (SECONDS still caps it); MAX_LEN=N caps the input size (default 65536).
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(sse accumulator headers error_body decode)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# cargo-fuzz passes unstable flags; the stable toolchain accepts them this way.
export RUSTC_BOOTSTRAP=1
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  log=$(mktemp)
  extra=()
  [ -z "${RUNS:-}" ] || extra=(-runs="$RUNS")
  cargo fuzz run --release --sanitizer none "$t" "corpus/$t" -- -max_total_time="$secs" -max_len="${MAX_LEN:-65536}" "${extra[@]}" 2>&1 | tee "$log" | grep -E "^(==|INFO: fuzz|SUMMARY|Done)" || true
  runs=$(grep -oE "Done [0-9]+ runs" "$log" | tail -1 || true)
  echo "$t: ${runs:-no summary (see above)}"
  rm -f "$log"
done
