//! A Twilio-compatible Network Traversal token provider: `POST {base}/2010-04-01/Accounts/{sid}/
//! Tokens.json` with form field `Ttl` and HTTP basic auth (account SID, auth token), over
//! HTTPS (ureq on rustls with ring, trust store from a CA file). The answer's `ice_servers`
//! (entries with `url` and/or `urls`, a string or an array) become [`IceServer`]s.
//!
//! Everything here that blocks runs on the provider's own thread, never on a reactor: it
//! fetches a token at start, stores it behind a lock held only for a pointer swap, refreshes it
//! at half its TTL, and on failure retries with a backoff from 1 s to 60 s while the last valid
//! token (or, when there is none, the static list) is served. Each request is bounded by
//! `--twilio-timeout`: the connect (TCP, then the TLS handshake), then the whole exchange from
//! the TCP connect on (`Deadline`). Name resolution uses the system resolver, bounded by its
//! own timeouts (an IP address in the base URL needs none).

use super::IceConfig;
use super::IceServer;
use crate::secret::Secret;
use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::Value;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};
use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{
    time, Buffers, ConnectionDetails, Connector, NextTimeout, RustlsConnector, TcpConnector,
    Transport,
};

/// Largest provider response read (a token is about 1 KB).
pub const MAX_RESPONSE: usize = 256 * 1024;
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);

/// An `https://host[:port][/prefix]` base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash (empty for none).
    pub prefix: String,
}

impl BaseUrl {
    pub fn parse(s: &str) -> Result<BaseUrl, String> {
        let t = s.trim();
        let bad = |why: &str| format!("{t:?} is not a base URL: {why}");
        let rest = t
            .strip_prefix("https://")
            .ok_or_else(|| bad("it must start with https://"))?;
        if rest.contains(['?', '#', '@']) {
            return Err(bad("no query, fragment or user info"));
        }
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (addr, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            addr.parse::<std::net::Ipv6Addr>()
                .map_err(|_| bad("not an IPv6 address inside [ ]"))?;
            (format!("[{addr}]"), after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        let host_ok = host.starts_with('[')
            || (!host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
        if !host_ok {
            return Err(bad("missing or invalid host"));
        }
        let port = match port {
            None => 443,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(bad("the port must be 1 to 65535")),
            },
        };
        let prefix = path.trim_end_matches('/');
        if !prefix
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'%' || b == b'/')
        {
            return Err(bad("the path may hold only visible ASCII without %"));
        }
        Ok(BaseUrl {
            host,
            port,
            prefix: prefix.to_string(),
        })
    }

    /// The `Host` header value.
    fn authority(&self) -> String {
        match self.port {
            443 => self.host.clone(),
            p => format!("{}:{p}", self.host),
        }
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "https://{}{}", self.authority(), self.prefix)
    }
}

/// A token as the provider answered it, with when it was obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub servers: Vec<IceServer>,
    /// Lifetime in seconds (the answer's `ttl`, else the one asked for).
    pub ttl: u64,
    pub username: Option<String>,
    pub password: Option<String>,
    pub account_sid: Option<String>,
    pub date_created: Option<String>,
    pub date_updated: Option<String>,
    /// Unix seconds when it arrived; valid until `obtained + ttl`.
    pub obtained: u64,
}

impl Token {
    pub fn expires(&self) -> u64 {
        self.obtained.saturating_add(self.ttl)
    }
}

