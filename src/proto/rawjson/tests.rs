use super::*;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

/// The whole document's value as [`Reader`] reads it.
fn raw(text: &str) -> Option<&str> {
    Reader::document(text, Reader::value)
}

/// What serde_json says of the same document: its raw value if it is JSON.
fn serde_raw(text: &str) -> Option<String> {
    serde_json::from_str::<IgnoredAny>(text).ok()?;
    let v: &RawValue = serde_json::from_str(text).ok()?;
    Some(v.get().to_owned())
}

/// Whether `text` is JSON, after checking that the reader and serde_json agree on it.
#[track_caller]
fn same_as_serde(text: &str) -> bool {
    let ours = raw(text).map(str::to_owned);
    assert_eq!(ours, serde_raw(text), "{text:?}");
    ours.is_some()
}

#[test]
fn scalars_and_containers_read_whole() {
    for (text, value) in [
        ("true", "true"),
        (" false ", "false"),
        ("\tnull\r\n", "null"),
        ("0", "0"),
        ("-0", "-0"),
        ("-12.5e+3", "-12.5e+3"),
        ("1E9", "1E9"),
        (r#""a\"b\\c\/\u00e9""#, r#""a\"b\\c\/\u00e9""#),
        ("\"é\u{1F600}\"", "\"é\u{1F600}\""),
        (" [ 1 , [ ] , { } , \"x\" ] ", "[ 1 , [ ] , { } , \"x\" ]"),
        (
            r#"{"a":{"b":[null]},"c":"d"}"#,
            r#"{"a":{"b":[null]},"c":"d"}"#,
        ),
    ] {
        assert_eq!(raw(text), Some(value), "{text:?}");
        same_as_serde(text);
    }
}

#[test]
fn what_is_not_json_is_refused() {
    for text in [
        "",
        " ",
        "tru",
        "nul",
        "truex",
        "01",
        "-",
        "1.",
        ".5",
        "1e",
        "1e+",
        "+1",
        "[1,]",
        "[,1]",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{a:1}",
        "{\"a\":}",
        "[1 2]",
        "[1}",
        "{\"a\":1]",
        "[[[]]",
        "\"open",
        "\"bad \\x escape\"",
        "\"short \\u12\"",
        "\"not hex \\u12g4\"",
        "\"tab\tinside\"",
        "\"nul\u{0}inside\"",
        "1 2",
        "{} x",
        "'single'",
    ] {
        assert_eq!(raw(text), None, "{text:?}");
        same_as_serde(text);
    }
}

/// Strings around the 64-byte blocks: every escape, quote and control character at every
/// offset across three blocks, in strings of every length around the boundaries.
#[test]
fn strings_agree_with_serde_json_at_every_offset() {
    let specials = [
        "\\n",
        "\\r\\n",
        "\\\"",
        "\\\\",
        "\\/",
        "\\u00e9",
        "\\uD83D\\uDE00",
        "\\u12",
        "\\x",
        "\\",
        "\u{1}",
        "\t",
        "\"",
        "é",
        "\\\\\\\"",
    ];
    let mut checked = 0;
    for len in [0, 1, 62, 63, 64, 65, 66, 127, 128, 129, 130, 200] {
        for special in specials {
            for at in 0..=len.min(140) {
                let body: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
                let text = format!("\"{}{special}{}\"", &body[..at], &body[at..]);
                same_as_serde(&text);
                // And inside a member, with more after it.
                same_as_serde(&format!("{{\"k\":{text},\"z\":[1]}}"));
                checked += 1;
            }
        }
    }
    assert!(checked > 10_000);
}

/// SDP-like strings (a CR LF escape every few dozen bytes), as the tracker relays them.
#[test]
fn long_escaped_strings_read_whole() {
    let line = "a=candidate:1 1 udp 2122260223 127.0.0.1 54321 typ host\r\n";
    for lines in [1, 2, 10, 40] {
        let sdp: String = line.repeat(lines);
        let text = serde_json::to_string(&sdp).unwrap();
        assert_eq!(raw(&text), Some(text.as_str()));
        let doc = format!(r#"{{"offer":{{"type":"offer","sdp":{text}}},"offer_id":"x"}}"#);
        same_as_serde(&doc);
    }
}

#[test]
fn nesting_is_not_limited_where_values_are_skipped() {
    for depth in [1, 63, 64, 65, 200, 10_000] {
        let text = format!("{}0{}", "[{\"a\":".repeat(depth), "}]".repeat(depth));
        assert_eq!(raw(&text), Some(text.as_str()));
        same_as_serde(&text);
        let unbalanced = format!("{}1{}", "[".repeat(depth), "]".repeat(depth - 1));
        assert_eq!(raw(&unbalanced), None);
    }
}

#[test]
fn members_and_elements_are_handed_out_in_order() {
    let text = r#" { "a" : 1 , "b\u0063" : [ "x" , { "y" : true } , 2 ] , "a" : "again" } "#;
    let mut seen = Vec::new();
    let is_object = Reader::document(text, |r| {
        r.object(|r, name| {
            match &*name {
                "bc" => {
                    r.array(|r| {
                        let v = r.value()?;
                        seen.push(format!("bc[]={v}"));
                        Some(())
                    })?;
                }
                "a" => seen.push(format!("a={}", r.value()?)),
                _ => unreachable!(),
            }
            Some(())
        })
    });
    assert_eq!(is_object, Some(true));
    assert_eq!(
        seen,
        [
            "a=1",
            "bc[]=\"x\"",
            "bc[]={ \"y\" : true }",
            "bc[]=2",
            "a=\"again\""
        ]
    );
}

#[test]
fn values_a_callback_leaves_are_skipped_and_still_checked() {
    let read = |text| Reader::document(text, |r| r.object(|_, _| Some(())));
    assert_eq!(read(r#"{"a":[1,{"b":2}],"c":"d"}"#), Some(true));
    assert_eq!(read(r#"{"a":[1,{"b":2,}],"c":"d"}"#), None);
    assert_eq!(read(r#"[1,2]"#), Some(false));
    assert_eq!(read(r#"[1,2"#), None);
    let elements = |text| Reader::document(text, |r| r.array(|_| Some(())));
    assert_eq!(elements("[[1],{}, \"s\"]"), Some(true));
    assert_eq!(elements("{}"), Some(false));
    assert_eq!(elements("[01]"), None);
}

#[test]
fn a_failing_callback_fails_the_document() {
    let text = r#"{"a":1}"#;
    assert_eq!(Reader::document(text, |r| r.object(|_, _| None)), None);
}

#[test]
fn member_names_are_unescaped_as_serde_json_does() {
    let names = |text| {
        let mut out = Vec::new();
        Reader::document(text, |r| {
            r.object(|_, n| {
                out.push(n.into_owned());
                Some(())
            })
        })
        .map(|_| out)
    };
    assert_eq!(
        names(r#"{"\u0061ction":1,"q\"":2}"#),
        Some(vec!["action".to_owned(), "q\"".to_owned()])
    );
    // A lone surrogate is not a string serde_json (or the tracker before this reader) accepts
    // as a name.
    assert_eq!(names(r#"{"\ud800":1}"#), None);
    // Names inside a value that is skipped are checked, never decoded, as serde_json skips.
    for text in [r#"{"a":{"\udc00":1}}"#, r#"[{"\ud800x":[]}]"#] {
        assert!(same_as_serde(text), "{text}");
    }
    // A plain name is the document's own text.
    let text = r#"{"plain":1}"#;
    Reader::document(text, |r| {
        r.object(|_, n| {
            assert!(matches!(n, Cow::Borrowed(b) if std::ptr::eq(b, &text[2..7])));
            Some(())
        })
    });
}

/// Random documents: JSON values with random edits, against serde_json.
#[test]
fn random_documents_agree_with_serde_json() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let pieces = [
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"",
        "\\",
        "\\u",
        "00e9",
        "\"k\"",
        "1",
        "-",
        "0",
        ".",
        "e",
        "+",
        "true",
        "null",
        " ",
        "\n",
        "\u{1}",
        "é",
        "\\n",
        "\\\"",
        "abcdefghijklmnopqrstuvwxyz",
    ];
    let mut json = 0;
    for _ in 0..20_000 {
        let n = rng.random_range(1..40);
        let text: String = (0..n)
            .map(|_| pieces[rng.random_range(0..pieces.len())])
            .collect();
        json += usize::from(same_as_serde(&text));
    }
    assert!(json > 50, "{json} of the random documents were JSON");
    let valid =
        r#"{"action":"announce","offers":[{"offer":{"sdp":"v=0\r\n"},"offer_id":"a"}],"n":-1.5e3}"#;
    let mut edited_json = 0;
    let edits = b"{}[],:\"\\ 0e-";
    for _ in 0..20_000 {
        let mut b = valid.as_bytes().to_vec();
        for _ in 0..rng.random_range(1..4) {
            let i = rng.random_range(0..b.len());
            match rng.random_range(0..3) {
                0 => {
                    b.remove(i);
                }
                1 => b.insert(i, edits[rng.random_range(0..edits.len())]),
                _ => b[i] = edits[rng.random_range(0..edits.len())],
            }
        }
        if let Ok(text) = String::from_utf8(b) {
            edited_json += usize::from(same_as_serde(&text));
        }
    }
    assert!(
        edited_json > 1_000,
        "{edited_json} of the edited documents were JSON"
    );
}
