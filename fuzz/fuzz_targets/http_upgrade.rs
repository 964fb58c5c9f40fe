//! Fuzz the request-head parser, the WebSocket upgrade validation, the
//! response writers and the chunked body decoder on arbitrary bytes.
//!
//! Build as a cargo-fuzz target (libfuzzer-sys 0.4); seeds are in
//! corpus/http_upgrade/.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sigyard::proto::http::{
    parse_request, validate_upgrade, write_response, write_switching_protocols, ChunkedDecoder,
    HttpLimits,
};

fuzz_target!(|data: &[u8]| {
    // Small limits so the size checks are exercised, not just the syntax.
    let limits = HttpLimits {
        max_header_bytes: 1024,
        max_headers: 16,
    };
    let mut out = Vec::new();
    let body = match parse_request(data, &limits) {
        Ok(Some((head, consumed))) => {
            assert!(consumed <= data.len());
            assert!(consumed <= limits.max_header_bytes);
            // Parsing is a pure function of the bytes: the exact head parses
            // to the same result, and any shorter prefix is still partial.
            assert_eq!(
                parse_request(&data[..consumed], &limits),
                Ok(Some((head.clone(), consumed)))
            );
            assert_eq!(parse_request(&data[..consumed - 1], &limits), Ok(None));
            match validate_upgrade(&head) {
                Ok(accept) => {
                    assert!(accept.iter().all(u8::is_ascii_graphic));
                    write_switching_protocols(&accept, &mut out);
                }
                Err(e) => e.write_response(&mut out),
            }
            write_response(
                200,
                None,
                &[("X-Path", &head.path)],
                head.path.as_bytes(),
                head.keep_alive,
                &mut out,
            );
            if head.chunked {
                &data[consumed..]
            } else {
                return;
            }
        }
        Ok(None) => {
            assert!(data.len() < limits.max_header_bytes);
            return;
        }
        Err(e) => {
            e.write_response(&mut out);
            // Also treat the raw input as a chunked body.
            data
        }
    };
    // Decode once whole and once split in two: same outcome.
    let mut whole = Vec::new();
    let r = ChunkedDecoder::new(4096).feed(body, &mut whole);
    if let Ok(Some(n)) = r {
        assert!(n <= body.len());
    }
    if let Err(e) = r {
        e.write_response(&mut out);
    }
    let mid = body.len() / 2;
    let mut d = ChunkedDecoder::new(4096);
    let mut split = Vec::new();
    let r2 = match d.feed(&body[..mid], &mut split) {
        Ok(None) => d.feed(&body[mid..], &mut split).map(|o| o.map(|n| n + mid)),
        other => other,
    };
    assert_eq!(r, r2);
    assert!(whole.len() as u64 <= 4096);
    if r.is_ok() {
        assert_eq!(whole, split);
    }
});
