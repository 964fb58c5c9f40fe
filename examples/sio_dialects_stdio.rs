//! The Socket.IO dialects (webRTWorkspaces, MewConnect v1) over stdin/stdout, one JSON object
//! per line, so that a Socket.IO 2 server written in another language can serve them. Used by
//! `tests/npm/socketio/bridge-server.cjs` (Node `socket.io` 2.5 as the layer) to run the
//! real-client tests against the dialects independently of sigyard's own Socket.IO layer.
//!
//! In: `{"op":"connect","sid","query":[[k,v],...],"now"}`, `{"op":"event","sid","event",
//! "args":[...],"now"}`, `{"op":"disconnect","sid","now"}`, `{"op":"tick","now"}`.
//! Out, one line per input line: `{"actions":[...],"deadline":<ms or null>}` with actions
//! `{"emit":{"to":{"socket":s}|{"room":r}|{"roomExcept":[r,s]},"event","args"}}`,
//! `{"error":{"sid","data"}}`, `{"join":{"sid","room"}}`, `{"leave":{"sid","room"}}`,
//! `{"disconnect":{"sid"}}`.
//!
//! A handshake whose query has `stage` or `connId` is MewConnect v1, any other
//! webRTWorkspaces (PROTOCOLS.md, decisions 1). Options come from the environment as for the
//! server (`SIGYARD_WORKSPACES_*`, `MAGICK_TOKEN`, `SALT_STRING`, `SIGYARD_MEW_V1_*`),
//! including `SIGYARD_WORKSPACES_STORAGE_FILE` (loaded at start, written after changes).

use serde_json::{json, Value};
use sigyard::config::{parse, Parsed};
use sigyard::proto::dialect::mewv1::{MewV1, MewV1Config};
use sigyard::proto::dialect::sio::{Action, Raw, SioCx, SioDialect, To};
use sigyard::proto::dialect::workspaces::Workspaces;
use sigyard::proto::dialect::{Cx, Env, IceServers, Locator, Random};
use sigyard::registry::{workspace_store, workspaces_config};
use std::collections::HashMap;
use std::io::{BufRead, Write};

struct StaticIce;

impl Env for StaticIce {
    fn ice_servers(&mut self, _user: &str) -> IceServers {
        let urls = (0..5).map(|i| match i {
            0 => "stun:stun.l.google.com:19302".to_string(),
            i => format!("stun:stun{i}.l.google.com:19302"),
        });
        IceServers {
            servers: Value::Array(urls.map(|u| json!({"url": u, "urls": u})).collect()),
            token: Value::Null,
        }
    }
}

/// The OS CSPRNG (ids are capabilities).
struct OsRandom;

impl Random for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        sigyard::csprng::fill(buf);
    }
}

fn unix_ms() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| d.as_millis() as u64)
}

fn to_json(a: &Action) -> Value {
    match a {
        Action::Emit { to, event, args } => {
            let to = match to {
                To::Socket(s) => json!({"socket": s}),
                To::Room(r) => json!({"room": r}),
                To::RoomExcept { room, except } => json!({"roomExcept": [room, except]}),
            };
            json!({"emit": {"to": to, "event": event, "args": args}})
        }
        Action::Error { sid, data } => json!({"error": {"sid": sid, "data": data}}),
        Action::Join { sid, room } => json!({"join": {"sid": sid, "room": room}}),
        Action::Leave { sid, room } => json!({"leave": {"sid": sid, "room": room}}),
        Action::Disconnect { sid } => json!({"disconnect": {"sid": sid}}),
    }
}

fn main() {
    let env = |k: &str| std::env::var(k).ok();
    let cfg = match parse(&[], &env) {
        Ok(Parsed::Run(c)) => c,
        Ok(_) => unreachable!("no arguments"),
        Err(e) => {
            eprintln!("sio_dialects_stdio: {e}");
            std::process::exit(2);
        }
    };
    let (wcfg, warnings) = workspaces_config(&cfg);
    for w in warnings {
        eprintln!("sio_dialects_stdio: {w}");
    }
    let mut workspaces = Workspaces::new(wcfg);
    // `--workspaces-storage-file`: load at start (a bad file stops the process with the
    // reason), then hand each changed snapshot to the background writer.
    let writer = cfg.workspaces.storage_file.as_ref().map(|path| {
        match workspace_store::load(path).and_then(|v| match v {
            Some(v) => workspaces.restore(v).map(|_| ()),
            None => Ok(()),
        }) {
            Ok(()) => workspace_store::Writer::spawn(path.clone()).expect("spawn the store writer"),
            Err(e) => {
                eprintln!("sio_dialects_stdio: {e}");
                std::process::exit(2);
            }
        }
    });
    let mut stored = workspaces.generation();
    let mut mew = MewV1::new(MewV1Config {
        pair_ttl_ms: u64::try_from(cfg.mew_v1.pair_ttl.as_millis()).unwrap_or(u64::MAX),
        max_pairs: cfg.mew_v1.max_pairs,
    });
    let mut is_mew: HashMap<String, bool> = HashMap::new();
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            eprintln!("sio_dialects_stdio: not JSON: {line}");
            std::process::exit(2);
        };
        let now = msg["now"].as_u64().unwrap_or(0);
        let sid = msg["sid"].as_str().unwrap_or_default().to_string();
        let mut out = Vec::new();
        let cx: &mut SioCx<'_> = &mut Cx {
            now,
            unix_ms: unix_ms(),
            here: Locator(0),
            rand: &mut OsRandom,
            env: &mut StaticIce,
            out: &mut out,
            direct: None,
        };
        match msg["op"].as_str() {
            Some("connect") => {
                let query: Vec<(String, String)> = msg["query"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| Some((p[0].as_str()?.into(), p[1].as_str()?.into())))
                    .collect();
                let m = query.iter().any(|(k, _)| k == "stage" || k == "connId");
                is_mew.insert(sid.clone(), m);
                match m {
                    true => mew.on_connect(cx, &sid, &query),
                    false => workspaces.on_connect(cx, &sid, &query),
                }
            }
            Some("event") => {
                let event = msg["event"].as_str().unwrap_or_default();
                let args: Vec<Raw> = msg["args"]
                    .as_array()
                    .map(|a| a.iter().map(Raw::from_value).collect())
                    .unwrap_or_default();
                match is_mew.get(&sid) {
                    Some(true) => mew.on_event(cx, &sid, event, &args),
                    Some(false) => workspaces.on_event(cx, &sid, event, &args),
                    None => {}
                }
            }
            Some("disconnect") => match is_mew.remove(&sid) {
                Some(true) => mew.on_disconnect(cx, &sid),
                Some(false) => workspaces.on_disconnect(cx, &sid),
                None => {}
            },
            Some("tick") => mew.on_timeout(cx),
            _ => {
                eprintln!("sio_dialects_stdio: unknown op: {line}");
                std::process::exit(2);
            }
        }
        if let Some(w) = &writer {
            if workspaces.generation() != stored {
                stored = workspaces.generation();
                w.submit(stored, workspaces.snapshot());
            }
        }
        let actions: Vec<Value> = out.iter().map(to_json).collect();
        let reply = json!({"actions": actions, "deadline": mew.poll_timeout()});
        if writeln!(stdout, "{reply}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            break;
        }
    }
    if let Some(w) = &writer {
        if let Err(e) = w.flush(std::time::Duration::from_secs(10)) {
            eprintln!("sio_dialects_stdio: {e}");
        }
    }
}
