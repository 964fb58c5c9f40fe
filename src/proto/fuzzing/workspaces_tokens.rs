//! The `workspaces_tokens` fuzz target: webRTWorkspaces' HS256 JWTs ([`Keys::sign`],
//! [`Keys::verify`]), access-token bindings ([`Keys::check_binding`]) and PIN hashes
//! ([`pin_verify`]) on arbitrary strings.
//!
//! The input: a mode byte, then bytes read by the mode (text as UTF-8 with replacement
//! characters):
//!
//! * `0` (and any mode not below): the bytes are a token, a binding and a stored PIN hash;
//! * `1`: claims for [`Keys::sign`]: strings cut at `\0`, read as key, value, key, value…; the
//!   last byte picks a character of the token to change;
//! * `2`: a header and claims (cut at the first `0xff`) as raw bytes, signed here with the
//!   server's secret (ring's HMAC directly, not through [`Keys`]).
//!
//! Checked:
//!
//! * nothing panics;
//! * a token verifies only if its third part is the HMAC-SHA256 of the first two under the
//!   configured secret, its header says `"alg":"HS256"`, its claims are an object and `exp` /
//!   `nbf` (when present) are numbers that allow the current time; a token of another secret,
//!   an over-long token, and a signed token with one character changed never verify;
//! * a token [`Keys::sign`] made verifies to exactly its claims (the last of equal keys wins,
//!   `iat` last) unless a claim is named `exp` or `nbf` (a string there is refused);
//! * the claims of any verified token whose values are strings (`iat` a whole number) sign
//!   again to a token that verifies to the same claims;
//! * a binding is accepted only when it equals the one [`Keys::binding`] makes; a PIN hash
//!   (read only with at most 64 iterations, to bound the work) never verifies an input it was
//!   not made from — for these bytes it was made from none.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;
use serde_json::{Map, Value};

use crate::proto::dialect::workspaces::token::{pin_verify, Keys, MAX_TOKEN_LEN};

const SECRET: &[u8] = b"fuzzing secret";
const OTHER: &[u8] = b"fuzzing secret2";
const SALT: &str = "pepper";
const NOW: u64 = 1_700_000_000;

/// What [`Keys::verify`] must say of `token` under [`SECRET`], computed independently.
fn expected(token: &str) -> Option<Map<String, Value>> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [h, c, s] = parts[..] else { return None };
    let tag = URL_SAFE_NO_PAD.decode(s).ok()?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET);
    let want = hmac::sign(&key, format!("{h}.{c}").as_bytes());
    if want.as_ref() != &tag[..] {
        return None;
    }
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
    match header {
        Value::Object(ref m) if m.get("alg") == Some(&Value::from("HS256")) => {}
        _ => return None,
    }
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).ok()?).ok()?;
    let Value::Object(claims) = claims else {
        return None;
    };
    let now = NOW as f64;
    if let Some(exp) = claims.get("exp") {
        match exp.as_f64() {
            Some(exp) if now < exp => {}
            _ => return None,
        }
    }
    if let Some(nbf) = claims.get("nbf") {
        match nbf.as_f64() {
            Some(nbf) if nbf <= now => {}
            _ => return None,
        }
    }
    Some(claims)
}

/// Verifies `token` and compares with [`expected`]; signs verified string claims again.
fn check_token(keys: &Keys, other: &Keys, token: &str) -> Option<Map<String, Value>> {
    let got = keys.verify(token, NOW);
    assert_eq!(got, expected(token), "{token:?}");
    let claims = got?;
    assert_eq!(
        other.verify(token, NOW),
        None,
        "verified under another secret"
    );
    // Re-sign: string claims in the map's order, then `iat`.
    let iat = claims.get("iat").and_then(Value::as_u64);
    let strings: Option<Vec<(&str, &str)>> = claims
        .iter()
        .filter(|(k, _)| *k != "iat")
        .map(|(k, v)| v.as_str().map(|v| (k.as_str(), v)))
        .collect();
    if let (Some(iat), Some(strings)) = (iat, strings) {
        let again = keys.sign(&strings, iat);
        if again.len() <= MAX_TOKEN_LEN {
            assert_eq!(
                keys.verify(&again, NOW).as_ref(),
                Some(&claims),
                "{again:?}"
            );
        }
    }
    Some(claims)
}

