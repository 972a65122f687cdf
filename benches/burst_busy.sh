#!/usr/bin/env bash
# The burst scenario on a quiet host and on a busy one (BENCHMARKS.md, "Pacing on a busy
# host"): one mock process with the scenario's limits, `drive` run RUNS times against it, a
# fresh mock each run; then the same with HOGS CPU-bound neighbour processes beside it.
# One JSON line per run (ok, failed, the mock's own 429 count, wall, ideal).
#
#   cargo build --release -p anthropic-mock -p benches
#   bash benches/burst_busy.sh [SCENARIO] [RUNS] [HOGS]     # defaults: burst_600 10 2
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:-burst_600}
runs=${2:-10}
hogs=${3:-2}
mock=target/release/anthropic-mock
drive=target/release/drive
read -r -a mock_args <<<"$("$drive" --mock-args "$scenario")"

one() {
  local out url pid line
  out=$(mktemp)
  "$mock" "${mock_args[@]}" >"$out" &
  pid=$!
  for _ in $(seq 100); do
    url=$(grep -o 'http://[^ ]*' "$out" | head -n1 || true)
    [ -n "$url" ] && break
    sleep 0.05
  done
  line=$("$drive" "$url" "$scenario")
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  rm -f "$out"
  python3 - "$line" "$1" <<'EOF'
import json, sys
r, neighbours = json.loads(sys.argv[1]), sys.argv[2]
n429 = r["mock_429"]
print(json.dumps({"neighbours": int(neighbours), "ok": r["succeeded"], "failed": r["failed"],
                  "mock_429": n429, "pct_429": round(100 * n429 / r["requests"], 2),
                  "wall_s": round(r["wall_s"], 2), "ideal_s": r["ideal_s"],
                  "bound_s": round(1.05 * r["ideal_s"] + 1, 2),
                  "within": r["wall_s"] <= 1.05 * r["ideal_s"] + 1 and n429 <= r["requests"] / 100
                            and r["failed"] == 0}))
EOF
}

for _ in $(seq "$runs"); do one 0; done
pids=()
for _ in $(seq "$hogs"); do
  python3 -c 'while True: pass' &
  pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
for _ in $(seq "$runs"); do one "$hogs"; done
