//! `/echo` and `/echo/<key>` (with `--echo`): every message comes back unchanged, with its
//! type. For conformance testing (the Autobahn cases) and benchmarks. A key places the
//! connection on the instance owning it, so every connection with one key shares it.

use super::{upgrade_required, Answer, Cx, Dialect, Handle, Message, Placement, Random};
use crate::proto::http::{RequestHead, Response};

#[derive(Debug, Default)]
pub struct Echo;

/// The key of an `/echo/<key>` path: `None` for `/echo` itself, `Err` for a path that is not
/// the endpoint's (a key with a `/`).
fn key(path: &str) -> Result<Option<&str>, ()> {
    match path {
        "/echo" | "/echo/" => Ok(None),
        p => match p.strip_prefix("/echo/") {
            Some(k) if !k.contains('/') => Ok(Some(k)),
            _ => Err(()),
        },
    }
}

/// True for the paths this endpoint serves.
pub fn claims(path: &str) -> bool {
    key(path).is_ok()
}

impl Dialect for Echo {
    fn place(&self, req: &RequestHead, _rand: &mut dyn Random) -> Placement {
        if req.upgrade.is_none() {
            return Placement::Answer(upgrade_required());
        }
        match key(&req.path) {
            Ok(Some(k)) => Placement::Key(format!("echo/{k}").into()),
            Ok(None) => Placement::Here,
            Err(()) => Placement::Answer(Response::text(404, "not found")),
        }
    }

    fn on_request(
        &mut self,
        _cx: &mut Cx<'_>,
        _conn: Handle,
        _key: Option<&str>,
        _req: &RequestHead,
    ) -> Answer {
        Answer::Upgrade
    }

    fn on_message(&mut self, cx: &mut Cx<'_>, conn: Handle, msg: Message<'_>) {
        cx.send(conn, msg.kind(), msg.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::dialect::testing::{get, upgrade, Harness};
    use crate::proto::dialect::Kind;

    #[test]
    fn echoes_each_message_with_its_kind_and_places_by_key() {
        let mut h = Harness::new(Echo);
        assert!(matches!(h.place(&get("/echo")), Placement::Answer(r) if r.status == 426));
        assert!(matches!(h.place(&upgrade("/echo")), Placement::Here));
        assert!(matches!(h.place(&upgrade("/echo/room")), Placement::Key(k) if &*k == "echo/room"));
        assert!(matches!(h.place(&upgrade("/echo/a/b")), Placement::Answer(r) if r.status == 404));
        let c = h.open("/echo");
        h.message(c, Kind::Binary, b"\x00\x01");
        h.message(c, Kind::Text, b"hi");
        assert_eq!(
            h.take_sent(),
            vec![
                (c, Kind::Binary, b"\x00\x01".to_vec()),
                (c, Kind::Text, b"hi".to_vec())
            ]
        );
    }
}
