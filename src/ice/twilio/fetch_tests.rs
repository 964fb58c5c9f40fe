//! [`Provider::fetch`] against a local HTTPS stub (rustls, the development certificate): the
//! request it sends, the body framings it reads, the bound on the body, HTTP errors, the trust
//! store and the deadline. `fetch_timing` (ignored) times one fetch.

use super::*;
use base64::Engine;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;

const CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/dev-cert.pem");
const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/dev-key.pem");
const TOKEN: &str = r#"{"account_sid":"AC1","ttl":"600","username":"u","password":"p",
    "ice_servers":[{"urls":["turn:t:3478","turns:t:443"],"username":"u","credential":"p"}]}"#;

/// What the stub sends once it has read a request.
#[derive(Clone)]
enum Answer {
    /// These bytes, then a TLS close_notify.
    Bytes(Vec<u8>),
    /// This head, then one body byte every `interval`, without end.
    Trickle(String, Duration),
    /// Nothing for this long.
    Stall(Duration),
}

/// An HTTPS server on a loopback port, one connection at a time; each request it reads (head
/// and body, as text) goes to the channel.
struct Stub {
    addr: SocketAddr,
    requests: mpsc::Receiver<String>,
}

impl Stub {
    fn start(answer: Answer) -> Stub {
        let cfg = crate::net::tls::load_server_config(CERT.as_ref(), KEY.as_ref()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, requests) = mpsc::channel();
        std::thread::spawn(move || {
            for sock in listener.incoming().map_while(Result::ok) {
                let conn = rustls::ServerConnection::new(cfg.clone()).unwrap();
                serve(rustls::StreamOwned::new(conn, sock), &answer, &tx);
            }
        });
        Stub { addr, requests }
    }

    fn provider(&self, ca_file: &str, timeout: Duration) -> Provider {
        let cfg = IceConfig {
            twilio_account_sid: Some("AC1".into()),
            twilio_auth_token: Some(Secret::new("secret")),
            twilio_base_url: format!("https://127.0.0.1:{}/p/", self.addr.port()),
            twilio_ca_file: ca_file.into(),
            twilio_timeout: timeout,
            turn_ttl: Duration::from_secs(600),
            ..IceConfig::default()
        };
        Provider::new(&cfg).unwrap().unwrap()
    }

    /// One fetch with a 5 s timeout, trusting the development certificate.
    fn fetch(&self) -> Result<Token, String> {
        self.provider(CERT, Duration::from_secs(5)).fetch()
    }
}

fn serve(
    mut tls: rustls::StreamOwned<rustls::ServerConnection, TcpStream>,
    answer: &Answer,
    requests: &mpsc::Sender<String>,
) {
    let _ = tls.sock.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().unwrap())
            });
            if body.len() >= length.unwrap_or(0) {
                let _ = requests.send(text);
                break;
            }
        }
        match tls.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    match answer {
        Answer::Bytes(bytes) => {
            let _ = tls.write_all(bytes).and_then(|()| tls.flush());
            tls.conn.send_close_notify();
            let _ = tls.conn.complete_io(&mut tls.sock);
        }
        Answer::Trickle(head, interval) => {
            let mut sent = tls.write_all(head.as_bytes()).and_then(|()| tls.flush());
            while sent.is_ok() {
                std::thread::sleep(*interval);
                sent = tls.write_all(b" ").and_then(|()| tls.flush());
            }
        }
        Answer::Stall(d) => std::thread::sleep(*d),
    }
}

fn with_length(status: &str, body: &[u8]) -> Answer {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    Answer::Bytes([head.as_bytes(), body].concat())
}

