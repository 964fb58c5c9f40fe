//! Sans-I/O HTTP/1.1 request-head parsing and WebSocket (RFC 6455) upgrade
//! validation.
//!
//! This module owns:
//! - [`parse_request`]: an incremental, three-valued parser (in the manner of
//!   `httparse`) that turns the bytes of one request head into a small, owned
//!   [`RequestHead`], enforcing size limits even while the head is incomplete;
//! - the framing rules of RFC 9112 that a server must get right on its own
//!   (Host, Content-Length, Transfer-Encoding, keep-alive);
//! - [`ChunkedDecoder`], a bounded incremental decoder for chunked request
//!   bodies;
//! - [`validate_upgrade`] and [`accept_key`] for the server side of the RFC 6455
//!   §4.2.1 opening handshake;
//! - writers for the responses the server sends itself: [`write_response`],
//!   [`write_switching_protocols`], [`write_continue`] and the error responses
//!   of [`HttpError::write_response`] and [`UpgradeError::write_response`].
//!
//! It deliberately does not own:
//! - any I/O: callers hand in bytes and get bytes appended to a `Vec<u8>`; no
//!   sockets, no clocks (so no `Date` header: pass one in `extra_headers` if
//!   wanted), no buffering policy beyond the limits it is given;
//! - routing or policy: which paths exist, which `Origin`s are allowed, how
//!   large a `Content-Length` body may be, whether a subprotocol is accepted —
//!   the caller decides all of that from the [`RequestHead`];
//! - WebSocket framing after the handshake, subprotocol and extension
//!   negotiation (none is ever negotiated), HTTP/2, and response parsing.
//!
//! Nothing here panics on peer input; every error a peer can cause is a value
//! of [`HttpError`] or [`UpgradeError`], each of which knows its status code
//! and can write its own response.

use std::borrow::Cow;
use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest, Sha1};

#[cfg(test)]
mod tests;

/// Size of the header array handed to `httparse` (on the stack). Larger
/// [`HttpLimits::max_headers`] values are clamped to this.
pub const MAX_HEADERS_CAP: usize = 64;

/// The GUID RFC 6455 §1.3 appends to `Sec-WebSocket-Key`.
const WEBSOCKET_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only WebSocket protocol version this server speaks.
const WEBSOCKET_VERSION: &str = "13";

/// Limits enforced by [`parse_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest request head (request line, header lines and the blank line)
    /// in bytes. Enforced on partial heads as well.
    pub max_header_bytes: usize,
    /// Most header lines accepted; values above [`MAX_HEADERS_CAP`] are
    /// treated as [`MAX_HEADERS_CAP`].
    pub max_headers: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_header_bytes: 8 * 1024,
            max_headers: 32,
        }
    }
}

/// Request method. Methods are case-sensitive (RFC 9110 §9.1), so `get` is
/// [`Method::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Options,
    Head,
    Put,
    Delete,
    Other,
}

impl Method {
    fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "OPTIONS" => Method::Options,
            "HEAD" => Method::Head,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            _ => Method::Other,
        }
    }
}

/// What the server needs from a request head, owned and small. Only the
/// headers the server uses are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    /// Percent-encoded path as sent (always ASCII, starts with `/`, or is `*`
    /// for `OPTIONS *`), without the query. For an absolute-form target
    /// (`GET http://host/p`) this is the path part, `/` if it was empty.
    pub path: String,
    /// Raw query string after the first `?`, if there was a `?` (possibly
    /// empty).
    pub query: Option<String>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// HTTP/1.1: true unless `Connection` lists `close`. HTTP/1.0: true only
    /// if `Connection` lists `keep-alive` (and not `close`).
    pub keep_alive: bool,
    /// `Host` header value; for an absolute-form target, the target's
    /// authority instead (RFC 9112 §3.2.2).
    pub host: Option<String>,
    /// `Origin` header value, as sent.
    pub origin: Option<String>,
    /// `Authorization` header value, trimmed (repeated headers joined with `", "`).
    pub authorization: Option<String>,
    /// `Forwarded` (RFC 7239) and `X-Forwarded-For`, repeated headers joined with `", "`:
    /// believed only from a trusted proxy (`proto::proxy`).
    pub forwarded: Option<String>,
    pub forwarded_for: Option<String>,
    /// `Content-Length`, validated (decimal, all copies equal).
    pub content_length: Option<u64>,
    /// `Transfer-Encoding` is exactly `chunked` (the only coding accepted).
    pub chunked: bool,
    /// `Expect: 100-continue` was sent (curl does for larger POST bodies); the
    /// caller may answer with [`write_continue`] before reading the body.
    pub expect_continue: bool,
    /// Present when the `Upgrade` header lists the token `websocket`
    /// (case-insensitive). Its validity is judged by [`validate_upgrade`].
    pub upgrade: Option<UpgradeRequest>,
}

