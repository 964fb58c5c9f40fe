//! TURN REST credentials in coturn's `use-auth-secret` scheme (the "TURN REST API" of
//! draft-uberti-behave-turn-rest): the username is `<expiry unix seconds><separator><user id>`
//! and the password is `base64(HMAC-SHA1(shared secret, username))`. The TURN server checks the
//! password with the same secret and refuses the username once its expiry has passed, so the
//! signaling server and the TURN server share nothing but the secret.
//!
//! HMAC (RFC 2104) is built here over the `sha1` crate: a few lines, checked against the
//! RFC 2202 vectors and against Python's `hmac` module.

use base64::Engine;
use sha1::{Digest, Sha1};

/// SHA-1's block size in bytes.
const BLOCK: usize = 64;

/// HMAC-SHA1 (RFC 2104): `H((K ^ opad) || H((K ^ ipad) || message))`, with a key longer than
/// one block first hashed.
pub fn hmac_sha1(key: &[u8], message: &[u8]) -> [u8; 20] {
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..20].copy_from_slice(&Sha1::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| k.map(|b| b ^ byte);
    let inner = Sha1::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha1::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// The TURN username for `user` valid until `expiry` (unix seconds).
pub fn username(expiry: u64, separator: char, user: &str) -> String {
    format!("{expiry}{separator}{user}")
}

/// The TURN password for `username` under `secret`: standard base64 with padding.
pub fn credential(secret: &str, username: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(hmac_sha1(secret.as_bytes(), username.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// RFC 2202 section 3, test cases 1-7 (keys of 20, 4, 20, 25, 20, 80 and 80 bytes).
    #[test]
    fn hmac_sha1_matches_rfc_2202() {
        let cases: [(Vec<u8>, Vec<u8>, &str); 7] = [
            (
                vec![0x0b; 20],
                b"Hi There".to_vec(),
                "b617318655057264e28bc0b6fb378c8ef146be00",
            ),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
            ),
            (
                vec![0xaa; 20],
                vec![0xdd; 50],
                "125d7342b9ac11cd91a39af48aa17b4f63f175d3",
            ),
            (
                (1..=25).collect(),
                vec![0xcd; 50],
                "4c9007f4026250c6bc8414f9bf50c86c2d7235da",
            ),
            (
                vec![0x0c; 20],
                b"Test With Truncation".to_vec(),
                "4c1a03424b55e07fe7f27be1d58bb9324a9a5a04",
            ),
            (
                vec![0xaa; 80],
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "aa4ae5e15272d00e95705637ce8a3b55ed402112",
            ),
            (
                vec![0xaa; 80],
                b"Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data"
                    .to_vec(),
                "e8e99d0f45237d786d6bbaa7965c7808bbff1a91",
            ),
        ];
        for (key, msg, want) in cases {
            assert_eq!(hex(&hmac_sha1(&key, &msg)), want);
        }
    }

    /// Credentials computed independently by Python's `hmac` and `base64` modules (run here,
    /// so the expected values never come from this code): keys below, at and above one block,
    /// empty and non-ASCII secrets and users, every separator form.
    #[test]
    fn credentials_match_python_hmac() {
        let cases: Vec<(String, String)> = vec![
            ("s3cret".into(), username(1_795_315_071, ':', "alice")),
            (String::new(), username(0, ':', "")),
            (
                "k".repeat(64),
                username(4_102_444_800, '-', "0123456789abcdef0123456789abcdef"),
            ),
            (
                "long secret ".repeat(10),
                username(1_700_000_000, '|', "connId:with:colons"),
            ),
            (
                "clé secrète ✓".into(),
                username(1_234_567_890, '.', "attendée-7"),
            ),
        ];
        let script = "import sys, hmac, hashlib, base64\n\
                      args = sys.argv[1:]\n\
                      for i in range(0, len(args), 2):\n    \
                          d = hmac.new(args[i].encode(), args[i+1].encode(), hashlib.sha1).digest()\n    \
                          print(base64.b64encode(d).decode())\n";
        let mut cmd = std::process::Command::new("python3");
        cmd.arg("-c").arg(script);
        for (secret, user) in &cases {
            cmd.arg(secret).arg(user);
        }
        let out = cmd
            .output()
            .expect("python3 is needed to compute the reference HMAC-SHA1 values");
        assert!(
            out.status.success(),
            "python3: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(want.len(), cases.len());
        for ((secret, user), want) in cases.iter().zip(want) {
            assert_eq!(credential(secret, user), want, "{secret:?} {user:?}");
        }
    }

    #[test]
    fn username_format() {
        assert_eq!(username(1_795_315_071, ':', "alice"), "1795315071:alice");
        assert_eq!(username(5, '-', ""), "5-");
        // Computed with Python's hmac module; coturn 4.6 with `static-auth-secret=s3cret`
        // allocates for this pair (tests/ice_coturn.rs checks minted pairs end to end).
        assert_eq!(
            credential("s3cret", "1795315071:alice"),
            "+giRtDIC8Z/GQL0Q3mraGnYeZUQ="
        );
    }
}
