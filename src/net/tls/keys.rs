//! Record protection whose expanded keys live in a small per-thread table instead of in
//! every connection.
//!
//! Owns: [`provider`], ring's default rustls provider with each cipher suite's AEAD swapped
//! for one that keeps only the raw traffic key per direction (at most 32 bytes, zeroed on
//! drop) and expands it into a ring `LessSafeKey` (544 bytes: the AES round keys and the
//! GHASH table, whatever the suite) in the calling thread's table of [`HOT_KEYS`] entries
//! when a record is sealed or opened. An entry stays until the table needs room for another
//! key and it has not been used since the table's clock hand last passed it (the "clock"
//! approximation of least recently used), or until its connection is gone. So a busy
//! connection keeps its keys expanded and pays nothing more per record than a table lookup,
//! while an idle one holds 2 x 64 bytes instead of 2 x 560; a key expansion costs about
//! 200 ns, paid again only by a connection whose keys were evicted. When that happens often
//! (more connections busy at once than the table holds) the table doubles, up to
//! [`MAX_HOT_KEYS`]: busy connections then cost what ring's glue costs, idle ones still not.
//!
//! Same cipher suites, in the same order, with the same key exchange groups, signature
//! schemes, hashes and key derivation (all ring's, untouched): only the AEAD objects differ,
//! and they compute exactly what ring's own rustls glue computes (RFC 8446 section 5.2 for
//! TLS 1.3; RFC 5288 for AES-GCM and RFC 7905 for ChaCha20-Poly1305 in TLS 1.2), with the
//! nonce, additional data and record helpers rustls publishes for providers.
//!
//! Deliberately does not: share keys between connections (every key has its own id;
//! nothing but its owner can reach its entry), cache anything across threads (a connection
//! that moves to another core expands its keys there on its next record; the old thread's
//! entry ages out), or hold expanded keys of connections that are gone (dropping a key
//! frees its entry, when on the thread that expanded it).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

use ring::aead::{self, Aad, LessSafeKey, UnboundKey};
use rustls::crypto::cipher::{
    make_tls12_aad, make_tls13_aad, AeadKey, InboundOpaqueMessage, InboundPlainMessage, Iv,
    KeyBlockShape, MessageDecrypter, MessageEncrypter, Nonce, OutboundOpaqueMessage,
    OutboundPlainMessage, PrefixedPayload, Tls12AeadAlgorithm, Tls13AeadAlgorithm,
    UnsupportedOperationError, NONCE_LEN,
};
use rustls::crypto::CryptoProvider;
use rustls::{
    CipherSuite, ConnectionTrafficSecrets, ContentType, Error, ProtocolVersion,
    SupportedCipherSuite, Tls12CipherSuite, Tls13CipherSuite,
};
use zeroize::Zeroize;

/// Expanded keys one thread keeps at first: two per connection, so 256 connections sealing
/// and opening records at the same time never expand a key twice. About 280 KiB once full
/// (reserved at the thread's first TLS record, filled as keys are used).
pub const HOT_KEYS: usize = 512;

/// The most a thread's table grows to (about 18 MiB: what ring's own glue holds for 16,384
/// connections): see [`HotKeys::cap`].
pub const MAX_HOT_KEYS: usize = 64 * HOT_KEYS;

/// Lookups per window over which a table judges whether it is too small.
const WINDOW: u32 = 4096;

/// Largest plaintext in one record (2^14); a TLS 1.2 record that opens to more is refused
/// as ring's glue refuses it.
const MAX_FRAGMENT_LEN: usize = 16_384;

/// TLS 1.2 AES-GCM: the explicit part of the nonce, sent in front of each record.
const GCM_EXPLICIT_NONCE_LEN: usize = 8;

/// ring's default rustls provider with every cipher suite's AEAD replaced by the one of
/// this module. A suite this module does not know (none today) is kept as it is.
pub fn provider() -> CryptoProvider {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites = SUITES.clone();
    p
}

/// The wrapped suites, built once per process (they must be `'static`).
static SUITES: LazyLock<Vec<SupportedCipherSuite>> = LazyLock::new(|| {
    rustls::crypto::ring::default_provider()
        .cipher_suites
        .into_iter()
        .map(wrap_suite)
        .collect()
});