/// The WebSocket-specific part of a request head. Header values are trimmed
/// of surrounding whitespace; a header sent more than once has its values
/// joined with `", "` (so a duplicated `Sec-WebSocket-Key` or
/// `Sec-WebSocket-Version`, which RFC 6455 §11.3 forbids, fails validation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// `Sec-WebSocket-Key`.
    pub key: Option<String>,
    /// `Sec-WebSocket-Version`.
    pub version: Option<String>,
    /// `Connection` lists the token `upgrade` (case-insensitive).
    pub connection_has_upgrade: bool,
    /// `Sec-WebSocket-Protocol`, raw. Never negotiated by this module.
    pub protocols: Option<String>,
}

/// A request the server must refuse, one variant per rule. Every variant
/// means the connection is closed after the error response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// The head exceeds `max_header_bytes` (even if still incomplete). 431.
    HeadersTooLarge,
    /// More header lines than `max_headers`. 431.
    TooManyHeaders,
    /// Syntax error in the request line or a header line. 400.
    Malformed(&'static str),
    /// A well-formed HTTP version other than 1.0 or 1.1. 505.
    UnsupportedVersion,
    /// `Content-Length` is not a decimal number fitting in a `u64`. 400.
    BadContentLength,
    /// `Content-Length` given more than once with different values. 400.
    ConflictingContentLength,
    /// Both `Content-Length` and `Transfer-Encoding` (request smuggling). 400.
    BothLengthAndChunked,
    /// `Transfer-Encoding` where `chunked` is not the final coding, or is
    /// applied twice (RFC 9112 §6.3). 400.
    ChunkedNotLast,
    /// A transfer coding other than `chunked` (RFC 9112 §6.1). 501.
    UnsupportedTransferCoding,
    /// `Transfer-Encoding` in an HTTP/1.0 request: faulty framing
    /// (RFC 9112 §6.1). 400.
    TransferEncodingInHttp10,
    /// HTTP/1.1 request without `Host` (RFC 9112 §3.2). 400.
    MissingHost,
    /// More than one `Host` header (RFC 9112 §3.2). 400.
    DuplicateHost,
    /// `Host` value with characters no authority can contain. 400.
    InvalidHost,
    /// More than one `Origin` header (RFC 6454 §7.3 allows one); refused so
    /// an origin check can never be confused by a joined value. 400.
    DuplicateOrigin,
    /// A chunked body larger than the decoder's limit. 413.
    BodyTooLarge,
    /// Syntax error in a chunked body. 400.
    BadChunkedEncoding(&'static str),
}

impl HttpError {
    /// HTTP status code of the response to send.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::HeadersTooLarge | HttpError::TooManyHeaders => 431,
            HttpError::UnsupportedVersion => 505,
            HttpError::UnsupportedTransferCoding => 501,
            HttpError::BodyTooLarge => 413,
            HttpError::Malformed(_)
            | HttpError::BadContentLength
            | HttpError::ConflictingContentLength
            | HttpError::BothLengthAndChunked
            | HttpError::ChunkedNotLast
            | HttpError::TransferEncodingInHttp10
            | HttpError::MissingHost
            | HttpError::DuplicateHost
            | HttpError::InvalidHost
            | HttpError::DuplicateOrigin
            | HttpError::BadChunkedEncoding(_) => 400,
        }
    }

    /// Short human-readable description of the rule that was broken.
    pub fn reason(&self) -> &'static str {
        match self {
            HttpError::HeadersTooLarge => "request head too large",
            HttpError::TooManyHeaders => "too many header fields",
            HttpError::Malformed(what) => what,
            HttpError::UnsupportedVersion => "only HTTP/1.0 and HTTP/1.1 are supported",
            HttpError::BadContentLength => "invalid Content-Length",
            HttpError::ConflictingContentLength => "conflicting Content-Length values",
            HttpError::BothLengthAndChunked => "both Content-Length and Transfer-Encoding",
            HttpError::ChunkedNotLast => "chunked must be the final transfer coding, once",
            HttpError::UnsupportedTransferCoding => "only chunked transfer coding is supported",
            HttpError::TransferEncodingInHttp10 => "Transfer-Encoding in an HTTP/1.0 request",
            HttpError::MissingHost => "missing Host header",
            HttpError::DuplicateHost => "more than one Host header",
            HttpError::InvalidHost => "invalid Host header",
            HttpError::DuplicateOrigin => "more than one Origin header",
            HttpError::BodyTooLarge => "request body too large",
            HttpError::BadChunkedEncoding(what) => what,
        }
    }

    /// Append the complete error response (`text/plain` body naming the
    /// problem, `Connection: close`) to `out`.
    pub fn write_response(&self, out: &mut Vec<u8>) {
        write_error(self.status(), self.reason(), &[], "close", out);
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason(), self.status())
    }
}

impl std::error::Error for HttpError {}

