//! `GET /ice-servers`: the ICE list as JSON for applications that want credentials without a
//! dialect. Off unless `--ice-endpoint-token` is set (the shell answers 404 then); every
//! request must carry `Authorization: Bearer <token>` (compared in constant time).
//!
//! * `200` `{"iceServers":[{"url","urls","username"?,"credential"?}…],"ttl":<seconds>}` with
//!   `Cache-Control: no-store`. The optional query parameter `user` (percent-encoded, 1 to 256
//!   bytes, no control characters) is the user part of minted TURN usernames; without it a
//!   random 16-hex-digit id is used.
//! * `401` with `WWW-Authenticate: Bearer` when the token is missing or wrong.
//! * `400` when `user` is malformed.

use super::Ice;
use crate::proto::http::Response;
use crate::proto::http::{percent_decode, RequestHead};

/// Longest `user` accepted (TURN usernames are limited to 513 bytes in all).
pub const MAX_USER_BYTES: usize = 256;

/// The answer to an authorised-or-not `GET /ice-servers`.
pub fn respond(ice: &Ice, head: &RequestHead, now_unix: u64) -> Response {
    let Some(token) = ice.endpoint_token() else {
        return Response::text(404, "not found");
    };
    if !bearer_matches(head.authorization.as_deref(), token) {
        let mut r = Response::text(401, "missing or wrong bearer token");
        r.headers
            .push(("WWW-Authenticate".into(), "Bearer realm=\"sigyard\"".into()));
        r.headers.push(("Cache-Control".into(), "no-store".into()));
        return r;
    }
    let user = match user_param(head.query.as_deref()) {
        Ok(Some(u)) => u,
        Ok(None) => crate::csprng::hex_id::<8>(),
        Err(why) => return Response::text(400, why),
    };
    let body = ice.list(&user, now_unix).to_json().to_string();
    let mut r = Response::new(200, "application/json", body);
    r.headers.push(("Cache-Control".into(), "no-store".into()));
    r
}

/// The `user` query parameter, decoded and checked.
fn user_param(query: Option<&str>) -> Result<Option<String>, &'static str> {
    let Some(q) = query else {
        return Ok(None);
    };
    let Some(raw) = q.split('&').find_map(|kv| kv.strip_prefix("user=")) else {
        return Ok(None);
    };
    let user = percent_decode(raw).ok_or("user: bad percent-encoding or not UTF-8")?;
    if user.is_empty() || user.len() > MAX_USER_BYTES {
        return Err("user: 1 to 256 bytes");
    }
    if user.chars().any(char::is_control) {
        return Err("user: no control characters");
    }
    Ok(Some(user))
}

/// Whether `header` is `Bearer <token>` (scheme case-insensitive), comparing the token in time
/// independent of where it differs.
pub fn bearer_matches(header: Option<&str>, token: &str) -> bool {
    let Some(h) = header else {
        return false;
    };
    let Some((scheme, given)) = h.trim().split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && constant_time_eq(given.trim().as_bytes(), token.as_bytes())
}

/// Equal lengths and bytes, without an early exit on the first difference (the length itself is
/// not hidden).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, &x) in a.iter().enumerate() {
        diff |= x ^ b.get(i).copied().unwrap_or(!x);
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        let t = "0123456789abcdef";
        assert!(bearer_matches(Some("Bearer 0123456789abcdef"), t));
        assert!(bearer_matches(Some("bearer   0123456789abcdef "), t));
        for bad in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer "),
            Some("Basic 0123456789abcdef"),
            Some("Bearer 0123456789abcdeF"),
            Some("Bearer 0123456789abcde"),
            Some("Bearer 0123456789abcdef0"),
            Some("Bearer 0123456789abcdef, Bearer x"),
            Some("0123456789abcdef"),
        ] {
            assert!(!bearer_matches(bad, t), "{bad:?}");
        }
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"a", b""));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn user_parameter() {
        assert_eq!(user_param(None), Ok(None));
        assert_eq!(user_param(Some("x=1")), Ok(None));
        assert_eq!(
            user_param(Some("x=1&user=al%20ice")),
            Ok(Some("al ice".into()))
        );
        assert_eq!(user_param(Some("user=conn:1")), Ok(Some("conn:1".into())));
        assert!(user_param(Some("user=")).is_err());
        assert!(user_param(Some("user=%ZZ")).is_err());
        assert!(user_param(Some("user=a%0Ab")).is_err());
        assert!(user_param(Some(&format!("user={}", "x".repeat(257)))).is_err());
        assert!(user_param(Some(&format!("user={}", "x".repeat(256)))).is_ok());
    }
}