fn ring_aead(suite: CipherSuite) -> Option<&'static aead::Algorithm> {
    use CipherSuite::*;
    match suite {
        TLS13_AES_256_GCM_SHA384
        | TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        | TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => Some(&aead::AES_256_GCM),
        TLS13_AES_128_GCM_SHA256
        | TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => Some(&aead::AES_128_GCM),
        TLS13_CHACHA20_POLY1305_SHA256
        | TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        | TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => Some(&aead::CHACHA20_POLY1305),
        _ => None,
    }
}

fn wrap_suite(s: SupportedCipherSuite) -> SupportedCipherSuite {
    let Some(alg) = ring_aead(s.suite()) else {
        return s;
    };
    match s {
        SupportedCipherSuite::Tls13(t) if t.aead_alg.key_len() == alg.key_len() => {
            let aead_alg: &'static Tls13Aead = Box::leak(Box::new(Tls13Aead {
                alg,
                ring_glue: t.aead_alg,
            }));
            SupportedCipherSuite::Tls13(Box::leak(Box::new(Tls13CipherSuite {
                common: rustls::CipherSuiteCommon {
                    suite: t.common.suite,
                    hash_provider: t.common.hash_provider,
                    confidentiality_limit: t.common.confidentiality_limit,
                },
                hkdf_provider: t.hkdf_provider,
                aead_alg,
                quic: t.quic,
            })))
        }
        SupportedCipherSuite::Tls12(t) => {
            let shape = t.aead_alg.key_block_shape();
            let gcm = shape.fixed_iv_len == 4 && shape.explicit_nonce_len == GCM_EXPLICIT_NONCE_LEN;
            let chacha = shape.fixed_iv_len == NONCE_LEN && shape.explicit_nonce_len == 0;
            if shape.enc_key_len != alg.key_len() || !(gcm || chacha) {
                return s;
            }
            let aead_alg: &'static Tls12Aead = Box::leak(Box::new(Tls12Aead {
                alg,
                gcm,
                ring_glue: t.aead_alg,
            }));
            SupportedCipherSuite::Tls12(Box::leak(Box::new(Tls12CipherSuite {
                common: rustls::CipherSuiteCommon {
                    suite: t.common.suite,
                    hash_provider: t.common.hash_provider,
                    confidentiality_limit: t.common.confidentiality_limit,
                },
                prf_provider: t.prf_provider,
                kx: t.kx,
                sign: t.sign,
                aead_alg,
            })))
        }
        _ => s,
    }
}

// ---------------------------------------------------------------- keys and the table

/// Ids of keys, unique in the process (never reused, never 0).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One direction's traffic key, unexpanded, and where its expansion was put last.
struct LazyKey {
    alg: &'static aead::Algorithm,
    id: u64,
    /// Index in the table of the thread that expanded it last; only valid while that
    /// entry's id is `id` (and on that thread).
    slot: u32,
    key: [u8; 32],
    iv: [u8; NONCE_LEN],
}

impl LazyKey {
    fn new(alg: &'static aead::Algorithm, key: &AeadKey, iv: [u8; NONCE_LEN]) -> Self {
        let mut raw = [0u8; 32];
        let k = key.as_ref();
        // rustls hands over `key_len()` bytes; a different length fails at expansion, as
        // an encryption or decryption error, instead of being cut or padded here.
        let n = if k.len() == alg.key_len() { k.len() } else { 0 };
        raw[..n].copy_from_slice(&k[..n]);
        Self {
            alg,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            slot: u32::MAX,
            key: raw,
            iv,
        }
    }

    fn nonce(&self, seq: u64) -> aead::Nonce {
        aead::Nonce::assume_unique_for_key(Nonce::new(&Iv::new(self.iv), seq).0)
    }

