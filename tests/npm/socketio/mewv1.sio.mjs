// MewConnect v1 (PROTOCOLS.md §1.10) with the real socket.io-client 2.x, in each transport
// mode: the pairing flow with the payload shapes of the web client's MewConnectInitiatorV1 and
// the legacy Android receiver, and every refusal.
// Run: SIGYARD_URL=ws://127.0.0.1:8080 node --test tests/npm/socketio/mewv1.sio.mjs
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { TEST_MS, exitWhenDone } from '../lib/helpers.mjs'
import { MODES, SioClient, closeAll } from './sio-client.mjs'

exitWhenDone()
const hex = n => randomBytes(n).toString('hex')
/** A fresh pair: what the initiator puts in its QR code and handshake. */
const pairing = () => ({ connId: hex(16), signed: hex(65), message: hex(32) })
/** Buffer#toJSON-shaped EncryptedPayload, as the web client sends it. */
const encrypted = () => {
  const b = n => ({ type: 'Buffer', data: [...randomBytes(n)] })
  return { ciphertext: b(48), ephemPublicKey: b(65), iv: b(16), mac: b(32) }
}

const initiator = (p, transports) =>
  new SioClient({ transports, query: { stage: 'initiator', signed: p.signed, message: p.message, connId: p.connId } }).connected()
const receiver = (p, transports, signed = p.signed) =>
  new SioClient({ transports, query: { stage: 'receiver', connId: p.connId, signed } }).connected()

for (const [mode, transports] of Object.entries(MODES)) {
  describe(`MewConnect v1 over ${mode}`, () => {
    test('pairing: handshake, signature, confirmation, offer, answer, tryTurn, rtcConnected', { timeout: TEST_MS }, async () => {
      const p = pairing()
      let i, r, late
      try {
        i = await initiator(p, transports)
        r = await receiver(p, transports)
        assert.deepEqual(await r.arg('handshake'), { toSign: p.message })

        const version = encrypted()
        r.emit('signature', { signed: p.signed, connId: p.connId, version })
        assert.deepEqual(await i.arg('confirmation'), { connId: p.connId, version })
        await r.none('confirmation', 100)

        const offer = encrypted()
        i.emit('offerSignal', { data: offer, connId: p.connId, options: [{ urls: 'stun:stun.l.google.com:19302' }] })
        assert.deepEqual(await r.arg('offer'), { data: offer })
        assert.deepEqual(await i.arg('offer'), { data: offer }, 'io.to(room): the sender too')

        // The legacy Android receiver writes byte arrays as plain arrays.
        const answer = { ciphertext: [1, 2, 3], ephemPublicKey: [4], iv: [5], mac: [6] }
        r.emit('answerSignal', { data: answer, connId: p.connId })
        assert.deepEqual(await i.arg('answer'), { data: answer })
        assert.deepEqual(await r.arg('answer'), { data: answer })

        i.emit('tryTurn', { connId: p.connId, cont: true })
        for (const x of [i, r]) {
          assert.deepEqual(await x.arg('attemptingTurn'), { data: null })
          const token = await x.arg('turnToken')
          assert.ok(Array.isArray(token.data) && token.data.length > 0)
          for (const s of token.data) assert.equal(typeof s.url, 'string')
        }

        // The web client sends its private key here, Android nothing: either ends the pair.
        i.emit('rtcConnected', hex(32))
        r.emit('rtcConnected')
        await i.none('error', 200)
        late = await receiver(p, transports)
        await late.next('InvalidConnection')
      } finally {
        closeAll([i, r, late])
      }
    })

    test('no initiator: InvalidConnection at connect and on signature', { timeout: TEST_MS }, async () => {
      const p = pairing()
      const r = await receiver(p, transports)
      try {
        assert.deepEqual((await r.next('InvalidConnection')).args, [])
        r.emit('signature', { signed: p.signed, connId: p.connId })
        await r.next('InvalidConnection')
      } finally {
        closeAll([r])
      }
    })

    test('wrong signed: confirmationFailed; second receiver: confirmationFailedBusy to the members', { timeout: TEST_MS }, async () => {
      const p = pairing()
      let i, r, r2, bad
      try {
        i = await initiator(p, transports)
        bad = await receiver(p, transports, hex(65))
        await bad.next('handshake')
        bad.emit('signature', { signed: hex(65), connId: p.connId })
        assert.deepEqual((await bad.next('confirmationFailed')).args, [])
        await i.none('confirmation', 100)

        r = await receiver(p, transports)
        await r.next('handshake')
        r.emit('signature', { signed: p.signed, connId: p.connId })
        await i.next('confirmation')

        r2 = await receiver(p, transports)
        await r2.next('handshake')
        r2.emit('signature', { signed: p.signed, connId: p.connId })
        assert.deepEqual((await i.next('confirmationFailedBusy')).args, [])
        assert.deepEqual((await r.next('confirmationFailedBusy')).args, [])
        await r2.none('confirmationFailedBusy', 100)
      } finally {
        closeAll([i, r, r2, bad])
      }
    })

    test('bad events get the error packet; bad handshakes are disconnected', { timeout: TEST_MS }, async () => {
      const p = pairing()
      let i, x
      try {
        i = await initiator(p, transports)
        i.emit('offerSignal', { data: encrypted() })
        assert.equal(await i.arg('error'), 'invalid signal or paramaters')
        i.emit('noSuchSignal', {})
        assert.equal(await i.arg('error'), 'invalid signal or paramaters')
        x = new SioClient({ transports, query: { stage: 'observer', connId: p.connId } })
        const d = await x.next('disconnect')
        assert.equal(d.args[0], 'io server disconnect')
      } finally {
        closeAll([i, x])
      }
    })
  })
}
