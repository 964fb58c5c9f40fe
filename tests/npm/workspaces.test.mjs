// Real-client test of webRTWorkspaces (PROTOCOLS.md §5) on sigyard: socket.io-client 2.5.0
// sending exactly what the webRTCWorkspaces browser client sends, through the whole life
// cycle of a workspace. The server's capacity is read from SIGYARD_WORKSPACES_CAPACITY
// (default 5, at least 3).
// Run: SIGYARD_URL=ws://127.0.0.1:8080 node --test tests/npm/
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { exitWhenDone } from './lib/helpers.mjs'
import { connect, next, nextEvent, quiet, closeAll } from './lib/sio.mjs'

exitWhenDone()
const CAPACITY = Number(process.env.SIGYARD_WORKSPACES_CAPACITY) || 5

const WRONG_PIN = 'This workspace is protected with a PIN. Wrong PIN provided.'
const OWNER_LEAVE = 'Workspace owner cannot leave. Only shutdown is allowed.'
const OWNER_KICK = 'Workspace owner cannot be kicked out of workspace.'
const salt = () => Math.random().toString(36).slice(2, 12)

/** A connected client, as the library makes it (`io.connect(server)`: polling, then upgrade). */
async function client(t, opts = {}) {
  const s = connect(opts)
  closeAll(t, s)
  await next(s, 'connect')
  return s
}

/** `attend` as the client sends it; resolves with the event that answered and its data. */
function attend(s, token, pin, name) {
  const answered = Promise.race(
    ['attendance-granted', 'alert', 'full', 'destroyed'].map(ev => next(s, ev, 8000).then(d => [ev, d]))
  )
  s.emit('attend', {
    workspace: { token, pin },
    attendee: { name, avatar: '' },
    nonce: `attend-workspace::${salt()}`
  })
  return answered
}

