// Helpers for the Socket.IO tests: the real socket.io-client 2.x against SIGYARD_URL (as http).
import io from 'socket.io-client'
import { SERVER_URL, STEP_MS, nextUrl, withTimeout } from './helpers.mjs'

/** The server's base URL for socket.io-client (http:// or https://). */
export const SIO_URL = SERVER_URL.replace(/^ws/, 'http')

/** A new client (never shared, no automatic reconnection unless asked). */
export function connect(opts = {}) {
  return io(nextUrl().replace(/^ws/, 'http'), { forceNew: true, reconnection: false, ...opts })
}

/** Resolves with the arguments of the next `event` on `emitter` (an array). */
export function nextEvent(emitter, event, ms = STEP_MS) {
  return withTimeout(
    new Promise(resolve => emitter.once(event, (...args) => resolve(args))),
    ms,
    `event ${event}`
  )
}

/** Resolves with the first argument of the next `event`. */
export async function next(emitter, event, ms = STEP_MS) {
  return (await nextEvent(emitter, event, ms))[0]
}

/** Collects every `event` on `socket` (first arguments) into an array it returns. */
export function collect(socket, event) {
  const got = []
  socket.on(event, a => got.push(a))
  return got
}

/** Resolves true if `event` does NOT arrive within `ms`. */
export function quiet(socket, event, ms = 300) {
  return new Promise(resolve => {
    const f = () => resolve(false)
    socket.once(event, f)
    setTimeout(() => {
      socket.off(event, f)
      resolve(true)
    }, ms)
  })
}

/** Close every client when the test ends. */
export function closeAll(t, ...sockets) {
  t.after(() => sockets.forEach(s => s.close()))
}
