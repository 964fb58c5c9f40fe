//! The client's real address behind trusted proxies (`--trusted-proxies`): from `Forwarded` /
//! `X-Forwarded-For` (the rightmost hop that is not a trusted proxy), or from the PROXY
//! protocol header (v1 text, v2 binary) a balancer sends first on a `--listen-proxy` listener.
//! Pure: the shell hands in the peer address and the bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A list of address blocks (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cidrs(Vec<(IpAddr, u8)>);

impl Cidrs {
    /// Blocks separated by commas or spaces.
    pub fn parse(s: &str) -> Result<Cidrs, String> {
        let mut out = Vec::new();
        for e in s.split([',', ' ']).filter(|e| !e.is_empty()) {
            let (addr, len) = match e.split_once('/') {
                Some((a, l)) => (a, Some(l)),
                None => (e, None),
            };
            let ip: IpAddr = addr
                .parse()
                .map_err(|_| format!("{e:?} is not an address block (like 10.0.0.0/8)"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len = match len {
                None => max,
                Some(l) => l
                    .parse::<u8>()
                    .ok()
                    .filter(|l| *l <= max)
                    .ok_or_else(|| format!("{e:?}: the prefix length is 0 to {max}"))?,
            };
            out.push((ip, len));
        }
        Ok(Cidrs(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|(net, len)| match (canonical(*net), ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), *len),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), *len),
            _ => false,
        })
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (whole, rest) = (usize::from(bits / 8), bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0
}

/// The client behind the proxies: the hops of `Forwarded` (its `for=` values) or, without it,
/// of `X-Forwarded-For`, then the peer itself, walked from the right past every trusted
/// proxy. `None` when the peer is not trusted (its headers say nothing) or names no client.
pub fn forwarded_client(
    peer: IpAddr,
    forwarded: Option<&str>,
    x_forwarded_for: Option<&str>,
    trusted: &Cidrs,
) -> Option<IpAddr> {
    if !trusted.contains(peer) {
        return None;
    }
    client_behind(forwarded, x_forwarded_for, trusted)
}

/// [`forwarded_client`] for a peer already known to be a trusted proxy.
pub fn client_behind(
    forwarded: Option<&str>,
    x_forwarded_for: Option<&str>,
    trusted: &Cidrs,
) -> Option<IpAddr> {
    let hops: Vec<Option<IpAddr>> = match (forwarded, x_forwarded_for) {
        (Some(f), _) => f
            .split(',')
            .filter_map(|elem| {
                elem.split(';').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("for").then(|| node(v.trim()))
                })
            })
            .collect(),
        (None, Some(x)) => x.split(',').map(|h| node(h.trim())).collect(),
        (None, None) => return None,
    };
    for hop in hops.iter().rev() {
        match hop {
            Some(ip) if trusted.contains(*ip) => continue,
            // The first hop that is not ours is the client (an unparsable one stops the walk:
            // nothing left of it can be believed).
            Some(ip) => return Some(canonical(*ip)),
            None => return None,
        }
    }
    None
}

/// An address from a `Forwarded` node or an `X-Forwarded-For` entry: `192.0.2.1`,
/// `"[2001:db8::1]:4711"`, `192.0.2.1:80`; `unknown` and obfuscated names are `None`.
fn node(v: &str) -> Option<IpAddr> {
    let v = v.trim_matches('"');
    if let Some(rest) = v.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    v.parse()
        .ok()
        .or_else(|| v.rsplit_once(':').and_then(|(h, _)| h.parse().ok()))
}

/// The PROXY protocol header at the start of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxied {
    /// More bytes are needed.
    Partial,
    /// The header is `len` bytes; `client` is the source address it gives (`None`: `UNKNOWN`,
    /// `LOCAL`, or a family without an address, such as a Unix socket).
    Done { len: usize, client: Option<IpAddr> },
}

