//! A bounded, incremental decoder of server-sent events (the WHATWG `text/event-stream`
//! format): lines end in CRLF, LF or CR (also split across chunks), a leading BOM is
//! skipped, `:` comments are ignored, `data` lines join with `\n`, and bytes are decoded only
//! once a line is whole (so a chunk may end inside a UTF-8 character).
//!
//! Written here rather than taken from a crate: the decoder must bound its memory (a line or
//! event over a limit is an error, never an unbounded buffer) and take bytes straight from
//! hyper bodies without a futures stack.

use std::borrow::Cow;
use std::fmt;

use bytes::{Bytes, BytesMut};

/// Default longest line.
pub(crate) const DEFAULT_MAX_LINE: usize = 1024 * 1024;
/// Default largest event (all of its `data` lines).
pub(crate) const DEFAULT_MAX_EVENT: usize = 8 * 1024 * 1024;

/// One dispatched event. Its name and data are slices of the bytes fed in (no copy when a
/// line arrived whole in one chunk given as [`Bytes`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    event: Bytes,
    data: Bytes,
    id: Option<String>,
}

impl SseEvent {
    /// An event from its parts (for tests and tools).
    pub fn new(event: &str, data: &str, id: Option<&str>) -> Self {
        Self {
            event: Bytes::copy_from_slice(event.as_bytes()),
            data: Bytes::copy_from_slice(data.as_bytes()),
            id: id.map(str::to_owned),
        }
    }

    /// The `event` field; empty means the default type `message`. Bytes that are not UTF-8
    /// are replaced (U+FFFD).
    pub fn event(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.event)
    }

    /// Whether the `event` field is `name`.
    pub fn is(&self, name: &str) -> bool {
        self.event == name.as_bytes()
    }

    /// The `data` lines joined with `\n`, as sent (not checked to be UTF-8: a JSON parser
    /// does that).
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The `id` field in force for this event, if any.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }
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

/// The `data` of the event being read.
#[derive(Debug, Default)]
enum Data {
    /// No `data` line yet.
    #[default]
    None,
    /// One line: a slice of the input.
    One(Bytes),
    /// Several lines joined with `\n`.
    Many(BytesMut),
}

impl Data {
    fn len(&self) -> usize {
        match self {
            Data::None => 0,
            Data::One(b) => b.len(),
            Data::Many(b) => b.len(),
        }
    }
}

