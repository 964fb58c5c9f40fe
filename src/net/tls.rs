//! TLS termination for sigyard: with its record-key submodule `keys`, the only module that
//! names `rustls`.
//!
//! Owns: loading the server certificate chain and private key from PEM files into a shared
//! [`rustls::ServerConfig`] ([`load_server_config`]), and [`TlsConn`], a small sans-blocking
//! adapter that moves bytes between a non-blocking socket and one rustls
//! `UnbufferedServerConnection`. Since rustls' unbuffered API keeps no byte buffers,
//! `TlsConn` owns them all: incoming ciphertext (at most a partial record between calls),
//! decrypted plaintext not yet taken (bounded, see [`TlsConn::read_tls_from`]), outgoing
//! records and plaintext written before it can be encrypted (both bounded by
//! [`OUTGOING_BUFFER_LIMIT`]). Each is allocated on demand and freed as soon as it is empty.
//!
//! Deliberately does not own: sockets, readiness registration, the event loop, timeouts,
//! HTTP/WebSocket parsing, or connection bookkeeping (the reactor does those). `TlsConn`
//! never blocks, never loops on a socket until `WouldBlock` (the caller decides how much
//! to read per readiness event) and never closes anything. It does no client
//! authentication, no SNI-based certificate selection, no session resumption and no early
//! data, and it shares no buffers between connections (each read allocates its own
//! buffer; a per-thread scratch buffer would save that allocation, not idle memory).
//!
//! # Memory of idle connections
//! Measured by `benches/tls_idle_mem.rs` (rustls 0.23.46 + ring, x86-64, 2000 connections,
//! heap bytes per connection; `TlsConn` itself is another 1208 B inline, previously 1176):
//!
//! | state                                                   |  TLS 1.3  |  TLS 1.2  |
//! |---------------------------------------------------------|-----------|-----------|
//! | right after `TlsConn::new`                              |    792    |    792    |
//! | idle, previous buffered adapter, rustls defaults        | 6348-6374 | 6188-6213 |
//! | idle, previous buffered adapter, this config            |   6292    |   6188    |
//! | idle, `TlsConn` (unbuffered), ring's record keys        |   2196    |   2092    |
//! | idle, `TlsConn` (unbuffered), keys expanded on demand   |   1204    |   1116    |
//!
//! (With rustls' defaults the shared session cache's growth lands on whichever run fills
//! it, hence the ranges.)
//!
//! "Idle" is after the handshake and one small message each way, everything read and
//! written; `TlsConn` then holds 0 bytes of buffers ([`TlsConn::buffered_bytes`]). What
//! remains is rustls' protocol state, which its 0.23 API cannot release: 640 the handshake
//! deframer's span `Vec` (capacity 16, allocated in `new`); 2 x 64 (TLS 1.2: 2 x 72) the
//! record keys, raw, of `keys` (ring's own were 2 x 560 expanded `LessSafeKey`s; the
//! expanded ones now live in a per-thread table of 512, about 280 KiB once full, whoever
//! uses them); 224 the TLS 1.3 key schedule kept for key updates (120 B of secrets for
//! TLS 1.2); 2 x 96 the emptied `VecDeque`s of rustls' internal send and plaintext
//! queues; 20 SNI and ALPN strings. The buffered `ServerConnection` used before held
//! another 4096: its incoming deframer buffer, which `read_tls` resizes to 4 KiB before
//! every read and never frees.
//!
//! No TLS 1.3 tickets and no session cache: the cache holds nothing per connection, only
//! a shared 256-entry cache (about 57 KB in total), whose hit rate is negligible at
//! sigyard's connection counts; dropping it also saves two encrypted records per TLS 1.3
//! handshake.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::{
    NoServerSessionStorage, ServerConfig, ServerConnectionData, UnbufferedServerConnection,
};
use rustls::sign::CertifiedKey;
use rustls::unbuffered::{ConnectionState, EncodeError, EncodeTlsData, EncryptError, WriteTraffic};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

mod keys;

pub use keys::HOT_KEYS;

/// The only ALPN protocol the server accepts. A client that offers ALPN without it is
/// refused with a `no_application_protocol` alert; a client that offers no ALPN at all is
/// accepted (and [`TlsConn::alpn`] returns `None`).
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Upper bound, in bytes, on what [`TlsConn`] holds queued for sending on one connection:
/// applied separately to plaintext written before rustls may encrypt it and to encrypted
/// records not yet flushed to the socket (the queued ciphertext is compared with the limit
/// before encrypting, so the queue can overshoot by one write's record overhead, 22 to 29
/// bytes per 16 KiB record). 64 KiB covers a full TLS record plus a burst of signaling
/// messages; a peer that stops reading makes [`TlsConn::write_plaintext`] accept fewer
/// (eventually zero) bytes instead of growing memory without bound. The same value and
/// rule as rustls' buffered connection, which sigyard used before.
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
/// The result uses the ring provider (its record keys expanded on demand, see `keys`), TLS
/// 1.3 and 1.2 with rustls' default safe cipher suites in their order, ALPN `http/1.1`
/// only, and no client authentication. Session resumption is off:
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

    // ring's, with record keys expanded on demand (see `keys`).
    let provider = Arc::new(keys::provider());

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
    /// Two errors come from the adapter itself, without reading: `ErrorKind::Other`
    /// ("received plaintext buffer full") while more than 16 KiB of decrypted plaintext
    /// waits, so drain [`TlsConn::read_plaintext`] first; and `ErrorKind::InvalidData`
    /// ("message buffer full") when the peer has sent 64 KiB of one unfinished handshake
    /// message, which is fatal (close the socket). Both are what rustls' buffered
    /// `read_tls` returns in the same situations.
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