const V2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header (RFC-style text line with CRLF), and the most v2 address bytes taken.
const V1_MAX: usize = 107;
const V2_MAX_LEN: usize = 512;

/// Read a PROXY v1 or v2 header from the start of `buf`.
pub fn proxy_header(buf: &[u8]) -> Result<Proxied, &'static str> {
    let n = buf.len().min(V2_SIG.len());
    if buf[..n] == V2_SIG[..n] {
        if buf.len() < 16 {
            return Ok(Proxied::Partial);
        }
        return v2(buf);
    }
    let n = buf.len().min(6);
    if buf[..n] != b"PROXY "[..n] {
        return Err("not a PROXY protocol header");
    }
    let Some(end) = buf.iter().take(V1_MAX).position(|b| *b == b'\n') else {
        return match buf.len() >= V1_MAX {
            true => Err("PROXY v1 header too long"),
            false => Ok(Proxied::Partial),
        };
    };
    let line = std::str::from_utf8(&buf[..end]).map_err(|_| "PROXY v1 header not text")?;
    let line = line
        .strip_suffix('\r')
        .ok_or("PROXY v1 header not ended by CRLF")?;
    let mut f = line.split(' ');
    let (_, proto) = (f.next(), f.next());
    let client = match proto {
        Some("UNKNOWN") => None,
        Some(p @ ("TCP4" | "TCP6")) => {
            let (src, dst, sport, dport) = (f.next(), f.next(), f.next(), f.next());
            let (Some(src), Some(dst), Some(sport), Some(dport), None) =
                (src, dst, sport, dport, f.next())
            else {
                return Err("PROXY v1 header: wrong number of fields");
            };
            let src: IpAddr = src.parse().map_err(|_| "PROXY v1 header: bad source")?;
            let dst: IpAddr = dst
                .parse()
                .map_err(|_| "PROXY v1 header: bad destination")?;
            let ports_ok = sport.parse::<u16>().is_ok() && dport.parse::<u16>().is_ok();
            let family_ok = (p == "TCP4") == (src.is_ipv4() && dst.is_ipv4());
            if !ports_ok || !family_ok {
                return Err("PROXY v1 header: bad ports or family");
            }
            Some(src)
        }
        _ => return Err("PROXY v1 header: unknown protocol"),
    };
    Ok(Proxied::Done {
        len: end + 1,
        client,
    })
}

