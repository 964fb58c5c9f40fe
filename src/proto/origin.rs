//! Which web origins may reach a dialect (`--allowed-origins`): browsers send `Origin` with
//! every WebSocket upgrade and cross-origin request, so a list of the sites that may use the
//! server keeps any other page a user visits from opening sockets to it (cross-site WebSocket
//! hijacking). Requests without `Origin` come from non-browser clients, which could send any
//! header they like: the list does not apply to them.
//!
//! An entry is `*` (any origin), `null` (the opaque origin of sandboxed frames and `file:`
//! pages, only when listed), an exact origin (`https://app.example.org`,
//! `http://localhost:8080`), or a wildcard host under a domain (`https://*.example.org`: any
//! host strictly below `example.org`, same scheme, same port). Comparison ignores ASCII case.

/// A parsed allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origins {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Any,
    Null,
    Exact(String),
    /// `scheme://*.domain[:port]`: `prefix` is `scheme://`, `suffix` is `.domain[:port]`.
    Below {
        prefix: String,
        suffix: String,
    },
}

impl Origins {
    /// Every origin.
    pub fn any() -> Origins {
        Origins {
            entries: vec![Entry::Any],
        }
    }

    /// Entries separated by commas or spaces.
    pub fn parse(s: &str) -> Result<Origins, String> {
        let mut entries = Vec::new();
        for e in s.split([',', ' ']).filter(|e| !e.is_empty()) {
            let lower = e.to_ascii_lowercase();
            entries.push(match lower.as_str() {
                "*" => Entry::Any,
                "null" => Entry::Null,
                _ => {
                    let (scheme, host) = lower
                        .split_once("://")
                        .filter(|(s, h)| !s.is_empty() && !h.is_empty())
                        .ok_or_else(|| {
                            format!("{e:?} is not an origin (scheme://host[:port], *.domain, * or null)")
                        })?;
                    if host.contains('/') {
                        return Err(format!("{e:?}: an origin has no path"));
                    }
                    match host.strip_prefix('*') {
                        Some(rest) if rest.starts_with('.') && rest.len() > 1 => Entry::Below {
                            prefix: format!("{scheme}://"),
                            suffix: rest.to_string(),
                        },
                        Some(_) => {
                            return Err(format!("{e:?}: a wildcard is `*.` before a domain"))
                        }
                        None if host.contains('*') => {
                            return Err(format!("{e:?}: a wildcard is `*.` before a domain"))
                        }
                        None => Entry::Exact(lower.clone()),
                    }
                }
            });
        }
        if entries.is_empty() {
            return Err("no origin given (use * for any)".into());
        }
        Ok(Origins { entries })
    }

    /// True when every origin passes (the default).
    pub fn is_open(&self) -> bool {
        self.entries.contains(&Entry::Any)
    }

    /// Whether a request with this `Origin` header value may pass.
    pub fn allows(&self, origin: &str) -> bool {
        let origin = origin.trim();
        self.entries.iter().any(|e| match e {
            Entry::Any => true,
            Entry::Null => origin.eq_ignore_ascii_case("null"),
            Entry::Exact(o) => origin.eq_ignore_ascii_case(o),
            Entry::Below { prefix, suffix } => {
                let n = origin.len();
                n > prefix.len() + suffix.len()
                    && origin.is_char_boundary(prefix.len())
                    && origin.is_char_boundary(n - suffix.len())
                    && origin[..prefix.len()].eq_ignore_ascii_case(prefix)
                    && origin[n - suffix.len()..].eq_ignore_ascii_case(suffix)
                    && !origin[prefix.len()..n - suffix.len()].contains([':', '/'])
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_match_as_documented() {
        let o =
            Origins::parse("https://app.example.org, https://*.example.org http://localhost:8080")
                .unwrap();
        assert!(!o.is_open());
        for ok in [
            "https://app.example.org",
            "HTTPS://App.Example.org",
            "https://a.example.org",
            "https://a.b.example.org",
            "http://localhost:8080",
        ] {
            assert!(o.allows(ok), "{ok}");
        }
        for no in [
            "https://example.org",
            "http://a.example.org",
            "https://a.example.org:8443",
            "https://evil-example.org",
            "https://a.example.org.evil.com",
            "http://localhost",
            "http://localhost:8081",
            "null",
            "",
        ] {
            assert!(!o.allows(no), "{no}");
        }
        let n = Origins::parse("null").unwrap();
        assert!(n.allows("null") && !n.allows("https://x.org"));
        let p = Origins::parse("https://*.example.org:8443").unwrap();
        assert!(p.allows("https://a.example.org:8443") && !p.allows("https://a.example.org"));
        assert!(Origins::parse("*").unwrap().allows("https://anything.test"));
        assert!(Origins::any().is_open());
    }

    #[test]
    fn bad_entries_are_refused_with_a_reason() {
        for bad in [
            "",
            "example.org",
            "https://",
            "https://a.org/path",
            "https://a*.org",
            "https://*.",
            "https://*x.org",
        ] {
            assert!(Origins::parse(bad).is_err(), "{bad:?}");
        }
    }
}