/// Maps a provider answer (snake_case JSON) to a [`Token`]. `ttl` is the one asked for, used
/// when the answer has none. An answer without a usable ICE server is an error (the static
/// list is better than nothing).
pub fn parse_token(body: &[u8], ttl: u64, now_unix: u64) -> Result<Token, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let entries = v
        .get("ice_servers")
        .and_then(Value::as_array)
        .ok_or("the answer has no ice_servers array")?;
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(String::from);
    let mut servers = Vec::new();
    for e in entries {
        let urls: Vec<&str> = match e.get("urls").or_else(|| e.get("url")) {
            Some(Value::String(u)) => vec![u.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        for url in urls.into_iter().filter(|u| !u.is_empty()) {
            servers.push(IceServer {
                url: url.to_string(),
                username: text(e, "username"),
                credential: text(e, "credential"),
            });
        }
    }
    if servers.is_empty() {
        return Err("the answer's ice_servers holds no server with a url".into());
    }
    let answered_ttl = match v.get("ttl") {
        Some(Value::String(s)) => s.trim().parse().ok(),
        Some(Value::Number(n)) => n.as_u64(),
        _ => None,
    };
    Ok(Token {
        servers,
        ttl: answered_ttl.filter(|&t| t > 0).unwrap_or(ttl),
        username: text(&v, "username"),
        password: text(&v, "password"),
        account_sid: text(&v, "account_sid"),
        date_created: text(&v, "date_created"),
        date_updated: text(&v, "date_updated"),
        obtained: now_unix,
    })
}

/// What an answer comes to: for a 2xx status the token in `body` ([`parse_token`]), else an
/// error with the status and the answer's `message` (Twilio's error field) or, when it has
/// none, the start of the body.
pub fn answer(status: u16, body: &[u8], ttl: u64, now_unix: u64) -> Result<Token, String> {
    if (200..300).contains(&status) {
        return parse_token(body, ttl, now_unix);
    }
    let v: Option<Value> = serde_json::from_slice(body).ok();
    let msg = v.as_ref().and_then(|v| v.get("message")?.as_str());
    let shown = match msg {
        Some(m) => m.to_string(),
        None => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    };
    Err(format!("HTTP {status}: {}", shown.trim()))
}

/// The provider: its settings, HTTPS agent, cached token and thread control.
pub struct Provider {
    base: BaseUrl,
    account_sid: String,
    auth_token: Secret,
    ttl: u64,
    timeout: Duration,
    agent: ureq::Agent,
    cache: RwLock<Option<Arc<Token>>>,
    stopped: Mutex<bool>,
    wake: Condvar,
    spawned: Mutex<bool>,
}

impl Provider {
    /// `None` when no provider is configured. Reads the CA file now, so a bad one stops the
    /// start with a clear error.
    pub fn new(cfg: &IceConfig) -> Result<Option<Provider>, String> {
        let (Some(sid), Some(token)) = (&cfg.twilio_account_sid, &cfg.twilio_auth_token) else {
            return Ok(None);
        };
        Ok(Some(Provider {
            base: BaseUrl::parse(&cfg.twilio_base_url)?,
            account_sid: sid.clone(),
            auth_token: token.clone(),
            ttl: cfg.turn_ttl.as_secs().max(1),
            timeout: cfg.twilio_timeout,
            agent: agent(&cfg.twilio_ca_file, cfg.twilio_timeout)?,
            cache: RwLock::new(None),
            stopped: Mutex::new(false),
            wake: Condvar::new(),
            spawned: Mutex::new(false),
        }))
    }

    /// The cached token if it is still valid at `now_unix`. Never blocks on I/O: the lock is
    /// held by the provider thread only to swap the pointer.
    pub fn current(&self, now_unix: u64) -> Option<Arc<Token>> {
        let token = self
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()?;
        (now_unix < token.expires()).then_some(token)
    }

    /// Puts `token` in the cache as if it had just been fetched.
    #[cfg(test)]
    pub(crate) fn set_token(&self, token: Token) {
        *self.cache.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(token));
    }

    /// Starts the provider thread (once).
    pub fn spawn(self: &Arc<Self>) {
        let mut spawned = self.spawned.lock().unwrap_or_else(PoisonError::into_inner);
        if *spawned {
            return;
        }
        *spawned = true;
        let me = self.clone();
        crate::info!(
            "ICE provider: Twilio-compatible at {} (account {}); the static ICE list is served \
             until the first token arrives",
            self.base,
            self.account_sid
        );
        let started = std::thread::Builder::new()
            .name("sigyard-ice-provider".into())
            .spawn(move || me.run());
        if let Err(e) = started {
            crate::error!(
                "ICE provider: cannot start its thread ({e}); serving the static ICE list"
            );
        }
    }

    pub fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.notify_all();
    }

    /// Sleeps for `d` or until stopped; returns whether to go on.
    fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        let mut stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let now = Instant::now();
            if *stopped || now >= until {
                return !*stopped;
            }
            stopped = self
                .wake
                .wait_timeout(stopped, until - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn run(&self) {
        let mut retry = FIRST_RETRY;
        loop {
            if !self.sleep(Duration::ZERO) {
                return;
            }
            let next = match self.fetch() {
                Ok(token) => {
                    let refresh = Duration::from_secs((token.ttl / 2).max(1));
                    crate::info!(
                        "ICE provider: token with {} ICE servers, ttl {}s; next refresh in {}s",
                        token.servers.len(),
                        token.ttl,
                        refresh.as_secs()
                    );
                    *self.cache.write().unwrap_or_else(PoisonError::into_inner) =
                        Some(Arc::new(token));
                    retry = FIRST_RETRY;
                    refresh
                }
                Err(e) => {
                    let now = super::unix_now();
                    let serving = match self.current(now) {
                        Some(t) => format!(
                            "serving the cached token (valid {}s more)",
                            t.expires() - now
                        ),
                        None => "serving the static ICE list".to_string(),
                    };
                    crate::warn!(
                        "ICE provider: {} failed: {e}; {serving}; retry in {}s",
                        self.base,
                        retry.as_secs()
                    );
                    let wait = retry;
                    retry = (retry * 2).min(MAX_RETRY);
                    wait
                }
            };
            if !self.sleep(next) {
                return;
            }
        }
    }

    /// One blocking token request.
    fn fetch(&self) -> Result<Token, String> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Tokens.json",
            self.base, self.account_sid
        );
        let auth = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.account_sid,
            self.auth_token.expose()
        ));
        // Header names in the case sigyard has always written them; the one ureq adds
        // (Content-Length) it writes in lower case.
        let request = self
            .agent
            .post(&url)
            .header_raw("Host", self.base.authority().as_bytes())
            .header_raw("Authorization", format!("Basic {auth}").as_bytes())
            .header_raw("Content-Type", b"application/x-www-form-urlencoded")
            .header_raw("Accept", b"application/json")
            .header_raw("User-Agent", USER_AGENT.as_bytes())
            .header_raw("Connection", b"close");
        let exchange = request
            .send(format!("Ttl={}", self.ttl).as_bytes())
            .and_then(|mut response| {
                let status = response.status().as_u16();
                Ok((status, read_body(response.body_mut())?))
            });
        let (status, body) = exchange.map_err(|e| error_text(e, &self.base, self.timeout))?;
        answer(status, &body, self.ttl, super::unix_now())
    }
}

