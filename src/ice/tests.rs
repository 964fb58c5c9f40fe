use super::*;
use std::time::Duration;

fn cfg(servers: &[&str], secrets: &[&str]) -> IceConfig {
    IceConfig {
        servers: servers
            .iter()
            .map(|s| parse_uri(s).unwrap().to_string())
            .collect(),
        turn_secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
        ..IceConfig::default()
    }
}

const NOW: u64 = 1_800_000_000;

#[test]
fn default_is_the_google_stun_list_with_url_and_urls() {
    let ice = Ice::new(&IceConfig::default()).unwrap();
    let list = ice.list("conn-1", NOW);
    assert_eq!(list.source, Source::Static);
    let json = list.servers_json();
    let want: Vec<Value> = GOOGLE_STUN
        .iter()
        .map(|u| json!({"url": u, "urls": u}))
        .collect();
    assert_eq!(json, Value::Array(want));
    assert_eq!(json[0]["url"], "stun:stun.l.google.com:19302");
    assert_eq!(json[4]["urls"], "stun:stun4.l.google.com:19302");
    assert_eq!((list.username, list.password), (None, None));
}

#[test]
fn turn_entries_get_minted_credentials_stun_entries_none() {
    let c = cfg(
        &[
            "stun:stun.example.org",
            "turn:turn.example.org:3478?transport=udp",
            "turns:turn.example.org:5349",
        ],
        &["first", "second"],
    );
    let ice = Ice::new(&c).unwrap();
    let list = ice.list("attendee-42", NOW);
    let user = format!("{}:attendee-42", NOW + 86_400);
    let pass = turn_rest::credential("first", &user);
    assert_eq!(
        list.to_json(),
        json!({
            "iceServers": [
                {"url": "stun:stun.example.org", "urls": "stun:stun.example.org"},
                {"url": "turn:turn.example.org:3478?transport=udp", "urls": "turn:turn.example.org:3478?transport=udp",
                 "username": user, "credential": pass},
                {"url": "turns:turn.example.org:5349", "urls": "turns:turn.example.org:5349",
                 "username": user, "credential": pass},
            ],
            "ttl": 86_400
        })
    );
    assert_eq!(list.username.as_deref(), Some(user.as_str()));
    assert_eq!(list.password.as_deref(), Some(pass.as_str()));
    // Every entry, whatever its kind, carries both url and urls (the clients depend on both).
    for e in list.servers_json().as_array().unwrap() {
        assert_eq!(e["url"], e["urls"]);
    }
}

#[test]
fn expiry_is_now_plus_ttl_and_separator_is_configurable() {
    let mut c = cfg(&["turn:t.example"], &["k"]);
    c.turn_ttl = Duration::from_secs(600);
    c.turn_separator = '-';
    let ice = Ice::new(&c).unwrap();
    let s = &ice.servers("u:1", NOW)[0];
    assert_eq!(s.username.as_deref(), Some("1800000600-u:1"));
    let (expiry, user) = s.username.as_deref().unwrap().split_once('-').unwrap();
    assert_eq!((expiry.parse::<u64>().unwrap() - NOW, user), (600, "u:1"));
    assert_eq!(
        s.credential.as_deref(),
        Some(turn_rest::credential("k", "1800000600-u:1").as_str())
    );
    // A later request gets a later expiry and a different credential.
    let later = &ice.servers("u:1", NOW + 1)[0];
    assert_eq!(later.username.as_deref(), Some("1800000601-u:1"));
    assert_ne!(later.credential, s.credential);
    // The clock cannot overflow the expiry.
    let end = &ice.servers("x", u64::MAX)[0];
    assert_eq!(
        end.username.as_deref(),
        Some(format!("{}-x", u64::MAX).as_str())
    );
}

#[test]
fn rotation_mints_with_the_first_secret_only() {
    let old_first = Ice::new(&cfg(&["turn:t"], &["old", "new"])).unwrap();
    let new_first = Ice::new(&cfg(&["turn:t"], &["new", "old"])).unwrap();
    let a = &old_first.servers("u", NOW)[0];
    let b = &new_first.servers("u", NOW)[0];
    assert_eq!(a.username, b.username);
    let name = a.username.as_deref().unwrap();
    assert_eq!(
        a.credential.as_deref(),
        Some(turn_rest::credential("old", name).as_str())
    );
    assert_eq!(
        b.credential.as_deref(),
        Some(turn_rest::credential("new", name).as_str())
    );
    // One entry per configured server, not one per secret.
    assert_eq!(new_first.servers("u", NOW).len(), 1);
}