test('workspace life cycle with the real client', { timeout: 60000 }, async t => {
  const owner = await client(t)
  // iceservers: an array whose entries carry both `url` and `urls`.
  owner.emit('iceservers', {})
  const ice = await next(owner, 'iceservers')
  assert.ok(Array.isArray(ice) && ice.length > 0)
  for (const s of ice) assert.ok(s.url && s.urls, JSON.stringify(s))

  // create with a PIN
  const nonce = `create-workspace::${salt()}`
  owner.emit('create', {
    workspace: { name: 'Team', pin: '1234', avatar: '' },
    attendee: { name: 'Ann', avatar: '' },
    nonce
  })
  const created = await next(owner, 'created', 8000)
  assert.equal(created.nonce, nonce)
  assert.match(created.workspace.id, /^_[A-Za-z0-9]{10}$/)
  assert.equal(created.workspace.name, 'Team')
  assert.equal(created.workspace.owner, created.attendee.id)
  assert.match(created.workspace.token, /^eyJ/)
  assert.match(created.accessToken, /^eyJ/)
  const W = { id: created.workspace.id }
  const ann = created.attendee
  const annToken = created.accessToken

  // attend: wrong PIN, then the right one
  const bob = await client(t, { transports: ['polling'], upgrade: false })
  assert.deepEqual(await attend(bob, created.workspace.token, '0000', 'Bob'), ['alert', WRONG_PIN])
  const ownerHearsBob = next(owner, 'attend')
  const [ev, granted] = await attend(bob, created.workspace.token, '1234', 'Bob')
  assert.equal(ev, 'attendance-granted')
  assert.equal(granted.workspace.id, W.id)
  assert.equal(granted.workspace.call, null)
  const bobA = granted.attendee
  const bobToken = granted.accessToken
  assert.deepEqual(Object.keys(granted.attendees).sort(), [ann.id, bobA.id].sort())
  assert.deepEqual(await ownerHearsBob, bobA)

  // Carol and fillers fill the workspace; one more is told `full` and disconnected
  const carol = await client(t, { transports: ['websocket'] })
  const [ev2, g2] = await attend(carol, created.workspace.token, '1234', 'Carol')
  assert.equal(ev2, 'attendance-granted')
  const carolA = g2.attendee
  const carolToken = g2.accessToken
  for (let i = 3; i < CAPACITY; i++) {
    const filler = await client(t, { transports: ['websocket'] })
    assert.equal((await attend(filler, created.workspace.token, '1234', `Filler ${i}`))[0], 'attendance-granted')
  }
  const dave = await client(t)
  const daveGone = next(dave, 'disconnect', 8000)
  assert.deepEqual(await attend(dave, created.workspace.token, '1234', 'Dave'), ['full', {}])
  assert.equal(await daveGone, 'io server disconnect')

  // ring / answer / icecandidate / negotiation between Bob and Carol
  const call = { id: 'Ab3dE9g' }
  const offer = { type: 'offer', sdp: 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n' }
  const ring = next(carol, 'ring')
  bob.emit('ring', {
    workspace: W, attendee: bobA, accessToken: bobToken, call, callee: { id: carolA.id },
    offer, nonce: `start-call:${call.id}:${salt()}`
  })
  const rang = await ring
  assert.deepEqual(rang.caller, bobA)
  assert.deepEqual(rang.offer, offer)
  assert.deepEqual(rang.call, call)
  assert.equal(rang.workspace.id, W.id)
  assert.ok(await quiet(owner, 'ring', 200), 'ring is direct')

  const answer = { type: 'answer', sdp: 'v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\n' }
  const answered = next(bob, 'answer')
  carol.emit('answer', {
    workspace: W, attendee: carolA, call, caller: { id: bobA.id }, answer,
    accessToken: carolToken, nonce: rang.nonce
  })
  const ans = await answered
  assert.deepEqual(ans.callee, carolA)
  assert.deepEqual(ans.answer, answer)
  assert.deepEqual(ans.call, call)

  const candidate = { candidate: 'candidate:1 1 udp 2122260223 10.0.0.1 5000 typ host', sdpMid: '0', sdpMLineIndex: 0 }
  const cand = next(carol, 'icecandidate')
  bob.emit('icecandidate', {
    attendee: { id: carolA.id }, broadcaster: { id: bobA.id }, workspace: W,
    accessToken: bobToken, candidate
  })
  assert.deepEqual(await cand, { attendee: { id: carolA.id }, broadcaster: { id: bobA.id }, candidate })

  const message = { type: 'offer', data: offer }
  const nego = next(bob, 'negotiation')
  carol.emit('negotiation', {
    attendee: { id: bobA.id }, broadcaster: { id: carolA.id }, workspace: W,
    accessToken: carolToken, message
  })
  assert.deepEqual(await nego, { attendee: { id: carolA.id }, message })

  // busy goes to the others (broadcast), not back to the sender
  const busyBob = next(bob, 'busy')
  const busyCarol = next(carol, 'busy')
  owner.emit('busy', {
    workspace: W, attendee: ann, call, caller: { id: bobA.id }, accessToken: annToken, nonce: 'n'
  })
  for (const b of await Promise.all([busyBob, busyCarol])) {
    assert.deepEqual(b.callee, ann)
    assert.deepEqual(b.call, call)
  }
  assert.ok(await quiet(owner, 'busy', 200))

  // hangup
  const hungOwner = next(owner, 'hangup')
  const hungCarol = next(carol, 'hangup')
  bob.emit('hangup', { workspace: W, attendee: bobA, call, accessToken: bobToken })
  for (const h of await Promise.all([hungOwner, hungCarol])) assert.deepEqual(h, { attendee: bobA, call })

  // a forged access token is refused
  const alert = next(bob, 'alert')
  bob.emit('mic-toggle', { workspace: W, attendee: { id: ann.id }, accessToken: bobToken, state: false })
  assert.equal(await alert, 'Invalid access token. Access is not allowed.')

  // Carol reloads: a new socket, `re-attend` with what she stored; directed events follow her
  carol.close()
  const carol2 = await client(t)
  const ownerHearsCarol = next(owner, 'attend')
  carol2.emit('re-attend', { workspace: g2.workspace, attendee: carolA, accessToken: carolToken })
  const re = await next(carol2, 're-attendance-granted')
  assert.equal(re.attendee.id, carolA.id)
  assert.equal(re.attendee.socket, carol2.id)
  assert.equal((await ownerHearsCarol).id, carolA.id)
  const ring2 = next(carol2, 'ring')
  owner.emit('ring', {
    workspace: W, attendee: ann, accessToken: annToken, call: { id: 'Zz9Yy8X' },
    callee: { id: carolA.id }, offer, nonce: 'start-call:Zz9Yy8X:s'
  })
  assert.deepEqual((await ring2).caller, ann)

  // the owner cannot leave nor be kicked
  const a1 = next(owner, 'alert')
  owner.emit('leave', { workspace: W, attendee: ann, accessToken: annToken })
  assert.equal(await a1, OWNER_LEAVE)
  const a2 = next(owner, 'alert')
  owner.emit('kick', { workspace: W, attendee: { id: ann.id }, kickedAttendee: { id: ann.id, name: 'Ann' }, accessToken: annToken })
  assert.equal(await a2, OWNER_KICK)

  // kick Bob: the owner and every other member (Bob included) hear `kicked`
  const kicked = { id: bobA.id, name: bobA.name }
  const kickedEvents = [owner, bob, carol2].map(s => next(s, 'kicked'))
  owner.emit('kick', { workspace: W, attendee: { id: ann.id }, kickedAttendee: kicked, accessToken: annToken })
  for (const k of await Promise.all(kickedEvents)) assert.deepEqual(k, kicked)
  // Bob is out of the room: the next hangup does not reach him
  const notBob = quiet(bob, 'hangup', 300)
  const hung2 = next(owner, 'hangup')
  carol2.emit('hangup', { workspace: W, attendee: carolA, call, accessToken: carolToken })
  await hung2
  assert.ok(await notBob, 'a kicked socket left the room')

  // Carol leaves: the owner hears it
  const left = next(owner, 'leave')
  carol2.emit('leave', { workspace: W, attendee: carolA, accessToken: carolToken })
  assert.deepEqual(await left, carolA)

  // a new guest, then destroy: the others and the owner hear `destroyed`
  const erin = await client(t, { transports: ['websocket'] })
  const [ev3] = await attend(erin, created.workspace.token, '1234', 'Erin')
  assert.equal(ev3, 'attendance-granted')
  const destroyedErin = next(erin, 'destroyed')
  const destroyedOwner = next(owner, 'destroyed')
  owner.emit('destroy', { workspace: W, attendee: { id: ann.id }, accessToken: annToken })
  assert.deepEqual(await destroyedErin, {})
  assert.deepEqual(await destroyedOwner, {})
  // the workspace is gone for everyone
  assert.deepEqual(await attend(erin, created.workspace.token, '1234', 'Erin'), ['destroyed', {}])
})

test('events on a reconnected client keep working across a server-side transport loss', { timeout: 20000 }, async t => {
  // The client reconnects by itself after its connection drops (socket.io-client default),
  // gets a new socket id, and can `re-attend`.
  const owner = await client(t)
  owner.emit('create', { workspace: { name: '', pin: '', avatar: '' }, attendee: { name: '', avatar: '' } })
  const created = await next(owner, 'created', 8000)
  assert.equal(created.nonce, '')
  assert.equal(created.workspace.name, 'Anonumous Workspace')
  assert.equal(created.attendee.name, 'Anonumous')
  const guest = connect({ reconnection: true, reconnectionDelay: 100, transports: ['websocket'] })
  closeAll(t, guest)
  await next(guest, 'connect')
  const [, g] = await attend(guest, created.workspace.token, '', 'G')
  const firstId = guest.id
  // Drop the transport under the client (as a network loss would).
  const reconnected = nextEvent(guest, 'reconnect', 8000)
  guest.io.engine.close()
  await reconnected
  assert.notEqual(guest.id, firstId)
  guest.emit('re-attend', { workspace: g.workspace, attendee: g.attendee, accessToken: g.accessToken })
  const re = await next(guest, 're-attendance-granted')
  assert.equal(re.attendee.socket, guest.id)
})
