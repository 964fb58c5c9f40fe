// Test setup shared by the real-client tests: import this FIRST (before any client package).
// - Installs the `ws` package's WebSocket as globalThis.WebSocket. cevitxe-signal-client 0.4.2
//   and @localfirst/relay-client 3.x call `new WebSocket(url)` on the global (they were written
//   for browsers / jsdom). Node 20 has no global WebSocket; on Node >= 22 we still replace the
//   built-in one so every client uses the same implementation (`ws`), as they did in their own
//   test suites. @localfirst/relay 4.x imports isomorphic-ws, which resolves to `ws` in Node.
// - Registers lib/esm-hooks.mjs so @localfirst/relay-client 3.x's ESM-in-a-CJS-package dist loads.
import { register } from 'node:module'
import WebSocket from 'ws'

globalThis.WebSocket = WebSocket
register('./esm-hooks.mjs', import.meta.url)
