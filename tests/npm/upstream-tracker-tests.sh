#!/usr/bin/env bash
# Runs the UPSTREAM bittorrent-tracker v11.2.3 tape tests of its WebSocket client against an
# outside tracker (sigyard, or any other WebTorrent tracker on this machine):
#
#   bash tests/npm/upstream-tracker-tests.sh CHECKOUT URL
#
#   CHECKOUT  a checkout of github.com/webtorrent/bittorrent-tracker at tag v11.2.3 (commit
#             33fbbc5b9d529650884b1a836dbe1948b56d66a4), e.g.
#             git clone --depth 1 --branch v11.2.3 https://github.com/webtorrent/bittorrent-tracker
#             Only its test/ files are read; any checkout whose test files are byte-identical to
#             the tag's is accepted (checked by git blob hash, below).
#   URL       the tracker, ws://HOST:PORT[/path] with a loopback HOST (127.x.x.x, localhost,
#             [::1]), e.g. ws://127.0.0.1:8080/announce or the bare ws://127.0.0.1:8080.
#
# Why a script and not a test file: the upstream tests are not in the npm package (it ships no
# test/ directory), so they cannot come from node_modules, and upstream files are not kept in
# this repository. Everything happens in a fresh temp dir that is removed on exit:
#   1. the test files are copied from CHECKOUT (and checked to be v11.2.3's); test/common.js is
#      replaced: createServer hands the tests URL and a dummy server instead of starting
#      bittorrent-tracker's own Server (mockWebsocketTracker stays upstream's own); only the ws
#      cases are kept, and three of them lose one assertion each on the in-process server's
#      events (prepare.mjs below: each change with its reason, also left as a comment in the
#      prepared file).
#   2. npm installs, pinned: bittorrent-tracker 11.2.3 (the client under test, from npm, not the
#      checkout's source) and the upstream devDependencies the chosen files import, at the
#      versions v11.2.3's package.json pins (tape 5.9.0, webtorrent-fixtures 2.0.3, magnet-uri
#      7.0.8; undici, which test/client.js imports at top level, at 6.21.3 for its "^6.16.1").
#   3. the webrtc-polyfill stub of tests/npm/lib/tracker-client.mjs is installed there by calling
#      that module's installWebrtcStub() (copied next to the temp node_modules, so the module
#      resolves that tree; see tests/npm/README.md for why the stub is needed).
# Prints one line per test, then "upstream: N passed, N failed"; exit status 0 only if every ws
# case passed. Time is bounded (npm install and each test file run under `timeout`); network
# traffic is loopback only (URL is checked; a preload makes DNS answer only localhost).
# Env: UPSTREAM_TESTS_FILE_TIMEOUT (s per test file, default 30), UPSTREAM_TESTS_INSTALL_TIMEOUT
# (s for npm install, default 300).
set -euo pipefail

