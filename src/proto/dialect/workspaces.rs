//! webRTWorkspaces (PROTOCOLS.md §5, with the §5.7 and §5.9 recommendations) as a pure
//! [`Dialect`] on the Socket.IO layer.
//!
//! Owns: the workspace table (workspaces, their attendees, the attendee → socket map, the
//! current call), every event of §5.6 with its replies and alerts in the original's emission
//! order (§5.9.6), capacity (`full`, then a server-side disconnect when
//! [`WorkspacesConfig::disconnect_on_full`]), the tokens ([`token`]) and the persisted form
//! of the table ([`Workspaces::snapshot`] / [`Workspaces::restore`], the original's
//! `json_storage_file` format).
//!
//! Does not own: sockets, rooms and transports (the layer applies the [`Action`]s), the ICE
//! server list ([`Env::ice_servers`]), writing the snapshot to disk (the shell watches
//! [`Workspaces::generation`]).
//!
//! Decisions beyond the original (§5.7, §5.9 RECOMMEND and production choices):
//! - `icecandidate` and `negotiation` are access-checked with `broadcaster.id` as the caller.
//! - `re-attend` also points the socket map at the new socket; the `socket` field is echoed
//!   but not stored.
//! - `create` with a client-supplied id that exists gets a fresh id; `attend` with the
//!   owner's id as its client-supplied attendee id gets a fresh id (no owner take-over by
//!   whoever knows the workspace token and PIN).
//! - `re-attend` by someone who is no longer an attendee counts against the capacity.
//! - Missing objects in a payload count as `{}` (defaults or the documented alerts, never a
//!   crash); `attendees` and unknown events are ignored; a socket's disconnect changes
//!   nothing (an attendee stays for `re-attend`).

pub mod token;

use super::sio::{Action, Members, ObjectWriter, Raw, SioCx, SioDialect, To};
use super::Random;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use token::{BindingError, Keys};

pub const ALERT_TOKEN_ATTEND: &str = "Please provide a valid workspace access token.";
pub const ALERT_WRONG_PIN: &str = "This workspace is protected with a PIN. Wrong PIN provided.";
pub const ALERT_WORKSPACE_ID: &str = "Please provide a valid workspace ID.";
pub const ALERT_ATTENDEE_ID: &str = "Please provide a valid attendee ID.";
pub const ALERT_TOKEN: &str = "Please provide a valid workspace token.";
pub const ALERT_INVALID_ACCESS: &str = "Invalid access token. Access is not allowed.";
pub const ALERT_UNAUTHORIZED: &str = "Anauthorized operation. Abort.";
pub const ALERT_OWNER_LEAVE: &str = "Workspace owner cannot leave. Only shutdown is allowed.";
pub const ALERT_OWNER_KICK: &str = "Workspace owner cannot be kicked out of workspace.";
/// `create` when the table already holds [`WorkspacesConfig::max_workspaces`].
pub const ALERT_TOO_MANY: &str = "Too many workspaces on this server. Try again later.";

/// Length of the random part of a generated id (`WORKSPACE_ID_LEN`).
pub const ID_LEN: usize = 10;

/// Options of the dialect (the `workspaces-*` configuration options).
#[derive(Clone)]
pub struct WorkspacesConfig {
    /// JWT HMAC secret (`MAGICK_TOKEN`).
    pub secret: Vec<u8>,
    /// The pepper inside every signing input (`SALT_STRING`).
    pub salt: String,
    /// `max_capacity_of_workspace`: attendees per workspace, owner included.
    pub capacity: usize,
    /// Disconnect a socket right after telling it `full`.
    pub disconnect_on_full: bool,
    /// Name of a workspace created without one.
    pub untitled_workspace: String,
    /// Name of an attendee without one.
    pub anonymous_attendee: String,
    /// PBKDF2-HMAC-SHA256 iterations of a new workspace PIN hash.
    pub pin_iterations: u32,
    /// Workspaces kept at most; `create` beyond it is refused with an alert.
    pub max_workspaces: usize,
}

