//! Typed events of a Messages stream.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, StreamError, StreamFailure};
use crate::messages::{ContentBlock, Message, StopReason};

/// One event of a Messages stream. Event types this crate does not know are kept whole as
/// [`StreamEvent::Unknown`], never dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum StreamEvent {
    /// The message begins: id, model, input usage; no content yet.
    MessageStart {
        /// The message so far.
        message: Message,
    },
    /// A content block begins.
    ContentBlockStart {
        /// Its index.
        index: usize,
        /// The block, empty for text.
        content_block: ContentBlock,
    },
    /// A piece of a content block.
    ContentBlockDelta {
        /// The block's index.
        index: usize,
        /// The piece.
        delta: Delta,
    },
    /// A content block ends.
    ContentBlockStop {
        /// Its index.
        index: usize,
    },
    /// Top-level changes: stop reason, cumulative usage.
    MessageDelta {
        /// Stop reason and sequence.
        delta: MessageDeltaBody,
        /// Cumulative usage.
        #[serde(default)]
        usage: Map<String, Value>,
    },
    /// The message is complete.
    MessageStop,
    /// Keep-alive.
    Ping,
    /// An event of a type this crate does not know, kept whole.
    #[serde(untagged)]
    Unknown(Value),
}

impl StreamEvent {
    /// Whether the event carries generated content (a content delta).
    pub fn is_content(&self) -> bool {
        matches!(self, StreamEvent::ContentBlockDelta { .. })
    }
}

/// A piece of a content block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Delta {
    /// Text.
    TextDelta {
        /// The text.
        text: String,
    },
    /// A piece of a tool call's input JSON.
    InputJsonDelta {
        /// The piece (not valid JSON on its own).
        partial_json: String,
    },
    /// Thinking text.
    ThinkingDelta {
        /// The text.
        thinking: String,
    },
    /// The signature of a thinking block.
    SignatureDelta {
        /// The signature.
        signature: String,
    },
    /// A delta of a type this crate does not know, kept whole.
    #[serde(untagged)]
    Unknown(Value),
}

/// The `delta` of a `message_delta` event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageDeltaBody {
    /// Why generation stopped.
    #[serde(default)]
    pub stop_reason: Option<StopReason>,
    /// Which stop sequence.
    #[serde(default)]
    pub stop_sequence: Option<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Builds the final [`Message`] from stream events: text joined, tool input JSON assembled,
/// thinking and signatures joined, usage merged.
#[derive(Debug, Default, Clone)]
pub struct MessageAccumulator {
    message: Option<Message>,
    json: Vec<String>,
}

