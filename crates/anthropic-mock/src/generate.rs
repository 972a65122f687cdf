//! What the mock answers: token estimates, the `Message` JSON and the SSE event sequence.

use bytes::Bytes;
use serde_json::{Value, json};

const WORDS: &[&str] = &[
    "Resilient",
    "systems",
    "expect",
    "failure",
    "and",
    "recover",
    "from",
    "it",
    "gracefully.",
    "Rate",
    "limits",
    "are",
    "a",
    "signal",
    "to",
    "slow",
    "down,",
    "not",
    "an",
    "error",
    "to",
    "hide.",
    "Backoff",
    "with",
    "jitter",
    "spreads",
    "retries",
    "so",
    "a",
    "busy",
    "service",
    "can",
    "breathe.",
    "Streams",
    "that",
    "break",
    "early",
    "should",
    "say",
    "so",
    "clearly.",
];

/// A rough input-token estimate: about four characters a token over all text, plus a few
/// tokens a message, at least 1.
pub(crate) fn estimate_input_tokens(body: &Value) -> u64 {
    fn chars(v: &Value) -> usize {
        match v {
            Value::String(s) => s.chars().count(),
            Value::Array(a) => a.iter().map(chars).sum(),
            Value::Object(o) => o.values().map(chars).sum(),
            _ => 0,
        }
    }
    let messages = body.get("messages").and_then(Value::as_array);
    let text = messages.map_or(0, |m| m.iter().map(chars).sum::<usize>())
        + body.get("system").map_or(0, chars)
        + body.get("tools").map_or(0, chars);
    let n = messages.map_or(0, Vec::len) as u64;
    ((text as u64).div_ceil(4) + 3 * n).max(1)
}

/// The answer's words: `tokens` words (one word a token) chosen from `seed`, starting at the
/// beginning of a sentence.
pub(crate) fn answer_words(tokens: u32, seed: u64) -> Vec<std::borrow::Cow<'static, str>> {
    let starts: Vec<usize> = (0..WORDS.len())
        .filter(|&i| i == 0 || WORDS[i - 1].ends_with('.'))
        .collect();
    let start = starts[(seed % starts.len() as u64) as usize];
    (0..tokens as usize)
        .map(|i| std::borrow::Cow::Borrowed(WORDS[(start + i) % WORDS.len()]))
        .collect()
}

/// Ends the last word with a full stop (an answer that finished its turn ends a sentence).
pub(crate) fn end_sentence(words: &mut [std::borrow::Cow<'static, str>]) {
    if let Some(last) = words.last_mut() {
        if !last.ends_with('.') {
            let bare = last.trim_end_matches(',');
            *last = std::borrow::Cow::Owned(format!("{bare}."));
        }
    }
}

/// The answer to a valid request `body`: `output_tokens` words (its `max_tokens` capped what
/// the mock would say, `cap`), a tool call when the request offers tools; whole sentences
/// unless cut by `max_tokens`.
pub(crate) fn answer_for(
    body: &Value,
    id: String,
    input_tokens: u64,
    output_tokens: u32,
    cap: u32,
    seed: u64,
) -> Answer {
    let max_tokens = body["max_tokens"].as_u64().unwrap_or(1);
    let tool = tool_call(body, crate::rng::id("toolu_", seed));
    let stop_reason = if tool.is_some() {
        "tool_use"
    } else if u64::from(cap) > max_tokens {
        "max_tokens"
    } else {
        "end_turn"
    };
    let mut words = answer_words(output_tokens, seed);
    if stop_reason != "max_tokens" {
        end_sentence(&mut words);
    }
    Answer {
        id,
        model: body["model"].as_str().unwrap_or_default().to_owned(),
        input_tokens,
        output_tokens,
        stop_reason,
        words,
        tool,
    }
}

/// A call of one of the request's tools.
#[derive(Debug, Clone)]
pub(crate) struct ToolCall {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) input: Value,
}

/// The tool the answer calls, if the request offers tools (and does not forbid them): the one
/// `tool_choice` names, else the first; its input made from its `input_schema`.
pub(crate) fn tool_call(body: &Value, id: String) -> Option<ToolCall> {
    let tools = body.get("tools")?.as_array().filter(|t| !t.is_empty())?;
    let choice = body.get("tool_choice");
    if choice.and_then(|c| c.get("type")).and_then(Value::as_str) == Some("none") {
        return None;
    }
    let named = choice
        .filter(|c| c.get("type").and_then(Value::as_str) == Some("tool"))
        .and_then(|c| c.get("name"))
        .and_then(Value::as_str);
    let tool = match named {
        Some(n) => tools
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(n))?,
        None => &tools[0],
    };
    let name = tool.get("name").and_then(Value::as_str)?.to_owned();
    let input = example_of(tool.get("input_schema").unwrap_or(&Value::Null), 0);
    Some(ToolCall { id, name, input })
}

/// A value that fits a JSON schema, roughly (types and properties; depth bounded).
fn example_of(schema: &Value, depth: usize) -> Value {
    if depth > 8 {
        return Value::Null;
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => schema
            .get("enum")
            .and_then(|e| e.get(0))
            .cloned()
            .unwrap_or_else(|| json!("example")),
        Some("integer") => json!(1),
        Some("number") => json!(1.5),
        Some("boolean") => json!(true),
        Some("array") => json!([example_of(
            schema.get("items").unwrap_or(&Value::Null),
            depth + 1
        )]),
        Some("object") | None => {
            let mut o = serde_json::Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, v) in props.iter().take(64) {
                    o.insert(k.clone(), example_of(v, depth + 1));
                }
            }
            Value::Object(o)
        }
        Some(_) => Value::Null,
    }
}

