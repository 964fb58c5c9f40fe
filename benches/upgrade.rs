//! Cost of the WebSocket handshake path (parse + validate + write 101) for
//! real browser requests, and of parsing a small POST head.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sigyard::proto::http::{
    parse_request, validate_upgrade, write_switching_protocols, HttpLimits,
};

// The same bytes as the fuzz seeds corpus/http_upgrade/{chrome_upgrade,
// firefox_upgrade,post_json}, inlined so the bench does not depend on where
// the corpus lives.
const CHROME: &[u8] = b"GET /ws?room=lobby HTTP/1.1\r\n\
Host: signal.example.com\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: https://app.example.com\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Cookie: sid=3f9a1c2e; theme=dark\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
\r\n\
";

const FIREFOX: &[u8] = b"GET /ws HTTP/1.1\r\n\
Host: signal.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0\r\n\
Accept: */*\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Sec-WebSocket-Version: 13\r\n\
Origin: https://app.example.com\r\n\
Sec-WebSocket-Protocol: sigyard.v1\r\n\
Sec-WebSocket-Extensions: permessage-deflate\r\n\
Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\
DNT: 1\r\n\
Connection: keep-alive, Upgrade\r\n\
Sec-Fetch-Dest: empty\r\n\
Sec-Fetch-Mode: websocket\r\n\
Sec-Fetch-Site: same-site\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
Upgrade: websocket\r\n\
\r\n\
";

const POST_JSON: &[u8] = b"POST /api/rooms?debug=1 HTTP/1.1\r\n\
Host: signal.example.com\r\n\
User-Agent: curl/8.5.0\r\n\
Accept: */*\r\n\
Content-Type: application/json\r\n\
Content-Length: 31\r\n\
\r\n\
{\"room\":\"lobby\",\"name\":\"alice\"}";

fn handshake(req: &[u8], limits: &HttpLimits, out: &mut Vec<u8>) -> usize {
    out.clear();
    let (head, consumed) = parse_request(req, limits)
        .expect("valid request")
        .expect("complete head");
    let accept = validate_upgrade(&head).expect("valid upgrade");
    write_switching_protocols(&accept, out);
    consumed
}

fn bench(c: &mut Criterion) {
    let limits = HttpLimits::default();
    let mut out = Vec::with_capacity(256);
    let mut group = c.benchmark_group("http");
    for (name, req) in [("chrome_upgrade", CHROME), ("firefox_upgrade", FIREFOX)] {
        group.throughput(Throughput::Bytes(req.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| handshake(black_box(req), &limits, &mut out))
        });
    }
    group.throughput(Throughput::Bytes(POST_JSON.len() as u64));
    group.bench_function("post_head_parse", |b| {
        b.iter(|| {
            parse_request(black_box(POST_JSON), &limits)
                .expect("valid request")
                .expect("complete head")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