impl MessageAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one event. A `content_block_start` whose index skips ahead of the blocks so
    /// far is refused (the API numbers blocks 0, 1, 2, ...): a server-chosen index never sizes
    /// memory.
    pub fn apply(&mut self, event: &StreamEvent) -> Result<(), Error> {
        match event {
            StreamEvent::MessageStart { message } => {
                self.message = Some(message.clone());
                self.json.clear();
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => {
                if let Some(m) = &mut self.message {
                    let have = m.content.len();
                    if *index > have {
                        let msg = format!(
                            "content_block_start index {index} skips ahead of the {have} blocks so far"
                        );
                        return Err(Error::Stream(Box::new(StreamError::new(
                            StreamFailure::InvalidEvent,
                            msg,
                        ))));
                    }
                    if *index == have {
                        m.content.push(content_block.clone());
                        self.json.push(String::new());
                    } else {
                        m.content[*index] = content_block.clone();
                    }
                }
            }
            StreamEvent::ContentBlockDelta { index, delta } => {
                let Some(m) = &mut self.message else {
                    return Ok(());
                };
                let Some(block) = m.content.get_mut(*index) else {
                    return Ok(());
                };
                match (block, delta) {
                    (ContentBlock::Text { text, .. }, Delta::TextDelta { text: t }) => {
                        text.push_str(t)
                    }
                    (
                        ContentBlock::Thinking { thinking, .. },
                        Delta::ThinkingDelta { thinking: t },
                    ) => thinking.push_str(t),
                    (
                        ContentBlock::Thinking { signature, .. },
                        Delta::SignatureDelta { signature: s },
                    ) => signature.push_str(s),
                    (ContentBlock::ToolUse { .. }, Delta::InputJsonDelta { partial_json }) => {
                        if let Some(buf) = self.json.get_mut(*index) {
                            buf.push_str(partial_json);
                        }
                    }
                    _ => {}
                }
            }
            StreamEvent::ContentBlockStop { index } => {
                let Some(m) = &mut self.message else {
                    return Ok(());
                };
                if let (Some(ContentBlock::ToolUse { input, .. }), Some(json)) =
                    (m.content.get_mut(*index), self.json.get(*index))
                {
                    if !json.is_empty() {
                        if let Ok(v) = serde_json::from_str(json) {
                            *input = v;
                        }
                    }
                }
            }
            StreamEvent::MessageDelta { delta, usage } => {
                let Some(m) = &mut self.message else {
                    return Ok(());
                };
                if delta.stop_reason.is_some() {
                    m.stop_reason = delta.stop_reason.clone();
                }
                if delta.stop_sequence.is_some() {
                    m.stop_sequence = delta.stop_sequence.clone();
                }
                // Usage in message_delta is cumulative: its fields replace the start's.
                let mut merged = serde_json::to_value(&m.usage).unwrap_or_default();
                if let Value::Object(obj) = &mut merged {
                    for (k, v) in usage {
                        if !v.is_null() {
                            obj.insert(k.clone(), v.clone());
                        }
                    }
                }
                if let Ok(u) = serde_json::from_value(merged) {
                    m.usage = u;
                }
            }
            StreamEvent::MessageStop | StreamEvent::Ping | StreamEvent::Unknown(_) => {}
        }
        Ok(())
    }

    /// The message so far (`None` before `message_start`).
    pub fn message(&self) -> Option<&Message> {
        self.message.as_ref()
    }

    /// The message, consuming the accumulator.
    pub fn into_message(self) -> Option<Message> {
        self.message
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> StreamEvent {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn events_parse_and_unknowns_are_kept() {
        let e = parse(
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
        );
        assert!(e.is_content());
        let e = parse(json!({"type": "brand_new_event", "x": 1}));
        assert_eq!(
            e,
            StreamEvent::Unknown(json!({"type": "brand_new_event", "x": 1}))
        );
        let e = parse(
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "citations_delta", "c": 1}}),
        );
        assert!(matches!(
            e,
            StreamEvent::ContentBlockDelta {
                delta: Delta::Unknown(_),
                ..
            }
        ));
        assert_eq!(parse(json!({"type": "ping"})), StreamEvent::Ping);
    }

    #[test]
    fn accumulates_text_tools_thinking_and_usage() {
        let events = [
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-m",
                "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 10, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Let me "}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "see."}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hello"}}),
            json!({"type": "ping"}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": ", world"}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "tu", "name": "get", "input": {}}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"city\": "}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
            json!({"type": "content_block_stop", "index": 2}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 42}}),
            json!({"type": "message_stop"}),
        ];
        let mut acc = MessageAccumulator::new();
        for e in events {
            acc.apply(&parse(e)).unwrap();
        }
        let m = acc.into_message().unwrap();
        assert_eq!(
            m.content[0],
            ContentBlock::Thinking {
                thinking: "Let me see.".into(),
                signature: "sig".into()
            }
        );
        assert_eq!(m.text(), "Hello, world");
        assert_eq!(
            m.content[2],
            ContentBlock::ToolUse {
                id: "tu".into(),
                name: "get".into(),
                input: json!({"city": "Paris"})
            }
        );
        assert_eq!(m.stop_reason, Some(StopReason::ToolUse));
        assert_eq!((m.usage.input_tokens, m.usage.output_tokens), (10, 42));
    }

    #[test]
    fn a_hostile_block_index_is_refused_without_allocating() {
        let start = json!({"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 1, "output_tokens": 1}}});
        for index in [
            u64::MAX,
            4_611_686_018_427_387_904,
            1_099_511_627_776,
            10_000_000,
            1,
        ] {
            let mut acc = MessageAccumulator::new();
            acc.apply(&parse(start.clone())).unwrap();
            let ev = json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}});
            let e = acc.apply(&parse(ev)).unwrap_err();
            assert!(
                matches!(&e, Error::Stream(s) if s.is_invalid_event()),
                "{e}"
            );
            assert!(acc.message().unwrap().content.is_empty());
        }
    }
}

/// Why an event's data did not parse.
#[derive(Debug)]
pub(crate) enum ParseError {
    /// More JSON values than one event may hold.
    TooManyValues,
    /// Not the JSON of a stream event.
    Json(serde_json::Error),
}

/// A text or tool-input delta, parsed borrowing from the event's data: the hot path of a
/// stream, which the generic (internally tagged) parse would buffer value by value.
#[derive(Deserialize)]
struct FastDelta<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    index: usize,
    #[serde(borrow)]
    delta: FastDeltaBody<'a>,
}

#[derive(Deserialize)]
struct FastDeltaBody<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    text: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    partial_json: Option<std::borrow::Cow<'a, str>>,
}

