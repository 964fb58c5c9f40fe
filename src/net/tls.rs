//! TLS termination for sigyard: the only module that names `rustls`.
//!
//! Owns: loading the server certificate chain and private key from PEM files into a shared
//! [`rustls::ServerConfig`] ([`load_server_config`]), and [`TlsConn`], a small sans-blocking
//! adapter that moves bytes between a non-blocking socket and one rustls server connection.
//!
//! Deliberately does not own: sockets, readiness registration, the event loop, timeouts,
//! HTTP/WebSocket parsing, or connection bookkeeping (the reactor does those). `TlsConn`
//! never blocks, never loops on a socket until `WouldBlock` (the caller decides how much
//! to read per readiness event) and never closes anything. It does no client
//! authentication, no SNI-based certificate selection and no session resumption.
//!
//! # Memory of idle connections
//! Measured by `examples/tls_idle_mem.rs` (rustls 0.23.46 + ring, x86-64, 1000 connections,
//! heap bytes per connection; `TlsConn` itself is another 1176 B inline in the slab):
//!
//! | state                                   | TLS 1.3 | TLS 1.2 |
//! |-----------------------------------------|---------|---------|
//! | right after `TlsConn::new`              |   792   |   792   |
//! | idle, rustls default config             |  6348   |  6213   |
//! | idle, this module's config              |  6292   |  6188   |
//! | idle, `UnbufferedServerConnection` core |  2196   |  2092   |
//!
//! Where the idle 6292 B sit: 4096 rustls' incoming deframer buffer (`DeframerVecBuffer`:
//! shrunk back to 4 KiB whenever it is empty, but `read_tls` resizes it to 4 KiB before
//! every read, so it never goes lower); 640 the handshake deframer's span `Vec` (capacity
//! 16, allocated in `new`, never released); 2 x 560 ring `LessSafeKey` record keys (the
//! same size for every AEAD, so the cipher suite does not matter); 224 the TLS 1.3
//! key schedule kept for key updates (120 B of secrets for TLS 1.2); 2 x 96 the emptied
//! `VecDeque`s of `sendable_tls` and `received_plaintext`; 20 SNI and ALPN strings.
//! rustls 0.23's buffered API has no call that releases any of these. The cheap measures
//! taken here: a bounded outgoing buffer ([`OUTGOING_BUFFER_LIMIT`]; bounds the busy
//! case, not the idle one) and no TLS 1.3 tickets / no session cache. The latter holds
//! nothing per connection, only a shared 256-entry cache (about 57 KB in total, the
//! 56 B/conn difference at 1000 connections, 8 B at 10000), whose hit rate is negligible
//! at sigyard's connection counts; dropping it also saves two encrypted records per
//! TLS 1.3 handshake. Dropping the 4 KiB needs the unbuffered API, where the caller owns
//! incoming/outgoing buffers and can free them whenever they are empty.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::{NoServerSessionStorage, ServerConfig, ServerConnection};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The only ALPN protocol the server accepts. A client that offers ALPN without it is
/// refused with a `no_application_protocol` alert; a client that offers no ALPN at all is
/// accepted (and [`TlsConn::alpn`] returns `None`).
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Upper bound, in bytes, on what rustls may hold queued for sending on one connection:
/// applied separately to plaintext written before the handshake finished and to encrypted
/// records not yet flushed to the socket (rustls compares the queued ciphertext with the
/// limit before encrypting, so the queue can overshoot by one write's record overhead,
/// 22 bytes per 16 KiB record). 64 KiB covers a full TLS record plus a burst of
/// signaling messages; a peer that stops reading makes [`TlsConn::write_plaintext`] accept
/// fewer (eventually zero) bytes instead of growing memory without bound. This is also
/// rustls' own default, set explicitly here so it is visible and cannot drift.
pub const OUTGOING_BUFFER_LIMIT: usize = 64 * 1024;

