//! Fuzz target: `FrameHeader::parse` on arbitrary bytes.
//!
//! Checks that parsing never panics, that a parsed header re-emits (with no
//! mask and with its own mask) to bytes that parse back to the same header,
//! that every proper prefix of a header asks for more bytes, and that an
//! error is reported from the shortest prefix that proves it and stays the
//! same for every longer input. It does not exercise the decoder (see
//! `ws_decoder.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigyard::proto::ws::{FrameHeader, MAX_CLOSE_REASON_LEN, MAX_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    match FrameHeader::parse(data) {
        Ok(Some((h, n))) => {
            assert!((2..=MAX_HEADER_LEN).contains(&n) && n <= data.len());
            assert_eq!(h.payload_len >> 63, 0);
            if h.opcode.is_control() {
                assert!(h.fin && h.payload_len <= 125);
            }
            // Non-minimal length encodings are accepted, so the canonical
            // form may be shorter than the input's, never longer.
            assert!(h.encoded_len() <= n);
            // Trailing bytes do not matter; proper prefixes need more.
            assert_eq!(FrameHeader::parse(&data[..n]), Ok(Some((h, n))));
            for cut in 0..n {
                assert_eq!(FrameHeader::parse(&data[..cut]), Ok(None));
            }
            for mask in [None, h.mask] {
                let h2 = FrameHeader { mask, ..h };
                let mut out = [0u8; MAX_HEADER_LEN];
                let m = h2.emit(&mut out);
                assert_eq!(m, h2.encoded_len());
                assert_eq!(FrameHeader::parse(&out[..m]), Ok(Some((h2, m))));
                for cut in 0..m {
                    assert_eq!(FrameHeader::parse(&out[..cut]), Ok(None));
                }
            }
        }
        Ok(None) => assert!(data.len() < MAX_HEADER_LEN),
        Err(e) => {
            assert_eq!(e.close_code(), 1002);
            assert!(e.to_string().len() <= MAX_CLOSE_REASON_LEN);
            // Every header error is visible within the first three bytes.
            let first = (0..=data.len())
                .find(|&k| FrameHeader::parse(&data[..k]).is_err())
                .expect("the whole input fails, so some prefix does");
            assert!(first <= 3, "error needed {first} bytes");
            for k in first..=data.len() {
                assert_eq!(FrameHeader::parse(&data[..k]), Err(e));
            }
        }
    }
});