fn check_signed(keys: &Keys, other: &Keys, data: &[u8]) {
    let (pick, data) = data.split_last().map_or((0, data), |(p, d)| (*p, d));
    let texts: Vec<String> = data
        .split(|&b| b == 0)
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .collect();
    let pairs: Vec<(&str, &str)> = texts
        .chunks_exact(2)
        .map(|kv| (kv[0].as_str(), kv[1].as_str()))
        .collect();
    let iat = u64::from(pick) * 1_000_003;
    let token = keys.sign(&pairs, iat);
    let mut want = Map::new();
    for (k, v) in &pairs {
        want.insert((*k).to_owned(), Value::from(*v));
    }
    want.insert("iat".into(), Value::from(iat));
    // serde_json (whose `raw_value` feature the dialects use to relay values as sent)
    // reserves one member name: a payload whose first member has it does not parse, so its
    // token is refused. The server signs only its own fixed claim names.
    let reserved = pairs
        .first()
        .is_some_and(|(k, _)| *k == "$serde_json::private::RawValue");
    let refused = token.len() > MAX_TOKEN_LEN
        || want.contains_key("exp")
        || want.contains_key("nbf")
        || reserved;
    let got = check_token(keys, other, &token);
    if refused {
        assert_eq!(got, None);
    } else {
        assert_eq!(got.as_ref(), Some(&want), "{token:?}");
    }
    // One character changed: never valid.
    let chars: Vec<char> = token.chars().collect();
    let at = usize::from(pick) * 7 % chars.len();
    let alphabet = "AQgw_-.a";
    for replacement in alphabet.chars().filter(|&r| r != chars[at]).take(2) {
        let mut changed = chars.clone();
        changed[at] = replacement;
        let changed: String = changed.into_iter().collect();
        assert_eq!(keys.verify(&changed, NOW), None, "{changed:?} verified");
        assert_eq!(expected(&changed), None);
    }
}

fn check_forged(keys: &Keys, other: &Keys, data: &[u8]) {
    let (header, claims) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&br#"{"alg":"HS256","typ":"JWT"}"#[..], data),
    };
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(claims));
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET);
    let tag = hmac::sign(&key, token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(tag.as_ref()));
    check_token(keys, other, &token);
}

/// Runs the checks in the module docs on `data`; panics when one fails.
pub fn check_workspaces_tokens(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let keys = Keys::new(SECRET, SALT);
    let other = Keys::new(OTHER, SALT);
    match mode {
        1 => check_signed(&keys, &other, rest),
        2 => check_forged(&keys, &other, rest),
        _ => {
            let text = String::from_utf8_lossy(rest);
            check_token(&keys, &other, &text);
            let (ws, att) = ("w1", "a1");
            let binding = keys.binding(ws, att);
            assert_eq!(
                keys.check_binding(ws, att, &text).is_ok(),
                *text == binding,
                "binding {text:?}"
            );
            assert!(keys.check_binding(ws, att, &binding).is_ok());
            assert!(other.check_binding(ws, att, &binding).is_err());
            let iterations = text
                .strip_prefix("$pbkdf2-sha256$")
                .and_then(|r| r.split('$').next())
                .map(|i| i.parse::<u32>().ok().filter(|&i| i > 64));
            if !matches!(iterations, Some(Some(_))) {
                assert!(!pin_verify("some pin input", &text), "{text:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arbitrary_tokens_do_not_panic() {
        check_workspaces_tokens(b"");
        check_workspaces_tokens(&[0xff; 64]);
        check_workspaces_tokens(&(0..=255).collect::<Vec<u8>>());
        check_workspaces_tokens(b"\x01workspaceId\0w\0attendeeId\0a\0\x03");
        check_workspaces_tokens(b"\x01exp\0soon\x05");
        check_workspaces_tokens(b"\x02{\"alg\":\"HS256\"}\xff{\"exp\":1e300,\"nbf\":0}");
        check_workspaces_tokens(b"\x02{\"alg\":\"none\"}\xff{}");
        check_workspaces_tokens(b"\x00a.b.c");
    }
}