/// A text delta in the API's exact compact form, its text without escapes:
/// `{"type":"content_block_delta","index":N,"delta":{"type":"text_delta","text":"..."}}`.
/// Anything else (whitespace, another order, an escape, a control character) is `None`
/// and goes to the general parse; what this accepts parses the same there.
fn compact_text_delta(data: &[u8]) -> Option<StreamEvent> {
    const HEAD: &[u8] = br#"{"type":"content_block_delta","index":"#;
    const MID: &[u8] = br#","delta":{"type":"text_delta","text":""#;
    const TAIL: &[u8] = br#""}}"#;
    let rest = data.strip_prefix(HEAD)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    // No leading zeros (not JSON), and small enough for a `usize`.
    if digits == 0 || digits > 9 || (digits > 1 && rest[0] == b'0') {
        return None;
    }
    let index = rest[..digits]
        .iter()
        .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
    let text = rest[digits..].strip_prefix(MID)?.strip_suffix(TAIL)?;
    if text.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20) {
        return None;
    }
    let text = std::str::from_utf8(text).ok()?;
    Some(StreamEvent::ContentBlockDelta {
        index,
        delta: Delta::TextDelta {
            text: text.to_owned(),
        },
    })
}

/// The typed event of `raw`. Pings are known by name; text and tool-input deltas take a
/// borrowing fast path (any other shape falls back to the generic parse, so the result is
/// the same); everything else is bounded in JSON values before it is parsed.
pub(crate) fn parse(raw: &super::SseEvent) -> Result<StreamEvent, ParseError> {
    let data = raw.data();
    if raw.is("ping") && data.len() <= 64 {
        if let Ok(Value::Object(o)) = serde_json::from_slice::<Value>(data) {
            if o.len() == 1 && o.get("type").and_then(Value::as_str) == Some("ping") {
                return Ok(StreamEvent::Ping);
            }
        }
    }
    if raw.is("content_block_delta") {
        if let Some(ev) = compact_text_delta(data) {
            return Ok(ev);
        }
        if let Ok(fast) = serde_json::from_slice::<FastDelta<'_>>(data) {
            if fast.kind == "content_block_delta" {
                let d = fast.delta;
                let delta = match (&*d.kind, d.text, d.partial_json) {
                    ("text_delta", Some(text), None) => Some(Delta::TextDelta {
                        text: text.into_owned(),
                    }),
                    ("input_json_delta", None, Some(p)) => Some(Delta::InputJsonDelta {
                        partial_json: p.into_owned(),
                    }),
                    _ => None,
                };
                if let Some(delta) = delta {
                    return Ok(StreamEvent::ContentBlockDelta {
                        index: fast.index,
                        delta,
                    });
                }
            }
        }
    }
    if crate::text::too_many_json_values(data, crate::messages::MAX_EVENT_JSON_VALUES) {
        return Err(ParseError::TooManyValues);
    }
    serde_json::from_slice(data).map_err(ParseError::Json)
}

#[cfg(test)]
mod parse_tests {
    use super::*;
    use crate::stream::sse::SseEvent;

    /// The fast paths give what the generic parse gives, whatever the shape.
    #[test]
    fn fast_paths_agree_with_the_generic_parse() {
        let cases = [
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":3,"delta":{"type":"text_delta","text":"esc \"q\" \\ \n \u00e9 🦀"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"index":1,"delta":{"text":"order","type":"text_delta"},"type":"content_block_delta","extra":[1,{"a":2}]}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Pa"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"citations_delta","citation":{"x":1}}}"#,
            ),
            ("content_block_delta", r#"{"type":"message_stop"}"#),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":12,"delta":{"type":"text_delta","text":" plain words, ✓"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"tab\tand quote\""}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":""}}"#,
            ),
            ("ping", r#"{"type": "ping"}"#),
            ("ping", r#"{"type": "ping", "more": 1}"#),
            ("ping", r#"{"type": "message_stop"}"#),
            ("message_stop", r#"{"type":"message_stop"}"#),
        ];
        for (name, data) in cases {
            let raw = SseEvent::new(name, data, None);
            let generic: StreamEvent = serde_json::from_str(data).unwrap();
            let fast = parse(&raw).unwrap();
            assert_eq!(fast, generic, "{name}: {data}");
        }
        for bad in [
            r#"{"type":"content_block_delta","index":-1,"delta":{"type":"text_delta","text":"x"}}"#,
            r#"{"type":"content_block_delta","index":01,"delta":{"type":"text_delta","text":"x"}}"#,
            "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"raw\ttab\"}}",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":7}}"#,
            "{",
        ] {
            let raw = SseEvent::new("content_block_delta", bad, None);
            assert!(
                serde_json::from_str::<StreamEvent>(bad).is_err() == parse(&raw).is_err(),
                "{bad}"
            );
        }
        let many = format!("[{}]", vec!["1"; 200_000].join(","));
        let raw = SseEvent::new("content_block_delta", &many, None);
        assert!(matches!(parse(&raw), Err(ParseError::TooManyValues)));
    }
}
