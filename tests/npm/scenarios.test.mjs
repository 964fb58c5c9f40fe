// Protocol scenarios with raw `ws` sockets against the server at SIGYARD_URL (cevitxe
// Server.test-style, see shared/spec/PROTOCOLS.md §2.3-2.4 and §2.8). The introduction tests
// run once per dialect: A = cevitxe JSON (join/id/keys), B = relay 2.x-3.x JSON
// (documentIds/userName), C = relay 4.x binary msgpack (documentIds/peerId). The pipe tests
// (/connection/:A/:B/:key) do not depend on the dialect.
// Run: SIGYARD_URL=ws://127.0.0.1:8080 node --test tests/npm/
// Pick parts with --test-name-pattern, e.g. "dialect A" or "pipe:".
import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import { pack, unpack } from 'msgpackr'
import { SERVER_URLS, TEST_MS, uid, sleep, RawSocket, openAll, closeAll, exitWhenDone } from './lib/helpers.mjs'

exitWhenDone()

/** Time allowed for a server to process one message before the next step depends on it. */
const SETTLE_MS = Number(process.env.SIGYARD_SETTLE_MS) || 150

const dialects = {
  A: {
    label: 'dialect A (cevitxe JSON)',
    join: (keys, extra = {}) => JSON.stringify({ type: 'Join', ...extra, join: keys }),
    intro: (peer, keys) => ({ type: 'Introduction', id: peer, keys }),
    introPeer: m => m.id,
    introKeys: m => m.keys,
    binary: false,
    garbage: '{"type":"Join","join":["oops"', // truncated JSON
  },
  B: {
    label: 'dialect B (relay 3.x JSON)',
    join: keys => JSON.stringify({ type: 'Join', documentIds: keys }),
    intro: (peer, documentIds) => ({ type: 'Introduction', userName: peer, documentIds }),
    introPeer: m => m.userName,
    introKeys: m => m.documentIds,
    binary: false,
    garbage: '{"type":"Join","documentIds":["oops"',
  },
  C: {
    label: 'dialect C (relay 4.x msgpack)',
    join: keys => pack({ type: 'Join', documentIds: keys }),
    intro: (peer, documentIds) => ({ type: 'Introduction', peerId: peer, documentIds }),
    introPeer: m => m.peerId,
    introKeys: m => m.documentIds,
    binary: true,
    garbage: Buffer.from([0xc1, 0xc1, 0xc1]), // 0xc1 is never valid MessagePack
  },
}

/** Decode one received introduction-socket message, checking its frame type for the dialect. */
function decode(dialect, msg) {
  if (dialect.binary) {
    assert.equal(msg.isBinary, true, 'dialect C introductions must be binary frames')
    return unpack(msg.data)
  }
  assert.equal(msg.isBinary, false, `${dialect.label}: introductions must be text frames`)
  return JSON.parse(msg.text)
}

/** A received pipe message as comparable text: text frames as-is, binary frames tagged. */
const show = m => (m.isBinary ? `<binary ${m.data.toString('hex')}>` : m.text)

const introSockets = async (t, ids) => {
  const sockets = await openAll(ids.map(id => `/introduction/${encodeURIComponent(id)}`))
  t.after(() => closeAll(sockets))
  return sockets
}

