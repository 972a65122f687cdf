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

/// The answer's words: `tokens` words (one word a token) chosen from `seed`.
pub(crate) fn answer_words(tokens: u32, seed: u64) -> Vec<&'static str> {
    let start = (seed % WORDS.len() as u64) as usize;
    (0..tokens as usize)
        .map(|i| WORDS[(start + i) % WORDS.len()])
        .collect()
}

/// A planned answer: everything needed for both the JSON and the SSE form.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) id: String,
    pub(crate) model: String,
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u32,
    pub(crate) stop_reason: &'static str,
    pub(crate) words: Vec<&'static str>,
}

impl Answer {
    pub(crate) fn text(&self) -> String {
        self.words.join(" ")
    }

    /// The non-streaming `Message`.
    pub(crate) fn message_json(&self) -> Vec<u8> {
        let v = json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [{"type": "text", "text": self.text()}],
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
