//! Which endpoint a request path names.
//!
//! Pure: a path in, a route out. Dialects add their own paths here as they arrive; the decision
//! of what to answer (and the data behind `/metrics`) stays with the shell's App.

/// A route known to the core server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/echo` or `/echo/<key>`: the WebSocket echo endpoint. A key places the connection on
    /// the core that owns it (all connections with one key share a core).
    Echo {
        key: Option<&'a str>,
    },
    /// cevitxe / relay discovery: `/introduction/:localId` (id percent-decoded).
    Introduction {
        id: String,
    },
    /// cevitxe / relay pipe: `/connection/:local/:remote/:key` or `/connect/…` (decoded).
    Connection(Seek),
    /// `/connection/:id` with one segment (the form in the original README): it can never be
    /// paired. The original completes the upgrade and closes; so does sigyard.
    Unpairable,
    /// Peerolator `/server` (exact path): a server peer.
    PeerServer,
    /// Peerolator `/client/:serverId` (decoded): a client of that server peer.
    PeerClient {
        server: String,
    },
    Healthz,
    Metrics,
    Status,
    /// `GET /ice-servers`: the ICE list as JSON (only with `--ice-endpoint-token`).
    IceServers,
    /// `/socket.io/`: Engine.IO 3 / Socket.IO 2 (webRTWorkspaces, MewConnect v1).
    SocketIo,
    NotFound,
}

/// Route a request path (percent-encoded, without the query). `echo` says whether the echo
/// endpoint is enabled; when it is not, its paths are not found.
pub fn route(path: &str, echo: bool) -> Route<'_> {
    match path {
        "/" => Route::Status,
        "/healthz" => Route::Healthz,
        "/metrics" => Route::Metrics,
        "/ice-servers" => Route::IceServers,
        "/socket.io/" | "/socket.io" => Route::SocketIo,
        "/echo" | "/echo/" if echo => Route::Echo { key: None },
        p if echo && p.starts_with("/echo/") => {
            let key = &p["/echo/".len()..];
            if key.contains('/') {
                Route::NotFound
            } else {
                Route::Echo { key: Some(key) }
            }
        }
        p => dialect_route(p).unwrap_or(Route::NotFound),
    }
}

/// The dialect paths: `None` when the path is none of them (or a segment does not decode).
fn dialect_route(path: &str) -> Option<Route<'static>> {
    let mut parts = path.strip_prefix('/')?.split('/');
    let first = parts.next()?;
    let segs: Vec<&str> = parts.collect();
    match (first, segs.as_slice()) {
        ("introduction", [id]) if !id.is_empty() => Some(Route::Introduction {
            id: percent_decode(id)?,
        }),
        ("connection" | "connect", [a, b, key]) if !a.is_empty() && !b.is_empty() => {
            Some(Route::Connection(Seek {
                local: percent_decode(a)?.into(),
                remote: percent_decode(b)?.into(),
                key: percent_decode(key)?.into(),
            }))
        }
        ("connection" | "connect", [_]) => Some(Route::Unpairable),
        ("server", []) => Some(Route::PeerServer),
        ("client", [id]) if !id.is_empty() => Some(Route::PeerClient {
            server: percent_decode(id)?,
        }),
        _ => None,
    }
}

/// True when a WebSocket upgrade on `path` is MewConnect v2: `path` is one of the configured
/// `paths`. MewConnect is checked before every other route, and only for upgrades (a plain
/// `GET /` stays the status page; PROTOCOLS.md, decisions across dialects).
pub fn is_mew_path(path: &str, paths: &[String]) -> bool {
    paths.iter().any(|p| p == path)
}

use crate::proto::dialect::pipe::Seek;
use crate::proto::http::percent_decode;

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
        assert_eq!(route("/ice-servers", false), Route::IceServers);
        assert_eq!(route("/ice-servers/x", false), Route::NotFound);
        assert_eq!(route("/socket.io/", false), Route::SocketIo);
        assert_eq!(route("/socket.io", false), Route::SocketIo);
        assert_eq!(route("/socket.io/x", false), Route::NotFound);
        assert_eq!(
            route("/introduction/al%20ice", false),
            Route::Introduction {
                id: "al ice".into()
            }
        );
        assert_eq!(route("/introduction/", false), Route::NotFound);
        assert_eq!(route("/introduction/a/b", false), Route::NotFound);
        let seek = Seek {
            local: "a".into(),
            remote: "b".into(),
            key: "doc 1".into(),
        };
        assert_eq!(
            route("/connection/a/b/doc%201", false),
            Route::Connection(seek.clone())
        );
        assert_eq!(
            route("/connect/a/b/doc%201", false),
            Route::Connection(seek)
        );
        assert_eq!(route("/connection/a", false), Route::Unpairable);
        assert_eq!(route("/connection/a/b", false), Route::NotFound);
        assert_eq!(route("/connection/a/b/%ZZ", false), Route::NotFound);
        assert_eq!(route("/server", false), Route::PeerServer);
        assert_eq!(route("/server/x", false), Route::NotFound);
        assert_eq!(
            route("/client/6f1c", false),
            Route::PeerClient {
                server: "6f1c".into()
            }
        );
        assert_eq!(route("/client/", false), Route::NotFound);
        assert_eq!(route("/client/a/b", false), Route::NotFound);
        let mew = ["/".to_string(), "/staging".to_string()];
        assert!(is_mew_path("/", &mew) && is_mew_path("/staging", &mew));
        assert!(!is_mew_path("/dev", &mew) && !is_mew_path("/staging/", &mew));
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