/// Decrypted plaintext the adapter keeps for [`TlsConn::read_plaintext`] before
/// [`TlsConn::read_tls_from`] refuses to read more: while more than this waits, reading
/// stops. One read can complete at most one maximal record plus [`READ_SIZE`] bytes, so
/// the plaintext held never exceeds this + [`MAX_WIRE_SIZE`] + [`READ_SIZE`] (about 38 KiB).
/// Same limit and same comparison (`>`) as rustls' buffered connection.
const RECEIVED_PLAINTEXT_LIMIT: usize = 16 * 1024;

/// Bytes asked of the reader per [`TlsConn::read_tls_from`] call, unless the record in
/// progress announces that it needs more (rustls' buffered API reads 4 KiB too).
const READ_SIZE: usize = 4096;

/// Largest TLS record on the wire: 5-byte header plus 2^14 + 2048 bytes of ciphertext.
const MAX_WIRE_SIZE: usize = 5 + 16 * 1024 + 2048;

/// Unconsumed ciphertext at which reading stops for good: only reachable while rustls joins
/// one handshake message from several records, and rustls limits those to 64 KiB.
const MAX_INCOMING: usize = 0xffff;

/// Per-record overhead guessed when sizing the output for an encryption (header, AEAD tag,
/// TLS 1.3 content type or TLS 1.2 explicit nonce); rustls reports the exact need if the
/// guess is short, so it only has to be right most of the time.
const RECORD_OVERHEAD_GUESS: usize = 32;

/// Largest plaintext fragment rustls puts in one record.
const MAX_FRAGMENT: usize = 16 * 1024;

/// One server-side TLS session driven over a non-blocking socket.
///
/// Typical use per readiness event: on readable, call [`read_tls_from`](Self::read_tls_from)
/// until it returns `WouldBlock` or `Ok(0)`, draining [`read_plaintext`](Self::read_plaintext)
/// after each call; after reading or queueing with [`write_plaintext`](Self::write_plaintext),
/// call [`write_tls_to`](Self::write_tls_to) while [`wants_write`](Self::wants_write).
///
/// Built on rustls' unbuffered API: rustls keeps only protocol state, and the four byte
/// buffers below belong to the adapter. Each is allocated when it first gets bytes and
/// dropped (not cleared) as soon as it is empty again, so an idle connection holds none;
/// [`buffered_bytes`](Self::buffered_bytes) reports their capacity.
pub struct TlsConn {
    conn: UnbufferedServerConnection,
    /// Ciphertext read from the peer that rustls has not consumed yet. Between calls this
    /// is at most one incomplete record, or the records of a handshake message rustls is
    /// still joining: every complete record is processed as soon as it arrives.
    incoming: Vec<u8>,
    /// Decrypted plaintext not yet taken by `read_plaintext`; `received_start` marks how
    /// much of it was taken (so small reads do not shift the rest each time).
    received: Vec<u8>,
    received_start: usize,
    /// Records waiting for the socket: handshake flights, alerts, encrypted plaintext.
    outgoing: Vec<u8>,
    /// Plaintext written before rustls may encrypt application data; encrypted, in order,
    /// ahead of anything else as soon as it may.
    unsent: Vec<u8>,
    /// The fatal error, once one happened: the alert was queued, and rustls is never asked
    /// to process input again (it would raise a second alert). Boxed: 8 bytes inline
    /// instead of 64, and only a failed connection pays for the allocation.
    error: Option<Box<rustls::Error>>,
    /// rustls has reached `WriteTraffic`: application data may be encrypted. For TLS 1.3
    /// that is after the server's flight, before the client's Finished.
    can_send: bool,
    /// The peer's `close_notify` was processed: no more application data will arrive.
    peer_closed: bool,
    /// `send_close_notify` was called: refuse further plaintext; queue the alert once
    /// `can_send` (rustls' unbuffered API has no way to queue it earlier).
    close_requested: bool,
    /// The `close_notify` alert is in `outgoing` (or was handed out).
    close_queued: bool,
}

impl TlsConn {
    /// Starts a server session. Fails only if the configuration is unusable.
    pub fn new(cfg: Arc<ServerConfig>) -> Result<Self, rustls::Error> {
        Ok(Self {
            conn: UnbufferedServerConnection::new(cfg)?,
            incoming: Vec::new(),
            received: Vec::new(),
            received_start: 0,
            outgoing: Vec::new(),
            unsent: Vec::new(),
            error: None,
            can_send: false,
            peer_closed: false,
            close_requested: false,
            close_queued: false,
        })
    }

