// Real-client test, MewConnect v1 (PROTOCOLS.md §1.10): the published
// @myetherwallet/mewconnect-web-client 2.2.0-beta.18 V1 initiator
// (src/connectClient/initiator/MewConnectInitiatorV1.js, which connects with socket.io-client
// 2.x) pairs through sigyard with a receiver that plays the MEW wallet's part over
// socket.io-client (handshake → signature → confirmation → encrypted offer/answer →
// rtcConnected), and the failure signals and TURN fallback of the same flow. WebRTC itself is
// a fake, as in mewconnect.test.mjs.
// Run: SIGYARD_URL=ws://127.0.0.1:8080 node --test tests/npm/
import './lib/setup.mjs'
import { register } from 'node:module'
import { EventEmitter } from 'node:events'
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { TEST_MS, exitWhenDone, withTimeout } from './lib/helpers.mjs'
import { SIO_URL, connect, next, quiet, closeAll } from './lib/sio.mjs'

register('./lib/mew-hooks.mjs', import.meta.url)
const PKG = '@myetherwallet/mewconnect-web-client/src/connectClient'
const { default: MewConnectInitiatorV1 } = await import(`${PKG}/initiator/MewConnectInitiatorV1.js`)
const { default: MewConnectCrypto } = await import(`${PKG}/MewConnectCrypto.js`)
exitWhenDone()

/** Stands in for the client's WebRtcCommunication (simple-peer + wrtc). */
class FakeWebRtc extends EventEmitter {
  constructor(offer) {
    super()
    this.offer = offer
    this.answers = []
  }
  setConnectionVersion(v) {
    this.version = v
  }
  getActivePeerId() {
    return 'fake-peer-1'
  }
  turnReset() {}
  rtcDestroy() {}
  start(options) {
    this.options = options
    setImmediate(() => this.emit('signal', this.offer))
  }
  receiveAnswer(answer) {
    this.answers.push(answer)
    this.emit('answer-received', answer)
  }
}

/** The initiator's credentials, made as MewConnectInitiator.generateKeys() makes them. */
function initiatorKeys() {
  const crypto = MewConnectCrypto.create()
  const keys = crypto.generateKeys()
  const connId = crypto.generateConnId(keys.publicKey)
  const signed = crypto.signMessageSync(keys.privateKey, keys.privateKey)
  return { crypto, privateKeyHex: keys.privateKey.toString('hex'), connId, signed }
}

/** The wallet's side: from the QR code's private key, its crypto and its socket. */
function receiver(t, privateKeyHex, connId, opts = {}) {
  const crypto = MewConnectCrypto.create()
  crypto.setPrivate(privateKeyHex)
  const signed = crypto.signMessageSync(privateKeyHex)
  const socket = connect({ query: { stage: 'receiver', connId, signed }, ...opts })
  closeAll(t, socket)
  return { crypto, socket, signed }
}

/** A real V1 initiator, started; resolves once its socket is connected. */
async function startInitiator(t, keys, webrtc) {
  const initiator = new MewConnectInitiatorV1({ url: SIO_URL, webRtcCommunication: webrtc })
  const ui = []
  initiator.uiCommunicator = (...a) => ui.push(a)
  t.after(() => initiator.socket && initiator.socket.close())
  const connected = next(initiator, 'SOCKET_CONNECTED')
  await initiator.initiatorStart(SIO_URL, keys.crypto, { connId: keys.connId, signed: keys.signed })
  await connected
  return { initiator, ui }
}

