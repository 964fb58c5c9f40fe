//! ICE servers for the dialects (MewConnect `tryturn`, webRTWorkspaces `iceservers`) and the
//! optional `GET /ice-servers` endpoint: one configuration shared by all of them.
//!
//! * A **static list** of STUN/TURN URIs (`--ice-server`); none configured means the five Google
//!   STUN servers the original servers used, logged at start.
//! * **TURN REST credentials** ([`turn_rest`]) for every `turn:`/`turns:` entry, minted per
//!   request for the user id the dialect passes (a connection id, an attendee id). Several
//!   `--turn-secret`s may be configured for a rotation; sigyard mints with the first only.
//!   Rotating: make the TURN servers accept the new secret as well as the old one (coturn takes
//!   several `static-auth-secret` lines), then put the new secret first here; drop the old one
//!   from both once the longest TTL has passed. Listing every secret's variant of each entry
//!   was rejected: it would double every client's TURN allocations for the whole rotation.
//! * An optional **Twilio-compatible token provider** ([`twilio`]): a background thread fetches
//!   a token, caches it with its TTL and refreshes it at half-life. Reactors only clone an
//!   `Arc` out of a lock the thread holds for a pointer swap, so a slow provider never delays
//!   them. While the provider has no valid token (not fetched yet, failing), the static list
//!   above is served: the fallback.
//!
//! Every entry goes out with both `url` (legacy, read by the MewConnect web client and the
//! Android app) and `urls` (what browsers require).

pub mod endpoint;
pub mod turn_rest;
pub mod twilio;

use crate::secret::Secret;
use serde_json::{json, Map, Value};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The ICE servers handed to clients (`crate::ice`): a static list, TURN REST credentials,
/// an optional Twilio-compatible token provider, and the optional `GET /ice-servers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceConfig {
    /// `--ice-server`, validated `stun:`/`stuns:`/`turn:`/`turns:` URIs; empty = the default
    /// Google STUN list.
    pub servers: Vec<String>,
    /// `--turn-secret`: the first mints credentials; the others are kept for rotation.
    pub turn_secrets: Vec<Secret>,
    pub turn_ttl: Duration,
    pub turn_separator: char,
    pub twilio_account_sid: Option<String>,
    pub twilio_auth_token: Option<Secret>,
    pub twilio_base_url: String,
    pub twilio_ca_file: PathBuf,
    pub twilio_timeout: Duration,
    pub endpoint_token: Option<Secret>,
}

impl Default for IceConfig {
    fn default() -> Self {
        IceConfig {
            servers: Vec::new(),
            turn_secrets: Vec::new(),
            turn_ttl: Duration::from_secs(86_400),
            turn_separator: ':',
            twilio_account_sid: None,
            twilio_auth_token: None,
            twilio_base_url: "https://api.twilio.com".into(),
            twilio_ca_file: PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
            twilio_timeout: Duration::from_secs(5),
            endpoint_token: None,
        }
    }
}

/// The list served when no `--ice-server` is configured (webRTWorkspaces' development list).
pub const GOOGLE_STUN: [&str; 5] = [
    "stun:stun.l.google.com:19302",
    "stun:stun1.l.google.com:19302",
    "stun:stun2.l.google.com:19302",
    "stun:stun3.l.google.com:19302",
    "stun:stun4.l.google.com:19302",
];

/// One ICE server as handed to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    pub url: String,
    pub username: Option<String>,
    pub credential: Option<String>,
}

impl IceServer {
    /// `{"url", "urls", "username"?, "credential"?}`: `url` and `urls` always, the same string.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("url".into(), self.url.clone().into());
        m.insert("urls".into(), self.url.clone().into());
        if let Some(u) = &self.username {
            m.insert("username".into(), u.clone().into());
        }
        if let Some(c) = &self.credential {
            m.insert("credential".into(), c.clone().into());
        }
        Value::Object(m)
    }
}

/// Where a list came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The configured (or default) static list, with minted TURN credentials.
    Static,
    /// The token provider's cached token.
    Provider(Arc<twilio::Token>),
}

/// The ICE servers for one request, with what the dialects' token objects also carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceList {
    pub servers: Vec<IceServer>,
    /// Lifetime of the credentials in seconds.
    pub ttl: u64,
    /// The TURN username and password (the minted pair, or the provider token's), if any.
    pub username: Option<String>,
    pub password: Option<String>,
    pub source: Source,
}

impl IceList {
    /// The servers as a JSON array (webRTWorkspaces `iceservers`, MewConnect `attemptingturn`).
    pub fn servers_json(&self) -> Value {
        Value::Array(self.servers.iter().map(IceServer::to_json).collect())
    }

    /// `{"iceServers": [...], "ttl": <seconds>}`: the `GET /ice-servers` body.
    pub fn to_json(&self) -> Value {
        json!({ "iceServers": self.servers_json(), "ttl": self.ttl })
    }

