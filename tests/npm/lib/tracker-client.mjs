// The bittorrent-tracker 11.2.3 client (the WebTorrent tracker client) in plain Node, and what
// webtorrent.test.mjs does with it.
//
// WebRTC: the client imports @thaunknown/simple-peer, which imports `webrtc-polyfill`, whose
// Node entry loads the native `node-datachannel` addon. Its binary comes from an install script,
// which does not run here (.npmrc ignore-scripts), so importing the client throws
// `Cannot find module '../../../build/Release/node_datachannel.node'`. `loadTrackerClient()`
// first replaces node_modules/webrtc-polyfill/index.js by a stub that exports the WebRTC classes
// found on globalThis (none in Node: undefined), keeping the original as index.native.js. The
// client then runs with `wrtc: {}` (WebRTC "supported", so ws trackers are used) and offers made
// by the test instead of by RTCPeerConnection (`mockOffers`), the way bittorrent-tracker's own
// test suite drives its WebSocket tracker (its `mockWebsocketTracker`). An `offer` reaching such a
// client would throw `No WebRTC support`, so tests never let a peer with real offers announce
// into a swarm that holds one of these clients.
import { readFileSync, writeFileSync, renameSync, existsSync, copyFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { randomBytes } from 'node:crypto'
import { STEP_MS, nextUrl, withTimeout } from './helpers.mjs'

const STUB_MARK = '// sigyard test stub (tests/npm/lib/tracker-client.mjs)'
const STUB = `${STUB_MARK}: no native WebRTC in Node here; the classes come from globalThis
// (undefined unless something installed them). The package's own entry is index.native.js.
const g = globalThis
export const RTCPeerConnection = g.RTCPeerConnection
export const RTCSessionDescription = g.RTCSessionDescription
export const RTCIceCandidate = g.RTCIceCandidate
export const RTCIceTransport = g.RTCIceTransport
export const RTCDataChannel = g.RTCDataChannel
export const RTCSctpTransport = g.RTCSctpTransport
export const RTCDtlsTransport = g.RTCDtlsTransport
export const RTCCertificate = g.RTCCertificate
export const MediaStream = g.MediaStream
export const MediaStreamTrack = g.MediaStreamTrack
export default { RTCPeerConnection, RTCSessionDescription, RTCIceCandidate, RTCIceTransport, RTCDataChannel, RTCSctpTransport, RTCDtlsTransport, RTCCertificate, MediaStream, MediaStreamTrack }
`

/** Put the stub in place of webrtc-polyfill's Node entry (idempotent; atomic for parallel runs). */
export function installWebrtcStub() {
  const entry = fileURLToPath(import.meta.resolve('webrtc-polyfill'))
  if (readFileSync(entry, 'utf8').startsWith(STUB_MARK)) return
  const native = entry.replace(/index\.js$/, 'index.native.js')
  if (!existsSync(native)) copyFileSync(entry, native)
  const tmp = `${entry}.${process.pid}.tmp`
  writeFileSync(tmp, STUB)
  renameSync(tmp, entry)
}

/** `{ Client, WebSocketTracker }` of bittorrent-tracker, after installing the stub. */
export async function loadTrackerClient() {
  installWebrtcStub()
  const { default: Client } = await import('bittorrent-tracker/client')
  const { default: WebSocketTracker } = await import('bittorrent-tracker/websocket-tracker')
  return { Client, WebSocketTracker }
}

/** The tracker URL on the next server: `<SIGYARD_URL>/announce` (`path` '' for the bare URL). */
export const trackerUrl = (path = '/announce') => `${nextUrl()}${path}`

/** A random info hash, hex (its binary form has control characters and bytes >= 0x80). */
export const randomInfoHash = () => randomBytes(20).toString('hex')

/** A webtorrent-style peer id (`-WW0300-` + 12 base64 characters), hex as the client takes it. */
export function webtorrentPeerId() {
  const tail = randomBytes(9).toString('base64') // 12 characters
  return Buffer.from(`-WW0300-${tail}`, 'latin1').toString('hex')
}

/** The 20-character binary string of a hex id, as it appears in the JSON frames. */
export const bin = hex => Buffer.from(hex, 'hex').toString('latin1')

/**
 * Replace the client's offer generation (needs RTCPeerConnection) with made-up offers.
 * `shape` 'fake': `{fake_offer}` entries, as bittorrent-tracker's test suite sends (no `offer`,
 * no `offer_id`); 'sdp': what a browser client sends, `{offer:{type,sdp}, offer_id}`, with
 * 20-byte offer ids. Returns the list of offers generated so far (every announce).
 */
export function mockOffers(client, shape = 'fake') {
  const made = []
  for (const tracker of client._trackers) {
    tracker._generateOffers = (numwant, cb) => {
      const offers = []
      for (let i = 0; i < numwant; i++) {
        offers.push(
          shape === 'sdp'
            ? {
                offer: { type: 'offer', sdp: `v=0\r\no=- ${made.length + i} 2 IN IP4 127.0.0.1\r\ns=-\r\n` },
                offer_id: randomBytes(20).toString('latin1'),
              }
            : { fake_offer: `fake_offer_${i}` }
        )
      }
      made.push(...offers)
      process.nextTick(() => cb(offers))
    }
  }
  return made
}

/**
 * Record the client's tracker traffic: `sent` (frames as sent, text) and `received` (text), in
 * order, for assertions and for failure messages. Call right after constructing the client.
 * Every client on one announce URL shares one socket (bittorrent-tracker's socket pool), so
 * `received` holds frames for all of them.
 */
export function tap(client) {
  const log = { sent: [], received: [] }
  for (const tracker of client._trackers) {
    const send = tracker._send.bind(tracker)
    tracker._send = params => {
      log.sent.push(JSON.stringify(params))
      send(params)
    }
    tracker.socket.on('data', data => log.received.push(Buffer.from(data).toString('utf8')))
  }
  log.toString = () => `sent:\n  ${log.sent.join('\n  ')}\nreceived:\n  ${log.received.join('\n  ')}`
  return log
}

/** A new client with a fresh peer id, `wrtc: {}`, fake offers, warnings and errors collected. */
export function newClient(Client, { infoHash, announce, peerId = webtorrentPeerId(), offers = 'fake', ...rest }) {
  const client = new Client({ infoHash, announce, peerId, port: 6881, wrtc: {}, ...rest })
  client.warnings = []
  client.on('warning', e => client.warnings.push(e.message))
  client.on('error', e => client.warnings.push(`error: ${e.message}`))
  client.offers = mockOffers(client, offers)
  client.log = tap(client)
  return client
}

/** The next `event` of `emitter` (its first argument), bounded; the failure names `what`. */
export function next(emitter, event, what = event, ms = STEP_MS) {
  return withTimeout(new Promise(resolve => emitter.once(event, resolve)), ms, what)
}

/** Destroy a client, resolving when its callback ran (bounded). */
export function destroy(client, ms = STEP_MS) {
  return withTimeout(new Promise(resolve => client.destroy(resolve)), ms, 'destroy callback')
}
