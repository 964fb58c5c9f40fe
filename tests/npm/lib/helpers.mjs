// Shared helpers for the sigyard npm test suite: server URL from SIGYARD_URL, unique ids,
// bounded waits, a small message-queue wrapper around raw `ws` sockets, and an exit safety net.
import { after } from 'node:test'
import WebSocket from 'ws'

/**
 * Base URLs of the server under test, e.g. ws://127.0.0.1:8080 (no trailing slash). Several,
 * comma-separated, are the nodes of one cluster: each new connection takes the next one, so
 * the peers of every test are spread over the nodes.
 */
export const SERVER_URLS = (process.env.SIGYARD_URL ?? '').split(',').map(u => u.trim().replace(/\/+$/, ''))
if (!SERVER_URLS.every(u => /^wss?:\/\/[^/]+/.test(u))) {
  throw new Error('Set SIGYARD_URL to the server under test, e.g. SIGYARD_URL=ws://127.0.0.1:8080')
}
export const SERVER_URL = SERVER_URLS[0]
let turn = 0
/** The URL for the next connection (the next node of a cluster). */
export const nextUrl = () => SERVER_URLS[turn++ % SERVER_URLS.length]

/** Per-step wait (ms) and per-test budget (ms). */
export const STEP_MS = Number(process.env.SIGYARD_STEP_MS) || 3000
export const TEST_MS = Number(process.env.SIGYARD_TEST_MS) || 10000

let counter = 0
const runTag = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`
/** Unique, URL-safe id so tests (and parallel test files) never share peers or keys. */
export const uid = prefix => `${prefix}-${runTag}-${++counter}`

export const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

/** Resolve/reject like `promise`, or reject with a clear message after `ms`. */
export function withTimeout(promise, ms = STEP_MS, what = 'operation') {
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** Poll `predicate` until it is truthy (bounded). */
export async function until(predicate, ms = STEP_MS, what = 'condition') {
  const deadline = Date.now() + ms
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(10)
  }
}

/** Any payload a client may hand us (string, Buffer, ArrayBuffer, typed array, Buffer[]) as text. */
export function asText(data) {
  if (typeof data === 'string') return data
  if (Array.isArray(data)) data = Buffer.concat(data)
  if (data instanceof ArrayBuffer) return new TextDecoder().decode(new Uint8Array(data))
  if (ArrayBuffer.isView(data)) {
    return new TextDecoder().decode(new Uint8Array(data.buffer, data.byteOffset, data.byteLength))
  }
  throw new TypeError(`cannot read message payload of type ${Object.prototype.toString.call(data)}`)
}

/** Global order of received messages across all sockets of this process (for ordering checks). */
let arrivalSeq = 0

/**
 * A raw `ws` socket plus a queue of everything it received:
 * `{ data: Buffer, isBinary: boolean, text: string, seq: number }`.
 */
export class RawSocket {
  constructor(path) {
    this.url = `${nextUrl()}${path}`
    this.ws = new WebSocket(this.url)
    this.received = []
    this.waiters = []
    this.closed = false
    this.closeCode = undefined
    this.ws.on('message', (data, isBinary) => {
      this.received.push({ data, isBinary, text: isBinary ? undefined : data.toString('utf8'), seq: ++arrivalSeq })
      this.wake()
    })
    this.ws.on('close', code => {
      this.closed = true
      this.closeCode = code
      this.wake()
    })
    this.ws.on('error', err => {
      this.error = err
      this.wake()
    })
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', resolve)
      this.ws.once('error', reject)
      this.ws.once('close', () => reject(new Error(`${this.url} closed before opening`)))
    })
    this.opened.catch(() => {}) // handled by whoever awaits open()
  }

  wake() {
    const waiters = this.waiters
    this.waiters = []
    waiters.forEach(w => w())
  }

  open(ms = STEP_MS) {
    return withTimeout(this.opened, ms, `open of ${this.url}`).then(() => this)
  }

  send(data) {
    this.ws.send(data)
  }

  sendJson(obj) {
    this.ws.send(JSON.stringify(obj))
  }

  /** Wait until at least `n` messages have been received in total; returns the first n. */
  async waitForCount(n, ms = STEP_MS) {
    const deadline = Date.now() + ms
    while (this.received.length < n) {
      if (this.closed) throw new Error(`${this.url} closed (code ${this.closeCode}) after ${this.received.length}/${n} messages`)
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out after ${ms} ms: ${this.url} received ${this.received.length}/${n} messages`)
      await withTimeout(new Promise(resolve => this.waiters.push(resolve)), left, 'message').catch(() => {})
    }
    return this.received.slice(0, n)
  }

  /** Wait for the socket to be closed (by the server or the pipe partner). */
  async waitForClose(ms = STEP_MS) {
    const deadline = Date.now() + ms
    while (!this.closed) {
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out after ${ms} ms waiting for ${this.url} to close`)
      await withTimeout(new Promise(resolve => this.waiters.push(resolve)), left, 'close').catch(() => {})
    }
    return this.closeCode
  }

  close() {
    if (this.ws.readyState === WebSocket.CONNECTING) this.ws.terminate()
    else if (this.ws.readyState === WebSocket.OPEN) this.ws.close()
  }
}

/** Open several raw sockets and wait until all are open. */
export async function openAll(paths) {
  const sockets = paths.map(p => new RawSocket(p))
  await Promise.all(sockets.map(s => s.open()))
  return sockets
}

/** Close every socket (ignores ones already closed). */
export function closeAll(sockets) {
  for (const s of sockets) {
    try {
      s.close()
    } catch {}
  }
}

/**
 * Safety net for third-party clients: some of them keep retry/heartbeat/poll timers alive
 * after a failed test (e.g. relay 4.x's isReady() polls forever on a socket that never opened),
 * which would keep `node --test` from finishing. After all tests of a file have run and cleaned
 * up, give the event loop a moment to drain and then exit with the runner's exit code.
 */
export function exitWhenDone(graceMs = 1500) {
  after(() => {
    setTimeout(() => process.exit(), graceMs).unref()
  })
}
