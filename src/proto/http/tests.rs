use super::*;

/// What Chrome 126 sends for `new WebSocket("wss://signal.example.com/ws?room=lobby")`
/// (the key is RFC 6455's example nonce so the accept value is well known).
const CHROME: &[u8] = b"GET /ws?room=lobby HTTP/1.1\r\n\
Host: signal.example.com\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: https://app.example.com\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Cookie: sid=3f9a1c2e; theme=dark\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
\r\n";

/// What Firefox 127 sends: note `Connection: keep-alive, Upgrade`.
const FIREFOX: &[u8] = b"GET /ws HTTP/1.1\r\n\
Host: signal.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0\r\n\
Accept: */*\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Sec-WebSocket-Version: 13\r\n\
Origin: https://app.example.com\r\n\
Sec-WebSocket-Protocol: sigyard.v1\r\n\
Sec-WebSocket-Extensions: permessage-deflate\r\n\
Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\
DNT: 1\r\n\
Connection: keep-alive, Upgrade\r\n\
Sec-Fetch-Dest: empty\r\n\
Sec-Fetch-Mode: websocket\r\n\
Sec-Fetch-Site: same-site\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
Upgrade: websocket\r\n\
\r\n";

const POST_JSON: &[u8] = b"POST /api/rooms?debug=1 HTTP/1.1\r\n\
Host: signal.example.com\r\n\
User-Agent: curl/8.5.0\r\n\
Accept: */*\r\n\
Content-Type: application/json\r\n\
Content-Length: 31\r\n\
\r\n\
{\"room\":\"lobby\",\"name\":\"alice\"}";