/// The incremental decoder: feed it bytes, take events.
///
/// Lines are found with `memchr`; a line that arrives whole in one chunk is never copied:
/// its value is sliced out of the chunk (shared [`Bytes`]). Only a line split across chunks
/// is gathered in a buffer, bounded by `max_line`.
#[derive(Debug)]
pub struct SseDecoder {
    /// The start of a line split across chunks.
    partial: Vec<u8>,
    after_cr: bool,
    started: bool,
    event: Bytes,
    data: Data,
    id: Option<String>,
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
            partial: Vec::new(),
            after_cr: false,
            started: false,
            event: Bytes::new(),
            data: Data::None,
            id: None,
            max_line,
            max_event,
        }
    }

    /// Feeds a chunk (copied once into shared bytes), appending every event it completes
    /// to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseTooLarge> {
        self.feed_bytes(&Bytes::copy_from_slice(chunk), out)
    }

    /// Feeds a chunk of shared bytes (a body frame, as it came), appending every event it
    /// completes to `out`; events slice the chunk rather than copy it.
    pub fn feed_bytes(
        &mut self,
        chunk: &Bytes,
        out: &mut Vec<SseEvent>,
    ) -> Result<(), SseTooLarge> {
        let mut pos = 0;
        if !self.started {
            // A BOM may only open the stream; wait for three bytes to know.
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            let have = self.partial.len() + chunk.len();
            if have < 3 && BOM.starts_with(&[&self.partial[..], &chunk[..]].concat()) {
                self.partial.extend_from_slice(chunk);
                return Ok(());
            }
            self.started = true;
            if !self.partial.is_empty() {
                // Fewer than three bytes were held: join them with this chunk and start over.
                let mut head = std::mem::take(&mut self.partial);
                head.extend_from_slice(chunk);
                let head = Bytes::from(head);
                let rest = head.slice(if head.starts_with(BOM) { 3 } else { 0 }..);
                return self.feed_bytes(&rest, out);
            }
            if chunk.starts_with(BOM) {
                pos = 3;
            }
        }
        if pos < chunk.len() {
            // A CR that ended the last chunk and an LF that opens this one are one line end.
            if self.after_cr && chunk[pos] == b'\n' {
                pos += 1;
            }
            self.after_cr = false;
        }
        let bytes = &chunk[..];
        while pos < bytes.len() {
            let Some(i) = memchr::memchr2(b'\n', b'\r', &bytes[pos..]) else {
                // No end of line in the rest: keep it for the next chunk.
                let rest = &bytes[pos..];
                if self.partial.len() + rest.len() > self.max_line {
                    return Err(SseTooLarge {
                        what: "line",
                        limit: self.max_line,
                    });
                }
                self.partial.extend_from_slice(rest);
                break;
            };
            let eol = pos + i;
            if self.partial.is_empty() {
                if eol - pos > self.max_line {
                    return Err(SseTooLarge {
                        what: "line",
                        limit: self.max_line,
                    });
                }
                self.line(chunk, pos, eol, out)?;
            } else {
                if self.partial.len() + (eol - pos) > self.max_line {
                    return Err(SseTooLarge {
                        what: "line",
                        limit: self.max_line,
                    });
                }
                self.partial.extend_from_slice(&bytes[pos..eol]);
                let line = Bytes::from(std::mem::take(&mut self.partial));
                self.line(&line, 0, line.len(), out)?;
            }
            pos = eol + 1;
            if bytes[eol] == b'\r' {
                match bytes.get(pos) {
                    Some(b'\n') => pos += 1,
                    None => self.after_cr = true,
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// One whole line: `src[start..end]`.
    fn line(
        &mut self,
        src: &Bytes,
        start: usize,
        end: usize,
        out: &mut Vec<SseEvent>,
    ) -> Result<(), SseTooLarge> {
        let line = &src[start..end];
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = if line.get(i + 1) == Some(&b' ') {
                    i + 2
                } else {
                    i + 1
                };
                (&line[..i], start + v..end)
            }
            None => (line, end..end),
        };
        match field {
            b"data" => {
                let len = value.len();
                if self.data.len() + len + 1 > self.max_event {
                    return Err(SseTooLarge {
                        what: "event",
                        limit: self.max_event,
                    });
                }
                self.data = match std::mem::take(&mut self.data) {
                    Data::None => Data::One(src.slice(value)),
                    Data::One(first) => {
                        let mut joined = BytesMut::with_capacity(first.len() + 1 + len);
                        joined.extend_from_slice(&first);
                        joined.extend_from_slice(b"\n");
                        joined.extend_from_slice(&src[value]);
                        Data::Many(joined)
                    }
                    Data::Many(mut joined) => {
                        joined.extend_from_slice(b"\n");
                        joined.extend_from_slice(&src[value]);
                        Data::Many(joined)
                    }
                };
            }
            b"event" => self.event = src.slice(value),
            b"id" if memchr::memchr(0, &src[value.clone()]).is_none() => {
                self.id = Some(String::from_utf8_lossy(&src[value]).into_owned());
            }
            _ => {}
        }
        Ok(())
    }

    /// An empty line: the event read so far is dispatched if it has data, dropped if not
    /// (its id stays, as the spec says).
    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = std::mem::take(&mut self.event);
        let data = match std::mem::take(&mut self.data) {
            Data::None => return,
            Data::One(b) => b,
            Data::Many(b) => b.freeze(),
        };
        // The last event id carries over to the events after it (WHATWG).
        out.push(SseEvent {
            event,
            data,
            id: self.id.clone(),
        });
    }

    /// Whether bytes of an unfinished line or event are buffered (at the end of a stream this
    /// means it was cut off mid-event).
    pub fn has_partial(&self) -> bool {
        !self.partial.is_empty() || !matches!(self.data, Data::None)
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
        SseEvent::new(event, data, None)
    }

    #[test]
    fn the_spec_cases() {
        let input = "\u{FEFF}: a comment\r\nevent: a\r\ndata: one\r\ndata:two\r\n\r\ndata: x\n\nevent: b\rdata: y\r\rid: 7\ndata\n\ndata: z";
        let out = decode_chunks(&[input.as_bytes()]);
        assert_eq!(out[0], ev("a", "one\ntwo"));
        assert_eq!(out[1], ev("", "x"));
        assert_eq!(out[2], ev("b", "y"));
        assert_eq!(out[3], SseEvent::new("", "", Some("7")));
        assert_eq!(
            out.len(),
            4,
            "the unterminated last event is not dispatched"
        );
        // An event without data is not dispatched.
        assert!(decode_chunks(&[b"event: ping\n\n"]).is_empty());
        // The last event id stays until another replaces it.
        let out = decode_chunks(&[b"id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\n"]);
        let ids: Vec<_> = out.iter().map(|e| e.id()).collect();
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
        assert!(String::from_utf8_lossy(whole[0].data()).contains('🦀'));
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
