//! The `pipe_table` fuzz target: a sequence of arrivals, held messages and departures
//! ([`PipeOp`]) applied to one [`PipeTable`] (the `/connection/:a/:b/:key` holding table),
//! checked against a model of it.
//!
//! Every arrival is a fresh socket (like the shell, which never reuses a live [`Handle`]);
//! ids come from a set of three (so `a/a` self-pairs happen too) and keys from a set of two,
//! and the hold limits are small. Checked after every op:
//!
//! * an arrival pairs exactly when the reciprocal seek is waiting in the model, with that
//!   socket, and returns exactly the messages it held, in order and with their kinds;
//!   otherwise it waits, replacing (and naming) the socket that waited under the same seek;
//! * no socket is ever paired twice (neither side of a pairing was paired before);
//! * `hold` succeeds only for the socket currently waiting under its seek and within both
//!   limits, else says `NotWaiting` or `Full` with the limits;
//! * `leave` removes only the socket that is still waiting; `waiting()` equals the model's.
//!
//! The input: one [`PipeSetup`] byte pair, then one tag byte and its fields per op, until the
//! bytes run out; [`encode_pipe_ops`] is the inverse, for writing seeds.

use std::collections::{HashMap, HashSet};

use arbitrary::{Arbitrary, Unstructured};

use crate::proto::dialect::pipe::{Arrival, HoldError, HoldLimits, PipeTable, Seek};
use crate::proto::dialect::{Handle, Kind};

/// Ops beyond this are ignored, to bound the time of one run.
const MAX_OPS: usize = 1024;
const IDS: [&str; 3] = ["a", "b", "c"];
const KEYS: [&str; 2] = ["k", "doc"];

/// The hold limits: `max_bytes % 65` and `max_messages % 5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipeSetup {
    pub max_bytes: u8,
    pub max_messages: u8,
}

/// One step. Sockets are numbered in order of arrival; `Hold` and `Leave` name one by that
/// number modulo the number of arrivals so far (and do nothing before the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipeOp {
    /// A new socket on `/connection/IDS[local]/IDS[remote]/KEYS[key]`.
    Arrive { local: u8, remote: u8, key: u8 },
    /// Socket `conn` sends a message of `len` bytes (each the op's number, so that the order
    /// shows), which the table is asked to hold.
    Hold { conn: u8, binary: bool, len: u8 },
    /// Socket `conn` closes.
    Leave { conn: u8 },
}

impl<'a> Arbitrary<'a> for PipeSetup {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(PipeSetup {
            max_bytes: u8::arbitrary(u)? % 65,
            max_messages: u8::arbitrary(u)? % 5,
        })
    }
}

impl<'a> Arbitrary<'a> for PipeOp {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let mut byte = || u8::arbitrary(u);
        Ok(match byte()? % 3 {
            0 => PipeOp::Arrive {
                local: byte()? % IDS.len() as u8,
                remote: byte()? % IDS.len() as u8,
                key: byte()? % KEYS.len() as u8,
            },
            1 => PipeOp::Hold {
                conn: byte()?,
                binary: byte()? & 1 == 1,
                len: byte()? % 33,
            },
            _ => PipeOp::Leave { conn: byte()? },
        })
    }
}