    /// The token object of MewConnect's `turntoken` (PROTOCOLS.md §1.8): the twilio-node
    /// TokenInstance fields in camelCase, `ttl` as a string; the provider's account and dates
    /// when the list came from it.
    pub fn token_json(&self) -> Value {
        let mut m = Map::new();
        if let Source::Provider(t) = &self.source {
            let meta = [
                ("accountSid", &t.account_sid),
                ("dateCreated", &t.date_created),
                ("dateUpdated", &t.date_updated),
            ];
            for (k, v) in meta {
                if let Some(v) = v {
                    m.insert(k.into(), v.clone().into());
                }
            }
        }
        m.insert("iceServers".into(), self.servers_json());
        if let Some(p) = &self.password {
            m.insert("password".into(), p.clone().into());
        }
        m.insert("ttl".into(), self.ttl.to_string().into());
        if let Some(u) = &self.username {
            m.insert("username".into(), u.clone().into());
        }
        Value::Object(m)
    }
}

/// The scheme of an ICE server URI (RFC 7064, RFC 7065).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Stun,
    Stuns,
    Turn,
    Turns,
}

/// A validated ICE server URI: `stun:host[:port]`, `turn:host[:port][?transport=udp|tcp]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceUri {
    pub scheme: Scheme,
    pub host: String,
    pub port: Option<u16>,
    pub transport: Option<&'static str>,
}

impl fmt::Display for IceUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Stun => "stun",
            Scheme::Stuns => "stuns",
            Scheme::Turn => "turn",
            Scheme::Turns => "turns",
        };
        write!(f, "{scheme}:{}", self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        if let Some(t) = self.transport {
            write!(f, "?transport={t}")?;
        }
        Ok(())
    }
}

/// Parses and validates an ICE server URI; the error says what is wrong with it.
pub fn parse_uri(s: &str) -> Result<IceUri, String> {
    let s = s.trim();
    let bad = |why: &str| format!("{s:?} is not an ICE server URI: {why}");
    let (scheme, rest) = s.split_once(':').ok_or_else(|| {
        bad("use stun:, stuns:, turn: or turns:, e.g. stun:stun.example.org:3478")
    })?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "stun" => Scheme::Stun,
        "stuns" => Scheme::Stuns,
        "turn" => Scheme::Turn,
        "turns" => Scheme::Turns,
        _ => return Err(bad("the scheme must be stun:, stuns:, turn: or turns:")),
    };
    if rest.starts_with("//") {
        return Err(bad("no // after the scheme (stun:host:port)"));
    }
    let (hostport, query) = match rest.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (rest, None),
    };
    let transport = match (scheme, query) {
        (_, None) => None,
        (Scheme::Stun | Scheme::Stuns, Some(_)) => {
            return Err(bad("stun: and stuns: URIs take no query (RFC 7064)"))
        }
        (_, Some(q)) => match q.to_ascii_lowercase().as_str() {
            "transport=udp" => Some("udp"),
            "transport=tcp" => Some("tcp"),
            _ => return Err(bad("the only query is ?transport=udp or ?transport=tcp")),
        },
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("not an IPv6 address inside [ ]"));
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ]"))?),
        };
        (format!("[{addr}]"), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    let host_ok = host.starts_with('[')
        || (!host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'));
    if !host_ok {
        return Err(bad("missing or invalid host"));
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return Err(bad("the port must be 1 to 65535")),
        },
    };
    Ok(IceUri {
        scheme,
        host,
        port,
        transport,
    })
}

/// Whether `uri` (already validated) is a TURN server, which gets credentials.
pub fn is_turn(uri: &str) -> bool {
    let scheme = uri.split(':').next().unwrap_or_default();
    scheme.eq_ignore_ascii_case("turn") || scheme.eq_ignore_ascii_case("turns")
}

/// One ICE configuration for the whole server. Shared by every reactor (in `net::Shared`);
/// every method is cheap and never blocks on I/O.
pub struct Ice {
    statics: Vec<(String, bool)>,
    default_list: bool,
    secrets: Vec<Secret>,
    /// No `--turn-secret` for the configured TURN servers: a per-process random one was made.
    random_secret: bool,
    ttl: u64,
    separator: char,
    provider: Option<Arc<twilio::Provider>>,
    endpoint_token: Option<Secret>,
}

impl fmt::Debug for Ice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ice")
            .field("statics", &self.statics)
            .field("secrets", &self.secrets.len())
            .field("ttl", &self.ttl)
            .field("provider", &self.provider.is_some())
            .finish()
    }
}

