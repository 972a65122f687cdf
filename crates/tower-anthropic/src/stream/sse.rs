//! A bounded, incremental decoder of server-sent events (the WHATWG `text/event-stream`
//! format): lines end in CRLF, LF or CR (also split across chunks), a leading BOM is
//! skipped, `:` comments are ignored, `data` lines join with `\n`, and bytes are decoded only
//! once a line is whole (so a chunk may end inside a UTF-8 character).
//!
//! Written here rather than taken from a crate: the decoder must bound its memory (a line or
//! event over a limit is an error, never an unbounded buffer) and take bytes straight from
//! hyper bodies without a futures stack.

use std::fmt;

/// Default longest line.
pub(crate) const DEFAULT_MAX_LINE: usize = 1024 * 1024;
/// Default largest event (all of its `data` lines).
pub(crate) const DEFAULT_MAX_EVENT: usize = 8 * 1024 * 1024;

/// One dispatched event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event` field; empty means the default type `message`.
    pub event: String,
    /// The `data` lines joined with `\n`.
    pub data: String,
    /// The `id` field, if any.
    pub id: Option<String>,
}

/// A line or an event went past its bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseTooLarge {
    /// What was too large: `line` or `event`.
    pub what: &'static str,
    /// The bound, in bytes.
    pub limit: usize,
}

impl fmt::Display for SseTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "server-sent {} longer than {} bytes",
            self.what, self.limit
        )
    }
}

impl std::error::Error for SseTooLarge {}

/// The incremental decoder: feed it bytes, take events.
#[derive(Debug)]
pub struct SseDecoder {
    line: Vec<u8>,
    after_cr: bool,
    started: bool,
    event: SseEvent,
    has_data: bool,
    max_line: usize,
    max_event: usize,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_LINE, DEFAULT_MAX_EVENT)
    }
}

impl SseDecoder {
    /// A decoder with these bounds (bytes).
    pub fn new(max_line: usize, max_event: usize) -> Self {
        Self {
            line: Vec::new(),
            after_cr: false,
            started: false,
            event: SseEvent::default(),
            has_data: false,
            max_line,
            max_event,
        }
    }

