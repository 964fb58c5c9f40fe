// The WebSocket tracker of npm bittorrent-tracker 11.2.3, for benches/compare: its own
// Server, unmodified, with only the WebSocket tracker on (no HTTP or UDP tracker), on
// 127.0.0.1 and the port in PORT (0: any free one). bin/cmd.js is not used: it imports the
// package's client, which loads a native WebRTC module that is not built here; the server
// does not need it. Run with loopback.cjs preloaded, which prints PORT=<n> once listening.
import Server from 'bittorrent-tracker/server'

const server = new Server({ udp: false, http: false, ws: true })
server.on('error', err => console.error(`error: ${err.message}`))
server.listen(Number(process.env.PORT) || 0, '127.0.0.1')