    /// Reads ciphertext with one `read` call on `rd` and processes it.
    ///
    /// Returns `Ok(n)` with the ciphertext bytes read, `Ok(0)` on EOF or once the peer's
    /// `close_notify` has been processed (then without reading). Reader errors pass through
    /// unchanged as [`TlsIoError::Io`] (`WouldBlock` included). On a protocol error the
    /// alert is queued for [`write_tls_to`](Self::write_tls_to) and [`TlsIoError::Tls`] is
    /// returned; every later call that reads bytes returns the same error (the bytes are
    /// discarded), so stop reading and close.
    ///
    /// Drain [`read_plaintext`](Self::read_plaintext) after each successful call: while
    /// more than 16 KiB of decrypted plaintext waits, this reads nothing and returns an
    /// `io::ErrorKind::Other` error ("received plaintext buffer full"), exactly as rustls'
    /// buffered connection does. It is not `WouldBlock` on purpose: the socket may well
    /// be readable, and the remedy is to take plaintext, not to wait for readiness.
    ///
    /// Each call reads up to 4 KiB, or the rest of the record in progress if that is more,
    /// into a buffer that is freed again once rustls has consumed it.
    pub fn read_tls_from(&mut self, rd: &mut impl io::Read) -> Result<usize, TlsIoError> {
        if self.received_len() > RECEIVED_PLAINTEXT_LIMIT {
            return Err(TlsIoError::Io(io::Error::other(
                "received plaintext buffer full",
            )));
        }
        if self.peer_closed {
            return Ok(0);
        }
        if let Some(e) = &self.error {
            // Keep the caller's read loop behaving as before the error: EOF and reader
            // errors pass through, bytes are read (and dropped) and answered with the error.
            let mut sink = [0u8; 512];
            return match rd.read(&mut sink)? {
                0 => Ok(0),
                _ => Err(TlsIoError::Tls((**e).clone())),
            };
        }

        let pending = self.incoming.len();
        if pending >= MAX_INCOMING {
            return Err(TlsIoError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                "message buffer full",
            )));
        }
        let want = READ_SIZE.max(record_rest(&self.incoming));
        self.incoming.reserve_exact(want);
        self.incoming.resize(pending + want, 0);
        let got = rd.read(&mut self.incoming[pending..]);
        // `min`: a reader claiming more than the buffer it was given must not make us slice
        // out of bounds.
        let n = *got.as_ref().unwrap_or(&0).min(&want);
        self.incoming.truncate(pending + n);
        if let Err(e) = got {
            self.settle_incoming(0);
            return Err(TlsIoError::Io(e));
        }
        if n == 0 {
            self.settle_incoming(0);
            return Ok(0);
        }
        self.drive(&[]).map_err(TlsIoError::Tls)?;
        Ok(n)
    }

    /// Copies decrypted plaintext into `out`; returns the number of bytes copied, 0 when
    /// none is available (including after the peer closed).
    pub fn read_plaintext(&mut self, out: &mut [u8]) -> usize {
        let avail = self.received.get(self.received_start..).unwrap_or_default();
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.received_start += n;
        if self.received_start >= self.received.len() {
            self.received = Vec::new();
            self.received_start = 0;
        }
        n
    }

    /// Queues plaintext for encryption. Before rustls may send application data (TLS 1.3:
    /// until the server's handshake flight is out; TLS 1.2: until the handshake is complete)
    /// it is held as plaintext, up to [`OUTGOING_BUFFER_LIMIT`] bytes; after, it is
    /// encrypted at once, as long as the queued ciphertext is below
    /// [`OUTGOING_BUFFER_LIMIT`] (the limit is checked before encrypting, so the queue can
    /// overshoot by the record overhead of one write, 22 to 29 bytes per 16 KiB record).
    /// Returns how many bytes were accepted, which is less than `data.len()` when the
    /// limit is reached and 0 after a fatal error or after
    /// [`send_close_notify`](Self::send_close_notify).
    pub fn write_plaintext(&mut self, data: &[u8]) -> usize {
        if self.close_requested || self.error.is_some() {
            return 0;
        }
        if !self.can_send {
            let n = data
                .len()
                .min(OUTGOING_BUFFER_LIMIT.saturating_sub(self.unsent.len()));
            self.unsent.extend_from_slice(&data[..n]);
            return n;
        }
        let n = data
            .len()
            .min(OUTGOING_BUFFER_LIMIT.saturating_sub(self.outgoing.len()));
        if n == 0 {
            return 0;
        }
        // No input is pending here, so this only encrypts; an error (none is expected) is
        // kept and reported by the next `read_tls_from`, and "accepted nothing" is right.
        self.drive(&data[..n]).unwrap_or(0)
    }

    /// Writes queued ciphertext to `wr` with one `write` call. Returns bytes written;
    /// writer errors, `WouldBlock` included, pass through. Call again while
    /// [`wants_write`](Self::wants_write). The buffer is freed once everything is written.
    pub fn write_tls_to(&mut self, wr: &mut impl io::Write) -> io::Result<usize> {
        if self.outgoing.is_empty() {
            return Ok(0);
        }
        let n = wr.write(&self.outgoing)?.min(self.outgoing.len());
        if n == self.outgoing.len() {
            self.outgoing = Vec::new();
        } else {
            self.outgoing.drain(..n);
        }
        Ok(n)
    }

    /// True while more ciphertext is wanted: false once the peer sent `close_notify`,
    /// while decrypted plaintext is waiting, or mid-handshake while a flight awaits flushing.
    pub fn wants_read(&self) -> bool {
        self.received_len() == 0 && !self.peer_closed && (self.can_send || self.outgoing.is_empty())
    }

    /// True while ciphertext is queued for the socket.
    pub fn wants_write(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// True until both directions may carry application data.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Asks for a `close_notify` alert; flush it with [`write_tls_to`](Self::write_tls_to).
    /// [`write_plaintext`](Self::write_plaintext) accepts nothing afterwards.
    ///
    /// rustls' unbuffered API can only encrypt the alert once the server may send
    /// application data (see `write_plaintext`). Called earlier, during the handshake,
    /// nothing is queued now ([`wants_write`](Self::wants_write) stays as it was); the
    /// alert follows any plaintext written before, as soon as the handshake gets that far.
    /// A caller that closes the socket right after gets no alert out, which to the peer
    /// is the same as an aborted handshake. After a fatal error this does nothing (the
    /// fatal alert was the last record).
    pub fn send_close_notify(&mut self) {
        self.close_requested = true;
        if self.can_send && !self.close_queued && self.error.is_none() {
            // Encrypting needs no input; an error (none is expected) is kept and reported
            // by the next `read_tls_from`.
            let _ = self.drive(&[]);
        }
    }

    /// The negotiated ALPN protocol (`Some(b"http/1.1")`), or `None` if the client offered
    /// none or the handshake has not got that far.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// Heap bytes held by the adapter's own buffers (capacity of incoming ciphertext,
    /// received plaintext, outgoing ciphertext and not-yet-encryptable plaintext). 0 for
    /// an idle connection. rustls' per-connection state (keys, handshake deframer, about
    /// 2 KiB) is not included.
    pub fn buffered_bytes(&self) -> usize {
        self.incoming.capacity()
            + self.received.capacity()
            + self.outgoing.capacity()
            + self.unsent.capacity()
    }

    /// Decrypted plaintext waiting for `read_plaintext`.
    fn received_len(&self) -> usize {
        self.received.len().saturating_sub(self.received_start)
    }

    /// Runs rustls over `incoming` until it needs more input, collecting what it produces:
    /// handshake records and alerts into `outgoing`, plaintext into `received`. Once rustls
    /// may send application data it encrypts `unsent`, then `send`, then the requested
    /// `close_notify`. Returns how much of `send` was encrypted (all or nothing).
    fn drive(&mut self, send: &[u8]) -> Result<usize, rustls::Error> {
        if let Some(e) = &self.error {
            return Err((**e).clone());
        }
        let mut send = send;
        let mut sent = 0;
        // Bytes at the front of `incoming` rustls said to discard; applied by slicing, and
        // by moving the rest down once at the end.
        let mut consumed = 0;
        let mut rechecked = false;
        let result = loop {
            // `get_mut`: rustls never asks to discard more than it was given, but a wrong
            // count must not become a panic here.
            let input = self.incoming.get_mut(consumed..).unwrap_or_default();
            let status = self.conn.process_tls_records(input);
            let mut discard = status.discard;
            let state = match status.state {
                Ok(state) => state,
                Err(e) => {
                    consumed += discard;
                    break Err(e);
                }
            };
            let mut stop = false;
            match state {
                ConnectionState::EncodeTlsData(mut enc) => {
                    encode_record(&mut enc, &mut self.outgoing)
                }
                ConnectionState::TransmitTlsData(tx) => {
                    // `outgoing` is the transmit queue; `write_tls_to` drains it.
                    tx.done();
                }
                ConnectionState::ReadTraffic(mut rd) => {
                    while let Some(rec) = rd.next_record() {
                        match rec {
                            Ok(rec) => {
                                discard += rec.discard;
                                append_received(
                                    &mut self.received,
                                    &mut self.received_start,
                                    rec.payload,
                                );
                            }
                            // rustls 0.23 never yields an error here; should a later version
                            // decrypt in `next_record`, the error is fatal as anywhere else.
                            Err(e) => {
                                self.error = Some(Box::new(e));
                                break;
                            }
                        }
                    }
                }
                ConnectionState::WriteTraffic(mut wr) => {
                    self.can_send = true;
                    let mut ok = true;
                    if !self.unsent.is_empty() {
                        let unsent = std::mem::take(&mut self.unsent);
                        ok = encrypt_into(&mut wr, &unsent, &mut self.outgoing).is_ok();
                    }
                    if ok && !send.is_empty() && !self.close_requested {
                        ok = encrypt_into(&mut wr, send, &mut self.outgoing).is_ok();
                        if ok {
                            sent = send.len();
                        }
                        send = &[];
                    }
                    if !ok {
                        // Only `EncryptExhausted`: the keys may not encrypt another record
                        // (rustls has queued a close_notify itself for TLS 1.2). Nothing
                        // more can be sent; say goodbye.
                        self.close_requested = true;
                    }
                    if self.close_requested && !self.close_queued {
                        self.close_queued = true;
                        // Errs only with `InsufficientSize`, which `append_with` retries.
                        let _ =
                            append_with(&mut self.outgoing, 64, |buf| wr.queue_close_notify(buf));
                    }
                    stop = true;
                }
                ConnectionState::PeerClosed => self.peer_closed = true,
                ConnectionState::Closed => {
                    self.peer_closed = true;
                    stop = true;
                }
                ConnectionState::ReadEarlyData(mut early) => {
                    // `load_server_config` sets `max_early_data_size = 0`, so rustls rejects
                    // early data and this state does not occur; drop it should it ever.
                    while early.next_record().is_some() {}
                }
                // BlockedHandshake: rustls needs more input. Anything newer: stop and let
                // the next call try again rather than guess.
                _ => stop = true,
            }
            consumed += discard;
            if let Some(e) = &self.error {
                break Err((**e).clone());
            }
            if stop {
                // Everything rustls queued has been handed out by now; should something
                // remain, one more round collects it.
                if self.conn.wants_write() && !rechecked {
                    rechecked = true;
                    continue;
                }
                break Ok(sent);
            }
        };
        self.settle_incoming(consumed);
        if let Err(e) = &result {
            self.fail(e.clone());
        }
        result
    }

    /// Records a fatal error and moves the alert rustls queued for it into `outgoing`.
    fn fail(&mut self, e: rustls::Error) {
        self.error = Some(Box::new(e));
        // While rustls' own send queue is non-empty, `process_tls_records` hands out its
        // head before looking at any input, so the bad input is never processed again
        // (that would raise a second fatal alert). Each round removes one queued record.
        while self.conn.wants_write() {
            let status = self.conn.process_tls_records(&mut self.incoming);
            match status.state {
                Ok(ConnectionState::EncodeTlsData(mut enc)) => {
                    encode_record(&mut enc, &mut self.outgoing)
                }
                Ok(ConnectionState::ReadTraffic(mut rd)) => {
                    while let Some(Ok(rec)) = rd.next_record() {
                        append_received(&mut self.received, &mut self.received_start, rec.payload);
                    }
                }
                _ => break,
            }
        }
        self.incoming = Vec::new();
    }

    /// Drops the first `consumed` bytes of `incoming`; frees it when empty (or when the
    /// peer has closed, after which rustls reads no more input), else trims the capacity
    /// to what the record in progress needs.
    fn settle_incoming(&mut self, consumed: usize) {
        if consumed >= self.incoming.len() || self.peer_closed {
            self.incoming = Vec::new();
            return;
        }
        self.incoming.drain(..consumed);
        let keep = self.incoming.len() + record_rest(&self.incoming);
        self.incoming.shrink_to(keep);
    }
}

