//! The same echo on io_uring (`--uring`): a multishot `accept` on the listener, one multishot
//! `recv` per connection into a ring of provided buffers, each readiness's answer one `send`,
//! and `close` as a request too, so that one `io_uring_enter` per loop turn submits every
//! request the turn made and waits for the next completions. No epoll, no `epoll_ctl`.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use crate::{answer, Conn};

const BUFFERS: u16 = 4096;
const BUFFER_BYTES: usize = 4096;
const GROUP: u16 = 0;

// user_data: the kind in the top byte, the slot's generation in the next three, its file
// descriptor in the low four.
const ACCEPT: u64 = 1 << 56;
const RECV: u64 = 2 << 56;
const SEND: u64 = 3 << 56;
const QUIET: u64 = 4 << 56; // cancel and close: nothing to do on their completion
/// Generations wrap within their three bytes of user_data.
const GEN_MASK: u32 = 0xff_ffff;

fn tag(kind: u64, gen: u32, fd: RawFd) -> u64 {
    kind | u64::from(gen) << 32 | fd as u32 as u64
}

struct Slot {
    conn: Conn,
    gen: u32,
    recv_armed: bool,
    /// The bytes of the `send` in flight (their address must not move until it completes).
    sending: Vec<u8>,
    sent: usize,
    /// Answers made while a send was in flight.
    queued: Vec<u8>,
    eof: bool,
}

/// Provided buffers: `BUFFERS` of `BUFFER_BYTES`, handed to the kernel through a buffer ring.
struct Buffers {
    ring: *mut types::BufRingEntry,
    tail: u16,
    data: Vec<u8>,
}

impl Buffers {
    fn new(uring: &IoUring) -> io::Result<Buffers> {
        let layout = std::alloc::Layout::from_size_align(
            usize::from(BUFFERS) * std::mem::size_of::<types::BufRingEntry>(),
            4096,
        )
        .map_err(io::Error::other)?;
        // SAFETY: the layout has a non-zero size; zeroed memory is a valid (empty) ring.
        let ring = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<types::BufRingEntry>();
        if ring.is_null() {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        let mut b = Buffers {
            ring,
            tail: 0,
            data: vec![0; usize::from(BUFFERS) * BUFFER_BYTES],
        };
        // SAFETY: the ring is page aligned, `BUFFERS` entries long and lives as long as the
        // process (it is never freed).
        unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(ring as u64, BUFFERS, GROUP, 0)?
        };
        for bid in 0..BUFFERS {
            b.give_back(bid);
        }
        Ok(b)
    }

    fn get(&self, bid: u16, len: usize) -> &[u8] {
        let at = usize::from(bid) * BUFFER_BYTES;
        &self.data[at..at + len]
    }

