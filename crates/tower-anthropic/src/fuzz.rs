//! Fuzz entry points: each takes arbitrary bytes, runs one parser the way the client does,
//! and panics only if an invariant breaks. The cargo-fuzz targets in `fuzz/` call them, and
//! the unit tests below run each on seeded random inputs in every `cargo test`.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::error::Error;
use crate::messages::Message;
use crate::stream::sse::{SseDecoder, SseEvent};
use crate::stream::{MessageAccumulator, StreamEvent};

/// SSE decoding is bounded and the same however the bytes are split (at a point taken from
/// the input).
pub fn sse_chunking(data: &[u8]) {
    let decode = |chunks: &[&[u8]]| -> Result<Vec<SseEvent>, ()> {
        let mut d = SseDecoder::new(4096, 16 * 1024);
        let mut out = Vec::new();
        for c in chunks {
            d.feed(c, &mut out).map_err(|_| ())?;
        }
        Ok(out)
    };
    let whole = decode(&[data]);
    let split = data.first().map_or(0, |b| usize::from(*b)) % (data.len() + 1);
    let parts = decode(&[&data[..split], &data[split..]]);
    if let (Ok(a), Ok(b)) = (&whole, &parts) {
        assert_eq!(a, b, "chunking changed the events");
    }
    if let Ok(events) = whole {
        for e in &events {
            assert!(e.data().len() <= 16 * 1024, "an event past its bound");
        }
    }
}

/// The accumulator fed arbitrary events (one JSON event a line) never panics, never grows
/// past one block per `content_block_start`, and its message stays serializable.
pub fn accumulate(data: &[u8]) {
    let mut acc = MessageAccumulator::new();
    let mut starts = 0usize;
    for line in data.split(|b| *b == b'\n') {
        let Ok(event) = serde_json::from_slice::<StreamEvent>(line) else {
            continue;
        };
        if matches!(event, StreamEvent::ContentBlockStart { .. }) {
            starts += 1;
        }
        let _ = acc.apply(&event);
    }
    if let Some(m) = acc.message() {
        assert!(m.content.len() <= starts + 1_000, "blocks without starts");
        let _ = serde_json::to_vec(m);
    }
}

/// Header parsing (`retry-after`, `retry-after-ms`, `x-should-retry`, `request-id`, the twelve
/// rate-limit headers, RFC 3339 resets) never panics, and waits stay within the cap.
pub fn headers(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut h = HeaderMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(':') {
            if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.trim()), HeaderValue::try_from(v)) {
                h.append(k, v);
            }
        }
        let _ = crate::rate_limit::parse_rfc3339(line);
    }
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    if let Some(wait) = crate::classify::headers::parse_retry_after(&h, now) {
        assert!(wait >= Duration::from_millis(1) && wait <= Duration::from_secs(4_294_967));
    }
    let _ = crate::classify::headers::parse_should_retry(&h);
    let _ = crate::classify::parse_request_id(&h);
    let _ = crate::rate_limit::RateLimitHeaders::from_headers(&h);
}

/// Classifying an error response (a status from the first two bytes, the rest the body)
/// never panics, and the message it keeps is bounded and printable.
pub fn error_body(data: &[u8]) {
    let status = data
        .get(..2)
        .map_or(500, |b| 100 + u16::from_be_bytes([b[0], b[1]]) % 500);
    let body = data.get(2..).unwrap_or_default();
    let (parts, ()) = http::Response::builder()
        .status(status)
        .body(())
        .expect("a status from 100 to 599")
        .into_parts();
    let e = crate::classify::api_error(parts, body);
    let msg = e.as_api().expect("an API error").message();
    assert!(msg.chars().count() <= 1_000, "an unbounded message");
    assert!(
        !msg.chars().any(char::is_control),
        "a control character kept"
    );
    let _ = e.to_string();
}

/// Decoding a 2xx body as a `Message` never panics: a `Message` or a typed decode error.
pub fn decode_message(data: &[u8]) {
    match crate::messages::decode::<Message>(data) {
        Ok(m) => {
            let _ = m.text();
        }
        Err(Error::Decode(d)) => assert!(d.excerpt().chars().count() <= 200),
        Err(other) => panic!("not a decode error: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    /// Seeded inputs: random bytes mixed with fragments of the formats, so the parsers get
    /// past their first checks.
    fn inputs(seed: u64, n: usize, fragments: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut x = seed;
        let mut next = move || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        (0..n)
            .map(|_| {
                let mut v = Vec::new();
                for _ in 0..(next() % 12) {
                    if next() % 3 == 0 {
                        let len = (next() % 16) as usize;
                        v.extend((0..len).map(|_| next() as u8));
                    } else {
                        v.extend_from_slice(fragments[(next() as usize) % fragments.len()]);
                    }
                }
                v
            })
            .collect()
    }

    const SSE: &[&[u8]] = &[
        b"event: ",
        b"data: ",
        b"id: ",
        b": c\n",
        b"\n",
        b"\r\n",
        b"\r",
        b"{\"type\":\"ping\"}",
        b"message_start",
        b"\xEF\xBB\xBF",
    ];
    const EVENTS: &[&[u8]] = &[
        b"{\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"x\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":1,\"output_tokens\":0}}}\n",
        b"{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n",
        b"{\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"n\",\"input\":{}}}\n",
        b"{\"type\":\"content_block_start\",\"index\":18446744073709551615,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n",
        b"{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a\"}}\n",
        b"{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\"}}\n",
        b"{\"type\":\"content_block_stop\",\"index\":1}\n",
        b"{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":3}}\n",
    ];
    const HEADERS: &[&[u8]] = &[
        b"retry-after: ",
        b"retry-after-ms: ",
        b"x-should-retry: true\n",
        b"1e-320\n",
        b"nan\n",
        b"Fri, 29 Sep 2023 16:26:57 GMT\n",
        b"anthropic-ratelimit-requests-limit: 50\n",
        b"anthropic-ratelimit-tokens-reset: ",
        b"2025-02-31T00:00:00Z\n",
        b"\xC3\xA9",
        b"99999999999999999999\n",
    ];
    const BODIES: &[&[u8]] = &[
        b"{\"type\":\"error\",\"error\":{\"type\":\"",
        b"overloaded_error",
        b"\",\"message\":\"",
        b"\\u001b[31m",
        b"\\n",
        b"\"}}",
        b"<html><title>",
        b"[0,0,0,",
        b"{\"id\":\"m\",\"content\":[",
    ];

    #[test]
    fn each_fuzz_entry_point_holds_on_seeded_inputs() {
        for input in inputs(1, 3_000, SSE) {
            super::sse_chunking(&input);
        }
        for input in inputs(2, 3_000, EVENTS) {
            super::accumulate(&input);
        }
        for input in inputs(3, 3_000, HEADERS) {
            super::headers(&input);
        }
        for input in inputs(4, 3_000, BODIES) {
            super::error_body(&input);
            super::decode_message(&input);
        }
    }
}