/// Why the server's TLS configuration could not be built. Every variant names the file.
#[derive(Debug)]
pub enum TlsConfigError {
    /// The file could not be read (not found, permission denied, ...).
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The file is not well-formed PEM.
    Pem {
        what: &'static str,
        path: PathBuf,
        source: pem::Error,
    },
    /// The certificate file holds no `CERTIFICATE` section.
    NoCertificate { path: PathBuf },
    /// The key file holds no `PRIVATE KEY` / `RSA PRIVATE KEY` / `EC PRIVATE KEY` section.
    NoPrivateKey { path: PathBuf },
    /// The key was found but the crypto provider cannot use it (unsupported algorithm,
    /// malformed DER, ...).
    BadPrivateKey {
        path: PathBuf,
        source: rustls::Error,
    },
    /// The first certificate in the chain could not be parsed.
    BadCertificate {
        path: PathBuf,
        source: rustls::Error,
    },
    /// The private key is not the one the end-entity certificate was issued for.
    KeyMismatch { cert: PathBuf, key: PathBuf },
    /// rustls refused the configuration for another reason.
    Config(rustls::Error),
}

impl fmt::Display for TlsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { what, path, source } => {
                write!(f, "cannot read {what} file {}: {source}", path.display())
            }
            Self::Pem { what, path, source } => {
                write!(
                    f,
                    "{what} file {} is not valid PEM: {source}",
                    path.display()
                )
            }
            Self::NoCertificate { path } => write!(
                f,
                "certificate file {} contains no PEM CERTIFICATE section",
                path.display()
            ),
            Self::NoPrivateKey { path } => write!(
                f,
                "private key file {} contains no PEM private key \
                 (expected PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
                path.display()
            ),
            Self::BadPrivateKey { path, source } => write!(
                f,
                "private key in {} cannot be used: {source}",
                path.display()
            ),
            Self::BadCertificate { path, source } => write!(
                f,
                "first certificate in {} cannot be parsed: {source}",
                path.display()
            ),
            Self::KeyMismatch { cert, key } => write!(
                f,
                "private key {} does not match the certificate in {}",
                key.display(),
                cert.display()
            ),
            Self::Config(e) => write!(f, "TLS configuration rejected: {e}"),
        }
    }
}

impl std::error::Error for TlsConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Read { source, .. } => Some(source),
            Self::Pem { source, .. } => Some(source),
            Self::BadPrivateKey { source, .. }
            | Self::BadCertificate { source, .. }
            | Self::Config(source) => Some(source),
            Self::NoCertificate { .. } | Self::NoPrivateKey { .. } | Self::KeyMismatch { .. } => {
                None
            }
        }
    }
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path).map_err(|source| TlsConfigError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn pem_error(what: &'static str, path: &Path, source: pem::Error) -> TlsConfigError {
    TlsConfigError::Pem {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Builds the server's TLS configuration from a PEM certificate chain (end-entity first)
/// and a PEM private key (PKCS#8, PKCS#1 or SEC1).
///
/// The result uses the ring provider, TLS 1.3 and 1.2 with rustls' default safe cipher
/// suites, ALPN `http/1.1` only, and no client authentication. Session resumption is off:
/// no TLS 1.3 tickets and no TLS 1.2 session-ID cache, so a connection costs nothing after
/// it is gone and the handshake sends two records fewer (see the module docs).
pub fn load_server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsConfigError> {
    const CERT: &str = "certificate";
    const KEY: &str = "private key";

    let cert_pem = read_file(CERT, cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(CERT, cert, e))?;
    if chain.is_empty() {
        return Err(TlsConfigError::NoCertificate {
            path: cert.to_owned(),
        });
    }

    let key_pem = read_file(KEY, key)?;
    let key_der = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(k) => k,
        Err(pem::Error::NoItemsFound) => {
            return Err(TlsConfigError::NoPrivateKey {
                path: key.to_owned(),
            })
        }
        Err(e) => return Err(pem_error(KEY, key, e)),
    };

    let provider = Arc::new(rustls::crypto::ring::default_provider());

    // Check the pair ourselves first so each failure names the right file; rustls'
    // `with_single_cert` below repeats the check, which is cheap and happens once at startup.
    let signing_key = provider
        .key_provider
        .load_private_key(key_der.clone_key())
        .map_err(|source| TlsConfigError::BadPrivateKey {
            path: key.to_owned(),
            source,
        })?;
    match CertifiedKey::new(chain.clone(), signing_key).keys_match() {
        // `Unknown`: the key type cannot report its public key, so no check is possible.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(TlsConfigError::KeyMismatch {
                cert: cert.to_owned(),
                key: key.to_owned(),
            })
        }
        Err(source) => {
            return Err(TlsConfigError::BadCertificate {
                path: cert.to_owned(),
                source,
            })
        }
    }

    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsConfigError::Config)?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(TlsConfigError::Config)?;
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.max_early_data_size = 0;
    Ok(Arc::new(config))
}

