//! Decoding a [`ContentBlock`] in one pass, and a [`StopReason`] in place.
//!
//! The derived rules (an internally tagged enum with an untagged `Unknown` for the rest) make
//! serde buffer every block before it can look at its `type`, whatever the order of its
//! keys. Here the block's keys go straight into typed slots; a block of a known type with
//! exactly its own fields, of the expected JSON types, is built from them at once. Anything
//! else (another type, extra keys, a field of another JSON type, duplicate keys, not an
//! object at all) is rebuilt as a JSON value and decoded by the derived rules, so the result
//! is theirs: a block decodes to the same value either way (the tests compare the two).

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::types::{ContentBlock, StopReason};

/// The derived rules (the general path), with the attributes `ContentBlock` serializes by.
/// The variants and fields mirror [`ContentBlock`]'s (serde's `remote` checks they match).
#[derive(Deserialize)]
#[serde(remote = "ContentBlock", tag = "type", rename_all = "snake_case")]
enum Derived {
    Text {
        text: String,
        #[serde(default)]
        citations: Option<Vec<Value>>,
    },
    Image {
        source: Value,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default)]
        content: Option<Value>,
        #[serde(default)]
        is_error: Option<bool>,
    },
    Thinking {
        thinking: String,
        signature: String,
    },
    RedactedThinking {
        data: String,
    },
    #[serde(untagged)]
    Unknown(Value),
}

impl<'de> Deserialize<'de> for ContentBlock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(BlockVisitor)
    }
}

/// A block decoded by the derived rules from its JSON value. They accept any JSON value (the
/// untagged `Unknown` takes what the tagged variants do not), so this fails only on what no
/// JSON value is.
fn by_derived_rules<E: de::Error>(v: Value) -> Result<ContentBlock, E> {
    Derived::deserialize(v).map_err(E::custom)
}

/// The keys of every known block type, and the rest.
enum Key {
    Type,
    Text,
    Citations,
    Source,
    Id,
    Name,
    Input,
    ToolUseId,
    Content,
    IsError,
    Thinking,
    Signature,
    Data,
    Other(String),
}

impl Key {
    const COUNT: usize = 13;

    fn index(&self) -> Option<usize> {
        Some(match self {
            Key::Type => 0,
            Key::Text => 1,
            Key::Citations => 2,
            Key::Source => 3,
            Key::Id => 4,
            Key::Name => 5,
            Key::Input => 6,
            Key::ToolUseId => 7,
            Key::Content => 8,
            Key::IsError => 9,
            Key::Thinking => 10,
            Key::Signature => 11,
            Key::Data => 12,
            Key::Other(_) => return None,
        })
    }

