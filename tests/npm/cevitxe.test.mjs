// Real-client test, dialect A (the seed protocol): two cevitxe-signal-client 0.4.2 clients
// join one key through the server at SIGYARD_URL, both get `peer` events, and they talk
// through the /connection pipe. The client uses the global WebSocket (lib/setup.mjs installs ws).
// Run: SIGYARD_URL=ws://127.0.0.1:8080 node --test tests/npm/
import './lib/setup.mjs'
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { nextUrl, TEST_MS, uid, withTimeout, asText, exitWhenDone } from './lib/helpers.mjs'

const { Client } = (await import('cevitxe-signal-client')).default
exitWhenDone()

/** Resolves with `{ peer, key, socket }` once `client` emits `peer` for `peerId` on `key`. */
const peerEvent = (client, peerId, key) =>
  withTimeout(
    new Promise(resolve => {
      const onPeer = (peer, peerKey) => {
        if (peer.id === peerId && peerKey === key) {
          client.off('peer', onPeer)
          resolve({ peer, key, socket: peer.get(key) })
        }
      }
      client.on('peer', onPeer)
    }),
    undefined,
    `peer event ${client.id} -> ${peerId}`
  )

const nextMessage = (socket, what) =>
  withTimeout(
    new Promise(resolve => socket.addEventListener('message', e => resolve(e.data), { once: true })),
    undefined,
    what
  )

/**
 * The 0.4.2 client has no close method and reconnects forever from its onclose handler, so we
 * detach that handler before closing the introduction socket, then close every peer socket.
 */
function shutdown(client) {
  const server = client.serverConnection
  server.onclose = null
  server.onerror = null
  server.close()
  for (const peer of client.peers.values()) {
    for (const key of [...peer.keys.keys()]) peer.close(key)
  }
}

test('cevitxe-signal-client 0.4.2: join key, peer event on both sides, then text both ways', { timeout: TEST_MS }, async t => {
  const key = uid('key')
  const aliceId = uid('alice')
  const bobId = uid('bob')
  const alice = new Client({ id: aliceId, url: nextUrl() })
  const bob = new Client({ id: bobId, url: nextUrl() })
  t.after(() => {
    shutdown(alice)
    shutdown(bob)
  })
  const aliceSeesBob = peerEvent(alice, bobId, key)
  const bobSeesAlice = peerEvent(bob, aliceId, key)
  alice.join(key) // before open: remembered and sent in the on-open Join
  bob.join(key)
  const [a, b] = await Promise.all([aliceSeesBob, bobSeesAlice])
  assert.equal(a.peer.id, bobId)
  assert.equal(b.peer.id, aliceId)

  const atBob = nextMessage(b.socket, 'alice -> bob message')
  a.socket.send('hello')
  assert.equal(asText(await atBob), 'hello')

  const atAlice = nextMessage(a.socket, 'bob -> alice message')
  b.socket.send('DUDE!! 🐟')
  assert.equal(asText(await atAlice), 'DUDE!! 🐟')
})
