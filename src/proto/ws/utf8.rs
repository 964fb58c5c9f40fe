//! Incremental UTF-8 validation for text messages that arrive in pieces
//! (RFC 6455 5.6, 8.1), with three bits of state per connection.
//!
//! This file owns the validator, and [`whole_str`], the check of a message
//! that is all there (the connection's, for nearly every message). The
//! validator fails at the first byte that can no longer begin or continue
//! valid UTF-8 (so a peer cannot make the server buffer or forward an
//! invalid message prefix), including a sequence that
//! is already impossible though cut short by the chunk end (`F4 90`, `ED A0`,
//! `C0`). It does not keep the bytes it has seen: the caller owns them, and
//! the chunks of a valid message may split a code point between them.
//!
//! Instead of carrying up to three bytes of a cut sequence, the state is
//! one byte naming what those bytes imply: how many continuation bytes are
//! still owed and, right after a lead byte, which range the second byte must
//! fall in (Unicode Table 3-7). Whole runs of bytes are checked by
//! `core::str::from_utf8`; only the few bytes that finish a cut sequence are
//! checked one at a time.

/// `bytes` as a `str` if they are UTF-8: the check of a whole text message (the same answer
/// as `core::str::from_utf8`, with the SIMD instructions this CPU has).
pub fn whole_str(bytes: &[u8]) -> Option<&str> {
    simdutf8::basic::from_utf8(bytes).ok()
}

/// A chunk contained bytes that cannot be part of valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Error {
    /// Index in the chunk of the first byte of the invalid sequence, or of
    /// the chunk's first byte if the sequence began in an earlier chunk.
    /// Bytes before it (in this and earlier chunks) were valid so far.
    pub valid_up_to: usize,
}

/// Validates a byte stream chunk by chunk. Create one per text message,
/// [`feed`](Self::feed) each chunk, then [`finish`](Self::finish). One byte.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Utf8Validator {
    state: State,
}

/// Where the stream stands between chunks. Eight states: three bits (see
/// [`Utf8Validator::to_bits`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(u8)]
enum State {
    /// At a character boundary.
    #[default]
    Ready = 0,
    /// 1, 2 or 3 plain continuation bytes (0x80-0xBF) owed.
    Need1 = 1,
    Need2 = 2,
    Need3 = 3,
    /// After lead E0: second byte A0-BF (no overlong forms), then one more.
    AfterE0 = 4,
    /// After lead ED: second byte 80-9F (no surrogates), then one more.
    AfterEd = 5,
    /// After lead F0: second byte 90-BF (no overlong forms), then two more.
    AfterF0 = 6,
    /// After lead F4: second byte 80-8F (nothing above U+10FFFF), then two
    /// more.
    AfterF4 = 7,
}

impl State {
    /// The state after `b`, or None if `b` cannot come next. Not called in
    /// `Ready` (the bulk path handles that).
    fn next(self, b: u8) -> Option<State> {
        let (lo, hi, then) = match self {
            State::Ready => return None,
            State::Need1 => (0x80, 0xBF, State::Ready),
            State::Need2 => (0x80, 0xBF, State::Need1),
            State::Need3 => (0x80, 0xBF, State::Need2),
            State::AfterE0 => (0xA0, 0xBF, State::Need1),
            State::AfterEd => (0x80, 0x9F, State::Need1),
            State::AfterF0 => (0x90, 0xBF, State::Need2),
            State::AfterF4 => (0x80, 0x8F, State::Need2),
        };
        (lo..=hi).contains(&b).then_some(then)
    }

    /// The state after an unfinished but valid sequence `tail` (1-3 bytes,
    /// as reported by `from_utf8` with `error_len() == None`).
    fn after_prefix(tail: &[u8]) -> State {
        match tail {
            [0xE0] => State::AfterE0,
            [0xED] => State::AfterEd,
            [0xF0] => State::AfterF0,
            [0xF4] => State::AfterF4,
            [0xC2..=0xDF] => State::Need1,
            [0xE1..=0xEF] => State::Need2,
            [0xF1..=0xF3] => State::Need3,
            [0xE0..=0xEF, _] => State::Need1,
            [0xF0..=0xF4, _] => State::Need2,
            // Three bytes can only be an unfinished 4-byte sequence; `from_utf8`
            // never reports other shapes as unfinished, and `Need1` is the
            // least permissive answer for them anyway.
            _ => State::Need1,
        }
    }
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub const fn new() -> Self {
        Utf8Validator {
            state: State::Ready,
        }
    }

    /// The state as a number below 8 (three bits), for a caller that packs
    /// it together with other state. 0 is a fresh validator.
    pub(super) const fn to_bits(self) -> u8 {
        self.state as u8
    }

