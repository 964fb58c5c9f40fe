// webRTWorkspaces (PROTOCOLS.md §5) with the real socket.io-client 2.x, in each transport mode
// (polling only, websocket only, polling upgraded to websocket): the whole workspace life
// cycle with the exact payloads and alert texts of §5.6.
// Run: SIGYARD_URL=ws://127.0.0.1:8080 node --test tests/npm/socketio/workspaces.sio.mjs
// The server's workspace capacity is read from SIGYARD_WORKSPACES_CAPACITY (default 5).
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { TEST_MS, uid, exitWhenDone } from '../lib/helpers.mjs'
import { MODES, SioClient, connectAll, closeAll } from './sio-client.mjs'

exitWhenDone()
const CAPACITY = Number(process.env.SIGYARD_WORKSPACES_CAPACITY) || 5
const ID = /^_[A-Za-z0-9]{10}$/
const JWT = /^eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9\.[\w-]+\.[\w-]+$/

/** What a client keeps after create / attend (what the browser client puts in localStorage). */
const session = (r, client) => ({ client, workspace: r.workspace, attendee: r.attendee, accessToken: r.accessToken })
/** The access part every checked event carries. */
const auth = s => ({ workspace: { id: s.workspace.id }, attendee: { id: s.attendee.id }, accessToken: s.accessToken })

async function create(client, pin = '1234', name = 'Team') {
  const nonce = `create-workspace::${uid('n')}`
  client.emit('create', { workspace: { name, pin, avatar: '' }, attendee: { name: 'Ann', avatar: '' }, nonce })
  const r = await client.arg('created')
  assert.equal(r.nonce, nonce)
  return session(r, client)
}

async function attend(client, owner, name, pin = '1234') {
  const nonce = `attend-workspace::${uid('n')}`
  client.emit('attend', { workspace: { token: owner.workspace.token, pin }, attendee: { name, avatar: '' }, nonce })
  const r = await client.arg('attendance-granted')
  assert.equal(r.nonce, nonce)
  return session(r, client)
}

