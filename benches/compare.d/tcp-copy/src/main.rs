//! The baseline the `/connection` pipe is measured against: a plain TCP relay that copies
//! bytes and nothing else.
//!
//! Every connection first sends one line, a pipe path `/connection/LOCAL/REMOTE/KEY` (what
//! `sigyard-load relay --mode pipe --url tcp://…` sends). Two connections whose paths mirror
//! each other (LOCAL and REMOTE swapped, same KEY) are paired, and from then on each direction
//! is a blocking `read` into a 64 KiB buffer followed by `write_all` to the other socket, on
//! a thread of its own. No framing, no parsing, no masking: what copying through user space
//! costs on this machine.
//!
//!     tcp-copy [ADDR]      (default 127.0.0.1:18090)

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

type Waiting = Arc<Mutex<HashMap<(String, String, String), TcpStream>>>;

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18090".into());
    let listener = TcpListener::bind(&addr).unwrap_or_else(|e| {
        eprintln!("tcp-copy: cannot listen on {addr}: {e}");
        std::process::exit(1)
    });
    match listener.local_addr() {
        Ok(a) => eprintln!("tcp-copy: listening on {a}"),
        Err(e) => eprintln!("tcp-copy: listening ({e})"),
    }
    let waiting: Waiting = Arc::default();
    for sock in listener.incoming().flatten() {
        let waiting = waiting.clone();
        thread::spawn(move || introduce(sock, &waiting));
    }
}

/// Read the path line, then pair with the mirror connection or wait for it.
fn introduce(sock: TcpStream, waiting: &Waiting) {
    let _ = sock.set_nodelay(true);
    // Byte by byte: nothing after the newline may be consumed here.
    let mut line = Vec::new();
    let mut reader = BufReader::with_capacity(1, &sock);
    if reader.read_until(b'\n', &mut line).is_err() || line.len() > 4096 {
        return;
    }
    let path = String::from_utf8_lossy(&line);
    let parts: Vec<&str> = path.trim_end().split('/').collect();
    let [_, _, local, remote, key] = parts.as_slice() else {
        eprintln!("tcp-copy: bad first line {path:?}");
        return;
    };
    let mine = (local.to_string(), remote.to_string(), key.to_string());
    let theirs = (remote.to_string(), local.to_string(), key.to_string());
    let other = {
        let mut w = waiting.lock().unwrap();
        match w.remove(&theirs) {
            Some(o) => o,
            None => {
                w.insert(mine, sock);
                return;
            }
        }
    };
    let (a, b) = (sock, other);
    let (a2, b2) = match (a.try_clone(), b.try_clone()) {
        (Ok(a2), Ok(b2)) => (a2, b2),
        _ => return,
    };
    thread::spawn(move || copy(a2, b2));
    copy(b, a);
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
