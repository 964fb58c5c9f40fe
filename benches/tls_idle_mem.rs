//! Measures the heap memory one server-side TLS connection holds, fresh and idle.
//!
//! Owns: a counting `#[global_allocator]` (live bytes plus a live-allocation histogram by
//! request size) and a driver that handshakes N in-memory clients against N server
//! connections, exchanges one small message each way, drains everything and then reads
//! the allocator. Compares rustls' buffered `ServerConnection` driven the way sigyard's
//! `TlsConn` used to drive it (with rustls' default `ServerConfig` and with sigyard's
//! settings, both on ring's own provider), sigyard's `TlsConn` (on
//! `UnbufferedServerConnection`) with ring's own provider and with `load_server_config`'s
//! (record keys expanded on demand), and a minimal unbuffered driver whose buffers are
//! freed once empty (the lower bound).
//!
//! Deliberately doesn't: measure sockets or kernel buffers, CPU time, or the client side
//! (each client and its config is dropped before reading the counters). It is a
//! measurement tool, not server code, so it names rustls directly, and its `expect`s
//! and panics are assertions about its own fixed in-memory setup.
//!
//! Run: `cargo bench --bench tls_idle_mem -- [N]` (default N = 1000).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ServerConnection, ServerSessionMemoryCache, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError};
use rustls::{ClientConfig, ClientConnection, RootCertStore, SupportedProtocolVersion};
use sigyard::net::tls::{load_server_config, TlsConn, OUTGOING_BUFFER_LIMIT};

// ---------------------------------------------------------------- counting allocator

/// Allocations up to this size are histogrammed exactly; larger ones share the last slot.
const HIST_MAX: usize = 16 * 1024;

struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static HIST: [AtomicIsize; HIST_MAX + 1] = [const { AtomicIsize::new(0) }; HIST_MAX + 1];

fn note(size: usize, delta: isize) {
    LIVE_BYTES.fetch_add(delta * size as isize, Relaxed);
    HIST[size.min(HIST_MAX)].fetch_add(delta, Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged and only
// updates counters besides.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            note(layout.size(), 1);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            note(layout.size(), 1);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        note(layout.size(), -1);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            note(layout.size(), -1);
            note(new_size, 1);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE_BYTES.load(Relaxed)
}

fn snapshot(into: &mut [isize]) {
    for (slot, h) in into.iter_mut().zip(HIST.iter()) {
        *slot = h.load(Relaxed);
    }
}

// ---------------------------------------------------------------- in-memory transport

/// One direction of an in-memory socket; `WouldBlock` when empty.
#[derive(Default)]
struct Pipe(Vec<u8>);

impl Read for Pipe {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = out.len().min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0.drain(..n);
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(data);
        Ok(data.len())
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let before = self.0.len();
        for b in bufs {
            self.0.extend_from_slice(b);
        }
        Ok(self.0.len() - before)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The server half under test.
trait Server {
    fn pump(&mut self, c2s: &mut Pipe, s2c: &mut Pipe, plaintext: &mut Vec<u8>);
    fn send(&mut self, data: &[u8], s2c: &mut Pipe);
    fn handshaking(&self) -> bool;
    /// Heap bytes in the driver's own I/O buffers, if it reports them.
    fn adapter_bytes(&self) -> usize {
        0
    }
}

impl Server for TlsConn {
    fn pump(&mut self, c2s: &mut Pipe, s2c: &mut Pipe, plaintext: &mut Vec<u8>) {
        loop {
            match self.read_tls_from(c2s) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.is_would_block() => break,
                Err(e) => panic!("server: {e}"),
            }
            let mut buf = [0u8; 512];
            loop {
                let n = self.read_plaintext(&mut buf);
                if n == 0 {
                    break;
                }
                plaintext.extend_from_slice(&buf[..n]);
            }
        }
        while self.wants_write() {
            self.write_tls_to(s2c).expect("pipe write");
        }
    }
    fn send(&mut self, data: &[u8], s2c: &mut Pipe) {
        assert_eq!(self.write_plaintext(data), data.len());
        while self.wants_write() {
            self.write_tls_to(s2c).expect("pipe write");
        }
    }
    fn handshaking(&self) -> bool {
        self.is_handshaking()
    }
    fn adapter_bytes(&self) -> usize {
        self.buffered_bytes()
    }
}

/// The previous `TlsConn`: rustls' buffered `ServerConnection` with the outgoing limit set,
/// driven with `read_tls` + `process_new_packets`, kept here for the before/after rows.
struct Buffered(ServerConnection);

impl Buffered {
    fn new(cfg: Arc<rustls::ServerConfig>) -> Self {
        let mut conn = ServerConnection::new(cfg).expect("conn");
        conn.set_buffer_limit(Some(OUTGOING_BUFFER_LIMIT));
        Self(conn)
    }
}

impl Server for Buffered {
    fn pump(&mut self, c2s: &mut Pipe, s2c: &mut Pipe, plaintext: &mut Vec<u8>) {
        while !c2s.0.is_empty() {
            self.0.read_tls(c2s).expect("pipe read");
            self.0.process_new_packets().expect("server process");
            self.0
                .reader()
                .read_to_end(plaintext)
                .map(drop)
                .or_else(|e| match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(()),
                    _ => Err(e),
                })
                .expect("server plaintext");
        }
        while self.0.wants_write() {
            self.0.write_tls(s2c).expect("pipe write");
        }
    }
    fn send(&mut self, data: &[u8], s2c: &mut Pipe) {
        self.0.writer().write_all(data).expect("server write");
        while self.0.wants_write() {
            self.0.write_tls(s2c).expect("pipe write");
        }
    }
    fn handshaking(&self) -> bool {
        self.0.is_handshaking()
    }
}