    /// Runs `f` with the expanded key: this thread's table entry, made if needed. `Err`
    /// only if ring refuses the key (a wrong length, which rustls never hands over).
    fn with<R>(
        &mut self,
        f: impl FnOnce(&LessSafeKey) -> Result<R, ring::error::Unspecified>,
    ) -> Result<R, ring::error::Unspecified> {
        let mut f = Some(f);
        let done = HOT.try_with(|table| {
            let mut table = table.borrow_mut();
            let key = table.get(self)?;
            (f.take().expect("called once"))(key)
        });
        match (done, f) {
            (Ok(r), _) => r,
            // The thread is exiting and its table is gone: a key for this record only.
            (Err(_), Some(f)) => f(&self.expand()?),
            (Err(_), None) => Err(ring::error::Unspecified),
        }
    }

    fn expand(&self) -> Result<LessSafeKey, ring::error::Unspecified> {
        let key = UnboundKey::new(self.alg, &self.key[..self.alg.key_len()])?;
        Ok(LessSafeKey::new(key))
    }
}

impl Drop for LazyKey {
    fn drop(&mut self) {
        self.key.zeroize();
        let _ = HOT.try_with(|table| table.borrow_mut().forget(self.id, self.slot));
    }
}

thread_local! {
    static HOT: RefCell<HotKeys> = const {
        RefCell::new(HotKeys {
            entries: Vec::new(),
            free: Vec::new(),
            hand: 0,
            cap: HOT_KEYS,
            lookups: 0,
            again: 0,
        })
    };
}

/// A thread's expanded keys: at most `cap`, replaced by the clock algorithm.
struct HotKeys {
    entries: Vec<Hot>,
    /// Entries whose key was dropped (their id is 0), used before anything is evicted.
    free: Vec<u32>,
    /// The clock hand: the next entry considered for eviction.
    hand: usize,
    /// How many entries the table may hold: [`HOT_KEYS`], doubled (up to [`MAX_HOT_KEYS`])
    /// after each window of [`WINDOW`] lookups in which more than one in eight expanded a
    /// key again that had been evicted: more connections are busy at once than the table
    /// holds, and every record of theirs would pay an expansion. Never shrinks: a thread
    /// that once had that many busy connections is likely to again.
    cap: usize,
    /// Lookups in the current window, and how many of them expanded an evicted key again.
    lookups: u32,
    again: u32,
}

struct Hot {
    /// The owner's id; 0 for a free entry.
    id: u64,
    /// Used since the hand last passed.
    recent: bool,
    key: LessSafeKey,
}

impl HotKeys {
    fn get(&mut self, k: &mut LazyKey) -> Result<&LessSafeKey, ring::error::Unspecified> {
        self.lookups += 1;
        if self.lookups == WINDOW {
            if self.again > WINDOW / 8 && self.entries.len() == self.cap {
                self.cap = (2 * self.cap).min(MAX_HOT_KEYS);
            }
            (self.lookups, self.again) = (0, 0);
        }
        let at = k.slot as usize;
        if self.entries.get(at).is_some_and(|e| e.id == k.id) {
            let e = &mut self.entries[at];
            e.recent = true;
            return Ok(&e.key);
        }
        // Expanded before (here, or on a thread it left): evicted since.
        self.again += u32::from(k.slot != u32::MAX);
        let hot = Hot {
            id: k.id,
            recent: true,
            key: k.expand()?,
        };
        let at = if let Some(free) = self.free.pop() {
            free as usize
        } else if self.entries.len() < self.cap {
            if self.entries.capacity() == 0 {
                self.entries.reserve_exact(HOT_KEYS);
            }
            self.entries.push(hot);
            k.slot = (self.entries.len() - 1) as u32;
            return Ok(&self.entries[k.slot as usize].key);
        } else {
            // Every entry is in use: the first one not used since the hand last passed.
            // Terminates within two turns (the first turn clears every `recent`).
            loop {
                let at = self.hand;
                self.hand = (at + 1) % self.entries.len();
                let e = &mut self.entries[at];
                if !std::mem::take(&mut e.recent) {
                    break at;
                }
            }
        };
        self.entries[at] = hot;
        k.slot = at as u32;
        Ok(&self.entries[at].key)
    }

    fn forget(&mut self, id: u64, slot: u32) {
        if let Some(e) = self.entries.get_mut(slot as usize) {
            if e.id == id {
                e.id = 0;
                e.recent = false;
                self.free.push(slot);
            }
        }
    }
}

