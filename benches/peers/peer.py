"""Drives the official Anthropic Python SDK (AsyncAnthropic, default retries) through one
scenario against a running mock, the same way `drive` drives tower-anthropic, and prints one
JSON line of figures. Usage: python peer.py URL SCENARIO."""
import asyncio
import json
import sys
import time
import urllib.request

import anthropic

# Same loads as benches/lib.rs.
SCENARIOS = {
    "rate_limited": {"kind": "closed", "n": 160, "concurrency": 8},
    "input_bound": {"kind": "closed", "n": 56, "concurrency": 8, "shape": "mixed_input"},
    "output_bound": {"kind": "closed", "n": 160, "concurrency": 8, "max_tokens": 400},
    "burst": {"kind": "closed", "n": 1000, "concurrency": 256},
    "overload": {"kind": "closed", "n": 500, "concurrency": 16},
    # i: no faults, no limits: how fast each client goes.
    "throughput": {"kind": "closed", "n": 5000, "concurrency": 64},
    "outage": {"kind": "open", "rate": 50, "duration": 20.0, "outage_at": 5.0, "outage_len": 10.0},
    # h: only the primary model is down; the SDK has no fallback, so its calls go to the primary.
    "model_outage": {"kind": "open", "rate": 50, "duration": 30.0, "outage_at": 5.0, "outage_len": 15.0,
                     "model": "claude-sonnet-4-6"},
}
MESSAGES = [{"role": "user", "content": "Hello from the benchmark"}]
# The mixed prompt sizes of scenario e, as benches/lib.rs (`Shape::MixedInput`) cycles them.
SIZES = [100, 20_000, 2_500, 12_000, 600, 17_000, 7_000, 1_200]


def request(sc, i):
    if sc.get("shape") == "mixed_input":
        return 64, [{"role": "user", "content": "word" * SIZES[i % len(SIZES)]}]
    return sc.get("max_tokens", 64), MESSAGES


def control(url, method, path, body=b""):
    req = urllib.request.Request(url + path, data=body if method == "POST" else None, method=method)
    with urllib.request.urlopen(req) as r:
        return r.read()


def percentile(sorted_values, p):
    if not sorted_values:
        return 0.0
    i = round((len(sorted_values) - 1) * p)
    return sorted_values[min(i, len(sorted_values) - 1)]


async def one(client, max_tokens=64, messages=MESSAGES, model="claude-bench"):
    t = time.monotonic()
    try:
        await client.messages.create(model=model, max_tokens=max_tokens, messages=messages)
        return True, time.monotonic() - t
    except anthropic.APIError:
        return False, time.monotonic() - t


async def run(url, name):
    sc = SCENARIOS[name]
    control(url, "POST", "/_mock/reset")
    client = anthropic.AsyncAnthropic(base_url=url, api_key="sk-bench")
    start = time.monotonic()
    report = {"client": "anthropic-python", "scenario": name, "outage_requests": 0,
              "outage_attempts": 0, "recovery_s": None}
    latencies, results = [], []
    if sc["kind"] == "closed":
        queue = asyncio.Queue()
        for i in range(sc["n"]):
            queue.put_nowait(i)

        async def worker():
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                results.append(await one(client, *request(sc, i)))

        await asyncio.gather(*(worker() for _ in range(sc["concurrency"])))
        latencies = [lat for _, lat in results]
    else:
        tasks, done = [], []
        interval = 1.0 / sc["rate"]
        outage_started = False
        i = 0

        model = sc.get("model", "claude-bench")

        async def timed():
            t0 = time.monotonic() - start
            ok, _ = await one(client, model=model)
            done.append((ok, t0, time.monotonic() - start))

        while time.monotonic() - start < sc["duration"]:
            target = start + i * interval
            await asyncio.sleep(max(0.0, target - time.monotonic()))
            if not outage_started and time.monotonic() - start >= sc["outage_at"]:
                outage_started = True
                outage = {"ms": int(sc["outage_len"] * 1000), "kind": "overloaded"}
                if "model" in sc:
                    outage["model"] = sc["model"]
                body = json.dumps(outage).encode()
                await asyncio.to_thread(control, url, "POST", "/_mock/outage", body)
            tasks.append(asyncio.create_task(timed()))
            i += 1
        await asyncio.gather(*tasks)
        o_start, o_end = sc["outage_at"], sc["outage_at"] + sc["outage_len"]
        results = [(ok, t1 - t0) for ok, t0, t1 in done]
        latencies = [lat for _, lat in results]
        report["outage_requests"] = sum(1 for _, t0, _ in done if o_start <= t0 < o_end)
        log = json.loads(control(url, "GET", "/_mock/log"))
        if log:
            first = min(e["at_ms"] for e in log)
            lo, hi = first + o_start * 1000, first + o_end * 1000
            report["outage_attempts"] = sum(1 for e in log if lo <= e["at_ms"] < hi
                                            and ("model" not in sc or e.get("model") == sc["model"]))
            if "model" in sc:
                # Attempts on the primary from 1 s into its outage, per request started then.
                late = sum(1 for e in log if first + (o_start + 1) * 1000 <= e["at_ms"] < hi
                           and e.get("model") == sc["model"])
                started = sum(1 for _, t0, _ in done if o_start + 1 <= t0 < o_end)
                report["primary_attempts_per_request"] = late / max(started, 1)
                during = sorted(t1 - t0 for _, t0, t1 in done if o_start <= t0 < o_end)
                report["outage_p50_ms"] = percentile(during, 0.5) * 1e3
                report["outage_p99_ms"] = percentile(during, 0.99) * 1e3
        t = o_end
        while t < sc["duration"] + 30:
            w = [d for d in done if t <= d[2] < t + 1.0]
            if w and all(d[0] for d in w):
                report["recovery_s"] = t - o_end
                break
            t += 0.1
    wall = time.monotonic() - start
    await client.close()
    stats = json.loads(control(url, "GET", "/_mock/stats"))
    latencies.sort()
    n = len(results)
    report.update({
        "requests": n,
        "succeeded": sum(1 for ok, _ in results if ok),
        "failed": sum(1 for ok, _ in results if not ok),
        "wall_s": wall,
        "p50_ms": percentile(latencies, 0.5) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "mock_requests": stats["requests"],
        "mock_429": stats["by_status"].get("429", 0),
        "attempts_per_request": stats["requests"] / max(n, 1),
        "answered_primary": sum(1 for ok, _ in results if ok),
        "answered_fallback": 0,
        "breaker_opened_s": None,
    })
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(run(sys.argv[1], sys.argv[2]))
