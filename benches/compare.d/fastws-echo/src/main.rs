//! Echo WebSocket server on fastwebsockets, the WebSocket library under Deno's server, set up
//! the way its documentation shows for a server: hyper 1 answers the HTTP upgrade
//! (`http1::Builder` with upgrades, `fastwebsockets::upgrade::upgrade`), then one task per
//! connection reads frames through a `FragmentCollector` (whole messages, fragmented or not)
//! and writes every text or binary message back as it came. Auto-close and auto-pong on (a
//! close is answered and ends the loop; pings get their pong inside `read_frame`). One runtime
//! thread (current_thread). Any path is accepted; a request that is not a WebSocket upgrade
//! gets 426. Binds 127.0.0.1 on the port given as the first argument (default 0 = ephemeral)
//! and prints `PORT=<n>` once listening.

use fastwebsockets::upgrade::{is_upgrade_request, upgrade, UpgradeFut};
use fastwebsockets::{FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::io::Write;
use tokio::net::{TcpListener, TcpStream};

/// Messages larger than this close the connection (the default is 64 MiB).
const MAX_MESSAGE: usize = 256 << 10;

async fn echo(upgraded: UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = upgraded.await?;
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    ws.set_max_message_size(MAX_MESSAGE);
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            OpCode::Close => return Ok(()),
            _ => {}
        }
    }
}

async fn handle(mut req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    if !is_upgrade_request(&req) {
        let mut res = Response::new(Empty::new());
        *res.status_mut() = StatusCode::UPGRADE_REQUIRED;
        return Ok(res);
    }
    let (res, upgraded) = upgrade(&mut req)?;
    tokio::spawn(async move {
        let _ = echo(upgraded).await;
    });
    Ok(res)
}

async fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service_fn(handle))
        .with_upgrades()
        .await;
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("PORT={}", listener.local_addr()?.port());
    std::io::stdout().flush()?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(serve(stream));
    }
}
