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
use sigyard::net::workspace_store;
use sigyard::proto::dialect::mewv1::{MewV1, MewV1Config};
use sigyard::proto::dialect::sio::{Action, Dialect, Env, To};
use sigyard::proto::dialect::workspaces::{Workspaces, WorkspacesConfig};
use std::collections::HashMap;
use std::io::{BufRead, Write};

struct StaticIce;

impl Env for StaticIce {
    fn ice_servers(&mut self, _user: &str) -> Value {
        let urls = (0..5).map(|i| match i {
            0 => "stun:stun.l.google.com:19302".to_string(),
            i => format!("stun:stun{i}.l.google.com:19302"),
        });
        Value::Array(urls.map(|u| json!({"url": u, "urls": u})).collect())
    }
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
    let (wcfg, warnings) = WorkspacesConfig::from_options(&cfg.workspaces);
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
    let mut mew = MewV1::new(MewV1Config::from_options(&cfg.mew_v1));
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
        let env = &mut StaticIce;
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
                    true => mew.on_connect(now, &sid, &query, env, &mut out),
                    false => workspaces.on_connect(now, &sid, &query, env, &mut out),
                }
            }
            Some("event") => {
                let event = msg["event"].as_str().unwrap_or_default();
                let args = msg["args"].as_array().cloned().unwrap_or_default();
                match is_mew.get(&sid) {
                    Some(true) => mew.on_event(now, &sid, event, &args, env, &mut out),
                    Some(false) => workspaces.on_event(now, &sid, event, &args, env, &mut out),
                    None => {}
                }
            }
            Some("disconnect") => match is_mew.remove(&sid) {
                Some(true) => mew.on_disconnect(now, &sid, env, &mut out),
                Some(false) => workspaces.on_disconnect(now, &sid, env, &mut out),
                None => {}
            },
            Some("tick") => mew.on_tick(now, env, &mut out),
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
        let reply = json!({"actions": actions, "deadline": mew.next_deadline()});
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