fn v2(buf: &[u8]) -> Result<Proxied, &'static str> {
    let (ver_cmd, fam) = (buf[12], buf[13]);
    if ver_cmd >> 4 != 2 {
        return Err("PROXY v2 header: bad version");
    }
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if len > V2_MAX_LEN {
        return Err("PROXY v2 header too long");
    }
    if buf.len() < 16 + len {
        return Ok(Proxied::Partial);
    }
    let body = &buf[16..16 + len];
    let client = match (ver_cmd & 0x0f, fam >> 4) {
        (0, _) => None, // LOCAL: the balancer's own connection (health checks)
        (1, 1) if body.len() >= 12 => Some(IpAddr::V4(Ipv4Addr::new(
            body[0], body[1], body[2], body[3],
        ))),
        (1, 2) if body.len() >= 36 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&body[..16]);
            Some(IpAddr::V6(Ipv6Addr::from(a)))
        }
        (1, 0 | 3) => None, // UNSPEC, Unix sockets
        (1, _) => return Err("PROXY v2 header: address too short"),
        _ => return Err("PROXY v2 header: bad command"),
    };
    Ok(Proxied::Done {
        len: 16 + len,
        client,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs() {
        let c = Cidrs::parse("10.0.0.0/8, 192.0.2.7 2001:db8::/32").unwrap();
        assert!(c.contains(ip("10.1.2.3")) && c.contains(ip("192.0.2.7")));
        assert!(c.contains(ip("::ffff:10.9.9.9")) && c.contains(ip("2001:db8::5")));
        assert!(!c.contains(ip("11.0.0.1")) && !c.contains(ip("192.0.2.8")));
        assert!(Cidrs::parse("10.0.0.0/33").is_err() && Cidrs::parse("x").is_err());
        assert!(Cidrs::parse("10.0.0.0/12")
            .unwrap()
            .contains(ip("10.15.0.1")));
        assert!(!Cidrs::parse("10.0.0.0/12")
            .unwrap()
            .contains(ip("10.16.0.1")));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let t = Cidrs::parse("10.0.0.0/8").unwrap();
        let peer = ip("10.0.0.1");
        let xff = |v| forwarded_client(peer, None, Some(v), &t);
        assert_eq!(xff("203.0.113.9"), Some(ip("203.0.113.9")));
        // A client that forged a first hop: the proxy appended the real one.
        assert_eq!(
            xff("1.2.3.4, 203.0.113.9, 10.0.0.2"),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(xff("garbage, 203.0.113.9"), Some(ip("203.0.113.9")));
        assert_eq!(xff("203.0.113.9, garbage"), None);
        let fwd = |v| forwarded_client(peer, Some(v), Some("9.9.9.9"), &t);
        assert_eq!(
            fwd(r#"for=192.0.2.60;proto=http;by=203.0.113.43"#),
            Some(ip("192.0.2.60"))
        );
        assert_eq!(
            fwd(r#"for="[2001:db8:cafe::17]:4711", for=10.1.1.1"#),
            Some(ip("2001:db8:cafe::17"))
        );
        assert_eq!(fwd("for=unknown"), None);
        // An untrusted peer's headers mean nothing.
        assert_eq!(
            forwarded_client(ip("8.8.8.8"), None, Some("1.1.1.1"), &t),
            None
        );
    }

    #[test]
    fn proxy_v1() {
        let h = b"PROXY TCP4 203.0.113.9 10.0.0.5 56324 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            proxy_header(h),
            Ok(Proxied::Done {
                len: 43,
                client: Some(ip("203.0.113.9"))
            })
        );
        for cut in 0..43 {
            assert_eq!(proxy_header(&h[..cut]), Ok(Proxied::Partial), "{cut}");
        }
        let h6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n";
        assert!(matches!(
            proxy_header(h6),
            Ok(Proxied::Done {
                client: Some(_),
                ..
            })
        ));
        assert!(matches!(
            proxy_header(b"PROXY UNKNOWN\r\n"),
            Ok(Proxied::Done {
                client: None,
                len: 15
            })
        ));
        for bad in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
            b"PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
            b"PROXY SCTP x\r\n",
        ] {
            assert!(
                proxy_header(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(proxy_header(&[b'P', b'R', b'O', b'X', b'Y', b' ', b'x'].repeat(20)).is_err());
    }

    #[test]
    fn proxy_v2() {
        let mut h = V2_SIG.to_vec();
        h.extend_from_slice(&[
            0x21, 0x11, 0, 12, 203, 0, 113, 9, 10, 0, 0, 5, 0xdc, 0x04, 1, 187,
        ]);
        h.extend_from_slice(b"GET");
        assert_eq!(
            proxy_header(&h),
            Ok(Proxied::Done {
                len: 28,
                client: Some(ip("203.0.113.9"))
            })
        );
        for cut in 0..28 {
            assert_eq!(proxy_header(&h[..cut]), Ok(Proxied::Partial), "{cut}");
        }
        let mut local = V2_SIG.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(
            proxy_header(&local),
            Ok(Proxied::Done {
                len: 16,
                client: None
            })
        );
        let mut bad = V2_SIG.to_vec();
        bad.extend_from_slice(&[0x31, 0x11, 0, 12]);
        assert!(proxy_header(&bad).is_err());
        let mut short = V2_SIG.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0, 4, 1, 2, 3, 4]);
        assert!(proxy_header(&short).is_err());
    }
}
