#!/usr/bin/env bash
# Instructions per call, bare hyper and the default Client, counted by callgrind (repeatable
# on a shared machine, unlike time). Each is run for N1 and N2 sequential calls against the
# same mock (its own process, not counted); per call = (I(N2) - I(N1)) / (N2 - N1), so
# start-up and the first call's set-up cancel out. Usage: benches/callgrind.sh [N1 N2]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n1=${1:-200}
n2=${2:-1200}
command -v valgrind >/dev/null || { echo "valgrind is not installed"; exit 1; }
cargo build --quiet --release -p anthropic-mock -p benches --manifest-path "$root/Cargo.toml"
coproc MOCK { exec "$root/target/release/anthropic-mock"; }
read -r line <&"${MOCK[0]}"
url=${line##* }
trap 'kill $MOCK_PID 2>/dev/null || true' EXIT
out=$(mktemp -d)
count() { # mode n -> total instructions
  valgrind --tool=callgrind --callgrind-out-file="$out/$1.$2" \
    "$root/target/release/calls" "$url" "$1" "$2" >/dev/null 2>&1
  awk '/^(summary|totals):/ {print $2; exit}' "$out/$1.$2"
}
echo "# callgrind, $(valgrind --version), $(date -u +%Y-%m-%d), N1=$n1 N2=$n2"
declare -A per
for mode in bare stack; do
  a=$(count "$mode" "$n1")
  b=$(count "$mode" "$n2")
  per[$mode]=$(( (b - a) / (n2 - n1) ))
  echo "$mode: $a instructions for $n1 calls, $b for $n2: ${per[$mode]} per call"
done
awk -v s="${per[stack]}" -v b="${per[bare]}" 'BEGIN { printf "stack / bare: %.3f (%d more instructions per call)\n", s / b, s - b }'
rm -rf "$out"