    /// Feeds a chunk, appending every event it completes to `out`.
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseTooLarge> {
        if !self.started {
            // A BOM may only open the stream; wait for three bytes to know.
            let have = self.line.len() + chunk.len();
            if have < 3 && b"\xEF\xBB\xBF".starts_with(&[&self.line[..], chunk].concat()) {
                self.line.extend_from_slice(chunk);
                return Ok(());
            }
            self.started = true;
            let mut head = std::mem::take(&mut self.line);
            head.extend_from_slice(chunk);
            let rest = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&head).to_vec();
            return self.feed_bytes(&rest, out);
        }
        if chunk.is_empty() {
            return Ok(());
        }
        if self.after_cr && chunk[0] == b'\n' {
            chunk = &chunk[1..];
        }
        self.after_cr = false;
        self.feed_bytes(chunk, out)
    }

    fn feed_bytes(&mut self, mut chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseTooLarge> {
        while !chunk.is_empty() {
            match chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(i) => {
                    self.push_line_bytes(&chunk[..i])?;
                    let cr = chunk[i] == b'\r';
                    let mut next = i + 1;
                    if cr {
                        match chunk.get(next) {
                            Some(b'\n') => next += 1,
                            None => self.after_cr = true,
                            _ => {}
                        }
                    }
                    self.end_line(out)?;
                    chunk = &chunk[next..];
                }
                None => {
                    self.push_line_bytes(chunk)?;
                    chunk = &[];
                }
            }
        }
        Ok(())
    }

    fn push_line_bytes(&mut self, b: &[u8]) -> Result<(), SseTooLarge> {
        if self.line.len() + b.len() > self.max_line {
            return Err(SseTooLarge {
                what: "line",
                limit: self.max_line,
            });
        }
        self.line.extend_from_slice(b);
        Ok(())
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) -> Result<(), SseTooLarge> {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            if self.has_data {
                let mut ev = std::mem::take(&mut self.event);
                if ev.data.ends_with('\n') {
                    ev.data.pop();
                }
                // The last event id carries over to the events after it (WHATWG).
                self.event.id = ev.id.clone();
                out.push(ev);
            } else {
                // No data: the event is dropped, but its id stays (as the spec says).
                let id = self.event.id.take();
                self.event = SseEvent {
                    id,
                    ..SseEvent::default()
                };
            }
            self.has_data = false;
            return Ok(());
        }
        if line[0] == b':' {
            self.line = line;
            self.line.clear();
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let (field, value) = match text.find(':') {
            Some(i) => {
                let v = &text[i + 1..];
                (&text[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&text[..], ""),
        };
        match field {
            "event" => self.event.event = value.to_owned(),
            "data" => {
                if self.event.data.len() + value.len() + 1 > self.max_event {
                    return Err(SseTooLarge {
                        what: "event",
                        limit: self.max_event,
                    });
                }
                self.event.data.push_str(value);
                self.event.data.push('\n');
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.event.id = Some(value.to_owned()),
            _ => {}
        }
        // Keep the line's allocation for the next one.
        let mut buf = line;
        buf.clear();
        self.line = buf;
        Ok(())
    }

    /// Whether bytes of an unfinished line or event are buffered (at the end of a stream this
    /// means it was cut off mid-event).
    pub fn has_partial(&self) -> bool {
        !self.line.is_empty() || self.has_data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_chunks(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut d = SseDecoder::default();
        let mut out = Vec::new();
        for c in chunks {
            d.feed(c, &mut out).unwrap();
        }
        out
    }

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
            id: None,
        }
    }

    #[test]
    fn the_spec_cases() {
        let input = "\u{FEFF}: a comment\r\nevent: a\r\ndata: one\r\ndata:two\r\n\r\ndata: x\n\nevent: b\rdata: y\r\rid: 7\ndata\n\ndata: z";
        let out = decode_chunks(&[input.as_bytes()]);
        assert_eq!(out[0], ev("a", "one\ntwo"));
        assert_eq!(out[1], ev("", "x"));
        assert_eq!(out[2], ev("b", "y"));
        assert_eq!(
            out[3],
            SseEvent {
                event: String::new(),
                data: String::new(),
                id: Some("7".into())
            }
        );
        assert_eq!(
            out.len(),
            4,
            "the unterminated last event is not dispatched"
        );
        // An event without data is not dispatched.
        assert!(decode_chunks(&[b"event: ping\n\n"]).is_empty());
        // The last event id stays until another replaces it.
        let out = decode_chunks(&[b"id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\n"]);
        let ids: Vec<_> = out.iter().map(|e| e.id.as_deref()).collect();
        assert_eq!(ids, [Some("1"), Some("1"), Some("2")]);
    }

    /// A deterministic generator for the chunking property.
    struct Lcg(u64);
    impl Lcg {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) as usize) % n.max(1)
        }
    }

    fn sample() -> Vec<u8> {
        let mut s = String::from("\u{FEFF}");
        for i in 0..40 {
            let eol = ["\n", "\r\n", "\r"][i % 3];
            s.push_str(&format!(
                ": keep-alive {i}{eol}event: content_block_delta{eol}"
            ));
            s.push_str(&format!(
                "data: {{\"text\": \"héllo wörld ✓ {i} 🦀\"}}{eol}"
            ));
            if i % 4 == 0 {
                s.push_str(&format!("data: second line{eol}"));
            }
            s.push_str(eol);
        }
        s.into_bytes()
    }

    #[test]
    fn every_split_point_and_random_chunkings_decode_the_same() {
        let input = sample();
        let whole = decode_chunks(&[&input]);
        assert_eq!(whole.len(), 40);
        assert!(whole[0].data.contains('🦀'));
        for split in 0..=input.len() {
            let (a, b) = input.split_at(split);
            assert_eq!(decode_chunks(&[a, b]), whole, "split at {split}");
        }
        let mut rng = Lcg(42);
        for _ in 0..300 {
            let mut chunks = Vec::new();
            let mut rest = &input[..];
            while !rest.is_empty() {
                let n = 1 + rng.below(rest.len().min(17));
                chunks.push(&rest[..n]);
                rest = &rest[n..];
            }
            assert_eq!(decode_chunks(&chunks), whole);
        }
        // One byte at a time.
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(decode_chunks(&bytes), whole);
    }

    #[test]
    fn oversized_lines_and_events_are_errors() {
        let mut d = SseDecoder::new(16, 64);
        let mut out = Vec::new();
        let e = d.feed(b"data: 0123456789abcdef", &mut out).unwrap_err();
        assert_eq!(
            e,
            SseTooLarge {
                what: "line",
                limit: 16
            }
        );
        let mut d = SseDecoder::new(16, 20);
        let e = (0..10)
            .find_map(|_| d.feed(b"data: 0123456\n", &mut out).err())
            .unwrap();
        assert_eq!(e.what, "event");
        // Many short lines without a newline never grow past the bound either.
        let mut d = SseDecoder::new(1024, 1 << 20);
        let r = (0..2000).try_for_each(|_| d.feed(b"xxxxxxxx", &mut out));
        assert!(r.is_err());
    }
}