/// Why a WebSocket opening handshake is refused, one variant per RFC 6455
/// §4.2.1 rule (checked in that order, except that the version is checked
/// before the key: a client of another protocol version may not send a
/// version-13 key at all, and deserves the 426 that tells it which version
/// to use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeError {
    /// §4.2.1 item 1: the method must be GET. 405 with `Allow: GET`.
    MethodNotGet,
    /// §4.2.1 item 1: HTTP/1.1 or higher. 400.
    HttpVersionTooOld,
    /// §4.2.1 item 2: a `Host` header. 400.
    MissingHost,
    /// §4.2.1 item 3: `Upgrade` does not list `websocket` (the head has no
    /// [`UpgradeRequest`]). 426 with `Upgrade: websocket`, the answer to a
    /// plain request for a WebSocket-only resource (RFC 9110 §15.5.22).
    NotWebSocketUpgrade,
    /// §4.2.1 item 4: `Connection` must list `Upgrade`. 400.
    ConnectionHeaderLacksUpgrade,
    /// §4.2.1 item 5: `Sec-WebSocket-Key` is required. 400.
    MissingKey,
    /// §4.2.1 item 5: the key must be base64 of exactly 16 bytes. 400.
    InvalidKey,
    /// §4.2.1 item 6 / §4.4: version is not 13. 426 with
    /// `Sec-WebSocket-Version: 13`.
    UnsupportedVersion,
    /// §4.2.1 item 6: no `Sec-WebSocket-Version`. Answered like an unsupported
    /// version (426 with `Sec-WebSocket-Version: 13`) rather than a bare 400:
    /// the clients that omit it are pre-RFC drafts (hixie-75/76), and §4.4's
    /// version negotiation is the answer that tells them what to speak.
    MissingVersion,
    /// The handshake request carries a body (`Content-Length` > 0 or chunked):
    /// the bytes after the head must be WebSocket frames. 400.
    BodyNotAllowed,
}

impl UpgradeError {
    /// HTTP status code of the response to send.
    pub fn status(&self) -> u16 {
        match self {
            UpgradeError::MethodNotGet => 405,
            UpgradeError::NotWebSocketUpgrade
            | UpgradeError::UnsupportedVersion
            | UpgradeError::MissingVersion => 426,
            UpgradeError::HttpVersionTooOld
            | UpgradeError::MissingHost
            | UpgradeError::ConnectionHeaderLacksUpgrade
            | UpgradeError::MissingKey
            | UpgradeError::InvalidKey
            | UpgradeError::BodyNotAllowed => 400,
        }
    }

    /// Short human-readable description of the rule that was broken.
    pub fn reason(&self) -> &'static str {
        match self {
            UpgradeError::MethodNotGet => "WebSocket handshake must use GET",
            UpgradeError::HttpVersionTooOld => "WebSocket handshake requires HTTP/1.1",
            UpgradeError::MissingHost => "missing Host header",
            UpgradeError::NotWebSocketUpgrade => "this resource requires a WebSocket upgrade",
            UpgradeError::ConnectionHeaderLacksUpgrade => "Connection header must list Upgrade",
            UpgradeError::MissingKey => "missing Sec-WebSocket-Key",
            UpgradeError::InvalidKey => "Sec-WebSocket-Key must be base64 of 16 bytes",
            UpgradeError::UnsupportedVersion => "unsupported Sec-WebSocket-Version",
            UpgradeError::MissingVersion => "missing Sec-WebSocket-Version",
            UpgradeError::BodyNotAllowed => "WebSocket handshake must not have a body",
        }
    }

    /// Append the complete error response to `out`: `Allow: GET` for 405,
    /// `Upgrade: websocket` and `Sec-WebSocket-Version: 13` for 426, a
    /// `text/plain` body naming the problem, and `Connection: close` (plus
    /// `upgrade` where RFC 9110 §7.8 requires it alongside `Upgrade`).
    pub fn write_response(&self, out: &mut Vec<u8>) {
        match self {
            UpgradeError::MethodNotGet => {
                write_error(405, self.reason(), &[("Allow", "GET")], "close", out)
            }
            UpgradeError::NotWebSocketUpgrade
            | UpgradeError::UnsupportedVersion
            | UpgradeError::MissingVersion => write_error(
                426,
                self.reason(),
                &[
                    ("Upgrade", "websocket"),
                    ("Sec-WebSocket-Version", WEBSOCKET_VERSION),
                ],
                "Upgrade, close",
                out,
            ),
            _ => write_error(self.status(), self.reason(), &[], "close", out),
        }
    }
}

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason(), self.status())
    }
}

impl std::error::Error for UpgradeError {}

// ---------------------------------------------------------------------------
// Request head parsing
// ---------------------------------------------------------------------------

/// Incrementally parse one request head from the start of `buf`.
///
/// - `Ok(Some((head, consumed)))`: the whole head, through the blank line, is
///   in `buf`; `consumed` is its length. Bytes after it (a pipelined request,
///   a body, WebSocket frames) are not consumed.
/// - `Ok(None)`: more bytes are needed, and the head so far is within
///   `max_header_bytes`. Call again with the longer buffer.
/// - `Err(e)`: refuse the request with `e.write_response` and close.
///
/// Only the first `max_header_bytes` of `buf` are ever examined, so the cost
/// of a call is bounded however much a peer sends.
pub fn parse_request(
    buf: &[u8],
    limits: &HttpLimits,
) -> Result<Option<(RequestHead, usize)>, HttpError> {
    let window = &buf[..buf.len().min(limits.max_header_bytes)];
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS_CAP];
    let max_headers = limits.max_headers.min(MAX_HEADERS_CAP);
    let mut req = httparse::Request::new(&mut storage[..max_headers]);
    let consumed = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            // The head has not ended within the window: if the window is the
            // whole limit, it never will within it.
            return if buf.len() >= limits.max_header_bytes {
                Err(HttpError::HeadersTooLarge)
            } else {
                Ok(None)
            };
        }
        Err(e) => return Err(map_httparse_error(e, window)),
    };
    // `Complete` guarantees method, path and version are set; fall back to a
    // 400 rather than unwrap so no httparse change can turn into a panic.
    let (Some(method), Some(target), Some(minor_version)) = (req.method, req.path, req.version)
    else {
        return Err(HttpError::Malformed("incomplete request line"));
    };
    let method = Method::from_token(method);
    let target = parse_target(method, target)?;
    let head = interpret_headers(method, target, minor_version, req.headers)?;
    Ok(Some((head, consumed)))
}

