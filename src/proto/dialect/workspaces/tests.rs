use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

const NOW_MS: u64 = 1_621_789_642_123;

use crate::proto::dialect::testing::{SioHarness, StaticIce};
use crate::proto::dialect::Seeded;

/// The ICE list the tests' environment hands out.
fn ice() -> Value {
    json!([{"url": "stun:stun.l.google.com:19302", "urls": "stun:stun.l.google.com:19302"}])
}

fn cfg() -> WorkspacesConfig {
    WorkspacesConfig {
        capacity: 3,
        pin_iterations: 1000,
        ..WorkspacesConfig::with_secrets(b"magick", "pepper")
    }
}

struct T {
    d: Workspaces,
    h: SioHarness<StaticIce>,
}

/// What `create` / `attend` hand a client.
#[derive(Debug, Clone)]
struct Member {
    sid: String,
    ws: String,
    id: String,
    token: String,
    access: String,
}

impl T {
    fn new() -> T {
        T::with(cfg())
    }
    fn with(cfg: WorkspacesConfig) -> T {
        let mut d = Workspaces::new(cfg);
        let mut h = SioHarness::new(StaticIce(ice()));
        h.unix_ms = NOW_MS;
        for sid in ["A", "B", "C", "D", "E"] {
            h.connect(&mut d, sid, &[]);
        }
        T { d, h }
    }
    fn ev(&mut self, sid: &str, event: &str, data: Value) -> Vec<Action> {
        self.h.event(&mut self.d, sid, event, &[data])
    }
    fn connect(&mut self, sid: &str) {
        self.h.connect(&mut self.d, sid, &[]);
    }
    fn disconnect(&mut self, sid: &str) {
        self.h.disconnect(&mut self.d, sid);
    }
    /// `A` creates a workspace with PIN `1234`.
    fn created(&mut self) -> Member {
        let out = self.ev(
            "A",
            "create",
            json!({"workspace": {"name": "Team", "pin": "1234", "avatar": ""}, "attendee": {"name": "Ann", "avatar": ""}, "nonce": "create-workspace::k3J9"}),
        );
        let r = payload(&out[0], "created");
        Member {
            sid: "A".into(),
            ws: r["workspace"]["id"].as_str().unwrap().into(),
            id: r["attendee"]["id"].as_str().unwrap().into(),
            token: r["workspace"]["token"].as_str().unwrap().into(),
            access: r["accessToken"].as_str().unwrap().into(),
        }
    }
    fn attend(&mut self, sid: &str, owner: &Member, name: &str) -> Member {
        let out = self.ev(
            sid,
            "attend",
            json!({"workspace": {"token": owner.token, "pin": "1234"}, "attendee": {"name": name, "avatar": ""}, "nonce": "attend-workspace::Zz81"}),
        );
        let r = payload(&out[1], "attendance-granted");
        Member {
            sid: sid.into(),
            ws: owner.ws.clone(),
            id: r["attendee"]["id"].as_str().unwrap().into(),
            token: owner.token.clone(),
            access: r["accessToken"].as_str().unwrap().into(),
        }
    }
    fn claims(&self, token: &str) -> Map<String, Value> {
        self.d
            .keys
            .verify(token, NOW_MS / 1000)
            .expect("a valid token")
    }
}

impl Member {
    /// `{workspace:{id}, attendee:{id}, accessToken}` plus `extra`.
    fn with(&self, extra: Value) -> Value {
        let mut v = json!({"workspace": {"id": self.ws}, "attendee": {"id": self.id}, "accessToken": self.access});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    }
}

fn payload(a: &Action, event: &str) -> Value {
    match a {
        Action::Emit { event: e, args, .. } if e == event => {
            assert_eq!(args.len(), 1);
            args[0].value()
        }
        other => panic!("expected {event}, got {other:?}"),
    }
}

fn emit_(to: To, event: &str, arg: Value) -> Action {
    Action::Emit {
        to,
        event: event.into(),
        args: vec![Raw::from_value(&arg)],
    }
}

fn to(sid: &str) -> To {
    To::Socket(sid.into())
}

fn others(m: &Member) -> To {
    To::RoomExcept {
        room: m.ws.clone(),
        except: m.sid.clone(),
    }
}

fn alert_(sid: &str, text: &str) -> Vec<Action> {
    vec![emit_(to(sid), "alert", json!(text))]
}

fn destroyed_(sid: &str) -> Vec<Action> {
    vec![emit_(to(sid), "destroyed", json!({}))]
}

// ---- tokens ----

/// Known answers computed independently (Python's `hmac`, `hashlib`, `base64`).
#[test]
fn tokens_match_an_independent_implementation() {
    let keys = Keys::new(b"magick-secret", "pepper");
    let jwt = keys.sign(
        &[
            ("id", "_p0QkE3zR8b"),
            ("owner", "_Lm2nB7cX1q"),
            ("singningToken", "tok\u{e9}\"x"),
        ],
        1_621_789_642,
    );
    assert_eq!(
        jwt,
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6Il9wMFFrRTN6UjhiIiwib3duZXIiOiJfTG0ybkI3Y1gxcSIsInNpbmduaW5nVG9rZW4iOiJ0b2vDqVwieCIsImlhdCI6MTYyMTc4OTY0Mn0.QuJSnS4T1gVQtWD3kITCi54N4EBLp7-9Q026TqpY7N0"
    );
    assert_eq!(
        keys.binding("_p0QkE3zR8b", "_Lm2nB7cX1q"),
        "hs256:Q3zyyruLfSjjB_4r_OtVGGbLvHRd01dC9BMVBftx7as"
    );
    let pin =
        "$pbkdf2-sha256$1000$AAECAwQFBgcICQoLDA0ODw$equK1IYEdBAvwSj_9yBxVZ7L-fE5sVQsEw9DwaVnyaI";
    assert!(token::pin_verify("_p0QkE3zR8b:1234:pepper", pin));
    assert!(!token::pin_verify("_p0QkE3zR8b:1235:pepper", pin));
    let claims = keys.verify(&jwt, 1_621_789_642).unwrap();
    assert_eq!(claims["singningToken"], "tok\u{e9}\"x");
    assert_eq!(claims["iat"], 1_621_789_642);
}

