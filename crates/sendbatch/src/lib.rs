//! Many non-blocking socket sends in one system call.
//!
//! A server that answers several connections in one turn of its event loop pays one `send(2)`
//! per connection. [`Batch::send`] hands them all to the kernel in one `io_uring_enter(2)`
//! instead, and returns each one's result. Every send is made with `MSG_DONTWAIT`: it takes
//! what the socket's buffer has room for and never waits, exactly like a `send` on a
//! non-blocking socket, so the caller's readiness logic (`EAGAIN`, partial writes) is
//! unchanged.
//!
//! This crate holds the only `unsafe` code of sigyard, and it is the submission of a send
//! whose bytes the kernel reads later. The API makes that safe by borrowing: `send` takes the
//! bytes as `&[u8]` for the length of the call and returns only when the kernel has finished
//! with every send it took. When it cannot be sure of that (an `io_uring_enter` error that
//! leaves sends queued in the ring), the batch is closed for good: what is queued is never
//! submitted, and every later call says [`Closed`].

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use io_uring::{opcode, types, IoUring};

/// A ring for batched sends. One per thread: it is not shared. Make it on the thread that
/// uses it: the kernel ties a ring to the thread that creates it, and when the ring closes it
/// has that thread finish its part, interrupting a blocking system call there (`EINTR`).
pub struct Batch {
    ring: IoUring,
    closed: bool,
}

/// The batch stopped taking sends after an `io_uring_enter` error (see [`Batch::send`]).
#[derive(Debug)]
pub struct Closed(pub io::Error);

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "io_uring send batch closed: {}", self.0)
    }
}

impl std::error::Error for Closed {}

impl Batch {
    /// A ring taking up to `entries` sends per system call (rounded up to a power of two by
    /// the kernel). Fails where io_uring is unavailable: kernels before 5.6, or a seccomp
    /// profile that refuses `io_uring_setup` (Docker's default does).
    pub fn new(entries: u32) -> io::Result<Batch> {
        let ring = IoUring::builder().build(entries.max(1))?;
        // Every send has MSG_DONTWAIT, so each completes inside the call that submits it; a
        // kernel without IORING_FEAT_NODROP could still drop completions under pressure, and
        // `send` counts on seeing every one.
        if !ring.params().is_feature_nodrop() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this kernel's io_uring may drop completions (no IORING_FEAT_NODROP)",
            ));
        }
        Ok(Batch {
            ring,
            closed: false,
        })
    }

    /// Sends per system call.
    pub fn capacity(&mut self) -> usize {
        self.ring.submission().capacity()
    }

    /// Send each `(socket, bytes, tag, more)` of `sends` without blocking and without `SIGPIPE`
    /// (with `MSG_MORE` where `more` is set: the caller will send more, or close, right after,
    /// so a last partial segment waits for it, and a close sends it with the FIN), and
    /// push each one's `(tag, result)` onto `results`, in the order the kernel finished them:
    /// the bytes taken (possibly fewer than given: the socket's buffer is full), or the error
    /// `send(2)` would give (`WouldBlock` when there was no room at all).
    ///
    /// Returns once the kernel is done with every send it was given. On an `io_uring_enter`
    /// error the sends it did not take get no result, and the batch is closed.
    pub fn send<'a, I>(
        &mut self,
        sends: I,
        results: &mut Vec<(u64, io::Result<usize>)>,
    ) -> Result<(), Closed>
    where
        I: IntoIterator<Item = (BorrowedFd<'a>, &'a [u8], u64, bool)>,
    {
        if self.closed {
            return Err(Closed(io::Error::other("closed by an earlier error")));
        }
        let cap = self.capacity();
        let mut sends = sends.into_iter().peekable();
        while sends.peek().is_some() {
            let mut queued = 0;
            {
                let mut sq = self.ring.submission();
                for (fd, bytes, tag, more) in sends.by_ref().take(cap) {
                    let len = bytes.len().min(u32::MAX as usize) as u32;
                    let more = if more { libc::MSG_MORE } else { 0 };
                    let sqe = opcode::Send::new(types::Fd(fd.as_raw_fd()), bytes.as_ptr(), len)
                        .flags(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL | more)
                        .build()
                        .user_data(tag);
                    // SAFETY: the entry names `bytes` and `fd`, borrowed for `'a`, which
                    // outlives this call; the call does not return before the kernel has
                    // completed the entry (`finish`), or, when that cannot be known, closes
                    // the batch so the entry is never submitted. At most `cap` entries are
                    // queued between submissions, so the push cannot fail.
                    let pushed = unsafe { sq.push(&sqe) };
                    debug_assert!(pushed.is_ok());
                    queued += 1;
                }
            }
            self.finish(queued, results)?;
        }
        Ok(())
    }

    /// Submit the `queued` entries and collect their completions.
    fn finish(
        &mut self,
        queued: usize,
        results: &mut Vec<(u64, io::Result<usize>)>,
    ) -> Result<(), Closed> {
        let mut done = 0;
        let mut retries = 0;
        while done < queued {
            let entered = self.ring.submit_and_wait(queued - done);
            for cqe in self.ring.completion() {
                let r = cqe.result();
                let result = if r >= 0 {
                    Ok(r as usize)
                } else {
                    Err(io::Error::from_raw_os_error(-r))
                };
                results.push((cqe.user_data(), result));
                done += 1;
            }
            let Err(e) = entered else { continue };
            let transient = matches!(
                e.raw_os_error(),
                Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
            );
            retries += 1;
            if done == queued || (transient && retries < MAX_RETRIES) {
                continue;
            }
            // Entries the kernel did not take stay in the ring, naming bytes that are about to
            // be given back: never enter the ring again.
            self.closed = true;
            let in_flight = queued - done - self.ring.submission().len();
            if in_flight > 0 {
                // Taken by the kernel, not finished, and no way left to wait for them.
                eprintln!(
                    "sigyard-sendbatch: {in_flight} io_uring sends still in flight after: {e}"
                );
                std::process::abort();
            }
            return Err(Closed(e));
        }
        Ok(())
    }
}