/// Decodes a fuzz input: the setup, then ops until the bytes run out (at most `MAX_OPS`).
pub fn decode_pipe_ops(data: &[u8]) -> (PipeSetup, Vec<PipeOp>) {
    let mut u = Unstructured::new(data);
    // Integers pad with zeros when the input runs out, so this does not fail; fall back anyway.
    let setup = PipeSetup::arbitrary(&mut u).unwrap_or(PipeSetup {
        max_bytes: 0,
        max_messages: 0,
    });
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < MAX_OPS {
        match PipeOp::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    (setup, ops)
}

/// The inverse of [`decode_pipe_ops`] for fields within their ranges (for writing seeds).
pub fn encode_pipe_ops(setup: PipeSetup, ops: &[PipeOp]) -> Vec<u8> {
    let mut out = vec![setup.max_bytes, setup.max_messages];
    for op in ops {
        match *op {
            PipeOp::Arrive { local, remote, key } => out.extend([0, local, remote, key]),
            PipeOp::Hold { conn, binary, len } => out.extend([1, conn, u8::from(binary), len]),
            PipeOp::Leave { conn } => out.extend([2, conn]),
        }
    }
    out
}

struct Held {
    conn: Handle,
    msgs: Vec<(Kind, Vec<u8>)>,
    bytes: usize,
}

/// Runs the ops decoded from `data` against a fresh table and checks the invariants in the
/// module docs; panics when one fails.
pub fn check_pipe_table(data: &[u8]) {
    let (setup, ops) = decode_pipe_ops(data);
    let limits = HoldLimits {
        max_bytes: usize::from(setup.max_bytes),
        max_messages: usize::from(setup.max_messages),
    };
    let mut table = PipeTable::new();
    let mut model: HashMap<Seek, Held> = HashMap::new();
    let mut conns: Vec<(Handle, Seek)> = Vec::new();
    let mut paired: HashSet<Handle> = HashSet::new();
    for (n, op) in ops.iter().enumerate() {
        match *op {
            PipeOp::Arrive { local, remote, key } => {
                let seek = Seek {
                    local: IDS[usize::from(local)].into(),
                    remote: IDS[usize::from(remote)].into(),
                    key: KEYS[usize::from(key)].into(),
                };
                let conn = Handle::of(conns.len() as u32, 1);
                let got = table.arrive(&seek, conn);
                let want = match model.remove(&seek.reciprocal()) {
                    Some(w) => Arrival::Paired {
                        peer: w.conn,
                        held: w.msgs,
                    },
                    None => {
                        let old = model.insert(
                            seek.clone(),
                            Held {
                                conn,
                                msgs: Vec::new(),
                                bytes: 0,
                            },
                        );
                        Arrival::Waiting {
                            replaced: old.map(|w| w.conn),
                        }
                    }
                };
                assert_eq!(got, want, "arrival #{n} of {seek:?}");
                if let Arrival::Paired { peer, .. } = got {
                    assert_ne!(peer, conn);
                    assert!(paired.insert(peer), "{peer:?} paired twice");
                    assert!(paired.insert(conn), "{conn:?} paired twice");
                }
                conns.push((conn, seek));
            }
            PipeOp::Hold { conn, binary, len } => {
                let Some((conn, seek)) = pick(&conns, conn) else {
                    continue;
                };
                let kind = if binary { Kind::Binary } else { Kind::Text };
                let payload = vec![n as u8; usize::from(len)];
                let got = table.hold(seek, conn, kind, &payload, limits);
                let want = match model.get_mut(seek) {
                    Some(w) if w.conn == conn => {
                        if w.bytes + payload.len() > limits.max_bytes
                            || w.msgs.len() >= limits.max_messages
                        {
                            Err(HoldError::Full {
                                bytes: limits.max_bytes,
                                messages: limits.max_messages,
                            })
                        } else {
                            w.bytes += payload.len();
                            w.msgs.push((kind, payload));
                            Ok(())
                        }
                    }
                    _ => Err(HoldError::NotWaiting),
                };
                assert_eq!(got, want, "hold #{n} from {conn:?}");
                if got.is_ok() {
                    assert!(!paired.contains(&conn), "a paired socket held a message");
                }
            }
            PipeOp::Leave { conn } => {
                let Some((conn, seek)) = pick(&conns, conn) else {
                    continue;
                };
                table.leave(seek, conn);
                if model.get(seek).is_some_and(|w| w.conn == conn) {
                    model.remove(seek);
                }
            }
        }
        assert_eq!(table.waiting(), model.len(), "waiting() after op #{n}");
    }
}

fn pick(conns: &[(Handle, Seek)], i: u8) -> Option<(Handle, &Seek)> {
    if conns.is_empty() {
        return None;
    }
    let (c, s) = &conns[usize::from(i) % conns.len()];
    Some((*c, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_is_the_inverse_of_decode() {
        let setup = PipeSetup {
            max_bytes: 64,
            max_messages: 4,
        };
        let ops = vec![
            PipeOp::Arrive {
                local: 0,
                remote: 2,
                key: 1,
            },
            PipeOp::Hold {
                conn: 200,
                binary: true,
                len: 32,
            },
            PipeOp::Leave { conn: 7 },
        ];
        assert_eq!(decode_pipe_ops(&encode_pipe_ops(setup, &ops)), (setup, ops));
    }

    #[test]
    fn arbitrary_bytes_do_not_panic() {
        check_pipe_table(b"");
        check_pipe_table(&[0xff; 64]);
        check_pipe_table(&(0..=255).collect::<Vec<u8>>());
    }
}
