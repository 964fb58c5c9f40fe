// Real-client test, PeerJS: the published `peerjs` 1.5.5 client (dist/bundler.cjs) against the
// server at SIGYARD_URL, signaling only (Node has no WebRTC: a stub RTCPeerConnection makes
// the client's support check pass, as PROTOCOLS-beyond.md "Real clients for testing" says).
// Covered: an id from GET /peerjs/id and `open`; `server-error` "Invalid key provided" for a
// wrong key; `unavailable-id` for a taken id; `peer-unavailable` for an OFFER to nobody is the
// integration tests' job (it needs a data connection).
import './lib/setup.mjs'
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { nextUrl, uid, TEST_MS, withTimeout, exitWhenDone } from './lib/helpers.mjs'

globalThis.RTCPeerConnection ??= class {
  createDataChannel() {
    return { ordered: true, close() {} }
  }
  close() {}
}
const { Peer } = createRequire(import.meta.url)('peerjs/dist/bundler.cjs')
exitWhenDone()

/** Options for the next node, and any extra ones. */
function options(extra = {}) {
  const u = new URL(nextUrl().replace(/^ws/, 'http'))
  return { host: u.hostname, port: Number(u.port), path: '/', secure: false, debug: 0, ...extra }
}

/** The first of `open` (its id) or `error` (its type and message). */
function outcome(peer) {
  return withTimeout(
    new Promise(resolve => {
      peer.once('open', id => resolve({ open: id }))
      peer.once('error', e => resolve({ error: e.type, message: e.message }))
    }),
    TEST_MS,
    'open or error'
  )
}

test('a server-made id opens', async () => {
  const peer = new Peer(options())
  const got = await outcome(peer)
  assert.match(got.open ?? '', /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, JSON.stringify(got))
  peer.destroy()
})

test('a wrong key is a server-error', async () => {
  const peer = new Peer(uid('p'), options({ key: 'wrong' }))
  assert.deepEqual(await outcome(peer), { error: 'server-error', message: 'Invalid key provided' })
  peer.destroy()
})

test('a taken id is unavailable-id', async () => {
  const id = uid('taken')
  const first = new Peer(id, options())
  assert.deepEqual(await outcome(first), { open: id })
  const second = new Peer(id, options())
  assert.deepEqual(await outcome(second), { error: 'unavailable-id', message: `ID "${id}" is taken` })
  second.destroy()
  first.destroy()
})
