"""Acceptance runs of the queue (BENCHMARKS.md, section 9), against a separate mock process.

    python3 benches/queue/bulk.py sigkill      # 2,000 prompts, SIGKILL at ~40%, restart
    python3 benches/queue/bulk.py spike        # 2,000 requests at once, 16 workers
    python3 benches/queue/bulk.py distributed  # Redis: 3 worker processes, one SIGKILLed
    python3 benches/queue/bulk.py python       # the Python SDK with asyncio.Semaphore

Needs `cargo build --release -p anthropic-mock -p tower-anthropic-queue` first (and, for
`python`, the virtualenv of benches/peers/compare.sh). Prints one JSON line per run.
"""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MOCK = f"{ROOT}/target/release/anthropic-mock"
BULK = f"{ROOT}/target/release/anthropic-bulk"
WORK = os.environ.get("BULK_DIR", "/tmp/anthropic-bulk-bench")
RPM = 1200


def start_mock(*args):
    p = subprocess.Popen([MOCK, *args], stdout=subprocess.PIPE, text=True)
    url = p.stdout.readline().split()[-1]
    return p, url


def stats(url):
    with urllib.request.urlopen(url + "/_mock/stats") as r:
        return json.loads(r.read())


def prompts(path, n, bad_every=0):
    with open(path, "w") as f:
        for i in range(n):
            mt = 0 if bad_every and i % bad_every == 0 else 64
            req = {"model": "claude-sonnet-4-6", "max_tokens": mt,
                   "messages": [{"role": "user", "content": f"prompt {i}"}]}
            f.write(json.dumps({"id": f"p{i}", "request": req}) + "\n")


def lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def read_out(path):
    ids, status = [], {}
    with open(path) as f:
        for line in f:
            o = json.loads(line)
            ids.append(o["id"])
            status[o["status"]] = status.get(o["status"], 0) + 1
    return ids, status


def env_for(url):
    e = dict(os.environ)
    e["ANTHROPIC_API_KEY"] = "sk-bench"
    e["ANTHROPIC_BASE_URL"] = url
    return e


def ideal(n):
    # What does not fit the full bucket, at the refill rate.
    return max(0, n - RPM) / (RPM / 60)


def sigkill():
    os.makedirs(WORK, exist_ok=True)
    inp, out = f"{WORK}/prompts.jsonl", f"{WORK}/out.jsonl"
    n = 2000
    prompts(inp, n)
    if os.path.exists(out):
        os.remove(out)
    mock, url = start_mock("--rpm", str(RPM), "--itpm", "100000000", "--otpm", "100000000",
                           "--p529", "0.1", "--seed", "7")
    try:
        cmd = [BULK, "run", inp, "--out", out, "--concurrency", "16"]
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, env=env_for(url), stderr=subprocess.DEVNULL)
        while lines(out) < 0.4 * n:
            time.sleep(0.01)
        p.send_signal(signal.SIGKILL)
        p.wait()
        t_kill = time.monotonic()
        at_kill = lines(out)
        p = subprocess.Popen(cmd, env=env_for(url), stderr=subprocess.DEVNULL)
        t_restart = time.monotonic()
        p.wait()
        t_end = time.monotonic()
        ids, status = read_out(out)
        s = stats(url)
        print(json.dumps({
            "run": "bulk_sigkill", "prompts": n, "lines_at_kill": at_kill,
            "output_lines": len(ids), "distinct_ids": len(set(ids)), "status": status,
            "mock_requests": s["requests"], "mock_429": s["by_status"].get("429", 0),
            "mock_529": s["by_status"].get("529", 0),
            "wall_minus_restart_s": (t_kill - t0) + (t_end - t_restart),
            "ideal_s": ideal(n), "exit_code": p.returncode,
        }))
    finally:
        mock.terminate()
        mock.wait()


def spike():
    os.makedirs(WORK, exist_ok=True)
    inp, out = f"{WORK}/spike.jsonl", f"{WORK}/spike-out.jsonl"
    n = 2000
    prompts(inp, n)
    if os.path.exists(out):
        os.remove(out)
    mock, url = start_mock("--rpm", str(RPM), "--itpm", "100000000", "--otpm", "100000000")
    try:
        t0 = time.monotonic()
        p = subprocess.run([BULK, "run", inp, "--out", out, "--concurrency", "16"],
                           env=env_for(url), stderr=subprocess.DEVNULL)
        wall = time.monotonic() - t0
        ids, status = read_out(out)
        s = stats(url)
        print(json.dumps({
            "run": "spike", "requests": n, "output_lines": len(ids), "distinct_ids": len(set(ids)),
            "status": status, "mock_requests": s["requests"], "mock_429": s["by_status"].get("429", 0),
            "wall_s": wall, "ideal_s": ideal(n), "exit_code": p.returncode,
        }))
    finally:
        mock.terminate()
        mock.wait()