const USER_AGENT: &str = concat!("sigyard/", env!("CARGO_PKG_VERSION"));

/// The body, refused when it announces or turns out to hold more than [`MAX_RESPONSE`] bytes
/// (whatever its `Content-Length` says, or without one).
fn read_body(body: &mut ureq::Body) -> Result<Vec<u8>, ureq::Error> {
    let limit = MAX_RESPONSE as u64;
    if body.content_length().is_some_and(|n| n > limit) {
        return Err(ureq::Error::BodyExceedsLimit(limit));
    }
    body.with_config().limit(limit).read_to_vec()
}

fn error_text(e: ureq::Error, base: &BaseUrl, timeout: Duration) -> String {
    let after = format!("timed out after {:.1}s", timeout.as_secs_f64());
    match e {
        ureq::Error::Timeout(ureq::Timeout::Connect) => {
            format!("cannot connect to {}: {after}", base.authority())
        }
        ureq::Error::Timeout(_) => after,
        ureq::Error::BodyExceedsLimit(_) => format!("response larger than {MAX_RESPONSE} bytes"),
        e => e.to_string(),
    }
}

/// The certificates in `ca_file` (PEM) that rustls takes as trust anchors; an error when the
/// file cannot be read or holds none.
pub fn trust_anchors(ca_file: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let shown = ca_file.display();
    let certs = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| format!("--twilio-ca-file: cannot read {shown}: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    let usable: Vec<_> = certs
        .filter_map(Result::ok)
        .filter(|c| roots.add(c.clone()).is_ok())
        .map(|c| ureq::tls::Certificate::from_der(&c).to_owned())
        .collect();
    if usable.is_empty() {
        return Err(format!(
            "--twilio-ca-file: no usable certificate in {shown}"
        ));
    }
    Ok(usable)
}

/// The provider's HTTPS client: trusts only the certificates in `ca_file`, rustls with the ring
/// provider, no proxy (whatever the environment says), no redirect followed (a 3xx is an
/// error), no connection kept. The connect (TCP, then the TLS handshake) has `timeout`, and
/// from the TCP connect on the whole exchange has `timeout` too (`Deadline`).
pub fn agent(ca_file: &Path, timeout: Duration) -> Result<ureq::Agent, String> {
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(ureq::tls::RootCerts::from(trust_anchors(ca_file)?))
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build();
    let config = ureq::Agent::config_builder()
        .https_only(true)
        .tls_config(tls)
        .proxy(None)
        .max_redirects(0)
        .http_status_as_error(false)
        .max_idle_connections(0)
        .timeout_connect(Some(timeout))
        .build();
    let connector = TcpConnector::default()
        .chain(Deadline(timeout))
        .chain(RustlsConnector::default());
    Ok(ureq::Agent::with_parts(
        config,
        connector,
        DefaultResolver::default(),
    ))
}

/// A link in the agent's connector chain, right after the TCP connect: from then on every read
/// and write of the connection (the TLS handshake, the request, the answer) shares one
/// deadline this far away. ureq's own timeouts run per phase, so a server that answers a byte
/// at a time would otherwise hold the provider much longer.
#[derive(Debug)]
struct Deadline(Duration);

impl<In: Transport> Connector<In> for Deadline {
    type Out = Bounded<In>;

    fn connect(
        &self,
        _: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Bounded<In>>, ureq::Error> {
        let until = Instant::now() + self.0;
        Ok(chained.map(|inner| Bounded { inner, until }))
    }
}

/// A transport whose reads and writes end by `until`.
#[derive(Debug)]
struct Bounded<T> {
    inner: T,
    until: Instant,
}

impl<T> Bounded<T> {
    /// `timeout`, shortened to what is left before the deadline; an error once it has passed.
    fn bound(&self, timeout: NextTimeout) -> Result<NextTimeout, ureq::Error> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ureq::Error::Timeout(ureq::Timeout::Global));
        }
        if *timeout.after <= left {
            return Ok(timeout);
        }
        Ok(NextTimeout {
            after: time::Duration::Exact(left),
            reason: ureq::Timeout::Global,
            ..timeout
        })
    }
}