    const NAMES: [&'static str; Key::COUNT] = [
        "type",
        "text",
        "citations",
        "source",
        "id",
        "name",
        "input",
        "tool_use_id",
        "content",
        "is_error",
        "thinking",
        "signature",
        "data",
    ];
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, k: &str) -> Result<Key, E> {
                Ok(match k {
                    "type" => Key::Type,
                    "text" => Key::Text,
                    "citations" => Key::Citations,
                    "source" => Key::Source,
                    "id" => Key::Id,
                    "name" => Key::Name,
                    "input" => Key::Input,
                    "tool_use_id" => Key::ToolUseId,
                    "content" => Key::Content,
                    "is_error" => Key::IsError,
                    "thinking" => Key::Thinking,
                    "signature" => Key::Signature,
                    "data" => Key::Data,
                    other => Key::Other(other.to_owned()),
                })
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// The `visit_*` methods of a visitor for the JSON values it does not handle itself (all
/// but maps; with `str`, all but maps and strings): each rebuilt as a [`Value`] and handed
/// to `$f`.
macro_rules! visit_as_value {
    ($f:ident) => {
        visit_as_value!($f, str);
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            $f(Value::String(v.to_owned()))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            $f(Value::String(v))
        }
    };
    ($f:ident, str) => {
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            $f(Value::Bool(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            $f(Value::from(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            $f(Value::from(v))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            $f(Value::from(v))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            $f(Value::Null)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            $f(Value::Null)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            $f(Value::deserialize(d)?)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut items = Vec::new();
            while let Some(v) = seq.next_element::<Value>()? {
                items.push(v);
            }
            $f(Value::Array(items))
        }
    };
}

struct BlockVisitor;

impl<'de> Visitor<'de> for BlockVisitor {
    type Value = ContentBlock;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a content block")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ContentBlock, A::Error> {
        let mut slots: [Option<Value>; Key::COUNT] = Default::default();
        let mut rest = Map::new();
        let mut duplicate = false;
        while let Some(key) = map.next_key::<Key>()? {
            let value: Value = map.next_value()?;
            match key.index() {
                Some(i) => duplicate |= slots[i].replace(value).is_some(),
                None => {
                    let Key::Other(k) = key else { unreachable!() };
                    duplicate |= rest.insert(k, value).is_some();
                }
            }
        }
        if !duplicate && rest.is_empty() {
            if let Some(block) = fast(&mut slots) {
                return Ok(block);
            }
        }
        for (i, slot) in slots.into_iter().enumerate() {
            if let Some(v) = slot {
                rest.insert(Key::NAMES[i].to_owned(), v);
            }
        }
        by_derived_rules(Value::Object(rest))
    }

    // Not an object: decoded by the derived rules from its value.
    visit_as_value!(by_derived_rules);
}

/// The derived rules of [`StopReason`] (the general path).
#[derive(Deserialize)]
#[serde(remote = "StopReason", rename_all = "snake_case")]
enum StopReasonDerived {
    EndTurn,
    MaxTokens,
    StopSequence,
    ToolUse,
    PauseTurn,
    Refusal,
    #[serde(untagged)]
    Other(String),
}

/// A stop reason decoded by the derived rules from its JSON value.
fn stop_reason_by_derived_rules<E: de::Error>(v: Value) -> Result<StopReason, E> {
    StopReasonDerived::deserialize(v).map_err(E::custom)
}

/// A stop reason is a string, read in place (the derived rules buffer it first, for the
/// untagged `Other`); anything else goes by the derived rules.
impl<'de> Deserialize<'de> for StopReason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StopReason;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a stop reason")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StopReason, E> {
                Ok(known_stop_reason(v).unwrap_or_else(|| StopReason::Other(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<StopReason, E> {
                Ok(known_stop_reason(&v).unwrap_or(StopReason::Other(v)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StopReason, A::Error> {
                let mut m = Map::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    m.insert(k, v);
                }
                stop_reason_by_derived_rules(Value::Object(m))
            }
            visit_as_value!(stop_reason_by_derived_rules, str);
        }
        d.deserialize_any(V)
    }
}

fn known_stop_reason(v: &str) -> Option<StopReason> {
    Some(match v {
        "end_turn" => StopReason::EndTurn,
        "max_tokens" => StopReason::MaxTokens,
        "stop_sequence" => StopReason::StopSequence,
        "tool_use" => StopReason::ToolUse,
        "pause_turn" => StopReason::PauseTurn,
        "refusal" => StopReason::Refusal,
        _ => return None,
    })
}

/// The block, when its `type` is known and it has exactly that type's fields (the optional
/// ones may be absent or null), each of the JSON type the derived rules take.
fn fast(slots: &mut [Option<Value>; Key::COUNT]) -> Option<ContentBlock> {
    let present = |slots: &[Option<Value>; Key::COUNT], allowed: &[usize]| {
        slots
            .iter()
            .enumerate()
            .all(|(i, s)| s.is_none() || allowed.contains(&i))
    };
    let string = |v: &Value| v.is_string();
    let Some(Value::String(kind)) = &slots[0] else {
        return None;
    };
    let block = match kind.as_str() {
        "text"
            if present(slots, &[0, 1, 2])
                && slots[1].as_ref().is_some_and(string)
                && matches!(slots[2], None | Some(Value::Null | Value::Array(_))) =>
        {
            ContentBlock::Text {
                text: take_string(&mut slots[1]),
                citations: match slots[2].take() {
                    Some(Value::Array(a)) => Some(a),
                    _ => None,
                },
            }
        }
        "tool_use"
            if present(slots, &[0, 4, 5, 6])
                && slots[4].as_ref().is_some_and(string)
                && slots[5].as_ref().is_some_and(string)
                && slots[6].is_some() =>
        {
            ContentBlock::ToolUse {
                id: take_string(&mut slots[4]),
                name: take_string(&mut slots[5]),
                input: slots[6].take().unwrap_or_default(),
            }
        }
        "thinking"
            if present(slots, &[0, 10, 11])
                && slots[10].as_ref().is_some_and(string)
                && slots[11].as_ref().is_some_and(string) =>
        {
            ContentBlock::Thinking {
                thinking: take_string(&mut slots[10]),
                signature: take_string(&mut slots[11]),
            }
        }
        "redacted_thinking"
            if present(slots, &[0, 12]) && slots[12].as_ref().is_some_and(string) =>
        {
            ContentBlock::RedactedThinking {
                data: take_string(&mut slots[12]),
            }
        }
        _ => return None,
    };
    Some(block)
}

/// The string in a slot known to hold one.
fn take_string(slot: &mut Option<Value>) -> String {
    match slot.take() {
        Some(Value::String(s)) => s,
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What the derived rules alone make of `v`.
    fn derived(v: &Value) -> ContentBlock {
        Derived::deserialize(v.clone()).unwrap()
    }

    #[test]
    fn every_block_decodes_as_the_derived_rules_decode_it() {
        let cases = [
            json!({"type": "text", "text": "Hi"}),
            json!({"text": "Hi", "type": "text"}),
            json!({"type": "text", "text": "Hi", "citations": null}),
            json!({"type": "text", "text": "Hi", "citations": [{"a": 1}]}),
            json!({"type": "text", "text": "Hi", "citations": "no"}),
            json!({"type": "text", "text": 5}),
            json!({"type": "text"}),
            json!({"type": "text", "text": "Hi", "extra": true}),
            json!({"type": "text", "text": "Hi", "id": "x"}),
            json!({"type": "tool_use", "id": "tu", "name": "get", "input": {"q": [1, 2]}}),
            json!({"type": "tool_use", "id": "tu", "name": "get", "input": null}),
            json!({"type": "tool_use", "id": "tu", "name": "get"}),
            json!({"type": "tool_use", "id": 1, "name": "get", "input": {}}),
            json!({"type": "tool_result", "tool_use_id": "tu", "content": "ok", "is_error": false}),
            json!({"type": "tool_result", "tool_use_id": "tu", "is_error": "no"}),
            json!({"type": "image", "source": {"type": "url", "url": "https://x"}}),
            json!({"type": "thinking", "thinking": "hmm", "signature": "sig"}),
            json!({"type": "thinking", "thinking": "hmm"}),
            json!({"type": "redacted_thinking", "data": "opaque"}),
            json!({"type": "redacted_thinking", "data": ["opaque"]}),
            json!({"type": "brand_new_block", "payload": [1, 2]}),
            json!({"type": 7, "text": "Hi"}),
            json!({"text": "no type"}),
            json!({}),
            json!("a string"),
            json!(42),
            json!(-1),
            json!(1.5),
            json!(null),
            json!(true),
            json!(["text", "Hi"]),
            json!([]),
        ];
        for v in cases {
            let text = v.to_string();
            let ours: ContentBlock = serde_json::from_str(&text).unwrap();
            assert_eq!(ours, derived(&v), "{text}");
            // And through a value (another deserializer), the same.
            let via_value: ContentBlock = serde_json::from_value(v.clone()).unwrap();
            assert_eq!(via_value, ours, "{text}");
        }
    }

    #[test]
    fn stop_reasons_decode_as_the_derived_rules_decode_them() {
        for v in [
            json!("end_turn"),
            json!("max_tokens"),
            json!("stop_sequence"),
            json!("tool_use"),
            json!("pause_turn"),
            json!("refusal"),
            json!("something_new"),
            json!("End_Turn"),
            json!(""),
            json!({"end_turn": null}),
            json!({"other": 1}),
            json!(7),
            json!(["end_turn"]),
            json!(true),
        ] {
            let text = v.to_string();
            let derived = StopReasonDerived::deserialize(v.clone()).ok();
            let ours = serde_json::from_str::<StopReason>(&text).ok();
            assert_eq!(ours, derived, "{text}");
            let via_value = serde_json::from_value::<StopReason>(v.clone()).ok();
            assert_eq!(via_value, derived, "{text}");
        }
        // A string with escapes (given to the visitor as an owned string).
        let r: StopReason = serde_json::from_str(r#""end\u005fturn""#).unwrap();
        assert_eq!(r, StopReason::EndTurn);
    }

    #[test]
    fn duplicate_keys_take_the_last_value() {
        let b: ContentBlock =
            serde_json::from_str(r#"{"type": "text", "text": "a", "text": "b"}"#).unwrap();
        assert_eq!(b, ContentBlock::text("b"));
        let b: ContentBlock =
            serde_json::from_str(r#"{"type": "text", "text": "a", "x": 1, "x": 2}"#).unwrap();
        assert_eq!(b, ContentBlock::text("a"));
    }

    #[test]
    fn bad_json_is_an_error_not_a_panic() {
        for bad in [r#"{"type": "text", "text": }"#, r#"{"type""#, "", "[1,"] {
            assert!(serde_json::from_str::<ContentBlock>(bad).is_err(), "{bad}");
        }
    }
}
