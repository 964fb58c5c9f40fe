//! The `ice_provider` fuzz target: the Twilio-compatible token provider's response reader
//! ([`Response::feed`]) and its token mapping ([`parse_token`]) on arbitrary bytes, plus the
//! MewConnect list fix-up ([`with_url_and_urls`]) on the same JSON.
//!
//! The input: a chunk size byte (each read returns at most that many bytes; 0: everything in
//! one read), a TTL byte, then the provider's bytes. They are read twice, as an HTTP response
//! (in one read and in chunks) and as a bare token body. Checked:
//!
//! * nothing panics;
//! * the response reads the same whole and in chunks (same status and body, or the same
//!   error); a body is never larger than [`MAX_RESPONSE`] nor than what was read, and a
//!   status is at most three digits;
//! * a token has at least one server, each with a non-empty `url`, no more servers than the
//!   body has bytes, and a TTL above zero; every entry it hands out (`servers_json`,
//!   `token_json`) has both `url` and `urls`, equal;
//! * [`with_url_and_urls`] on the body's `ice_servers` keeps only objects, each with a string
//!   `url` and a string or array `urls`.
//!
//! [`encode_ice_input`] builds an input from its parts, for writing seeds.

use std::sync::Arc;

use serde_json::Value as Json;

use crate::ice::twilio::{parse_token, Response, MAX_RESPONSE};
use crate::ice::{IceList, Source};
use crate::proto::dialect::mewconnect::with_url_and_urls;

const NOW: u64 = 1_700_000_000;

/// An input: `chunk` bytes per read (0: all at once), `ttl` byte, then `bytes`.
pub fn encode_ice_input(chunk: u8, ttl: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![chunk, ttl];
    out.extend_from_slice(bytes);
    out
}

/// Reads `data` as a response in reads of at most `chunk` bytes (0: one read), then EOF.
fn read_response(data: &[u8], chunk: usize) -> Result<(u16, Vec<u8>), String> {
    let mut r = Response::default();
    let mut buf = Vec::new();
    let size = if chunk == 0 { data.len().max(1) } else { chunk };
    for read in data.chunks(size) {
        if let Some(done) = r.feed(&mut buf, read)? {
            return Ok(done);
        }
    }
    match r.feed(&mut buf, &[])? {
        Some(done) => Ok(done),
        None => panic!("the end of the stream always decides"),
    }
}

fn check_token(body: &[u8], ttl: u64) {
    let Ok(token) = parse_token(body, ttl, NOW) else {
        return;
    };
    assert!(!token.servers.is_empty(), "a token without servers");
    assert!(token.servers.len() <= body.len(), "more servers than bytes");
    assert!(token.ttl > 0, "a token with no lifetime");
    assert_eq!(token.obtained, NOW);
    for s in &token.servers {
        assert!(!s.url.is_empty(), "a server without a url");
    }
    let list = IceList {
        servers: token.servers.clone(),
        ttl: token.ttl,
        username: token.username.clone(),
        password: token.password.clone(),
        source: Source::Provider(Arc::new(token)),
    };
    let token_json = list.token_json();
    for entries in [list.servers_json(), token_json["iceServers"].clone()] {
        let entries = entries.as_array().expect("an array of servers").clone();
        assert_eq!(entries.len(), list.servers.len());
        for e in entries {
            let url = e["url"].as_str().expect("every entry has a url");
            assert_eq!(e["urls"].as_str(), Some(url), "every entry has urls");
        }
    }
}

fn check_fixup(body: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Json>(body) else {
        return;
    };
    let list = v.get("ice_servers").cloned().unwrap_or(v);
    let fixed = with_url_and_urls(list.clone());
    let entries = fixed.as_array().expect("always an array");
    let objects = list
        .as_array()
        .map_or(0, |a| a.iter().filter(|e| e.is_object()).count());
    assert!(entries.len() <= objects, "entries appeared");
    for e in entries {
        assert!(e["url"].is_string(), "an entry without url: {e}");
        assert!(
            e["urls"].is_string() || e["urls"].is_array(),
            "an entry without urls: {e}"
        );
    }
}

/// Runs the checks in the module docs on `data`; panics when one fails.
pub fn check_ice_provider(data: &[u8]) {
    let [chunk, ttl, bytes @ ..] = data else {
        return;
    };
    let ttl = u64::from(*ttl) * 60 + 1;
    let whole = read_response(bytes, 0);
    let chunked = read_response(bytes, usize::from(*chunk));
    assert_eq!(
        whole, chunked,
        "one read and reads of {chunk} bytes disagree"
    );
    if let Ok((status, body)) = &whole {
        // httparse takes any three digits (`001` too): not 2xx, so an error for the provider.
        assert!(*status <= 999, "status {status}");
        assert!(body.len() <= MAX_RESPONSE && body.len() <= bytes.len());
        if (200..300).contains(status) {
            check_token(body, ttl);
            check_fixup(body);
        }
    }
    check_token(bytes, ttl);
    check_fixup(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arbitrary_bytes_do_not_panic() {
        check_ice_provider(b"");
        check_ice_provider(&[0xff; 64]);
        check_ice_provider(&(0..=255).collect::<Vec<u8>>());
        let ok = b"HTTP/1.1 201 Created\r\nContent-Length: 40\r\n\r\n\
                   {\"ice_servers\":[{\"urls\":\"stun:a:1\"}]}   ";
        check_ice_provider(&encode_ice_input(3, 1, ok));
    }
}
