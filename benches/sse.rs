//! SSE decoding throughput: the stream decoder (and the typed parse on top) next to a bare
//! line scan of the same input.
//!
//! `cargo bench --bench sse`

// criterion's macros generate undocumented functions.
#![allow(missing_docs)]

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tower_anthropic::__private::{SseDecoder, parse_event};

/// About 4 MB of events shaped like the API's: text deltas of a few words, pings.
fn input() -> Vec<u8> {
    let mut s = String::new();
    s.push_str("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n");
    let mut i = 0;
    while s.len() < 4 << 20 {
        s.push_str(&format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\" resilient systems {i}\"}}}}\n\n"
        ));
        if i % 16 == 0 {
            s.push_str("event: ping\ndata: {\"type\": \"ping\"}\n\n");
        }
        i += 1;
    }
    s.into_bytes()
}

fn sse(c: &mut Criterion) {
    let data = input();
    // Deliver it in 16 KiB chunks, as a socket would.
    let chunks: Vec<&[u8]> = data.chunks(16 * 1024).collect();
    let mut group = c.benchmark_group("sse_decode");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("bare_line_scan", |b| {
        b.iter(|| {
            let mut lines = 0usize;
            for ch in &chunks {
                lines += ch.iter().filter(|&&b| b == b'\n').count();
            }
            assert!(lines > 0);
            lines
        })
    });
    // As `MessageStream` gets them: body frames of shared bytes.
    let frames: Vec<Bytes> = chunks.iter().map(|c| Bytes::copy_from_slice(c)).collect();
    group.bench_function("sse_decoder", |b| {
        let mut out = Vec::with_capacity(1024);
        b.iter(|| {
            let mut d = SseDecoder::default();
            let mut n = 0;
            for ch in &frames {
                d.feed_bytes(ch, &mut out).unwrap();
                n += out.len();
                out.clear();
            }
            n
        })
    });
    group.bench_function("sse_decoder_typed", |b| {
        let mut out = Vec::with_capacity(1024);
        b.iter(|| {
            let mut d = SseDecoder::default();
            let mut n = 0;
            for ch in &frames {
                d.feed_bytes(ch, &mut out).unwrap();
                for ev in out.drain(..) {
                    let typed = parse_event(&ev).unwrap();
                    n += typed.is_content() as usize;
                }
            }
            n
        })
    });
    group.finish();
}

criterion_group!(benches, sse);
criterion_main!(benches);
