//! The tokens of webRTWorkspaces (PROTOCOLS.md §5.5): HS256 JWTs with the original claim
//! names, the access-token binding (HMAC-SHA256, checked in constant time) and the slow,
//! salted PIN hash (PBKDF2-HMAC-SHA256) inside workspace tokens.
//!
//! A JWT is `base64url(header).base64url(claims).base64url(HMAC-SHA256(secret, first two))`
//! with the header `{"alg":"HS256","typ":"JWT"}` and the claims in the original's order, `iat`
//! last, so a token has the bytes the original's `jsonwebtoken` would produce for the same
//! claims. Only HS256 is accepted on verification; `exp` and `nbf` are honoured when present
//! (sigyard issues neither: workspaces live until destroyed).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::{hmac, pbkdf2};
use serde_json::{Map, Value};
use std::num::NonZeroU32;

use crate::proto::dialect::Random;

/// The JWT header, exactly as `jsonwebtoken` writes it.
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;
/// Prefix of an access-token binding (`singningToken` of an access token).
const BINDING_PREFIX: &str = "hs256:";
/// Prefix of a PIN hash (`singningToken` of a workspace token).
const PIN_PREFIX: &str = "$pbkdf2-sha256$";
/// Tokens longer than this are refused unread.
pub const MAX_TOKEN_LEN: usize = 4096;
/// PIN hashes asking for more iterations than this are refused (a bound on the work one
/// `attend` can cause, whatever the configuration was when the token was minted).
pub const MAX_PIN_ITERATIONS: u32 = 10_000_000;
const PIN_SALT_LEN: usize = 16;
const PIN_HASH_LEN: usize = 32;

/// The server's token keys: the JWT key (the secret itself, as the original) and the
/// binding key derived from it, plus the pepper of every signing input.
pub struct Keys {
    jwt: hmac::Key,
    binding: hmac::Key,
    salt: String,
}

/// Why an access-token binding was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingError {
    /// Not a binding string at all.
    Malformed,
    /// Well-formed, but for another workspace/attendee or another key.
    Mismatch,
}

impl Keys {
    pub fn new(secret: &[u8], salt: &str) -> Keys {
        let jwt = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let derived = hmac::sign(&jwt, b"sigyard webRTWorkspaces access-token binding v1");
        Keys {
            jwt,
            binding: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
            salt: salt.to_string(),
        }
    }

    /// `signingInput(id, code)` of the original: `id:code:SALT_STRING`.
    pub fn signing_input(&self, id: &str, code: &str) -> String {
        format!("{id}:{code}:{}", self.salt)
    }

    /// An HS256 JWT over `claims` (in order) followed by `iat` (seconds).
    pub fn sign(&self, claims: &[(&str, &str)], iat_s: u64) -> String {
        let mut body = String::from("{");
        for (k, v) in claims {
            body.push_str(&json_str(k));
            body.push(':');
            body.push_str(&json_str(v));
            body.push(',');
        }
        body.push_str(&format!("\"iat\":{iat_s}}}"));
        let mut token = URL_SAFE_NO_PAD.encode(HEADER);
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(body));
        let tag = hmac::sign(&self.jwt, token.as_bytes());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(tag.as_ref()));
        token
    }

    /// The claims of a JWT signed with this key (HS256 only), if valid at `now_s`.
    pub fn verify(&self, token: &str, now_s: u64) -> Option<Map<String, Value>> {
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let mut parts = token.split('.');
        let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let tag = URL_SAFE_NO_PAD.decode(s).ok()?;
        hmac::verify(&self.jwt, &token.as_bytes()[..h.len() + 1 + c.len()], &tag).ok()?;
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
        if header.get("alg").and_then(Value::as_str) != Some("HS256") {
            return None;
        }
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).ok()?).ok()?;
        let Value::Object(claims) = claims else {
            return None;
        };
        let now = now_s as f64;
        match claims.get("exp") {
            None => {}
            Some(exp) if exp.as_f64().is_some_and(|exp| now < exp) => {}
            Some(_) => return None,
        }
        match claims.get("nbf") {
            None => {}
            Some(nbf) if nbf.as_f64().is_some_and(|nbf| now >= nbf) => {}
            Some(_) => return None,
        }
        Some(claims)
    }

    /// The access-token binding of `attendee` in `workspace`.
    pub fn binding(&self, workspace: &str, attendee: &str) -> String {
        let tag = hmac::sign(
            &self.binding,
            self.signing_input(workspace, attendee).as_bytes(),
        );
        format!("{BINDING_PREFIX}{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// Checks a binding in constant time (with respect to the expected value).
    pub fn check_binding(
        &self,
        workspace: &str,
        attendee: &str,
        binding: &str,
    ) -> Result<(), BindingError> {
        let tag = binding
            .strip_prefix(BINDING_PREFIX)
            .and_then(|b| URL_SAFE_NO_PAD.decode(b).ok())
            .ok_or(BindingError::Malformed)?;
        let input = self.signing_input(workspace, attendee);
        hmac::verify(&self.binding, input.as_bytes(), &tag).map_err(|_| BindingError::Mismatch)
    }
}

/// A fresh PIN hash of `input` (a signing input) with a random salt:
/// `$pbkdf2-sha256$<iterations>$<salt>$<hash>` (base64url).
pub fn pin_hash(input: &str, iterations: u32, rand: &mut dyn Random) -> String {
    let iterations =
        NonZeroU32::new(iterations.clamp(1, MAX_PIN_ITERATIONS)).unwrap_or(NonZeroU32::MIN);
    let mut salt = [0u8; PIN_SALT_LEN];
    rand.fill(&mut salt);
    let mut hash = [0u8; PIN_HASH_LEN];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        &salt,
        input.as_bytes(),
        &mut hash,
    );
    format!(
        "{PIN_PREFIX}{iterations}${}${}",
        URL_SAFE_NO_PAD.encode(salt),
        URL_SAFE_NO_PAD.encode(hash)
    )
}

/// Whether `input` matches a PIN hash made by [`pin_hash`] (constant-time comparison).
pub fn pin_verify(input: &str, stored: &str) -> bool {
    let Some(rest) = stored.strip_prefix(PIN_PREFIX) else {
        return false;
    };
    let mut parts = rest.split('$');
    let (Some(iterations), Some(salt), Some(hash), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Some(iterations) = iterations
        .parse::<u32>()
        .ok()
        .filter(|&i| i <= MAX_PIN_ITERATIONS)
        .and_then(NonZeroU32::new)
    else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (URL_SAFE_NO_PAD.decode(salt), URL_SAFE_NO_PAD.decode(hash)) else {
        return false;
    };
    if salt.len() > 64 || hash.len() != PIN_HASH_LEN {
        return false;
    }
    pbkdf2::verify(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        &salt,
        input.as_bytes(),
        &hash,
    )
    .is_ok()
}

fn json_str(s: &str) -> String {
    Value::from(s).to_string()
}
