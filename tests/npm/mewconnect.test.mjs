// Real-client test, MewConnect v2: the published @myetherwallet/mewconnect-web-client
// 2.2.0-beta.18 V2 initiator (src/connectClient/initiator/MewConnectInitiatorV2.js, with its
// websocketWrapper.js and MewConnectCrypto.js) pairs with a receiver through the server at
// SIGYARD_URL, sends its ECIES-encrypted offer, receives and decrypts the answer, and reports
// rtcconnected. WebRTC itself is a fake (the native `wrtc` module cannot be installed here, see
// README.md): it hands the initiator an offer and takes the answer, like simple-peer would.
// The receiver plays the MEW wallet's part with the same package's websocketWrapper and
// MewConnectCrypto (eccrypto ECIES on secp256k1; the EIP-191 `signed` of the private key).
// Run: SIGYARD_URL=ws://127.0.0.1:8080 node --test tests/npm/
import './lib/setup.mjs'
import { register } from 'node:module'
import { EventEmitter } from 'node:events'
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { nextUrl, TEST_MS, withTimeout, exitWhenDone } from './lib/helpers.mjs'

register('./lib/mew-hooks.mjs', import.meta.url)
const PKG = '@myetherwallet/mewconnect-web-client/src/connectClient'
const { default: MewConnectInitiatorV2 } = await import(`${PKG}/initiator/MewConnectInitiatorV2.js`)
const { default: WebsocketConnection } = await import(`${PKG}/websocketWrapper.js`)
const { default: MewConnectCrypto } = await import(`${PKG}/MewConnectCrypto.js`)
exitWhenDone()

/** The next node's MewConnect path. */
const url = () => `${nextUrl()}/staging`

/** Stands in for the client's WebRtcCommunication (simple-peer + wrtc). */
class FakeWebRtc extends EventEmitter {
  constructor(offer) {
    super()
    this.offer = offer
    this.answers = []
  }
  setConnectionVersion() {}
  isAlive() {
    return true
  }
  getActivePeerId() {
    return 'fake-peer-1'
  }
  turnReset() {}
  rtcDestroy() {}
  /** simple-peer with trickle off emits one `signal` with the whole offer. */
  start(options) {
    this.options = options
    setImmediate(() => this.emit('signal', this.offer))
  }
  receiveAnswer(answer, peerId) {
    this.answers.push({ answer, peerId })
    this.emit('answer-received', answer)
  }
}

/** Resolves with the payload of the next `event` on `emitter`. */
const next = (emitter, event, what = event) =>
  withTimeout(new Promise(resolve => emitter.once(event, resolve)), undefined, what)

/** Resolves with the data of the next `signal` on a websocketWrapper. */
const nextSignal = (socket, signal) =>
  withTimeout(new Promise(resolve => socket.on(signal, resolve)), undefined, `signal ${signal}`)

/** The initiator's credentials, made as MewConnectInitiator.generateKeys() makes them. */
function initiatorKeys() {
  const crypto = MewConnectCrypto.create()
  const keys = crypto.generateKeys()
  const connId = crypto.generateConnId(keys.publicKey)
  const signed = crypto.signMessageSync(keys.privateKey, keys.privateKey)
  return { crypto, privateKeyHex: keys.privateKey.toString('hex'), connId, signed }
}

/** A receiver from the QR code's private key: its own crypto instance, same connId and signed. */
async function receiver(privateKeyHex, connId) {
  const crypto = MewConnectCrypto.create()
  crypto.setPrivate(privateKeyHex)
  const signed = crypto.signMessageSync(privateKeyHex)
  const socket = new WebsocketConnection()
  const confirmation = nextSignal(socket, 'confirmation')
  await socket.connect(url(), { role: 'receiver', connId, signed })
  return { crypto, socket, signed, confirmation }
}

