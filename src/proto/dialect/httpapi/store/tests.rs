//! The store's own rules: expiry order, sweeping, records and their corruption.

use super::*;

fn limits(ttl_ms: u64) -> StoreLimits {
    StoreLimits {
        ttl_ms,
        max_channels: 1000,
        max_candidates: 10,
        max_bytes: 1 << 20,
    }
}

fn id(n: u8) -> Id {
    let mut i = [0u8; 16];
    i[15] = n;
    i[0] = n.wrapping_mul(37);
    i
}

#[test]
fn crc32_matches_the_standard_check_value() {
    let mut c = Crc32::new();
    c.update(b"123456789");
    assert_eq!(c.finish(), 0xCBF4_3926);
    assert_eq!(Crc32::new().finish(), 0);
}

#[test]
fn parse_id_accepts_only_the_canonical_form() {
    let s = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9";
    let id = parse_id(s).unwrap();
    assert_eq!(id[0], 0x0f);
    assert_eq!(id[15], 0xf9);
    for bad in [
        "0F1E2D3C-4B5A-4978-8695-A4B3C2D1E0F9",
        "0f1e2d3c4b5a49788695a4b3c2d1e0f9",
        "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f",
        "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0fg",
        "0f1e2d3c+4b5a-4978-8695-a4b3c2d1e0f9",
        "",
    ] {
        assert!(parse_id(bad).is_none(), "{bad}");
    }
    for _ in 0..50 {
        assert!(parse_id(&crate::csprng::uuid_v4()).is_some());
    }
}

#[test]
fn sweep_pops_only_what_expired_without_touching_the_rest() {
    let t = Table::new(limits(1000), 4, false);
    for n in 0..10u8 {
        t.create(id(n), u64::from(n) * 100).unwrap();
    }
    assert_eq!(t.len(), 10);
    t.sweep(1000); // channel 0 expires at 1000
    assert_eq!(t.len(), 9);
    assert!(t.read(&id(0), 1000, |_| ()).is_none());
    assert!(t.read(&id(1), 1099, |_| ()).is_some());
    // Without a sweep a lookup is still exact.
    assert!(t.read(&id(5), 1500, |_| ()).is_none());
    t.sweep(10_000);
    assert!(t.is_empty());
    assert_eq!(t.budget.bytes.get(), 0);
}

#[test]
fn shards_are_a_power_of_two_with_four_per_core() {
    assert_eq!(shards_for(1), 4);
    assert_eq!(shards_for(2), 8);
    assert_eq!(shards_for(3), 16);
    assert_eq!(Table::new(limits(1), 5, false).shard_count(), 8);
}

fn logged_file() -> (Vec<u8>, usize) {
    let t = Table::new(limits(60_000), 4, true);
    for n in 0..5u8 {
        t.create(id(n), 1000).unwrap();
        t.set_offer(&id(n), Value::String(format!("offer {n}")), 10, 1000)
            .unwrap();
    }
    let mut file = LOG_MAGIC.to_vec();
    for i in 0..t.shard_count() {
        file.extend(t.take_log(i));
    }
    (file, 10)
}

#[test]
fn replay_stops_at_a_torn_tail() {
    let (file, records) = logged_file();
    let full = Table::new(limits(60_000), 4, false).replay(&file, 2000);
    assert_eq!(
        (full.records, full.channels, full.stopped),
        (records, 5, None)
    );
    for cut in 1..30 {
        let torn = &file[..file.len() - cut];
        let t = Table::new(limits(60_000), 4, false);
        let r = t.replay(torn, 2000);
        assert_eq!(r.records, records - 1, "cut {cut}");
        assert!(r.stopped.is_some());
        assert!(r.valid_len < torn.len() && r.valid_len > LOG_MAGIC.len());
        // What was kept is exactly a valid file.
        let again = Table::new(limits(60_000), 4, false).replay(&torn[..r.valid_len], 2000);
        assert_eq!((again.records, again.stopped), (records - 1, None));
    }
}

#[test]
fn replay_never_applies_a_corrupt_record() {
    let (file, records) = logged_file();
    // Flip each byte after the magic in turn: replay stops at or before the damaged record
    // and every record it applied is intact (its offer reads back as written).
    for at in LOG_MAGIC.len()..file.len() {
        let mut bad = file.clone();
        bad[at] ^= 0x5a;
        let t = Table::new(limits(60_000), 4, false);
        let r = t.replay(&bad, 2000);
        assert!(r.stopped.is_some(), "flip at {at} went unnoticed");
        assert!(r.records < records);
        assert!(r.valid_len <= at, "flip at {at}, kept {}", r.valid_len);
        for n in 0..5u8 {
            if let Some(Some(v)) = t.read(&id(n), 2000, |c| c.offer.clone()) {
                assert_eq!(v, Value::String(format!("offer {n}")));
            }
        }
    }
    assert!(Table::new(limits(1), 4, false)
        .replay(b"garbage!", 0)
        .stopped
        .is_some());
}
