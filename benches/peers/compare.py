"""Runs scenarios a to c (and i, throughput without faults) with tower-anthropic (the `drive` binary) and the official Python SDK
(`peer.py`) against one shared mock process per scenario, and prints both side by side.
Run through compare.sh, which builds the binaries and the virtualenv first."""
import contextlib
import json
import os
import subprocess
import sys

ROOT, PYTHON = sys.argv[1], sys.argv[2]
MOCK = f"{ROOT}/target/release/anthropic-mock"
DRIVE = f"{ROOT}/target/release/drive"
PEER = f"{ROOT}/benches/peers/peer.py"
SCENARIOS = ["rate_limited", "overload", "outage"]
# `compare.sh pacing`: the rate-limited scenarios, each with pacing on, pacing off, and the
# Python SDK, against one mock process (reset before each run).
PACING = ["rate_limited", "input_bound", "output_bound", "burst"]


@contextlib.contextmanager
def mock_process(args=()):
    """A mock process with `args`; yields its URL, stops it after."""
    mock = subprocess.Popen([MOCK, *args], stdout=subprocess.PIPE, text=True)
    try:
        yield mock.stdout.readline().split()[-1]
    finally:
        mock.terminate()
        mock.wait(timeout=10)


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_measured(cmd):
    """`run_json`, with the process's own CPU seconds and peak memory (its rusage alone)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    if status != 0:
        raise RuntimeError(f"{cmd} exited with {status}")
    d = json.loads(out.strip().splitlines()[-1])
    d["cpu_s"] = usage.ru_utime + usage.ru_stime
    d["max_rss_mib"] = usage.ru_maxrss / 1024
    return d


def throughput():
    """Scenario i: no faults, no limits, 5,000 calls at concurrency 64; each client in its
    own process against one mock process (reset before each run)."""
    sc = "throughput"
    with mock_process() as url:
        rust = run_measured([DRIVE, url, sc])
        py = run_measured([PYTHON, PEER, url, sc])
    print("\n### i. throughput (no faults, concurrency 64)\n")
    print("| client | ok | requests/s | CPU s per 1,000 calls | peak memory (MiB) | p50 (ms) | p99 (ms) |")
    print("|---|---|---|---|---|---|---|")
    for who, d in (("tower-anthropic", rust), ("anthropic (Python)", py)):
        rps = d["succeeded"] / d["wall_s"]
        print(f"| {who} | {d['succeeded']} | {rps:.0f} | {d['cpu_s'] * 1000 / d['requests']:.3f} | "
              f"{d['max_rss_mib']:.1f} | {d['p50_ms']:.2f} | {d['p99_ms']:.2f} |")
    r = (rust["succeeded"] / rust["wall_s"]) / (py["succeeded"] / py["wall_s"])
    print(f"\nthroughput ratio (tower-anthropic / Python): {r:.1f}x; "
          f"CPU per call ratio (Python / tower-anthropic): {py['cpu_s'] / max(rust['cpu_s'], 1e-9):.1f}x")


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.3f}{unit}" if abs(v) < 10 else f"{v:.1f}{unit}"
    return f"{v}{unit}"


def pacing():
    print("| scenario | client | ok | failed | 429s | attempts/req | wall (s) | ideal (s) | wall / ideal |")
    print("|---|---|---|---|---|---|---|---|---|")
    for sc in PACING:
        args = subprocess.run([DRIVE, "--mock-args", sc], check=True, capture_output=True, text=True).stdout.split()
        with mock_process(args) as url:
            paced = run_json([DRIVE, url, sc])
            unpaced = run_json([DRIVE, url, sc + "_no_pacing"])
            py = run_json([PYTHON, PEER, url, sc])
        ideal = paced["ideal_s"]
        for who, d in (("tower-anthropic", paced), ("tower-anthropic, pacing off", unpaced), ("anthropic (Python)", py)):
            ratio = d["wall_s"] / ideal if ideal else float("nan")
            print(f"| {sc} | {who} | {d['succeeded']} | {d['failed']} | {d['mock_429']} | "
                  f"{d['attempts_per_request']:.3f} | {d['wall_s']:.2f} | {ideal:.1f} | {ratio:.3f} |")


def degradation():
    """Scenario h: tower-anthropic with breakers and a fallback model, without them, and the
    Python SDK, against one mock process (reset before each run)."""
    sc = "model_outage"
    args = subprocess.run([DRIVE, "--mock-args", sc], check=True, capture_output=True, text=True).stdout.split()
    with mock_process(args) as url:
        runs = [("tower-anthropic, breaker + fallback", run_json([DRIVE, url, sc])),
                ("tower-anthropic, layers off", run_json([DRIVE, url, sc + "_no_layers"])),
                ("anthropic (Python)", run_json([PYTHON, PEER, url, sc]))]
    print("| client | requests | answered | by primary | by fallback | failed | breaker opened (s into outage) "
          "| primary attempts/request from 1 s into outage | outage p50 (ms) | outage p99 (ms) | back on primary (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for who, d in runs:
        answered = 100.0 * d["succeeded"] / max(d["requests"], 1)
        print(f"| {who} | {d['requests']} | {answered:.1f}% | {d['answered_primary']} | {d['answered_fallback']} | "
              f"{d['failed']} | {fmt(d.get('breaker_opened_s'))} | {fmt(d.get('primary_attempts_per_request'))} | "
              f"{fmt(d.get('outage_p50_ms'))} | {fmt(d.get('outage_p99_ms'))} | {fmt(d.get('recovery_s'))} |")


def main():
    if sys.argv[3:] == ["pacing"]:
        return pacing()
    if sys.argv[3:] == ["degradation"]:
        return degradation()
    if sys.argv[3:] == ["throughput"]:
        return throughput()
    rows = []
    for sc in SCENARIOS:
        args = subprocess.run([DRIVE, "--mock-args", sc], check=True, capture_output=True, text=True).stdout.split()
        with mock_process(args) as url:
            rust = run_json([DRIVE, url, sc])
            py = run_json([PYTHON, PEER, url, sc])
        rows.append((sc, rust, py))

    metrics = [
        ("succeeded", "succeeded"), ("failed after all retries", "failed"),
        ("429s received", "mock_429"), ("attempts per request", "attempts_per_request"),
        ("wall time (s)", "wall_s"), ("p50 latency (ms)", "p50_ms"), ("p99 latency (ms)", "p99_ms"),
        ("requests during the outage", "outage_requests"), ("attempts seen during the outage", "outage_attempts"),
        ("recovery after the outage (s)", "recovery_s"),
    ]
    for sc, rust, py in rows:
        print(f"\n### {sc}\n")
        print("| metric | tower-anthropic | anthropic (Python) | ratio |")
        print("|---|---|---|---|")
        for label, key in metrics:
            if sc != "outage" and key in ("outage_requests", "outage_attempts", "recovery_s"):
                continue
            r, p = rust.get(key), py.get(key)
            ratio = f"{r / p:.2f}" if isinstance(r, (int, float)) and isinstance(p, (int, float)) and p else "-"
            print(f"| {label} | {fmt(r)} | {fmt(p)} | {ratio} |")
        if sc == "outage":
            for who, d in (("tower-anthropic", rust), ("anthropic (Python)", py)):
                amp = d["outage_attempts"] / max(d["outage_requests"], 1)
                print(f"\n{who}: {amp:.2f} attempts per request reached the server during the outage")
    throughput()


if __name__ == "__main__":
    main()
