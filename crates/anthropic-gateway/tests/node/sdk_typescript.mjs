// The official TypeScript SDK pointed at the gateway, with faults injected upstream.
//
// Usage: node sdk_typescript.mjs GATEWAY_URL MOCK_URL KEY HAIKU_ONLY_KEY
//
// Prints `ok NAME` per check, `FAIL NAME: why` otherwise; exits 1 on any failure. Run by
// `tests/sdk.rs` (`typescript_sdk_against_the_gateway`), with the SDK that `npm ci` put in
// `tests/node/node_modules`.

import Anthropic from "@anthropic-ai/sdk";

const [GATEWAY, MOCK, KEY, HAIKU_ONLY] = process.argv.slice(2);
const MODEL = "claude-sonnet-4-6";
const MESSAGES = [{ role: "user", content: "Hello through the gateway" }];
const failures = [];

function check(name, cond, why = "") {
  if (cond) {
    console.log(`ok ${name}`);
  } else {
    console.log(`FAIL ${name}: ${typeof why === "string" ? why : JSON.stringify(why)}`);
    failures.push(name);
  }
}

async function script(...responses) {
  const r = await fetch(`${MOCK}/_mock/script`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ key: "gw", responses }),
  });
  if (!r.ok) throw new Error(`script: ${r.status}`);
}

/// Runs `f`, which must throw an error of `kind`; `cond` checks it.
async function refused(name, kind, f, cond) {
  try {
    await f();
    check(name, false, "no error raised");
  } catch (e) {
    check(name, e instanceof kind && cond(e), `${e?.constructor?.name}: ${e?.message}`);
  }
}

const sdk = new Anthropic({ baseURL: GATEWAY, apiKey: KEY, maxRetries: 0, timeout: 30_000 });

// 1. A whole answer, with the API's request id.
const m = await sdk.messages.create({ model: MODEL, max_tokens: 64, messages: MESSAGES });
check("create", m.type === "message" && m.content[0].text.length > 0 && m.usage.output_tokens > 0, m);
check("request id", (m._request_id ?? "").startsWith("req_"), m._request_id);

// 2. A stream, through the SDK's stream helper.
{
  let text = "";
  const stream = sdk.messages.stream({ model: MODEL, max_tokens: 64, messages: MESSAGES });
  stream.on("text", (t) => (text += t));
  const final = await stream.finalMessage();
  check("stream", text.length > 20 && final.content[0].text === text, { text, final });
  check("stream stop", ["end_turn", "max_tokens"].includes(final.stop_reason), final.stop_reason);
}

// 3. Faults upstream absorbed by the gateway.
await script({ kind: "status", status: 529 }, { kind: "status", status: 529 });
const after529 = await sdk.messages.create({ model: MODEL, max_tokens: 64, messages: MESSAGES });
check("529s absorbed", after529.content[0].text.length > 0);
await script({ kind: "stream_error", after: 1 });
{
  const final = await sdk.messages.stream({ model: MODEL, max_tokens: 64, messages: MESSAGES }).finalMessage();
  check("stream resent before content", final.content[0].text.length > 0);
}

// 4. A stream that fails after content: the SDK raises the error event's API error.
await script({ kind: "stream_error", after: 5 });
await refused(
  "stream error event",
  Anthropic.APIError,
  async () => {
    const s = await sdk.messages.create({ model: MODEL, max_tokens: 64, messages: MESSAGES, stream: true });
    for await (const _ of s) {
      // read to the end
    }
  },
  (e) => /overloaded|api_error/.test(String(e.message)),
);

// 5. A 429 past the deadline: a RateLimitError with Retry-After.
await script({ kind: "status", status: 429, headers: { "retry-after": "45" } });
await refused(
  "rate limited",
  Anthropic.RateLimitError,
  () => sdk.messages.create({ model: MODEL, max_tokens: 64, messages: MESSAGES }),
  (e) => {
    const ra = Number(e.headers?.get?.("retry-after") ?? e.headers?.["retry-after"]);
    return ra >= 40 && ra <= 45 && e.error?.error?.type === "rate_limit_error";
  },
);

// 6. The caller's own mistakes and the gateway's refusals.
await refused(
  "not found",
  Anthropic.NotFoundError,
  () => sdk.messages.create({ model: "gpt-unknown", max_tokens: 64, messages: MESSAGES }),
  (e) => e.status === 404,
);
await refused(
  "wrong key",
  Anthropic.AuthenticationError,
  () =>
    new Anthropic({ baseURL: GATEWAY, apiKey: "sk-gw-not-a-key", maxRetries: 0 }).messages.create({
      model: MODEL,
      max_tokens: 64,
      messages: MESSAGES,
    }),
  (e) => e.status === 401 && e.error?.error?.type === "authentication_error",
);
const haikuOnly = new Anthropic({ baseURL: GATEWAY, apiKey: HAIKU_ONLY, maxRetries: 0 });
await refused(
  "model not allowed",
  Anthropic.PermissionDeniedError,
  () => haikuOnly.messages.create({ model: MODEL, max_tokens: 64, messages: MESSAGES }),
  (e) => e.status === 403 && e.error?.error?.type === "permission_error",
);

// 7. Token counts, models, batches.
const n = await sdk.messages.countTokens({ model: MODEL, messages: MESSAGES });
check("count tokens", n.input_tokens > 0, n);
const models = [];
for await (const model of sdk.models.list({ limit: 20 })) models.push(model.id);
check("models", models.includes(MODEL), models);
const batch = await sdk.messages.batches.create({
  requests: [{ custom_id: "a", params: { model: MODEL, max_tokens: 16, messages: MESSAGES } }],
});
check("batch create", batch.id.startsWith("msgbatch_"), batch);
check("batch retrieve", (await sdk.messages.batches.retrieve(batch.id)).id === batch.id);

process.exit(failures.length ? 1 : 0);