// ---------------------------------------------------------------- TLS 1.3

struct Tls13Aead {
    alg: &'static aead::Algorithm,
    /// ring's own glue for the suite: its key length, secret extraction and FIPS status.
    ring_glue: &'static dyn Tls13AeadAlgorithm,
}

impl Tls13AeadAlgorithm for Tls13Aead {
    fn encrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageEncrypter> {
        Box::new(Tls13Record(LazyKey::new(self.alg, &key, iv_bytes(&iv))))
    }

    fn decrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageDecrypter> {
        Box::new(Tls13Record(LazyKey::new(self.alg, &key, iv_bytes(&iv))))
    }

    fn key_len(&self) -> usize {
        self.ring_glue.key_len()
    }

    fn extract_keys(
        &self,
        key: AeadKey,
        iv: Iv,
    ) -> Result<ConnectionTrafficSecrets, UnsupportedOperationError> {
        self.ring_glue.extract_keys(key, iv)
    }

    fn fips(&self) -> bool {
        self.ring_glue.fips()
    }
}

fn iv_bytes(iv: &Iv) -> [u8; NONCE_LEN] {
    let mut out = [0u8; NONCE_LEN];
    out.copy_from_slice(iv.as_ref());
    out
}

/// A TLS 1.3 record key: the record is the plaintext followed by its content type, sealed
/// with the nonce `iv XOR seq` and the record header as additional data; the header says
/// application data and TLS 1.2, whatever is inside (RFC 8446 section 5.2).
struct Tls13Record(LazyKey);

impl MessageEncrypter for Tls13Record {
    fn encrypt(
        &mut self,
        msg: OutboundPlainMessage<'_>,
        seq: u64,
    ) -> Result<OutboundOpaqueMessage, Error> {
        let total_len = self.encrypted_payload_len(msg.payload.len());
        let mut payload = PrefixedPayload::with_capacity(total_len);
        payload.extend_from_chunks(&msg.payload);
        payload.extend_from_slice(&[u8::from(msg.typ)]);
        let nonce = self.0.nonce(seq);
        let aad = Aad::from(make_tls13_aad(total_len));
        self.0
            .with(|key| key.seal_in_place_append_tag(nonce, aad, &mut payload))
            .map_err(|_| Error::EncryptError)?;
        Ok(OutboundOpaqueMessage::new(
            ContentType::ApplicationData,
            ProtocolVersion::TLSv1_2,
            payload,
        ))
    }

    fn encrypted_payload_len(&self, payload_len: usize) -> usize {
        payload_len + 1 + self.0.alg.tag_len()
    }
}

impl MessageDecrypter for Tls13Record {
    fn decrypt<'a>(
        &mut self,
        mut msg: InboundOpaqueMessage<'a>,
        seq: u64,
    ) -> Result<InboundPlainMessage<'a>, Error> {
        let payload = &mut msg.payload;
        if payload.len() < self.0.alg.tag_len() {
            return Err(Error::DecryptError);
        }
        let nonce = self.0.nonce(seq);
        let aad = Aad::from(make_tls13_aad(payload.len()));
        let plain_len = self
            .0
            .with(|key| Ok(key.open_in_place(nonce, aad, payload)?.len()))
            .map_err(|_| Error::DecryptError)?;
        payload.truncate(plain_len);
        // Strips the padding, takes the content type, refuses oversized plaintext.
        msg.into_tls13_unpadded_message()
    }
}

// ---------------------------------------------------------------- TLS 1.2

struct Tls12Aead {
    alg: &'static aead::Algorithm,
    /// AES-GCM (a 4-byte implicit salt and an 8-byte explicit nonce per record) rather than
    /// ChaCha20-Poly1305 (a 12-byte implicit nonce, nothing explicit).
    gcm: bool,
    /// ring's own glue for the suite: its key block shape, secret extraction, FIPS status.
    ring_glue: &'static dyn Tls12AeadAlgorithm,
}