#[test]
fn jwt_verification_refuses_what_it_must() {
    let keys = Keys::new(b"k", "s");
    let good = keys.sign(&[("id", "_w")], 10);
    assert!(keys.verify(&good, 10).is_some());
    assert!(Keys::new(b"other", "s").verify(&good, 10).is_none());
    let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
    let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
    // Tampered claims, signature, structure.
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(r#"{"id":"_x","iat":10}"#),
        parts[2]
    );
    assert!(keys.verify(&tampered, 10).is_none());
    let first = if parts[2].starts_with('A') { "B" } else { "A" };
    parts[2].replace_range(0..1, first);
    assert!(keys.verify(&parts.join("."), 10).is_none());
    assert!(keys.verify("a.b", 10).is_none());
    assert!(keys.verify(&format!("{good}.x"), 10).is_none());
    assert!(keys.verify("", 10).is_none());
    assert!(keys
        .verify(&"a".repeat(token::MAX_TOKEN_LEN + 1), 10)
        .is_none());
    // Correctly signed, but another algorithm or not an object.
    let signed = |header: &str, claims: &str| {
        let input = format!("{}.{}", b64(header), b64(claims));
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"k");
        let tag = ring::hmac::sign(&k, input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    };
    assert!(keys
        .verify(&signed(r#"{"alg":"HS256"}"#, r#"{"id":"_w"}"#), 0)
        .is_some());
    assert!(keys
        .verify(&signed(r#"{"alg":"none"}"#, r#"{"id":"_w"}"#), 0)
        .is_none());
    assert!(keys
        .verify(&signed(r#"{"alg":"HS512"}"#, r#"{"id":"_w"}"#), 0)
        .is_none());
    assert!(keys
        .verify(&signed(r#"{"alg":"HS256"}"#, r#"["_w"]"#), 0)
        .is_none());
    // exp and nbf are honoured.
    let exp = signed(r#"{"alg":"HS256"}"#, r#"{"id":"_w","exp":100}"#);
    assert!(keys.verify(&exp, 99).is_some());
    assert!(keys.verify(&exp, 100).is_none());
    let nbf = signed(r#"{"alg":"HS256"}"#, r#"{"id":"_w","nbf":100}"#);
    assert!(keys.verify(&nbf, 99).is_none());
    assert!(keys.verify(&nbf, 100).is_some());
    let bad_exp = signed(r#"{"alg":"HS256"}"#, r#"{"id":"_w","exp":"soon"}"#);
    assert!(keys.verify(&bad_exp, 0).is_none());
}

#[test]
fn bindings_and_pin_hashes_refuse_other_inputs() {
    let keys = Keys::new(b"k", "s");
    let b = keys.binding("_w", "_a");
    assert_eq!(keys.check_binding("_w", "_a", &b), Ok(()));
    assert_eq!(
        keys.check_binding("_w", "_b", &b),
        Err(BindingError::Mismatch)
    );
    assert_eq!(
        keys.check_binding("_v", "_a", &b),
        Err(BindingError::Mismatch)
    );
    assert_eq!(
        Keys::new(b"k", "t").check_binding("_w", "_a", &b),
        Err(BindingError::Mismatch),
        "the pepper is part of the input"
    );
    assert_eq!(
        keys.check_binding("_w", "_a", "$2b$10$abc"),
        Err(BindingError::Malformed)
    );
    assert_eq!(
        keys.check_binding("_w", "_a", "hs256:***"),
        Err(BindingError::Malformed)
    );
    let mut rand = Seeded(9);
    let h1 = token::pin_hash("_w:1234:s", 1000, &mut rand);
    let h2 = token::pin_hash("_w:1234:s", 1000, &mut rand);
    assert_ne!(h1, h2, "salted");
    assert!(h1.starts_with("$pbkdf2-sha256$1000$"));
    assert!(token::pin_verify("_w:1234:s", &h1) && token::pin_verify("_w:1234:s", &h2));
    assert!(!token::pin_verify("_w::s", &h1));
    for bad in [
        "",
        "$pbkdf2-sha256$",
        "$pbkdf2-sha256$0$AAAA$AAAA",
        "$pbkdf2-sha256$99999999999$AAAA$AAAA",
        "$pbkdf2-sha256$20000000$AAAA$AAAA",
        "$pbkdf2-sha256$1000$***$AAAA",
        "$pbkdf2-sha256$1000$AAAA$AAAA",
        "$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy",
    ] {
        assert!(!token::pin_verify("_w:1234:s", bad), "{bad}");
    }
}

#[test]
fn random_ids_are_underscore_and_ten_alphanumerics() {
    let mut rand = Seeded(3);
    let a = random_id(&mut rand);
    assert_eq!(a.len(), 11);
    assert!(a.starts_with('_'));
    assert!(a[1..].bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_ne!(a, random_id(&mut rand));
}

// ---- events ----

#[test]
fn iceservers_replies_with_the_list() {
    let mut t = T::new();
    let out = t.ev("A", "iceservers", json!({}));
    assert_eq!(out, vec![emit_(to("A"), "iceservers", ice())]);
    assert_eq!(t.d.generation(), 0);
}

#[test]
fn create_answers_then_joins_with_signed_tokens() {
    let mut t = T::new();
    let out = t.ev(
        "A",
        "create",
        json!({"workspace": {"name": "Team", "pin": "1234", "avatar": ""}, "attendee": {"name": "Ann", "avatar": ""}, "nonce": "create-workspace::k3J9"}),
    );
    assert_eq!(out.len(), 2);
    let r = payload(&out[0], "created");
    let ws = r["workspace"]["id"].as_str().unwrap();
    let owner = r["attendee"]["id"].as_str().unwrap();
    assert!(matches!(&out[0], Action::Emit { to: To::Socket(s), .. } if s == "A"));
    assert_eq!(
        out[1],
        Action::Join {
            sid: "A".into(),
            room: ws.into()
        }
    );
    assert_eq!(ws.len(), 11);
    assert_eq!(owner.len(), 11);
    assert_eq!(r["workspace"]["name"], "Team");
    assert_eq!(r["workspace"]["avatar"], "");
    assert_eq!(r["workspace"]["owner"], owner);
    assert_eq!(r["workspace"]["created"], NOW_MS);
    assert_eq!(
        r["attendee"],
        json!({"id": owner, "name": "Ann", "avatar": ""})
    );
    assert_eq!(r["nonce"], "create-workspace::k3J9");
    let keys: Vec<&String> = r["workspace"].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 6, "{keys:?}");
    // Workspace token: {id, singningToken: PIN hash, iat}.
    let wt = t.claims(r["workspace"]["token"].as_str().unwrap());
    assert_eq!(wt["id"], ws);
    assert_eq!(wt["iat"], NOW_MS / 1000);
    assert!(wt.get("owner").is_none());
    let hash = wt["singningToken"].as_str().unwrap();
    assert!(token::pin_verify(&format!("{ws}:1234:pepper"), hash));
    // Access token: {id, owner, singningToken: binding, iat}.
    let at = t.claims(r["accessToken"].as_str().unwrap());
    assert_eq!(at["id"], ws);
    assert_eq!(at["owner"], owner);
    assert_eq!(at["iat"], NOW_MS / 1000);
    assert_eq!(at["singningToken"], json!(t.d.keys.binding(ws, owner)));
    assert_eq!(t.d.generation(), 1);
    assert_eq!(t.d.len(), 1);
}

#[test]
fn create_without_payload_gets_the_defaults() {
    let mut t = T::new();
    for data in [
        Value::Null,
        json!({}),
        json!({"workspace": 3, "attendee": "x", "nonce": 0}),
    ] {
        let out = t.ev("A", "create", data);
        let r = payload(&out[0], "created");
        assert_eq!(r["workspace"]["name"], "Anonumous Workspace");
        assert_eq!(r["attendee"]["name"], "Anonumous");
        assert_eq!(r["attendee"]["avatar"], "");
        assert_eq!(r["nonce"], "");
    }
    // No payload at all.
    let out = t.h.event(&mut t.d, "A", "create", &[]);
    assert_eq!(
        payload(&out[0], "created")["workspace"]["name"],
        "Anonumous Workspace"
    );
}

#[test]
fn create_keeps_client_ids_but_never_overwrites_a_workspace() {
    let mut t = T::new();
    let data = json!({"workspace": {"id": "_mine123"}, "attendee": {"id": "_me456", "name": ""}});
    let out = t.ev("A", "create", data.clone());
    let r = payload(&out[0], "created");
    assert_eq!(r["workspace"]["id"], "_mine123");
    assert_eq!(r["attendee"]["id"], "_me456");
    let out = t.ev("B", "create", data);
    let r = payload(&out[0], "created");
    assert_ne!(r["workspace"]["id"], "_mine123");
    assert_eq!(t.d.len(), 2);
    // Ids not starting with `_` or too short are replaced.
    let out = t.ev(
        "C",
        "create",
        json!({"workspace": {"id": "_a"}, "attendee": {"id": "abc"}}),
    );
    let r = payload(&out[0], "created");
    assert_eq!(r["workspace"]["id"].as_str().unwrap().len(), 11);
    assert_eq!(r["attendee"]["id"].as_str().unwrap().len(), 11);
}

#[test]
fn create_beyond_the_workspace_limit_is_refused() {
    let mut t = T::with(WorkspacesConfig {
        max_workspaces: 1,
        ..cfg()
    });
    t.created();
    assert_eq!(t.ev("B", "create", json!({})), alert_("B", ALERT_TOO_MANY));
    assert_eq!(t.d.len(), 1);
}

#[test]
fn attend_checks_token_then_pin_then_workspace() {
    let mut t = T::new();
    let owner = t.created();
    for data in [
        json!({}),
        json!({"workspace": {"token": ""}}),
        json!({"workspace": {"token": 5, "pin": "1234"}}),
    ] {
        assert_eq!(t.ev("B", "attend", data), alert_("B", ALERT_TOKEN_ATTEND));
    }
    for (tok, pin) in [
        (owner.token.as_str(), json!("0000")),
        (owner.token.as_str(), json!("")),
        (owner.token.as_str(), Value::Null),
        ("garbage", json!("1234")),
        // An access token is not a workspace token.
        (owner.access.as_str(), json!("1234")),
    ] {
        let data = json!({"workspace": {"token": tok, "pin": pin}, "attendee": {"name": "Bob"}});
        assert_eq!(t.ev("B", "attend", data), alert_("B", ALERT_WRONG_PIN));
    }
    // The right PIN of a workspace that is gone.
    let mut t2 = T::new();
    let gone = t2.created();
    t2.ev("A", "destroy", gone.with(json!({})));
    let data = json!({"workspace": {"token": gone.token, "pin": "1234"}});
    assert_eq!(t2.ev("B", "attend", data), destroyed_("B"));
    assert_eq!(t.d.generation(), 1, "refusals change nothing");
}

#[test]
fn attend_joins_answers_then_tells_the_others() {
    let mut t = T::new();
    let owner = t.created();
    let out = t.ev(
        "B",
        "attend",
        json!({"workspace": {"token": owner.token, "pin": "1234"}, "attendee": {"name": "Bob", "avatar": ""}, "nonce": "attend-workspace::Zz81"}),
    );
    assert_eq!(out.len(), 3);
    assert_eq!(
        out[0],
        Action::Join {
            sid: "B".into(),
            room: owner.ws.clone()
        }
    );
    let r = payload(&out[1], "attendance-granted");
    assert!(matches!(&out[1], Action::Emit { to: To::Socket(s), .. } if s == "B"));
    let bob = r["attendee"]["id"].as_str().unwrap();
    assert_eq!(
        r["attendee"],
        json!({"id": bob, "name": "Bob", "avatar": ""})
    );
    assert_eq!(r["workspace"]["id"], owner.ws);
    assert_eq!(r["workspace"]["owner"], owner.id);
    assert_eq!(r["workspace"]["token"], owner.token);
    assert_eq!(r["workspace"]["call"], Value::Null);
    assert_eq!(r["workspace"]["name"], "Team");
    assert_eq!(r["nonce"], "attend-workspace::Zz81");
    assert_eq!(
        r["attendees"],
        json!({
            owner.id.clone(): {"id": owner.id, "name": "Ann", "avatar": ""},
            bob: {"id": bob, "name": "Bob", "avatar": ""},
        })
    );
    let at = t.claims(r["accessToken"].as_str().unwrap());
    assert_eq!(at["owner"], owner.id);
    assert_eq!(at["singningToken"], json!(t.d.keys.binding(&owner.ws, bob)));
    let b = Member {
        sid: "B".into(),
        ..owner.clone()
    };
    assert_eq!(out[2], emit_(others(&b), "attend", r["attendee"].clone()));
    assert_eq!(t.d.generation(), 2);
}

#[test]
fn attend_without_pin_on_a_workspace_without_pin() {
    let mut t = T::new();
    let out = t.ev(
        "A",
        "create",
        json!({"workspace": {"name": "Open"}, "attendee": {}}),
    );
    let tok = payload(&out[0], "created")["workspace"]["token"].clone();
    let out = t.ev(
        "B",
        "attend",
        json!({"workspace": {"token": tok}, "attendee": {}}),
    );
    payload(&out[1], "attendance-granted");
    let out = t.ev(
        "C",
        "attend",
        json!({"workspace": {"token": tok, "pin": "1"}}),
    );
    assert_eq!(out, alert_("C", ALERT_WRONG_PIN));
}

#[test]
fn attend_cannot_take_the_owners_id() {
    let mut t = T::new();
    let owner = t.created();
    let out = t.ev(
        "B",
        "attend",
        json!({"workspace": {"token": owner.token, "pin": "1234"}, "attendee": {"id": owner.id, "name": "Mallory"}}),
    );
    let r = payload(&out[1], "attendance-granted");
    assert_ne!(r["attendee"]["id"], json!(owner.id));
    assert_eq!(r["attendees"][&owner.id]["name"], "Ann");
    // A guest's client-supplied id is kept (§5.4).
    let out = t.ev(
        "C",
        "attend",
        json!({"workspace": {"token": owner.token, "pin": "1234"}, "attendee": {"id": "_guest1"}}),
    );
    assert_eq!(
        payload(&out[1], "attendance-granted")["attendee"]["id"],
        "_guest1"
    );
}

#[test]
fn a_full_workspace_says_full_then_disconnects() {
    let mut t = T::new();
    let owner = t.created();
    t.attend("B", &owner, "Bob");
    t.attend("C", &owner, "Cy");
    let data =
        json!({"workspace": {"token": owner.token, "pin": "1234"}, "attendee": {"name": "Dee"}});
    assert_eq!(
        t.ev("D", "attend", data.clone()),
        vec![
            emit_(to("D"), "full", json!({})),
            Action::Disconnect { sid: "D".into() }
        ]
    );
    // Configurable.
    t.d.cfg.disconnect_on_full = false;
    assert_eq!(
        t.ev("D", "attend", data),
        vec![emit_(to("D"), "full", json!({}))]
    );
}

#[test]
fn access_checks_answer_the_documented_alerts_in_order() {
    let mut t = T::new();
    let owner = t.created();
    let bob = t.attend("B", &owner, "Bob");
    let mut other = T::new();
    let foreign = other.created();
    let other_keys = Keys::new(b"not magick", "pepper");
    let other_secret = other_keys.sign(
        &[
            ("id", &owner.ws),
            ("owner", &owner.id),
            ("singningToken", &other_keys.binding(&owner.ws, &bob.id)),
        ],
        1,
    );
    let no_binding = t.d.keys.sign(&[("id", &owner.ws), ("owner", &owner.id)], 1);
    let pin_token = owner.token.clone();
    let cases = [
        (
            json!({"attendee": {"id": bob.id}, "accessToken": bob.access}),
            ALERT_WORKSPACE_ID,
        ),
        (
            json!({"workspace": {"id": ""}, "attendee": {"id": bob.id}}),
            ALERT_WORKSPACE_ID,
        ),
        (
            json!({"workspace": {"id": "w1"}, "attendee": {"id": bob.id}}),
            ALERT_WORKSPACE_ID,
        ),
        (
            json!({"workspace": {"id": owner.ws}, "accessToken": bob.access}),
            ALERT_ATTENDEE_ID,
        ),
        (
            json!({"workspace": {"id": owner.ws}, "attendee": {"id": "b"}}),
            ALERT_ATTENDEE_ID,
        ),
        (
            json!({"workspace": {"id": owner.ws}, "attendee": {"id": bob.id}}),
            ALERT_TOKEN,
        ),
        (bob.with(json!({"accessToken": "x.y.z"})), ALERT_TOKEN),
        (bob.with(json!({"accessToken": 12})), ALERT_TOKEN),
        (bob.with(json!({"accessToken": other_secret})), ALERT_TOKEN),
        (
            bob.with(json!({"accessToken": foreign.access})),
            ALERT_INVALID_ACCESS,
        ),
        (bob.with(json!({"accessToken": no_binding})), ALERT_TOKEN),
        (
            bob.with(json!({"workspace": {"id": "_elsewhere"}})),
            ALERT_INVALID_ACCESS,
        ),
        (
            bob.with(json!({"attendee": {"id": owner.id}})),
            ALERT_INVALID_ACCESS,
        ),
        (
            bob.with(json!({"accessToken": owner.access})),
            ALERT_INVALID_ACCESS,
        ),
        (
            bob.with(json!({"accessToken": pin_token})),
            ALERT_INVALID_ACCESS,
        ),
    ];
    for (data, text) in cases {
        assert_eq!(
            t.ev("B", "mic-toggle", data.clone()),
            alert_("B", text),
            "{data}"
        );
    }
    // Owner-only events.
    assert_eq!(
        t.ev("B", "destroy", bob.with(json!({}))),
        alert_("B", ALERT_UNAUTHORIZED)
    );
    let kick = bob.with(json!({"kickedAttendee": {"id": owner.id}}));
    assert_eq!(t.ev("B", "kick", kick), alert_("B", ALERT_UNAUTHORIZED));
    assert_eq!(t.d.len(), 1);
}

#[test]
fn every_access_checked_event_alerts() {
    let mut t = T::new();
    t.created();
    for event in [
        "destroy",
        "re-attend",
        "leave",
        "kick",
        "ring",
        "answer",
        "busy",
        "hangup",
        "mic-toggle",
        "cam-toggle",
    ] {
        assert_eq!(
            t.ev("B", event, json!({})),
            alert_("B", ALERT_WORKSPACE_ID),
            "{event}"
        );
    }
    for event in ["icecandidate", "negotiation"] {
        let data = json!({"workspace": {"id": "_w1"}, "attendee": {"id": "_target"}});
        assert_eq!(
            t.ev("B", event, data),
            alert_("B", ALERT_ATTENDEE_ID),
            "{event}"
        );
    }
}

#[test]
fn destroy_tells_the_others_then_the_owner_and_later_events_meet_destroyed() {
    let mut t = T::new();
    let owner = t.created();
    let bob = t.attend("B", &owner, "Bob");
    let g = t.d.generation();
    let out = t.ev("A", "destroy", owner.with(json!({})));
    assert_eq!(
        out,
        vec![
            emit_(others(&owner), "destroyed", json!({})),
            emit_(to("A"), "destroyed", json!({})),
            Action::Leave {
                sid: "A".into(),
                room: owner.ws.clone()
            },
        ]
    );
    assert!(t.d.is_empty());
    assert_eq!(t.d.generation(), g + 1);
    for event in [
        "ring",
        "answer",
        "busy",
        "hangup",
        "mic-toggle",
        "cam-toggle",
        "leave",
        "re-attend",
    ] {
        assert_eq!(
            t.ev("B", event, bob.with(json!({}))),
            destroyed_("B"),
            "{event}"
        );
    }
    let ice = json!({"workspace": {"id": bob.ws}, "broadcaster": {"id": bob.id}, "attendee": {"id": owner.id}, "accessToken": bob.access});
    assert_eq!(t.ev("B", "icecandidate", ice.clone()), destroyed_("B"));
    assert_eq!(t.ev("B", "negotiation", ice), destroyed_("B"));
    assert_eq!(
        t.ev(
            "A",
            "kick",
            owner.with(json!({"kickedAttendee": {"id": bob.id}}))
        ),
        destroyed_("A")
    );
}

#[test]
fn re_attend_after_reconnect_rejoins_and_moves_the_socket_map() {
    let mut t = T::new();
    let owner = t.created();
    let bob = t.attend("B", &owner, "Bob");
    t.disconnect("B");
    t.connect("B2");
    let stored_ws = json!({"id": owner.ws, "name": "Team", "avatar": "", "owner": owner.id, "created": NOW_MS, "token": owner.token});
    let data = json!({"workspace": stored_ws, "attendee": {"id": bob.id, "name": "Bob", "avatar": ""}, "accessToken": bob.access, "nonce": "n1"});
    let out = t.ev("B2", "re-attend", data);
    assert_eq!(out.len(), 3);
    assert_eq!(
        out[0],
        Action::Join {
            sid: "B2".into(),
            room: owner.ws.clone()
        }
    );
    let r = payload(&out[1], "re-attendance-granted");
    let echoed = json!({"id": bob.id, "name": "Bob", "avatar": "", "socket": "B2"});
    assert_eq!(r["attendee"], echoed);
    assert_eq!(r["workspace"], stored_ws);
    assert_eq!(r["nonce"], "n1");
    assert_eq!(r["call"], Value::Null);
    assert_eq!(
        r["attendees"][&bob.id],
        json!({"id": bob.id, "name": "Bob", "avatar": ""})
    );
    assert_eq!(r["attendees"].as_object().unwrap().len(), 2);
    assert_eq!(
        t.claims(r["accessToken"].as_str().unwrap())["singningToken"],
        json!(t.d.keys.binding(&owner.ws, &bob.id))
    );
    let b2 = Member {
        sid: "B2".into(),
        ..bob.clone()
    };
    assert_eq!(out[2], emit_(others(&b2), "attend", echoed));
    // A ring for Bob now reaches the new socket.
    let ring =
        owner.with(json!({"callee": {"id": bob.id}, "offer": {"sdp": "o"}, "call": {"id": "c1"}}));
    let out = t.ev("A", "ring", ring);
    assert!(matches!(&out[0], Action::Emit { to: To::Socket(s), .. } if s == "B2"));
    // The stored attendee carries no socket field.
    assert!(t.d.snapshot()[&owner.ws]["attendees"][&bob.id]
        .get("socket")
        .is_none());
}

#[test]
fn re_attend_of_a_former_attendee_counts_against_capacity() {
    let mut t = T::new();
    let owner = t.created();
    let bob = t.attend("B", &owner, "Bob");
    t.ev(
        "B",
        "leave",
        bob.with(json!({"attendee": {"id": bob.id, "name": "Bob"}})),
    );
    t.attend("C", &owner, "Cy");
    t.attend("D", &owner, "Dee");
    t.connect("B2");
    assert_eq!(
        t.ev("B2", "re-attend", bob.with(json!({}))),
        vec![
            emit_(to("B2"), "full", json!({})),
            Action::Disconnect { sid: "B2".into() }
        ]
    );
    // A current member (the owner, reloading) is never refused.
    t.connect("A2");
    let out = t.ev("A2", "re-attend", owner.with(json!({})));
    payload(&out[1], "re-attendance-granted");
}

#[test]
fn leave_tells_the_others_and_forgets_the_attendee() {
    let mut t = T::new();
    let owner = t.created();
    let bob = t.attend("B", &owner, "Bob");
    assert_eq!(
        t.ev("A", "leave", owner.with(json!({}))),
        alert_("A", ALERT_OWNER_LEAVE)
    );
    let full_attendee = json!({"id": bob.id, "name": "Bob", "avatar": "", "extra": 1});
    let out = t.ev("B", "leave", bob.with(json!({"attendee": full_attendee})));
    assert_eq!(
        out,
        vec![
            emit_(others(&bob), "leave", full_attendee),
            Action::Leave {
                sid: "B".into(),
                room: owner.ws.clone()
            },
        ]
    );
    let snap = t.d.snapshot();
    assert!(snap[&owner.ws]["attendees"].get(&bob.id).is_none());
    assert!(snap[&owner.ws]["socketMap"].get(&bob.id).is_none());
}

#[test]
fn kick_tells_the_owner_then_the_others_and_removes_the_socket_from_the_room() {
    let mut t = T::new();
    let owner = t.created();
    let bob = t.attend("B", &owner, "Bob");
    assert_eq!(
        t.ev(
            "A",
            "kick",
            owner.with(json!({"kickedAttendee": {"id": owner.id}}))
        ),
        alert_("A", ALERT_OWNER_KICK)
    );
    let kicked = json!({"id": bob.id, "name": "Bob"});
    let out = t.ev("A", "kick", owner.with(json!({"kickedAttendee": kicked})));
    assert_eq!(
        out,
        vec![
            emit_(to("A"), "kicked", kicked.clone()),
            emit_(others(&owner), "kicked", kicked),
            Action::Leave {
                sid: "B".into(),
                room: owner.ws.clone()
            },
        ]
    );
    assert!(t.d.snapshot()[&owner.ws]["attendees"]
        .get(&bob.id)
        .is_none());
    // A kicked attendee whose socket is gone: no room change.
    let cy = t.attend("C", &owner, "Cy");
    t.disconnect("C");
    let out = t.ev(
        "A",
        "kick",
        owner.with(json!({"kickedAttendee": {"id": cy.id}})),
    );
    assert_eq!(out.len(), 2);
    // No kickedAttendee at all: `{}` is echoed.
    let out = t.ev("A", "kick", owner.with(json!({})));
    assert_eq!(out[0], emit_(to("A"), "kicked", json!({})));
}

#[test]
fn ring_goes_to_the_callee_and_sets_the_call() {
    let mut t = T::new();
    let owner = t.created();
    let bob = t.attend("B", &owner, "Bob");
    let caller = json!({"id": owner.id, "name": "Ann", "avatar": ""});
    let ws = json!({"id": owner.ws, "call": {"id": "c1"}});
    let data = json!({"workspace": ws, "attendee": caller, "accessToken": owner.access, "call": {"id": "c1"}, "callee": {"id": bob.id}, "offer": {"type": "offer", "sdp": "v=0"}, "nonce": "start-call:c1:x"});
    let out = t.ev("A", "ring", data);
    assert_eq!(
        out,
        vec![emit_(
            to("B"),
            "ring",
            json!({"workspace": ws, "caller": caller, "offer": {"type": "offer", "sdp": "v=0"}, "call": {"id": "c1"}, "nonce": "start-call:c1:x"})
        )]
    );
    // The call shows in the next attendance-granted, and hangup clears it.
    let out = t.ev(
        "C",
        "attend",
        json!({"workspace": {"token": owner.token, "pin": "1234"}}),
    );
    assert_eq!(
        payload(&out[1], "attendance-granted")["workspace"]["call"],
        json!({"id": "c1"})
    );
    let out = t.ev("B", "hangup", bob.with(json!({"call": {"id": "c1"}})));
    assert_eq!(
        out,
        vec![emit_(
            others(&bob),
            "hangup",
            json!({"attendee": {"id": bob.id}, "call": {"id": "c1"}})
        )]
    );
    assert!(t.d.snapshot()[&owner.ws].get("call").is_none());
    // Missing fields stay missing; an unknown or disconnected callee gets nothing.
    let out = t.ev("A", "ring", owner.with(json!({"callee": {"id": bob.id}})));
    assert_eq!(
        out,
        vec![emit_(
            to("B"),
            "ring",
            json!({"workspace": {"id": owner.ws}, "caller": {"id": owner.id}, "nonce": ""})
        )]
    );
    assert_eq!(
        t.ev(
            "A",
            "ring",
            owner.with(json!({"callee": {"id": "_nobody"}}))
        ),
        vec![]
    );
    t.disconnect("B");
    assert_eq!(
        t.ev("A", "ring", owner.with(json!({"callee": {"id": bob.id}}))),
        vec![]
    );
}

#[test]
fn answer_goes_to_the_caller_and_busy_to_the_others() {
    let mut t = T::new();
    let owner = t.created();
    let bob = t.attend("B", &owner, "Bob");
    let data = bob.with(json!({"caller": {"id": owner.id}, "call": {"id": "c1"}, "answer": {"type": "answer", "sdp": "a"}, "nonce": 7}));
    assert_eq!(
        t.ev("B", "answer", data),
        vec![emit_(
            to("A"),
            "answer",
            json!({"workspace": {"id": owner.ws}, "callee": {"id": bob.id}, "answer": {"type": "answer", "sdp": "a"}, "call": {"id": "c1"}, "nonce": 7})
        )]
    );
    let data = bob.with(json!({"caller": {"id": owner.id}, "call": {"id": "c1"}, "nonce": "n"}));
    assert_eq!(
        t.ev("B", "busy", data),
        vec![emit_(
            others(&bob),
            "busy",
            json!({"workspace": {"id": owner.ws}, "callee": {"id": bob.id}, "call": {"id": "c1"}})
        )]
    );
}

#[test]
fn icecandidate_and_negotiation_are_checked_against_the_broadcaster() {
    let mut t = T::new();
    let owner = t.created();
    let bob = t.attend("B", &owner, "Bob");
    let ice = json!({"attendee": {"id": owner.id}, "broadcaster": {"id": bob.id}, "workspace": {"id": owner.ws}, "accessToken": bob.access, "candidate": {"candidate": "c", "sdpMid": "0"}});
    assert_eq!(
        t.ev("B", "icecandidate", ice),
        vec![emit_(
            to("A"),
            "icecandidate",
            json!({"attendee": {"id": owner.id}, "broadcaster": {"id": bob.id}, "candidate": {"candidate": "c", "sdpMid": "0"}})
        )]
    );
    let msg = json!({"type": "offer", "data": {"type": "offer", "sdp": "x"}});
    let neg = json!({"attendee": {"id": owner.id}, "broadcaster": {"id": bob.id}, "workspace": {"id": owner.ws}, "accessToken": bob.access, "message": msg});
    assert_eq!(
        t.ev("B", "negotiation", neg),
        vec![emit_(
            to("A"),
            "negotiation",
            json!({"attendee": {"id": bob.id}, "message": msg})
        )]
    );
    // The target's token does not vouch for the broadcaster.
    let forged = json!({"attendee": {"id": bob.id}, "broadcaster": {"id": bob.id}, "workspace": {"id": owner.ws}, "accessToken": owner.access});
    assert_eq!(
        t.ev("A", "icecandidate", forged),
        alert_("A", ALERT_INVALID_ACCESS)
    );
}

#[test]
fn relayed_values_keep_their_bytes() {
    let mut t = T::new();
    let owner = t.created();
    let bob = t.attend("B", &owner, "Bob");
    // A candidate as a browser's JSON.stringify writes it (sdpMid before sdpMLineIndex), and
    // values in forms a re-serializer would change: spacing, 1.0, an escape, a big integer.
    let candidate = r#"{"candidate":"candidate:1 1 udp 2 127.0.0.1 9 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":null}"#;
    let odd = r#"{ "z": 1.0, "a": "\u00e9", "n": 12345678901234567890 }"#;
    let sent = format!(
        r#"[{{"attendee":{{"id":"{}","x":1}},"broadcaster":{{"id":"{}", "note":{odd}}},"workspace":{{"id":"{}"}},"accessToken":"{}","candidate":{candidate}}}]"#,
        owner.id, bob.id, owner.ws, bob.access
    );
    let out = t.h.event_text(&mut t.d, "B", "icecandidate", &sent);
    let [Action::Emit { event, args, .. }] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(event, "icecandidate");
    assert_eq!(
        args[0].get(),
        format!(
            r#"{{"attendee":{{"id":"{}"}},"broadcaster":{{"id":"{}", "note":{odd}}},"candidate":{candidate}}}"#,
            owner.id, bob.id
        )
    );
    // A ring's offer and nonce, as sent.
    let sent = format!(
        r#"[{{"workspace":{{"id":"{}"}},"attendee":{{"id":"{}"}},"callee":{{"id":"{}"}},"accessToken":"{}","offer":{odd},"nonce":[ 7 ]}}]"#,
        owner.ws, bob.id, owner.id, bob.access
    );
    let out = t.h.event_text(&mut t.d, "B", "ring", &sent);
    let [Action::Emit { args, .. }] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(
        args[0].get(),
        format!(
            r#"{{"workspace":{{"id":"{}"}},"caller":{{"id":"{}"}},"offer":{odd},"nonce":[ 7 ]}}"#,
            owner.ws, bob.id
        )
    );
}

#[test]
fn mic_and_cam_toggles_go_to_the_others() {
    let mut t = T::new();
    let owner = t.created();
    let bob = t.attend("B", &owner, "Bob");
    for event in ["mic-toggle", "cam-toggle"] {
        assert_eq!(
            t.ev("B", event, bob.with(json!({"state": false}))),
            vec![emit_(
                others(&bob),
                event,
                json!({"attendee": {"id": bob.id}, "state": false})
            )]
        );
    }
}

#[test]
fn attendees_and_unknown_events_are_ignored() {
    let mut t = T::new();
    let owner = t.created();
    assert_eq!(t.ev("A", "attendees", owner.with(json!({}))), vec![]);
    assert_eq!(t.ev("A", "no-such-event", json!({})), vec![]);
}

#[test]
fn nonce_follows_javascript_truthiness() {
    for (nonce, echoed) in [
        (json!("abc"), json!("abc")),
        (json!(""), json!("")),
        (json!(0), json!("")),
        (json!(false), json!("")),
        (Value::Null, json!("")),
        (json!(1.5), json!(1.5)),
        (json!([]), json!([])),
    ] {
        assert_eq!(super::nonce(&json!({"nonce": nonce})), echoed);
    }
}

// ---- persistence ----

#[test]
fn snapshot_round_trip_survives_a_restart() {
    let mut t = T::new();
    let owner = t.created();
    let bob = t.attend("B", &owner, "Bob");
    t.ev(
        "A",
        "ring",
        owner.with(
            json!({"workspace": {"id": owner.ws, "call": {"id": "c9"}}, "callee": {"id": bob.id}}),
        ),
    );
    let snap = t.d.snapshot();
    let w = &snap[&owner.ws];
    assert_eq!(w["id"], owner.ws);
    assert_eq!(w["owner"], owner.id);
    assert_eq!(w["token"], owner.token);
    assert_eq!(w["created"], NOW_MS);
    assert_eq!(
        w["socketMap"],
        json!({owner.id.clone(): "A", bob.id.clone(): "B"})
    );
    assert_eq!(w["call"], json!({"id": "c9"}));
    // Through text, into a new process with the same secrets.
    let text = serde_json::to_string(&snap).unwrap();
    let mut t2 = T::new();
    let n = t2.d.restore(serde_json::from_str(&text).unwrap()).unwrap();
    assert_eq!(n, 1);
    assert_eq!(t2.d.snapshot(), snap);
    t2.connect("B9");
    let out = t2.ev("B9", "re-attend", bob.with(json!({})));
    assert_eq!(
        payload(&out[1], "re-attendance-granted")["call"],
        json!({"id": "c9"})
    );
    let out = t2.ev(
        "C",
        "attend",
        json!({"workspace": {"token": owner.token, "pin": "1234"}}),
    );
    payload(&out[1], "attendance-granted");
    // Other secrets: the tokens no longer open anything.
    let mut t3 = T::with(WorkspacesConfig::with_secrets(b"fresh", "pepper"));
    t3.d.restore(snap).unwrap();
    assert_eq!(
        t3.ev("B", "re-attend", bob.with(json!({}))),
        alert_("B", ALERT_TOKEN)
    );
}

#[test]
fn restore_reads_the_original_format() {
    let mut t = T::new();
    let file = json!({
        "_Ab3dE9gH1j": {
            "id": "_Ab3dE9gH1j", "name": "Old", "avatar": "", "owner": "_Xy12345678",
            "created": 1621789642000u64, "token": "eyJ.old.token",
            "attendees": {"_Xy12345678": {"id": "_Xy12345678", "name": "O", "avatar": "", "socket": "s1"}},
            "socketMap": {"_Xy12345678": "s1"}
        }
    });
    assert_eq!(t.d.restore(file).unwrap(), 1);
    let w = &t.d.snapshot()["_Ab3dE9gH1j"];
    assert_eq!(
        w["attendees"]["_Xy12345678"],
        json!({"id": "_Xy12345678", "name": "O", "avatar": ""})
    );
    assert!(w.get("call").is_none());
    assert_eq!(t.d.restore(json!({})).unwrap(), 0);
    assert!(t.d.is_empty());
}

#[test]
fn restore_refuses_corrupt_input_and_keeps_the_table() {
    let mut t = T::new();
    let owner = t.created();
    let good = |f: &dyn Fn(&mut Map<String, Value>)| {
        let mut w = json!({"id": "_w1", "owner": "_o1", "token": "t", "created": 1, "name": "n", "avatar": "", "attendees": {}, "socketMap": {}});
        f(w.as_object_mut().unwrap());
        json!({"_w1": w})
    };
    let cases: Vec<(Value, &str)> = vec![
        (json!([]), "not a JSON object"),
        (json!({"_w1": 3}), "workspace \"_w1\": not an object"),
        (
            good(&|w| {
                w.insert("id".into(), json!("_w2"));
            }),
            "differs from its key",
        ),
        (
            good(&|w| {
                w.remove("token");
            }),
            "\"token\" is not a string",
        ),
        (
            good(&|w| {
                w.insert("owner".into(), json!(5));
            }),
            "\"owner\" is not a string",
        ),
        (
            good(&|w| {
                w.insert("attendees".into(), json!([]));
            }),
            "\"attendees\" is not an object",
        ),
        (
            good(&|w| {
                w.insert("attendees".into(), json!({"_a": {"name": "x"}}));
            }),
            "attendee \"_a\": \"id\" is not a string",
        ),
        (
            good(&|w| {
                w.insert("socketMap".into(), json!({"_a": 1}));
            }),
            "socketMap \"_a\" is not a string",
        ),
        (
            good(&|w| {
                w.insert("created".into(), json!("yesterday"));
            }),
            "\"created\" is not a number",
        ),
    ];
    let before = t.d.snapshot();
    let g = t.d.generation();
    for (input, msg) in cases {
        let e = t.d.restore(input.clone()).unwrap_err();
        assert!(e.contains(msg), "{input}: {e}");
    }
    assert_eq!(t.d.snapshot(), before);
    assert_eq!(t.d.generation(), g);
    assert!(t.d.snapshot().get(&owner.ws).is_some());
    // More workspaces than the limit.
    let mut small = T::with(WorkspacesConfig {
        max_workspaces: 0,
        ..cfg()
    });
    let e = small.d.restore(before).unwrap_err();
    assert!(e.contains("more than the limit of 0"), "{e}");
}

#[test]
fn generation_moves_only_on_changes() {
    let mut t = T::new();
    let owner = t.created();
    let g = t.d.generation();
    t.ev("A", "iceservers", json!({}));
    t.ev("A", "mic-toggle", owner.with(json!({"state": true})));
    t.ev("A", "busy", owner.with(json!({})));
    t.ev(
        "A",
        "attend",
        json!({"workspace": {"token": owner.token, "pin": "no"}}),
    );
    assert_eq!(t.d.generation(), g);
    t.ev(
        "A",
        "ring",
        owner.with(json!({"workspace": {"id": owner.ws, "call": {"id": "c"}}})),
    );
    assert_eq!(t.d.generation(), g + 1);
    t.ev("A", "hangup", owner.with(json!({})));
    assert_eq!(t.d.generation(), g + 2);
}
