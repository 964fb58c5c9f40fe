//! The `/connection` pipe in memory, no sockets: a stream of masked client frames goes through
//! the connection machine's piped mode (`Conn::read` giving `Step::Forward`: parse, unmask in place, re-encode
//! the header) and the forwarded header and payload are appended to a sink, as the shell does
//! when the other end's socket is busy. Side by side, the same stream through message mode
//! (reassembled, copied into an owned message, re-framed): what a relay that forwards whole
//! messages does, and what sigyard does for a pipe end still finishing a message at pairing.
//!
//! Run: `cargo bench --bench relay`. Throughput is payload bytes; frames per second follow
//! from the frame count per iteration (printed once at start).

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use sigyard::proto::conn::{Conn, Counters, Limits, Step};
use sigyard::proto::time::Tick;
use sigyard::proto::ws::{encode_frame, OpCode};

const UPGRADE: &[u8] =
    b"GET /connection/a/b/k HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

fn open_conn(piped: bool) -> Conn {
    let limits = Limits::default();
    let mut conn = Conn::new(Tick(0));
    let mut req = UPGRADE.to_vec();
    let mut out = Vec::new();
    let mut counters = Counters::default();
    let (step, _) = conn.read(Tick(0), &limits, &mut req, &mut out, &mut counters);
    let Step::Request { head, .. } = step else {
        panic!("an upgrade request")
    };
    let accept = conn
        .check_upgrade(&head, &mut out, &mut counters)
        .expect("a valid upgrade");
    conn.upgrade(Tick(0), &accept, &mut out, &mut counters);
    if piped {
        assert!(conn.start_piping());
    }
    conn
}

/// `count` masked binary frames of `size` bytes each.
fn stream(size: usize, count: usize) -> Vec<u8> {
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut v = Vec::with_capacity(count * (size + 14));
    for i in 0..count {
        v.push(0x82);
        match size {
            n if n < 126 => v.push(0x80 | n as u8),
            n if n <= 0xffff => {
                v.push(0x80 | 126);
                v.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                v.push(0x80 | 127);
                v.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        v.extend_from_slice(&key);
        v.extend((0..size).map(|j| ((i + j) as u8) ^ key[j % 4]));
    }
    v
}

fn bench_pipe(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("pipe");
    for (size, count) in [(64usize, 4096usize), (1024, 1024), (64 << 10, 32)] {
        let input = stream(size, count);
        println!("pipe {size} B: {count} frames per iteration");
        group.throughput(Throughput::Bytes((size * count) as u64));
        group.bench_with_input(BenchmarkId::new("cut_through", size), &input, |b, input| {
            let mut conn = open_conn(true);
            let mut counters = Counters::default();
            let mut own = Vec::new();
            let mut sink = Vec::with_capacity(input.len());
            b.iter_batched_ref(
                || input.clone(),
                |buf| {
                    sink.clear();
                    let mut pos = 0;
                    while pos < buf.len() {
                        let (step, used) =
                            conn.read(Tick(0), &limits, &mut buf[pos..], &mut own, &mut counters);
                        if let Step::Forward {
                            header,
                            header_len,
                            payload,
                        } = step
                        {
                            sink.extend_from_slice(&header[..header_len as usize]);
                            sink.extend_from_slice(&buf[pos..][payload]);
                        } else if used == 0 {
                            break;
                        }
                        pos += used;
                    }
                    std::hint::black_box(sink.len())
                },
                BatchSize::LargeInput,
            );
        });
        group.bench_with_input(BenchmarkId::new("reassemble", size), &input, |b, input| {
            let mut conn = open_conn(false);
            let mut counters = Counters::default();
            let mut own = Vec::new();
            let mut messages = Vec::with_capacity(count);
            let mut sink = Vec::with_capacity(input.len() + 16 * count);
            b.iter_batched_ref(
                || input.clone(),
                |buf| {
                    sink.clear();
                    let mut pos = 0;
                    while pos < buf.len() {
                        let (step, used) =
                            conn.read(Tick(0), &limits, &mut buf[pos..], &mut own, &mut counters);
                        if let Step::Message(msg) = step {
                            messages.push((msg.kind(), msg.as_bytes().to_vec()));
                        } else if used == 0 {
                            break;
                        }
                        pos += used;
                    }
                    assert_eq!(pos, buf.len());
                    for (_, payload) in messages.drain(..) {
                        encode_frame(true, OpCode::Binary, &payload, &mut sink);
                    }
                    std::hint::black_box(sink.len())
                },
                BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, bench_pipe);
criterion_main!(benches);