fn map_httparse_error(e: httparse::Error, window: &[u8]) -> HttpError {
    match e {
        httparse::Error::TooManyHeaders => HttpError::TooManyHeaders,
        httparse::Error::HeaderName => HttpError::Malformed("invalid header name"),
        httparse::Error::HeaderValue => HttpError::Malformed("invalid header value"),
        httparse::Error::NewLine => HttpError::Malformed("invalid line ending"),
        httparse::Error::Token => HttpError::Malformed("invalid request line"),
        httparse::Error::Version if looks_like_http_version(window) => {
            HttpError::UnsupportedVersion
        }
        httparse::Error::Version => HttpError::Malformed("invalid HTTP version"),
        // Status is only produced for responses; no other variants exist
        // today, but the enum is not exhaustive.
        _ => HttpError::Malformed("invalid request"),
    }
}

/// Whether the version field of the (possibly partial) request line is
/// `HTTP/` followed by a digit: a real HTTP version we don't speak (505),
/// rather than garbage (400).
fn looks_like_http_version(window: &[u8]) -> bool {
    let start = window
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(window.len());
    let rest = &window[start..];
    let line_end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let line = rest[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&rest[..line_end]);
    let version = match line.iter().rposition(|&b| b == b' ') {
        Some(sp) => &line[sp + 1..],
        None => return false,
    };
    version.len() > 5 && version.starts_with(b"HTTP/") && version[5].is_ascii_digit()
}

struct Target {
    path: String,
    query: Option<String>,
    /// Authority of an absolute-form target.
    authority: Option<String>,
}

/// Split a request-target (RFC 9112 §3.2) into path and query.
fn parse_target(method: Method, target: &str) -> Result<Target, HttpError> {
    if !target.is_ascii() {
        return Err(HttpError::Malformed("non-ASCII request target"));
    }
    if target.contains('#') {
        return Err(HttpError::Malformed("fragment in request target"));
    }
    let (path_and_query, authority) = if target.starts_with('/') {
        (target, None)
    } else if target == "*" {
        if method != Method::Options {
            return Err(HttpError::Malformed(
                "asterisk-form target requires OPTIONS",
            ));
        }
        (target, None)
    } else if let Some(after_scheme) = strip_http_scheme(target) {
        let end = after_scheme.find(['/', '?']).unwrap_or(after_scheme.len());
        let (authority, rest) = after_scheme.split_at(end);
        if authority.is_empty() || authority.contains('@') || !is_valid_host(authority) {
            return Err(HttpError::Malformed("invalid authority in request target"));
        }
        (rest, Some(authority.to_owned()))
    } else {
        return Err(HttpError::Malformed("unsupported request target form"));
    };
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (path_and_query, None),
    };
    let path = if path.is_empty() { "/" } else { path };
    Ok(Target {
        path: path.to_owned(),
        query,
        authority,
    })
}

/// The rest of an absolute-form target after `http://`, `https://`, `ws://`
/// or `wss://` (schemes are case-insensitive).
fn strip_http_scheme(target: &str) -> Option<&str> {
    let (scheme, rest) = target.split_once("://")?;
    ["http", "https", "ws", "wss"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s))
        .then_some(rest)
}

/// Characters an authority (`host[:port]`, IP literals included) may contain.
fn is_valid_host(host: &str) -> bool {
    host.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(&b))
}

/// Comma-separated list elements of a header value, trimmed, empty elements
/// skipped (RFC 9110 §5.6.1).
fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|item| item.trim_ascii())
        .filter(|item| !item.is_empty())
}

/// A kept header value as an owned string; such values must be UTF-8.
fn value_string(value: &[u8]) -> Result<String, HttpError> {
    std::str::from_utf8(value.trim_ascii())
        .map(str::to_owned)
        .map_err(|_| HttpError::Malformed("header value is not UTF-8"))
}

/// Append a repeated header's value the way RFC 9110 §5.3 combines them.
fn join_value(slot: &mut Option<String>, value: &[u8]) -> Result<(), HttpError> {
    let value = value_string(value)?;
    match slot {
        Some(existing) => {
            existing.push_str(", ");
            existing.push_str(&value);
        }
        None => *slot = Some(value),
    }
    Ok(())
}

/// Strictly decimal, no sign, fits in u64.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// The header fields the server keeps or acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Host,
    Connection,
    Upgrade,
    ContentLength,
    TransferEncoding,
    Origin,
    Authorization,
    Forwarded,
    ForwardedFor,
    Expect,
    WsKey,
    WsVersion,
    WsProtocol,
}

