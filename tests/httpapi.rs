//! The Lambda-style HTTP API over real sockets: every method and error, keep-alive and
//! pipelining, malformed and oversized bodies, CORS, expiry driven by an injected clock, and
//! durability across `kill -9` (the binary, with a state directory).

mod common;
use common::{raw_exchange, start, stop};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const NOT_RPC: &str = "Not a valid rpc. HTTP post body must be a json object with method key";

/// One parsed response.
#[derive(Debug)]
struct Resp {
    status: u16,
    head: String,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Read one response (head and Content-Length body) from `s`.
fn read_resp(s: &mut TcpStream) -> Resp {
    let text = common::read_response(s);
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    Resp {
        status: head[9..12].parse().unwrap(),
        head: head.to_string(),
        body: body.to_string(),
    }
}

fn post_req(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A keep-alive client.
struct Client(TcpStream);

impl Client {
    fn new(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Client(s)
    }
    fn call(&mut self, body: &str) -> Resp {
        self.0.write_all(post_req("/", body).as_bytes()).unwrap();
        read_resp(&mut self.0)
    }
    fn ok(&mut self, body: &str) -> String {
        let r = self.call(body);
        assert_eq!(r.status, 200, "{body}: {r:?}");
        r.body
    }
    fn err(&mut self, body: &str) -> String {
        let r = self.call(body);
        assert_eq!(r.status, 400, "{body}: {r:?}");
        assert_eq!(r.header("Content-Type"), Some("text/plain"));
        r.body
    }
    fn channel(&mut self) -> String {
        let r = self.call(r#"{"method":"create_data_channel"}"#);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        let id = r.body.strip_prefix(r#"{"channel_id": ""#).unwrap();
        let id = id.strip_suffix(r#""}"#).unwrap().to_string();
        assert_eq!(id.len(), 36, "{id}");
        id
    }
}

#[test]
fn every_method_and_error() {
    let h = start(|b| b);
    let mut c = Client::new(h.plain_addr().unwrap());
    let id = c.channel();
    let other = c.channel();
    assert_ne!(id, other);
    let m =
        |method: &str, rest: &str| format!(r#"{{"method":"{method}","channel_id":"{id}"{rest}}}"#);

    assert_eq!(c.err(&m("get_offer", "")), "offer not found");
    assert_eq!(c.err(&m("get_answer", "")), "answer not found");
    let r = c.call(&m(
        "create_offer",
        r#","offer":"{\"type\":\"offer\",\"sdp\":\"v=0\"}""#,
    ));
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    assert_eq!(r.header("Content-Length"), Some("0"));
    assert_eq!(
        c.ok(&m("get_offer", "")),
        r#"{"offer": "{\"type\":\"offer\",\"sdp\":\"v=0\"}"}"#
    );
    assert_eq!(c.ok(&m("get_candidates", "")), r#"{"items": []}"#);
    for cand in [r#""a""#, r#"{"candidate":"c","sdpMLineIndex":0}"#, r#""a""#] {
        assert_eq!(
            c.ok(&m("create_candidate", &format!(r#","candidate":{cand}"#))),
            ""
        );
    }
    assert_eq!(
        c.ok(&m("get_candidates", "")),
        r#"{"items": ["a", {"candidate": "c", "sdpMLineIndex": 0}]}"#
    );
    assert_eq!(c.ok(&m("create_answer", r#","answer":"ans""#)), "");
    assert_eq!(
        c.err(&m("create_answer", r#","answer":"again""#)),
        "answer already exist"
    );
    assert_eq!(c.ok(&m("get_answer", "")), r#"{"answer": "ans"}"#);
    assert_eq!(
        c.ok(r#"{"method":"echo","b":[1,2],"a":null}"#),
        r#"{"method": "echo", "b": [1, 2], "a": null}"#
    );

    let unknown = r#""channel_id":"00000000-0000-4000-8000-000000000000""#;
    let errors = [
        (
            r#"{"method":"create_offer"}"#.to_string(),
            "channel_id is required",
        ),
        (m("create_offer", ""), "offer is required"),
        (
            format!(r#"{{"method":"create_offer",{unknown},"offer":1}}"#),
            "channel_id not found",
        ),
        (
            r#"{"method":"get_offer"}"#.to_string(),
            "channel_id is required",
        ),
        (
            format!(r#"{{"method":"get_offer",{unknown}}}"#),
            "channel_id not found",
        ),
        (
            r#"{"method":"create_candidate"}"#.to_string(),
            "channel_id is required",
        ),
        (m("create_candidate", ""), "candidate is required"),
        (
            format!(r#"{{"method":"create_candidate",{unknown},"candidate":1}}"#),
            "channel_id not found",
        ),
        (
            r#"{"method":"create_answer"}"#.to_string(),
            "channel_id is required",
        ),
        (m("create_answer", ""), "answer is required"),
        (
            format!(r#"{{"method":"create_answer",{unknown},"answer":1}}"#),
            "channel_id not found",
        ),
        (
            r#"{"method":"get_candidates"}"#.to_string(),
            "channel_id is required",
        ),
        (
            format!(r#"{{"method":"get_candidates",{unknown}}}"#),
            "channel_id not found",
        ),
        (
            r#"{"method":"get_answer"}"#.to_string(),
            "channel_id is required",
        ),
        (
            r#"{"method":"get_answer","channel_id":42}"#.to_string(),
            "channel_id not found",
        ),
        (
            r#"{"method":"frobnicate"}"#.to_string(),
            "unknown method frobnicate",
        ),
        (r#"{"method":["x"]}"#.to_string(), r#"unknown method ["x"]"#),
        (r#"{"channel_id":"x"}"#.to_string(), NOT_RPC),
        ("[]".to_string(), NOT_RPC),
        ("not json".to_string(), NOT_RPC),
        ("".to_string(), NOT_RPC),
    ];
    for (req, want) in errors {
        assert_eq!(c.err(&req), want, "{req}");
    }
    stop(h);
}

#[test]
fn methods_cors_and_preflight() {
    let h = start(|b| b);
    let a = h.plain_addr().unwrap();
    let mut c = Client::new(a);
    c.0.write_all(b"OPTIONS / HTTP/1.1\r\nHost: t\r\nOrigin: http://app.test\r\nAccess-Control-Request-Method: POST\r\n\r\n")
        .unwrap();
    let r = read_resp(&mut c.0);
    assert_eq!(r.status, 204);
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
    assert!(r
        .header("Access-Control-Allow-Methods")
        .unwrap()
        .contains("POST"));
    assert!(r.header("Access-Control-Allow-Headers").is_some());
    for method in ["PUT", "DELETE", "PATCH"] {
        c.0.write_all(format!("{method} / HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        let r = read_resp(&mut c.0);
        assert_eq!(
            (r.status, r.body.as_str()),
            (400, "Only accept POST method"),
            "{method}"
        );
    }
    c.0.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let r = read_resp(&mut c.0);
    assert!(
        r.status == 200 && r.body.contains("<h1>sigyard"),
        "GET / is the status page"
    );
    // POST elsewhere is not the API with the default --api-path.
    assert!(raw_exchange(a, post_req("/elsewhere", "{}").as_bytes()).starts_with("HTTP/1.1 404"));
    stop(h);

    // A list of origins: a listed Origin is echoed, others get none; `*` mounts everywhere free.
    let h = start(|b| {
        b.api(|a| {
            a.cors_origin = "http://a.test, http://b.test".into();
            a.path = "*".into();
        })
    });
    let mut c = Client::new(h.plain_addr().unwrap());
    for (origin, want) in [
        ("http://b.test", Some("http://b.test")),
        ("http://evil.test", None),
    ] {
        let body = r#"{"method":"echo"}"#;
        let req = format!(
            "POST /any/path HTTP/1.1\r\nHost: t\r\nOrigin: {origin}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        c.0.write_all(req.as_bytes()).unwrap();
        let r = read_resp(&mut c.0);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Access-Control-Allow-Origin"), want, "{origin}");
        assert_eq!(r.header("Vary"), Some("Origin"));
    }
    c.0.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_resp(&mut c.0).body,
        "ok\n",
        "claimed paths stay theirs"
    );
    c.0.write_all(b"GET /free HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_resp(&mut c.0).status, 400);
    stop(h);

    // Disabled: POST / is only the status page's, which answers 405.
    let h = start(|b| b.api(|a| a.enabled = false));
    let r = raw_exchange(
        h.plain_addr().unwrap(),
        post_req("/", r#"{"method":"echo"}"#).as_bytes(),
    );
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
    stop(h);
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let h = start(|b| b);
    let mut c = Client::new(h.plain_addr().unwrap());
    let id = c.channel();
    for i in 0..500 {
        let req = format!(
            r#"{{"method":"create_candidate","channel_id":"{id}","candidate":"c{}"}}"#,
            i % 200
        );
        assert_eq!(c.ok(&req), "");
    }
    let items = c.ok(&format!(
        r#"{{"method":"get_candidates","channel_id":"{id}"}}"#
    ));
    assert_eq!(items.matches("\"c").count(), 200, "duplicates skipped");
    stop(h);
}

#[test]
fn pipelined_requests_in_one_write_are_answered_in_order() {
    let h = start(|b| b);
    let mut c = Client::new(h.plain_addr().unwrap());
    let id = c.channel();
    let mut all = String::new();
    for i in 0..100 {
        all += &post_req("/", &format!(r#"{{"method":"echo","i":{i}}}"#));
        if i == 50 {
            // A chunked one in the middle.
            all += &format!(
                "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n{{\"meth\r\n\
                 {:x}\r\nod\":\"get_offer\",\"channel_id\":\"{id}\"}}\r\n0\r\n\r\n",
                format!("od\":\"get_offer\",\"channel_id\":\"{id}\"}}").len()
            );
        }
    }
    c.0.write_all(all.as_bytes()).unwrap();
    for i in 0..100 {
        let r = read_resp(&mut c.0);
        assert_eq!(r.body, format!(r#"{{"method": "echo", "i": {i}}}"#));
        if i == 50 {
            let r = read_resp(&mut c.0);
            assert_eq!((r.status, r.body.as_str()), (400, "offer not found"));
        }
    }
    stop(h);
}

#[test]
fn malformed_and_oversized_bodies() {
    let h = start(|b| b.limits(|l| l.http_body_timeout = Duration::from_millis(300)));
    let a = h.plain_addr().unwrap();
    // Not JSON, not an object: 400 with the rpc message, and the connection stays usable.
    let mut c = Client::new(a);
    assert_eq!(c.err("{\"method\": "), NOT_RPC);
    assert_eq!(c.err("\"method\""), NOT_RPC);
    assert_eq!(c.err("[{\"method\":\"echo\"}]"), NOT_RPC);
    assert_eq!(c.ok(r#"{"method":"echo"}"#), r#"{"method": "echo"}"#);

    // Over the 64 KiB default: 413 from the Content-Length alone, then close.
    let r = raw_exchange(
        a,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 65537\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    // Exactly 64 KiB is read (and is valid JSON).
    let pad = "x".repeat(65536 - r#"{"method":"echo","p":""}"#.len());
    let mut c = Client::new(a);
    let r = c.call(&format!(r#"{{"method":"echo","p":"{pad}"}}"#));
    assert_eq!(r.status, 200);
    // Chunked past the limit: 413 when the running total passes it.
    let mut s = TcpStream::connect(a).unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let chunk = format!("8000\r\n{}\r\n", "y".repeat(0x8000));
    s.write_all(chunk.as_bytes()).unwrap();
    s.write_all(chunk.as_bytes()).unwrap();
    s.write_all(b"1\r\n").unwrap();
    let mut out = String::new();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");

    // Bad chunked framing: 400.
    let r = raw_exchange(
        a,
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":1}\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    // Truncated: fewer bytes than Content-Length, then silence: 408 after the body timeout.
    let r = raw_exchange(
        a,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 40\r\n\r\n{\"method\":\"echo\"",
    );
    assert!(r.starts_with("HTTP/1.1 408"), "{r}");
    // Expect: 100-continue gets the interim response before the body is sent.
    let mut s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let body = r#"{"method":"echo"}"#;
    s.write_all(
        format!(
            "POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let mut interim = [0u8; 25];
    s.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(body.as_bytes()).unwrap();
    assert_eq!(read_resp(&mut s).body, r#"{"method": "echo"}"#);
    stop(h);
}

#[test]
fn channels_expire_by_the_injected_clock() {
    let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
    let c2 = clock.clone();
    let h = start(move |b| b.wall_clock(move || c2.load(Ordering::SeqCst)));
    let mut c = Client::new(h.plain_addr().unwrap());
    let id = c.channel();
    let get = format!(r#"{{"method":"get_candidates","channel_id":"{id}"}}"#);
    clock.fetch_add(299_999, Ordering::SeqCst);
    assert_eq!(c.ok(&get), r#"{"items": []}"#);
    clock.fetch_add(1, Ordering::SeqCst); // 300 s after creation
    assert_eq!(c.err(&get), "channel_id not found");
    let write = format!(r#"{{"method":"create_offer","channel_id":"{id}","offer":"o"}}"#);
    assert_eq!(c.err(&write), "channel_id not found");
    // /metrics counts the calls by outcome.
    let a = h.plain_addr().unwrap();
    assert_eq!(
        common::metric(a, "sigyard_api_requests_total{outcome=\"ok\"}"),
        2.0
    );
    assert_eq!(
        common::metric(a, "sigyard_api_requests_total{outcome=\"error\"}"),
        2.0
    );
    assert_eq!(
        common::metric(a, "sigyard_api_state_write_errors_total"),
        0.0
    );
    stop(h);
}

// ── durability: the binary, killed ─────────────────────────────────────────────────────────

const BIN: &str = env!("CARGO_BIN_EXE_sigyard");

/// Start the binary with a state directory; returns it, its address and the log lines before
/// it listened.
#[allow(clippy::zombie_processes)] // returned to the caller, which kills and waits for it
fn spawn(dir: &std::path::Path) -> (Child, SocketAddr, Vec<String>) {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--threads", "2", "--state-dir"])
        .arg(dir)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    loop {
        let line = lines.next().expect("server logs its address").unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            let addr = rest.split(' ').next().unwrap().parse().unwrap();
            // Keep draining stderr so the child never blocks on it.
            std::thread::spawn(move || for _ in lines {});
            return (child, addr, seen);
        }
        seen.push(line);
    }
}

fn kill9(mut child: Child) {
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sigyard-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Past the 100 ms sync interval, so everything answered is in the file.
const SYNCED: Duration = Duration::from_millis(600);

fn fill(c: &mut Client, id: &str, tag: &str) {
    let offer =
        format!(r#"{{"method":"create_offer","channel_id":"{id}","offer":{{"sdp":"{tag}"}}}}"#);
    assert_eq!(c.ok(&offer), "");
    for i in 0..3 {
        let cand = format!(
            r#"{{"method":"create_candidate","channel_id":"{id}","candidate":"{tag}-{i}"}}"#
        );
        assert_eq!(c.ok(&cand), "");
    }
}

fn check(c: &mut Client, id: &str, tag: &str) {
    let m = |method: &str| format!(r#"{{"method":"{method}","channel_id":"{id}"}}"#);
    assert_eq!(
        c.ok(&m("get_offer")),
        format!(r#"{{"offer": {{"sdp": "{tag}"}}}}"#)
    );
    assert_eq!(
        c.ok(&m("get_candidates")),
        format!(r#"{{"items": ["{tag}-0", "{tag}-1", "{tag}-2"]}}"#)
    );
}

#[test]
fn channels_survive_kill_9() {
    let dir = temp_dir("restart");
    let (child, addr, _) = spawn(&dir);
    let mut c = Client::new(addr);
    let ids: Vec<String> = (0..20).map(|_| c.channel()).collect();
    for (i, id) in ids.iter().enumerate() {
        fill(&mut c, id, &format!("t{i}"));
    }
    let answered = format!(
        r#"{{"method":"create_answer","channel_id":"{}","answer":"yes"}}"#,
        ids[0]
    );
    assert_eq!(c.ok(&answered), "");
    std::thread::sleep(SYNCED);
    kill9(child);

    let (child, addr, log) = spawn(&dir);
    assert!(
        log.iter()
            .any(|l| l.contains("replayed") && l.contains("20 live channels")),
        "{log:?}"
    );
    let mut c = Client::new(addr);
    for (i, id) in ids.iter().enumerate() {
        check(&mut c, id, &format!("t{i}"));
    }
    assert_eq!(c.err(&answered), "answer already exist");
    // And once more, through the compacted file.
    kill9(child);
    let (child, addr, _) = spawn(&dir);
    let mut c = Client::new(addr);
    check(&mut c, &ids[19], "t19");
    kill9(child);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_corrupt_or_torn_log_serves_only_intact_records() {
    for damage in ["flip", "truncate"] {
        let dir = temp_dir(damage);
        let (child, addr, _) = spawn(&dir);
        let mut c = Client::new(addr);
        let first = c.channel();
        fill(&mut c, &first, "first");
        std::thread::sleep(SYNCED);
        let intact_len = std::fs::metadata(dir.join("api.log")).unwrap().len() as usize;
        let second = c.channel();
        fill(&mut c, &second, "second");
        std::thread::sleep(SYNCED);
        kill9(child);

        let path = dir.join("api.log");
        let mut bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > intact_len + 40);
        match damage {
            // Inside the second channel's first record (its id).
            "flip" => bytes[intact_len + 12] ^= 0x40,
            // Mid-record: the second channel's create record cut after 20 bytes.
            _ => bytes.truncate(intact_len + 20),
        }
        std::fs::write(&path, &bytes).unwrap();

        let (child, addr, log) = spawn(&dir);
        let warned = log
            .iter()
            .any(|l| l.contains("WARN") && l.contains("replay stopped"));
        assert!(warned, "{damage}: {log:?}");
        let mut c = Client::new(addr);
        check(&mut c, &first, "first");
        let get = format!(r#"{{"method":"get_offer","channel_id":"{second}"}}"#);
        assert_eq!(c.err(&get), "channel_id not found", "{damage}");
        if damage == "flip" {
            let kept = std::fs::read_dir(&dir).unwrap().any(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("api.log.corrupt-")
            });
            assert!(kept, "the damaged file is kept aside");
        }
        // The rewritten log is clean: a further restart warns no more.
        kill9(child);
        let (child, _, log) = spawn(&dir);
        assert!(!log.iter().any(|l| l.contains("WARN")), "{damage}: {log:?}");
        kill9(child);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
