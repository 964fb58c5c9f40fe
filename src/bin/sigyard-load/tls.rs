//! The client transport: a plain non-blocking TCP stream, or the same stream under a rustls
//! client session (`wss://`). Both present `read`/`write` with the semantics the engine
//! expects of a non-blocking socket: `WouldBlock` when nothing can move now, `Ok(0)` from
//! `read` at the end of the stream.
//!
//! The load tool is a client that must not be the bottleneck, not a server that must be lean,
//! so it uses rustls' buffered `ClientConnection`.

use mio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

/// Where the trusted roots for `wss://` come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// PEM certificates from a file (`--ca`), or the system bundle by default.
    Roots(String),
    /// `--insecure`: accept any certificate (loopback benchmarking with a throw-away cert).
    Anything,
}

/// The system's CA bundle on Debian and most Linux distributions.
pub const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// TLS settings shared by every connection of a run.
#[derive(Debug, Clone)]
pub struct Tls {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
}

impl Tls {
    /// A client configuration for `host` (the URL's host, without the port).
    pub fn new(host: &str, trust: &Trust) -> Result<Tls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let config = match trust {
            Trust::Roots(path) => {
                let mut roots = RootCertStore::empty();
                let certs = CertificateDer::pem_file_iter(Path::new(path))
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("--ca {path}: {e}"))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(format!("--ca {path}: no usable certificate in the file"));
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            Trust::Anything => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
                .with_no_client_auth(),
        };
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| format!("--url: '{host}' is not a TLS server name: {e}"))?;
        Ok(Tls {
            config: Arc::new(config),
            name,
        })
    }
}

/// One connection's byte stream.
pub enum Io {
    Plain(TcpStream),
    Tls(Box<(TcpStream, ClientConnection)>),
}

impl Io {
    pub fn new(sock: TcpStream, tls: Option<&Tls>) -> io::Result<Io> {
        Ok(match tls {
            None => Io::Plain(sock),
            Some(t) => {
                let conn = ClientConnection::new(t.config.clone(), t.name.clone())
                    .map_err(io::Error::other)?;
                Io::Tls(Box::new((sock, conn)))
            }
        })
    }

    pub fn tcp(&mut self) -> &mut TcpStream {
        match self {
            Io::Plain(s) => s,
            Io::Tls(b) => &mut b.0,
        }
    }

    /// Plaintext in; `WouldBlock` when none is available yet.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (sock, conn) = match self {
            Io::Plain(s) => return s.read(buf),
            Io::Tls(b) => (&mut b.0, &mut b.1),
        };
        loop {
            match conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The server closed TCP without close_notify: report it as the end.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            match conn.read_tls(sock) {
                Ok(0) => return Ok(0),
                Ok(_) => {
                    let state = conn.process_new_packets().map_err(io::Error::other);
                    // Handshake messages and alerts the session wants to send now.
                    flush_tls(sock, conn)?;
                    state?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Plaintext out. Everything accepted is on its way once the socket takes it; `Ok(0)`
    /// means the session's send buffer is full (wait for writability).
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (sock, conn) = match self {
            Io::Plain(s) => return s.write(buf),
            Io::Tls(b) => (&mut b.0, &mut b.1),
        };
        flush_tls(sock, conn)?;
        let n = conn.writer().write(buf)?;
        flush_tls(sock, conn)?;
        Ok(n)
    }

    /// Push pending ciphertext (handshake records, queued data) to the socket.
    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            Io::Plain(_) => Ok(()),
            Io::Tls(b) => {
                let (sock, conn) = &mut **b;
                flush_tls(sock, conn)
            }
        }
    }
}

fn flush_tls(sock: &mut TcpStream, conn: &mut ClientConnection) -> io::Result<()> {
    while conn.wants_write() {
        match conn.write_tls(sock) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `--insecure`: signatures are still checked (the handshake stays a real one, with its real
/// cost), only the certificate chain is not.
#[derive(Debug)]
struct AcceptAnything(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