impl Field {
    /// Case-insensitive lookup, dispatching on length first so the common
    /// case (a header we ignore) costs one comparison at most.
    fn classify(name: &str) -> Option<Field> {
        // Indexing `[0]` below only happens in arms where the length is 6
        // or 17, so it cannot be out of bounds.
        let (field, canonical) = match name.len() {
            4 => (Field::Host, "host"),
            6 if name.as_bytes()[0].eq_ignore_ascii_case(&b'o') => (Field::Origin, "origin"),
            6 => (Field::Expect, "expect"),
            7 => (Field::Upgrade, "upgrade"),
            10 => (Field::Connection, "connection"),
            9 => (Field::Forwarded, "forwarded"),
            13 => (Field::Authorization, "authorization"),
            15 => (Field::ForwardedFor, "x-forwarded-for"),
            14 => (Field::ContentLength, "content-length"),
            17 if name.as_bytes()[0].eq_ignore_ascii_case(&b't') => {
                (Field::TransferEncoding, "transfer-encoding")
            }
            17 => (Field::WsKey, "sec-websocket-key"),
            21 => (Field::WsVersion, "sec-websocket-version"),
            22 => (Field::WsProtocol, "sec-websocket-protocol"),
            _ => return None,
        };
        name.eq_ignore_ascii_case(canonical).then_some(field)
    }
}

fn interpret_headers(
    method: Method,
    target: Target,
    minor_version: u8,
    headers: &[httparse::Header<'_>],
) -> Result<RequestHead, HttpError> {
    let mut host: Option<String> = None;
    let mut origin: Option<String> = None;
    let mut authorization: Option<String> = None;
    let mut forwarded: Option<String> = None;
    let mut forwarded_for: Option<String> = None;
    let mut content_length: Option<u64> = None;
    let mut saw_transfer_encoding = false;
    let mut chunked = false;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut conn_upgrade = false;
    let mut upgrade_websocket = false;
    let mut expect_continue = false;
    let mut key: Option<String> = None;
    let mut version: Option<String> = None;
    let mut protocols: Option<String> = None;

    for header in headers {
        let value = header.value;
        let Some(field) = Field::classify(header.name) else {
            continue;
        };
        match field {
            Field::Host => {
                if host.is_some() {
                    return Err(HttpError::DuplicateHost);
                }
                let h = value_string(value)?;
                if !is_valid_host(&h) {
                    return Err(HttpError::InvalidHost);
                }
                host = Some(h);
            }
            Field::Connection => {
                for token in list_items(value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        conn_close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        conn_keep_alive = true;
                    } else if token.eq_ignore_ascii_case(b"upgrade") {
                        conn_upgrade = true;
                    }
                }
            }
            Field::Upgrade => {
                // Protocol tokens are `name[/version]`; only the bare name matches.
                upgrade_websocket |=
                    list_items(value).any(|p| p.eq_ignore_ascii_case(b"websocket"));
            }
            Field::ContentLength => {
                // RFC 9110 §8.6: a list of identical values may be accepted;
                // anything else is an unrecoverable framing error.
                for item in value.split(|&b| b == b',') {
                    let n = parse_decimal(item.trim_ascii()).ok_or(HttpError::BadContentLength)?;
                    match content_length {
                        Some(prev) if prev != n => return Err(HttpError::ConflictingContentLength),
                        _ => content_length = Some(n),
                    }
                }
            }
            Field::TransferEncoding => {
                saw_transfer_encoding = true;
                let mut any = false;
                for coding in list_items(value) {
                    any = true;
                    if chunked {
                        // Something (even `chunked` again, on this line or a
                        // later one) follows `chunked`: it is not the final
                        // coding, or is applied twice.
                        return Err(HttpError::ChunkedNotLast);
                    }
                    // Coding parameters (`chunked;x=y`) are not allowed on chunked.
                    if coding.eq_ignore_ascii_case(b"chunked") {
                        chunked = true;
                    } else {
                        return Err(HttpError::UnsupportedTransferCoding);
                    }
                }
                if !any {
                    return Err(HttpError::Malformed("empty Transfer-Encoding"));
                }
            }
            Field::Origin => {
                if origin.is_some() {
                    return Err(HttpError::DuplicateOrigin);
                }
                origin = Some(value_string(value)?);
            }
            Field::Authorization => {
                join_value(&mut authorization, value)?;
            }
            Field::Forwarded => join_value(&mut forwarded, value)?,
            Field::ForwardedFor => join_value(&mut forwarded_for, value)?,
            Field::Expect => {
                expect_continue |= value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
            }
            Field::WsKey => {
                join_value(&mut key, value)?;
            }
            Field::WsVersion => {
                join_value(&mut version, value)?;
            }
            Field::WsProtocol => {
                join_value(&mut protocols, value)?;
            }
        }
    }

    if saw_transfer_encoding {
        if minor_version == 0 {
            return Err(HttpError::TransferEncodingInHttp10);
        }
        if content_length.is_some() {
            return Err(HttpError::BothLengthAndChunked);
        }
    }
    if minor_version >= 1 && host.is_none() {
        return Err(HttpError::MissingHost);
    }
    if target.authority.is_some() {
        host = target.authority;
    }
    let keep_alive = if minor_version >= 1 {
        !conn_close
    } else {
        conn_keep_alive && !conn_close
    };
    let upgrade = upgrade_websocket.then_some(UpgradeRequest {
        key,
        version,
        connection_has_upgrade: conn_upgrade,
        protocols,
    });
    Ok(RequestHead {
        method,
        path: target.path,
        query: target.query,
        minor_version,
        keep_alive,
        host,
        origin,
        authorization,
        forwarded,
        forwarded_for,
        content_length,
        chunked,
        expect_continue,
        upgrade,
    })
}

