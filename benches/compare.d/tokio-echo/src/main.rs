//! Echo WebSocket server on tokio + tokio-tungstenite, the way a user would write one, with
//! small buffers: 4 KiB read and write buffers (WebSocketConfig), one runtime thread
//! (current_thread). Any path is accepted. Binds 127.0.0.1 on the port given as the first
//! argument (default 0 = ephemeral) and prints `PORT=<n>` once listening.

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

async fn serve(stream: TcpStream, config: WebSocketConfig) {
    let _ = stream.set_nodelay(true);
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_binary() || msg.is_text()) && ws.send(msg).await.is_err() {
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
