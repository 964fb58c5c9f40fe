//! One blocking connection to Redis (plain, or TLS with rustls for `rediss://`), RESP2
//! through the `redis-protocol` codec. Used only by the cluster's bridge threads: no reactor
//! ever touches it.

use crate::cluster::RedisUrl;
use crate::secret::Secret;
use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::encode::encode_borrowed;
use redis_protocol::resp2::types::{BorrowedFrame, OwnedFrame};
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A reply, or the error Redis answered with (the connection is still good after one).
pub(crate) type Reply = Result<OwnedFrame, String>;

/// The connection's byte stream.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(t) => t.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(t) => t.flush(),
        }
    }
}

/// A TLS client trusting the certificates in `ca_file` (rustls, ring).
fn tls_config(ca_file: &Path) -> io::Result<Arc<rustls::ClientConfig>> {
    let bad = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
    let shown = ca_file.display();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| bad(format!("--cluster-ca-file: cannot read {shown}: {e}")))?
        .flatten()
    {
        let _ = roots.add(c);
    }
    if roots.is_empty() {
        return Err(bad(format!(
            "--cluster-ca-file: no usable certificate in {shown}"
        )));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

pub(crate) struct Redis {
    sock: Stream,
    rbuf: Vec<u8>,
    rpos: usize,
    wbuf: Vec<u8>,
}

impl Redis {
    /// Connect, authenticate and select the database, each step bounded by `timeout`.
    pub fn open(
        url: &RedisUrl,
        password: Option<&Secret>,
        ca_file: &Path,
        timeout: Duration,
    ) -> io::Result<Redis> {
        let addr = (url.host.as_str(), url.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
        let tcp = TcpStream::connect_timeout(&addr, timeout)?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        let sock = if url.tls {
            let name = ServerName::try_from(url.host.clone())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
            let conn = rustls::ClientConnection::new(tls_config(ca_file)?, name)
                .map_err(io::Error::other)?;
            let mut s = rustls::StreamOwned::new(conn, tcp);
            // The handshake now, so that a certificate Redis's name does not match is an
            // error here, not at the first command.
            while s.conn.is_handshaking() {
                s.conn.complete_io(&mut s.sock)?;
            }
            Stream::Tls(Box::new(s))
        } else {
            Stream::Plain(tcp)
        };
        let mut r = Redis {
            sock,
            rbuf: Vec::with_capacity(16 * 1024),
            rpos: 0,
            wbuf: Vec::with_capacity(16 * 1024),
        };
        let password = url.password.as_ref().or(password);
        if let Some(p) = password {
            let user = url.user.as_deref().unwrap_or("default");
            r.call(&[b"AUTH", user.as_bytes(), p.expose().as_bytes()])?
                .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e))?;
        }
        if url.db != 0 {
            r.call(&[b"SELECT", url.db.to_string().as_bytes()])?
                .map_err(io::Error::other)?;
        }
        Ok(r)
    }

    /// How long a read may block (the subscriber wakes up to check for shutdown).
    pub fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        self.sock.tcp().set_read_timeout(Some(t))
    }

    /// Queue one command (sent by [`Redis::flush`]).
    pub fn push(&mut self, args: &[&[u8]]) {
        let frames: Vec<BorrowedFrame<'_>> =
            args.iter().map(|a| BorrowedFrame::BulkString(a)).collect();
        let frame = BorrowedFrame::Array(&frames);
        let start = self.wbuf.len();
        self.wbuf.resize(start + frame.encode_len(false), 0);
        // The buffer is sized by the codec itself: encoding cannot run out of room.
        let n = encode_borrowed(&mut self.wbuf[start..], &frame, false).unwrap_or(0);
        self.wbuf.truncate(start + n);
    }

    pub fn flush(&mut self) -> io::Result<()> {
        let r = self.sock.write_all(&self.wbuf);
        self.wbuf.clear();
        r
    }

    /// The next reply (blocking up to the read timeout).
    pub fn read(&mut self) -> io::Result<Reply> {
        loop {
            if self.rpos < self.rbuf.len() {
                match decode(&self.rbuf[self.rpos..]) {
                    Ok(Some((frame, used))) => {
                        self.rpos += used;
                        if self.rpos == self.rbuf.len() {
                            self.rbuf.clear();
                            self.rpos = 0;
                        }
                        return Ok(match frame {
                            OwnedFrame::Error(e) => Err(e),
                            f => Ok(f),
                        });
                    }
                    Ok(None) => {}
                    Err(e) => {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
                    }
                }
            }
            if self.rpos > 0 {
                self.rbuf.drain(..self.rpos);
                self.rpos = 0;
            }
            let start = self.rbuf.len();
            self.rbuf.resize(start + 64 * 1024, 0);
            match self.sock.read(&mut self.rbuf[start..]) {
                Ok(0) => {
                    self.rbuf.truncate(start);
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "Redis closed the connection",
                    ));
                }
                Ok(n) => self.rbuf.truncate(start + n),
                // A read with a timeout is not restarted after the process was stopped and
                // continued (SIGSTOP, SIGCONT): read again.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.rbuf.truncate(start),
                Err(e) => {
                    self.rbuf.truncate(start);
                    return Err(e);
                }
            }
        }
    }

    /// One command and its reply.
    pub fn call(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        self.push(args);
        self.flush()?;
        self.read()
    }
}

/// The integer in a reply (Redis answers integers, or numbers as bulk strings from scripts).
pub(crate) fn int(f: &OwnedFrame) -> Option<i64> {
    match f {
        OwnedFrame::Integer(i) => Some(*i),
        OwnedFrame::BulkString(b) | OwnedFrame::SimpleString(b) => {
            std::str::from_utf8(b).ok()?.parse().ok()
        }
        _ => None,
    }
}