/// Transient `io_uring_enter` errors (a signal, no memory for a moment) retried in one call.
const MAX_RETRIES: u32 = 1000;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    fn batch() -> Option<Batch> {
        match Batch::new(4) {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("io_uring unavailable here ({e}): nothing to test");
                None
            }
        }
    }

    #[test]
    fn sends_on_many_sockets_in_order_and_more_than_one_ring_full() {
        let Some(mut b) = batch() else { return };
        let pairs: Vec<_> = (0..10).map(|_| UnixStream::pair().unwrap()).collect();
        let words: Vec<Vec<u8>> = (0..10)
            .map(|i| format!("message {i}").into_bytes())
            .collect();
        let mut results = Vec::new();
        let sends = pairs
            .iter()
            .zip(&words)
            .enumerate()
            .map(|(i, ((a, _), w))| (a.as_fd(), &w[..], i as u64, false));
        b.send(sends, &mut results).unwrap();
        assert_eq!(results.len(), 10);
        results.sort_by_key(|r| r.0);
        for (i, (tag, r)) in results.iter().enumerate() {
            assert_eq!(*tag, i as u64);
            assert_eq!(*r.as_ref().unwrap(), words[i].len());
            let mut got = vec![0; words[i].len()];
            pairs[i]
                .1
                .try_clone()
                .unwrap()
                .read_exact(&mut got)
                .unwrap();
            assert_eq!(got, words[i]);
        }
    }

    /// Bytes a TCP socket holds that it has not sent yet (`SIOCOUTQNSD`).
    fn unsent(sock: &std::net::TcpStream) -> libc::c_int {
        let mut n: libc::c_int = -1;
        // SAFETY: the ioctl writes one int through a valid pointer to a local.
        let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCOUTQNSD, &mut n) };
        assert_eq!(r, 0, "{}", io::Error::last_os_error());
        n
    }

    #[test]
    fn more_holds_a_small_send_that_the_close_then_sends() {
        use std::net::{TcpListener, TcpStream};
        let Some(mut b) = batch() else { return };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nodelay(true).unwrap();
        let mut results = Vec::new();
        b.send([(server.as_fd(), &b"sent"[..], 1, false)], &mut results)
            .unwrap();
        assert_eq!(unsent(&server), 0);
        b.send([(server.as_fd(), &b"last"[..], 2, true)], &mut results)
            .unwrap();
        assert_eq!(*results[1].1.as_ref().unwrap(), 4);
        // Held (for up to 200 ms), though the socket has TCP_NODELAY...
        assert_eq!(unsent(&server), 4);
        // ...and sent by the close, before the end of the stream.
        drop(server);
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"sentlast");
    }

    #[test]
    fn a_full_socket_takes_part_then_would_block_and_a_closed_one_fails_without_sigpipe() {
        let Some(mut b) = batch() else { return };
        let (full, _keep) = UnixStream::pair().unwrap();
        full.set_nonblocking(true).unwrap();
        let big = vec![7u8; 8 << 20];
        let mut results = Vec::new();
        b.send([(full.as_fd(), &big[..], 1, false)], &mut results)
            .unwrap();
        let taken = *results[0].1.as_ref().unwrap();
        assert!(taken > 0 && taken < big.len(), "took {taken}");
        results.clear();
        b.send([(full.as_fd(), &big[..], 2, false)], &mut results)
            .unwrap();
        assert_eq!(
            results[0].1.as_ref().unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );

        let (lone, gone) = UnixStream::pair().unwrap();
        drop(gone);
        results.clear();
        b.send([(lone.as_fd(), &b"x"[..], 3, false)], &mut results)
            .unwrap();
        assert_eq!(
            results[0].1.as_ref().unwrap_err().raw_os_error(),
            Some(libc::EPIPE)
        );
        // Still usable after errors of single sends.
        let (a, mut c) = UnixStream::pair().unwrap();
        results.clear();
        b.send([(a.as_fd(), &b"ok"[..], 4, false)], &mut results)
            .unwrap();
        let mut got = [0; 2];
        c.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ok");
        c.write_all(b"").unwrap();
    }
}