fn chunked(body: &[u8]) -> Answer {
    let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for part in body.chunks(4000) {
        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    Answer::Bytes(out)
}

fn to_eof(body: &[u8]) -> Answer {
    Answer::Bytes([&b"HTTP/1.1 201 Created\r\n\r\n"[..], body].concat())
}

#[test]
fn the_request_and_each_body_framing() {
    for answer in [
        with_length("201 Created", TOKEN.as_bytes()),
        chunked(TOKEN.as_bytes()),
        to_eof(TOKEN.as_bytes()),
    ] {
        let stub = Stub::start(answer);
        let token = stub.fetch().unwrap();
        let urls: Vec<&str> = token.servers.iter().map(|s| s.url.as_str()).collect();
        assert_eq!(urls, ["turn:t:3478", "turns:t:443"]);
        assert_eq!(
            (token.ttl, token.account_sid.as_deref()),
            (600, Some("AC1"))
        );

        let request = stub.requests.recv().unwrap();
        let (head, body) = request.split_once("\r\n\r\n").unwrap();
        let mut lines = head.lines();
        assert_eq!(
            lines.next(),
            Some("POST /p/2010-04-01/Accounts/AC1/Tokens.json HTTP/1.1")
        );
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        };
        let basic = base64::engine::general_purpose::STANDARD.encode("AC1:secret");
        assert_eq!(header("authorization"), Some(format!("Basic {basic}")));
        assert_eq!(
            header("host"),
            Some(format!("127.0.0.1:{}", stub.addr.port()))
        );
        assert_eq!(
            header("content-type").as_deref(),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(header("accept").as_deref(), Some("application/json"));
        assert_eq!(body, "Ttl=600");
    }
}

#[test]
fn a_body_is_read_up_to_max_response_and_refused_beyond() {
    // A token padded to 200 KB is read whole, in every framing.
    let padded = format!("{TOKEN}{}", " ".repeat(200_000));
    for answer in [
        with_length("200 OK", padded.as_bytes()),
        chunked(padded.as_bytes()),
        to_eof(padded.as_bytes()),
    ] {
        assert_eq!(Stub::start(answer).fetch().unwrap().servers.len(), 2);
    }
    // One byte over MAX_RESPONSE: refused in every framing, and an announced length over it
    // is refused as such.
    let over = format!("{TOKEN}{}", " ".repeat(MAX_RESPONSE + 1 - TOKEN.len()));
    for answer in [
        with_length("200 OK", over.as_bytes()),
        chunked(over.as_bytes()),
        to_eof(over.as_bytes()),
        Answer::Bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n{".to_vec()),
    ] {
        let e = Stub::start(answer).fetch().unwrap_err();
        assert_eq!(e, format!("response larger than {MAX_RESPONSE} bytes"));
    }
    // A Content-Length shorter than what follows: only that much is read.
    let lying = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}",
        " ".repeat(2 * MAX_RESPONSE)
    );
    let e = Stub::start(Answer::Bytes(lying.into_bytes()))
        .fetch()
        .unwrap_err();
    assert!(e.contains("not JSON"), "{e}");
    // One longer than what follows: cut short, an error.
    let cut = format!("HTTP/1.1 200 OK\r\nContent-Length: 9999\r\n\r\n{TOKEN}");
    assert!(Stub::start(Answer::Bytes(cut.into_bytes()))
        .fetch()
        .is_err());
}

#[test]
fn http_errors_carry_the_status_and_message() {
    let cases = [
        (
            with_length(
                "401 Unauthorized",
                br#"{"code":20003,"message":"Authenticate","status":401}"#,
            ),
            "HTTP 401: Authenticate",
        ),
        (with_length("503 Busy", b" try later \n"), "HTTP 503: try later"),
        (
            Answer::Bytes(
                b"HTTP/1.1 302 Found\r\nLocation: https://127.0.0.1:9/\r\nContent-Length: 0\r\n\r\n"
                    .to_vec(),
            ),
            "HTTP 302: ",
        ),
    ];
    for (answer, want) in cases {
        assert_eq!(Stub::start(answer).fetch().unwrap_err(), want);
    }
}

#[test]
fn only_the_ca_file_is_trusted() {
    // The system's CA bundle does not hold the development certificate.
    let system = "/etc/ssl/certs/ca-certificates.crt";
    if !Path::new(system).exists() {
        eprintln!("skipped: no {system}");
        return;
    }
    let stub = Stub::start(with_length("201 Created", TOKEN.as_bytes()));
    let e = stub
        .provider(system, Duration::from_secs(5))
        .fetch()
        .unwrap_err();
    assert!(e.to_ascii_lowercase().contains("certificate"), "{e}");
    assert!(stub.requests.try_recv().is_err(), "a request was sent");
}

#[test]
fn one_deadline_bounds_the_exchange_after_the_connect() {
    let timeout = Duration::from_millis(600);
    // Silence after the request; then a body that keeps coming, byte by byte.
    let trickle = Answer::Trickle(
        "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".into(),
        Duration::from_millis(50),
    );
    for answer in [Answer::Stall(Duration::from_secs(5)), trickle] {
        let stub = Stub::start(answer);
        let provider = stub.provider(CERT, timeout);
        let started = Instant::now();
        let e = provider.fetch().unwrap_err();
        let took = started.elapsed();
        assert_eq!(e, "timed out after 0.6s");
        assert!(
            took >= Duration::from_millis(550) && took < Duration::from_millis(1500),
            "{took:?}"
        );
    }
}

/// `cargo test --release --lib ice::twilio::fetch_tests::fetch_timing -- --ignored --nocapture`
#[test]
#[ignore = "a measurement: prints how long one token fetch takes"]
fn fetch_timing() {
    let stub = Stub::start(with_length("201 Created", TOKEN.as_bytes()));
    let provider = stub.provider(CERT, Duration::from_secs(5));
    for _ in 0..20 {
        provider.fetch().unwrap();
    }
    let mut times: Vec<Duration> = (0..500)
        .map(|_| {
            let t = Instant::now();
            provider.fetch().unwrap();
            t.elapsed()
        })
        .collect();
    times.sort();
    let pick = |q: usize| times[(times.len() - 1) * q / 100];
    println!(
        "token fetch (connect, TLS 1.3 handshake, request, {} B answer), {} runs: \
         median {:?}, p90 {:?}, min {:?}",
        TOKEN.len(),
        times.len(),
        pick(50),
        pick(90),
        times[0]
    );
}
