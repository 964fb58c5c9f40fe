//! The `cluster_records` fuzz target: arbitrary bytes as a batch of the records cluster nodes
//! send each other (`proto::cluster`), as a subscriber reads them from Redis.
//!
//! Checked: decoding never panics; each record decoded re-encodes to exactly the bytes it was
//! read from; every shorter prefix of one record is `Truncated`; [`Record::core`] is defined
//! for every record; the iterator over a batch stops at the first malformed record.

use crate::proto::cluster::{decode, records, Malformed};

/// Runs the checks in the module docs on `data`; panics when one fails.
pub fn check_cluster_records(data: &[u8]) {
    let mut rest = data;
    let mut good = 0;
    while !rest.is_empty() {
        let Ok((rec, used)) = decode(rest) else {
            break;
        };
        assert!(used > 0 && used <= rest.len());
        let mut again = Vec::new();
        rec.encode(&mut again);
        assert_eq!(again, &rest[..used], "{rec:?} re-encodes differently");
        let _ = rec.core();
        for cut in [0, used / 2, used - 1] {
            assert_eq!(
                decode(&rest[..cut]).err(),
                Some(Malformed::Truncated),
                "a prefix of {cut} bytes of {rec:?}"
            );
        }
        rest = &rest[used..];
        good += 1;
    }
    let read = records(data).take_while(Result::is_ok).count();
    assert_eq!(
        read, good,
        "the batch iterator read a different number of records"
    );
}