/// How many more bytes complete the record that starts `buf`, per its header; 0 when the
/// header is incomplete or not plausible. Only a size hint: while rustls joins a handshake
/// message the front of the buffer may no longer be a record header.
fn record_rest(buf: &[u8]) -> usize {
    match buf {
        [_, _, _, hi, lo, ..] => {
            let total = 5 + usize::from(u16::from_be_bytes([*hi, *lo]));
            if total <= MAX_WIRE_SIZE {
                total.saturating_sub(buf.len())
            } else {
                0
            }
        }
        _ => 0,
    }
}

fn append_received(received: &mut Vec<u8>, start: &mut usize, data: &[u8]) {
    if *start > 0 {
        received.drain(..*start);
        *start = 0;
    }
    received.extend_from_slice(data);
}

/// Appends one record rustls has ready (handshake message or alert) to `out`.
fn encode_record(enc: &mut EncodeTlsData<'_, ServerConnectionData>, out: &mut Vec<u8>) {
    // An empty slice makes rustls report the exact size without giving up the record.
    let need = match enc.encode(&mut []) {
        Err(EncodeError::InsufficientSize(s)) => s.required_size,
        // Empty record (written, 0 bytes) or already taken: nothing to append.
        Ok(_) | Err(EncodeError::AlreadyEncoded) => return,
    };
    let at = out.len();
    out.resize(at + need, 0);
    // With exactly `need` bytes of room this cannot fail; if it did, append nothing.
    let n = enc.encode(&mut out[at..]).unwrap_or(0);
    out.truncate(at + n);
}

