// Real-client test, dialect B: two @localfirst/relay-client 3.x clients (JSON with
// documentIds/userName) meet on one documentId through the server at SIGYARD_URL and talk
// through the /connection pipe. Needs lib/setup.mjs (global WebSocket + ESM loader hooks).
// Run: SIGYARD_URL=ws://127.0.0.1:8080 node --test tests/npm/
import './lib/setup.mjs'
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { nextUrl, TEST_MS, uid, withTimeout, asText, exitWhenDone } from './lib/helpers.mjs'

const { Client } = await import('@localfirst/relay-client')
exitWhenDone()

/** Resolves with the `peer.connect` payload for `userName` on `documentId`. */
const peerConnect = (client, userName, documentId) =>
  withTimeout(
    new Promise(resolve => {
      const onConnect = payload => {
        if (payload.userName === userName && payload.documentId === documentId) {
          client.off('peer.connect', onConnect)
          resolve(payload)
        }
      }
      client.on('peer.connect', onConnect)
    }),
    undefined,
    `peer.connect ${client.userName} -> ${userName}`
  )

const nextMessage = (socket, what) =>
  withTimeout(
    new Promise(resolve => socket.addEventListener('message', e => resolve(e.data), { once: true })),
    undefined,
    what
  )

async function connectedPair(t) {
  const documentId = uid('doc')
  const aliceName = uid('alice')
  const bobName = uid('bob')
  const alice = new Client({ userName: aliceName, url: nextUrl() })
  const bob = new Client({ userName: bobName, url: nextUrl() })
  t.after(() => {
    alice.disconnectServer()
    bob.disconnectServer()
  })
  const aliceSeesBob = peerConnect(alice, bobName, documentId)
  const bobSeesAlice = peerConnect(bob, aliceName, documentId)
  alice.join(documentId)
  bob.join(documentId)
  const [a, b] = await Promise.all([aliceSeesBob, bobSeesAlice])
  return { alice, bob, documentId, aliceSocket: a.socket, bobSocket: b.socket }
}

test('relay-client 3.x: peer.connect on both sides, then text both ways', { timeout: TEST_MS }, async t => {
  const { alice, bob, aliceSocket, bobSocket } = await connectedPair(t)
  assert.ok(alice.has(bob.userName), 'alice tracks bob')
  assert.ok(bob.has(alice.userName), 'bob tracks alice')

  const atBob = nextMessage(bobSocket, 'alice -> bob message')
  aliceSocket.send('hello from alice')
  assert.equal(asText(await atBob), 'hello from alice')

  const atAlice = nextMessage(aliceSocket, 'bob -> alice message')
  bobSocket.send('hellö from bob 🐟')
  assert.equal(asText(await atAlice), 'hellö from bob 🐟')
})

test('relay-client 3.x: disconnectPeer on one side gives peer.disconnect on the other', { timeout: TEST_MS }, async t => {
  const { alice, bob } = await connectedPair(t)
  const gone = withTimeout(
    new Promise(resolve => bob.on('peer.disconnect', p => p.userName === alice.userName && resolve(p))),
    undefined,
    'peer.disconnect at bob'
  )
  alice.disconnectPeer(bob.userName)
  await gone
})
