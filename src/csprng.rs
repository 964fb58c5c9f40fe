//! Identifiers from the operating system's CSPRNG (`getrandom(2)` on Linux).
//!
//! Session ids, peer ids and channel ids are capabilities in several dialects: whoever knows
//! one can act as its owner. They therefore come from the kernel's CSPRNG, never from a
//! seeded PRNG.

/// Fill `buf` with random bytes from the OS. The kernel's CSPRNG does not fail once seeded;
/// if it ever does, continuing with predictable ids would be worse than stopping.
pub fn fill(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the OS CSPRNG (getrandom) failed");
}

/// `N` random bytes as `2N` lowercase hex digits.
pub fn hex_id<const N: usize>() -> String {
    let mut b = [0u8; N];
    fill(&mut b);
    let mut s = String::with_capacity(2 * N);
    for x in b {
        s.push(char::from(HEX[usize::from(x >> 4)]));
        s.push(char::from(HEX[usize::from(x & 15)]));
    }
    s
}

/// A random (version 4, RFC 9562) UUID in its 36-character lowercase form.
pub fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // variant 10
    let mut s = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(char::from(HEX[usize::from(x >> 4)]));
        s.push(char::from(HEX[usize::from(x & 15)]));
    }
    s
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids_have_the_asked_length_and_differ() {
        let a = hex_id::<16>();
        let b = hex_id::<16>();
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn uuids_are_version_4_variant_1() {
        for _ in 0..100 {
            let u = uuid_v4();
            let b = u.as_bytes();
            assert_eq!(u.len(), 36);
            assert_eq!([b[8], b[13], b[18], b[23]], [b'-'; 4]);
            assert_eq!(b[14], b'4');
            assert!(matches!(b[19], b'8' | b'9' | b'a' | b'b'), "{u}");
        }
        assert_ne!(uuid_v4(), uuid_v4());
    }
}