/// Minimal unbuffered driver: buffers live only while they hold bytes (an adapter would
/// borrow a per-reactor-thread scratch buffer instead and keep just partial records).
struct Unbuffered {
    conn: UnbufferedServerConnection,
    incoming: Vec<u8>,
    outgoing: Vec<u8>,
    done: bool,
}

impl Unbuffered {
    fn process(&mut self, s2c: &mut Pipe, plaintext: &mut Vec<u8>, send: Option<&[u8]>) {
        loop {
            let status = self.conn.process_tls_records(&mut self.incoming);
            let discard = status.discard;
            let mut stop = false;
            match status.state.expect("unbuffered server state") {
                ConnectionState::EncodeTlsData(mut enc) => {
                    let at = self.outgoing.len();
                    self.outgoing.resize(at + 2048, 0);
                    let n = loop {
                        match enc.encode(&mut self.outgoing[at..]) {
                            Ok(n) => break n,
                            Err(EncodeError::InsufficientSize(s)) => {
                                self.outgoing.resize(at + s.required_size, 0)
                            }
                            Err(e) => panic!("encode: {e:?}"),
                        }
                    };
                    self.outgoing.truncate(at + n);
                }
                ConnectionState::TransmitTlsData(tx) => {
                    s2c.0.extend_from_slice(&self.outgoing);
                    self.outgoing = Vec::new();
                    tx.done();
                }
                ConnectionState::ReadTraffic(mut rd) => {
                    while let Some(rec) = rd.next_record() {
                        plaintext.extend_from_slice(rec.expect("record").payload);
                    }
                }
                ConnectionState::WriteTraffic(mut wr) => {
                    self.done = true;
                    if let Some(data) = send {
                        let mut out = vec![0u8; data.len() + 64];
                        let n = match wr.encrypt(data, &mut out) {
                            Ok(n) => n,
                            Err(EncryptError::InsufficientSize(s)) => {
                                out.resize(s.required_size, 0);
                                wr.encrypt(data, &mut out).expect("encrypt")
                            }
                            Err(e) => panic!("encrypt: {e:?}"),
                        };
                        s2c.0.extend_from_slice(&out[..n]);
                    }
                    stop = true;
                }
                _ => stop = true, // BlockedHandshake, PeerClosed, Closed
            }
            self.incoming.drain(..discard);
            if stop {
                break;
            }
        }
        if self.incoming.is_empty() {
            self.incoming = Vec::new();
        }
    }
}

