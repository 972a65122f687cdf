"""The official Python SDK pointed at the gateway, with faults injected upstream.

Usage: python sdk_python.py GATEWAY_URL MOCK_URL KEY HAIKU_ONLY_KEY

The gateway's own client marks its calls `x-mock-key: gw`, so faults are scripted on the
mock under that key. Prints `ok NAME` per check, `FAIL NAME: why` otherwise; exits 1 on any
failure. Run by `tests/sdk.rs` (`python_sdk_against_the_gateway`).
"""

import json
import sys
import urllib.request

import anthropic

GATEWAY, MOCK, KEY, HAIKU_ONLY = sys.argv[1:5]
MODEL = "claude-sonnet-4-6"
MESSAGES = [{"role": "user", "content": "Hello through the gateway"}]
failures = []


def check(name, cond, why=""):
    if cond:
        print(f"ok {name}")
    else:
        print(f"FAIL {name}: {why}")
        failures.append(name)


def control(path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(MOCK + path, data=data, method="POST" if data else "GET")
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def script(*responses):
    control("/_mock/script", {"key": "gw", "responses": list(responses)})


def gw_attempts():
    return sum(1 for e in control("/_mock/log") if e["headers"].get("x-mock-key") == "gw")


# No retries in the SDK: whatever it sees is what the gateway answered.
sdk = anthropic.Anthropic(base_url=GATEWAY, api_key=KEY, max_retries=0, timeout=30)

# 1. A whole answer, typed by the SDK, with the API's request id.
m = sdk.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
check("create", m.type == "message" and m.content[0].text and m.usage.output_tokens > 0, m)
check("request id", (m._request_id or "").startswith("req_"), m._request_id)

# 2. A stream through the SDK's own stream helper.
with sdk.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as s:
    text = "".join(s.text_stream)
    final = s.get_final_message()
check("stream", len(text) > 20 and final.content[0].text == text, (text, final))
check("stream stop", final.stop_reason in ("end_turn", "max_tokens"), final.stop_reason)

# 3. Two 529s upstream: absorbed by the gateway's retries.
before = gw_attempts()
script({"kind": "status", "status": 529}, {"kind": "status", "status": 529})
m = sdk.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
check("529s absorbed", m.content[0].text and gw_attempts() - before == 3, gw_attempts() - before)

# 4. A connection reset upstream: absorbed too.
script({"kind": "reset"})
m = sdk.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
check("reset absorbed", bool(m.content[0].text))

# 5. A stream that fails before content: sent again by the gateway, whole for the SDK.
script({"kind": "stream_error", "after": 1})
with sdk.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as s:
    final = s.get_final_message()
check("stream resent before content", bool(final.content[0].text))

# 6. A stream that fails after content: the SDK raises the API error the event carries.
script({"kind": "stream_error", "after": 5})
try:
    with sdk.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as s:
        for _ in s:
            pass
    check("stream error event", False, "no error raised")
except anthropic.APIStatusError as e:
    check("stream error event", "overloaded" in str(e) or "api_error" in str(e), repr(e))

# 7. The caller's mistake: a 4xx the SDK types as such, with the API's message.
try:
    sdk.messages.create(model="gpt-unknown", max_tokens=64, messages=MESSAGES)
    check("not found", False, "no error raised")
except anthropic.NotFoundError as e:
    check("not found", e.status_code == 404 and e.body["error"]["type"] == "not_found_error", e.body)
try:
    sdk.post("/v1/messages", body={"model": MODEL}, cast_to=object)
    check("bad request", False, "no error raised")
except anthropic.BadRequestError as e:
    check("bad request", e.body["error"]["type"] == "invalid_request_error", e.body)

# 8. The gateway's own key refused upstream: a 5xx that leaks nothing.
script({"kind": "status", "status": 401, "message": "invalid x-api-key sk-ant-gateway-secret"})
try:
    sdk.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
    check("own key hidden", False, "no error raised")
except anthropic.InternalServerError as e:
    check("own key hidden", e.status_code == 502 and "sk-ant" not in json.dumps(e.body), e.body)

# 9. A 529 storm past the gateway's retries: a 503 the SDK types as overloaded capacity,
#    and the SDK's own retries (on) get through once the storm passes.
script(*[{"kind": "status", "status": 529}] * 4)
try:
    sdk.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
    check("overloaded", False, "no error raised")
except anthropic.APIStatusError as e:
    check("overloaded", e.status_code == 503 and e.body["error"]["type"] == "overloaded_error", e.body)
script(*[{"kind": "status", "status": 529}] * 3)
retrying = sdk.with_options(max_retries=2)
m = retrying.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
check("sdk retries through the gateway", bool(m.content[0].text))

# 10. A 429 past the caller's deadline: the SDK sees a rate limit with Retry-After.
script({"kind": "status", "status": 429, "headers": {"retry-after": "45"}})
try:
    sdk.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
    check("rate limited", False, "no error raised")
except anthropic.RateLimitError as e:
    ra = int(e.response.headers.get("retry-after", "0"))
    check("rate limited", 40 <= ra <= 45 and e.body["error"]["type"] == "rate_limit_error", (ra, e.body))

# 11. Metrics for Prometheus: the library's and the gateway's own, by key name.
with urllib.request.urlopen(GATEWAY + "/metrics", timeout=10) as r:
    body = r.read().decode()
check("metrics", "anthropic_client_attempts" in body and 'key="alice"' in body, body[:300])
check("no secret in metrics", KEY not in body and HAIKU_ONLY not in body)

# 12. The gateway's own refusals, typed by the SDK as the API's.
try:
    anthropic.Anthropic(base_url=GATEWAY, api_key="sk-gw-not-a-key", max_retries=0).messages.create(
        model=MODEL, max_tokens=64, messages=MESSAGES)
    check("wrong key", False, "no error raised")
except anthropic.AuthenticationError as e:
    check("wrong key", e.status_code == 401 and e.body["error"]["type"] == "authentication_error", e.body)
haiku_only = anthropic.Anthropic(base_url=GATEWAY, api_key=HAIKU_ONLY, max_retries=0)
try:
    haiku_only.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
    check("model not allowed", False, "no error raised")
except anthropic.PermissionDeniedError as e:
    check("model not allowed", e.body["error"]["type"] == "permission_error", e.body)
m = haiku_only.messages.create(model="claude-haiku-4-5", max_tokens=16, messages=MESSAGES)
check("allowed model", m.model == "claude-haiku-4-5")

# 13. Token counts, models, batches.
n = sdk.messages.count_tokens(model=MODEL, messages=MESSAGES)
check("count tokens", n.input_tokens > 0, n)
models = [m.id for m in sdk.models.list(limit=20)]
check("models", MODEL in models, models)
check("model", sdk.models.retrieve(MODEL).id == MODEL)
batch = sdk.messages.batches.create(requests=[
    {"custom_id": "a", "params": {"model": MODEL, "max_tokens": 16, "messages": MESSAGES}}])
check("batch create", batch.id.startswith("msgbatch_"), batch)
check("batch retrieve", sdk.messages.batches.retrieve(batch.id).id == batch.id)
check("batch list", any(b.id == batch.id for b in sdk.messages.batches.list(limit=20)))
check("batch cancel", sdk.messages.batches.cancel(batch.id).id == batch.id)

sys.exit(1 if failures else 0)
