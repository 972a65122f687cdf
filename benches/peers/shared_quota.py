"""One quota, four processes (BENCHMARKS.md, section 10): a mock at 600 requests/min, one
API key, 4 processes x concurrency 8, 900 requests in all (ideal: (900 - 600) / 10 = 30 s);
paced through Redis, paced per process, and the Python SDK. Then the shared pacer's
overhead. Needs `cargo build --release -p anthropic-mock -p benches` and, for the Python
run, the virtualenv of compare.sh.

    python3 benches/peers/shared_quota.py         # the three runs and the overhead
    python3 benches/peers/shared_quota.py fault   # Redis stopped for 5 s mid-run
    python3 benches/peers/shared_quota.py starts [RUNS]  # shared pacing, the four processes
                                                  # started together and one after another
"""
import json
import os
import subprocess
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MOCK = f"{ROOT}/target/release/anthropic-mock"
BIN = f"{ROOT}/target/release/shared_quota"
VENV = os.environ.get("VENV", f"{ROOT}/benches/peers/.venv")
PROCS, CONC, TOTAL, RPM = 4, 8, 900, 600

PY = """
import asyncio, json, sys, time, anthropic
async def main(url, n):
    c = anthropic.AsyncAnthropic(base_url=url, api_key="sk-bench-shared")
    sem = asyncio.Semaphore(%d)
    ok = failed = 0
    async def one(i):
        nonlocal ok, failed
        async with sem:
            try:
                await c.messages.create(model="claude-bench", max_tokens=64,
                    messages=[{"role": "user", "content": f"shared quota {i}"}])
                ok += 1
            except anthropic.APIError:
                failed += 1
    t = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(n)))
    print(json.dumps({"mode": "python", "ok": ok, "failed": failed, "wall_s": time.monotonic() - t}))
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
""" % CONC


def mock():
    p = subprocess.Popen([MOCK, "--rpm", str(RPM), "--itpm", "100000000", "--otpm", "100000000"],
                         stdout=subprocess.PIPE, text=True)
    return p, p.stdout.readline().split()[-1]


def stats(url):
    with urllib.request.urlopen(url + "/_mock/stats") as r:
        return json.loads(r.read())


def four(mode, together=False):
    """Four processes on one quota. `together`: their calls start at one instant (a burst
    that reaches every replica at once), the wall counted from it; else each starts when its
    process is up, one after another."""
    m, url = mock()
    try:
        env = dict(os.environ, QUOTA_PREFIX=f"bench-{mode}-{os.getpid()}-{time.time_ns()}")
        start_at = None
        if together:
            start_at = time.time() + 1.5
            env["START_AT"] = str(int(start_at * 1000))
        if mode == "python":
            cmd = [f"{VENV}/bin/python", "-c", PY, url, str(TOTAL // PROCS)]
        else:
            cmd = [BIN, "run", url, mode, str(TOTAL // PROCS), str(CONC)]
        t0 = time.monotonic()
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
                 for _ in range(PROCS)]
        outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        wall = time.monotonic() - t0
        if start_at is not None:
            wall = time.time() - start_at
        s = stats(url)
    finally:
        m.terminate()
        m.wait()
    ideal = (TOTAL - RPM) / (RPM / 60)
    return {"mode": mode, "ok": sum(o["ok"] for o in outs), "failed": sum(o["failed"] for o in outs),
            "mock_requests": s["requests"], "mock_429": s["by_status"].get("429", 0),
            "wall_s": round(wall, 2), "ideal_s": ideal, "wall_over_ideal": round(wall / ideal, 3)}


def fault():
    """Redis (a server of this run's own, on a free port) stopped for 5 s mid-run."""
    import socket
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    redis_cmd = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"]
    redis = subprocess.Popen(redis_cmd, stdout=subprocess.DEVNULL)
    time.sleep(0.3)
    m, url = mock()
    try:
        env = dict(os.environ, REDIS_URL=f"redis://127.0.0.1:{port}", QUOTA_PREFIX="bench-fault")
        cmd = [BIN, "run", url, "shared", str(TOTAL // PROCS), str(CONC)]
        t0 = time.monotonic()
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for _ in range(PROCS)]
        time.sleep(10)
        redis.kill()
        redis.wait()
        stopped = time.monotonic() - t0
        time.sleep(5)
        redis = subprocess.Popen(redis_cmd, stdout=subprocess.DEVNULL)
        restarted = time.monotonic() - t0
        results = [p.communicate() for p in procs]
        wall = time.monotonic() - t0
        outs = [json.loads(o.strip().splitlines()[-1]) for o, _ in results]
        logs = [line for _, e in results for line in e.splitlines()
                if "shared quota store" in line]
        s = stats(url)
    finally:
        m.terminate()
        m.wait()
        redis.kill()
        redis.wait()
    print(f"\nfault: Redis stopped at {stopped:.1f} s, restarted at {restarted:.1f} s")
    print(json.dumps({"ok": sum(o["ok"] for o in outs), "failed": sum(o["failed"] for o in outs),
                      "mock_requests": s["requests"], "mock_429": s["by_status"].get("429", 0),
                      "wall_s": round(wall, 2)}))
    for line in logs:
        print("   ", line)


def unlimited(what):
    """`shared_quota WHAT URL` against a mock without limits; its JSON line."""
    m = subprocess.Popen([MOCK], stdout=subprocess.PIPE, text=True)
    url = m.stdout.readline().split()[-1]
    try:
        return subprocess.run([BIN, what, url], capture_output=True, text=True, check=True).stdout.strip()
    finally:
        m.terminate()
        m.wait()


def starts(runs):
    print("| start | run | ok | failed | requests seen | 429s | wall (s) | wall / ideal (30 s) |")
    print("|---|---|---|---|---|---|---|---|")
    for together in (True, False):
        for i in range(runs):
            r = four("shared", together)
            print(f"| {'together' if together else 'one after another'} | {i + 1} | {r['ok']} | "
                  f"{r['failed']} | {r['mock_requests']} | {r['mock_429']} | {r['wall_s']} | "
                  f"{r['wall_over_ideal']} |", flush=True)
    print("\ncold start, 8 calls at once on an unknown quota:", unlimited("cold"))


def main():
    import sys
    if sys.argv[1:] == ["fault"]:
        return fault()
    if sys.argv[1:2] == ["starts"]:
        return starts(int(sys.argv[2]) if len(sys.argv) > 2 else 3)
    print("| pacing | ok | failed | requests seen | 429s | wall (s) | wall / ideal (30 s) |")
    print("|---|---|---|---|---|---|---|")
    for mode in ["shared", "local", "python"]:
        r = four(mode)
        print(f"| {mode} | {r['ok']} | {r['failed']} | {r['mock_requests']} | {r['mock_429']} | "
              f"{r['wall_s']} | {r['wall_over_ideal']} |")
    print("\noverhead:", unlimited("overhead"))


if __name__ == "__main__":
    main()
