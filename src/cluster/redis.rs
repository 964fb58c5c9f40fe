//! One blocking connection to Redis, RESP2 through the `redis-protocol` codec. Used only by
//! the cluster's bridge threads: no reactor ever touches it.

use crate::cluster::RedisUrl;
use crate::secret::Secret;
use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::encode::encode_borrowed;
use redis_protocol::resp2::types::{BorrowedFrame, OwnedFrame};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// A reply, or the error Redis answered with (the connection is still good after one).
pub(crate) type Reply = Result<OwnedFrame, String>;

pub(crate) struct Redis {
    sock: TcpStream,
    rbuf: Vec<u8>,
    rpos: usize,
    wbuf: Vec<u8>,
}

impl Redis {
    /// Connect, authenticate and select the database, each step bounded by `timeout`.
    pub fn open(url: &RedisUrl, password: Option<&Secret>, timeout: Duration) -> io::Result<Redis> {
        let addr = (url.host.as_str(), url.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
        let sock = TcpStream::connect_timeout(&addr, timeout)?;
        sock.set_nodelay(true)?;
        sock.set_read_timeout(Some(timeout))?;
        sock.set_write_timeout(Some(timeout))?;
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
        self.sock.set_read_timeout(Some(t))
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