impl Tls12AeadAlgorithm for Tls12Aead {
    fn encrypter(&self, key: AeadKey, iv: &[u8], extra: &[u8]) -> Box<dyn MessageEncrypter> {
        // AES-GCM: salt || the explicit nonce's starting value (random, from the key
        // block); ChaCha20-Poly1305: the 12-byte IV. Each record XORs in its sequence number.
        let mut nonce_iv = [0u8; NONCE_LEN];
        let salt = iv.len().min(NONCE_LEN);
        nonce_iv[..salt].copy_from_slice(&iv[..salt]);
        if self.gcm {
            let n = extra.len().min(NONCE_LEN - 4);
            nonce_iv[4..4 + n].copy_from_slice(&extra[..n]);
        }
        Box::new(Tls12Record {
            key: LazyKey::new(self.alg, &key, nonce_iv),
            gcm: self.gcm,
        })
    }

    fn decrypter(&self, key: AeadKey, iv: &[u8]) -> Box<dyn MessageDecrypter> {
        let mut nonce_iv = [0u8; NONCE_LEN];
        let salt = iv.len().min(NONCE_LEN);
        nonce_iv[..salt].copy_from_slice(&iv[..salt]);
        Box::new(Tls12Record {
            key: LazyKey::new(self.alg, &key, nonce_iv),
            gcm: self.gcm,
        })
    }

    fn key_block_shape(&self) -> KeyBlockShape {
        self.ring_glue.key_block_shape()
    }

    fn extract_keys(
        &self,
        key: AeadKey,
        iv: &[u8],
        explicit: &[u8],
    ) -> Result<ConnectionTrafficSecrets, UnsupportedOperationError> {
        self.ring_glue.extract_keys(key, iv, explicit)
    }

    fn fips(&self) -> bool {
        self.ring_glue.fips()
    }
}

/// A TLS 1.2 record key. The additional data is the sequence number and the record header
/// with the plaintext's length. AES-GCM (RFC 5288): the nonce is the salt and an explicit
/// part (the key block's value XOR the sequence number) sent in front of the ciphertext.
/// ChaCha20-Poly1305 (RFC 7905): the nonce is the IV XOR the sequence number, not sent.
struct Tls12Record {
    key: LazyKey,
    gcm: bool,
}

impl Tls12Record {
    fn explicit_len(&self) -> usize {
        if self.gcm {
            GCM_EXPLICIT_NONCE_LEN
        } else {
            0
        }
    }
}

impl MessageEncrypter for Tls12Record {
    fn encrypt(
        &mut self,
        msg: OutboundPlainMessage<'_>,
        seq: u64,
    ) -> Result<OutboundOpaqueMessage, Error> {
        let total_len = self.encrypted_payload_len(msg.payload.len());
        let explicit = self.explicit_len();
        let mut payload = PrefixedPayload::with_capacity(total_len);
        let nonce = self.key.nonce(seq);
        payload.extend_from_slice(&nonce.as_ref()[NONCE_LEN - explicit..]);
        payload.extend_from_chunks(&msg.payload);
        let aad = Aad::from(make_tls12_aad(seq, msg.typ, msg.version, msg.payload.len()));
        let tag = self
            .key
            .with(|key| {
                key.seal_in_place_separate_tag(nonce, aad, &mut payload.as_mut()[explicit..])
            })
            .map_err(|_| Error::EncryptError)?;
        payload.extend_from_slice(tag.as_ref());
        Ok(OutboundOpaqueMessage::new(msg.typ, msg.version, payload))
    }

    fn encrypted_payload_len(&self, payload_len: usize) -> usize {
        payload_len + self.explicit_len() + self.key.alg.tag_len()
    }
}