impl Server for Unbuffered {
    fn pump(&mut self, c2s: &mut Pipe, s2c: &mut Pipe, plaintext: &mut Vec<u8>) {
        self.incoming.append(&mut c2s.0);
        self.process(s2c, plaintext, None);
    }
    fn send(&mut self, data: &[u8], s2c: &mut Pipe) {
        self.process(s2c, &mut Vec::new(), Some(data));
    }
    fn handshaking(&self) -> bool {
        !self.done
    }
}

// ---------------------------------------------------------------- measurement

fn client_config(version: &'static SupportedProtocolVersion) -> Arc<ClientConfig> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(dir.join("dev-cert.pem")).expect("dev cert") {
        roots.add(cert.expect("dev cert PEM")).expect("root");
    }
    let mut cfg =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[version])
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.resumption = Resumption::in_memory_sessions(8);
    Arc::new(cfg)
}

/// Handshakes and exchanges one message each way; returns the client (the memory rows drop it
/// at once).
fn connect<S: Server>(
    server: &mut S,
    version: &'static SupportedProtocolVersion,
) -> ClientConnection {
    let name = ServerName::try_from("sigyard.test").expect("name");
    let mut client = ClientConnection::new(client_config(version), name).expect("client");
    let (mut c2s, mut s2c) = (Pipe::default(), Pipe::default());
    let mut got = Vec::new();
    for _ in 0..10 {
        client.write_tls(&mut c2s).expect("client write");
        server.pump(&mut c2s, &mut s2c, &mut got);
        while !s2c.0.is_empty() {
            client.read_tls(&mut s2c).expect("client read");
            client.process_new_packets().expect("client process");
        }
        if !client.is_handshaking() && !server.handshaking() && !client.wants_write() {
            break;
        }
    }
    assert!(!server.handshaking(), "handshake incomplete");
    // One small exchange each way, then everything drained.
    client
        .writer()
        .write_all(b"{\"join\":\"room-1\"}")
        .expect("client write");
    client.write_tls(&mut c2s).expect("client write");
    server.pump(&mut c2s, &mut s2c, &mut got);
    assert_eq!(got, b"{\"join\":\"room-1\"}");
    server.send(b"{\"ok\":true}", &mut s2c);
    client.read_tls(&mut s2c).expect("client read");
    client.process_new_packets().expect("client process");
    let mut reply = [0u8; 64];
    let n = client
        .reader()
        .read(&mut reply)
        .expect("client reads reply");
    assert_eq!(&reply[..n], b"{\"ok\":true}");
    assert!(c2s.0.is_empty() && s2c.0.is_empty());
    client
}

/// Server CPU per message: `conns` TLS 1.3 connections on `cfg`, used in turn, each turn a
/// 64-byte message read (decrypted) and one written (encrypted) by the server; the time of
/// the server's part only, in ns per message, best of 5 runs of `msgs` messages.
fn cpu_per_message(cfg: &Arc<rustls::ServerConfig>, conns: usize, msgs: usize) -> f64 {
    let mut pairs: Vec<(ClientConnection, TlsConn)> = (0..conns)
        .map(|_| {
            let mut server = TlsConn::new(cfg.clone()).expect("conn");
            let client = connect(&mut server, &rustls::version::TLS13);
            (client, server)
        })
        .collect();
    let (mut c2s, mut s2c, mut got) = (Pipe::default(), Pipe::default(), Vec::new());
    let msg = [b'm'; 64];
    let mut best = f64::MAX;
    for _ in 0..5 {
        let mut server_time = std::time::Duration::ZERO;
        for i in 0..msgs {
            let (client, server) = &mut pairs[i % conns];
            client.writer().write_all(&msg).expect("client write");
            client.write_tls(&mut c2s).expect("client write");
            got.clear();
            let t = std::time::Instant::now();
            server.pump(&mut c2s, &mut s2c, &mut got);
            server.send(&msg, &mut s2c);
            server_time += t.elapsed();
            assert_eq!(got.len(), msg.len());
            client.read_tls(&mut s2c).expect("client read");
            client.process_new_packets().expect("client process");
            let mut reply = [0u8; 64];
            client
                .reader()
                .read_exact(&mut reply)
                .expect("client reads");
        }
        best = best.min(server_time.as_nanos() as f64 / msgs as f64);
    }
    best
}

