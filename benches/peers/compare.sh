#!/usr/bin/env bash
# The official Python SDK side by side with tower-anthropic, on scenarios a to c (or, with
# the argument `pacing`, on the rate-limited scenarios a, e, f and g with pacing on and off;
# with `degradation`, on scenario h with the breaker and fallback layers on and off; with
# `throughput`, on scenario i alone: no faults, concurrency 64, requests/s, CPU and memory,
# which the default run also prints), against one shared mock process per scenario. Installs `anthropic` from PyPI into a local
# virtualenv on first use (VENV, default benches/peers/.venv).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv=${VENV:-$root/benches/peers/.venv}
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p anthropic-mock -p benches --bin anthropic-mock --bin drive
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "anthropic==2.10.0"
fi
echo "# tower-anthropic vs the official Python SDK ($("$venv/bin/python" -c 'import anthropic; print("anthropic", anthropic.__version__)')), $(nproc) cores, $(date -u +%Y-%m-%d)"
exec "$venv/bin/python" "$root/benches/peers/compare.py" "$root" "$venv/bin/python" "$@"
