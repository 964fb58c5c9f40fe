// Real-client test, dialect C: two @localfirst/relay 4.x clients (`@localfirst/relay/Client.js`,
// binary msgpack introductions) meet on one documentId through the server at SIGYARD_URL and
// talk through the /connection pipe. Run: SIGYARD_URL=ws://127.0.0.1:8080 node --test tests/npm/
import './lib/setup.mjs'
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { nextUrl, TEST_MS, uid, withTimeout, asText, exitWhenDone } from './lib/helpers.mjs'

const { Client } = await import('@localfirst/relay/Client.js')
exitWhenDone()

/** Resolves with the `peer-connect` payload for `peerId` on `documentId`. */
const peerConnect = (client, peerId, documentId) =>
  withTimeout(
    new Promise(resolve => {
      const onConnect = payload => {
        if (payload.peerId === peerId && payload.documentId === documentId) {
          client.off('peer-connect', onConnect)
          resolve(payload)
        }
      }
      client.on('peer-connect', onConnect)
    }),
    undefined,
    `peer-connect ${client.peerId} -> ${peerId}`
  )

/** Resolves with the next message payload received on a peer socket. */
const nextMessage = (socket, what) =>
  withTimeout(
    new Promise(resolve => socket.addEventListener('message', e => resolve(e.data), { once: true })),
    undefined,
    what
  )

/** Two clients on one fresh documentId, both connected to each other; cleaned up by the test. */
async function connectedPair(t) {
  const documentId = uid('doc')
  const alicePeerId = uid('alice')
  const bobPeerId = uid('bob')
  const alice = new Client({ peerId: alicePeerId, url: nextUrl() })
  const bob = new Client({ peerId: bobPeerId, url: nextUrl() })
  t.after(() => {
    alice.disconnectServer()
    bob.disconnectServer()
  })
  const aliceSeesBob = peerConnect(alice, bobPeerId, documentId)
  const bobSeesAlice = peerConnect(bob, alicePeerId, documentId)
  alice.join(documentId)
  bob.join(documentId)
  const [a, b] = await Promise.all([aliceSeesBob, bobSeesAlice])
  return { alice, bob, documentId, aliceSocket: a.socket, bobSocket: b.socket }
}

test('relay 4.x clients: peer-connect on both sides, then text both ways', { timeout: TEST_MS }, async t => {
  const { alice, bob, aliceSocket, bobSocket } = await connectedPair(t)
  assert.ok(alice.has(bob.peerId), 'alice tracks bob')
  assert.ok(bob.has(alice.peerId), 'bob tracks alice')

  const atBob = nextMessage(bobSocket, 'alice -> bob message')
  aliceSocket.send('hello from alice')
  assert.equal(asText(await atBob), 'hello from alice')

  const atAlice = nextMessage(aliceSocket, 'bob -> alice message')
  bobSocket.send('hellö from bob 🐟')
  assert.equal(asText(await atAlice), 'hellö from bob 🐟')
})

test('relay 4.x clients: binary payload round trip', { timeout: TEST_MS }, async t => {
  const { aliceSocket, bobSocket } = await connectedPair(t)
  const bytes = Uint8Array.from([0, 1, 2, 0xfe, 0xff, 0x80, 0x7f])
  const atBob = nextMessage(bobSocket, 'binary alice -> bob')
  aliceSocket.send(bytes)
  const got = await atBob
  assert.ok(typeof got !== 'string', 'binary frame arrives as binary')
  assert.deepEqual(new Uint8Array(got), bytes)
})

test('relay 4.x clients: disconnectPeer on one side gives peer-disconnect on the other', { timeout: TEST_MS }, async t => {
  const { alice, bob } = await connectedPair(t)
  const gone = withTimeout(
    new Promise(resolve => bob.on('peer-disconnect', p => p.peerId === alice.peerId && resolve(p))),
    undefined,
    'peer-disconnect at bob'
  )
  alice.disconnectPeer(bob.peerId)
  await gone
})