    /// The validator whose [`to_bits`](Self::to_bits) is `bits & 7` (the
    /// higher bits are ignored).
    pub(super) const fn from_bits(bits: u8) -> Self {
        let state = match bits & 7 {
            0 => State::Ready,
            1 => State::Need1,
            2 => State::Need2,
            3 => State::Need3,
            4 => State::AfterE0,
            5 => State::AfterEd,
            6 => State::AfterF0,
            _ => State::AfterF4,
        };
        Utf8Validator { state }
    }

    /// True if the bytes fed so far end in the middle of a code point.
    pub fn is_incomplete(&self) -> bool {
        self.state != State::Ready
    }

    /// Checks the next chunk. On error the validator's state is unspecified;
    /// the message is invalid, so there is nothing left to resume.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), Utf8Error> {
        let mut i = 0;
        // Finish a sequence cut by the previous chunk's end, byte by byte.
        while self.state != State::Ready {
            let Some(&b) = chunk.get(i) else {
                return Ok(());
            };
            match self.state.next(b) {
                Some(s) => self.state = s,
                None => return Err(Utf8Error { valid_up_to: i }),
            }
            i += 1;
        }
        // `i` is at most 3 and at most `chunk.len()` (each step above read
        // `chunk[i]` successfully before incrementing), so this cannot panic.
        let rest = &chunk[i..];
        match core::str::from_utf8(rest) {
            Ok(_) => Ok(()),
            Err(e) => {
                let start = e.valid_up_to();
                if e.error_len().is_some() {
                    return Err(Utf8Error {
                        valid_up_to: i + start,
                    });
                }
                // `error_len() == None`: `rest[start..]` is a valid but
                // unfinished sequence ending the chunk; `start <= rest.len()`
                // per `Utf8Error`'s contract, so the slice cannot panic.
                self.state = State::after_prefix(&rest[start..]);
                Ok(())
            }
        }
    }

    /// Ends the message: an error if it stopped in the middle of a code
    /// point. Resets the validator for the next message either way.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let incomplete = self.is_incomplete();
        *self = Utf8Validator::new();
        if incomplete {
            Err(Utf8Error { valid_up_to: 0 })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Feeds `bytes` split at `cuts` and returns (ok, index of the first
    /// byte of the failing chunk's invalid part) like `std::str::from_utf8`.
    fn validate_split(bytes: &[u8], cuts: &[usize]) -> Result<(), usize> {
        let mut v = Utf8Validator::new();
        let mut start = 0;
        for &end in cuts.iter().chain(core::iter::once(&bytes.len())) {
            v.feed(&bytes[start..end])
                .map_err(|e| start + e.valid_up_to)?;
            start = end;
        }
        v.finish().map_err(|_| bytes.len())
    }

    /// What the incremental validator must report: Ok, or the position at
    /// which the input stops being a valid prefix. `from_utf8` reports
    /// `valid_up_to` (start of the bad sequence); our validator may only
    /// learn of the error in a later chunk, reporting that chunk's first
    /// byte, which lies after `valid_up_to` and no later than the byte that
    /// ends std's maximal invalid subpart. For inputs that are merely
    /// truncated the error comes at the end.
    fn check(bytes: &[u8], cuts: &[usize]) {
        let expect = core::str::from_utf8(bytes);
        let got = validate_split(bytes, cuts);
        match (expect, got) {
            (Ok(_), Ok(())) => {}
            (Err(e), Err(at)) => match e.error_len() {
                Some(n) => {
                    let lo = e.valid_up_to();
                    assert!(
                        at >= lo && at <= lo + n,
                        "{bytes:x?} cuts {cuts:?}: at {at}, expected in {lo}..={}",
                        lo + n
                    );
                }
                None => assert_eq!(at, bytes.len(), "{bytes:x?} cuts {cuts:?}"),
            },
            (e, g) => panic!("{bytes:x?} cuts {cuts:?}: std {e:?}, ours {g:?}"),
        }
    }

    fn check_all_single_and_double_splits(bytes: &[u8]) {
        check(bytes, &[]);
        for a in 0..=bytes.len() {
            check(bytes, &[a]);
            for b in a..=bytes.len() {
                check(bytes, &[a, b]);
            }
        }
    }

    #[test]
    fn valid_strings_every_split() {
        for s in [
            "",
            "a",
            "hello",
            "κόσμε",
            "\u{7f}\u{80}\u{7ff}\u{800}\u{ffff}\u{10000}\u{10ffff}",
            "\u{d7ff}\u{e000}\u{fffd}",
            "a€𝄞b€𝄞",
        ] {
            check_all_single_and_double_splits(s.as_bytes());
        }
    }

    #[test]
    fn invalid_sequences_every_split() {
        let cases: &[&[u8]] = &[
            b"\x80",
            b"\xbf",
            b"\xc0\x80",
            b"\xc1\xbf",
            b"\xe0\x80\x80",
            b"\xe0\x9f\xbf",
            b"\xed\xa0\x80",
            b"\xed\xbf\xbf",
            b"\xf0\x80\x80\x80",
            b"\xf0\x8f\xbf\xbf",
            b"\xf4\x90\x80\x80",
            b"\xf5\x80\x80\x80",
            b"\xff",
            b"\xfe",
            b"ab\xe2\x82",
            b"ab\xe2\x82x",
            b"\xf0\x9d\x84",
            b"\xf0\x9d\x84\x9e\xf0",
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64",
            b"\xc3\x28",
            b"\xe2\x28\xa1",
            b"\xf0\x28\x8c\xbc",
        ];
        for c in cases {
            check_all_single_and_double_splits(c);
        }
    }

    #[test]
    fn impossible_prefix_fails_before_chunk_end() {
        for p in [
            &b"\xf4\x90"[..],
            b"\xed\xa0",
            b"\xc0",
            b"\xe0\x80",
            b"\xf0\x8f",
        ] {
            let mut v = Utf8Validator::new();
            assert!(v.feed(p).is_err(), "{p:x?} accepted as a prefix");
            // Also when the impossible byte arrives alone in the next chunk.
            if p.len() == 2 {
                let mut v = Utf8Validator::new();
                v.feed(&p[..1]).unwrap();
                assert_eq!(v.feed(&p[1..]), Err(Utf8Error { valid_up_to: 0 }));
            }
        }
    }

    #[test]
    fn truncated_sequence_fails_on_finish() {
        let mut v = Utf8Validator::new();
        v.feed("a€".as_bytes().split_last().unwrap().1).unwrap();
        assert!(v.is_incomplete());
        assert!(v.finish().is_err());
        // finish() reset it.
        assert!(!v.is_incomplete());
        v.feed(b"ok").unwrap();
        v.finish().unwrap();
    }

    #[test]
    fn state_is_one_byte() {
        assert_eq!(core::mem::size_of::<Utf8Validator>(), 1);
    }

    #[test]
    fn bits_round_trip_through_every_state() {
        assert_eq!(Utf8Validator::new().to_bits(), 0);
        for bits in 0..8u8 {
            let v = Utf8Validator::from_bits(bits);
            assert_eq!(v.to_bits(), bits);
            assert_eq!(Utf8Validator::from_bits(bits | 0xF8), v);
            assert_eq!(v.is_incomplete(), bits != 0);
        }
        // Each prefix that leaves a state behind lands on the expected bits,
        // and a validator rebuilt from them carries on identically.
        for (prefix, rest) in [
            (&b"\xe2"[..], &b"\x82\xac"[..]),
            (b"\xe2\x82", b"\xac"),
            (b"\xf0", b"\x9d\x84\x9e"),
            (b"\xf0\x9d", b"\x84\x9e"),
            (b"\xf0\x9d\x84", b"\x9e"),
            (b"\xe0", b"\xa0\x80"),
            (b"\xed", b"\x9f\xbf"),
            (b"\xf4", b"\x8f\xbf\xbf"),
            (b"\xc3", b"\xa9"),
        ] {
            let mut v = Utf8Validator::new();
            v.feed(prefix).unwrap();
            let mut w = Utf8Validator::from_bits(v.to_bits());
            assert_eq!(w, v);
            w.feed(rest).unwrap();
            w.finish().unwrap();
        }
    }

    #[test]
    fn random_bytes_random_splits_match_std() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let alphabet: &[u8] = &[
            b'a', 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc2, 0xdf, 0xe0, 0xe1, 0xed,
            0xee, 0xef, 0xf0, 0xf1, 0xf4, 0xf5, 0xff,
        ];
        for _ in 0..20_000 {
            let len = rng.random_range(0..12);
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            let mut cuts: Vec<usize> = (0..rng.random_range(0..4))
                .map(|_| rng.random_range(0..=len))
                .collect();
            cuts.sort_unstable();
            check(&bytes, &cuts);
        }
    }

    #[test]
    fn random_valid_text_random_splits() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        for _ in 0..500 {
            let s: String = (0..rng.random_range(0..64))
                .map(|_| loop {
                    if let Some(c) = char::from_u32(rng.random_range(0..0x11_0000)) {
                        break c;
                    }
                })
                .collect();
            let b = s.as_bytes();
            let mut cuts: Vec<usize> = (0..rng.random_range(0..8))
                .map(|_| rng.random_range(0..=b.len()))
                .collect();
            cuts.sort_unstable();
            assert_eq!(validate_split(b, &cuts), Ok(()));
        }
    }
}