#[test]
fn turn_without_a_secret_gets_a_random_per_process_secret() {
    let a = Ice::new(&cfg(&["turn:t"], &[])).unwrap();
    let b = Ice::new(&cfg(&["turn:t"], &[])).unwrap();
    assert!(a.random_secret);
    let (x, y) = (&a.servers("u", NOW)[0], &b.servers("u", NOW)[0]);
    assert!(x.credential.is_some());
    assert_ne!(x.credential, y.credential);
}

#[test]
fn token_object_for_the_static_list() {
    let ice = Ice::new(&cfg(&["turn:t"], &["k"])).unwrap();
    let list = ice.list("c", NOW);
    let t = list.token_json();
    assert_eq!(t["ttl"], "86400");
    assert_eq!(t["username"], list.username.clone().unwrap());
    assert_eq!(t["password"], list.password.clone().unwrap());
    assert_eq!(t["iceServers"], list.servers_json());
    assert!(t.get("accountSid").is_none());
    let stun_only = Ice::new(&IceConfig::default())
        .unwrap()
        .list("c", NOW)
        .token_json();
    assert_eq!(stun_only.as_object().unwrap().len(), 2, "{stun_only}");
}

#[test]
fn provider_token_is_served_while_valid_then_the_static_list() {
    let mut c = cfg(&["stun:fallback.example"], &[]);
    c.twilio_account_sid = Some("AC123".into());
    c.twilio_auth_token = Some(Secret::new("tok"));
    c.twilio_ca_file = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/dev-cert.pem").into();
    let ice = Ice::new(&c).unwrap();
    assert!(ice.has_provider() && !Ice::new(&IceConfig::default()).unwrap().has_provider());
    assert_eq!(ice.list("u", NOW).source, Source::Static);
    let body = br#"{"account_sid":"AC123","ttl":"100","username":"tu","password":"tp",
        "date_created":"Fri, 01 May 2020 01:42:57 +0000",
        "ice_servers":[{"url":"turn:tw:3478","urls":"turn:tw:3478","username":"tu","credential":"tp"}]}"#;
    let token = twilio::parse_token(body, 86_400, NOW).unwrap();
    ice.provider.as_ref().unwrap().set_token(token);
    let list = ice.list("u", NOW + 99);
    assert!(matches!(list.source, Source::Provider(_)));
    assert_eq!(
        list.servers_json(),
        json!([{"url":"turn:tw:3478","urls":"turn:tw:3478","username":"tu","credential":"tp"}])
    );
    let t = list.token_json();
    assert_eq!(
        (&t["accountSid"], &t["ttl"], &t["username"], &t["password"]),
        (&json!("AC123"), &json!("100"), &json!("tu"), &json!("tp"))
    );
    assert_eq!(t["dateCreated"], "Fri, 01 May 2020 01:42:57 +0000");
    // Expired: the fallback.
    let after = ice.list("u", NOW + 100);
    assert_eq!(after.source, Source::Static);
    assert_eq!(after.servers[0].url, "stun:fallback.example");
}

#[test]
fn uris_are_validated() {
    let ok = [
        (
            "stun:stun.l.google.com:19302",
            "stun:stun.l.google.com:19302",
        ),
        ("STUN:Example.org", "stun:Example.org"),
        ("stuns:a.b:5349", "stuns:a.b:5349"),
        ("turn:10.0.0.1", "turn:10.0.0.1"),
        ("turn:h:3478?transport=UDP", "turn:h:3478?transport=udp"),
        ("turns:h:443?transport=tcp", "turns:h:443?transport=tcp"),
        ("turn:[::1]:3478", "turn:[::1]:3478"),
        ("turn:[2001:db8::1]", "turn:[2001:db8::1]"),
    ];
    for (input, shown) in ok {
        assert_eq!(parse_uri(input).unwrap().to_string(), shown, "{input}");
    }
    let bad = [
        "stun.l.google.com:19302",
        "http://x",
        "stun://host",
        "stun:",
        "stun:host:0",
        "stun:host:65536",
        "stun:host:+1",
        "stun:host?transport=udp",
        "turn:host?transport=sctp",
        "turn:host?foo=bar",
        "turn:ho st",
        "turn:[::1",
        "turn:[nope]",
        "turn:[::1]x",
        "turn:user@host",
    ];
    for input in bad {
        let e = parse_uri(input).unwrap_err();
        assert!(e.contains("is not an ICE server URI"), "{input}: {e}");
    }
    assert!(is_turn("turn:x") && is_turn("TURNS:x") && !is_turn("stun:x") && !is_turn("stuns:x"));
}
