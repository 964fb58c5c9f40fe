//! Echo WebSocket server on tokio + tokio-tungstenite, the way a careful user would write one,
//! with small buffers: 4 KiB read and write buffers (WebSocketConfig), one runtime thread
//! (current_thread). Answers are queued with `feed` and flushed once no further message is
//! ready without waiting, so a client that pipelines gets one write per batch rather than one
//! per message (`SinkExt::send` would flush every message). Any path is accepted. Binds 127.0.0.1 on the port given as the first
//! argument (default 0 = ephemeral) and prints `PORT=<n>` once listening.

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

async fn serve(stream: TcpStream, config: WebSocketConfig) {
    let _ = stream.set_nodelay(true);
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        let mut next = Some(msg);
        while let Some(msg) = next.take() {
            if (msg.is_binary() || msg.is_text()) && ws.feed(msg).await.is_err() {
                return;
            }
            // Another message already buffered or readable: answer it in the same write.
            if let Some(Some(Ok(m))) = ws.next().now_or_never() {
                next = Some(m);
            }
        }
        if ws.flush().await.is_err() {
            break;
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("PORT={}", listener.local_addr()?.port());
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(4096)
        .max_write_buffer_size(1 << 20)
        .max_message_size(Some(256 << 10))
        .max_frame_size(Some(256 << 10));
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(serve(stream, config));
    }
}