test('real V1 initiator pairs with a receiver: handshake, signature, offer, answer, rtcConnected', { timeout: TEST_MS }, async t => {
  const keys = initiatorKeys()
  const offer = { type: 'offer', sdp: `v=0\r\no=- ${Date.now()} 2 IN IP4 127.0.0.1\r\ns=-\r\n` }
  const webrtc = new FakeWebRtc(offer)
  const { initiator } = await startInitiator(t, keys, webrtc)
  // The initiator's socket went straight to the WebSocket transport (its transports list).
  assert.equal(initiator.socket.io.engine.transport.name, 'websocket')

  // The receiver (polling first, as the Android app's default) is asked to sign the message.
  const r = receiver(t, keys.privateKeyHex, keys.connId)
  const { toSign } = await next(r.socket, 'handshake')
  assert.match(toSign, /^[0-9a-f]{64}$/)
  assert.equal(r.signed, keys.signed)

  // signature → confirmation at the initiator, which starts WebRTC and sends its offer.
  const paired = next(initiator, 'socketPaired')
  // Byte fields travel as JSON (the initiator's `binary(false)`; Android's gson arrays).
  const version = await r.crypto.encrypt('0.0.1')
  r.socket.binary(false).emit('signature', { signed: r.signed, connId: keys.connId, version })
  await paired
  assert.equal(webrtc.version, 'V1')
  const encOffer = await next(r.socket, 'offer')
  assert.deepEqual(JSON.parse(await r.crypto.decrypt(encOffer.data)), offer)

  // The receiver answers; the initiator decrypts it and hands it to WebRTC.
  const answer = { type: 'answer', sdp: 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n' }
  const gotAnswer = withTimeout(new Promise(res => webrtc.once('answer-received', res)), undefined, 'answer')
  const data = await r.crypto.encrypt(JSON.stringify(answer))
  r.socket.binary(false).emit('answerSignal', { data, connId: keys.connId })
  assert.deepEqual(await gotAnswer, answer)

  // WebRTC up: the initiator reports rtcConnected and closes its socket.
  const closed = withTimeout(
    new Promise(res => initiator.socket.once('disconnect', res)),
    undefined,
    'initiator disconnect'
  )
  webrtc.emit('connect')
  assert.equal(await closed, 'io client disconnect')
  assert.equal(initiator.connected, true)
  // The pair is over: a second receiver for the same connId is told InvalidConnection.
  r.socket.emit('rtcConnected', keys.connId)
  await new Promise(res => setTimeout(res, 100))
  const late = receiver(t, keys.privateKeyHex, keys.connId, { transports: ['websocket'] })
  await next(late.socket, 'InvalidConnection')
})

test('V1 failures: unknown connId, wrong signature, busy pair, bad event', { timeout: TEST_MS }, async t => {
  const keys = initiatorKeys()
  // No initiator for this connId.
  const lonely = receiver(t, keys.privateKeyHex, keys.connId, { transports: ['websocket'] })
  await next(lonely.socket, 'InvalidConnection')

  const webrtc = new FakeWebRtc({ type: 'offer', sdp: 'x' })
  const { initiator } = await startInitiator(t, keys, webrtc)
  // A receiver that signs with another key: confirmationFailed.
  const other = initiatorKeys()
  const wrong = connect({ query: { stage: 'receiver', connId: keys.connId, signed: other.signed } })
  closeAll(t, wrong)
  await next(wrong, 'handshake')
  wrong.emit('signature', { signed: other.signed, connId: keys.connId, version: {} })
  await next(wrong, 'confirmationFailed')

  // The right receiver pairs; a second right receiver makes the pair's members hear busy.
  const r = receiver(t, keys.privateKeyHex, keys.connId)
  await next(r.socket, 'handshake')
  r.socket.emit('signature', { signed: r.signed, connId: keys.connId, version: {} })
  await withTimeout(new Promise(res => { const i = setInterval(() => { if (webrtc.options) { clearInterval(i); res() } }, 10) }), undefined, 'rtc start')
  const second = receiver(t, keys.privateKeyHex, keys.connId, { transports: ['websocket'] })
  await next(second.socket, 'handshake')
  // confirmationFailedBusy goes to the pair's existing members, not to the newcomer.
  const busy = [next(r.socket, 'confirmationFailedBusy'), next(initiator.socket, 'confirmationFailedBusy')]
  const newcomerQuiet = quiet(second.socket, 'confirmationFailedBusy', 300)
  second.socket.emit('signature', { signed: second.signed, connId: keys.connId, version: {} })
  await Promise.all(busy)
  assert.ok(await newcomerQuiet)

  // An event the schema refuses: the Socket.IO error packet with the original's text (sic).
  const err = next(r.socket, 'error')
  r.socket.emit('offerSignal', { data: {} })
  assert.equal(await err, 'invalid signal or paramaters')
})

test('V1 TURN fallback: tryTurn gives attemptingTurn, then turnToken with url and urls', { timeout: TEST_MS }, async t => {
  const keys = initiatorKeys()
  const webrtc = new FakeWebRtc({ type: 'offer', sdp: 'x' })
  const { initiator } = await startInitiator(t, keys, webrtc)
  const r = receiver(t, keys.privateKeyHex, keys.connId)
  await next(r.socket, 'handshake')
  const paired = next(initiator, 'socketPaired')
  r.socket.emit('signature', { signed: r.signed, connId: keys.connId, version: {} })
  await paired
  await next(r.socket, 'offer')
  const attempting = next(r.socket, 'attemptingTurn')
  const token = next(r.socket, 'turnToken')
  const retried = withTimeout(new Promise(res => webrtc.once('signal', () => res())), undefined, 'retry')
  await initiator.useFallback()
  assert.deepEqual(await attempting, { data: null })
  const { data } = await token
  assert.ok(Array.isArray(data) && data.length > 0)
  for (const s of data) assert.ok(s.url && s.urls)
  // The initiator took the token and started WebRTC again (retryViaTurn; this client version
  // then uses its configured STUN list, not the servers it was given).
  await retried
  assert.equal(initiator.tryingTurn, true)
  assert.ok(await quiet(r.socket, 'error', 100))
})
