//! Benchmarks of the WebSocket codec: header parsing, unmasking (fast path
//! against the byte-at-a-time reference), streaming decode of realistic
//! client traffic, and server header encoding.
//!
//! Run: `cargo bench --bench ws_codec -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sigyard::proto::ws::{
    apply_mask, apply_mask_reference, encode_close, encode_header, whole_str, DataKind, Decoder,
    DecoderLimits, FrameHeader, Item, OpCode, MAX_CLOSE_FRAME_LEN, MAX_HEADER_LEN,
};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A masked client frame.
fn client_frame(op: OpCode, payload: &[u8], out: &mut Vec<u8>) {
    let mut h = [0u8; MAX_HEADER_LEN];
    let n = FrameHeader {
        fin: true,
        opcode: op,
        mask: Some(KEY),
        payload_len: payload.len() as u64,
    }
    .emit(&mut h);
    out.extend_from_slice(&h[..n]);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], KEY, 0);
}

fn header_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("header_parse");
    for (name, len) in [("7bit", 64u64), ("16bit", 1000), ("64bit", 100_000)] {
        let mut buf = [0u8; MAX_HEADER_LEN];
        FrameHeader {
            fin: true,
            opcode: OpCode::Binary,
            mask: Some(KEY),
            payload_len: len,
        }
        .emit(&mut buf);
        g.bench_function(name, |b| {
            b.iter(|| FrameHeader::parse(black_box(&buf)));
        });
    }
    g.finish();
}

fn unmask(c: &mut Criterion) {
    let mut g = c.benchmark_group("unmask");
    for size in [16usize, 125, 1024, 16 * 1024, 64 * 1024] {
        let mut buf: Vec<u8> = (0..size).map(|i| i as u8).collect();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("fast/{size}"), |b| {
            b.iter(|| apply_mask(black_box(&mut buf), black_box(KEY), black_box(1)));
        });
        g.bench_function(format!("reference/{size}"), |b| {
            b.iter(|| apply_mask_reference(black_box(&mut buf), black_box(KEY), black_box(1)));
        });
    }
    g.finish();
}

/// Decodes `stream` completely (as one read buffer) and returns the number
/// of payload bytes seen, so the work cannot be optimised away.
fn decode_stream(stream: &mut [u8]) -> usize {
    let limits = DecoderLimits {
        max_frame: 1 << 20,
        max_message: 1 << 20,
    };
    let mut dec = Decoder::new();
    let mut at = 0;
    let mut payload = 0;
    loop {
        match dec.decode(&limits, &mut stream[at..]) {
            Ok((Item::NeedMore, _)) => return payload,
            Ok((Item::Data { range, kind, .. }, n)) => {
                debug_assert!(kind == DataKind::Text || kind == DataKind::Binary);
                payload += range.len();
                at += n;
            }
            Ok((Item::Control { range, .. }, n)) => {
                payload += range.len();
                at += n;
            }
            Err(e) => panic!("bench stream invalid: {e}"),
        }
    }
}

/// `pattern` repeated and cut at a character boundary, padded with ASCII to
/// exactly `len` bytes.
fn text_of_len(pattern: &str, len: usize) -> String {
    let mut s = String::with_capacity(len);
    for ch in pattern.chars().cycle() {
        if s.len() + ch.len_utf8() > len {
            break;
        }
        s.push(ch);
    }
    while s.len() < len {
        s.push('x');
    }
    s
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");

    // 1000 text frames of 64 bytes (JSON-ish ASCII with some multibyte
    // characters), UTF-8 validated.
    let text = text_of_len(
        "{\"type\":\"candidate\",\"sdpMid\":\"0\",\"x\":\"é€\",\"n\":1}",
        64,
    );
    let mut small = Vec::new();
    for _ in 0..1000 {
        client_frame(OpCode::Text, text.as_bytes(), &mut small);
    }
    g.throughput(Throughput::Bytes(small.len() as u64));
    g.bench_function("text_64B_x1000", |b| {
        b.iter_batched_ref(
            || small.clone(),
            |s| decode_stream(s),
            BatchSize::LargeInput,
        );
    });

    // 16 binary frames of 16 KiB.
    let payload: Vec<u8> = (0..16 * 1024).map(|i| (i * 7) as u8).collect();
    let mut big = Vec::new();
    for _ in 0..16 {
        client_frame(OpCode::Binary, &payload, &mut big);
    }
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("binary_16KiB_x16", |b| {
        b.iter_batched_ref(|| big.clone(), |s| decode_stream(s), BatchSize::LargeInput);
    });

    // 8 text frames of 16 KiB (the UTF-8 bulk path).
    let long_text = text_of_len("signaling ünïcødé €𝄞 ", 16 * 1024);
    let mut big_text = Vec::new();
    for _ in 0..8 {
        client_frame(OpCode::Text, long_text.as_bytes(), &mut big_text);
    }
    g.throughput(Throughput::Bytes(big_text.len() as u64));
    g.bench_function("text_16KiB_x8", |b| {
        b.iter_batched_ref(
            || big_text.clone(),
            |s| decode_stream(s),
            BatchSize::LargeInput,
        );
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode_header");
    for (name, len) in [("7bit", 64u64), ("16bit", 1000), ("64bit", 100_000)] {
        g.bench_function(name, |b| {
            let mut out = [0u8; 10];
            b.iter(|| {
                let n = encode_header(
                    black_box(true),
                    black_box(OpCode::Text),
                    black_box(len),
                    &mut out,
                );
                black_box(&out);
                n
            });
        });
    }
    g.bench_function("close_with_reason", |b| {
        let mut out = [0u8; MAX_CLOSE_FRAME_LEN];
        b.iter(|| {
            let n = encode_close(black_box(1001), black_box("server shutting down"), &mut out);
            black_box(&out);
            n
        });
    });
    g.finish();
}

/// The check of a whole text message: `core::str::from_utf8` against `whole_str` (simdutf8),
/// on an SDP of 1 KiB (ASCII) and a tracker announce of 5 such offers with binary ids (a few
/// two-byte characters).
fn utf8_whole(c: &mut Criterion) {
    let mut g = c.benchmark_group("utf8_whole");
    let sdp = text_of_len(
        "v=0\\r\\no=- 4611731400430051336 2 IN IP4 127.0.0.1\\r\\ns=-\\r\\nt=0 0\\r\\n\
         a=group:BUNDLE 0\\r\\na=ice-ufrag:Xk3x\\r\\na=ice-pwd:q8w0e2r4t6y8u0i2o4p6a8s0\\r\\n",
        1024,
    );
    let offer = format!(r#"{{"offer":{{"type":"offer","sdp":"{sdp}"}},"offer_id":"ÿ\u0001é-ab"}}"#);
    let announce = format!(
        r#"{{"action":"announce","info_hash":"\u0012ÀÿªÜ","peer_id":"-WW0300-þx","offers":[{}]}}"#,
        [&offer[..]; 5].join(",")
    );
    for (name, text) in [("sdp_1KiB", &sdp), ("announce_5KiB", &announce)] {
        let bytes = text.as_bytes();
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(format!("core/{name}"), |b| {
            b.iter(|| core::str::from_utf8(black_box(bytes)).is_ok());
        });
        g.bench_function(format!("whole_str/{name}"), |b| {
            b.iter(|| whole_str(black_box(bytes)).is_some());
        });
    }
    g.finish();
}

criterion_group!(benches, header_parse, unmask, decode, encode, utf8_whole);
criterion_main!(benches);
