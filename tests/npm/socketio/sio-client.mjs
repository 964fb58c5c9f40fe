// The real socket.io-client 2.x, wrapped with a queue of everything a socket received, for
// the Socket.IO tests (webRTWorkspaces, MewConnect v1). Server URL from SIGYARD_URL
// (ws:// or http://; the client is given http://).
import { createRequire } from 'node:module'
import { STEP_MS, nextUrl, sleep, withTimeout } from '../lib/helpers.mjs'

const require = createRequire(import.meta.url)
/** The published client, `io(url, opts)`. */
export const io = require('socket.io-client')


/** The three ways a socket.io-client 2 reaches the server. */
export const MODES = {
  polling: ['polling'],
  websocket: ['websocket'],
  upgrade: ['polling', 'websocket'],
}

let arrival = 0

/**
 * One client socket. `received` holds `{ event, args, seq }` for every server event, plus the
 * client-side `connect`, `disconnect` (args: [reason]) and `error` (args: [data]; a `44`
 * packet) events.
 */
export class SioClient {
  constructor({ transports = MODES.websocket, query = {} } = {}) {
    this.received = []
    this.waiters = []
    this.socket = io(nextUrl().replace(/^ws/, 'http'), { transports, query, forceNew: true, reconnection: false, timeout: STEP_MS })
    const record = (event, args) => {
      this.received.push({ event, args, seq: ++arrival })
      for (const w of this.waiters.splice(0)) w()
    }
    const onevent = this.socket.onevent
    this.socket.onevent = function (packet) {
      const [event, ...args] = packet.data ?? []
      record(event, args)
      return onevent.call(this, packet)
    }
    for (const e of ['connect', 'disconnect', 'error', 'connect_error']) {
      this.socket.on(e, (...args) => record(e, args))
    }
  }

  get id() {
    return this.socket.id
  }

  /** Resolves once connected (rejects on `connect_error`). */
  async connected() {
    const c = await this.next(['connect', 'connect_error'], STEP_MS)
    if (c.event !== 'connect') throw new Error(`connect_error: ${c.args[0]}`)
    return this
  }

  emit(event, data) {
    this.socket.emit(event, data)
  }

  /** The next not yet taken received item whose event is `event` (or one of `event`). */
  async next(event, ms = STEP_MS) {
    const names = Array.isArray(event) ? event : [event]
    const take = () => {
      const i = this.received.findIndex(r => names.includes(r.event))
      return i < 0 ? undefined : this.received.splice(i, 1)[0]
    }
    return withTimeout(
      (async () => {
        for (;;) {
          const r = take()
          if (r) return r
          await new Promise(resolve => this.waiters.push(resolve))
        }
      })(),
      ms,
      `${names.join('/')} on ${this.id ?? 'an unconnected socket'}`,
    )
  }

  /** The single argument of the next `event`. */
  async arg(event, ms) {
    const r = await this.next(event, ms)
    return r.args[0]
  }

  /** Waits `ms` and fails if `event` arrived meanwhile (or was already waiting). */
  async none(event, ms = 300) {
    await sleep(ms)
    const hit = this.received.find(r => r.event === event)
    if (hit) throw new Error(`unexpected ${event}: ${JSON.stringify(hit.args)}`)
  }

  close() {
    this.socket.close()
  }
}

/** Connects `n` clients with the same options. */
export async function connectAll(n, opts) {
  const clients = Array.from({ length: n }, () => new SioClient(opts))
  await Promise.all(clients.map(c => c.connected()))
  return clients
}

export function closeAll(clients) {
  for (const c of clients) c?.close()
}