impl<T: Transport> Transport for Bounded<T> {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let timeout = self.bound(timeout)?;
        self.inner.transmit_output(amount, timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let timeout = self.bound(timeout)?;
        self.inner.await_input(timeout)
    }

    fn is_open(&mut self) -> bool {
        self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}

#[cfg(test)]
mod fetch_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let b = BaseUrl::parse("https://api.twilio.com").unwrap();
        assert_eq!(
            (b.host.as_str(), b.port, b.prefix.as_str()),
            ("api.twilio.com", 443, "")
        );
        assert_eq!(b.to_string(), "https://api.twilio.com");
        let b = BaseUrl::parse(" https://127.0.0.1:8443/proxy/ ").unwrap();
        assert_eq!(b.to_string(), "https://127.0.0.1:8443/proxy");
        assert_eq!(
            BaseUrl::parse("https://[::1]:9").unwrap().authority(),
            "[::1]:9"
        );
        for bad in [
            "http://api.twilio.com",
            "https://",
            "https://:443",
            "https://h:0",
            "https://h:99999",
            "https://h/a?b",
            "https://u@h",
            "https://[::1",
            "https://h/%41",
            "api.twilio.com",
        ] {
            assert!(BaseUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn token_mapping_url_urls_and_arrays() {
        let body = br#"{"username":"u1","password":"p1","account_sid":"AC1","ttl":"600",
            "date_created":"Fri, 01 May 2020 01:42:57 +0000","date_updated":"x",
            "ice_servers":[
              {"url":"stun:global.stun.twilio.com:3478?transport=udp","urls":"stun:global.stun.twilio.com:3478?transport=udp"},
              {"url":"turn:a:3478?transport=udp","username":"u1","credential":"p1"},
              {"urls":"turn:b:3478?transport=tcp","username":"u1","credential":"p1"},
              {"urls":["turns:c:443","turn:c:80"],"username":"u2","credential":"p2"},
              {"username":"nourl"},
              {"urls":""}
            ]}"#;
        let t = parse_token(body, 86_400, 1000).unwrap();
        let urls: Vec<&str> = t.servers.iter().map(|s| s.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "stun:global.stun.twilio.com:3478?transport=udp",
                "turn:a:3478?transport=udp",
                "turn:b:3478?transport=tcp",
                "turns:c:443",
                "turn:c:80"
            ]
        );
        assert_eq!(t.servers[0].username, None);
        assert_eq!(t.servers[4].credential.as_deref(), Some("p2"));
        assert_eq!((t.ttl, t.expires()), (600, 1600));
        assert_eq!(t.account_sid.as_deref(), Some("AC1"));
        let numeric = br#"{"ttl":30,"ice_servers":[{"url":"stun:x"}]}"#;
        assert_eq!(parse_token(numeric, 5, 0).unwrap().ttl, 30);
        let none = br#"{"ice_servers":[{"url":"stun:x"}]}"#;
        assert_eq!(parse_token(none, 5, 0).unwrap().ttl, 5);
        for bad in [
            &b"nope"[..],
            b"{}",
            br#"{"ice_servers":{}}"#,
            br#"{"ice_servers":[]}"#,
            br#"{"ice_servers":[{"username":"x"}]}"#,
        ] {
            assert!(
                parse_token(bad, 5, 0).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn answers_by_status() {
        let token = br#"{"ice_servers":[{"urls":"stun:a"}]}"#;
        for status in [200, 201, 299] {
            assert_eq!(answer(status, token, 5, 7), parse_token(token, 5, 7));
        }
        let twilio = br#"{"code":20003,"message":" Authenticate ","status":401}"#;
        assert_eq!(
            answer(401, twilio, 5, 7),
            Err("HTTP 401: Authenticate".into())
        );
        // A token with a redirect or error status is still an error.
        assert_eq!(
            answer(302, token, 5, 7).unwrap_err(),
            format!("HTTP 302: {}", String::from_utf8_lossy(token))
        );
        assert_eq!(answer(199, b"", 5, 7), Err("HTTP 199: ".into()));
        // Without a message, the first 200 bytes, even when that cuts a character.
        let page = format!("{}é and more", "x".repeat(199));
        assert_eq!(
            answer(503, page.as_bytes(), 5, 7),
            Err(format!("HTTP 503: {}\u{fffd}", "x".repeat(199)))
        );
    }

    #[test]
    fn ca_file_errors_are_clear() {
        let e = trust_anchors(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(
            e.starts_with("--twilio-ca-file: cannot read /nonexistent/ca.pem"),
            "{e}"
        );
        let dir = std::env::temp_dir().join(format!("sigyard-ca-{}", std::process::id()));
        std::fs::write(&dir, "not a certificate\n").unwrap();
        let e = trust_anchors(&dir).unwrap_err();
        assert!(e.contains("no usable certificate"), "{e}");
        std::fs::remove_file(&dir).unwrap();
        let dev = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/dev-cert.pem");
        assert_eq!(trust_anchors(Path::new(dev)).unwrap().len(), 1);
        assert!(agent(Path::new(dev), Duration::from_secs(1)).is_ok());
    }
}
