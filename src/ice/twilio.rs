//! A Twilio-compatible Network Traversal token provider: `POST {base}/2010-04-01/Accounts/{sid}/
//! Tokens.json` with form field `Ttl` and HTTP basic auth (account SID, auth token), over
//! HTTPS (rustls, trust store from a CA file). The answer's `ice_servers` (entries with `url`
//! and/or `urls`, a string or an array) become [`IceServer`]s.
//!
//! Everything here that blocks runs on the provider's own thread, never on a reactor: it
//! fetches a token at start, stores it behind a lock held only for a pointer swap, refreshes it
//! at half its TTL, and on failure retries with a backoff from 1 s to 60 s while the last valid
//! token (or, when there is none, the static list) is served. Each request is bounded by
//! `--twilio-timeout`: the connect, then the whole exchange after it. Name resolution uses the
//! system resolver, bounded by its own timeouts (an IP address in the base URL needs none).

use super::IceServer;
use crate::config::{IceConfig, Secret};
use crate::proto::http::ChunkedDecoder;
use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

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

/// The provider: its settings, TLS client configuration, cached token and thread control.
pub struct Provider {
    base: BaseUrl,
    account_sid: String,
    auth_token: Secret,
    ttl: u64,
    timeout: Duration,
    tls: Arc<rustls::ClientConfig>,
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
            tls: client_config(&cfg.twilio_ca_file)?,
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
        let path = format!(
            "{}/2010-04-01/Accounts/{}/Tokens.json",
            self.base.prefix, self.account_sid
        );
        let auth = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.account_sid,
            self.auth_token.expose()
        ));
        let body = format!("Ttl={}", self.ttl);
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {auth}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
             Accept: application/json\r\nUser-Agent: sigyard/{}\r\nConnection: close\r\n\r\n{body}",
            self.base.authority(),
            body.len(),
            env!("CARGO_PKG_VERSION"),
        );
        let (status, body) = exchange(&self.base, &self.tls, request.as_bytes(), self.timeout)?;
        if !(200..300).contains(&status) {
            let v: Option<Value> = serde_json::from_slice(&body).ok();
            let msg = v.as_ref().and_then(|v| v.get("message")?.as_str());
            let shown = match msg {
                Some(m) => m.to_string(),
                None => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            };
            return Err(format!("HTTP {status}: {}", shown.trim()));
        }
        parse_token(&body, self.ttl, super::unix_now())
    }
}

/// A rustls client configuration trusting the certificates in `ca_file` (PEM).
pub fn client_config(ca_file: &Path) -> Result<Arc<rustls::ClientConfig>, String> {
    let shown = ca_file.display();
    let certs = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| format!("--twilio-ca-file: cannot read {shown}: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<_> = certs.filter_map(Result::ok).collect();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "--twilio-ca-file: no usable certificate in {shown}"
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Sends `request` to `base` over TLS and reads one response (status, decoded body), all
/// within `timeout` after the connect (which has `timeout` of its own).
fn exchange(
    base: &BaseUrl,
    tls: &Arc<rustls::ClientConfig>,
    request: &[u8],
    timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    let host = base.host.trim_start_matches('[').trim_end_matches(']');
    let addrs = (host, base.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    let mut last = format!("{host} resolves to no address");
    let mut sock = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                sock = Some(s);
                break;
            }
            Err(e) => last = format!("cannot connect to {addr}: {}", io_text(&e, timeout)),
        }
    }
    let sock = sock.ok_or(last)?;
    let _ = sock.set_nodelay(true);
    let deadline = Instant::now() + timeout;
    let name = ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}"))?;
    let conn = rustls::ClientConnection::new(tls.clone(), name).map_err(|e| format!("TLS: {e}"))?;
    let mut stream = rustls::StreamOwned::new(conn, sock);
    let arm = |s: &TcpStream| -> Result<(), String> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("timed out after {}", secs(timeout)));
        }
        let set = s
            .set_read_timeout(Some(left))
            .and(s.set_write_timeout(Some(left)));
        set.map_err(|e| e.to_string())
    };
    arm(&stream.sock)?;
    stream
        .write_all(request)
        .and_then(|()| stream.flush())
        .map_err(|e| io_text(&e, timeout))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut reader = Response::default();
    loop {
        arm(&stream.sock)?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            // A server that closes without close_notify: the framing decides.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(io_text(&e, timeout)),
        };
        if let Some(done) = reader.feed(&mut buf, &chunk[..n])? {
            return Ok(done);
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn io_text(e: &io::Error, timeout: Duration) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            format!("timed out after {}", secs(timeout))
        }
        _ => e.to_string(),
    }
}

/// Incremental response framing: head, then a `Content-Length`, chunked or read-to-EOF body.
/// Pure (no I/O): [`Response::feed`] takes each read as it arrives.
#[derive(Default)]
pub struct Response {
    /// Once the head is parsed: status, head length, framing.
    head: Option<(u16, usize, Framing)>,
    chunked: Option<(ChunkedDecoder, Vec<u8>, usize)>,
}