/// A minimal valid upgrade; tests splice extra header lines in.
fn upgrade_with(request_line: &str, headers: &[&str]) -> Vec<u8> {
    let mut s = format!("{request_line}\r\n");
    for h in headers {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

const GOOD: &[&str] = &[
    "Host: h",
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
];

fn without(skip: &str) -> Vec<&'static str> {
    GOOD.iter()
        .copied()
        .filter(|h| !h.starts_with(skip))
        .collect()
}

fn parse(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HttpError> {
    parse_request(buf, &HttpLimits::default())
}

fn head(buf: &[u8]) -> RequestHead {
    match parse(buf) {
        Ok(Some((h, n))) => {
            assert_eq!(n, buf.len(), "whole buffer should be the head");
            h
        }
        other => panic!("expected a complete head, got {other:?}"),
    }
}

fn parse_err(buf: &[u8]) -> HttpError {
    match parse(buf) {
        Err(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn upgrade_err(buf: &[u8]) -> UpgradeError {
    match validate_upgrade(&head(buf)) {
        Err(e) => e,
        Ok(a) => panic!("expected refusal, got accept {:?}", std::str::from_utf8(&a)),
    }
}

fn response_of(e: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut out = Vec::new();
    e(&mut out);
    String::from_utf8(out).expect("responses are ASCII")
}

// --- Browsers ---------------------------------------------------------------

#[test]
fn chrome_upgrade_accepted() {
    let h = head(CHROME);
    assert_eq!(h.method, Method::Get);
    assert_eq!(h.path, "/ws");
    assert_eq!(h.query.as_deref(), Some("room=lobby"));
    assert_eq!(h.host.as_deref(), Some("signal.example.com"));
    assert_eq!(h.origin.as_deref(), Some("https://app.example.com"));
    assert!(h.keep_alive);
    let up = h.upgrade.as_ref().expect("upgrade");
    assert!(up.connection_has_upgrade);
    assert_eq!(up.protocols, None);
    let accept = validate_upgrade(&h).expect("valid");
    assert_eq!(&accept, b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

#[test]
fn firefox_connection_keep_alive_upgrade_accepted() {
    let h = head(FIREFOX);
    let up = h.upgrade.as_ref().expect("upgrade");
    assert!(up.connection_has_upgrade);
    assert_eq!(up.protocols.as_deref(), Some("sigyard.v1"));
    assert_eq!(up.version.as_deref(), Some("13"));
    let accept = validate_upgrade(&h).expect("valid");
    assert_eq!(&accept, b"HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
}

#[test]
fn rfc6455_accept_key_example() {
    assert_eq!(
        &accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
        b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn switching_protocols_response_is_exact() {
    let accept = accept_key(b"dGhlIHNhbXBsZSBub25jZQ==");
    let r = response_of(|o| write_switching_protocols(&accept, o));
    assert_eq!(
        r,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    );
}

// --- Incremental behaviour --------------------------------------------------

#[test]
fn partial_head_returns_none() {
    assert_eq!(parse(b""), Ok(None));
    assert_eq!(parse(b"GET /ws HTTP/1.1\r\nHost: h\r\n"), Ok(None));
    assert_eq!(parse(b"GET /ws HTTP/1.1\r\nHost: h\r\n\r"), Ok(None));
}

#[test]
fn every_split_point_gives_same_result() {
    for req in [CHROME, FIREFOX, POST_JSON] {
        let whole = parse(req);
        let (_, consumed) = whole.clone().expect("ok").expect("complete");
        for cut in 0..consumed {
            assert_eq!(parse(&req[..cut]), Ok(None), "prefix of {cut} bytes");
        }
        for cut in consumed..=req.len() {
            assert_eq!(parse(&req[..cut]), whole, "prefix of {cut} bytes");
        }
    }
}

#[test]
fn every_split_point_of_bad_request_is_none_or_same_error() {
    let req = b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
    let whole = parse(req);
    assert_eq!(whole, Err(HttpError::ConflictingContentLength));
    for cut in 0..req.len() {
        let r = parse(&req[..cut]);
        assert!(r == Ok(None) || r == whole, "cut {cut}: {r:?}");
    }
}

#[test]
fn leftover_bytes_not_consumed() {
    let mut buf = CHROME.to_vec();
    buf.extend_from_slice(&[0x81, 0x85, 1, 2, 3, 4, 5, 6, 7, 8, 9]); // a masked frame
    let (_, consumed) = parse(&buf).unwrap().unwrap();
    assert_eq!(consumed, CHROME.len());
}

#[test]
fn pipelined_requests_parse_one_at_a_time() {
    let buf = b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let (first, n) = parse(buf).unwrap().unwrap();
    assert_eq!(first.path, "/healthz");
    assert!(first.keep_alive);
    let (second, m) = parse(&buf[n..]).unwrap().unwrap();
    assert_eq!(second.path, "/metrics");
    assert_eq!(second.query.as_deref(), Some("x=1"));
    assert!(!second.keep_alive);
    assert_eq!(n + m, buf.len());
}

#[test]
fn post_body_left_in_buffer() {
    let (h, n) = parse(POST_JSON).unwrap().unwrap();
    assert_eq!(h.method, Method::Post);
    assert_eq!(h.content_length, Some(31));
    assert_eq!(&POST_JSON[n..], br#"{"room":"lobby","name":"alice"}"#);
}

#[test]
fn leading_empty_line_is_ignored() {
    let h = head(b"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(h.path, "/");
}

// --- Limits -----------------------------------------------------------------

#[test]
fn head_over_limit_without_terminator_is_431() {
    let limits = HttpLimits {
        max_header_bytes: 64,
        max_headers: 8,
    };
    let mut buf = b"GET / HTTP/1.1\r\nX-Slow: ".to_vec();
    buf.resize(63, b'a');
    assert_eq!(parse_request(&buf, &limits), Ok(None));
    buf.push(b'a');
    assert_eq!(
        parse_request(&buf, &limits),
        Err(HttpError::HeadersTooLarge)
    );
    buf.resize(10_000, b'a');
    assert_eq!(
        parse_request(&buf, &limits),
        Err(HttpError::HeadersTooLarge)
    );
}

#[test]
fn complete_head_over_limit_is_431() {
    let limits = HttpLimits {
        max_header_bytes: CHROME.len() - 1,
        max_headers: 32,
    };
    assert_eq!(
        parse_request(CHROME, &limits),
        Err(HttpError::HeadersTooLarge)
    );
    let exact = HttpLimits {
        max_header_bytes: CHROME.len(),
        max_headers: 32,
    };
    assert!(matches!(parse_request(CHROME, &exact), Ok(Some(_))));
}

#[test]
fn limit_counts_head_only_not_leftover() {
    let limits = HttpLimits {
        max_header_bytes: CHROME.len(),
        max_headers: 32,
    };
    let mut buf = CHROME.to_vec();
    buf.extend_from_slice(&[0u8; 4096]);
    let (_, n) = parse_request(&buf, &limits).unwrap().unwrap();
    assert_eq!(n, CHROME.len());
}

#[test]
fn too_many_headers_is_431() {
    let limits = HttpLimits {
        max_header_bytes: 8192,
        max_headers: 4,
    };
    let ok = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    assert!(matches!(parse_request(ok, &limits), Ok(Some(_))));
    let bad = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
    let e = parse_request(bad, &limits).unwrap_err();
    assert_eq!(e, HttpError::TooManyHeaders);
    assert_eq!(e.status(), 431);
}

#[test]
fn max_headers_above_cap_is_clamped() {
    let limits = HttpLimits {
        max_header_bytes: 64 * 1024,
        max_headers: 10_000,
    };
    let mut s = String::from("GET / HTTP/1.1\r\nHost: h\r\n");
    for i in 0..MAX_HEADERS_CAP {
        s.push_str(&format!("X-{i}: v\r\n"));
    }
    s.push_str("\r\n");
    assert_eq!(
        parse_request(s.as_bytes(), &limits),
        Err(HttpError::TooManyHeaders)
    );
}

// --- Request line -----------------------------------------------------------

#[test]
fn methods_are_case_sensitive() {
    for (m, want) in [
        ("GET", Method::Get),
        ("POST", Method::Post),
        ("OPTIONS", Method::Options),
        ("HEAD", Method::Head),
        ("PUT", Method::Put),
        ("DELETE", Method::Delete),
        ("PATCH", Method::Other),
        ("get", Method::Other),
    ] {
        let req = format!("{m} / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(head(req.as_bytes()).method, want, "{m}");
    }
}

#[test]
fn absolute_form_target_takes_path() {
    let h = head(b"GET http://signal.example.com:8080/ws?x=1 HTTP/1.1\r\nHost: other\r\n\r\n");
    assert_eq!(h.path, "/ws");
    assert_eq!(h.query.as_deref(), Some("x=1"));
    // RFC 9112 §3.2.2: the target's authority wins over Host.
    assert_eq!(h.host.as_deref(), Some("signal.example.com:8080"));
    let h = head(b"GET HTTPS://a.example HTTP/1.1\r\nHost: a.example\r\n\r\n");
    assert_eq!(h.path, "/");
    assert_eq!(h.query, None);
}

#[test]
fn absolute_form_still_requires_host_header() {
    assert_eq!(
        parse_err(b"GET http://a/ws HTTP/1.1\r\n\r\n"),
        HttpError::MissingHost
    );
}

#[test]
fn odd_targets_are_400() {
    for target in [
        "ws",
        "ftp://a/b",
        "http:///nohost",
        "http://user@a/",
        "/a#frag",
        "*",
    ] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
        let e = parse_err(req.as_bytes());
        assert!(matches!(e, HttpError::Malformed(_)), "{target}: {e:?}");
        assert_eq!(e.status(), 400);
    }
}

#[test]
fn options_asterisk_accepted() {
    let h = head(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(h.path, "*");
}

#[test]
fn non_ascii_target_is_400() {
    let e = parse_err("GET /caf\u{e9} HTTP/1.1\r\nHost: h\r\n\r\n".as_bytes());
    assert_eq!(e, HttpError::Malformed("non-ASCII request target"));
}

#[test]
fn empty_query_is_kept_as_empty() {
    let h = head(b"GET /a? HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(h.path, "/a");
    assert_eq!(h.query.as_deref(), Some(""));
}

#[test]
fn http2_version_is_505() {
    let e = parse_err(b"GET / HTTP/2.0\r\nHost: h\r\n\r\n");
    assert_eq!(e, HttpError::UnsupportedVersion);
    assert_eq!(e.status(), 505);
    assert_eq!(
        parse_err(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        HttpError::UnsupportedVersion
    );
    assert_eq!(
        parse_err(b"GET / HTTP/1.2\r\n"),
        HttpError::UnsupportedVersion
    );
}

#[test]
fn garbage_version_is_400() {
    let e = parse_err(b"GET / HTTX/1.1\r\n\r\n");
    assert_eq!(e.status(), 400);
    assert_eq!(parse_err(b"GET / HTTP/x\r\n\r\n").status(), 400);
    assert_eq!(parse_err(b"GET /\r\n\r\n").status(), 400);
}

#[test]
fn tls_client_hello_is_400_immediately() {
    let e = parse_err(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]);
    assert_eq!(e.status(), 400);
}

#[test]
fn invalid_header_name_is_400() {
    let e = parse_err(b"GET / HTTP/1.1\r\nHo st: h\r\n\r\n");
    assert_eq!(e.status(), 400);
    let e = parse_err(b"GET / HTTP/1.1\r\nHost : h\r\n\r\n");
    assert_eq!(e.status(), 400);
}

#[test]
fn obs_fold_is_400() {
    let e = parse_err(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  continued\r\n\r\n");
    assert_eq!(e.status(), 400);
}

// --- Host ---------------------------------------------------------------------

#[test]
fn http11_missing_host_is_400() {
    let e = parse_err(b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(e, HttpError::MissingHost);
    assert_eq!(e.status(), 400);
}

#[test]
fn http10_without_host_is_fine() {
    let h = head(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(h.minor_version, 0);
    assert_eq!(h.host, None);
}

#[test]
fn duplicate_host_is_400() {
    assert_eq!(
        parse_err(b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"),
        HttpError::DuplicateHost
    );
}

#[test]
fn invalid_host_is_400() {
    assert_eq!(
        parse_err(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
        HttpError::InvalidHost
    );
    assert_eq!(
        parse_err(b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"),
        HttpError::InvalidHost
    );
}

#[test]
fn host_forms_accepted() {
    for host in [
        "example.com",
        "example.com:443",
        "[::1]:8080",
        "127.0.0.1",
        "",
    ] {
        let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        assert_eq!(head(req.as_bytes()).host.as_deref(), Some(host));
    }
}

#[test]
fn header_names_are_case_insensitive() {
    let h = head(
        b"GET / HTTP/1.1\r\nhOsT: h\r\nORIGIN: https://o\r\ncontent-LENGTH: 0\r\n\
          CONNECTION: CLOSE\r\n\r\n",
    );
    assert_eq!(h.host.as_deref(), Some("h"));
    assert_eq!(h.origin.as_deref(), Some("https://o"));
    assert_eq!(h.content_length, Some(0));
    assert!(!h.keep_alive);
}

#[test]
fn duplicate_origin_is_400() {
    assert_eq!(
        parse_err(b"GET / HTTP/1.1\r\nHost: h\r\nOrigin: https://a\r\nOrigin: https://b\r\n\r\n"),
        HttpError::DuplicateOrigin
    );
}

#[test]
fn non_utf8_kept_header_is_400() {
    let e = parse_err(b"GET / HTTP/1.1\r\nHost: h\r\nOrigin: https://\xff\r\n\r\n");
    assert_eq!(e.status(), 400);
    // Headers the server does not keep may carry obs-text.
    let h = head(b"GET / HTTP/1.1\r\nHost: h\r\nX-Name: caf\xe9\r\n\r\n");
    assert_eq!(h.path, "/");
}

// --- Keep-alive ---------------------------------------------------------------

#[test]
fn keep_alive_rules() {
    let cases: &[(&[u8], bool)] = &[
        (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", true),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            false,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Keep-Alive, Close\r\n\r\n",
            false,
        ),
        (b"GET / HTTP/1.0\r\n\r\n", false),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
        (
            b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nConnection: close\r\n\r\n",
            false,
        ),
        (
            b"GET / HTTP/1.0\r\nConnection: foo,,  keep-alive \r\n\r\n",
            true,
        ),
    ];
    for (req, want) in cases {
        assert_eq!(
            head(req).keep_alive,
            *want,
            "{}",
            String::from_utf8_lossy(req)
        );
    }
}

#[test]
fn expect_continue_detected() {
    let h =
        head(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2000\r\nExpect: 100-Continue\r\n\r\n");
    assert!(h.expect_continue);
    assert!(!head(b"POST / HTTP/1.1\r\nHost: h\r\n\r\n").expect_continue);
    assert_eq!(response_of(write_continue), "HTTP/1.1 100 Continue\r\n\r\n");
}

// --- Content-Length / Transfer-Encoding ----------------------------------------

#[test]
fn duplicate_conflicting_content_length_is_400() {
    let e =
        parse_err(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
    assert_eq!(e, HttpError::ConflictingContentLength);
    assert_eq!(e.status(), 400);
    assert_eq!(
        parse_err(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n"),
        HttpError::ConflictingContentLength
    );
}

#[test]
fn duplicate_identical_content_length_accepted() {
    let h =
        head(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5, 5\r\n\r\n");
    assert_eq!(h.content_length, Some(5));
}

#[test]
fn non_decimal_content_length_is_400() {
    for v in [
        "abc",
        "+5",
        "-1",
        "0x10",
        "5 5",
        "",
        "5,",
        "1.0",
        "18446744073709551616",
    ] {
        let req = format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {v}\r\n\r\n");
        assert_eq!(
            parse_err(req.as_bytes()),
            HttpError::BadContentLength,
            "{v:?}"
        );
    }
    let h = head(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551615\r\n\r\n");
    assert_eq!(h.content_length, Some(u64::MAX));
}

#[test]
fn chunked_detected() {
    let h = head(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n");
    assert!(h.chunked);
    assert_eq!(h.content_length, None);
}

#[test]
fn both_length_and_chunked_is_400() {
    let e = parse_err(
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    assert_eq!(e, HttpError::BothLengthAndChunked);
    assert_eq!(e.status(), 400);
}

#[test]
fn chunked_not_last_is_400() {
    for te in [
        "chunked, gzip",
        "chunked, chunked",
        "chunked\r\nTransfer-Encoding: chunked",
    ] {
        let req = format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {te}\r\n\r\n");
        assert_eq!(
            parse_err(req.as_bytes()),
            HttpError::ChunkedNotLast,
            "{te:?}"
        );
    }
}

#[test]
fn unknown_transfer_coding_is_501() {
    let e = parse_err(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    assert_eq!(e, HttpError::UnsupportedTransferCoding);
    assert_eq!(e.status(), 501);
}

#[test]
fn transfer_encoding_in_http10_is_400() {
    assert_eq!(
        parse_err(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
        HttpError::TransferEncodingInHttp10
    );
}

#[test]
fn empty_transfer_encoding_is_400() {
    let e = parse_err(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \r\n\r\n");
    assert_eq!(e.status(), 400);
}

// --- Upgrade validation ---------------------------------------------------------

#[test]
fn minimal_upgrade_accepted() {
    let h = head(&upgrade_with("GET /ws HTTP/1.1", GOOD));
    assert!(validate_upgrade(&h).is_ok());
}

#[test]
fn upgrade_token_list_and_case() {
    let mut hs = without("Upgrade");
    hs.push("Upgrade: h2c, WebSocket");
    let h = head(&upgrade_with("GET /ws HTTP/1.1", &hs));
    assert!(validate_upgrade(&h).is_ok());
}

#[test]
fn no_upgrade_header_means_no_upgrade_request() {
    let h = head(&upgrade_with("GET /ws HTTP/1.1", &without("Upgrade")));
    assert_eq!(h.upgrade, None);
    let e = validate_upgrade(&h).unwrap_err();
    assert_eq!(e, UpgradeError::NotWebSocketUpgrade);
    assert_eq!(e.status(), 426);
    let r = response_of(|o| e.write_response(o));
    assert!(r.contains("\r\nUpgrade: websocket\r\n"), "{r}");
    assert!(r.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{r}");
}

#[test]
fn other_upgrade_protocol_is_not_websocket() {
    let mut hs = without("Upgrade");
    hs.push("Upgrade: websocket2, h2c");
    assert_eq!(head(&upgrade_with("GET / HTTP/1.1", &hs)).upgrade, None);
}

#[test]
fn post_upgrade_is_405_with_allow() {
    let e = upgrade_err(&upgrade_with("POST /ws HTTP/1.1", GOOD));
    assert_eq!(e, UpgradeError::MethodNotGet);
    assert_eq!(e.status(), 405);
    let r = response_of(|o| e.write_response(o));
    assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{r}");
    assert!(r.contains("\r\nAllow: GET\r\n"), "{r}");
    assert!(r.contains("\r\nConnection: close\r\n"), "{r}");
}

#[test]
fn http10_upgrade_is_400() {
    let e = upgrade_err(&upgrade_with("GET /ws HTTP/1.0", GOOD));
    assert_eq!(e, UpgradeError::HttpVersionTooOld);
    assert_eq!(e.status(), 400);
}

#[test]
fn upgrade_missing_host_is_400() {
    // parse_request already refuses HTTP/1.1 without Host; validate_upgrade
    // checks again for heads built elsewhere.
    let mut h = head(&upgrade_with("GET /ws HTTP/1.1", GOOD));
    h.host = None;
    let e = validate_upgrade(&h).unwrap_err();
    assert_eq!(e, UpgradeError::MissingHost);
    assert_eq!(e.status(), 400);
}

#[test]
fn connection_without_upgrade_token_is_400() {
    let mut hs = without("Connection");
    hs.push("Connection: keep-alive");
    let e = upgrade_err(&upgrade_with("GET /ws HTTP/1.1", &hs));
    assert_eq!(e, UpgradeError::ConnectionHeaderLacksUpgrade);
    assert_eq!(e.status(), 400);
    // Missing altogether.
    let e = upgrade_err(&upgrade_with("GET /ws HTTP/1.1", &without("Connection")));
    assert_eq!(e, UpgradeError::ConnectionHeaderLacksUpgrade);
}

#[test]
fn connection_upgrade_on_separate_lines_accepted() {
    let mut hs = without("Connection");
    hs.push("Connection: keep-alive");
    hs.push("connection: UPGRADE");
    let h = head(&upgrade_with("GET /ws HTTP/1.1", &hs));
    assert!(validate_upgrade(&h).is_ok());
}

#[test]
fn upgrade_missing_key_is_400() {
    let e = upgrade_err(&upgrade_with(
        "GET /ws HTTP/1.1",
        &without("Sec-WebSocket-Key"),
    ));
    assert_eq!(e, UpgradeError::MissingKey);
    assert_eq!(e.status(), 400);
}

#[test]
fn upgrade_invalid_key_is_400() {
    for key in [
        "dGhlIHNhbXBsZSBub25jZQ",       // unpadded
        "dGhlIHNhbXBsZSBub25jZQ=",      // wrong padding
        "dGhlIHNhbXBsZSBub25jZQ===",    // too long
        "dGhlIHNhbXBsZSBub25jZQ?=",     // bad alphabet
        "dGhlIHNhbXBsZSBub25jZR==",     // non-zero trailing bits
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAA", // 21 bytes
        "",
    ] {
        let mut hs = without("Sec-WebSocket-Key");
        let line = format!("Sec-WebSocket-Key: {key}");
        hs.push(&line);
        let e = upgrade_err(&upgrade_with("GET /ws HTTP/1.1", &hs));
        assert_eq!(e, UpgradeError::InvalidKey, "{key:?}");
        assert_eq!(e.status(), 400);
    }
}

#[test]
fn duplicate_key_is_400() {
    let mut hs = GOOD.to_vec();
    hs.push("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==");
    assert_eq!(
        upgrade_err(&upgrade_with("GET /ws HTTP/1.1", &hs)),
        UpgradeError::InvalidKey
    );
}

#[test]
fn upgrade_version_8_is_426_with_version_header() {
    let mut hs = without("Sec-WebSocket-Version");
    hs.push("Sec-WebSocket-Version: 8");
    let e = upgrade_err(&upgrade_with("GET /ws HTTP/1.1", &hs));
    assert_eq!(e, UpgradeError::UnsupportedVersion);
    assert_eq!(e.status(), 426);
    let r = response_of(|o| e.write_response(o));
    assert!(r.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{r}");
    assert!(r.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{r}");
    assert!(r.contains("\r\nUpgrade: websocket\r\n"), "{r}");
    assert!(r.contains("\r\nConnection: Upgrade, close\r\n"), "{r}");
}

#[test]
fn upgrade_missing_version_is_426_with_version_header() {
    let e = upgrade_err(&upgrade_with(
        "GET /ws HTTP/1.1",
        &without("Sec-WebSocket-Version"),
    ));
    assert_eq!(e, UpgradeError::MissingVersion);
    assert_eq!(e.status(), 426);
    let r = response_of(|o| e.write_response(o));
    assert!(r.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{r}");
}

#[test]
fn hixie76_client_gets_426_not_missing_key() {
    // Draft-76 handshakes have Key1/Key2 and no version: tell them to speak 13.
    let req = b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\nSec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n\r\n";
    assert_eq!(upgrade_err(req), UpgradeError::MissingVersion);
}

#[test]
fn duplicate_version_13_is_426() {
    let mut hs = GOOD.to_vec();
    hs.push("Sec-WebSocket-Version: 13");
    assert_eq!(
        upgrade_err(&upgrade_with("GET /ws HTTP/1.1", &hs)),
        UpgradeError::UnsupportedVersion
    );
}

#[test]
fn upgrade_with_body_is_400() {
    let mut hs = GOOD.to_vec();
    hs.push("Content-Length: 5");
    let e = upgrade_err(&upgrade_with("GET /ws HTTP/1.1", &hs));
    assert_eq!(e, UpgradeError::BodyNotAllowed);
    assert_eq!(e.status(), 400);
    let mut hs = GOOD.to_vec();
    hs.push("Transfer-Encoding: chunked");
    assert_eq!(
        upgrade_err(&upgrade_with("GET /ws HTTP/1.1", &hs)),
        UpgradeError::BodyNotAllowed
    );
    let mut hs = GOOD.to_vec();
    hs.push("Content-Length: 0");
    let h = head(&upgrade_with("GET /ws HTTP/1.1", &hs));
    assert!(validate_upgrade(&h).is_ok());
}

#[test]
fn every_upgrade_error_response_closes_and_names_problem() {
    for e in [
        UpgradeError::MethodNotGet,
        UpgradeError::HttpVersionTooOld,
        UpgradeError::MissingHost,
        UpgradeError::NotWebSocketUpgrade,
        UpgradeError::ConnectionHeaderLacksUpgrade,
        UpgradeError::MissingKey,
        UpgradeError::InvalidKey,
        UpgradeError::UnsupportedVersion,
        UpgradeError::MissingVersion,
        UpgradeError::BodyNotAllowed,
    ] {
        let r = response_of(|o| e.write_response(o));
        assert_response_well_formed(&r, e.status(), e.reason());
    }
}

#[test]
fn every_http_error_response_closes_and_names_problem() {
    for e in [
        HttpError::HeadersTooLarge,
        HttpError::TooManyHeaders,
        HttpError::Malformed("invalid header name"),
        HttpError::UnsupportedVersion,
        HttpError::BadContentLength,
        HttpError::ConflictingContentLength,
        HttpError::BothLengthAndChunked,
        HttpError::ChunkedNotLast,
        HttpError::UnsupportedTransferCoding,
        HttpError::TransferEncodingInHttp10,
        HttpError::MissingHost,
        HttpError::DuplicateHost,
        HttpError::InvalidHost,
        HttpError::DuplicateOrigin,
        HttpError::BodyTooLarge,
        HttpError::BadChunkedEncoding("missing chunk size"),
    ] {
        let r = response_of(|o| e.write_response(o));
        assert_response_well_formed(&r, e.status(), e.reason());
        assert!(!e.to_string().is_empty());
    }
}

/// Status line, `Connection: close`, text body equal to `reason`, and a
/// Content-Length that matches; the response re-parses as one message.
fn assert_response_well_formed(r: &str, status: u16, reason: &str) {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(r.as_bytes()) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!("unparsable response {other:?}: {r}"),
    };
    assert_eq!(resp.code, Some(status));
    assert_eq!(resp.reason, Some(reason_phrase(status)));
    let get = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| std::str::from_utf8(h.value).unwrap().to_owned())
    };
    assert!(get("connection").unwrap().contains("close"), "{r}");
    assert_eq!(
        get("content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    let body = &r[n..];
    assert_eq!(get("content-length"), Some(body.len().to_string()));
    assert_eq!(body, format!("{reason}\n"));
}

// --- Responses ------------------------------------------------------------------

#[test]
fn write_response_plain() {
    let r = response_of(|o| {
        write_response(
            200,
            Some("application/json"),
            &[("Cache-Control", "no-store")],
            b"{}",
            true,
            o,
        )
    });
    assert_eq!(
        r,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\
         Connection: keep-alive\r\nCache-Control: no-store\r\n\r\n{}"
    );
}

#[test]
fn write_response_empty_body_has_length_zero_and_no_type() {
    let r = response_of(|o| write_response(404, None, &[], b"", false, o));
    assert_eq!(
        r,
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
}

#[test]
fn write_response_default_content_type_for_body() {
    let r = response_of(|o| write_response(200, None, &[], b"x", true, o));
    assert!(
        r.contains("\r\nContent-Type: application/octet-stream\r\n"),
        "{r}"
    );
}

#[test]
fn write_response_204_has_no_length_or_body() {
    let r = response_of(|o| write_response(204, Some("text/plain"), &[], b"ignored", true, o));
    assert_eq!(
        r,
        "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n"
    );
}

#[test]
fn write_response_refuses_header_injection_and_framing_overrides() {
    let r = response_of(|o| {
        write_response(
            200,
            None,
            &[
                ("X-Evil", "a\r\nSet-Cookie: x=1"),
                ("Bad Name", "v"),
                ("content-length", "999"),
                ("Transfer-Encoding", "chunked"),
                ("Connection", "keep-alive"),
                ("Access-Control-Allow-Origin", "https://app.example.com"),
            ],
            b"",
            false,
            o,
        )
    });
    assert_eq!(
        r,
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\
         Access-Control-Allow-Origin: https://app.example.com\r\n\r\n"
    );
}

#[test]
fn write_response_unknown_and_invalid_status() {
    let r = response_of(|o| write_response(599, None, &[], b"", false, o));
    assert!(r.starts_with("HTTP/1.1 599 \r\n"), "{r}");
    let r = response_of(|o| write_response(42, None, &[], b"", false, o));
    assert!(
        r.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
        "{r}"
    );
}

#[test]
fn reason_phrases() {
    assert_eq!(reason_phrase(101), "Switching Protocols");
    assert_eq!(reason_phrase(426), "Upgrade Required");
    assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
    assert_eq!(reason_phrase(505), "HTTP Version Not Supported");
    assert_eq!(reason_phrase(799), "");
}

// --- Percent decoding -----------------------------------------------------------

#[test]
fn percent_decode_rules() {
    assert_eq!(percent_decode("room-1").as_deref(), Some("room-1"));
    assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
    assert_eq!(percent_decode("caf%C3%a9").as_deref(), Some("caf\u{e9}"));
    assert_eq!(percent_decode("a+b").as_deref(), Some("a+b"));
    assert_eq!(percent_decode("a%2Fb").as_deref(), Some("a/b"));
    assert_eq!(percent_decode("%"), None);
    assert_eq!(percent_decode("%4"), None);
    assert_eq!(percent_decode("%zz"), None);
    assert_eq!(percent_decode("%C3"), None); // truncated UTF-8
    assert_eq!(percent_decode("%FF"), None);
}

// --- Chunked bodies ---------------------------------------------------------------

fn decode_all(input: &[u8], max: u64) -> Result<(Vec<u8>, usize), HttpError> {
    let mut d = ChunkedDecoder::new(max);
    let mut out = Vec::new();
    match d.feed(input, &mut out)? {
        Some(n) => Ok((out, n)),
        None => Err(HttpError::Malformed("incomplete")),
    }
}

#[test]
fn chunked_simple_with_extension_and_trailer() {
    let body = b"10;ext=1\r\n{\"room\":\"lobby\",\r\nf\r\n\"name\":\"alice\"}\r\n0\r\nX-Trailer: yes\r\n\r\nNEXT";
    let (out, n) = decode_all(body, 1024).unwrap();
    assert_eq!(out, br#"{"room":"lobby","name":"alice"}"#);
    assert_eq!(&body[n..], b"NEXT");
}

#[test]
fn chunked_every_split_point() {
    let body: &[u8] =
        b"4 ; a=b\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nT: 1\r\n\r\nGET";
    let want = b"Wikipedia in\r\n\r\nchunks.";
    for cut in 0..=body.len() {
        let mut d = ChunkedDecoder::new(1024);
        let mut out = Vec::new();
        let first = d.feed(&body[..cut], &mut out).unwrap();
        let done_at = match first {
            Some(n) => n,
            None => cut + d.feed(&body[cut..], &mut out).unwrap().expect("done"),
        };
        assert_eq!(out, want, "cut {cut}");
        assert_eq!(&body[done_at..], b"GET", "cut {cut}");
        assert!(d.is_done());
        assert_eq!(d.body_len(), want.len() as u64);
        assert_eq!(d.feed(b"more", &mut out), Ok(Some(0)));
    }
}

#[test]
fn chunked_byte_at_a_time() {
    let body = b"3\r\nabc\r\n0\r\n\r\n";
    let mut d = ChunkedDecoder::new(16);
    let mut out = Vec::new();
    for (i, b) in body.iter().enumerate() {
        let r = d.feed(std::slice::from_ref(b), &mut out).unwrap();
        if i + 1 < body.len() {
            assert_eq!(r, None);
        } else {
            assert_eq!(r, Some(1));
        }
    }
    assert_eq!(out, b"abc");
}

#[test]
fn chunked_empty_body() {
    let (out, n) = decode_all(b"0\r\n\r\n", 0).unwrap();
    assert!(out.is_empty());
    assert_eq!(n, 5);
}

#[test]
fn chunked_over_limit_is_413_before_data_arrives() {
    let mut d = ChunkedDecoder::new(10);
    let mut out = Vec::new();
    assert_eq!(d.feed(b"5\r\nhello\r\n", &mut out), Ok(None));
    let e = d.feed(b"6\r\n", &mut out).unwrap_err();
    assert_eq!(e, HttpError::BodyTooLarge);
    assert_eq!(e.status(), 413);
    // Poisoned.
    assert_eq!(d.feed(b"0\r\n\r\n", &mut out), Err(HttpError::BodyTooLarge));
    assert_eq!(
        decode_all(b"ffffffffffffffff\r\n", u64::MAX - 1),
        Err(HttpError::BodyTooLarge)
    );
}

#[test]
fn chunked_exactly_at_limit_accepted() {
    let (out, _) = decode_all(b"5\r\nhello\r\n0\r\n\r\n", 5).unwrap();
    assert_eq!(out, b"hello");
}

#[test]
fn chunked_bad_framing_is_400() {
    for body in [
        &b"\r\n"[..],                    // no size
        b"x\r\n",                        // not hex
        b"-1\r\n",                       // sign
        b"5\nhello\r\n0\r\n\r\n",        // bare LF after size
        b"5\r\nhelloX\r\n0\r\n\r\n",     // data longer than size
        b"5\r\nhello\n0\r\n\r\n",        // bare LF after data
        b"5 x\r\nhello\r\n0\r\n\r\n",    // junk after size
        b"0\r\n\n",                      // bare LF at end
        b"0\r\nT: 1\n\r\n",              // bare LF in trailer
        b"0\r\nT: \x01\r\n\r\n",         // control char in trailer
        b"5;\x00\r\nhello\r\n0\r\n\r\n", // control char in extension
        b"00000000000000001\r\n",        // too many digits
    ] {
        let e = decode_all(body, 1 << 20).unwrap_err();
        assert!(
            matches!(e, HttpError::BadChunkedEncoding(_)),
            "{:?}: {e:?}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(e.status(), 400);
    }
}

#[test]
fn chunked_metadata_is_bounded() {
    let mut body = b"1;".to_vec();
    body.resize(2 + MAX_CHUNK_METADATA_BYTES, b'x');
    let e = decode_all(&body, 1 << 20).unwrap_err();
    assert_eq!(e, HttpError::BadChunkedEncoding("chunk metadata too large"));
    let mut trailer = b"0\r\n".to_vec();
    // Each line counts its 7 field bytes.
    for _ in 0..MAX_CHUNK_METADATA_BYTES / 7 + 1 {
        trailer.extend_from_slice(b"X: 1234\r\n");
    }
    let e = decode_all(&trailer, 1 << 20).unwrap_err();
    assert_eq!(e, HttpError::BadChunkedEncoding("chunk metadata too large"));
}

#[test]
fn chunked_uppercase_and_leading_zero_sizes() {
    let (out, _) = decode_all(b"0A\r\n0123456789\r\n000\r\n\r\n", 100).unwrap();
    assert_eq!(out, b"0123456789");
}

#[test]
fn field_classification() {
    assert_eq!(Field::classify("Host"), Some(Field::Host));
    assert_eq!(Field::classify("hosT"), Some(Field::Host));
    assert_eq!(Field::classify("hose"), None);
    assert_eq!(Field::classify("ORIGIN"), Some(Field::Origin));
    assert_eq!(Field::classify("Expect"), Some(Field::Expect));
    assert_eq!(
        Field::classify("Transfer-Encoding"),
        Some(Field::TransferEncoding)
    );
    assert_eq!(Field::classify("Sec-WebSocket-Key"), Some(Field::WsKey));
    assert_eq!(
        Field::classify("Sec-WebSocket-Version"),
        Some(Field::WsVersion)
    );
    assert_eq!(
        Field::classify("Sec-WebSocket-Protocol"),
        Some(Field::WsProtocol)
    );
    assert_eq!(Field::classify("Sec-WebSocket-Extensions"), None);
    assert_eq!(Field::classify("Cookie"), None);
    assert_eq!(Field::classify(""), None);
}
