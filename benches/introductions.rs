//! The cevitxe / @localfirst/relay introductions table (`proto::dialect::cevitxe`) fed relay 4.x
//! binary (MessagePack) `Join` messages, in memory: each message is decoded, the sender's
//! document ids are updated, and every Introduction it produces is encoded (MessagePack, since
//! every peer here speaks relay 4.x). Throughput is in messages.
//!
//! * `decode_join`: the MessagePack decoder alone (`proto::dialect::msgpack::decode`) on one Join.
//! * `join_all`: a fresh table with `PEERS` open sockets; every peer sends one Join of
//!   `DOCS_PER_PEER` ids drawn from a pool of `POOL` ids, so later peers overlap with more and
//!   more earlier ones (how many Introductions that produces is printed once at start). Opening
//!   the sockets and dropping the table are not timed.
//! * `rejoin`: all peers joined; one peer sends its Join again and is re-introduced to everyone
//!   it shares a document with (two Introductions per such peer).
//! * `join_leave_alone`: a peer holding nothing else sends a Join then a Leave of ids nobody
//!   else holds: decode and bookkeeping, no Introduction.
//!
//! Payloads are built the way relay 4.x clients (msgpackr `pack`) write them: a map16 header,
//! then `type` and `documentIds`; the ids are 36-byte UUID-like strings (str8).
//!
//! Run: `cargo bench --bench introductions -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sigyard::proto::dialect::cevitxe::Introductions;
use sigyard::proto::dialect::msgpack;
use sigyard::proto::dialect::{Handle, Kind, Outgoing};

const PEERS: u32 = 100;
const DOCS_PER_PEER: u32 = 4;
const POOL: u32 = 40;

fn conn(n: u32) -> Handle {
    Handle::of(n, 0)
}

/// A MessagePack string header and bytes (fixstr or str8: everything here is < 256 bytes).
fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u8::try_from(s.len()).expect("short strings only");
    if len < 32 {
        out.push(0xa0 | len);
    } else {
        out.extend_from_slice(&[0xd9, len]);
    }
    out.extend_from_slice(s.as_bytes());
}

/// `{type: ty, documentIds: ids}` as msgpackr packs it (map16 header, fixarray of ids).
fn relay4_message(ty: &str, ids: &[String]) -> Vec<u8> {
    assert!(ids.len() < 16);
    let mut out = vec![0xde, 0x00, 0x02];
    put_str(&mut out, "type");
    put_str(&mut out, ty);
    put_str(&mut out, "documentIds");
    out.push(0x90 | ids.len() as u8);
    for id in ids {
        put_str(&mut out, id);
    }
    out
}

fn doc_id(n: u32) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        n.wrapping_mul(2_654_435_761),
        n & 0xffff,
        n & 0xfff,
        (n * 7) & 0xfff,
        u64::from(n) * 1_000_003
    )
}

/// Peer `i`'s Join: `DOCS_PER_PEER` consecutive ids of the pool, starting at a stride of 3.
fn join_of(i: u32) -> Vec<u8> {
    let ids: Vec<String> = (0..DOCS_PER_PEER)
        .map(|j| doc_id((i * 3 + j) % POOL))
        .collect();
    relay4_message("Join", &ids)
}

/// A table with `PEERS` sockets open on `/introduction/peer-<i>`.
fn opened() -> Introductions {
    let mut t = Introductions::new();
    for i in 0..PEERS {
        t.open(&format!("peer-{i}"), conn(i));
    }
    t
}

/// Sends every peer's Join in order; returns the bytes of the Introductions produced.
fn join_everyone(t: &mut Introductions, joins: &[Vec<u8>], out: &mut Vec<Outgoing>) -> usize {
    let mut bytes = 0;
    for (i, p) in joins.iter().enumerate() {
        out.clear();
        t.message(conn(i as u32), Kind::Binary, p, out);
        bytes += out.iter().map(|o| o.payload.len()).sum::<usize>();
    }
    bytes
}

fn introductions(c: &mut Criterion) {
    let joins: Vec<Vec<u8>> = (0..PEERS).map(join_of).collect();
    let mut out = Vec::new();

    let mut t = opened();
    let mut sent = 0;
    for (i, p) in joins.iter().enumerate() {
        out.clear();
        t.message(conn(i as u32), Kind::Binary, p, &mut out);
        sent += out.len();
    }
    out.clear();
    t.message(conn(0), Kind::Binary, &joins[0], &mut out);
    let rejoin_sent = out.len();
    println!(
        "join_all: {PEERS} Joins of {DOCS_PER_PEER} ids (pool {POOL}) produce {sent} \
         Introductions; rejoin: {rejoin_sent}; Join payload {} B",
        joins[0].len()
    );

    let mut g = c.benchmark_group("introductions");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode_join", |b| {
        b.iter(|| {
            matches!(
                msgpack::decode(black_box(&joins[0])),
                Ok(msgpack::Value::Map(_))
            )
        });
    });

    g.throughput(Throughput::Elements(u64::from(PEERS)));
    g.bench_function("join_all", |b| {
        b.iter_batched(
            opened,
            |mut t| {
                let n = join_everyone(&mut t, &joins, &mut out);
                (t, black_box(n))
            },
            BatchSize::SmallInput,
        );
    });

    g.throughput(Throughput::Elements(1));
    g.bench_function("rejoin", |b| {
        b.iter(|| {
            out.clear();
            t.message(conn(0), Kind::Binary, black_box(&joins[0]), &mut out);
            black_box(out.len())
        });
    });

    let alone: Vec<String> = (0..DOCS_PER_PEER).map(|j| doc_id(10_000 + j)).collect();
    let join_alone = relay4_message("Join", &alone);
    let leave_alone = relay4_message("Leave", &alone);
    t.open("loner", conn(PEERS));
    g.throughput(Throughput::Elements(2));
    g.bench_function("join_leave_alone", |b| {
        b.iter(|| {
            out.clear();
            t.message(conn(PEERS), Kind::Binary, black_box(&join_alone), &mut out);
            t.message(conn(PEERS), Kind::Binary, black_box(&leave_alone), &mut out);
            black_box(out.len())
        });
    });
    g.finish();
}

criterion_group!(benches, introductions);
criterion_main!(benches);
