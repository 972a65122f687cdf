#!/usr/bin/env bash
# Instructions per call, bare hyper and the default Client (and the Client without its
# pacer), counted by callgrind (repeatable on a shared machine, unlike time). Each is run for
# N1 and N2 sequential calls against the same mock (its own process, not counted); per call =
# (I(N2) - I(N1)) / (N2 - N1), so start-up and the first call's set-up cancel out. With `canned` the same without a network:
# over an in-memory service with a canned answer (the `stack_cpu` bench's floor and default
# stack, and the stack without the pacer). Usage: benches/callgrind.sh [N1 N2 [canned]]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n1=${1:-200}
n2=${2:-1200}
kind=${3:-mock}
command -v valgrind >/dev/null || { echo "valgrind is not installed"; exit 1; }
cargo build --quiet --release -p anthropic-mock -p benches --manifest-path "$root/Cargo.toml"
if [ "$kind" = canned ]; then
  url=- modes="canned-bare canned-stack canned-unpaced"
else
  coproc MOCK { exec "$root/target/release/anthropic-mock"; }
  read -r line <&"${MOCK[0]}"
  url=${line##* } modes="bare stack unpaced"
  trap 'kill $MOCK_PID 2>/dev/null || true' EXIT
fi
out=$(mktemp -d)
count() { # mode n -> total instructions
  valgrind --tool=callgrind --callgrind-out-file="$out/$1.$2" \
    "$root/target/release/calls" "$url" "$1" "$2" >/dev/null 2>&1
  awk '/^(summary|totals):/ {print $2; exit}' "$out/$1.$2"
}
echo "# callgrind, $(valgrind --version), $(date -u +%Y-%m-%d), N1=$n1 N2=$n2, $kind"
declare -A per
for mode in $modes; do
  a=$(count "$mode" "$n1")
  b=$(count "$mode" "$n2")
  per[$mode]=$(( (b - a) / (n2 - n1) ))
  echo "$mode: $a instructions for $n1 calls, $b for $n2: ${per[$mode]} per call"
done
ratio() { awk -v s="$2" -v b="$3" -v l="$1" 'BEGIN { printf "%s: %.3f (%d more instructions per call)\n", l, s / b, s - b }'; }
if [ "$kind" = canned ]; then
  ratio "stack / bare" "${per[canned-stack]}" "${per[canned-bare]}"
  ratio "stack without the pacer / bare" "${per[canned-unpaced]}" "${per[canned-bare]}"
else
  ratio "stack / bare" "${per[stack]}" "${per[bare]}"
  ratio "stack without the pacer / bare" "${per[unpaced]}" "${per[bare]}"
fi
rm -rf "$out"
