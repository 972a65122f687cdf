"""The gateway beside LiteLLM's proxy and direct calls to the mock (BENCHMARKS.md, section 15).

Needs `cargo build --release -p anthropic-mock -p benches -p anthropic-gateway`, the Python
SDK's virtualenv (benches/peers/.venv, as .ci/run makes it) and LiteLLM's proxy in a
virtualenv of its own (LITELLM_VENV, default /tmp/litellm-venv):

    python3 -m venv /tmp/litellm-venv && /tmp/litellm-venv/bin/pip install 'litellm[proxy]'

    python3 benches/peers/gateway.py overhead [N]  # non-streaming, concurrency 64: calls/s, p50, p99
    python3 benches/peers/gateway.py streams [N]   # N (1,000) streams open at once: memory per stream
    python3 benches/peers/gateway.py idle [N]      # N (5,000) connections that send nothing
    python3 benches/peers/gateway.py quota         # 4 Python SDK processes on one 600/min quota
    python3 benches/peers/gateway.py replicas      # the same through three gateways on Redis

Every peer runs on this machine at once with the load (2 cores): compare within one run.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
REL = f"{ROOT}/target/release"
VENV = os.environ.get("VENV", f"{ROOT}/benches/peers/.venv")
LITELLM = os.environ.get("LITELLM_VENV", "/tmp/litellm-venv")
KEY = "sk-gw-bench-caller"
LITELLM_KEY = "sk-litellm-bench"
WORKERS = os.environ.get("LITELLM_WORKERS", "1")
HASH = "sha256:" + __import__("hashlib").sha256(KEY.encode()).hexdigest()
PROCS, CONC, TOTAL, RPM = 4, 8, 900, 600


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def mock(*args):
    p = subprocess.Popen([f"{REL}/anthropic-mock", *args], stdout=subprocess.PIPE, text=True)
    return p, p.stdout.readline().split()[-1]


def stats(url):
    with urllib.request.urlopen(url + "/_mock/stats") as r:
        return json.loads(r.read())


def gateway(mock_url, extra=""):
    """A gateway process in front of `mock_url` with the bench key; (process, url)."""
    cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    cfg.write(f'listen = "127.0.0.1:0"\n[upstream]\nbase_url = "{mock_url}"\n{extra}\n'
              f'[[key]]\nname = "bench"\nhash = "{HASH}"\n')
    cfg.close()
    env = dict(os.environ, ANTHROPIC_API_KEY="sk-ant-bench", NO_COLOR="1", RUST_LOG="warn,anthropic_gateway=info")
    p = subprocess.Popen([f"{REL}/anthropic-gateway", "--config", cfg.name], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        if "anthropic-gateway on " in line:
            url = line.split("anthropic-gateway on ")[1].split(",")[0]
            # Keep reading its log so it never blocks on a full pipe.
            subprocess.Popen(["cat"], stdin=p.stderr, stdout=subprocess.DEVNULL)
            return p, url
    raise RuntimeError("the gateway did not start")


def litellm(mock_url):
    """LiteLLM's proxy (LITELLM_WORKERS workers, default 1) in front of `mock_url`."""
    port = free_port()
    cfg = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    cfg.write(f"""model_list:
  - model_name: claude-sonnet-4-6
    litellm_params:
      model: anthropic/claude-sonnet-4-6
      api_base: {mock_url}
      api_key: sk-ant-bench
general_settings:
  master_key: {LITELLM_KEY}
litellm_settings:
  telemetry: false
""")
    cfg.close()
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR")
    p = subprocess.Popen([f"{LITELLM}/bin/litellm", "--config", cfg.name, "--port", str(port),
                          "--num_workers", WORKERS], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(url + "/health/liveliness", timeout=1):
                return p, url
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("LiteLLM did not start")


def load(url, key, n, conc, stream=False):
    cmd = [f"{REL}/load", url, key, str(n), str(conc)] + (["stream"] if stream else [])
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def stop(*procs):
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


def overhead(n):
    m, murl = mock()
    g, gurl = gateway(murl)
    l, lurl = litellm(murl)
    try:
        peers = [("direct (the mock)", murl, "sk-ant-bench"), ("anthropic-gateway", gurl, KEY),
                 (f"LiteLLM proxy ({WORKERS} worker(s))", lurl, LITELLM_KEY)]
        for _, url, key in peers:  # warm-up
            load(url, key, 200, 64)
        rows = [(name, load(url, key, n if "LiteLLM" not in name else max(n // 10, 500), 64))
                for name, url, key in peers]
    finally:
        stop(g, l, m)
    direct = rows[0][1]
    print(f"non-streaming calls, concurrency 64 ({n} calls; LiteLLM {max(n // 10, 500)})\n")
    print("| path | calls/s | p50 (ms) | p99 (ms) | added p50 (ms) | added p99 (ms) | failed |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
              f"{r['p50_ms'] - direct['p50_ms']:.2f} | {r['p99_ms'] - direct['p99_ms']:.2f} | {r['failed']} |")
    gw, lt = rows[1][1], rows[2][1]
    print(f"\ngateway / LiteLLM calls/s: {gw['rps'] / lt['rps']:.1f}x; added p99 gateway / LiteLLM: "
          f"{(gw['p99_ms'] - direct['p99_ms']) / max(lt['p99_ms'] - direct['p99_ms'], 1e-9):.3f}")


def streams(n):
    # 48 output tokens at 4 a second: each stream stays open about 12 s.
    m, murl = mock("--tps", "4")
    g, gurl = gateway(murl, f"concurrency = {n + 100}\n[pacing]\nmax_queued = {n + 100}\n"
                             f"[limits]\nmax_connections = {n + 100}")
    try:
        load(gurl, KEY, 50, 50)  # warm-up: connections, the quota's first answer
        idle = rss_kib(g.pid)
        runner = subprocess.Popen([f"{REL}/load", gurl, KEY, str(n), str(n), "stream"],
                                  stdout=subprocess.PIPE, text=True)
        peak_open, peak_rss = 0, idle
        deadline = time.time() + 60
        while runner.poll() is None and time.time() < deadline:
            s = stats(murl)
            peak_open = max(peak_open, s["open_streams"])
            if s["open_streams"] >= peak_open:
                peak_rss = max(peak_rss, rss_kib(g.pid))
            time.sleep(0.2)
        out = json.loads(runner.communicate()[0])
    finally:
        stop(g, m)
    per = (peak_rss - idle) / max(peak_open, 1)
    print(f"| streams asked | open at once (upstream) | gateway RSS idle (MiB) | at peak (MiB) | per open stream (KiB) | answered | failed |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {n} | {peak_open} | {idle / 1024:.1f} | {peak_rss / 1024:.1f} | {per:.1f} | {out['ok']} | {out['failed']} |")


def idle(n):
    """N connections that send nothing: the gateway's memory while they are open, and after
    the header timeout (10 s) has closed them."""
    m, murl = mock()
    g, gurl = gateway(murl, "[limits]\nheader_timeout_secs = 10\nmax_connections = 20000")
    host, port = gurl.removeprefix("http://").rsplit(":", 1)
    try:
        load(gurl, KEY, 50, 10)
        before = rss_kib(g.pid)
        socks = []
        t0 = time.time()
        for _ in range(n):
            sock = socket.create_connection((host, int(port)))
            socks.append(sock)
        time.sleep(1)
        held = rss_kib(g.pid)
        opened_in = time.time() - t0
        time.sleep(12)
        closed = 0
        for sock in socks:
            sock.setblocking(False)
            try:
                closed += sock.recv(1) == b""
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
        after = rss_kib(g.pid)
        for sock in socks:
            sock.close()
    finally:
        stop(g, m)
    print("| idle connections | opened in (s) | RSS before (MiB) | while open (MiB) | per connection (KiB) | closed by the gateway after 12 s | RSS after (MiB) |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {n} | {opened_in:.1f} | {before / 1024:.1f} | {held / 1024:.1f} | {(held - before) / n:.2f} | "
          f"{closed} | {after / 1024:.1f} |")


PY = """
import asyncio, json, sys, time, anthropic
async def main(url, key, n, start_at):
    c = anthropic.AsyncAnthropic(base_url=url, api_key=key)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    sem = asyncio.Semaphore(%d)
    ok = failed = 0
    async def one(i):
        nonlocal ok, failed
        async with sem:
            try:
                await c.messages.create(model="claude-sonnet-4-6", max_tokens=64,
                    messages=[{"role": "user", "content": f"shared quota {i}"}])
                ok += 1
            except anthropic.APIError:
                failed += 1
    t = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(n)))
    print(json.dumps({"ok": ok, "failed": failed, "end": time.time()}))
asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
""" % CONC


def four(targets):
    """4 Python SDK processes, each on `targets[i % len(targets)]` = (url, key), their calls
    started at one instant (after every interpreter is up); the wall is counted from it to the
    last call's end."""
    start_at = time.time() + 4.0
    procs = [subprocess.Popen([f"{VENV}/bin/python", "-c", PY, *targets[i % len(targets)],
                               str(TOTAL // PROCS), str(start_at)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) for i in range(PROCS)]
    outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    return outs, max(o["end"] for o in outs) - start_at


def quota_row(name, murl, outs, wall):
    s = stats(murl)
    ideal = (TOTAL - RPM) / (RPM / 60)
    ok, failed = sum(o["ok"] for o in outs), sum(o["failed"] for o in outs)
    up429 = s["by_status"].get("429", 0)
    print(f"| {name} | {ok} | {failed} | {s['requests']} | {up429} ({100 * up429 / max(s['requests'], 1):.1f}%) | "
          f"{wall:.1f} | {wall / ideal:.3f} |", flush=True)


def quota():
    print(f"4 processes of the official Python SDK x concurrency {CONC}, {TOTAL} calls, one quota of "
          f"{RPM} requests/min (ideal {(TOTAL - RPM) / (RPM / 60):.0f} s)\n")
    print("| path | answered | lost | requests upstream | 429s upstream | wall (s) | wall / ideal |")
    print("|---|---|---|---|---|---|---|")
    rpm = ["--rpm", str(RPM), "--itpm", "100000000", "--otpm", "100000000"]
    for name in ["anthropic-gateway", f"LiteLLM proxy ({WORKERS} worker(s))", "direct"]:
        m, murl = mock(*rpm)
        procs = [m]
        try:
            if name == "direct":
                target = (murl, "sk-ant-bench")
            elif name.startswith("LiteLLM"):
                l, lurl = litellm(murl)
                procs.insert(0, l)
                target = (lurl, LITELLM_KEY)
            else:
                g, gurl = gateway(murl)
                procs.insert(0, g)
                target = (gurl, KEY)
            outs, wall = four([target])
            quota_row(name, murl, outs, wall)
        finally:
            stop(*procs)


def replicas():
    rpm = ["--rpm", str(RPM), "--itpm", "100000000", "--otpm", "100000000"]
    m, murl = mock(*rpm)
    prefix = f"gw-bench-{os.getpid()}-{time.time_ns()}"
    shared = f'[pacing]\nstore = "redis"\nredis_url = "redis://127.0.0.1:6379"\nprefix = "{prefix}"\n'
    gws = [gateway(murl, shared) for _ in range(3)]
    try:
        print("| path | answered | lost | requests upstream | 429s upstream | wall (s) | wall / ideal |")
        print("|---|---|---|---|---|---|---|")
        outs, wall = four([(url, KEY) for _, url in gws])
        quota_row("3 gateways on one Redis", murl, outs, wall)
    finally:
        stop(*[g for g, _ in gws], m)


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "overhead"
    arg = int(sys.argv[2]) if len(sys.argv) > 2 else None
    {"overhead": lambda: overhead(arg or 5000), "streams": lambda: streams(arg or 1000),
     "idle": lambda: idle(arg or 5000),
     "quota": quota, "replicas": replicas}[what]()