// ---------------------------------------------------------------------------
// WebSocket handshake
// ---------------------------------------------------------------------------

/// Validate an upgrade request per RFC 6455 §4.2.1 and return the
/// `Sec-WebSocket-Accept` value (28 ASCII bytes) for
/// [`write_switching_protocols`].
pub fn validate_upgrade(head: &RequestHead) -> Result<[u8; 28], UpgradeError> {
    if head.method != Method::Get {
        return Err(UpgradeError::MethodNotGet);
    }
    if head.minor_version < 1 {
        return Err(UpgradeError::HttpVersionTooOld);
    }
    if head.host.is_none() {
        return Err(UpgradeError::MissingHost);
    }
    let Some(up) = &head.upgrade else {
        return Err(UpgradeError::NotWebSocketUpgrade);
    };
    if !up.connection_has_upgrade {
        return Err(UpgradeError::ConnectionHeaderLacksUpgrade);
    }
    match up.version.as_deref() {
        None => return Err(UpgradeError::MissingVersion),
        Some(WEBSOCKET_VERSION) => {}
        Some(_) => return Err(UpgradeError::UnsupportedVersion),
    }
    let key = up.key.as_deref().ok_or(UpgradeError::MissingKey)?;
    if !is_valid_key(key.as_bytes()) {
        return Err(UpgradeError::InvalidKey);
    }
    if head.chunked || head.content_length.is_some_and(|n| n > 0) {
        return Err(UpgradeError::BodyNotAllowed);
    }
    Ok(accept_key(key.as_bytes()))
}

/// A `Sec-WebSocket-Key` is canonical padded base64 of exactly 16 bytes,
/// i.e. 24 characters.
fn is_valid_key(key: &[u8]) -> bool {
    // 24 base64 characters decode to at most 18 bytes.
    let mut decoded = [0u8; 18];
    key.len() == 24 && matches!(BASE64.decode_slice(key, &mut decoded), Ok(16))
}

/// `base64(sha1(client_key ++ "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))`, the
/// `Sec-WebSocket-Accept` value of RFC 6455 §4.2.2.
pub fn accept_key(client_key: &[u8]) -> [u8; 28] {
    let mut sha = Sha1::new();
    sha.update(client_key);
    sha.update(WEBSOCKET_GUID);
    let digest = sha.finalize();
    let mut out = [0u8; 28];
    let written = BASE64
        .encode_slice(digest, &mut out)
        // A 20-byte digest always encodes to exactly 28 padded characters.
        .expect("28 bytes hold base64 of a SHA-1 digest");
    debug_assert_eq!(written, 28);
    out
}

/// Append a `101 Switching Protocols` response (`Upgrade: websocket`,
/// `Connection: Upgrade`, `Sec-WebSocket-Accept`) to `out`. No subprotocol,
/// no extensions are negotiated.
pub fn write_switching_protocols(accept: &[u8; 28], out: &mut Vec<u8>) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\n\
          Upgrade: websocket\r\n\
          Connection: Upgrade\r\n\
          Sec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept);
    out.extend_from_slice(b"\r\n\r\n");
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

/// A plain HTTP response, as endpoints and dialects decide it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Names and types are static strings for everything the server writes; owned ones come
    /// from another node of a cluster.
    pub content_type: Cow<'static, str>,
    pub headers: Vec<(Cow<'static, str>, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(
        status: u16,
        content_type: impl Into<Cow<'static, str>>,
        body: impl Into<Vec<u8>>,
    ) -> Self {
        Response {
            status,
            content_type: content_type.into(),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A short `text/plain` answer.
    pub fn text(status: u16, body: &str) -> Self {
        Response::new(status, "text/plain; charset=utf-8", format!("{body}\n"))
    }

    /// Append it to `out` (without its body when `head_only`, for a `HEAD` request).
    pub fn write(&self, head_only: bool, keep_alive: bool, out: &mut Vec<u8>) {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_str()))
            .collect();
        let body: &[u8] = if head_only { b"" } else { &self.body };
        write_response(
            self.status,
            Some(&self.content_type),
            &headers,
            body,
            keep_alive,
            out,
        );
    }
}

/// Append the interim `100 Continue` response to `out` (for a head with
/// [`RequestHead::expect_continue`]).
pub fn write_continue(out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
}

