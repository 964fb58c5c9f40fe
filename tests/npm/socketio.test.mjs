// Real-client tests of sigyard's Engine.IO 3 / Socket.IO 2 layer: socket.io-client 2.5.0
// (the socket.io-client@2 line the webRTWorkspaces and MewConnect clients use) with
// polling-only, websocket-only and upgrading transports, against the layer's test rooms
// dialect (enabled with --echo, chosen by the handshake query `echo`).
// Run: SIGYARD_URL=ws://127.0.0.1:8080 node --test tests/npm/ (server started with --echo)
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { TEST_MS, exitWhenDone, until } from './lib/helpers.mjs'
import { connect, next, nextEvent, collect, quiet, closeAll } from './lib/sio.mjs'

exitWhenDone()

const echo = (opts = {}) => connect({ query: { echo: '1' }, ...opts })
const TEXT = 'héllo wörld — 中文 😀 𝄞'

for (const transports of [['polling'], ['websocket']]) {
  test(`${transports[0]}-only client: connect, events with non-ASCII text, ping`, { timeout: TEST_MS }, async t => {
    const s = echo({ transports, upgrade: false })
    closeAll(t, s)
    const welcome = await next(s, 'welcome')
    await next(s, 'connect').catch(() => {}) // may already have fired
    assert.equal(s.connected, true)
    assert.equal(welcome.sid, s.id)
    assert.equal(s.id.length, 20)
    assert.equal(welcome.query.transport, transports[0])
    s.emit('echo', TEXT, { n: [1, 2, 3] })
    assert.deepEqual(await nextEvent(s, 'echo'), [TEXT, { n: [1, 2, 3] }])
    // A burst, in order.
    const got = collect(s, 'echo')
    for (let i = 0; i < 50; i++) s.emit('echo', i)
    await until(() => got.length === 50, 3000, '50 echoes')
    assert.deepEqual(got, [...Array(50).keys()])
    // Engine.IO 3 heartbeat: the client pings, the server pongs.
    const pong = nextEvent(s.io.engine, 'pong')
    s.io.engine.ping()
    await pong
    assert.equal(s.io.engine.transport.name, transports[0])
  })
}

test('upgrading client moves from polling to websocket without losing or repeating a message', { timeout: TEST_MS }, async t => {
  const sender = echo({ transports: ['websocket'] })
  await next(sender, 'welcome')
  sender.emit('join', 'up')
  await next(sender, 'joined')
  const a = echo({ transports: ['polling', 'websocket'] })
  closeAll(t, sender, a)
  const welcome = await next(a, 'welcome')
  assert.equal(welcome.query.transport, 'polling')
  const msgs = collect(a, 'msg')
  const upgraded = nextEvent(a.io.engine, 'upgrade', 5000)
  a.emit('join', 'up')
  await next(a, 'joined')
  // The sender streams while the client probes, pauses polling and upgrades.
  let i = 0
  const timer = setInterval(() => sender.emit('to', 'up', i++), 2)
  await upgraded
  await new Promise(r => setTimeout(r, 100))
  clearInterval(timer)
  const sent = i
  await until(() => msgs.length >= sent, 3000, `${sent} messages`)
  assert.equal(a.io.engine.transport.name, 'websocket')
  assert.deepEqual(msgs, [...Array(sent).keys()], 'each message once, in order')
  assert.ok(sent > 10, `messages were in flight during the upgrade (${sent})`)
  a.emit('echo', 'after')
  assert.deepEqual(await nextEvent(a, 'echo'), ['after'])
})

test('rooms: to the room except the sender, to the room including it, to a socket id', { timeout: TEST_MS }, async t => {
  const [a, b, c] = [echo(), echo({ transports: ['websocket'] }), echo({ transports: ['polling'], upgrade: false })]
  closeAll(t, a, b, c)
  await Promise.all([a, b, c].map(s => next(s, 'welcome')))
  for (const s of [a, b]) {
    s.emit('join', 'r1')
    await next(s, 'joined')
  }
  const [ma, mb, mc] = [a, b, c].map(s => collect(s, 'msg'))
  a.emit('to', 'r1', 'except')
  await until(() => mb.length === 1, 2000, 'b gets it')
  b.emit('all', 'r1', 'including')
  await until(() => ma.length === 1 && mb.length === 2, 2000, 'both get it')
  assert.deepEqual(ma, ['including'], 'the sender does not get its `to`, gets its `all`')
  assert.deepEqual(mb, ['except', 'including'])
  // Every socket is in the room of its own id.
  b.emit('direct', c.id, 'to c')
  assert.equal(await next(c, 'msg'), 'to c')
  b.emit('leave', 'r1')
  await new Promise(r => setTimeout(r, 100))
  a.emit('all', 'r1', 'after leave')
  assert.equal(await next(a, 'msg'), 'after leave')
  assert.ok(await quiet(b, 'msg'), 'b left the room')
  assert.deepEqual(mc, ['to c'])
})

test('server errors and server-side disconnect reach the client', { timeout: TEST_MS }, async t => {
  for (const transports of [['polling'], ['websocket']]) {
    const s = echo({ transports, upgrade: false })
    const watcher = echo()
    closeAll(t, s, watcher)
    await Promise.all([next(s, 'welcome'), next(watcher, 'welcome')])
    watcher.emit('join', 'watchers')
    await next(watcher, 'joined')
    s.emit('fail')
    assert.equal(await next(s, 'error'), 'boom')
    const id = s.id
    const gone = next(watcher, 'gone')
    s.emit('bye')
    assert.equal(await next(s, 'disconnect'), 'io server disconnect')
    assert.equal(await gone, id)
  }
})

test('a client that goes away is disconnected for its room', { timeout: TEST_MS }, async t => {
  const watcher = echo()
  const s = echo({ transports: ['websocket'] })
  closeAll(t, watcher, s)
  await Promise.all([next(s, 'welcome'), next(watcher, 'welcome')])
  watcher.emit('join', 'watchers')
  await next(watcher, 'joined')
  const id = s.id
  const gone = next(watcher, 'gone')
  s.close()
  assert.equal(await gone, id)
})

test('an Engine.IO 4 client is refused with the standard error', { timeout: TEST_MS }, async () => {
  const { SIO_URL } = await import('./lib/sio.mjs')
  const res = await fetch(`${SIO_URL}/socket.io/?EIO=4&transport=polling`)
  assert.equal(res.status, 400)
  assert.deepEqual(await res.json(), { code: 5, message: 'Unsupported protocol version' })
})
