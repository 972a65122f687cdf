"""Judges the mock's Message Batches with the official Python SDK, as tools/python-sdk-fidelity
judges the Messages routes: create, retrieve until ended, results iteration, cancel, list,
delete. Usage: VENV/bin/python benches/peers/batches_fidelity.py URL (a running mock)."""
import sys
import time

import anthropic

url = sys.argv[1]
client = anthropic.Anthropic(base_url=url, api_key="sk-fidelity")
ok = failed = 0


def check(name, cond, detail=""):
    global ok, failed
    print(("ok   " if cond else "FAIL ") + name + (": " + str(detail)[:100] if detail else ""))
    if cond:
        ok += 1
    else:
        failed += 1


reqs = [{"custom_id": f"q{i}", "params": {"model": "claude-sonnet-4-6", "max_tokens": 0 if i == 3 else 32,
         "messages": [{"role": "user", "content": f"question {i}"}]}} for i in range(20)]
b = client.messages.batches.create(requests=reqs)
check("create", b.processing_status == "in_progress" and b.request_counts.processing == 20, b.id)
for _ in range(200):
    b = client.messages.batches.retrieve(b.id)
    if b.processing_status == "ended":
        break
    time.sleep(0.05)
check("retrieve until ended", b.processing_status == "ended", b.request_counts)
results = list(client.messages.batches.results(b.id))
kinds = {}
for r in results:
    kinds[r.result.type] = kinds.get(r.result.type, 0) + 1
check("results iteration", len(results) == 20 and kinds.get("errored") == 1, kinds)
first = next(r for r in results if r.result.type == "succeeded")
check("succeeded result is a Message", first.result.message.content[0].text != "", first.custom_id)
c = client.messages.batches.create(requests=[{"custom_id": f"c{i}", "params": reqs[0]["params"]}
                                             for i in range(5000)])
c = client.messages.batches.cancel(c.id)
check("cancel", c.processing_status in ("canceling", "ended"), c.processing_status)
page = client.messages.batches.list(limit=1)
ids = [x.id for x in page.data]
check("list (newest first, paged)", ids == [c.id] and page.has_more, ids)
all_ids = [x.id for x in client.messages.batches.list(limit=1)]
check("list auto-paging", set([b.id, c.id]).issubset(all_ids), len(all_ids))
d = client.messages.batches.delete(b.id)
check("delete", d.type == "message_batch_deleted", d.id)
print(f"{ok} passed, {failed} failed")
sys.exit(1 if failed else 0)
