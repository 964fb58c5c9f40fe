//! TLS termination: wss:// with a real rustls client trusting the development certificate,
//! TLS 1.2 and 1.3, ALPN, and a certificate reload that keeps existing connections.

mod common;
use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;
use tungstenite::Message;

fn client_config(version: &'static rustls::SupportedProtocolVersion) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(CERT).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

type Wss = tungstenite::WebSocket<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>;

fn wss(
    addr: std::net::SocketAddr,
    version: &'static rustls::SupportedProtocolVersion,
) -> (Wss, Option<Vec<u8>>) {
    wss_at(addr, version, "/echo")
}

fn wss_at(
    addr: std::net::SocketAddr,
    version: &'static rustls::SupportedProtocolVersion,
    path: &str,
) -> (Wss, Option<Vec<u8>>) {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let conn = rustls::ClientConnection::new(
        client_config(version),
        ServerName::try_from("sigyard.test").unwrap(),
    )
    .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // Finish the handshake before the upgrade so the ALPN result is known.
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    let alpn = tls.conn.alpn_protocol().map(|p| p.to_vec());
    let (ws, resp) =
        tungstenite::client::client(format!("wss://sigyard.test:{}{path}", addr.port()), tls)
            .unwrap();
    assert_eq!(resp.status(), 101);
    (ws, alpn)
}

fn tls_server() -> sigyard::Handle {
    start(|b| b.listen_tls("127.0.0.1:0".parse().unwrap()).tls(CERT, KEY))
}

#[test]
fn wss_echo_over_tls13_and_tls12_with_alpn() {
    let h = tls_server();
    let a = h.tls_addr().unwrap();
    for v in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let (mut c, alpn) = wss(a, v);
        assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
        for size in [0usize, 5, 125, 126, 20_000, 100_000] {
            let m = Message::binary(vec![7u8; size]);
            c.send(m.clone()).unwrap();
            assert_eq!(c.read().unwrap(), m, "size {size}");
        }
    }
    stop(h);
}

/// A pipe whose plain end streams (64 KiB reads) into a TLS end, and back: 16 MiB each way,
/// byte for byte, through the TLS end's records and send queue.
#[test]
fn bulk_data_through_a_pipe_between_a_plain_and_a_tls_end() {
    let h = start(|b| b.listen_tls("127.0.0.1:0".parse().unwrap()).tls(CERT, KEY));
    let mut plain = ws(h.plain_addr().unwrap(), "/connection/p/t/k");
    let (mut tls, _) = wss_at(
        h.tls_addr().unwrap(),
        &rustls::version::TLS13,
        "/connection/t/p/k",
    );
    plain.send(Message::text("sync")).unwrap();
    assert_eq!(tls.read().unwrap(), Message::text("sync"));
    let (plain, tls) = stream_through(plain, tls, 1, "plain to TLS");
    stream_through(tls, plain, 2, "TLS to plain");
    stop(h);
}

/// 256 random 64 KiB messages (from `seed`) sent by `from` on a thread of its own and checked
/// byte for byte as `to` reads them; both ends are handed back.
fn stream_through<A, B>(
    mut from: tungstenite::WebSocket<A>,
    mut to: tungstenite::WebSocket<B>,
    seed: u64,
    what: &str,
) -> (tungstenite::WebSocket<A>, tungstenite::WebSocket<B>)
where
    A: std::io::Read + std::io::Write + Send + 'static,
    B: std::io::Read + std::io::Write,
{
    use rand::{RngCore, SeedableRng};
    let messages = move || {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..256).map(move |_| {
            let mut v = vec![0u8; 64 << 10];
            rng.fill_bytes(&mut v);
            v
        })
    };
    let writer = std::thread::spawn(move || {
        for m in messages() {
            from.send(Message::binary(m)).unwrap();
        }
        from
    });
    for (i, want) in messages().enumerate() {
        assert!(
            to.read().unwrap().into_data() == want,
            "{what}: message {i}"
        );
    }
    (writer.join().unwrap(), to)
}

#[test]
fn plain_http_to_the_tls_port_fails_cleanly() {
    let h = tls_server();
    let a = h.tls_addr().unwrap();
    let r = raw_exchange(a, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(!r.contains("200 OK"), "{r}");
    // The server is fine afterwards.
    let (mut c, _) = wss(a, &rustls::version::TLS13);
    c.send(Message::text("ok")).unwrap();
    assert_eq!(c.read().unwrap(), Message::text("ok"));
    assert!(metric(h.plain_addr().unwrap(), "sigyard_tls_errors_total") >= 1.0);
    stop(h);
}

#[test]
fn reload_keeps_existing_connections() {
    let h = tls_server();
    let a = h.tls_addr().unwrap();
    let (mut before, _) = wss(a, &rustls::version::TLS13);
    h.reload_tls().unwrap();
    let (mut after, _) = wss(a, &rustls::version::TLS13);
    for c in [&mut before, &mut after] {
        c.send(Message::text("still")).unwrap();
        assert_eq!(c.read().unwrap(), Message::text("still"));
    }
    stop(h);
}
