//! The `proxy_header` fuzz target: arbitrary bytes as the start of a `--listen-proxy`
//! connection, and as `Forwarded` / `X-Forwarded-For` values (`proto::proxy`).
//!
//! Checked: nothing panics; a header that is `Done` has a length within the input, its prefix
//! of that length gives the same answer, and every shorter prefix is `Partial` (the shell
//! waits for more) or the same error; a client behind trusted proxies is never a trusted
//! address itself.

use crate::proto::proxy::{client_behind, proxy_header, Cidrs, Proxied};

/// Runs the checks in the module docs on `data`; panics when one fails.
pub fn check_proxy_header(data: &[u8]) {
    match proxy_header(data) {
        Ok(Proxied::Done { len, client }) => {
            assert!(
                len > 0 && len <= data.len(),
                "length {len} of {}",
                data.len()
            );
            assert_eq!(
                proxy_header(&data[..len]),
                Ok(Proxied::Done { len, client }),
                "the header alone reads differently"
            );
            for cut in 0..len {
                assert_eq!(
                    proxy_header(&data[..cut]),
                    Ok(Proxied::Partial),
                    "a prefix of {cut} bytes is not partial"
                );
            }
        }
        Ok(Proxied::Partial) => {}
        Err(_) => {}
    }
    let text = String::from_utf8_lossy(data);
    let (a, b) = text.split_once('\n').unwrap_or((&text, ""));
    let trusted = Cidrs::parse("10.0.0.0/8, 127.0.0.1, fd00::/8").unwrap_or_default();
    for (fwd, xff) in [(Some(a), None), (None, Some(a)), (Some(a), Some(b))] {
        if let Some(ip) = client_behind(fwd, xff, &trusted) {
            assert!(
                !trusted.contains(ip),
                "{ip} is a trusted proxy, not a client"
            );
        }
    }
}