impl WorkspacesConfig {
    /// The recommended defaults (§5.3) with the given secrets.
    pub fn with_secrets(secret: &[u8], salt: &str) -> WorkspacesConfig {
        WorkspacesConfig {
            secret: secret.to_vec(),
            salt: salt.to_string(),
            capacity: 5,
            disconnect_on_full: true,
            untitled_workspace: "Anonumous Workspace".to_string(),
            anonymous_attendee: "Anonumous".to_string(),
            pin_iterations: 100_000,
            max_workspaces: 100_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Attendee {
    id: String,
    name: String,
    avatar: String,
}

impl Attendee {
    fn to_json(&self) -> Value {
        json!({"id": self.id, "name": self.name, "avatar": self.avatar})
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Workspace {
    id: String,
    name: String,
    avatar: String,
    owner: String,
    created: Value,
    token: String,
    attendees: BTreeMap<String, Attendee>,
    socket_map: BTreeMap<String, String>,
    call: Option<Value>,
}

impl Workspace {
    /// `{id, name, avatar, owner, created, token}`: the public part.
    fn public(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("id".into(), self.id.clone().into());
        m.insert("name".into(), self.name.clone().into());
        m.insert("avatar".into(), self.avatar.clone().into());
        m.insert("owner".into(), self.owner.clone().into());
        m.insert("created".into(), self.created.clone());
        m.insert("token".into(), self.token.clone().into());
        m
    }

    fn attendees_json(&self) -> Value {
        let m: Map<String, Value> = self
            .attendees
            .iter()
            .map(|(k, a)| (k.clone(), a.to_json()))
            .collect();
        Value::Object(m)
    }

    /// `ws.call ? ws.call : null`.
    fn call_or_null(&self) -> Value {
        match &self.call {
            Some(c) if truthy(c) => c.clone(),
            _ => Value::Null,
        }
    }

    fn to_json(&self) -> Value {
        let mut m = self.public();
        m.insert("attendees".into(), self.attendees_json());
        let sm: Map<String, Value> = self
            .socket_map
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect();
        m.insert("socketMap".into(), Value::Object(sm));
        if let Some(c) = &self.call {
            m.insert("call".into(), c.clone());
        }
        Value::Object(m)
    }

    fn from_json(key: &str, v: &Value) -> Result<Workspace, String> {
        let at = |what: &str| format!("workspace {key:?}: {what}");
        let Value::Object(m) = v else {
            return Err(at("not an object"));
        };
        let string = |k: &str, required: bool| -> Result<String, String> {
            match m.get(k) {
                Some(Value::String(s)) => Ok(s.clone()),
                None if !required => Ok(String::new()),
                _ => Err(at(&format!("{k:?} is not a string"))),
            }
        };
        let id = string("id", true)?;
        if id != key {
            return Err(at(&format!("its id {id:?} differs from its key")));
        }
        let mut attendees = BTreeMap::new();
        match m.get("attendees") {
            Some(Value::Object(list)) => {
                for (k, a) in list {
                    let field = |f: &str| match a.get(f) {
                        Some(Value::String(s)) => Ok(s.clone()),
                        None if f != "id" => Ok(String::new()),
                        _ => Err(at(&format!("attendee {k:?}: {f:?} is not a string"))),
                    };
                    let attendee = Attendee {
                        id: field("id")?,
                        name: field("name")?,
                        avatar: field("avatar")?,
                    };
                    attendees.insert(k.clone(), attendee);
                }
            }
            None => {}
            Some(_) => return Err(at("\"attendees\" is not an object")),
        }
        let mut socket_map = BTreeMap::new();
        match m.get("socketMap") {
            Some(Value::Object(list)) => {
                for (k, s) in list {
                    match s {
                        Value::String(s) => socket_map.insert(k.clone(), s.clone()),
                        _ => return Err(at(&format!("socketMap {k:?} is not a string"))),
                    };
                }
            }
            None => {}
            Some(_) => return Err(at("\"socketMap\" is not an object")),
        }
        let created = match m.get("created") {
            Some(n @ Value::Number(_)) => n.clone(),
            None => Value::from(0),
            Some(_) => return Err(at("\"created\" is not a number")),
        };
        Ok(Workspace {
            id,
            name: string("name", false)?,
            avatar: string("avatar", false)?,
            owner: string("owner", true)?,
            created,
            token: string("token", true)?,
            attendees,
            socket_map,
            call: m.get("call").cloned(),
        })
    }
}

/// The workspace table of one server.
pub struct Workspaces {
    cfg: WorkspacesConfig,
    keys: Keys,
    /// Wall-clock milliseconds of the call being handled (from its context).
    now_ms: u64,
    workspaces: HashMap<String, Workspace>,
    /// Sockets currently connected to this dialect.
    connected: HashSet<String>,
    generation: u64,
}

impl Workspaces {
    pub fn new(cfg: WorkspacesConfig) -> Workspaces {
        Workspaces {
            keys: Keys::new(&cfg.secret, &cfg.salt),
            cfg,
            now_ms: 0,
            workspaces: HashMap::new(),
            connected: HashSet::new(),
            generation: 0,
        }
    }

    /// Bumped on every change of persisted state: write a snapshot when it moved.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of workspaces.
    pub fn len(&self) -> usize {
        self.workspaces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.workspaces.is_empty()
    }

    /// The whole persisted state, in the original's `json_storage_file` format:
    /// `{"<workspace id>": {id, name, avatar, owner, created, token, attendees, socketMap, call?}}`.
    pub fn snapshot(&self) -> Value {
        let mut ids: Vec<&String> = self.workspaces.keys().collect();
        ids.sort();
        let m: Map<String, Value> = ids
            .into_iter()
            .map(|id| (id.clone(), self.workspaces[id].to_json()))
            .collect();
        Value::Object(m)
    }

    /// Replaces the table with a snapshot; returns the number of workspaces loaded. On error
    /// the table is unchanged and the message names the offending workspace and field.
    pub fn restore(&mut self, snapshot: Value) -> Result<usize, String> {
        let Value::Object(m) = snapshot else {
            return Err("the workspace store is not a JSON object".to_string());
        };
        if m.len() > self.cfg.max_workspaces {
            return Err(format!(
                "the workspace store holds {} workspaces, more than the limit of {}",
                m.len(),
                self.cfg.max_workspaces
            ));
        }
        let mut table = HashMap::with_capacity(m.len());
        for (key, v) in &m {
            table.insert(key.clone(), Workspace::from_json(key, v)?);
        }
        self.workspaces = table;
        self.generation += 1;
        Ok(self.workspaces.len())
    }

    fn changed(&mut self) {
        self.generation += 1;
    }

    fn now_s(&self) -> u64 {
        self.now_ms / 1000
    }

    fn access_token(&self, ws: &str, attendee: &str, owner: &str) -> String {
        let binding = self.keys.binding(ws, attendee);
        let claims = [("id", ws), ("owner", owner), ("singningToken", &binding)];
        self.keys.sign(&claims, self.now_s())
    }

    /// `checkAccessToken(data, ownerOnly)` (§5.5), with `caller` the field naming the
    /// calling attendee (`attendee`, or `broadcaster` for `icecandidate`/`negotiation`).
    fn check_access(
        &self,
        data: &Value,
        caller: &str,
        owner_only: bool,
    ) -> Result<(), &'static str> {
        let Some(ws) = underscore_id(&data["workspace"]) else {
            return Err(ALERT_WORKSPACE_ID);
        };
        let Some(attendee) = underscore_id(&data[caller]) else {
            return Err(ALERT_ATTENDEE_ID);
        };
        let claims = data["accessToken"]
            .as_str()
            .and_then(|t| self.keys.verify(t, self.now_s()))
            .ok_or(ALERT_TOKEN)?;
        if claims.get("id").and_then(Value::as_str) != Some(ws) {
            return Err(ALERT_INVALID_ACCESS);
        }
        let binding = claims
            .get("singningToken")
            .and_then(Value::as_str)
            .ok_or(ALERT_TOKEN)?;
        match self.keys.check_binding(ws, attendee, binding) {
            Ok(()) => {}
            Err(BindingError::Malformed | BindingError::Mismatch) => {
                return Err(ALERT_INVALID_ACCESS)
            }
        }
        if owner_only && claims.get("owner").and_then(Value::as_str) != Some(attendee) {
            return Err(ALERT_UNAUTHORIZED);
        }
        Ok(())
    }

    /// Builds an attendee from a payload (§5.4 id rules, defaults of §5.3).
    fn attendee(&self, a: &Value, rand: &mut dyn Random) -> Attendee {
        Attendee {
            id: supplied_id(a).unwrap_or_else(|| random_id(rand)),
            name: non_empty(a, "name").unwrap_or_else(|| self.cfg.anonymous_attendee.clone()),
            avatar: non_empty(a, "avatar").unwrap_or_default(),
        }
    }

    /// `io.to(ws.socketMap[id])`: the attendee's socket, if it is connected.
    fn direct(&self, ws: &Workspace, attendee: &Value) -> Option<To> {
        let sid = ws.socket_map.get(attendee.as_str()?)?;
        self.connected
            .contains(sid)
            .then(|| To::Socket(sid.clone()))
    }

    fn full(&self, sid: &str, out: &mut Vec<Action>) {
        emit(out, To::Socket(sid.into()), "full", json!({}));
        if self.cfg.disconnect_on_full {
            out.push(Action::Disconnect { sid: sid.into() });
        }
    }

    fn on_create(&mut self, sid: &str, data: &Value, rand: &mut dyn Random, out: &mut Vec<Action>) {
        if self.workspaces.len() >= self.cfg.max_workspaces {
            alert(out, sid, ALERT_TOO_MANY);
            return;
        }
        let w = &data["workspace"];
        let owner = self.attendee(&data["attendee"], rand);
        let id = match supplied_id(w) {
            Some(id) if !self.workspaces.contains_key(&id) => id,
            _ => loop {
                let id = random_id(rand);
                if !self.workspaces.contains_key(&id) {
                    break id;
                }
            },
        };
        let pin = non_empty(w, "pin").unwrap_or_default();
        let hash = token::pin_hash(
            &self.keys.signing_input(&id, &pin),
            self.cfg.pin_iterations,
            rand,
        );
        let ws = Workspace {
            token: self
                .keys
                .sign(&[("id", &id), ("singningToken", &hash)], self.now_s()),
            name: non_empty(w, "name").unwrap_or_else(|| self.cfg.untitled_workspace.clone()),
            avatar: non_empty(w, "avatar").unwrap_or_default(),
            owner: owner.id.clone(),
            created: Value::from(self.now_ms),
            attendees: BTreeMap::from([(owner.id.clone(), owner.clone())]),
            socket_map: BTreeMap::from([(owner.id.clone(), sid.to_string())]),
            call: None,
            id,
        };
        let reply = json!({
            "workspace": Value::Object(ws.public()),
            "attendee": owner.to_json(),
            "accessToken": self.access_token(&ws.id, &owner.id, &ws.owner),
            "nonce": nonce(data),
        });
        emit(out, To::Socket(sid.into()), "created", reply);
        out.push(Action::Join {
            sid: sid.into(),
            room: ws.id.clone(),
        });
        self.workspaces.insert(ws.id.clone(), ws);
        self.changed();
    }

    fn on_destroy(&mut self, sid: &str, data: &Value, out: &mut Vec<Action>) {
        if let Err(text) = self.check_access(data, "attendee", true) {
            return alert(out, sid, text);
        }
        let id = workspace_id(data);
        if self.workspaces.remove(&id).is_some() {
            self.changed();
        }
        emit(out, others(&id, sid), "destroyed", json!({}));
        emit(out, To::Socket(sid.into()), "destroyed", json!({}));
        out.push(Action::Leave {
            sid: sid.into(),
            room: id,
        });
    }

    fn on_attend(&mut self, sid: &str, data: &Value, rand: &mut dyn Random, out: &mut Vec<Action>) {
        let w = &data["workspace"];
        let Some(tok) = w["token"].as_str().filter(|t| !t.is_empty()) else {
            return alert(out, sid, ALERT_TOKEN_ATTEND);
        };
        let pin = non_empty(w, "pin").unwrap_or_default();
        let granted = self.keys.verify(tok, self.now_s()).and_then(|claims| {
            let id = claims.get("id")?.as_str()?.to_string();
            let hash = claims.get("singningToken")?.as_str()?;
            token::pin_verify(&self.keys.signing_input(&id, &pin), hash).then_some(id)
        });
        let Some(id) = granted else {
            return alert(out, sid, ALERT_WRONG_PIN);
        };
        let Some(ws) = self.workspaces.get(&id) else {
            return destroyed(out, sid);
        };
        let mut attendee = self.attendee(&data["attendee"], rand);
        if attendee.id == ws.owner {
            attendee.id = random_id(rand);
        }
        if ws.attendees.len() >= self.cfg.capacity {
            return self.full(sid, out);
        }
        out.push(Action::Join {
            sid: sid.into(),
            room: id.clone(),
        });
        let access = self.access_token(&id, &attendee.id, &ws.owner);
        let ws = self.workspaces.get_mut(&id).expect("looked up above");
        ws.attendees.insert(attendee.id.clone(), attendee.clone());
        ws.socket_map.insert(attendee.id.clone(), sid.to_string());
        let mut public = ws.public();
        public.insert("call".into(), ws.call_or_null());
        let reply = json!({
            "workspace": Value::Object(public),
            "attendee": attendee.to_json(),
            "attendees": ws.attendees_json(),
            "accessToken": access,
            "nonce": nonce(data),
        });
        emit(out, To::Socket(sid.into()), "attendance-granted", reply);
        emit(out, others(&id, sid), "attend", attendee.to_json());
        self.changed();
    }

    fn on_reattend(
        &mut self,
        sid: &str,
        data: &Value,
        rand: &mut dyn Random,
        out: &mut Vec<Action>,
    ) {
        if let Err(text) = self.check_access(data, "attendee", false) {
            return alert(out, sid, text);
        }
        let id = workspace_id(data);
        let Some(ws) = self.workspaces.get(&id) else {
            return destroyed(out, sid);
        };
        let attendee = self.attendee(&data["attendee"], rand);
        if !ws.attendees.contains_key(&attendee.id) && ws.attendees.len() >= self.cfg.capacity {
            return self.full(sid, out);
        }
        out.push(Action::Join {
            sid: sid.into(),
            room: id.clone(),
        });
        let access = self.access_token(&id, &attendee.id, &ws.owner);
        let ws = self.workspaces.get_mut(&id).expect("looked up above");
        ws.attendees.insert(attendee.id.clone(), attendee.clone());
        ws.socket_map.insert(attendee.id.clone(), sid.to_string());
        let mut echoed = attendee.to_json();
        echoed["socket"] = Value::from(sid);
        let reply = json!({
            "workspace": Value::Object(ws.public()),
            "attendee": echoed,
            "attendees": ws.attendees_json(),
            "accessToken": access,
            "nonce": nonce(data),
            "call": ws.call_or_null(),
        });
        emit(out, To::Socket(sid.into()), "re-attendance-granted", reply);
        emit(out, others(&id, sid), "attend", echoed);
        self.changed();
    }

    fn on_leave(&mut self, sid: &str, data: &Value, out: &mut Vec<Action>) {
        if let Err(text) = self.check_access(data, "attendee", false) {
            return alert(out, sid, text);
        }
        let id = workspace_id(data);
        let attendee = data["attendee"]["id"].as_str().unwrap_or_default();
        let Some(ws) = self.workspaces.get_mut(&id) else {
            return destroyed(out, sid);
        };
        if ws.owner == attendee {
            return alert(out, sid, ALERT_OWNER_LEAVE);
        }
        emit(out, others(&id, sid), "leave", data["attendee"].clone());
        out.push(Action::Leave {
            sid: sid.into(),
            room: id.clone(),
        });
        ws.attendees.remove(attendee);
        ws.socket_map.remove(attendee);
        self.changed();
    }

    fn on_kick(&mut self, sid: &str, data: &Value, out: &mut Vec<Action>) {
        if let Err(text) = self.check_access(data, "attendee", true) {
            return alert(out, sid, text);
        }
        let id = workspace_id(data);
        let Some(ws) = self.workspaces.get(&id) else {
            return destroyed(out, sid);
        };
        let kicked = data
            .get("kickedAttendee")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let kicked_id = kicked["id"].as_str();
        if kicked_id == Some(ws.owner.as_str()) {
            return alert(out, sid, ALERT_OWNER_KICK);
        }
        emit(out, To::Socket(sid.into()), "kicked", kicked.clone());
        emit(out, others(&id, sid), "kicked", kicked.clone());
        if let Some(To::Socket(target)) = self.direct(ws, &kicked["id"]) {
            out.push(Action::Leave {
                sid: target,
                room: id.clone(),
            });
        }
        if let Some(k) = kicked_id {
            let ws = self.workspaces.get_mut(&id).expect("looked up above");
            let removed = ws.attendees.remove(k).is_some() | ws.socket_map.remove(k).is_some();
            if removed {
                self.changed();
            }
        }
    }

    /// The events that pass the access check and need an existing workspace; returns the
    /// workspace id when both hold (else the alert or `destroyed` is already out).
    fn checked(
        &self,
        sid: &str,
        data: &Value,
        caller: &str,
        out: &mut Vec<Action>,
    ) -> Option<String> {
        if let Err(text) = self.check_access(data, caller, false) {
            alert(out, sid, text);
            return None;
        }
        let id = data["workspace"]["id"].as_str().unwrap_or_default();
        if !self.workspaces.contains_key(id) {
            destroyed(out, sid);
            return None;
        }
        Some(id.to_string())
    }

    /// A call event, relayed with the sender's values as sent (`sent`: its members).
    fn on_call_event(
        &mut self,
        sid: &str,
        event: &str,
        data: &Value,
        sent: &Members,
        out: &mut Vec<Action>,
    ) {
        let caller = match event {
            "icecandidate" | "negotiation" => "broadcaster",
            _ => "attendee",
        };
        let Some(id) = self.checked(sid, data, caller, out) else {
            return;
        };
        let ws = &self.workspaces[&id];
        let mut m = ObjectWriter::new();
        let to = match event {
            "ring" => {
                m.raw("workspace", sent.raw("workspace"))
                    .raw("caller", sent.raw("attendee"))
                    .raw("offer", sent.raw("offer"))
                    .raw("call", sent.raw("call"));
                put_nonce(&mut m, data, sent);
                let to = self.direct(ws, &data["callee"]["id"]);
                let call = data["workspace"].get("call").cloned();
                let ws = self.workspaces.get_mut(&id).expect("checked above");
                if ws.call != call {
                    ws.call = call;
                    self.changed();
                }
                to
            }
            "answer" => {
                m.raw("workspace", sent.raw("workspace"))
                    .raw("callee", sent.raw("attendee"))
                    .raw("answer", sent.raw("answer"))
                    .raw("call", sent.raw("call"));
                put_nonce(&mut m, data, sent);
                self.direct(ws, &data["caller"]["id"])
            }
            "busy" => {
                m.raw("workspace", sent.raw("workspace"))
                    .raw("callee", sent.raw("attendee"))
                    .raw("call", sent.raw("call"));
                Some(others(&id, sid))
            }
            "hangup" => {
                m.raw("attendee", sent.raw("attendee"))
                    .raw("call", sent.raw("call"));
                let ws = self.workspaces.get_mut(&id).expect("checked above");
                if ws.call.take().is_some() {
                    self.changed();
                }
                Some(others(&id, sid))
            }
            "icecandidate" => {
                // `attendee: {id: data.attendee.id}`
                let target = Members::of(sent.raw("attendee"));
                let attendee = ObjectWriter::new().raw("id", target.raw("id")).finish();
                m.raw("attendee", Some(&*attendee))
                    .raw("broadcaster", sent.raw("broadcaster"))
                    .raw("candidate", sent.raw("candidate"));
                self.direct(ws, &data["attendee"]["id"])
            }
            "negotiation" => {
                m.raw("attendee", sent.raw("broadcaster"))
                    .raw("message", sent.raw("message"));
                self.direct(ws, &data["attendee"]["id"])
            }
            // mic-toggle, cam-toggle
            _ => {
                m.raw("attendee", sent.raw("attendee"))
                    .raw("state", sent.raw("state"));
                Some(others(&id, sid))
            }
        };
        if let Some(to) = to {
            emit_raw(out, to, event, m.finish());
        }
    }
}

/// The key its sessions are placed by: every webRTWorkspaces socket meets on one instance (a
/// handshake that is no other dialect's is this one's).
pub fn claims(_query: &[(String, String)]) -> Option<String> {
    Some("sio/workspaces".to_string())
}

impl SioDialect for Workspaces {
    fn on_connect(&mut self, cx: &mut SioCx<'_>, sid: &str, _query: &[(String, String)]) {
        self.now_ms = cx.unix_ms;
        self.connected.insert(sid.to_string());
    }

    fn on_event(&mut self, cx: &mut SioCx<'_>, sid: &str, event: &str, args: &[Raw]) {
        self.now_ms = cx.unix_ms;
        let data = &args.first().map_or(Value::Null, Raw::value);
        let (rand, out) = (&mut *cx.rand, &mut *cx.out);
        match event {
            "iceservers" => emit(
                out,
                To::Socket(sid.into()),
                "iceservers",
                cx.env.ice_servers(sid).servers,
            ),
            "create" => self.on_create(sid, data, rand, out),
            "destroy" => self.on_destroy(sid, data, out),
            "attend" => self.on_attend(sid, data, rand, out),
            "re-attend" => self.on_reattend(sid, data, rand, out),
            "leave" => self.on_leave(sid, data, out),
            "kick" => self.on_kick(sid, data, out),
            "ring" | "answer" | "busy" | "hangup" | "icecandidate" | "negotiation"
            | "mic-toggle" | "cam-toggle" => {
                let sent = args.first().map(Raw::members).unwrap_or_default();
                self.on_call_event(sid, event, data, &sent, out)
            }
            // `attendees` has no handler in the original; unknown events are ignored too.
            _ => {}
        }
    }

    fn on_disconnect(&mut self, cx: &mut SioCx<'_>, sid: &str) {
        self.now_ms = cx.unix_ms;
        self.connected.remove(sid);
    }
}

/// An event with one argument the server makes.
fn emit(out: &mut Vec<Action>, to: To, event: &str, arg: Value) {
    emit_raw(out, to, event, Raw::from_value(&arg));
}

fn emit_raw(out: &mut Vec<Action>, to: To, event: &str, arg: Raw) {
    out.push(Action::Emit {
        to,
        event: event.to_string(),
        args: vec![arg],
    });
}

fn alert(out: &mut Vec<Action>, sid: &str, text: &str) {
    emit(out, To::Socket(sid.into()), "alert", Value::from(text));
}

fn destroyed(out: &mut Vec<Action>, sid: &str) {
    emit(out, To::Socket(sid.into()), "destroyed", json!({}));
}

/// `socket.to(workspaceId)`: the workspace's room except the sender.
fn others(room: &str, sid: &str) -> To {
    To::RoomExcept {
        room: room.to_string(),
        except: sid.to_string(),
    }
}

/// JavaScript truthiness of a JSON value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// `data.nonce ? data.nonce : ''`.
fn nonce(data: &Value) -> Value {
    match data.get("nonce") {
        Some(n) if truthy(n) => n.clone(),
        _ => Value::from(""),
    }
}

/// `nonce: data.nonce ? data.nonce : ''`, the nonce as sent.
fn put_nonce(m: &mut ObjectWriter, data: &Value, sent: &Members) {
    match data.get("nonce") {
        Some(n) if truthy(n) => m.raw("nonce", sent.raw("nonce")),
        _ => m.value("nonce", &Value::from("")),
    };
}

/// `o[k]` if it is a non-empty string.
fn non_empty(o: &Value, k: &str) -> Option<String> {
    o[k].as_str().filter(|s| !s.is_empty()).map(str::to_string)
}

/// `o.id` if it is a string longer than 2 starting with `_` (used as is, §5.4).
fn supplied_id(o: &Value) -> Option<String> {
    o["id"]
        .as_str()
        .filter(|s| s.len() > 2 && s.starts_with('_'))
        .map(str::to_string)
}

/// `o.id` if it is a non-empty string starting with `_` (the access check's rule).
fn underscore_id(o: &Value) -> Option<&str> {
    o["id"].as_str().filter(|s| s.starts_with('_'))
}

/// `"_"` + [`ID_LEN`] random alphanumerics.
pub fn random_id(rand: &mut dyn Random) -> String {
    const ALNUM: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut id = String::with_capacity(ID_LEN + 1);
    id.push('_');
    while id.len() < ID_LEN + 1 {
        let mut buf = [0u8; 16];
        rand.fill(&mut buf);
        // 248 = 4 * 62: rejecting larger bytes keeps every character equally likely.
        for b in buf.into_iter().filter(|&b| b < 248) {
            if id.len() < ID_LEN + 1 {
                id.push(char::from(ALNUM[usize::from(b % 62)]));
            }
        }
    }
    id
}

#[cfg(test)]
mod tests;

/// The `workspace.id` of an event's payload (empty when missing or not a string).
fn workspace_id(data: &Value) -> String {
    data["workspace"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}