for (const [code, dialect] of Object.entries(dialects)) {
  describe(dialect.label, () => {
    test(`dialect ${code}: two peers on one key are introduced to each other (exact messages)`, { timeout: TEST_MS }, async t => {
      const [aliceId, bobId, key, other] = [uid('alice'), uid('bob'), uid('key'), uid('key')]
      const [alice, bob] = await introSockets(t, [aliceId, bobId])
      alice.send(dialect.join([key], code === 'A' ? { id: aliceId } : {})) // A: server tests send an extra id
      await sleep(SETTLE_MS)
      assert.equal(alice.received.length, 0, 'nobody to introduce yet')
      bob.send(dialect.join([key, other], code === 'A' ? { id: bobId } : {}))
      const [toBob] = await bob.waitForCount(1)
      const [toAlice] = await alice.waitForCount(1)
      assert.deepEqual(decode(dialect, toBob), dialect.intro(aliceId, [key]))
      assert.deepEqual(decode(dialect, toAlice), dialect.intro(bobId, [key]))
      await sleep(SETTLE_MS)
      assert.equal(alice.received.length, 1, 'alice: exactly one introduction')
      assert.equal(bob.received.length, 1, 'bob: exactly one introduction')
      assert.ok(!alice.closed && !bob.closed, 'introduction sockets stay open')
    })

    test(`dialect ${code}: the Join sender is sent its Introduction first`, { timeout: TEST_MS }, async t => {
      // Observed as arrival order at this process over loopback (best effort; see README).
      const [aliceId, bobId, key] = [uid('alice'), uid('bob'), uid('key')]
      const [alice, bob] = await introSockets(t, [aliceId, bobId])
      alice.send(dialect.join([key]))
      await sleep(SETTLE_MS)
      bob.send(dialect.join([key]))
      const [toBob] = await bob.waitForCount(1)
      const [toAlice] = await alice.waitForCount(1)
      assert.deepEqual(decode(dialect, toBob), dialect.intro(aliceId, [key]))
      assert.deepEqual(decode(dialect, toAlice), dialect.intro(bobId, [key]))
      // Across cluster nodes the two sockets are written by different processes: their
      // relative arrival order is not something one server decides (README, "Run a cluster").
      if (SERVER_URLS.length === 1) {
        assert.ok(toBob.seq < toAlice.seq, 'bob (who sent the Join) must get his Introduction before alice')
      }
    })

    test(`dialect ${code}: invitations both ways, accepted over /connection`, { timeout: TEST_MS }, async t => {
      const [aliceId, bobId] = [uid('alice'), uid('bob')]
      const [k1, k2, k3, k4] = [uid('k1'), uid('k2'), uid('k3'), uid('k4')]
      const [alice, bob] = await introSockets(t, [aliceId, bobId])
      alice.send(dialect.join([k1, k2, k3]))
      await sleep(SETTLE_MS)
      bob.send(dialect.join([k3, k2, k4]))
      const toAlice = decode(dialect, (await alice.waitForCount(1))[0])
      const toBob = decode(dialect, (await bob.waitForCount(1))[0])
      assert.equal(dialect.introPeer(toAlice), bobId, 'alice is invited to bob')
      assert.equal(dialect.introPeer(toBob), aliceId, 'bob is invited to alice')
      // the order of the common keys is not something clients depend on
      assert.deepEqual([...dialect.introKeys(toAlice)].sort(), [k2, k3].sort())
      assert.deepEqual([...dialect.introKeys(toBob)].sort(), [k2, k3].sort())

      // both accept the invitation for every common key, as the real clients do
      const pipes = []
      for (const key of dialect.introKeys(toAlice)) {
        pipes.push([new RawSocket(`/connection/${aliceId}/${bobId}/${key}`), new RawSocket(`/connection/${bobId}/${aliceId}/${key}`), key])
      }
      t.after(() => closeAll(pipes.flatMap(([a, b]) => [a, b])))
      await Promise.all(pipes.flatMap(([a, b]) => [a.open(), b.open()]))
      for (const [a, b, key] of pipes) {
        a.send(`alice on ${key}`)
        b.send(`bob on ${key}`)
      }
      for (const [a, b, key] of pipes) {
        assert.equal(show((await b.waitForCount(1))[0]), `alice on ${key}`)
        assert.equal(show((await a.waitForCount(1))[0]), `bob on ${key}`)
      }
    })

    test(`dialect ${code}: a repeated Join re-sends introductions for all current overlaps`, { timeout: TEST_MS }, async t => {
      const [aliceId, bobId, key, later] = [uid('alice'), uid('bob'), uid('key'), uid('key')]
      const [alice, bob] = await introSockets(t, [aliceId, bobId])
      alice.send(dialect.join([key]))
      await sleep(SETTLE_MS)
      bob.send(dialect.join([key]))
      await alice.waitForCount(1)
      await bob.waitForCount(1)
      alice.send(dialect.join([later])) // no new overlap, but key is still shared
      const [, again] = await alice.waitForCount(2)
      const [, againBob] = await bob.waitForCount(2)
      assert.deepEqual(decode(dialect, again), dialect.intro(bobId, [key]))
      assert.deepEqual(decode(dialect, againBob), dialect.intro(aliceId, [key]))
    })

    test(`dialect ${code}: N-way, 5 peers on one key => 20 introductions`, { timeout: TEST_MS }, async t => {
      const key = uid('key')
      const ids = [1, 2, 3, 4, 5].map(n => uid(`peer${n}`))
      const peers = await introSockets(t, ids)
      for (let i = 0; i < peers.length; i++) {
        peers[i].send(dialect.join([key]))
        // peer i is introduced to each of the i peers that joined before it
        if (i > 0) await peers[i].waitForCount(i)
      }
      await sleep(SETTLE_MS)
      const total = peers.reduce((n, p) => n + p.received.length, 0)
      assert.equal(total, 20, 'N(N-1) introductions in total')
      peers.forEach((p, i) => {
        const named = p.received.map(m => decode(dialect, m)).map(m => {
          assert.deepEqual(dialect.introKeys(m), [key])
          return dialect.introPeer(m)
        })
        assert.deepEqual(named.sort(), ids.filter((_, j) => j !== i).sort(), `${ids[i]} meets each other peer once`)
      })
    })

    test(`dialect ${code}: a malformed message on /introduction is ignored, the socket stays usable`, { timeout: TEST_MS }, async t => {
      const [aliceId, bobId, key] = [uid('alice'), uid('bob'), uid('key')]
      const [alice, bob] = await introSockets(t, [aliceId, bobId])
      alice.send(dialect.garbage)
      await sleep(SETTLE_MS)
      assert.equal(alice.closed, false, 'socket still open after malformed input')
      alice.send(dialect.join([key]))
      await sleep(SETTLE_MS)
      bob.send(dialect.join([key]))
      assert.deepEqual(decode(dialect, (await alice.waitForCount(1))[0]), dialect.intro(bobId, [key]))
      assert.deepEqual(decode(dialect, (await bob.waitForCount(1))[0]), dialect.intro(aliceId, [key]))
    })
  })
}

