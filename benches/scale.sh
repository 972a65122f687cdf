#!/usr/bin/env bash
# Scale (BENCHMARKS.md, issue 18): 10,000 concurrent streams and 10,000 concurrent whole
# calls through one Client, against a mock in its own process, over HTTP/1.1 and then over
# HTTP/2 (N / 200 connections). Usage: benches/scale.sh [N]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-10000}
cargo build --quiet --release -p anthropic-mock -p benches --bin scale --bin anthropic-mock \
  --manifest-path "$root/Cargo.toml" 2>/dev/null \
  || cargo build --quiet --release -p anthropic-mock -p benches --manifest-path "$root/Cargo.toml"
ulimit -n "$(ulimit -Hn)"
h2=""
run() {
  local mode=$1; shift
  coproc MOCK { exec "$root/target/release/anthropic-mock" "$@"; }
  local url
  read -r line <&"${MOCK[0]}"
  url=${line##* }
  "$root/target/release/scale" "$url" "$mode" "$n" 100 $h2 || true
  kill "$MOCK_PID" 2>/dev/null || true
  wait "$MOCK_PID" 2>/dev/null || true
}
echo "# $(nproc) cores, $(date -u +%Y-%m-%d), $n at once"
# Streams: 100 tokens at 20 tokens/s (about 5 s each), so all are open together.
run streams --tps 20 --output-tokens 100
# The floor: the same streams read raw by bare hyper (same pool settings but no decoding).
run bare-streams --tps 20 --output-tokens 100
# Whole answers: 100 tokens at 50 tokens/s (2 s each).
run calls --tps 50 --output-tokens 100
# HTTP/2 (h2c to the mock, which allows 200 streams per connection, hyper's default): the
# same streams over 50 connections (http2_connections), and bare hyper over as many.
h2="--h2 $(( (n + 199) / 200 ))"
run streams --tps 20 --output-tokens 100
run bare-streams --tps 20 --output-tokens 100
run calls --tps 50 --output-tokens 100
