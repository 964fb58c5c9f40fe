//! The `ice_provider` fuzz target: the Twilio-compatible token provider's reading of an answer
//! ([`answer`]: status and body to a token or an error) and its token mapping ([`parse_token`])
//! on arbitrary bytes, plus the MewConnect list fix-up ([`with_url_and_urls`]) on the same JSON.
//! (The HTTP exchange itself, framing and the body bound included, is ureq's.)
//!
//! The input: two bytes of HTTP status (big-endian), a TTL byte, then the body. Checked:
//!
//! * nothing panics;
//! * a 2xx answer is what [`parse_token`] makes of the body; any other is an error that starts
//!   with `HTTP <status>: `;
//! * a token has at least one server, each with a non-empty `url`, no more servers than the
//!   body has bytes, and a TTL above zero; every entry it hands out (`servers_json`,
//!   `token_json`) has both `url` and `urls`, equal;
//! * [`with_url_and_urls`] on the body's `ice_servers` keeps only objects, each with a string
//!   `url` and a string or array `urls`.
//!
//! [`encode_ice_input`] builds an input from its parts, for writing seeds.

use std::sync::Arc;

use serde_json::Value as Json;

use crate::ice::twilio::{answer, parse_token};
use crate::ice::{IceList, Source};
use crate::proto::dialect::mewconnect::with_url_and_urls;

const NOW: u64 = 1_700_000_000;

/// An input: the HTTP `status`, the `ttl` byte, then the `body`.
pub fn encode_ice_input(status: u16, ttl: u8, body: &[u8]) -> Vec<u8> {
    let mut out = status.to_be_bytes().to_vec();
    out.push(ttl);
    out.extend_from_slice(body);
    out
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
    let [hi, lo, ttl, body @ ..] = data else {
        return;
    };
    let status = u16::from_be_bytes([*hi, *lo]);
    let ttl = u64::from(*ttl) * 60 + 1;
    let answered = answer(status, body, ttl, NOW);
    if (200..300).contains(&status) {
        assert_eq!(
            answered,
            parse_token(body, ttl, NOW),
            "a 2xx answer is its token"
        );
    } else {
        let e = answered.expect_err("only a 2xx answer is a token");
        assert!(e.starts_with(&format!("HTTP {status}: ")), "{e}");
    }
    check_token(body, ttl);
    check_fixup(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arbitrary_bytes_do_not_panic() {
        check_ice_provider(b"");
        check_ice_provider(&[0xff; 64]);
        check_ice_provider(&(0..=255).collect::<Vec<u8>>());
        let ok = br#"{"ice_servers":[{"urls":"stun:a:1"}]}   "#;
        check_ice_provider(&encode_ice_input(201, 1, ok));
        check_ice_provider(&encode_ice_input(401, 1, ok));
    }
}