#[derive(Clone, Copy)]
enum Framing {
    Length(usize),
    Chunked,
    ToEof,
}

impl Response {
    /// One read of the response: `read` is appended to `buf` (everything read so far), an
    /// empty `read` is the end of the stream. `Some((status, body))` once the response is
    /// whole; an error when it is malformed, cut short or over [`MAX_RESPONSE`] bytes.
    pub fn feed(
        &mut self,
        buf: &mut Vec<u8>,
        read: &[u8],
    ) -> Result<Option<(u16, Vec<u8>)>, String> {
        if read.is_empty() {
            return self.at_eof(buf).map(Some);
        }
        if buf.len() + read.len() > MAX_RESPONSE {
            return Err(format!("response larger than {MAX_RESPONSE} bytes"));
        }
        buf.extend_from_slice(read);
        self.complete(buf)
    }

    /// The response when `buf` holds all of it.
    fn complete(&mut self, buf: &[u8]) -> Result<Option<(u16, Vec<u8>)>, String> {
        if self.head.is_none() {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut headers);
            let len = match r.parse(buf) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(e) => return Err(format!("bad HTTP response: {e}")),
            };
            let status = r.code.unwrap_or(0);
            let value = |name: &str| {
                r.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
            };
            let framing = if value("transfer-encoding").is_some_and(|v| v.ends_with("chunked")) {
                self.chunked = Some((ChunkedDecoder::new(MAX_RESPONSE as u64), Vec::new(), len));
                Framing::Chunked
            } else if let Some(n) = value("content-length") {
                let n: usize = n.parse().map_err(|_| "bad Content-Length".to_string())?;
                // Longer than a response may be: refused now (and `len + n` cannot overflow).
                if n > MAX_RESPONSE.saturating_sub(len) {
                    return Err(format!("response larger than {MAX_RESPONSE} bytes"));
                }
                Framing::Length(n)
            } else {
                Framing::ToEof
            };
            self.head = Some((status, len, framing));
        }
        let Some((status, start, framing)) = self.head else {
            return Ok(None);
        };
        match framing {
            Framing::Length(n) if buf.len() >= start + n => {
                Ok(Some((status, buf[start..start + n].to_vec())))
            }
            Framing::Chunked => {
                let (dec, out, fed) = self.chunked.as_mut().expect("set with the head");
                let done = dec
                    .feed(&buf[*fed..], out)
                    .map_err(|e| format!("bad chunked body: {e:?}"))?;
                *fed = buf.len();
                Ok(done.map(|_| (status, std::mem::take(out))))
            }
            _ => Ok(None),
        }
    }

    fn at_eof(&mut self, buf: &[u8]) -> Result<(u16, Vec<u8>), String> {
        match self.head {
            Some((status, start, Framing::ToEof)) => Ok((status, buf[start..].to_vec())),
            Some(_) => Err("connection closed before the end of the response".into()),
            None => Err("connection closed before a response".into()),
        }
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
    fn response_framing() {
        let mut r = Response::default();
        let msg = b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nhel";
        assert_eq!(r.complete(msg).unwrap(), None);
        let mut full = msg.to_vec();
        full.extend_from_slice(b"lo");
        assert_eq!(r.complete(&full).unwrap(), Some((201, b"hello".to_vec())));

        let mut r = Response::default();
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n".to_vec();
        assert_eq!(r.complete(&head).unwrap(), None);
        let mut all = head.clone();
        all.extend_from_slice(b"2\r\nde\r\n0\r\n\r\n");
        assert_eq!(r.complete(&all).unwrap(), Some((200, b"abcde".to_vec())));

        let mut r = Response::default();
        let eof = b"HTTP/1.1 500 Oops\r\n\r\nbody";
        assert_eq!(r.complete(eof).unwrap(), None);
        assert_eq!(r.at_eof(eof).unwrap(), (500, b"body".to_vec()));
        let mut r = Response::default();
        let cut = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab";
        assert_eq!(r.complete(cut).unwrap(), None);
        assert!(r.at_eof(cut).is_err());
        assert!(Response::default().complete(b"garbage\r\n\r\n").is_err());
        // A length near usize::MAX once overflowed `head + length`.
        let huge = b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\nx";
        assert_eq!(
            Response::default().complete(huge),
            Err(format!("response larger than {MAX_RESPONSE} bytes"))
        );
    }

    #[test]
    fn ca_file_errors_are_clear() {
        let e = client_config(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(
            e.starts_with("--twilio-ca-file: cannot read /nonexistent/ca.pem"),
            "{e}"
        );
        let dir = std::env::temp_dir().join(format!("sigyard-ca-{}", std::process::id()));
        std::fs::write(&dir, "not a certificate\n").unwrap();
        let e = client_config(&dir).unwrap_err();
        assert!(e.contains("no usable certificate"), "{e}");
        std::fs::remove_file(&dir).unwrap();
        let dev = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/dev-cert.pem");
        assert!(client_config(Path::new(dev)).is_ok());
    }
}