usage() {
  echo "usage: $0 CHECKOUT URL   (CHECKOUT: bittorrent-tracker at v11.2.3; URL: ws://127.0.0.1:PORT[/announce])" >&2
  exit 2
}
[ $# -eq 2 ] || usage
checkout="$(cd "$1" 2>/dev/null && pwd)" || { echo "no such directory: $1" >&2; exit 2; }
url="$2"
# The client drops a trailing '/' from announce URLs, and the tests compare the URL they gave
# with the one reported in events, so give them the URL without it.
while [[ "$url" == */ ]]; do url="${url%/}"; done
if ! [[ "$url" =~ ^wss?://(localhost|127(\.[0-9]{1,3}){3}|\[::1\])(:[0-9]+)?(/.*)?$ ]]; then
  echo "URL must be ws:// or wss:// on a loopback host (127.x.x.x, localhost, [::1]): $2" >&2
  exit 2
fi

here="$(cd "$(dirname "$0")" && pwd)"
file_timeout="${UPSTREAM_TESTS_FILE_TIMEOUT:-30}"
install_timeout="${UPSTREAM_TESTS_INSTALL_TIMEOUT:-300}"
FILES=(client.js client-magnet.js client-large-torrent.js client-ws-socket-pool.js scrape.js destroy.js)

work="$(mktemp -d -t sigyard-upstream-tracker.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/test" "$work/lib" "$work/sigyard" "$work/logs"

# --- 1. the test files (checked and prepared before anything is installed) ----------------------
# The upstream tests import '../index.js' and '../lib/common.js' (the package root, as in the
# repository): point both at the npm package.
cat >"$work/index.js" <<'EOF'
export * from 'bittorrent-tracker'
export { default } from 'bittorrent-tracker'
EOF
cat >"$work/lib/common.js" <<'EOF'
export * from '../node_modules/bittorrent-tracker/lib/common.js'
export { default } from '../node_modules/bittorrent-tracker/lib/common.js'
EOF

# Keeps DNS on this machine: the one name the chosen tests resolve is invalid.lol (scrape.js,
# "ws: scrape using Client.scrape static method (invalid url)", which expects an error). Without
# this its lookup goes to the configured resolver; with it any name but localhost fails at once
# with ENOTFOUND, which is what that test is written for. IP literals never reach dns.lookup.
cat >"$work/loopback-guard.mjs" <<'EOF'
import dns from 'node:dns'
import net from 'node:net'
const lookup = dns.lookup
dns.lookup = function (hostname, options, callback) {
  if (typeof options === 'function') { callback = options; options = {} }
  if (net.isIP(hostname) || hostname === 'localhost') return lookup.call(this, hostname, options, callback)
  const err = new Error(`getaddrinfo ENOTFOUND ${hostname} (upstream-tracker-tests.sh: loopback only)`)
  Object.assign(err, { code: 'ENOTFOUND', errno: -3008, syscall: 'getaddrinfo', hostname })
  process.nextTick(callback, err)
}
EOF

cat >"$work/prepare.mjs" <<'EOF'
// Copies the upstream test files from the checkout (argv[2]) into ./test, checks they are
// v11.2.3's, keeps only their ws cases, applies the assertion drops and writes expected.json.
import { readFileSync, writeFileSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { join } from 'node:path'

process.on('uncaughtException', e => {
  console.error(`upstream-tracker-tests.sh: ${e.message}`)
  process.exit(2)
})
const checkout = process.argv[2]
const files = process.argv.slice(3)

// git blob ids of the files at tag v11.2.3 (git ls-tree v11.2.3 test/): the drops below are
// exact text replacements, so they are only meaningful on exactly these files.
const BLOBS = {
  'common.js': '5ff6ce39fc6d63cf3c051088343248983f3d2f25',
  'client.js': 'd81ee55f065c7f5046e2b68d6e1792d596773026',
  'client-magnet.js': 'a6268b3fc22e2802fadeae9517e9a7a8ad305365',
  'client-large-torrent.js': 'db0d0fbf9cd3cb03d4a0494e1f783b3ce564a24f',
  'client-ws-socket-pool.js': '6d3fe1a3f4465e67b2c13c1ea2b23738dfcf6cff',
  'scrape.js': 'c0c101a5f327e5ebb01da3b35c90716fff01e0ef',
  'destroy.js': 'e9d7af3a434acf56addf6ded559e7627ad74b430',
}
const gitBlobId = buf =>
  createHash('sha1').update(`blob ${buf.length}\0`).update(buf).digest('hex')

function read(name) {
  let buf
  try {
    buf = readFileSync(join(checkout, 'test', name))
  } catch (e) {
    throw new Error(`${join(checkout, 'test', name)}: ${e.code ?? e.message} (is CHECKOUT a bittorrent-tracker checkout?)`)
  }
  const id = gitBlobId(buf)
  if (id !== BLOBS[name]) {
    throw new Error(`test/${name} is not v11.2.3's (blob ${id}, expected ${BLOBS[name]}); check out tag v11.2.3`)
  }
  return buf.toString('utf8')
}

// Which tests run. Every file but client-ws-socket-pool.js repeats each case for http, udp and
// ws as `test('<type>: ...', t => fn(t, '<type>'))` (plus a few http-only `server: ...` cases
// and client.js's `unsupported tracker protocol`); tape has no test-name filter, so the others
// become tape's own `test.skip(` (never run, not printed). client-ws-socket-pool.js is ws only
// (its one test calls createServer(t, 'ws')), so all of it runs.
const KEEP = name => name.startsWith('ws: ')
const WS_ONLY_FILES = new Set(['client-ws-socket-pool.js'])

// The assertion drops (ws cases only run; the http/udp twins of these functions are skipped).
// Each removes an assertion on an event of the in-process bittorrent-tracker Server that
// upstream's createServer starts. Against an outside tracker there is no such object to listen
// on (the dummy server never emits), so the assertion cannot be made from the client's side;
// the plan shrinks by the assertions removed. The client still sends the same frames, and what
// the tracker answers is asserted as upstream does. Each edit leaves a comment saying why.
const note = (indent, ...lines) =>
  lines.map((l, i) => `${indent}// ${i ? '' : 'upstream-tracker-tests.sh: '}${l}\n`).join('')
const STOP_WHY = [
  "dropped server.once('stop', ...) and its t.pass: an event of",
  'the in-process Server, which an outside tracker does not have. The stop is still sent, but',
  "the client is destroyed in the same tick, so no response comes back: the tracker's receipt",
  'of it is not observable from the client side.',
]
const PARAM_WHY = [
  "dropped server.on('start', ...) checking params.testParam:",
  'an event of the in-process Server, which an outside tracker does not have. The client',
  'still sends testParam in its announce; an outside tracker does not report the params it',
  'received.',
]
const DROPS = [
  {
    file: 'client.js',
    test: 'ws: client.stop(); client.destroy()',
    what: "dropped server.once('stop') and its t.pass (in-process Server event); plan 2 -> 1",
    edits: [
      [
        'function testClientStopDestroy (t, serverType) {\n  t.plan(2)\n',
        'function testClientStopDestroy (t, serverType) {\n' +
          note('  ', "plan 2 -> 1: server.once('stop') is dropped below (why: there)") +
          '  t.plan(1)\n',
        1,
      ],
      [
        "      server.once('stop', (peer, params) => {\n" +
          `        t.pass('server received "stop" message')\n` +
          '        setTimeout(() => {\n' +
          '          // give the websocket server time to finish in progress (stream) messages\n' +
          '          // to peers\n' +
          '          server.close()\n' +
          '        }, 100)\n' +
          '      })\n',
        note('      ', ...STOP_WHY),
        1,
      ],
    ],
  },
  {
    file: 'client.js',
    test: 'ws: client.announce() with params, ws: client `opts.getAnnounceOpts`',
    what: "dropped server.on('start') checking params.testParam (in-process Server event); plans 5 -> 4",
    edits: [
      [
        'function testClientAnnounceWithParams (t, serverType) {\n  t.plan(5)\n',
        'function testClientAnnounceWithParams (t, serverType) {\n' +
          note('  ', "plan 5 -> 4: server.on('start') is dropped below (why: there)") +
          '  t.plan(4)\n',
        1,
      ],
      [
        'function testClientGetAnnounceOpts (t, serverType) {\n  t.plan(5)\n',
        'function testClientGetAnnounceOpts (t, serverType) {\n' +
          note('  ', "plan 5 -> 4: server.on('start') is dropped below (why: there)") +
          '  t.plan(4)\n',
        1,
      ],
      [
        "    server.on('start', (peer, params) => {\n" +
          "      t.equal(params.testParam, 'this is a test')\n" +
          '    })\n',
        note('    ', ...PARAM_WHY),
        2, // once in each of the two functions
      ],
    ],
  },
]

const sources = Object.fromEntries(['common.js', ...files].map(name => [name, read(name)]))
console.log(`   ${Object.keys(sources).length} files, each identical to v11.2.3's (git blob id)`)

// common.js: upstream's stays as common.upstream.js for its mockWebsocketTracker (it also
// imports Server from ../index.js, i.e. the npm package; harmless, never started).
writeFileSync('test/common.upstream.js', sources['common.js'])
writeFileSync(
  'test/common.js',
  `// upstream-tracker-tests.sh: replaces bittorrent-tracker's test/common.js. createServer does not
// start a tracker: it hands the test the outside tracker's URL and a dummy server whose close()
// only calls its callback (the tracker is not ours to stop) and which never emits events.
import { EventEmitter } from 'node:events'
import { mockWebsocketTracker } from './common.upstream.js'

const URL = process.env.UPSTREAM_TRACKER_URL

export const createServer = (t, opts, cb) => {
  if (typeof opts === 'string') opts = { serverType: opts }
  if (opts.serverType !== 'ws') {
    t.fail(\`only ws runs against an outside tracker, not \${opts.serverType}\`)
    t.end()
    return
  }
  const server = new EventEmitter()
  server.close = done => { if (done) process.nextTick(done) }
  // upstream calls cb from server.listen's callback, so asynchronously too
  process.nextTick(cb, server, URL)
}

export { mockWebsocketTracker }
export default { mockWebsocketTracker, createServer }
`
)

const expected = {}
let skipped = 0
for (const file of files) {
  let text = sources[file]
  for (const drop of DROPS.filter(d => d.file === file)) {
    for (const [find, replace, count] of drop.edits) {
      const n = text.split(find).length - 1
      if (n !== count) throw new Error(`${file}: expected ${count} occurrence(s) of ${JSON.stringify(find)}, found ${n}`)
      text = text.split(find).join(replace)
    }
    console.log(`   ${file}: ${drop.test}: ${drop.what}`)
  }
  const names = []
  const calls = text.match(/^test\(/gm)?.length ?? 0
  text = text.replace(/^test\('((?:[^'\\]|\\.)*)'/gm, (call, name) => {
    if (WS_ONLY_FILES.has(file) || KEEP(name)) {
      names.push(name)
      return call
    }
    skipped++
    return call.replace(/^test\(/, 'test.skip(')
  })
  if ((text.match(/^test\(/gm)?.length ?? 0) !== names.length || names.length === 0 || calls < names.length) {
    throw new Error(`${file}: unexpected test() calls; is this v11.2.3?`)
  }
  writeFileSync(join('test', file), text)
  expected[file] = names
}
writeFileSync('expected.json', JSON.stringify({ expected, skipped }, null, 2))
const kept = Object.values(expected).flat().length
console.log(`   ws cases only: ${kept} tests kept, ${skipped} others made test.skip`)
EOF

echo "== upstream test files from $checkout"
(cd "$work" && node prepare.mjs "$checkout" "${FILES[@]}") || exit 2

# --- 2. dependencies (pinned) -----------------------------------------------------------------
cat >"$work/package.json" <<'EOF'
{
  "name": "bittorrent-tracker-upstream-tests",
  "private": true,
  "type": "module",
  "dependencies": {
    "bittorrent-tracker": "11.2.3",
    "magnet-uri": "7.0.8",
    "tape": "5.9.0",
    "undici": "6.21.3",
    "webtorrent-fixtures": "2.0.3"
  }
}
EOF
# Seeding with the project's lockfile resolves bittorrent-tracker's own dependency tree to the
# versions tests/npm uses (webrtc-polyfill, simple-peer, ws, ...); npm drops the entries this
# package.json does not need and adds the test deps. --ignore-scripts as in tests/npm/.npmrc:
# install scripts would try to download native binaries (node-datachannel).
cp "$here/package-lock.json" "$work/package-lock.json"
echo "== npm install in $work (pinned; --ignore-scripts)"
(cd "$work" && timeout -k 5 "$install_timeout" npm install --ignore-scripts --no-audit --no-fund --loglevel=error) >"$work/logs/npm.log" 2>&1 || {
  cat "$work/logs/npm.log" >&2
  echo "npm install failed or timed out" >&2
  exit 2
}

# --- 3. the webrtc-polyfill stub, by the project's own code ------------------------------------
# tracker-client.mjs finds webrtc-polyfill with import.meta.resolve, i.e. relative to where the
# module file is; a copy inside $work makes it stub $work/node_modules (and not tests/npm's).
# helpers.mjs (which it imports) requires SIGYARD_URL to be set at import time.
cp "$here/lib/tracker-client.mjs" "$here/lib/helpers.mjs" "$work/sigyard/"
(cd "$work" && SIGYARD_URL="$url" node --input-type=module -e \
  "const m = await import('./sigyard/tracker-client.mjs'); m.installWebrtcStub()") || {
  echo "installing the webrtc-polyfill stub failed" >&2
  exit 2
}

# --- 4. run --------------------------------------------------------------------------------------
cat >"$work/summarize.mjs" <<'EOF'
// Reads logs/<file>.tap (+ .rc) for every file of expected.json and prints one line per test:
// a test passed if it printed at least one `ok` and no `not ok` (a file that timed out or
// crashed without a failed assertion fails the test it was in; tests it never reached fail).
import { readFileSync, existsSync } from 'node:fs'

const { expected, skipped } = JSON.parse(readFileSync('expected.json', 'utf8'))
let passed = 0
let failed = 0
const failedFiles = []
for (const [file, names] of Object.entries(expected)) {
  const tap = existsSync(`logs/${file}.tap`) ? readFileSync(`logs/${file}.tap`, 'utf8') : ''
  const rc = Number(readFileSync(`logs/${file}.rc`, 'utf8').trim())
  const seen = new Map() // name -> { ok, notOk }
  let current = null
  for (const line of tap.split('\n')) {
    if (/^1\.\.\d+$/.test(line)) break // tape's closing plan; its counts follow
    if (line.startsWith('# ')) {
      current = { ok: 0, notOk: 0 }
      seen.set(line.slice(2), current)
    } else if (current && /^ok \d+/.test(line)) current.ok++
    else if (current && /^not ok \d+/.test(line)) current.notOk++
  }
  // A non-zero exit with no failed assertion (a crash, a timeout) is charged to the last test
  // that started.
  const unexplained = rc !== 0 && ![...seen.values()].some(r => r.notOk > 0)
  const last = [...seen.keys()].at(-1)
  let fileFailed = rc !== 0
  for (const name of names) {
    const r = seen.get(name)
    let verdict
    if (!r) verdict = rc === 124 ? 'FAIL (not reached: file timed out)' : 'FAIL (not reached)'
    else if (r.notOk > 0) verdict = `FAIL (${r.notOk} of ${r.ok + r.notOk} assertions failed)`
    else if (unexplained && name === last) verdict = rc === 124 ? 'FAIL (timed out)' : `FAIL (file exited ${rc})`
    else if (r.ok === 0) verdict = 'FAIL (no assertion)'
    else verdict = `pass (${r.ok} assertion${r.ok === 1 ? '' : 's'})`
    if (verdict.startsWith('pass')) passed++
    else {
      failed++
      fileFailed = true
    }
    console.log(`${verdict.startsWith('pass') ? 'pass' : 'FAIL'}  ${file}: ${name}  ${verdict.replace(/^(pass|FAIL) ?/, '')}`)
  }
  if (fileFailed) failedFiles.push(file)
}
console.log(`(${skipped} non-ws cases of the same files not run: test.skip)`)
if (failedFiles.length) console.log(`FAILED_FILES=${failedFiles.join(' ')}`)
console.log(`upstream: ${passed} passed, ${failed} failed`)
process.exit(failed === 0 ? 0 : 1)
EOF

# One node process per file, as upstream's `tape test/*.js` would load them but isolated (the
# client's socket pool is per process; every file reuses the same info hashes and peer ids,
# which is fine since the files run one after another).
echo "== running against $url (each file bounded by ${file_timeout}s)"
for f in "${FILES[@]}"; do
  rc=0
  (cd "$work" && UPSTREAM_TRACKER_URL="$url" timeout -k 5 "$file_timeout" \
    node --import ./loopback-guard.mjs "test/$f" >"logs/$f.tap" 2>"logs/$f.err") || rc=$?
  echo "$rc" >"$work/logs/$f.rc"
done

rc=0
summary="$(cd "$work" && node summarize.mjs)" || rc=$?
failed_files="$(sed -n 's/^FAILED_FILES=//p' <<<"$summary")"
for f in $failed_files; do
  echo "---- $f: TAP (exit status $(cat "$work/logs/$f.rc"))"
  sed 's/^/  /' "$work/logs/$f.tap"
  if [ -s "$work/logs/$f.err" ]; then
    echo "---- $f: stderr"
    sed 's/^/  /' "$work/logs/$f.err"
  fi
done
grep -v '^FAILED_FILES=' <<<"$summary"
exit "$rc"