    /// Returns buffer `bid` to the kernel.
    fn give_back(&mut self, bid: u16) {
        let at = usize::from(bid) * BUFFER_BYTES;
        let addr = self.data[at..].as_ptr() as u64;
        // SAFETY: the index is masked into the ring, which has `BUFFERS` (a power of two)
        // entries; the kernel reads an entry only after the tail below passes it.
        unsafe {
            let e = &mut *self.ring.add(usize::from(self.tail & (BUFFERS - 1)));
            e.set_addr(addr);
            e.set_len(BUFFER_BYTES as u32);
            e.set_bid(bid);
            self.tail = self.tail.wrapping_add(1);
            let tail = types::BufRingEntry::tail(self.ring).cast_mut();
            std::sync::atomic::AtomicU16::from_ptr(tail)
                .store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }
}

pub fn run(listener: TcpListener) -> io::Result<()> {
    let mut uring: IoUring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_submit_all()
        .build(8192)?;
    let mut buffers = Buffers::new(&uring)?;
    // Only now: a kernel without io_uring (or without provided buffer rings) fails above,
    // before the port that says the server is ready.
    println!("PORT={}", listener.local_addr()?.port());
    let mut slots: Vec<Option<Slot>> = Vec::new();
    let mut next_gen = 0u32;
    let mut sqes: Vec<squeue::Entry> = vec![accept(&listener)];
    let mut cqes: Vec<(u64, i32, u32)> = Vec::new();
    let mut out = Vec::with_capacity(BUFFER_BYTES * 2);
    loop {
        {
            let mut sq = uring.submission();
            for e in sqes.drain(..) {
                // SAFETY: every buffer a request points at (a slot's `sending`) stays put
                // until its completion.
                while unsafe { sq.push(&e) }.is_err() {
                    sq.sync();
                    drop(sq);
                    uring.submit()?;
                    sq = uring.submission();
                }
            }
        }
        uring.submit_and_wait(1)?;
        cqes.extend(
            uring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for (ud, res, flags) in cqes.drain(..) {
            let kind = ud & (0xff << 56);
            if kind == ACCEPT {
                if !cqueue::more(flags) {
                    sqes.push(accept(&listener));
                }
                if res < 0 {
                    continue;
                }
                // SAFETY: a successful accept's result is a new descriptor, ours alone.
                let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(res) };
                next_gen = next_gen.wrapping_add(1) & GEN_MASK;
                let i = res as usize;
                if slots.len() <= i {
                    slots.resize_with(i + 1, || None);
                }
                sqes.push(recv(res, next_gen));
                slots[i] = Some(Slot {
                    conn: Conn::new(fd.into()),
                    gen: next_gen,
                    recv_armed: true,
                    sending: Vec::new(),
                    sent: 0,
                    queued: Vec::new(),
                    eof: false,
                });
                continue;
            }
            if kind == QUIET {
                continue;
            }
            let fd = ud as u32 as RawFd;
            let gen = (ud >> 32) as u32 & GEN_MASK;
            let bid = cqueue::buffer_select(flags);
            let slot = slots
                .get_mut(fd as usize)
                .and_then(Option::as_mut)
                .filter(|s| s.gen == gen);
            let Some(slot) = slot else {
                if let Some(bid) = bid {
                    buffers.give_back(bid);
                }
                continue;
            };
            let done = if kind == RECV {
                on_recv(slot, fd, res, flags, &mut buffers, &mut out, &mut sqes)
            } else {
                on_send(slot, fd, res, &mut sqes)
            };
            if done {
                let slot = slots[fd as usize].take().expect("looked up above");
                if slot.recv_armed {
                    // A multishot receive holds the file open: cancel it, then close.
                    sqes.push(
                        opcode::AsyncCancel::new(tag(RECV, slot.gen, fd))
                            .build()
                            .flags(squeue::Flags::IO_HARDLINK)
                            .user_data(QUIET),
                    );
                }
                let raw = slot.conn.stream.into_raw_fd();
                sqes.push(opcode::Close::new(types::Fd(raw)).build().user_data(QUIET));
            }
        }
    }
}

/// A receive's completion. True: the connection is done (closed once its cancel is queued).
fn on_recv(
    slot: &mut Slot,
    fd: RawFd,
    res: i32,
    flags: u32,
    buffers: &mut Buffers,
    out: &mut Vec<u8>,
    sqes: &mut Vec<squeue::Entry>,
) -> bool {
    if !cqueue::more(flags) {
        slot.recv_armed = false;
    }
    match (res, cqueue::buffer_select(flags)) {
        (n, Some(bid)) if n > 0 => {
            out.clear();
            let keep = answer(&mut slot.conn, buffers.get(bid, n as usize), out);
            buffers.give_back(bid);
            if !keep {
                return true;
            }
            if !out.is_empty() {
                if slot.sending.is_empty() {
                    slot.sending.extend_from_slice(out);
                    slot.sent = 0;
                    sqes.push(send(slot, fd));
                } else {
                    slot.queued.extend_from_slice(out);
                }
            }
        }
        // Out of buffers: asked again below.
        (n, _) if n == -enobufs() => {}
        // End of stream or an error: close once the answers are out.
        _ => {
            slot.eof = true;
            return slot.sending.is_empty();
        }
    }
    if !slot.recv_armed && !slot.conn.closing {
        slot.recv_armed = true;
        sqes.push(recv(fd, slot.gen));
    }
    false
}

/// A send's completion: the rest of it, or what was queued meanwhile. True: the connection is
/// done.
fn on_send(slot: &mut Slot, fd: RawFd, res: i32, sqes: &mut Vec<squeue::Entry>) -> bool {
    if res < 0 {
        return true;
    }
    slot.sent += res as usize;
    if slot.sent >= slot.sending.len() {
        slot.sending.clear();
        if slot.queued.is_empty() {
            return slot.conn.closing || slot.eof;
        }
        std::mem::swap(&mut slot.sending, &mut slot.queued);
        slot.sent = 0;
    }
    sqes.push(send(slot, fd));
    false
}

fn enobufs() -> i32 {
    rustix::io::Errno::NOBUFS.raw_os_error()
}

fn accept(listener: &TcpListener) -> squeue::Entry {
    opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
        .build()
        .user_data(ACCEPT)
}

fn recv(fd: RawFd, gen: u32) -> squeue::Entry {
    opcode::RecvMulti::new(types::Fd(fd), GROUP)
        .build()
        .user_data(tag(RECV, gen, fd))
}

fn send(slot: &Slot, fd: RawFd) -> squeue::Entry {
    let rest = &slot.sending[slot.sent..];
    opcode::Send::new(types::Fd(fd), rest.as_ptr(), rest.len() as u32)
        .build()
        .user_data(tag(SEND, slot.gen, fd))
}