/// An error from [`TlsConn::read_tls_from`].
#[derive(Debug)]
pub enum TlsIoError {
    /// The reader failed, including `WouldBlock`; the connection is still usable.
    /// `ErrorKind::Other` here can also mean rustls refuses to read more because
    /// decrypted plaintext was not drained with [`TlsConn::read_plaintext`].
    Io(io::Error),
    /// The peer violated the protocol. Fatal: an alert has been queued, so flush with
    /// [`TlsConn::write_tls_to`] (best effort) and close the socket.
    Tls(rustls::Error),
}

impl TlsIoError {
    /// True for `Io(WouldBlock)`: nothing more to read until the next readiness event.
    pub fn is_would_block(&self) -> bool {
        matches!(self, Self::Io(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

impl fmt::Display for TlsIoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "TLS transport I/O error: {e}"),
            Self::Tls(e) => write!(f, "TLS protocol error: {e}"),
        }
    }
}

impl std::error::Error for TlsIoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Tls(e) => Some(e),
        }
    }
}

impl From<io::Error> for TlsIoError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// One server-side TLS session driven over a non-blocking socket.
///
/// Typical use per readiness event: on readable, call [`read_tls_from`](Self::read_tls_from)
/// until it returns `WouldBlock` or `Ok(0)`, draining [`read_plaintext`](Self::read_plaintext)
/// after each call; after reading or queueing with [`write_plaintext`](Self::write_plaintext),
/// call [`write_tls_to`](Self::write_tls_to) while [`wants_write`](Self::wants_write).
pub struct TlsConn {
    inner: ServerConnection,
    /// Set by `send_close_notify`: rustls would still encrypt and send later writes after
    /// the alert, which the peer must treat as an error, so the adapter refuses them.
    closed_for_writing: bool,
}

impl TlsConn {
    /// Starts a server session. Fails only if the configuration is unusable.
    pub fn new(cfg: Arc<ServerConfig>) -> Result<Self, rustls::Error> {
        let mut inner = ServerConnection::new(cfg)?;
        inner.set_buffer_limit(Some(OUTGOING_BUFFER_LIMIT));
        Ok(Self {
            inner,
            closed_for_writing: false,
        })
    }

    /// Reads ciphertext with one `read` call on `rd` and processes it.
    ///
    /// Returns `Ok(n)` with the ciphertext bytes consumed, `Ok(0)` on EOF or once the peer's
    /// `close_notify` has been processed. Reader errors pass through unchanged as
    /// [`TlsIoError::Io`] (`WouldBlock` included). On a protocol error the alert is queued
    /// for [`write_tls_to`](Self::write_tls_to) and [`TlsIoError::Tls`] is returned; every
    /// later call that reads bytes returns the same error, so stop reading and close.
    ///
    /// Drain [`read_plaintext`](Self::read_plaintext) after each successful call: while
    /// more than 16 KiB of decrypted plaintext waits, rustls refuses to read and this
    /// returns an `io::ErrorKind::Other` error.
    pub fn read_tls_from(&mut self, rd: &mut impl io::Read) -> Result<usize, TlsIoError> {
        let n = self.inner.read_tls(rd)?;
        if n > 0 {
            self.inner.process_new_packets().map_err(TlsIoError::Tls)?;
        }
        Ok(n)
    }