struct Row {
    after_new: f64,
    idle: f64,
    residual: f64,
    new_hist: Vec<(usize, f64)>,
    idle_hist: Vec<(usize, f64)>,
}

fn measure<S: Server>(
    n: usize,
    version: &'static SupportedProtocolVersion,
    make: impl Fn() -> S,
    h0: &mut [isize],
    h1: &mut [isize],
) -> Row {
    // Warm-up: one full connection first, so lazily initialised statics are not counted.
    connect(&mut make(), version);
    let mut servers: Vec<S> = Vec::with_capacity(n);
    let base = live();
    snapshot(h0);
    for _ in 0..n {
        servers.push(make());
    }
    let after_new = live() - base;
    snapshot(h1);
    let new_hist = hist_diff(h1, h0, n);
    for s in servers.iter_mut() {
        connect(s, version);
        assert_eq!(
            s.adapter_bytes(),
            0,
            "idle connection holds adapter buffers"
        );
    }
    let idle = live() - base;
    snapshot(h1);
    let idle_hist = hist_diff(h1, h0, n);
    servers.clear(); // drops every connection, keeps the Vec's capacity (allocated before `base`)
    let residual = live() - base;
    Row {
        after_new: after_new as f64 / n as f64,
        idle: idle as f64 / n as f64,
        residual: residual as f64 / n as f64,
        new_hist,
        idle_hist,
    }
}

/// Live allocations per connection by size, `now - base`, largest size first.
fn hist_diff(now: &[isize], base: &[isize], n: usize) -> Vec<(usize, f64)> {
    let mut hist: Vec<(usize, f64)> = now
        .iter()
        .zip(base.iter())
        .enumerate()
        .map(|(size, (a, b))| (size, (*a - *b) as f64 / n as f64))
        .filter(|(_, per)| per.abs() >= 0.05)
        .collect();
    hist.sort_by_key(|&(size, _)| std::cmp::Reverse(size));
    hist
}

fn show(hist: &[(usize, f64)]) -> String {
    let parts: Vec<String> = hist
        .iter()
        .map(|(size, per)| {
            let size = if *size == HIST_MAX {
                format!(">={HIST_MAX}")
            } else {
                size.to_string()
            };
            format!("{size}B x{per:.2}")
        })
        .collect();
    parts.join(", ")
}