def distributed():
    os.makedirs(WORK, exist_ok=True)
    inp, out = f"{WORK}/dist.jsonl", f"{WORK}/dist-out.jsonl"
    n = 3000
    prompts(inp, n, bad_every=100)  # 30 requests with max_tokens 0: 400s, dead letters
    if os.path.exists(out):
        os.remove(out)
    redis = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
    queue = f"bench-dist-{os.getpid()}"
    mock, url = start_mock("--rpm", "6000", "--itpm", "100000000", "--otpm", "100000000",
                           "--ttfb", "100ms")
    workers = []
    try:
        def worker():
            return subprocess.Popen([BULK, "worker", "--redis", redis, "--queue", queue,
                                     "--concurrency", "16", "--lease", "5"], env=env_for(url),
                                    stderr=subprocess.DEVNULL)
        t0 = time.monotonic()
        collector = subprocess.Popen([BULK, "run", inp, "--out", out, "--redis", redis, "--queue", queue,
                                      "--no-workers"], env=env_for(url), stderr=subprocess.DEVNULL)
        workers = [worker() for _ in range(3)]
        while lines(out) < 0.4 * n:
            time.sleep(0.01)
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait()
        killed_at = lines(out)
        workers.append(worker())
        collector.wait()
        wall = time.monotonic() - t0
        ids, status = read_out(out)
        dead = []
        with open(out) as f:
            for line in f:
                o = json.loads(line)
                if o["status"] == "dead":
                    dead.append((o["error"].get("status"), o["error"].get("error_type"), o["reason"]))
        s = stats(url)
        print(json.dumps({
            "run": "distributed", "jobs": n, "workers": "3 + 1 fresh, 1 SIGKILLed at "
            f"{killed_at} outcomes", "output_lines": len(ids), "distinct_ids": len(set(ids)),
            "duplicates": len(ids) - len(set(ids)), "lost": n - len(set(ids)), "status": status,
            "dead_letters": sorted(set(map(tuple, dead))), "mock_requests": s["requests"],
            "wall_s": wall, "exit_code": collector.returncode,
        }))
    finally:
        for w in workers:
            if w.poll() is None:
                w.terminate()
                w.wait()
        mock.terminate()
        mock.wait()


def python_peer():
    venv = os.environ.get("VENV", f"{ROOT}/benches/peers/.venv")
    n = 2000
    mock, url = start_mock("--rpm", str(RPM), "--itpm", "100000000", "--otpm", "100000000",
                           "--p529", "0.1", "--seed", "7")
    code = f"""
import asyncio, json, time, anthropic
async def main():
    client = anthropic.AsyncAnthropic(base_url={url!r}, api_key="sk-bench")
    sem = asyncio.Semaphore(16)
    ok = 0; failed = 0
    async def one(i):
        nonlocal ok, failed
        async with sem:
            try:
                await client.messages.create(model="claude-sonnet-4-6", max_tokens=64,
                    messages=[{{"role": "user", "content": f"prompt {{i}}"}}])
                ok += 1
            except anthropic.APIError:
                failed += 1
    t0 = time.monotonic()
    await asyncio.gather(*(one(i) for i in range({n})))
    print(json.dumps({{"ok": ok, "lost": failed, "wall_s": time.monotonic() - t0}}))
asyncio.run(main())
"""
    try:
        r = subprocess.run([f"{venv}/bin/python", "-c", code], capture_output=True, text=True, check=True)
        d = json.loads(r.stdout.strip().splitlines()[-1])
        s = stats(url)
        d.update({"run": "python_semaphore", "requests": n, "mock_requests": s["requests"],
                  "mock_429": s["by_status"].get("429", 0), "ideal_s": ideal(n)})
        print(json.dumps(d))
    finally:
        mock.terminate()
        mock.wait()


if __name__ == "__main__":
    {"sigkill": sigkill, "spike": spike, "distributed": distributed, "python": python_peer}[sys.argv[1]]()
