// Starts an ORIGINAL relay server from node_modules on an ephemeral loopback port, for
// validating this suite (used by run-reference.sh). Prints `PORT=<n>` once listening.
//   node reference-server.mjs relay4   -> @localfirst/relay 4.2.2 (dialect C, msgpack)
//   node reference-server.mjs relay3   -> @localfirst/relay 3.6.2 via the npm alias "relay3" (dialect B)
//   node reference-server.mjs relay3-as-A -> the same relay 3.6.2 server with a thin field-renaming
//       shim to dialect A (join/leave in, id/keys out). NOT an original dialect-A server: the
//       cevitxe-signal-server package was never published to npm. Its introduction, holding and
//       piping logic is relay 3.6.2's own, which is that of cevitxe apart from the field names
//       (and Leave: cevitxe re-introduces on Leave, relay does not).
//   node reference-server.mjs tracker  -> bittorrent-tracker 11.2.3's Server, WebSocket tracker
//       only (the WebTorrent tracker dialect; webtorrent.test.mjs runs against it as against
//       sigyard: it accepts the upgrade on any path, so ws://127.0.0.1:<n>/announce works).
// Both servers call express's app.listen(port, cb), which binds every interface and does not
// expose the chosen port; we wrap http.Server#listen for that one call to bind 127.0.0.1 and
// capture the server, so the reference is loopback-only and can use port 0.
import http from 'node:http'
import { createRequire } from 'node:module'

const which = process.argv[2] ?? 'relay4'
const require = createRequire(import.meta.url)

if (which === 'tracker') await startTracker()

let Server
if (which === 'relay4') ({ Server } = await import('@localfirst/relay/Server.js'))
else if (which === 'relay3' || which === 'relay3-as-A') ({ Server } = require('relay3'))
else throw new Error(`unknown reference server "${which}" (use relay4 or relay3)`)

const originalListen = http.Server.prototype.listen
let httpServer
http.Server.prototype.listen = function (port, ...rest) {
  httpServer = this
  const cb = rest.find(a => typeof a === 'function')
  return originalListen.call(this, port, '127.0.0.1', cb)
}
const server = new Server({ port: 0 })
if (which === 'relay3-as-A') shimDialectA(server)
try {
  await server.listen({ silent: true })
} finally {
  http.Server.prototype.listen = originalListen
}
// errors from unparsable introduction messages are emitted as events; just log them
server.on?.('error', e => console.error(`[${which}] server error event:`, e?.error?.message ?? e))
console.log(`PORT=${httpServer.address().port}`)

const stop = () => {
  try {
    server.close()
  } catch {}
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)

/** Rename dialect-A fields to relay 3.x's on the way in and back on the way out. */
function shimDialectA(server) {
  const handle = server.handleIntroductionRequest // (userName) => (data) => void
  server.handleIntroductionRequest = userName => {
    const inner = handle(userName)
    return data => {
      let message
      try {
        message = JSON.parse(data.toString())
      } catch {
        return inner(data) // let relay 3.x deal with malformed input its own way
      }
      if (message && typeof message === 'object' && !('documentIds' in message)) {
        const join = Array.isArray(message.join) ? message.join : []
        const leave = Array.isArray(message.leave) ? message.leave : []
        if (join.length || !leave.length) inner(JSON.stringify({ type: 'Join', documentIds: join }))
        if (leave.length) inner(JSON.stringify({ type: 'Leave', documentIds: leave }))
        return
      }
      inner(data)
    }
  }
  const send = server.send
  server.send = function (peer, message) {
    if (message && message.type === 'Introduction') {
      message = { type: 'Introduction', id: message.userName, keys: message.documentIds }
    }
    return send.call(this, peer, message)
  }
}

/** bittorrent-tracker's own server, WebSocket only, on 127.0.0.1 (it accepts any path). */
async function startTracker() {
  const { default: Server } = await import('bittorrent-tracker/server') // the server alone: no WebRTC
  const tracker = new Server({ udp: false, http: false, ws: true, stats: false })
  tracker.on('error', e => console.error('[tracker] error:', e?.message ?? e))
  tracker.on('warning', e => console.error('[tracker] warning:', e?.message ?? e))
  await new Promise(resolve => tracker.listen(0, '127.0.0.1', resolve))
  console.log(`PORT=${tracker.ws.address().port}`)
  const stop = () => tracker.close(() => process.exit(0))
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  await new Promise(() => {}) // serve until stopped
}