test('real V2 initiator and a receiver pair, exchange encrypted offer/answer, rtcconnected', { timeout: TEST_MS }, async t => {
  const { crypto, privateKeyHex, connId, signed } = initiatorKeys()
  // The first 32 hex digits of the public key (compressed with the secp256k1 installed here).
  assert.match(connId, /^0[234][0-9a-f]{30}$/)
  assert.match(signed, /^[0-9a-f]{130}$/)

  const offer = { type: 'offer', sdp: `v=0\r\no=- ${Date.now()} 2 IN IP4 127.0.0.1\r\ns=-\r\n` }
  const webrtc = new FakeWebRtc(offer)
  const initiator = new MewConnectInitiatorV2({ url: url(), webRtcCommunication: webrtc })
  t.after(() => initiator.socketDisconnect())
  const initiated = next(initiator, 'initiated')
  const paired = next(initiator, 'socketPaired')
  await initiator.initiatorStart(url(), crypto, { connId, signed })
  await initiated

  const r = await receiver(privateKeyHex, connId)
  t.after(() => r.socket.disconnect())
  assert.equal(r.signed, signed, 'both sides compute the same signature')
  assert.equal(await r.confirmation, '')
  await paired // the initiator got its confirmation and started WebRTC

  // The offer arrives encrypted (eccrypto output as Buffer#toJSON) and decrypts to the SDP.
  const encOffer = await nextSignal(r.socket, 'offer')
  assert.equal(encOffer.connId, connId)
  for (const [field, len] of [['iv', 16], ['ephemPublicKey', 65], ['mac', 32]]) {
    assert.equal(encOffer.data[field].type, 'Buffer')
    assert.equal(encOffer.data[field].data.length, len, field)
  }
  assert.deepEqual(JSON.parse(await r.crypto.decrypt(encOffer.data)), offer)

  // The receiver answers (the Android receiver's shape), the initiator decrypts it.
  const answer = { type: 'answer', sdp: 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n' }
  const gotAnswer = next(webrtc, 'answer-received', 'the decrypted answer at the initiator')
  r.socket.send('answersignal', { connId, data: await r.crypto.encrypt(JSON.stringify(answer)) })
  assert.deepEqual(await gotAnswer, answer)
  assert.equal(webrtc.answers[0].peerId, 'fake-peer-1')

  // WebRTC is "up": both report rtcconnected. The receiver gets `disconnect` (data absent);
  // the initiator sends its own and closes its socket, so the receiver hears `disconnected`.
  const disconnect = withTimeout(
    new Promise(resolve => r.socket.on('disconnect', data => resolve(data))),
    undefined,
    'disconnect'
  )
  r.socket.send('rtcconnected')
  assert.equal(await disconnect, undefined)
  const disconnected = nextSignal(r.socket, 'disconnected')
  webrtc.emit('RtcConnectedEvent')
  assert.equal(await disconnected, '')
  assert.equal(initiator.connected, true)
})

test('V2 initiator: tryturn gives turntoken servers with `url`, as retryViaTurn needs', { timeout: TEST_MS }, async t => {
  const { privateKeyHex, connId, signed } = initiatorKeys()
  const init = new WebsocketConnection()
  t.after(() => init.disconnect())
  const initiated = nextSignal(init, 'initiated')
  await init.connect(url(), { role: 'initiator', connId, signed })
  await initiated
  const r = await receiver(privateKeyHex, connId)
  t.after(() => r.socket.disconnect())
  await r.confirmation
  const token = nextSignal(init, 'turntoken')
  const attempting = nextSignal(r.socket, 'attemptingturn')
  init.send('tryturn', { connId })
  const { iceServers } = await token
  assert.ok(iceServers.length > 0)
  // What MewConnectInitiatorV2.retryViaTurn does with them: `urls` from `url`.
  for (const s of iceServers) assert.equal(typeof s.url, 'string')
  assert.deepEqual((await attempting).data, iceServers)
})

test('V2 receiver with a wrong signature is refused at the upgrade with 404', { timeout: TEST_MS }, async t => {
  const { connId, signed } = initiatorKeys()
  const init = new WebsocketConnection()
  t.after(() => init.disconnect())
  const initiated = nextSignal(init, 'initiated')
  await init.connect(url(), { role: 'initiator', connId, signed })
  await initiated
  const other = initiatorKeys() // a different key signs a different message
  const ws = new WebSocket(`${url()}?role=receiver&connId=${connId}&signed=${other.signed}`)
  const status = await withTimeout(
    new Promise(resolve => ws.on('unexpected-response', (_req, res) => resolve(res.statusCode))),
    undefined,
    'the refusal'
  )
  assert.equal(status, 404)
})