    /// Copies decrypted plaintext into `out`; returns the number of bytes copied, 0 when
    /// none is available (including after the peer closed).
    pub fn read_plaintext(&mut self, out: &mut [u8]) -> usize {
        // `Reader::read` only errs to say "nothing now" (WouldBlock) or "peer closed
        // without close_notify" (UnexpectedEof); both mean 0 bytes here, and EOF is
        // reported by `read_tls_from`.
        io::Read::read(&mut self.inner.reader(), out).unwrap_or(0)
    }

    /// Queues plaintext for encryption. Before the handshake completes it is held as
    /// plaintext; after, it is encrypted at once. Returns how many bytes were accepted,
    /// which is less than `data.len()` when [`OUTGOING_BUFFER_LIMIT`] is reached and 0
    /// after a fatal error or after [`send_close_notify`](Self::send_close_notify).
    pub fn write_plaintext(&mut self, data: &[u8]) -> usize {
        if self.closed_for_writing {
            return 0;
        }
        // Errs only when the connection already failed; the error was reported by
        // `read_tls_from`, so "accepted nothing" is the right answer here.
        io::Write::write(&mut self.inner.writer(), data).unwrap_or(0)
    }

    /// Writes queued ciphertext to `wr` with one vectored write (rustls hands all queued
    /// records to `write_vectored`). Returns bytes written; writer errors, `WouldBlock`
    /// included, pass through. Call again while [`wants_write`](Self::wants_write).
    pub fn write_tls_to(&mut self, wr: &mut impl io::Write) -> io::Result<usize> {
        self.inner.write_tls(wr)
    }

    /// True while rustls wants more ciphertext: false once the peer sent `close_notify`,
    /// while decrypted plaintext is waiting, or mid-handshake while a flight awaits flushing.
    pub fn wants_read(&self) -> bool {
        self.inner.wants_read()
    }

    /// True while ciphertext is queued for the socket.
    pub fn wants_write(&self) -> bool {
        self.inner.wants_write()
    }

    /// True until both directions may carry application data.
    pub fn is_handshaking(&self) -> bool {
        self.inner.is_handshaking()
    }

    /// Queues a `close_notify` alert; flush it with [`write_tls_to`](Self::write_tls_to).
    /// [`write_plaintext`](Self::write_plaintext) accepts nothing afterwards.
    pub fn send_close_notify(&mut self) {
        self.closed_for_writing = true;
        self.inner.send_close_notify();
    }

    /// The negotiated ALPN protocol (`Some(b"http/1.1")`), or `None` if the client offered
    /// none or the handshake has not got that far.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.inner.alpn_protocol()
    }
}