/// Append a complete plain response to `out`: status line with the standard
/// reason phrase, `Content-Type` (the given one, or
/// `application/octet-stream` when the body is non-empty and none is given),
/// `Content-Length`, `Connection: keep-alive` or `close`, the extra headers,
/// and the body.
///
/// - A status outside 100..=999 is written as 500.
/// - For 1xx, 204 and 304 neither `Content-Length` nor the body is written
///   (RFC 9110 §8.6, §15.3.5, §15.4.5).
/// - Extra headers are never allowed to corrupt the message: one whose name
///   is not a token, whose value contains CR, LF or NUL, or that would
///   duplicate the framing headers written here (`Content-Length`,
///   `Transfer-Encoding`, `Connection`) is skipped.
pub fn write_response(
    status: u16,
    content_type: Option<&str>,
    extra_headers: &[(&str, &str)],
    body: &[u8],
    keep_alive: bool,
    out: &mut Vec<u8>,
) {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    write_full(status, content_type, extra_headers, body, connection, out);
}

fn write_error(
    status: u16,
    reason: &str,
    extra_headers: &[(&str, &str)],
    connection: &str,
    out: &mut Vec<u8>,
) {
    let mut body = Vec::with_capacity(reason.len() + 1);
    body.extend_from_slice(reason.as_bytes());
    body.push(b'\n');
    write_full(
        status,
        Some("text/plain; charset=utf-8"),
        extra_headers,
        &body,
        connection,
        out,
    );
}

fn write_full(
    status: u16,
    content_type: Option<&str>,
    extra_headers: &[(&str, &str)],
    body: &[u8],
    connection: &str,
    out: &mut Vec<u8>,
) {
    let status = if (100..=999).contains(&status) {
        status
    } else {
        500
    };
    let bodyless = status < 200 || status == 204 || status == 304;
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    if !bodyless {
        let content_type = match content_type {
            Some(ct) => Some(ct),
            None if !body.is_empty() => Some("application/octet-stream"),
            None => None,
        };
        if let Some(ct) = content_type {
            push_header(out, "Content-Type", ct);
        }
        out.extend_from_slice(b"Content-Length: ");
        push_decimal(out, body.len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    push_header(out, "Connection", connection);
    for (name, value) in extra_headers {
        let framing = ["content-length", "transfer-encoding", "connection"]
            .iter()
            .any(|f| name.eq_ignore_ascii_case(f));
        if !framing {
            push_header(out, name, value);
        }
    }
    out.extend_from_slice(b"\r\n");
    if !bodyless {
        out.extend_from_slice(body);
    }
}

/// Write `name: value\r\n` unless either would break the message framing.
fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    let name_ok = !name.is_empty() && name.bytes().all(is_tchar);
    let value_ok = !value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0));
    if name_ok && value_ok {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `n` in decimal digits.
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Standard reason phrase for `status` (RFC 9110 §15 and RFC 6585), or `""`
/// for codes without one (an empty reason phrase is valid, RFC 9112 §4).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Percent-decode a path segment (for routing). Invalid escapes (`%` not
/// followed by two hex digits) or a result that is not UTF-8 give `None`.
/// `+` is left alone (it means space only in form bodies), and `%2F` decodes
/// to `/`: decode segments after splitting the path, not before.
pub fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex_value(*bytes.get(i + 1)?)?;
            let lo = hex_value(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Chunked request bodies
// ---------------------------------------------------------------------------

/// Most bytes of chunk extensions and trailer fields (together) one body may
/// carry; they are skipped, but must not be unbounded.
pub const MAX_CHUNK_METADATA_BYTES: usize = 8 * 1024;

/// Most hex digits in a chunk size, leading zeros included (16 fill a u64).
const MAX_CHUNK_SIZE_DIGITS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading the hex digits of a chunk size.
    Size,
    /// After the digits: optional whitespace, then `;` or CR.
    AfterSize,
    /// Inside a chunk extension, skipped up to CR.
    Extension,
    /// Expecting the LF that ends a chunk-size line.
    SizeLf,
    /// Copying chunk data.
    Data,
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer field line, skipped up to CR.
    TrailerLine,
    /// Expecting the LF that ends a trailer field line.
    TrailerLineLf,
    /// Expecting the LF of the final empty line.
    FinalLf,
    Done,
}

/// Incremental decoder for a `Transfer-Encoding: chunked` request body
/// (RFC 9112 §7.1), bounded by a maximum decoded size. Chunk extensions are
/// ignored and trailer fields skipped. Line endings in the chunked framing
/// must be CRLF: tolerating bare LF here is a known request-smuggling vector.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: ChunkState,
    max_body: u64,
    body_len: u64,
    /// Size being read, then bytes of the current chunk still to copy.
    remaining: u64,
    digits: usize,
    metadata: usize,
    failed: Option<HttpError>,
}

impl ChunkedDecoder {
    /// A decoder that refuses bodies over `max_body` decoded bytes with
    /// [`HttpError::BodyTooLarge`].
    pub fn new(max_body: u64) -> Self {
        ChunkedDecoder {
            state: ChunkState::Size,
            max_body,
            body_len: 0,
            remaining: 0,
            digits: 0,
            metadata: 0,
            failed: None,
        }
    }

