// A Socket.IO 2 server (Node `socket.io` 2.5, i.e. Engine.IO 3) whose application logic is
// sigyard's webRTWorkspaces and MewConnect v1 dialects, run as `examples/sio_dialects_stdio`
// (one JSON line in, one JSON line of actions out). It lets the Socket.IO tests in this
// directory run against the dialects with a known-good Socket.IO layer, independently of
// sigyard's own.
//
//   cargo build --example sio_dialects_stdio
//   node tests/npm/socketio/bridge-server.mjs [port]      # prints PORT=<n>
//   SIGYARD_URL=ws://127.0.0.1:<n> node --test tests/npm/socketio/*.sio.mjs
//
// The binary is SIO_DIALECTS_BIN or target/debug/examples/sio_dialects_stdio of this
// repository. Its options come from the environment (SIGYARD_WORKSPACES_*, MAGICK_TOKEN, ...).
import { createRequire } from 'node:module'
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import http from 'node:http'
import path from 'node:path'

const require = createRequire(import.meta.url)
const socketio = require('socket.io')

const here = path.dirname(fileURLToPath(import.meta.url))
const bin = process.env.SIO_DIALECTS_BIN ?? path.join(here, '../../../target/debug/examples/sio_dialects_stdio')
const child = spawn(bin, [], { stdio: ['pipe', 'pipe', 'inherit'] })
child.on('exit', code => {
  console.error(`bridge: dialect process exited (${code})`)
  process.exit(1)
})

// Requests are answered in order, one line each.
const pending = []
createInterface({ input: child.stdout }).on('line', line => pending.shift()(JSON.parse(line)))
const started = process.hrtime.bigint()
const now = () => Number((process.hrtime.bigint() - started) / 1000000n)
let chain = Promise.resolve()
function call(msg) {
  const reply = new Promise(resolve => pending.push(resolve))
  child.stdin.write(JSON.stringify({ ...msg, now: now() }) + '\n')
  // Apply each reply's actions strictly in request order.
  chain = chain.then(() => reply).then(apply)
  return chain
}

const server = http.createServer()
const io = socketio(server, { pingTimeout: 12000 })
const sockets = () => io.sockets.connected

function apply({ actions, deadline }) {
  for (const a of actions) {
    if (a.emit) {
      const { to, event, args } = a.emit
      if (to.socket !== undefined) {
        sockets()[to.socket]?.emit(event, ...args)
      } else if (to.room !== undefined) {
        io.to(to.room).emit(event, ...args)
      } else {
        const [room, except] = to.roomExcept
        const members = io.sockets.adapter.rooms[room]?.sockets ?? {}
        for (const id of Object.keys(members)) if (id !== except) sockets()[id]?.emit(event, ...args)
      }
    } else if (a.error) {
      sockets()[a.error.sid]?.error(a.error.data)
    } else if (a.join) {
      sockets()[a.join.sid]?.join(a.join.room)
    } else if (a.leave) {
      sockets()[a.leave.sid]?.leave(a.leave.room)
    } else if (a.disconnect) {
      sockets()[a.disconnect.sid]?.disconnect(true)
    }
  }
  scheduleTick(deadline)
}

let tickTimer
function scheduleTick(deadline) {
  clearTimeout(tickTimer)
  if (deadline === null || deadline === undefined) return
  tickTimer = setTimeout(() => call({ op: 'tick' }), Math.max(0, deadline - now()) + 1)
}

io.on('connection', socket => {
  const query = Object.entries(socket.handshake.query).filter(([k]) => !['EIO', 'transport', 't', 'sid', 'b64'].includes(k))
  call({ op: 'connect', sid: socket.id, query })
  socket.use((packet, _next) => {
    const [event, ...args] = packet
    call({ op: 'event', sid: socket.id, event, args })
  })
  socket.on('disconnect', () => call({ op: 'disconnect', sid: socket.id }))
})

server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  console.log(`PORT=${server.address().port}`)
})
