//! Payload masking (RFC 6455 5.3): XOR with a 4-byte key, resumable at any
//! byte offset so a payload can be unmasked chunk by chunk as it arrives.
//!
//! This file owns the XOR kernels only: a word-at-a-time fast path and a
//! byte-at-a-time reference used by tests and benches. It does not choose
//! keys (the server never masks; clients pick their own keys) and does not
//! track offsets across calls: the decoder does.
//!
//! The fast path is safe code: 8-byte chunks are loaded and stored with
//! `u64::from_ne_bytes`/`to_ne_bytes`, which compile to unaligned word
//! accesses (and are usually auto-vectorised), so no `align_to` and no
//! `unsafe` are needed.

/// XORs `buf` in place with `key`, where `buf[0]` is byte number `offset`
/// of the payload (only `offset % 4` matters). Applying it twice with the
/// same arguments restores the input.
///
/// To unmask a payload that arrives in pieces, call it once per piece with
/// `offset` = the number of payload bytes that came before that piece.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let key = rotate_key(key, offset);
    // A u64 whose bytes in memory are key, key: the same in either byte
    // order, since it is built and used with native-endian conversions.
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);

    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        let masked = u64::from_ne_bytes(bytes) ^ word;
        chunk.copy_from_slice(&masked.to_ne_bytes());
    }
    // Every chunk above was a multiple of 4 bytes long, so the tail starts
    // at key position 0 again.
    for (b, k) in chunks.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *b ^= k;
    }
}

/// Byte-at-a-time version of [`apply_mask`], with identical results. Kept as
/// the obviously-correct reference for tests and benchmarks.
pub fn apply_mask_reference(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        // `% 4` keeps the index in 0..4; `wrapping_add` keeps a huge offset
        // from overflowing (only the low two bits matter).
        *b ^= key[offset.wrapping_add(i) % 4];
    }
}

/// The key as seen from payload byte `offset`: `rotate_key(k, o)[i]` is
/// `k[(o + i) % 4]`.
#[inline]
fn rotate_key(key: [u8; 4], offset: usize) -> [u8; 4] {
    // `offset % 4` is at most 3, and so is the cast's result.
    let r = (offset % 4) as u32;
    // Rotating the big-endian value left by 8*r bits moves byte r to the front.
    u32::from_be_bytes(key).rotate_left(8 * r).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, RngCore, SeedableRng};

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    #[test]
    fn rotate_key_matches_definition() {
        for o in 0..8 {
            let r = rotate_key(KEY, o);
            for (i, b) in r.iter().enumerate() {
                assert_eq!(*b, KEY[(o + i) % 4]);
            }
        }
    }

    #[test]
    fn rfc_example_hello() {
        // RFC 6455 5.7: masked "Hello" with key 37 fa 21 3d.
        let mut p = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut p, KEY, 0);
        assert_eq!(&p, b"Hello");
    }

    #[test]
    fn fast_matches_reference_all_small_lengths_alignments_offsets() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut backing = vec![0u8; 300 + 8];
        rng.fill_bytes(&mut backing);
        for len in 0..=300 {
            for align in 0..8 {
                for offset in 0..4 {
                    let src = &backing[align..align + len];
                    let mut fast = backing.clone();
                    let mut slow = src.to_vec();
                    apply_mask(&mut fast[align..align + len], KEY, offset);
                    apply_mask_reference(&mut slow, KEY, offset);
                    assert_eq!(
                        &fast[align..align + len],
                        &slow[..],
                        "{len} {align} {offset}"
                    );
                    // Nothing outside the slice was touched.
                    assert_eq!(&fast[..align], &backing[..align]);
                    assert_eq!(&fast[align + len..], &backing[align + len..]);
                }
            }
        }
    }

    #[test]
    fn fast_matches_reference_random_large() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        for _ in 0..20 {
            let len = rng.random_range(300..70_000);
            let align = rng.random_range(0..8);
            let offset = rng.random_range(0..usize::MAX);
            let key: [u8; 4] = rng.random();
            let mut data = vec![0u8; len + align];
            rng.fill_bytes(&mut data);
            let mut slow = data[align..].to_vec();
            apply_mask(&mut data[align..], key, offset);
            apply_mask_reference(&mut slow, key, offset);
            assert_eq!(&data[align..], &slow[..]);
        }
    }

    #[test]
    fn masking_resumes_across_arbitrary_chunks() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut whole = vec![0u8; 1000];
        rng.fill_bytes(&mut whole);
        let mut pieces = whole.clone();
        apply_mask(&mut whole, KEY, 0);
        let mut pos = 0;
        while pos < pieces.len() {
            let n = rng.random_range(0..=40).min(pieces.len() - pos);
            apply_mask(&mut pieces[pos..pos + n], KEY, pos);
            pos += n;
        }
        assert_eq!(whole, pieces);
    }
}