impl fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConn")
            .field("handshaking", &self.is_handshaking())
            .field("wants_read", &self.wants_read())
            .field("wants_write", &self.wants_write())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, RootCertStore};
    use std::io::{Read, Write};

    fn certs_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("certs")
    }

    fn dev_cert() -> PathBuf {
        certs_dir().join("dev-cert.pem")
    }

    fn dev_key() -> PathBuf {
        certs_dir().join("dev-key.pem")
    }

    fn server_config() -> Arc<ServerConfig> {
        load_server_config(&dev_cert(), &dev_key()).expect("dev cert/key load")
    }

    /// One direction of an in-memory socket: reads drain it, `WouldBlock` when empty.
    #[derive(Default)]
    struct Pipe {
        buf: Vec<u8>,
    }

    impl Read for Pipe {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.buf.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = out.len().min(self.buf.len());
            out[..n].copy_from_slice(&self.buf[..n]);
            self.buf.drain(..n);
            Ok(n)
        }
    }

    impl Write for Pipe {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.buf.extend_from_slice(data);
            Ok(data.len())
        }
        // Like a socket with room to spare: takes every slice (the default takes one).
        fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
            let before = self.buf.len();
            for b in bufs {
                self.buf.extend_from_slice(b);
            }
            Ok(self.buf.len() - before)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn client_config(version: &'static rustls::SupportedProtocolVersion) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        let pem = std::fs::read(dev_cert()).expect("read dev cert");
        for cert in CertificateDer::pem_slice_iter(&pem) {
            roots
                .add(cert.expect("dev cert PEM"))
                .expect("dev cert as root");
        }
        let mut cfg =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[version])
                .expect("client versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
        cfg.alpn_protocols = vec![b"h2".to_vec(), ALPN_HTTP11.to_vec()];
        Arc::new(cfg)
    }

    /// Everything the server side of the reactor would do on one readiness pass.
    fn server_io(server: &mut TlsConn, c2s: &mut Pipe, s2c: &mut Pipe) -> Result<(), TlsIoError> {
        loop {
            match server.read_tls_from(c2s) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.is_would_block() => break,
                Err(e) => return Err(e),
            }
        }
        while server.wants_write() {
            server.write_tls_to(s2c)?;
        }
        Ok(())
    }

    fn client_io(client: &mut ClientConnection, c2s: &mut Pipe, s2c: &mut Pipe) {
        while client.wants_write() {
            client.write_tls(c2s).expect("client write_tls");
        }
        while !s2c.buf.is_empty() {
            client.read_tls(s2c).expect("client read_tls");
            client.process_new_packets().expect("client process");
        }
    }

    fn handshake(
        client: &mut ClientConnection,
        server: &mut TlsConn,
        c2s: &mut Pipe,
        s2c: &mut Pipe,
    ) {
        for _ in 0..10 {
            client_io(client, c2s, s2c);
            server_io(server, c2s, s2c).expect("server io");
            client_io(client, c2s, s2c);
            if !client.is_handshaking() && !server.is_handshaking() {
                return;
            }
        }
        panic!("handshake did not complete");
    }

    fn drain_plaintext(server: &mut TlsConn) -> Vec<u8> {
        let mut got = Vec::new();
        let mut chunk = [0u8; 7]; // deliberately small: exercises partial copies
        loop {
            let n = server.read_plaintext(&mut chunk);
            if n == 0 {
                return got;
            }
            got.extend_from_slice(&chunk[..n]);
        }
    }

    #[test]
    fn handshake_alpn_plaintext_and_close_notify_tls12_and_tls13() {
        let cfg = server_config();
        let cases = [
            (&rustls::version::TLS13, "sigyard.test"),
            (&rustls::version::TLS13, "localhost"),
            (&rustls::version::TLS12, "sigyard.test"),
            (&rustls::version::TLS12, "localhost"),
            (&rustls::version::TLS13, "127.0.0.1"),
        ];
        for (version, name) in cases {
            let what = format!("{:?} {name}", version.version);
            let name = ServerName::try_from(name).expect("valid name").to_owned();
            let mut client = ClientConnection::new(client_config(version), name).expect("client");
            let mut server = TlsConn::new(cfg.clone()).expect("server");
            let (mut c2s, mut s2c) = (Pipe::default(), Pipe::default());
            assert!(server.is_handshaking(), "{what}");
            assert_eq!(server.alpn(), None, "{what}");

            // Plaintext queued by the server before the handshake ends is sent after it.
            assert_eq!(server.write_plaintext(b"early hello"), 11, "{what}");
            handshake(&mut client, &mut server, &mut c2s, &mut s2c);

            assert_eq!(client.protocol_version(), Some(version.version), "{what}");
            assert_eq!(server.alpn(), Some(ALPN_HTTP11), "{what}");
            assert_eq!(client.alpn_protocol(), Some(ALPN_HTTP11), "{what}");

            // server -> client
            server_io(&mut server, &mut c2s, &mut s2c).expect("flush");
            client_io(&mut client, &mut c2s, &mut s2c);
            let mut got = vec![0u8; 64];
            let n = client.reader().read(&mut got).expect("client reads");
            assert_eq!(&got[..n], b"early hello", "{what}");

            // client -> server
            let msg = b"{\"type\":\"offer\",\"sdp\":\"v=0...\"}";
            client.writer().write_all(msg).expect("client writes");
            client_io(&mut client, &mut c2s, &mut s2c);
            server_io(&mut server, &mut c2s, &mut s2c).expect("server io");
            assert_eq!(drain_plaintext(&mut server), msg, "{what}");
            assert_eq!(server.read_plaintext(&mut [0u8; 16]), 0, "{what}");
            assert!(server.wants_read(), "{what}");
            assert!(!server.wants_write(), "{what}");

            // client close_notify: the server sees EOF (Ok(0)) and stops wanting to read.
            client.send_close_notify();
            client_io(&mut client, &mut c2s, &mut s2c);
            assert!(
                server.read_tls_from(&mut c2s).expect("alert read") > 0,
                "{what}"
            );
            assert_eq!(
                server.read_tls_from(&mut c2s).expect("after close"),
                0,
                "{what}"
            );
            assert!(!server.wants_read(), "{what}");

            // server close_notify reaches the client.
            server.send_close_notify();
            assert!(server.wants_write(), "{what}");
            assert_eq!(server.write_plaintext(b"too late"), 0, "{what}");
            server_io(&mut server, &mut c2s, &mut s2c).expect("flush close");
            let state = {
                client.read_tls(&mut s2c).expect("client read close");
                client.process_new_packets().expect("client process close")
            };
            assert!(state.peer_has_closed(), "{what}");
        }
    }

    #[test]
    fn plain_http_on_tls_port_is_a_protocol_error_with_alert() {
        let mut server = TlsConn::new(server_config()).expect("server");
        let mut c2s = Pipe {
            buf: b"GET / HTTP/1.1\r\nHost: sigyard.test\r\n\r\n".to_vec(),
        };
        let err = server
            .read_tls_from(&mut c2s)
            .expect_err("garbage must fail");
        assert!(matches!(err, TlsIoError::Tls(_)), "{err}");
        assert!(server.wants_write(), "alert must be queued");
        let mut s2c = Pipe::default();
        server.write_tls_to(&mut s2c).expect("flush alert");
        // Plaintext alert record: content type 21, then version, length 2, level fatal.
        assert_eq!(s2c.buf[0], 0x15, "alert record: {:?}", s2c.buf);
        assert_eq!(&s2c.buf[3..6], &[0, 2, 2]);
    }

    #[test]
    fn corrupted_record_after_handshake_sends_bad_record_mac() {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let name = ServerName::try_from("sigyard.test").expect("valid name");
            let mut client = ClientConnection::new(client_config(version), name).expect("client");
            let mut server = TlsConn::new(server_config()).expect("server");
            let (mut c2s, mut s2c) = (Pipe::default(), Pipe::default());
            handshake(&mut client, &mut server, &mut c2s, &mut s2c);

            client.writer().write_all(b"ping").expect("client writes");
            client.write_tls(&mut c2s).expect("client write_tls");
            let last = c2s.buf.len() - 1;
            c2s.buf[last] ^= 0xff; // flip bits in the AEAD tag
            let err = server.read_tls_from(&mut c2s).expect_err("tampered record");
            assert!(
                matches!(err, TlsIoError::Tls(rustls::Error::DecryptError)),
                "{err}"
            );
            // The error sticks.
            c2s.buf.extend_from_slice(&[0x17, 3, 3, 0, 1, 0]);
            assert!(matches!(
                server.read_tls_from(&mut c2s),
                Err(TlsIoError::Tls(_))
            ));

            assert!(server.wants_write());
            server_io(&mut server, &mut c2s, &mut s2c).expect("flush alert");
            client.read_tls(&mut s2c).expect("client read alert");
            let got = client.process_new_packets().expect_err("client sees alert");
            assert_eq!(
                got,
                rustls::Error::AlertReceived(rustls::AlertDescription::BadRecordMac),
                "{:?}",
                version.version
            );
        }
    }

    #[test]
    fn client_without_http11_alpn_is_refused() {
        let mut cfg = (*client_config(&rustls::version::TLS13)).clone();
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        let name = ServerName::try_from("sigyard.test").expect("valid name");
        let mut client = ClientConnection::new(Arc::new(cfg), name).expect("client");
        let mut server = TlsConn::new(server_config()).expect("server");
        let (mut c2s, mut s2c) = (Pipe::default(), Pipe::default());
        client.write_tls(&mut c2s).expect("client hello");
        let err = server_io(&mut server, &mut c2s, &mut s2c).expect_err("no common ALPN");
        assert!(
            matches!(err, TlsIoError::Tls(rustls::Error::NoApplicationProtocol)),
            "{err}"
        );
        assert!(server.wants_write(), "alert queued");
        server.write_tls_to(&mut s2c).expect("flush alert");
        client.read_tls(&mut s2c).expect("client read alert");
        assert_eq!(
            client.process_new_packets().expect_err("alert"),
            rustls::Error::AlertReceived(rustls::AlertDescription::NoApplicationProtocol)
        );
    }

    #[test]
    fn outgoing_buffer_is_bounded_for_a_peer_that_does_not_read() {
        let name = ServerName::try_from("localhost").expect("valid name");
        let mut client =
            ClientConnection::new(client_config(&rustls::version::TLS13), name).expect("client");
        let mut server = TlsConn::new(server_config()).expect("server");
        let (mut c2s, mut s2c) = (Pipe::default(), Pipe::default());
        handshake(&mut client, &mut server, &mut c2s, &mut s2c);

        let big = vec![b'x'; 1 << 20];
        let accepted = server.write_plaintext(&big);
        assert!(
            accepted > 0 && accepted <= OUTGOING_BUFFER_LIMIT,
            "{accepted}"
        );
        assert_eq!(
            server.write_plaintext(&big),
            0,
            "full buffer accepts nothing"
        );
        // Flushing makes room again.
        let flushed = server.write_tls_to(&mut s2c).expect("flush");
        assert!(
            flushed > accepted,
            "ciphertext {flushed} < plaintext {accepted}"
        );
        assert!(server.write_plaintext(&big) > 0);
    }

    #[test]
    fn loads_sec1_key() {
        let sec1 = certs_dir().join("test-dev-key-sec1.pem");
        load_server_config(&dev_cert(), &sec1).expect("SEC1 key accepted");
    }

    #[test]
    fn load_errors_name_the_file_and_the_problem() {
        let missing = certs_dir().join("no-such-file.pem");
        let other_key = certs_dir().join("test-other-key.pem");
        let not_pem = certs_dir().join("README.md");

        let err = load_server_config(&missing, &dev_key()).expect_err("missing cert");
        assert!(matches!(&err, TlsConfigError::Read { source, .. }
            if source.kind() == io::ErrorKind::NotFound));
        assert!(err.to_string().contains("no-such-file.pem"), "{err}");

        let err = load_server_config(&dev_cert(), &missing).expect_err("missing key");
        assert!(
            matches!(
                err,
                TlsConfigError::Read {
                    what: "private key",
                    ..
                }
            ),
            "{err}"
        );

        // A key file given as the certificate: PEM, but no CERTIFICATE section.
        let err = load_server_config(&dev_key(), &dev_key()).expect_err("no cert");
        assert!(matches!(err, TlsConfigError::NoCertificate { .. }), "{err}");
        assert!(err.to_string().contains("dev-key.pem"), "{err}");
        let err = load_server_config(&not_pem, &dev_key()).expect_err("not PEM at all");
        assert!(matches!(err, TlsConfigError::NoCertificate { .. }), "{err}");

        let err = load_server_config(&dev_cert(), &dev_cert()).expect_err("no key");
        assert!(matches!(err, TlsConfigError::NoPrivateKey { .. }), "{err}");
        assert!(err.to_string().contains("dev-cert.pem"), "{err}");

        let err = load_server_config(&dev_cert(), &other_key).expect_err("mismatch");
        assert!(matches!(err, TlsConfigError::KeyMismatch { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("test-other-key.pem") && msg.contains("dev-cert.pem"),
            "{msg}"
        );
        assert!(msg.contains("does not match"), "{msg}");
    }

    #[test]
    fn truncated_pem_is_reported_as_pem_error() {
        let dir = std::env::temp_dir().join(format!("sigyard-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let truncated = dir.join("truncated.pem");
        let pem = std::fs::read_to_string(dev_cert()).expect("read dev cert");
        let cut = pem.find("-----END").expect("END marker in dev cert");
        std::fs::write(&truncated, &pem[..cut]).expect("write truncated");
        let err = load_server_config(&truncated, &dev_key()).expect_err("truncated");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(matches!(err, TlsConfigError::Pem { .. }), "{err}");
        assert!(err.to_string().contains("truncated.pem"), "{err}");
    }
}
