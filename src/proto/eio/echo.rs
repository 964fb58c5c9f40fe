//! A small rooms dialect for exercising the Socket.IO layer (`--echo`, handshake query
//! `echo`): it answers every shape of [`Action`] a real dialect uses.
//!
//! | C→S event | effect |
//! |---|---|
//! | (connect) | `welcome` `{sid, query}` to the socket |
//! | `echo` args… | `echo` args… back to the socket |
//! | `join` room | joins, then `joined` room to the socket |
//! | `leave` room | leaves |
//! | `to` room, args… | `msg` args… to the room except the sender |
//! | `all` room, args… | `msg` args… to the room including the sender |
//! | `direct` sid, args… | `msg` args… to that socket (`io.to(sid)`, its own room) |
//! | `fail` | a Socket.IO error packet `"boom"` |
//! | `bye` | server-side disconnect |
//! | (disconnect) | `gone` sid to the room `watchers` |

use crate::proto::dialect::sio::{Action, Raw, SioCx, SioDialect, To};
use serde_json::{json, Value};

#[derive(Default)]
pub struct Echo;

/// The key its sessions are placed by, for a handshake that asks for it (query `echo`).
pub fn claims(query: &[(String, String)]) -> Option<String> {
    super::query_get(query, "echo").map(|_| "sio/echo".to_string())
}

/// A string argument's text.
fn text(v: Option<&Raw>) -> Option<String> {
    serde_json::from_str(v?.get()).ok()
}

impl SioDialect for Echo {
    fn on_connect(&mut self, cx: &mut SioCx<'_>, sid: &str, query: &[(String, String)]) {
        let out = &mut *cx.out;
        let q: serde_json::Map<String, Value> = query
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        out.push(Action::Emit {
            to: To::Socket(sid.into()),
            event: "welcome".into(),
            args: vec![Raw::from_value(&json!({"sid": sid, "query": q}))],
        });
    }

    fn on_event(&mut self, cx: &mut SioCx<'_>, sid: &str, event: &str, args: &[Raw]) {
        let ice = (event == "ice").then(|| cx.env.ice_servers(sid).servers);
        let out = &mut *cx.out;
        let me = || To::Socket(sid.into());
        let rest = || args.iter().skip(1).cloned().collect::<Vec<_>>();
        match event {
            "echo" => out.push(Action::Emit {
                to: me(),
                event: "echo".into(),
                args: args.to_vec(),
            }),
            "join" => {
                if let Some(room) = text(args.first()) {
                    out.push(Action::Join {
                        sid: sid.into(),
                        room: room.clone(),
                    });
                    out.push(Action::Emit {
                        to: me(),
                        event: "joined".into(),
                        args: vec![Raw::from_value(&Value::String(room))],
                    });
                }
            }
            "leave" => {
                if let Some(room) = text(args.first()) {
                    out.push(Action::Leave {
                        sid: sid.into(),
                        room,
                    });
                }
            }
            "to" | "all" | "direct" => {
                if let Some(room) = text(args.first()) {
                    let to = match event {
                        "to" => To::RoomExcept {
                            room,
                            except: sid.into(),
                        },
                        "all" => To::Room(room),
                        _ => To::Socket(room),
                    };
                    out.push(Action::Emit {
                        to,
                        event: "msg".into(),
                        args: rest(),
                    });
                }
            }
            "ice" => out.push(Action::Emit {
                to: me(),
                event: "ice".into(),
                args: vec![Raw::from_value(&ice.unwrap_or_default())],
            }),
            "fail" => out.push(Action::Error {
                sid: sid.into(),
                data: json!("boom"),
            }),
            "bye" => out.push(Action::Disconnect { sid: sid.into() }),
            _ => {}
        }
    }

    fn on_disconnect(&mut self, cx: &mut SioCx<'_>, sid: &str) {
        cx.out.push(Action::Emit {
            to: To::Room("watchers".into()),
            event: "gone".into(),
            args: vec![Raw::from_value(&Value::from(sid))],
        });
    }
}
