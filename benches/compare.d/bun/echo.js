// bun's built-in WebSocket server (uWebSockets) as an echo baseline for benches/compare.
// Usage: bun echo.js  -> listens on 127.0.0.1, ephemeral port, prints PORT=<n>.
const server = Bun.serve({
  hostname: '127.0.0.1',
  port: 0,
  fetch(req, server) {
    if (server.upgrade(req)) return
    return new Response('websocket only', { status: 426 })
  },
  websocket: { message(ws, m) { ws.send(m) } },
})
console.log(`PORT=${server.port}`)