for (const [mode, transports] of Object.entries(MODES)) {
  describe(`webRTWorkspaces over ${mode}`, () => {
    test('iceservers answers entries with url and urls', { timeout: TEST_MS }, async () => {
      const [c] = await connectAll(1, { transports })
      try {
        c.emit('iceservers', {})
        const list = await c.arg('iceservers')
        assert.ok(Array.isArray(list) && list.length > 0)
        for (const s of list) {
          assert.equal(typeof s.url, 'string')
          assert.ok(typeof s.urls === 'string' || Array.isArray(s.urls))
        }
      } finally {
        closeAll([c])
      }
    })

    test('create with PIN; attend with wrong then right PIN', { timeout: TEST_MS }, async () => {
      const [a, b] = await connectAll(2, { transports })
      try {
        const owner = await create(a)
        assert.match(owner.workspace.id, ID)
        assert.match(owner.attendee.id, ID)
        assert.deepEqual(Object.keys(owner.workspace).sort(), ['avatar', 'created', 'id', 'name', 'owner', 'token'])
        assert.equal(owner.workspace.owner, owner.attendee.id)
        assert.equal(owner.workspace.name, 'Team')
        assert.deepEqual(owner.attendee, { id: owner.attendee.id, name: 'Ann', avatar: '' })
        assert.match(owner.workspace.token, JWT)
        assert.match(owner.accessToken, JWT)
        assert.ok(Math.abs(owner.workspace.created - Date.now()) < 60000)

        b.emit('attend', { workspace: { token: owner.workspace.token, pin: '0000' }, attendee: { name: 'Bob', avatar: '' } })
        assert.equal(await b.arg('alert'), 'This workspace is protected with a PIN. Wrong PIN provided.')
        b.emit('attend', { workspace: { token: '' }, attendee: { name: 'Bob' } })
        assert.equal(await b.arg('alert'), 'Please provide a valid workspace access token.')

        const bob = await attend(b, owner, 'Bob')
        assert.equal(bob.workspace.id, owner.workspace.id)
        assert.equal(bob.workspace.call, null)
        assert.deepEqual(Object.keys(bob.attendee).sort(), ['avatar', 'id', 'name'])
        const joined = await a.arg('attend')
        assert.deepEqual(joined, bob.attendee)
        await b.none('attend')
      } finally {
        closeAll([a, b])
      }
    })

    test('a full workspace answers full and disconnects', { timeout: TEST_MS }, async () => {
      const clients = await connectAll(CAPACITY + 1, { transports })
      try {
        const owner = await create(clients[0])
        for (let i = 1; i < CAPACITY; i++) await attend(clients[i], owner, `Guest ${i}`)
        const last = clients[CAPACITY]
        last.emit('attend', { workspace: { token: owner.workspace.token, pin: '1234' }, attendee: { name: 'Late' } })
        assert.deepEqual(await last.arg('full'), {})
        const d = await last.next('disconnect')
        assert.equal(d.args[0], 'io server disconnect')
      } finally {
        closeAll(clients)
      }
    })

    test('ring / answer / icecandidate / negotiation between two attendees, busy, hangup, toggles', { timeout: TEST_MS }, async () => {
      const [a, b, c] = await connectAll(3, { transports })
      try {
        const ann = await create(a)
        const bob = await attend(b, ann, 'Bob')
        const cy = await attend(c, ann, 'Cy')
        const callId = uid('call')
        const offer = { type: 'offer', sdp: 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n' }
        const ring = { ...auth(bob), attendee: bob.attendee, call: { id: callId }, callee: { id: cy.attendee.id }, offer, nonce: `start-call:${callId}:x` }
        b.emit('ring', ring)
        assert.deepEqual(await c.arg('ring'), { workspace: { id: ann.workspace.id }, caller: bob.attendee, offer, call: { id: callId }, nonce: `start-call:${callId}:x` })
        await a.none('ring', 100)

        const answer = { type: 'answer', sdp: 'v=0\r\n' }
        c.emit('answer', { ...auth(cy), attendee: cy.attendee, call: { id: callId }, caller: { id: bob.attendee.id }, answer, nonce: 'n2' })
        assert.deepEqual(await b.arg('answer'), { workspace: { id: ann.workspace.id }, callee: cy.attendee, answer, call: { id: callId }, nonce: 'n2' })

        const candidate = { candidate: 'candidate:1 1 UDP 2122252543 127.0.0.1 40000 typ host', sdpMid: '0', sdpMLineIndex: 0 }
        b.emit('icecandidate', { attendee: { id: cy.attendee.id }, broadcaster: { id: bob.attendee.id }, workspace: { id: ann.workspace.id }, accessToken: bob.accessToken, candidate })
        const relayed = await c.arg('icecandidate')
        assert.deepEqual(relayed, { attendee: { id: cy.attendee.id }, broadcaster: { id: bob.attendee.id }, candidate })
        // Relayed as sent: the candidate's keys in the sender's order (JSON text equal).
        assert.equal(JSON.stringify(relayed.candidate), JSON.stringify(candidate))

        const message = { type: 'offer', data: offer }
        c.emit('negotiation', { attendee: { id: bob.attendee.id }, broadcaster: { id: cy.attendee.id }, workspace: { id: ann.workspace.id }, accessToken: cy.accessToken, message })
        assert.deepEqual(await b.arg('negotiation'), { attendee: { id: cy.attendee.id }, message })

        // busy goes to everyone else.
        a.emit('busy', { ...auth(ann), attendee: ann.attendee, call: { id: callId }, caller: { id: bob.attendee.id }, nonce: 'n3' })
        const busy = { workspace: { id: ann.workspace.id }, callee: ann.attendee, call: { id: callId } }
        assert.deepEqual(await b.arg('busy'), busy)
        assert.deepEqual(await c.arg('busy'), busy)
        await a.none('busy', 100)

        b.emit('mic-toggle', { ...auth(bob), state: false })
        assert.deepEqual(await a.arg('mic-toggle'), { attendee: { id: bob.attendee.id }, state: false })
        assert.deepEqual(await c.arg('mic-toggle'), { attendee: { id: bob.attendee.id }, state: false })
        c.emit('cam-toggle', { ...auth(cy), state: true })
        assert.deepEqual(await b.arg('cam-toggle'), { attendee: { id: cy.attendee.id }, state: true })

        b.emit('hangup', { ...auth(bob), attendee: bob.attendee, call: { id: callId } })
        assert.deepEqual(await c.arg('hangup'), { attendee: bob.attendee, call: { id: callId } })
        assert.deepEqual(await a.arg('hangup'), { attendee: bob.attendee, call: { id: callId } })
        await b.none('hangup', 100)

        // A token that is not the caller's.
        b.emit('ring', { ...auth(bob), accessToken: cy.accessToken, callee: { id: ann.attendee.id } })
        assert.equal(await b.arg('alert'), 'Invalid access token. Access is not allowed.')
        b.emit('ring', { ...auth(bob), accessToken: 'x.y.z' })
        assert.equal(await b.arg('alert'), 'Please provide a valid workspace token.')
        await a.none('ring', 100)
      } finally {
        closeAll([a, b, c])
      }
    })

    test('kick and leave', { timeout: TEST_MS }, async () => {
      const [a, b, c, d] = await connectAll(4, { transports })
      try {
        const ann = await create(a)
        const bob = await attend(b, ann, 'Bob')
        const cy = await attend(c, ann, 'Cy')
        const dee = await attend(d, ann, 'Dee')
        b.emit('kick', { ...auth(bob), kickedAttendee: { id: cy.attendee.id, name: 'Cy' } })
        assert.equal(await b.arg('alert'), 'Anauthorized operation. Abort.')
        a.emit('kick', { ...auth(ann), kickedAttendee: { id: ann.attendee.id } })
        assert.equal(await a.arg('alert'), 'Workspace owner cannot be kicked out of workspace.')

        const kicked = { id: cy.attendee.id, name: 'Cy' }
        a.emit('kick', { ...auth(ann), kickedAttendee: kicked })
        for (const x of [a, b, c, d]) assert.deepEqual(await x.arg('kicked'), kicked)
        // Cy left the room: toggles no longer reach it.
        b.emit('mic-toggle', { ...auth(bob), state: true })
        await a.arg('mic-toggle')
        await c.none('mic-toggle', 300)

        a.emit('leave', { ...auth(ann), attendee: ann.attendee })
        assert.equal(await a.arg('alert'), 'Workspace owner cannot leave. Only shutdown is allowed.')
        d.emit('leave', { ...auth(dee), attendee: dee.attendee })
        assert.deepEqual(await a.arg('leave'), dee.attendee)
        assert.deepEqual(await b.arg('leave'), dee.attendee)
        await d.none('leave', 100)
        b.emit('cam-toggle', { ...auth(bob), state: true })
        await a.arg('cam-toggle')
        await d.none('cam-toggle', 300)
      } finally {
        closeAll([a, b, c, d])
      }
    })

    test('re-attend after reconnect moves the attendee to the new socket', { timeout: TEST_MS }, async () => {
      const [a, b] = await connectAll(2, { transports })
      let b2
      try {
        const ann = await create(a)
        const bob = await attend(b, ann, 'Bob')
        await a.next('attend')
        b.close()
        b2 = await new SioClient({ transports }).connected()
        b2.emit('re-attend', { workspace: bob.workspace, attendee: bob.attendee, accessToken: bob.accessToken, nonce: 'again' })
        const r = await b2.arg('re-attendance-granted')
        assert.deepEqual(r.attendee, { ...bob.attendee, socket: b2.id })
        assert.equal(r.nonce, 'again')
        assert.equal(r.call, null)
        assert.deepEqual(Object.keys(r.workspace).sort(), ['avatar', 'created', 'id', 'name', 'owner', 'token'])
        assert.deepEqual(Object.keys(r.attendees).sort(), [ann.attendee.id, bob.attendee.id].sort())
        assert.deepEqual(await a.arg('attend'), { ...bob.attendee, socket: b2.id })
        // Directed events for Bob reach the new socket.
        a.emit('ring', { ...auth(ann), attendee: ann.attendee, callee: { id: bob.attendee.id }, call: { id: 'c1' }, offer: { type: 'offer', sdp: 'x' } })
        assert.equal((await b2.arg('ring')).call.id, 'c1')
        // The renewed access token works.
        b2.emit('mic-toggle', { ...auth({ ...bob, accessToken: r.accessToken }), state: true })
        await a.arg('mic-toggle')
      } finally {
        closeAll([a, b, b2])
      }
    })

    test('destroy tells everyone, later events meet destroyed', { timeout: TEST_MS }, async () => {
      const [a, b] = await connectAll(2, { transports })
      try {
        const ann = await create(a, '')
        const bob = await attend(b, ann, 'Bob', '')
        b.emit('destroy', auth(bob))
        assert.equal(await b.arg('alert'), 'Anauthorized operation. Abort.')
        a.emit('destroy', auth(ann))
        const other = await b.next('destroyed')
        const own = await a.next('destroyed')
        assert.deepEqual(other.args, [{}])
        assert.deepEqual(own.args, [{}])
        // The emission order (others first, then the owner) is checked by the unit tests:
        // arrival order across two connections is not observable reliably.
        b.emit('mic-toggle', { ...auth(bob), state: true })
        assert.deepEqual(await b.arg('destroyed'), {})
        b.emit('attend', { workspace: { token: ann.workspace.token }, attendee: { name: 'Again' } })
        assert.deepEqual(await b.arg('destroyed'), {})
      } finally {
        closeAll([a, b])
      }
    })
  })
}