/// A planned answer: everything needed for both the JSON and the SSE form.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) id: String,
    pub(crate) model: String,
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u32,
    pub(crate) stop_reason: &'static str,
    pub(crate) words: Vec<std::borrow::Cow<'static, str>>,
    /// A tool call after the text (then `stop_reason` is `tool_use`).
    pub(crate) tool: Option<ToolCall>,
}

impl Answer {
    pub(crate) fn text(&self) -> String {
        self.words.join(" ")
    }

    fn content(&self) -> Value {
        let mut c = vec![json!({"type": "text", "text": self.text()})];
        if let Some(t) = &self.tool {
            c.push(json!({"type": "tool_use", "id": t.id, "name": t.name, "input": t.input}));
        }
        Value::Array(c)
    }

    /// The non-streaming `Message`.
    pub(crate) fn message_json(&self) -> Vec<u8> {
        let v = json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": self.content(),
            "stop_reason": self.stop_reason,
            "stop_sequence": null,
            "usage": {
                "input_tokens": self.input_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": self.output_tokens,
                "service_tier": "standard"
            }
        });
        serde_json::to_vec(&v).expect("a json! value serializes")
    }

    /// The SSE events of the stream, in order, each a complete `event:`/`data:` block. A `ping`
    /// follows `message_start` and then every `ping_every` deltas.
    pub(crate) fn sse_events(&self, ping_every: u32) -> Vec<Bytes> {
        let mut out = Vec::new();
        out.push(event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": self.input_tokens, "cache_creation_input_tokens": 0,
                          "cache_read_input_tokens": 0, "output_tokens": 1}
            }}),
        ));
        out.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}}),
        ));
        out.push(ping());
        // Deltas of three words each, as the API streams a few tokens at a time.
        for (i, chunk) in self.words.chunks(3).enumerate() {
            let mut text = chunk.join(" ");
            if i > 0 {
                text.insert(0, ' ');
            }
            out.push(event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 0,
                        "delta": {"type": "text_delta", "text": text}}),
            ));
            if ping_every > 0 && (i + 1) % ping_every as usize == 0 {
                out.push(ping());
            }
        }
        out.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": 0}),
        ));
        if let Some(t) = &self.tool {
            out.push(event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 1,
                        "content_block": {"type": "tool_use", "id": t.id, "name": t.name, "input": {}}}),
            ));
            // The input as partial JSON, a few characters at a time.
            let json = t.input.to_string();
            let chars: Vec<char> = json.chars().collect();
            for part in chars.chunks(12) {
                let partial: String = part.iter().collect();
                out.push(event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 1,
                            "delta": {"type": "input_json_delta", "partial_json": partial}}),
                ));
            }
            out.push(event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 1}),
            ));
        }
        out.push(event(
            "message_delta",
            &json!({"type": "message_delta",
                    "delta": {"stop_reason": self.stop_reason, "stop_sequence": null},
                    "usage": {"output_tokens": self.output_tokens}}),
        ));
        out.push(event("message_stop", &json!({"type": "message_stop"})));
        out
    }
}

/// Tokens carried by one SSE event (for pacing): the words of a delta, else 0.
pub(crate) fn event_tokens(ev: &[u8]) -> u32 {
    if ev.starts_with(b"event: content_block_delta") {
        3
    } else {
        0
    }
}

pub(crate) fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

fn ping() -> Bytes {
    Bytes::from_static(b"event: ping\ndata: {\"type\": \"ping\"}\n\n")
}

/// The API's error body.
pub(crate) fn error_body(
    error_type: &str,
    message: &str,
    error_code: Option<&str>,
    request_id: &str,
) -> Vec<u8> {
    let mut error = json!({"type": error_type, "message": message});
    if let Some(code) = error_code {
        error["details"] = json!({"error_code": code});
    }
    let v = json!({"type": "error", "error": error, "request_id": request_id});
    serde_json::to_vec(&v).expect("a json! value serializes")
}

/// An HTML error page as the edge or a proxy sends it.
pub(crate) fn html_page(status: u16, reason: &str) -> String {
    format!(
        "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}</h1></center>\r\n<hr><center>edge</center>\r\n</body>\r\n</html>\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_sequence_is_the_apis() {
        let a = Answer {
            id: "msg_1".into(),
            model: "m".into(),
            input_tokens: 10,
            output_tokens: 7,
            stop_reason: "end_turn",
            words: answer_words(7, 0),
            tool: None,
        };
        let events = a.sse_events(2);
        let names: Vec<String> = events
            .iter()
            .map(|e| std::str::from_utf8(e).unwrap().lines().next().unwrap()[7..].to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "ping",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        // The deltas join to the same text as the non-streaming answer.
        let mut joined = String::new();
        for e in &events {
            let s = std::str::from_utf8(e).unwrap();
            let data: Value =
                serde_json::from_str(s.lines().nth(1).unwrap().strip_prefix("data: ").unwrap())
                    .unwrap();
            if data["type"] == "content_block_delta" {
                joined.push_str(data["delta"]["text"].as_str().unwrap());
            }
        }
        assert_eq!(joined, a.text());
    }

    #[test]
    fn input_estimate_grows_with_text() {
        let small = json!({"messages": [{"role": "user", "content": "hi"}]});
        let big = json!({"messages": [{"role": "user", "content": "x".repeat(400)}]});
        assert!(estimate_input_tokens(&big) > estimate_input_tokens(&small));
        assert_eq!(estimate_input_tokens(&big), 100 + 3 + 1); // 400 chars + "user"
    }
}