    /// Decoded body bytes so far.
    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    /// Whether the terminating empty line has been read.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decode the next bytes of the body, appending chunk data to `out`.
    ///
    /// - `Ok(Some(n))`: the body ended (trailers included) after `n` bytes of
    ///   `input`; the rest of `input` is the next request. Once done, every
    ///   further call returns `Ok(Some(0))`.
    /// - `Ok(None)`: all of `input` was consumed; feed more.
    /// - `Err(e)`: the body is invalid; the decoder keeps returning `e`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Option<usize>, HttpError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        match self.run(input, out) {
            Err(e) => {
                self.failed = Some(e);
                Err(e)
            }
            ok => ok,
        }
    }

    fn run(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Option<usize>, HttpError> {
        const BAD: fn(&'static str) -> HttpError = HttpError::BadChunkedEncoding;
        let mut i = 0;
        while i < input.len() {
            if self.state == ChunkState::Data {
                let available = input.len() - i;
                // Fits in usize: bounded by `available`.
                let take = self.remaining.min(available as u64) as usize;
                out.extend_from_slice(&input[i..i + take]);
                i += take;
                self.remaining -= take as u64;
                if self.remaining == 0 {
                    self.state = ChunkState::DataCr;
                }
                continue;
            }
            let b = input[i];
            i += 1;
            match self.state {
                ChunkState::Size => match hex_value(b) {
                    Some(v) => {
                        self.digits += 1;
                        if self.digits > MAX_CHUNK_SIZE_DIGITS {
                            return Err(BAD("chunk size too long"));
                        }
                        self.remaining = self.remaining << 4 | u64::from(v);
                    }
                    None if self.digits == 0 => return Err(BAD("missing chunk size")),
                    None => {
                        // Re-examine this byte as the first one after the size.
                        i -= 1;
                        self.end_size()?;
                    }
                },
                ChunkState::AfterSize => match b {
                    b' ' | b'\t' => self.count_metadata()?,
                    b';' => {
                        self.count_metadata()?;
                        self.state = ChunkState::Extension;
                    }
                    b'\r' => self.state = ChunkState::SizeLf,
                    _ => return Err(BAD("invalid chunk size line")),
                },
                ChunkState::Extension => match b {
                    b'\r' => self.state = ChunkState::SizeLf,
                    b'\t' | b' '..=0x7e | 0x80..=0xff => self.count_metadata()?,
                    _ => return Err(BAD("invalid chunk extension")),
                },
                ChunkState::SizeLf => {
                    if b != b'\n' {
                        return Err(BAD("chunk size line must end with CRLF"));
                    }
                    self.state = if self.remaining == 0 {
                        ChunkState::TrailerStart
                    } else {
                        ChunkState::Data
                    };
                }
                ChunkState::DataCr => {
                    if b != b'\r' {
                        return Err(BAD("chunk data must end with CRLF"));
                    }
                    self.state = ChunkState::DataLf;
                }
                ChunkState::DataLf => {
                    if b != b'\n' {
                        return Err(BAD("chunk data must end with CRLF"));
                    }
                    self.state = ChunkState::Size;
                    self.digits = 0;
                    self.remaining = 0;
                }
                ChunkState::TrailerStart => match b {
                    b'\r' => self.state = ChunkState::FinalLf,
                    b'\t' | b' '..=0x7e | 0x80..=0xff => {
                        self.count_metadata()?;
                        self.state = ChunkState::TrailerLine;
                    }
                    _ => return Err(BAD("invalid trailer field")),
                },
                ChunkState::TrailerLine => match b {
                    b'\r' => self.state = ChunkState::TrailerLineLf,
                    b'\t' | b' '..=0x7e | 0x80..=0xff => self.count_metadata()?,
                    _ => return Err(BAD("invalid trailer field")),
                },
                ChunkState::TrailerLineLf => {
                    if b != b'\n' {
                        return Err(BAD("trailer field must end with CRLF"));
                    }
                    self.state = ChunkState::TrailerStart;
                }
                ChunkState::FinalLf => {
                    if b != b'\n' {
                        return Err(BAD("chunked body must end with CRLF"));
                    }
                    self.state = ChunkState::Done;
                    return Ok(Some(i));
                }
                ChunkState::Done => return Ok(Some(0)),
                // Data is copied in bulk above; this arm only keeps the match
                // total without a panic path.
                ChunkState::Data => {
                    out.push(b);
                    self.remaining = self.remaining.saturating_sub(1);
                    if self.remaining == 0 {
                        self.state = ChunkState::DataCr;
                    }
                }
            }
        }
        if self.state == ChunkState::Done {
            return Ok(Some(0));
        }
        Ok(None)
    }

    /// The chunk size is complete: check it against the limit.
    fn end_size(&mut self) -> Result<(), HttpError> {
        let total = self
            .body_len
            .checked_add(self.remaining)
            .ok_or(HttpError::BodyTooLarge)?;
        if total > self.max_body {
            return Err(HttpError::BodyTooLarge);
        }
        self.body_len = total;
        self.state = ChunkState::AfterSize;
        Ok(())
    }

    fn count_metadata(&mut self) -> Result<(), HttpError> {
        self.metadata += 1;
        if self.metadata > MAX_CHUNK_METADATA_BYTES {
            return Err(HttpError::BadChunkedEncoding("chunk metadata too large"));
        }
        Ok(())
    }
}