describe('mixed dialects (sigyard extension, spec §2.1 RECOMMEND)', () => {
  // No original server does this: each speaks one dialect. sigyard detects the dialect per
  // introduction socket and introduces every peer in its own dialect.
  test('mixed: A, B and C peers on one key are each introduced in their own dialect', { timeout: TEST_MS }, async t => {
    const key = uid('key')
    const codes = ['A', 'B', 'C']
    const ids = codes.map(c => uid(`peer${c}`))
    const peers = await introSockets(t, ids)
    for (let i = 0; i < codes.length; i++) {
      peers[i].send(dialects[codes[i]].join([key]))
      if (i > 0) await peers[i].waitForCount(i)
    }
    await sleep(SETTLE_MS)
    peers.forEach((p, i) => {
      const dialect = dialects[codes[i]]
      const got = p.received.map(m => decode(dialect, m))
      const want = ids.filter((_, j) => j !== i).map(id => dialect.intro(id, [key]))
      const byPeer = (x, y) => (dialect.introPeer(x) < dialect.introPeer(y) ? -1 : 1)
      assert.deepEqual(got.sort(byPeer), want.sort(byPeer), `dialect ${codes[i]} peer's introductions`)
    })
  })
})

describe('pipe (/connection/:A/:B/:key)', () => {
  const pair = async (t, { openSecond = true } = {}) => {
    const [a, b, key] = [uid('a'), uid('b'), uid('key')]
    const first = new RawSocket(`/connection/${a}/${b}/${key}`)
    const second = openSecond ? new RawSocket(`/connection/${b}/${a}/${key}`) : null
    const connectSecond = () => new RawSocket(`/connection/${b}/${a}/${key}`)
    const all = [first, second].filter(Boolean)
    t.after(() => closeAll(all))
    await Promise.all(all.map(s => s.open()))
    return { first, second, connectSecond, track: s => all.push(s) }
  }

  test('pipe: two peers are piped together (DUDE!! / hello)', { timeout: TEST_MS }, async t => {
    const { first, second } = await pair(t)
    first.send('DUDE!!')
    const [m1] = await second.waitForCount(1)
    assert.equal(m1.isBinary ? m1.data.toString('utf8') : m1.text, 'DUDE!!') // frame type: see below
    second.send('hello')
    const [m2] = await first.waitForCount(1)
    assert.equal(m2.isBinary ? m2.data.toString('utf8') : m2.text, 'hello')
  })

  test('pipe: closing one end closes the other', { timeout: TEST_MS }, async t => {
    const { first, second } = await pair(t)
    first.send('ping') // make sure the pair is established before closing
    await second.waitForCount(1)
    first.close()
    await second.waitForClose()
  })

  test('pipe: messages sent before the partner connects are held and delivered in order', { timeout: TEST_MS }, async t => {
    const { first, connectSecond, track } = await pair(t, { openSecond: false })
    for (const m of ['one', 'two', 'three']) first.send(m)
    await sleep(SETTLE_MS)
    const second = connectSecond()
    track(second)
    await second.open()
    const held = await second.waitForCount(3)
    assert.deepEqual(held.map(show), ['one', 'two', 'three'], 'held messages, exact text frames, in order')
    first.send('four')
    assert.equal(show((await second.waitForCount(4))[3]), 'four', 'then live piping continues')
    second.send('back')
    assert.equal(show((await first.waitForCount(1))[0]), 'back')
  })

  test('pipe: frame type preserved while piped (text stays text, binary stays binary)', { timeout: TEST_MS }, async t => {
    const { first, second } = await pair(t)
    const bytes = Buffer.from([0, 1, 2, 0x7f, 0x80, 0xfe, 0xff])
    first.send('text ✓')
    first.send(bytes)
    second.send('reply ✓')
    second.send(Buffer.from('binary reply'))
    const [t1, b1] = await second.waitForCount(2)
    assert.equal(t1.isBinary, false, 'text frame arrives as text')
    assert.equal(t1.text, 'text ✓')
    assert.equal(b1.isBinary, true, 'binary frame arrives as binary')
    assert.deepEqual(b1.data, bytes)
    const [t2, b2] = await first.waitForCount(2)
    assert.equal(t2.isBinary, false)
    assert.equal(t2.text, 'reply ✓')
    assert.equal(b2.isBinary, true)
    assert.deepEqual(b2.data, Buffer.from('binary reply'))
  })

  test('pipe: frame type and bytes preserved for held messages', { timeout: TEST_MS }, async t => {
    const { first, connectSecond, track } = await pair(t, { openSecond: false })
    const bytes = Buffer.from([0xc4, 0x00, 0xff, 0x10])
    first.send(bytes)
    first.send('held text')
    await sleep(SETTLE_MS)
    const second = connectSecond()
    track(second)
    await second.open()
    const [b, txt] = await second.waitForCount(2)
    assert.equal(show(b), `<binary ${bytes.toString('hex')}>`, 'held binary stays binary, bytes unchanged')
    assert.equal(show(txt), 'held text', 'held text stays text, unchanged')
  })
})