fn main() {
    // `cargo bench` adds its own flags (`--bench`); the first numeric argument is N.
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
    let sigyard_cfg = load_server_config(&dir.join("dev-cert.pem"), &dir.join("dev-key.pem"))
        .expect("dev cert/key");
    // The same configuration on ring's own provider: its record keys expanded per connection
    // (sigyard's before `net::tls::keys`).
    let ring_cfg = {
        let chain: Vec<_> = CertificateDer::pem_file_iter(dir.join("dev-cert.pem"))
            .expect("dev cert")
            .map(|c| c.expect("dev cert PEM"))
            .collect();
        let key = PrivateKeyDer::from_pem_file(dir.join("dev-key.pem")).expect("dev key");
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("cert");
        cfg.alpn_protocols = sigyard_cfg.alpn_protocols.clone();
        cfg.send_tls13_tickets = sigyard_cfg.send_tls13_tickets;
        cfg.session_storage = sigyard_cfg.session_storage.clone();
        cfg.max_early_data_size = sigyard_cfg.max_early_data_size;
        Arc::new(cfg)
    };
    let mut default_cfg = (*ring_cfg).clone();
    default_cfg.send_tls13_tickets = 2;
    default_cfg.session_storage = ServerSessionMemoryCache::new(256);
    let default_cfg = Arc::new(default_cfg);

    if std::env::args().any(|a| a == "cpu") {
        // `-- cpu`: server CPU per message, ring's own record keys against sigyard's, in
        // alternation (the machine is shared), with few connections (all keys stay
        // expanded) and with more than one thread's table holds (every record expands).
        for conns in [100, 2000] {
            let (mut ring, mut ours) = (Vec::new(), Vec::new());
            for _ in 0..3 {
                ring.push(cpu_per_message(&ring_cfg, conns, 20_000));
                ours.push(cpu_per_message(&sigyard_cfg, conns, 20_000));
            }
            println!(
                "{conns} connections, server ns per message (read 64 B + write 64 B), best of 5 \
                 per run: ring's record keys {ring:.0?}, keys expanded on demand {ours:.0?}"
            );
        }
        return;
    }
    let mut h0 = vec![0isize; HIST_MAX + 1];
    let mut h1 = vec![0isize; HIST_MAX + 1];
    println!(
        "N = {n}; inline sizes, not counted below: TlsConn {} B, \
         previous TlsConn (ServerConnection + bool) {} B, \
         UnbufferedServerConnection {} B",
        size_of::<TlsConn>(),
        size_of::<(ServerConnection, bool)>(),
        size_of::<UnbufferedServerConnection>()
    );
    println!("heap bytes per connection: after new | idle after handshake + exchange | left after drop (shared caches)");
    println!(
        "(sigyard's config expands record keys into a per-thread table of up to {} keys, \
         allocated at the warm-up connection: a fixed cost, not in these figures)",
        sigyard::net::tls::HOT_KEYS
    );
    for (vname, version) in [
        ("TLS1.3", &rustls::version::TLS13),
        ("TLS1.2", &rustls::version::TLS12),
    ] {
        let rows = [
            (
                "before: buffered adapter, rustls default config (2 tickets, 256-entry cache)",
                measure(
                    n,
                    version,
                    || Buffered::new(default_cfg.clone()),
                    &mut h0,
                    &mut h1,
                ),
            ),
            (
                "before: buffered adapter (previous TlsConn), sigyard config, ring's record keys",
                measure(
                    n,
                    version,
                    || Buffered::new(ring_cfg.clone()),
                    &mut h0,
                    &mut h1,
                ),
            ),
            (
                "before: sigyard TlsConn (unbuffered), sigyard config, ring's record keys",
                measure(
                    n,
                    version,
                    || TlsConn::new(ring_cfg.clone()).expect("conn"),
                    &mut h0,
                    &mut h1,
                ),
            ),
            (
                "after: sigyard TlsConn (unbuffered), sigyard config (keys expanded on demand)",
                measure(
                    n,
                    version,
                    || TlsConn::new(sigyard_cfg.clone()).expect("conn"),
                    &mut h0,
                    &mut h1,
                ),
            ),
            (
                "reference: minimal unbuffered driver, sigyard config, empty buffers freed",
                measure(
                    n,
                    version,
                    || Unbuffered {
                        conn: UnbufferedServerConnection::new(sigyard_cfg.clone()).expect("conn"),
                        incoming: Vec::new(),
                        outgoing: Vec::new(),
                        done: false,
                    },
                    &mut h0,
                    &mut h1,
                ),
            ),
        ];
        for (what, row) in rows {
            println!(
                "{vname} {what}: {:.0} | {:.0} | {:.0}",
                row.after_new, row.idle, row.residual
            );
            println!(
                "    after new, live allocations per conn by size: {}",
                show(&row.new_hist)
            );
            println!(
                "    idle, live allocations per conn by size: {}",
                show(&row.idle_hist)
            );
        }
    }
}
