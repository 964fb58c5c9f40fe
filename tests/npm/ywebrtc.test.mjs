// Real-client test, y-webrtc: the published `y-webrtc` 10.3.0 WebrtcProvider (with `yjs`)
// against the server at SIGYARD_URL, signaling only (Node has no WebRTC, so the other peer is a
// raw socket, as PROTOCOLS-beyond.md "Real clients for testing" advises). The provider
// subscribes to its room and announces itself; a raw peer subscribed to the room sees that
// announce with `clients` counting both, and the provider's signaling connection reports
// itself connected.
import './lib/setup.mjs'
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as Y from 'yjs'
import { WebrtcProvider } from 'y-webrtc'
import { nextUrl, uid, TEST_MS, RawSocket, exitWhenDone } from './lib/helpers.mjs'
exitWhenDone()

test('a provider subscribes and announces through the server', async () => {
  const room = uid('room')
  const raw = await new RawSocket('/').open()
  raw.sendJson({ type: 'subscribe', topics: [room] })
  raw.sendJson({ type: 'ping' })
  const [pong] = await raw.waitForCount(1)
  assert.deepEqual(JSON.parse(pong.text), { type: 'pong' })
  const doc = new Y.Doc()
  const provider = new WebrtcProvider(room, doc, { signaling: [nextUrl()] })
  try {
    const msg = JSON.parse((await raw.waitForCount(2, TEST_MS))[1].text)
    assert.equal(msg.type, 'publish')
    assert.equal(msg.topic, room)
    assert.equal(msg.data.type, 'announce')
    assert.equal(msg.data.from, provider.room.peerId)
    assert.equal(msg.clients, 2)
    const conn = provider.signalingConns[0]
    assert.equal(conn.connected, true)
  } finally {
    provider.destroy()
    doc.destroy()
    raw.close()
  }
})