impl Ice {
    /// Builds the configuration (and the provider's TLS trust store, read from its CA file).
    /// Starts nothing: see [`Ice::start`].
    pub fn new(cfg: &IceConfig) -> Result<Ice, String> {
        let default_list = cfg.servers.is_empty();
        let statics: Vec<(String, bool)> = match default_list {
            true => GOOGLE_STUN.iter().map(|u| (u.to_string(), false)).collect(),
            false => cfg
                .servers
                .iter()
                .map(|u| (u.clone(), is_turn(u)))
                .collect(),
        };
        let has_turn = statics.iter().any(|s| s.1);
        let mut secrets = cfg.turn_secrets.clone();
        let random_secret = has_turn && secrets.is_empty();
        if random_secret {
            secrets.push(Secret::new(crate::csprng::hex_id::<32>()));
        }
        let provider = twilio::Provider::new(cfg)?;
        Ok(Ice {
            statics,
            default_list,
            secrets,
            random_secret,
            ttl: cfg.turn_ttl.as_secs().max(1),
            separator: cfg.turn_separator,
            provider: provider.map(Arc::new),
            endpoint_token: cfg.endpoint_token.clone(),
        })
    }

    /// Logs what will be served and starts the provider's thread, if one is configured.
    pub fn start(&self) {
        let list: Vec<&str> = self.statics.iter().map(|s| s.0.as_str()).collect();
        if self.default_list {
            crate::info!(
                "ICE: no --ice-server given: serving the default Google STUN list ({})",
                list.join(" ")
            );
        } else {
            crate::info!("ICE: static list: {}", list.join(" "));
        }
        let turn = self.statics.iter().filter(|s| s.1).count();
        if self.random_secret {
            crate::warn!(
                "ICE: {turn} TURN server(s) but no --turn-secret (SIGYARD_TURN_SECRET): minting \
                 with a random per-process secret, which the TURN servers will refuse"
            );
        } else if turn > 0 {
            crate::info!(
                "ICE: TURN REST credentials for {turn} TURN server(s): ttl {}s, separator {:?}, \
                 {} secret(s), minting with the first",
                self.ttl,
                self.separator,
                self.secrets.len()
            );
        }
        if let Some(p) = &self.provider {
            p.spawn();
        }
    }

    /// Stops the provider's thread (at its next wake-up; a request in flight ends by its
    /// timeout). Idempotent.
    pub fn stop(&self) {
        if let Some(p) = &self.provider {
            p.stop();
        }
    }

    /// The ICE servers for `user` at `now_unix` (seconds since the epoch): the provider's
    /// token while it has a valid one, else the static list with TURN credentials minted for
    /// `user` (which should be at most a few hundred bytes: TURN limits usernames to 513).
    pub fn list(&self, user: &str, now_unix: u64) -> IceList {
        if let Some(token) = self.provider.as_ref().and_then(|p| p.current(now_unix)) {
            return IceList {
                servers: token.servers.clone(),
                ttl: token.ttl,
                username: token.username.clone(),
                password: token.password.clone(),
                source: Source::Provider(token),
            };
        }
        let minted = self.secrets.first().map(|secret| {
            let name = turn_rest::username(now_unix.saturating_add(self.ttl), self.separator, user);
            let pass = turn_rest::credential(secret.expose(), &name);
            (name, pass)
        });
        let servers = self
            .statics
            .iter()
            .map(|(url, turn)| {
                let creds = minted.as_ref().filter(|_| *turn);
                IceServer {
                    url: url.clone(),
                    username: creds.map(|c| c.0.clone()),
                    credential: creds.map(|c| c.1.clone()),
                }
            })
            .collect();
        let minted = minted.filter(|_| self.statics.iter().any(|s| s.1));
        IceList {
            servers,
            ttl: self.ttl,
            username: minted.as_ref().map(|c| c.0.clone()),
            password: minted.map(|c| c.1),
            source: Source::Static,
        }
    }

    /// [`Ice::list`]'s servers alone.
    pub fn servers(&self, user: &str, now_unix: u64) -> Vec<IceServer> {
        self.list(user, now_unix).servers
    }

    /// Whether a token provider is configured. With one, a [`Source::Static`] list means it
    /// has no valid token (not fetched yet, or failing): MewConnect may prefer to send nothing
    /// then, as its original did (PROTOCOLS.md §1.8).
    pub fn has_provider(&self) -> bool {
        self.provider.is_some()
    }

    /// The bearer token of `GET /ice-servers`; `None` leaves the endpoint off.
    pub fn endpoint_token(&self) -> Option<&str> {
        self.endpoint_token.as_ref().map(Secret::expose)
    }
}

impl Drop for Ice {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Seconds since the Unix epoch, from the system clock.
/// The dialects' view of the ICE configuration (`proto::dialect::Env`).
pub struct IceEnv<'a>(pub &'a Ice);

impl crate::proto::dialect::Env for IceEnv<'_> {
    fn ice_servers(&mut self, user: &str) -> crate::proto::dialect::IceServers {
        let list = self.0.list(user, unix_now());
        crate::proto::dialect::IceServers {
            servers: list.servers_json(),
            token: list.token_json(),
        }
    }
}

pub fn unix_now() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