impl MessageDecrypter for Tls12Record {
    fn decrypt<'a>(
        &mut self,
        mut msg: InboundOpaqueMessage<'a>,
        seq: u64,
    ) -> Result<InboundPlainMessage<'a>, Error> {
        let explicit = self.explicit_len();
        let overhead = explicit + self.key.alg.tag_len();
        let payload = &mut msg.payload;
        if payload.len() < overhead {
            return Err(Error::DecryptError);
        }
        let nonce = if self.gcm {
            let mut n = [0u8; NONCE_LEN];
            n[..4].copy_from_slice(&self.key.iv[..4]);
            n[4..].copy_from_slice(&payload[..GCM_EXPLICIT_NONCE_LEN]);
            aead::Nonce::assume_unique_for_key(n)
        } else {
            self.key.nonce(seq)
        };
        let aad = Aad::from(make_tls12_aad(
            seq,
            msg.typ,
            msg.version,
            payload.len() - overhead,
        ));
        let plain_len = self
            .key
            .with(|key| Ok(key.open_within(nonce, aad, payload, explicit..)?.len()))
            .map_err(|_| Error::DecryptError)?;
        if plain_len > MAX_FRAGMENT_LEN {
            return Err(Error::PeerSentOversizedRecord);
        }
        payload.truncate(plain_len);
        Ok(msg.into_plain_message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::crypto::cipher::OutboundChunks;

    /// Every suite, sealed by this module and by ring's own glue from the same 32-byte key
    /// (AES-128 takes 16-byte keys, which rustls builds only internally: the interop tests
    /// in `tls.rs` cover it): the same records, byte for byte, and each opens the other's.
    #[test]
    fn records_match_ring_glue_byte_for_byte() {
        let ring_suites = rustls::crypto::ring::default_provider().cipher_suites;
        let ours = provider().cipher_suites;
        assert_eq!(
            ring_suites.iter().map(|s| s.suite()).collect::<Vec<_>>(),
            ours.iter().map(|s| s.suite()).collect::<Vec<_>>(),
            "same suites, same order"
        );
        let mut compared = 0;
        for (theirs, ours) in ring_suites.into_iter().zip(ours) {
            let pairs: Vec<(Box<dyn MessageEncrypter>, Box<dyn MessageDecrypter>)> =
                match (theirs, ours) {
                    (SupportedCipherSuite::Tls13(a), SupportedCipherSuite::Tls13(b)) => {
                        if a.aead_alg.key_len() != 32 {
                            continue;
                        }
                        [a.aead_alg, b.aead_alg]
                            .iter()
                            .map(|alg| {
                                (
                                    alg.encrypter(AeadKey::from([7; 32]), Iv::new([9; NONCE_LEN])),
                                    alg.decrypter(AeadKey::from([7; 32]), Iv::new([9; NONCE_LEN])),
                                )
                            })
                            .collect()
                    }
                    (SupportedCipherSuite::Tls12(a), SupportedCipherSuite::Tls12(b)) => {
                        let shape = a.aead_alg.key_block_shape();
                        if shape.enc_key_len != 32 {
                            continue;
                        }
                        let iv = vec![5u8; shape.fixed_iv_len];
                        let extra = vec![3u8; shape.explicit_nonce_len];
                        [a.aead_alg, b.aead_alg]
                            .iter()
                            .map(|alg| {
                                (
                                    alg.encrypter(AeadKey::from([7; 32]), &iv, &extra),
                                    alg.decrypter(AeadKey::from([7; 32]), &iv),
                                )
                            })
                            .collect()
                    }
                    _ => panic!("versions differ"),
                };
            let [(mut enc_ring, mut dec_ring), (mut enc_ours, mut dec_ours)]: [_; 2] =
                pairs.try_into().ok().expect("two pairs");
            for seq in [0u64, 1, 2, 0x0102_0304_0506_0708] {
                for (typ, data) in [
                    (ContentType::ApplicationData, &b"hello"[..]),
                    (ContentType::Handshake, &[0u8; 300][..]),
                    (ContentType::Alert, &[1, 0][..]),
                    (ContentType::ApplicationData, &[][..]),
                ] {
                    let msg = || OutboundPlainMessage {
                        typ,
                        version: ProtocolVersion::TLSv1_2,
                        payload: OutboundChunks::Single(data),
                    };
                    let a = enc_ring.encrypt(msg(), seq).expect("ring seals").encode();
                    let b = enc_ours.encrypt(msg(), seq).expect("ours seals").encode();
                    assert_eq!(a, b, "{:?} seq {seq}", theirs.suite());
                    assert_eq!(
                        enc_ours.encrypted_payload_len(data.len()),
                        enc_ring.encrypted_payload_len(data.len())
                    );
                    for dec in [&mut dec_ring, &mut dec_ours] {
                        let mut rec = b.clone();
                        let m = InboundOpaqueMessage::new(
                            ContentType::from(rec[0]),
                            ProtocolVersion::TLSv1_2,
                            &mut rec[5..],
                        );
                        let plain = dec.decrypt(m, seq).expect("opens");
                        assert_eq!((plain.typ, plain.payload), (typ, data));
                    }
                    // A flipped bit anywhere fails to open.
                    let mut rec = b.clone();
                    let last = rec.len() - 1;
                    rec[last] ^= 1;
                    let m = InboundOpaqueMessage::new(
                        ContentType::from(rec[0]),
                        ProtocolVersion::TLSv1_2,
                        &mut rec[5..],
                    );
                    assert_eq!(dec_ours.decrypt(m, seq).err(), Some(Error::DecryptError));
                }
            }
            compared += 1;
        }
        assert_eq!(
            compared, 6,
            "the AES-256 and ChaCha20 suites of both versions"
        );
    }

    #[test]
    fn table_grows_only_while_busy_keys_outnumber_it() {
        let alg = &aead::AES_256_GCM;
        let key = AeadKey::from([2; 32]);
        let seal = |k: &mut LazyKey| {
            let mut buf = vec![0u8; 4];
            let nonce = k.nonce(0);
            k.with(|key| key.seal_in_place_append_tag(nonce, Aad::empty(), &mut buf))
                .expect("seals");
        };
        // Half the table in use, round robin for several windows: no reason to grow.
        let mut few: Vec<LazyKey> = (0..HOT_KEYS / 2)
            .map(|_| LazyKey::new(alg, &key, [0; NONCE_LEN]))
            .collect();
        for _ in 0..4 * WINDOW as usize / few.len() {
            few.iter_mut().for_each(seal);
        }
        HOT.with(|t| assert_eq!(t.borrow().cap, HOT_KEYS));
        drop(few);
        // Twice the table, round robin: after the first turn every lookup expands an
        // evicted key again, until the table has grown to hold them all; then none does.
        let mut many: Vec<LazyKey> = (0..2 * HOT_KEYS)
            .map(|_| LazyKey::new(alg, &key, [0; NONCE_LEN]))
            .collect();
        for _ in 0..8 {
            many.iter_mut().for_each(seal);
        }
        HOT.with(|t| {
            let t = t.borrow();
            assert_eq!(t.cap, 2 * HOT_KEYS, "doubled once, and that was enough");
            assert!(
                many.iter().all(|k| t.entries[k.slot as usize].id == k.id),
                "every key expanded and kept"
            );
        });
    }

    #[test]
    fn table_evicts_reuses_and_forgets() {
        let alg = &aead::AES_256_GCM;
        let key = AeadKey::from([1; 32]);
        let mut keys: Vec<LazyKey> = (0..HOT_KEYS + 10)
            .map(|_| LazyKey::new(alg, &key, [0; NONCE_LEN]))
            .collect();
        let seal = |k: &mut LazyKey| {
            let mut buf = vec![0u8; 4];
            let nonce = k.nonce(0);
            k.with(|key| key.seal_in_place_append_tag(nonce, Aad::empty(), &mut buf))
                .expect("seals");
            buf
        };
        let first = seal(&mut keys[0]);
        for k in keys.iter_mut() {
            assert_eq!(seal(k), first, "same key, same output, wherever it is kept");
        }
        HOT.with(|t| {
            let t = t.borrow();
            assert_eq!(
                t.entries.len(),
                HOT_KEYS,
                "never more than the table's size"
            );
            assert!(t.free.is_empty());
        });
        // The last keys are expanded; dropping them frees their entries for the next ones.
        let dropped = keys.split_off(HOT_KEYS);
        drop(dropped);
        HOT.with(|t| assert_eq!(t.borrow().free.len(), 10));
        for k in keys.iter_mut().take(5) {
            assert_eq!(seal(k), first);
        }
        HOT.with(|t| assert_eq!(t.borrow().free.len(), 5));
        // On another thread a key expands into that thread's table, and still agrees.
        let mut moved = keys.pop().expect("a key");
        let there = std::thread::spawn(move || seal(&mut moved))
            .join()
            .expect("thread");
        assert_eq!(there, first);
    }
}