/// Encrypts `data` as application data records appended to `out`.
fn encrypt_into(
    wr: &mut WriteTraffic<'_, ServerConnectionData>,
    data: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EncryptError> {
    if data.is_empty() {
        return Ok(());
    }
    let guess = data.len() + (data.len() / MAX_FRAGMENT + 1) * RECORD_OVERHEAD_GUESS;
    append_with(out, guess, |buf| wr.encrypt(data, buf))
}

/// Appends what `write` produces to `out`, offering `guess` bytes of room first and
/// exactly the size rustls asks for if that is not enough. `write` must leave the buffer
/// untouched when it reports `InsufficientSize` (rustls' `encrypt` and
/// `queue_close_notify` do).
fn append_with(
    out: &mut Vec<u8>,
    guess: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> Result<(), EncryptError> {
    let at = out.len();
    let mut room = guess;
    loop {
        out.resize(at + room, 0);
        match write(&mut out[at..]) {
            Ok(n) => {
                out.truncate(at + n.min(room));
                return Ok(());
            }
            // Strictly growing `room` bounds the retries.
            Err(EncryptError::InsufficientSize(s)) if s.required_size > room => {
                room = s.required_size;
            }
            Err(e) => {
                out.truncate(at);
                return Err(e);
            }
        }
    }
}

impl fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConn")
            .field("handshaking", &self.is_handshaking())
            .field("wants_read", &self.wants_read())
            .field("wants_write", &self.wants_write())
            .field("buffered_bytes", &self.buffered_bytes())
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

    /// Handshakes `version` and exchanges one small message each way, everything drained.
    fn connected_pair(
        version: &'static rustls::SupportedProtocolVersion,
    ) -> (ClientConnection, TlsConn, Pipe, Pipe) {
        let name = ServerName::try_from("sigyard.test").expect("valid name");
        let mut client = ClientConnection::new(client_config(version), name).expect("client");
        let mut server = TlsConn::new(server_config()).expect("server");
        let (mut c2s, mut s2c) = (Pipe::default(), Pipe::default());
        handshake(&mut client, &mut server, &mut c2s, &mut s2c);
        client.writer().write_all(b"ping").expect("client writes");
        client_io(&mut client, &mut c2s, &mut s2c);
        server_io(&mut server, &mut c2s, &mut s2c).expect("server io");
        assert_eq!(drain_plaintext(&mut server), b"ping");
        assert_eq!(server.write_plaintext(b"pong"), 4);
        server_io(&mut server, &mut c2s, &mut s2c).expect("flush");
        client_io(&mut client, &mut c2s, &mut s2c);
        let mut got = [0u8; 8];
        let n = client.reader().read(&mut got).expect("client reads");
        assert_eq!(&got[..n], b"pong");
        (client, server, c2s, s2c)
    }

    #[test]
    fn idle_connection_holds_no_adapter_buffers() {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let fresh = TlsConn::new(server_config()).expect("server");
            assert_eq!(fresh.buffered_bytes(), 0, "{:?}", version.version);
            let (mut client, mut server, mut c2s, mut s2c) = connected_pair(version);
            assert_eq!(server.buffered_bytes(), 0, "{:?} idle", version.version);

            // Busy: queued ciphertext and unread plaintext hold buffers...
            assert_eq!(server.write_plaintext(&[b'x'; 3000]), 3000);
            assert!(server.buffered_bytes() >= 3000);
            client
                .writer()
                .write_all(&[b'y'; 5000])
                .expect("client writes");
            client_io(&mut client, &mut c2s, &mut s2c);
            server_io(&mut server, &mut c2s, &mut s2c).expect("server io");
            // ... and give them back once drained.
            assert_eq!(drain_plaintext(&mut server), [b'y'; 5000]);
            assert_eq!(server.buffered_bytes(), 0, "{:?} drained", version.version);
        }
    }

    /// Handshakes a client limited to `suite` and exchanges `msg` both ways.
    fn exchange_with_suite(suite: rustls::SupportedCipherSuite, msg: &[u8]) -> Option<TlsConn> {
        let version = match suite {
            rustls::SupportedCipherSuite::Tls13(_) => &rustls::version::TLS13,
            rustls::SupportedCipherSuite::Tls12(_) => &rustls::version::TLS12,
        };
        let mut provider = rustls::crypto::ring::default_provider();
        provider.cipher_suites = vec![suite];
        let mut cfg = (*client_config(version)).clone();
        let roots = {
            let mut r = RootCertStore::empty();
            let pem = std::fs::read(dev_cert()).expect("read dev cert");
            for cert in CertificateDer::pem_slice_iter(&pem) {
                r.add(cert.expect("PEM")).expect("root");
            }
            r
        };
        let mut c = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[version])
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        c.alpn_protocols = std::mem::take(&mut cfg.alpn_protocols);
        let name = ServerName::try_from("sigyard.test").expect("valid name");
        let mut client = ClientConnection::new(Arc::new(c), name).expect("client");
        let mut server = TlsConn::new(server_config()).expect("server");
        let (mut c2s, mut s2c) = (Pipe::default(), Pipe::default());
        for _ in 0..10 {
            client_io(&mut client, &mut c2s, &mut s2c);
            if server_io(&mut server, &mut c2s, &mut s2c).is_err() {
                return None; // no signature scheme for this key type
            }
            if !client.is_handshaking() && !server.is_handshaking() {
                break;
            }
        }
        assert_eq!(client.negotiated_cipher_suite(), Some(suite));
        client.writer().write_all(msg).expect("client writes");
        client_io(&mut client, &mut c2s, &mut s2c);
        let mut got = Vec::new();
        while !c2s.buf.is_empty() {
            server.read_tls_from(&mut c2s).expect("server reads");
            got.extend_from_slice(&drain_plaintext(&mut server));
        }
        assert_eq!(got, msg, "{:?}", suite.suite());
        let mut left = msg;
        while !left.is_empty() {
            let n = server.write_plaintext(left);
            left = &left[n..];
            server_io(&mut server, &mut c2s, &mut s2c).expect("flush");
        }
        let mut got = Vec::new();
        while !s2c.buf.is_empty() {
            client.read_tls(&mut s2c).expect("client read_tls");
            client.process_new_packets().expect("client process");
            let _ = client.reader().read_to_end(&mut got); // ends in WouldBlock
        }
        assert_eq!(got, msg, "{:?}", suite.suite());
        Some(server)
    }

    #[test]
    fn every_cipher_suite_interoperates_with_rustls_own_ring_provider() {
        let msg: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        let mut done = Vec::new();
        for suite in rustls::crypto::ring::default_provider().cipher_suites {
            for size in [1, 100, msg.len()] {
                if exchange_with_suite(suite, &msg[..size]).is_some() {
                    done.push(suite.suite());
                }
            }
        }
        done.dedup();
        // The dev key is ECDSA: all three TLS 1.3 suites and the three ECDSA TLS 1.2 ones.
        assert_eq!(done.len(), 6, "{done:?}");
    }

    #[test]
    fn record_keys_survive_eviction_and_moving_threads() {
        // More connections than one thread keeps expanded keys for, each used in turn
        // twice: every record still opens, and so do those of a connection on another thread.
        let mut pairs: Vec<_> = (0..keys::HOT_KEYS / 2 + 20)
            .map(|i| {
                let version = if i % 2 == 0 {
                    &rustls::version::TLS13
                } else {
                    &rustls::version::TLS12
                };
                connected_pair(version)
            })
            .collect();
        for round in 0..2 {
            for (client, server, c2s, s2c) in pairs.iter_mut() {
                let msg = format!("round {round}");
                client
                    .writer()
                    .write_all(msg.as_bytes())
                    .expect("client writes");
                client_io(client, c2s, s2c);
                server_io(server, c2s, s2c).expect("server io");
                assert_eq!(drain_plaintext(server), msg.as_bytes());
                assert_eq!(server.write_plaintext(b"ack"), 3);
                server_io(server, c2s, s2c).expect("flush");
                client_io(client, c2s, s2c);
                let mut got = [0u8; 8];
                let n = client.reader().read(&mut got).expect("client reads");
                assert_eq!(&got[..n], b"ack");
            }
        }
        let (mut client, mut server, mut c2s, mut s2c) = pairs.pop().expect("a pair");
        client.writer().write_all(b"moved").expect("client writes");
        client_io(&mut client, &mut c2s, &mut s2c);
        let (server, c2s, mut s2c) = std::thread::spawn(move || {
            server_io(&mut server, &mut c2s, &mut s2c).expect("server io");
            assert_eq!(drain_plaintext(&mut server), b"moved");
            assert_eq!(server.write_plaintext(b"from there"), 10);
            server_io(&mut server, &mut c2s, &mut s2c).expect("flush");
            (server, c2s, s2c)
        })
        .join()
        .expect("thread");
        drop((server, c2s));
        client_io(&mut client, &mut Pipe::default(), &mut s2c);
        let mut got = [0u8; 16];
        let n = client.reader().read(&mut got).expect("client reads");
        assert_eq!(&got[..n], b"from there");
    }

    /// A reader that hands out at most `max` bytes per `read`, like a slow network.
    struct Trickle<'a> {
        pipe: &'a mut Pipe,
        max: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = out.len().min(self.max);
            self.pipe.read(&mut out[..n])
        }
    }

    #[test]
    fn records_and_handshake_messages_split_across_reads() {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            // Small client records: the ClientHello spans several records, which rustls
            // joins in the adapter's incoming buffer; every read delivers 7 bytes.
            let mut cfg = (*client_config(version)).clone();
            cfg.max_fragment_size = Some(64);
            let name = ServerName::try_from("sigyard.test").expect("valid name");
            let mut client = ClientConnection::new(Arc::new(cfg), name).expect("client");
            let mut server = TlsConn::new(server_config()).expect("server");
            let (mut c2s, mut s2c) = (Pipe::default(), Pipe::default());
            let mut got = Vec::new();
            for _ in 0..10 {
                client_io(&mut client, &mut c2s, &mut s2c);
                while !c2s.buf.is_empty() {
                    let mut rd = Trickle {
                        pipe: &mut c2s,
                        max: 7,
                    };
                    assert!(server.read_tls_from(&mut rd).expect("server reads") > 0);
                    got.extend_from_slice(&drain_plaintext(&mut server));
                }
                while server.wants_write() {
                    server.write_tls_to(&mut s2c).expect("flush");
                }
                client_io(&mut client, &mut c2s, &mut s2c);
                if !client.is_handshaking() && !server.is_handshaking() {
                    break;
                }
            }
            assert!(!server.is_handshaking(), "{:?}", version.version);

            // A 40 KB message in 64-byte records, 7 bytes per read; then 16 KiB records
            // with whole-record reads sized from the record header.
            let msg: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
            client.writer().write_all(&msg).expect("client writes");
            client_io(&mut client, &mut c2s, &mut s2c);
            while !c2s.buf.is_empty() {
                let mut rd = Trickle {
                    pipe: &mut c2s,
                    max: 7,
                };
                server.read_tls_from(&mut rd).expect("server reads");
                got.extend_from_slice(&drain_plaintext(&mut server));
                assert!(
                    server.buffered_bytes() <= 4096 + 64,
                    "{}",
                    server.buffered_bytes()
                );
            }
            assert_eq!(got, msg, "{:?}", version.version);
            assert_eq!(server.buffered_bytes(), 0);
        }
    }

    #[test]
    fn unread_plaintext_stops_reading_until_drained() {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let (mut client, mut server, mut c2s, _s2c) = connected_pair(version);
            let msg: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
            for part in msg.chunks(32 * 1024) {
                client.writer().write_all(part).expect("client writes");
                while client.wants_write() {
                    client.write_tls(&mut c2s).expect("client write_tls");
                }
            }

            let mut got = Vec::new();
            let mut refusals = 0;
            loop {
                match server.read_tls_from(&mut c2s) {
                    Ok(n) => assert!(n > 0),
                    Err(TlsIoError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(TlsIoError::Io(e)) if e.kind() == io::ErrorKind::Other => {
                        refusals += 1;
                        assert!(!server.wants_read());
                        // What waits is bounded: the limit plus what one read completed.
                        let before = got.len();
                        got.extend_from_slice(&drain_plaintext(&mut server));
                        let held = got.len() - before;
                        assert!(
                            held <= RECEIVED_PLAINTEXT_LIMIT + MAX_WIRE_SIZE + READ_SIZE,
                            "{held}"
                        );
                        assert!(held > RECEIVED_PLAINTEXT_LIMIT, "{held}");
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            got.extend_from_slice(&drain_plaintext(&mut server));
            assert!(refusals > 0, "the limit was never reached");
            assert_eq!(got, msg, "{:?}", version.version);
            assert_eq!(server.buffered_bytes(), 0);
        }
    }

    #[test]
    fn close_notify_during_handshake_is_sent_once_the_server_may_send() {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let name = ServerName::try_from("sigyard.test").expect("valid name");
            let mut client = ClientConnection::new(client_config(version), name).expect("client");
            let mut server = TlsConn::new(server_config()).expect("server");
            let (mut c2s, mut s2c) = (Pipe::default(), Pipe::default());
            assert_eq!(server.write_plaintext(b"bye"), 3);
            server.send_close_notify();
            assert!(!server.wants_write(), "nothing can be queued yet");
            assert_eq!(server.write_plaintext(b"too late"), 0);
            handshake(&mut client, &mut server, &mut c2s, &mut s2c);
            client_io(&mut client, &mut c2s, &mut s2c);
            let mut got = [0u8; 16];
            let n = client.reader().read(&mut got).expect("client reads");
            assert_eq!(&got[..n], b"bye", "{:?}", version.version);
            let state = client.process_new_packets().expect("client state");
            assert!(state.peer_has_closed(), "{:?}", version.version);
        }
    }

    #[test]
    fn tls13_key_update_from_the_client_is_answered() {
        let (mut client, mut server, mut c2s, mut s2c) = connected_pair(&rustls::version::TLS13);
        client.refresh_traffic_keys().expect("key update");
        client
            .writer()
            .write_all(b"after update")
            .expect("client writes");
        client_io(&mut client, &mut c2s, &mut s2c);
        server_io(&mut server, &mut c2s, &mut s2c).expect("server io");
        assert_eq!(drain_plaintext(&mut server), b"after update");
        assert_eq!(server.write_plaintext(b"still here"), 10);
        server_io(&mut server, &mut c2s, &mut s2c).expect("flush");
        client_io(&mut client, &mut c2s, &mut s2c);
        let mut got = [0u8; 16];
        let n = client.reader().read(&mut got).expect("client reads");
        assert_eq!(&got[..n], b"still here");
        assert_eq!(server.buffered_bytes(), 0);
    }

    #[test]
    fn fatal_error_during_handshake_flushes_one_alert_and_sticks() {
        // A ClientHello record followed by garbage: the hello is answered, then the
        // garbage fails with one alert after the server's flight.
        let name = ServerName::try_from("sigyard.test").expect("valid name");
        let mut client =
            ClientConnection::new(client_config(&rustls::version::TLS12), name).expect("client");
        let mut server = TlsConn::new(server_config()).expect("server");
        let (mut c2s, mut s2c) = (Pipe::default(), Pipe::default());
        client.write_tls(&mut c2s).expect("client hello");
        c2s.buf
            .extend_from_slice(&[0x16, 3, 3, 0, 4, 0xff, 0, 0, 0]);
        let err = server_io(&mut server, &mut c2s, &mut s2c).expect_err("garbage");
        assert!(matches!(err, TlsIoError::Tls(_)), "{err}");
        assert_eq!(server.buffered_bytes(), server.outgoing.capacity());
        while server.wants_write() {
            server.write_tls_to(&mut s2c).expect("flush");
        }
        // The last record is the fatal alert, and there is exactly one alert.
        let alerts = records(&s2c.buf)
            .into_iter()
            .filter(|r| r[0] == 0x15)
            .count();
        assert_eq!(alerts, 1, "{:?}", records(&s2c.buf));
        assert_eq!(records(&s2c.buf).last().map(|r| r[0]), Some(0x15));
        c2s.buf.extend_from_slice(b"more");
        assert!(matches!(
            server.read_tls_from(&mut c2s),
            Err(TlsIoError::Tls(_))
        ));
        assert_eq!(server.write_plaintext(b"x"), 0);
        server.send_close_notify();
        assert!(!server.wants_write());
    }

    /// Splits a byte stream into TLS records (header included).
    fn records(mut buf: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        while buf.len() >= 5 {
            let len = 5 + usize::from(u16::from_be_bytes([buf[3], buf[4]]));
            let (rec, rest) = buf.split_at(len.min(buf.len()));
            out.push(rec);
            buf = rest;
        }
        out
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
