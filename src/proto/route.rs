//! Which built-in endpoint a request path names.
//!
//! Pure: a path in, a route out. Dialects add their own paths here as they arrive; the decision
//! of what to answer (and the data behind `/metrics`) stays with the shell's App.

/// A route known to the core server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/echo` or `/echo/<key>`: the WebSocket echo endpoint. A key places the connection on
    /// the core that owns it (all connections with one key share a core).
    Echo {
        key: Option<&'a str>,
    },
    Healthz,
    Metrics,
    Status,
    NotFound,
}

/// Route a request path (percent-encoded, without the query). `echo` says whether the echo
/// endpoint is enabled; when it is not, its paths are not found.
pub fn route(path: &str, echo: bool) -> Route<'_> {
    match path {
        "/" => Route::Status,
        "/healthz" => Route::Healthz,
        "/metrics" => Route::Metrics,
        "/echo" | "/echo/" if echo => Route::Echo { key: None },
        p if echo && p.starts_with("/echo/") => {
            let key = &p["/echo/".len()..];
            if key.contains('/') {
                Route::NotFound
            } else {
                Route::Echo { key: Some(key) }
            }
        }
        _ => Route::NotFound,
    }
}

/// A stable 64-bit FNV-1a hash: the same key maps to the same core in every process.
pub fn stable_hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The core that owns `key` among `cores`.
pub fn owner(key: &str, cores: usize) -> usize {
    (stable_hash(key.as_bytes()) % cores.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/", false), Route::Status);
        assert_eq!(route("/echo", false), Route::NotFound);
        assert_eq!(route("/echo", true), Route::Echo { key: None });
        assert_eq!(route("/echo/room", true), Route::Echo { key: Some("room") });
        assert_eq!(route("/echo/a/b", true), Route::NotFound);
        assert_eq!(route("/metrics", true), Route::Metrics);
        assert_eq!(route("/nope", true), Route::NotFound);
    }

    #[test]
    fn owner_is_stable_and_in_range() {
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        for n in 1..8 {
            assert!(owner("room", n) < n);
            assert_eq!(owner("room", n), owner("room", n));
        }
    }
}
