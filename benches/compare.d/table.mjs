// Helper of benches/compare: reads the run's results (one line per measurement: server,
// workload, sigyard-load --json file, server CPU ticks, note and, for the dialect runs, the
// server's kernel (stime) ticks), prints the section
// "## Side by side (benches/compare)" as markdown, and with --write FILE replaces that section
// in FILE (appends it at the end if absent; nothing else in FILE changes).
import fs from 'node:fs'

const [resultsPath, ...rest] = process.argv.slice(2)
const opt = {}
for (let i = 0; i < rest.length; i += 2) opt[rest[i].replace(/^--/, '')] = rest[i + 1] ?? ''
const tck = Number(opt.tck || 100)

// results[server][workload] = [{ round, json, ticks, note, sys }, …] in round order
const results = {}
for (const line of fs.readFileSync(resultsPath, 'utf8').split('\n')) {
  if (!line.trim()) continue
  const [round, server, workload, file, ticks, note, sys] = line.split('\t')
  let json = null
  try {
    if (file) json = JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch {}
  ;((results[server] ??= {})[workload] ??= []).push({ round: Number(round), json, ticks: ticks === '' ? null : Number(ticks), note, sys: sys ? Number(sys) : null })
}

const fmtInt = v => Math.round(v).toLocaleString('en-US')
const fmtUs = us => (us >= 10000 ? `${(us / 1000).toFixed(1)} ms` : us >= 1000 ? `${(us / 1000).toFixed(2)} ms` : `${Math.round(us)} µs`)

// One measurement of one round -> { value } or { why } when it could not be made.
function measure(r, what) {
  const j = r.json
  if (!j) return { why: r.note || 'no result' }
  if (['peerjs', 'ywebrtc', 'webtorrent'].includes(j.scenario)) return measureDialect(r, what)
  if (what === 'idle') {
    if (j.established < j.attempted) return { why: `only ${fmtInt(j.established)} of ${fmtInt(j.attempted)} connections opened` }
    const v = j.server_rss_per_connection_bytes
    return v == null ? { why: 'no RSS reading' } : { value: v }
  }
  if (j.failed > 0 || j.messages_received === 0) return { why: `${j.failed} connections failed, ${j.messages_received} messages` }
  if (what === 'rate') return { value: j.messages_per_sec }
  if (what === 'mibps') return { value: (j.messages_per_sec * Number(opt['stream-size'])) / 2 ** 20 }
  if (what === 'p99') return { value: j.latency_us.p99 }
  if (r.ticks == null) return { why: 'no CPU reading' }
  if (what === 'cpugib') return { value: r.ticks / tck / ((j.messages_received * Number(opt['stream-size'])) / 2 ** 30) }
  return { value: r.ticks / tck / (j.messages_received / 1e6) }
}
// The same for a peerjs / ywebrtc / webtorrent summary: clients set up (idle) or messages
// relayed (PeerJS), delivered (y-webrtc), or received by the peers (WebTorrent: announce
// responses, offers and answers).
function measureDialect(r, what) {
  const j = r.json
  const [got, want] = { peerjs: [j.clients, 2 * j.pairs], ywebrtc: [j.subscribed, j.connections], webtorrent: [j.announced, j.connections] }[j.scenario]
  if (what === 'idle') {
    if (got < want) return { why: `only ${fmtInt(got)} of ${fmtInt(want)} clients set up` }
    const v = j.server_rss_per_connection_bytes
    return v == null ? { why: 'no RSS reading' } : { value: v }
  }
  const msgs = j.scenario === 'ywebrtc' ? j.deliveries : j.messages
  const errors = Object.keys(j.errors ?? {})
  if (j.failed > 0 || msgs === 0) return { why: `${j.failed} failed, ${msgs} messages${errors.length ? ': ' + errors[0] : ''}` }
  if (what === 'rate') return { value: j.scenario === 'ywebrtc' ? j.deliveries_per_s : j.messages_per_s }
  if (what === 'responses') return { value: j.responses_per_s }
  if (what === 'p99') return { value: j.latency_us.p99 }
  if (what === 'p99answer') return { value: j.answer_latency_us.p99 }
  if (what === 'sys') return r.sys == null ? { why: 'no kernel-time reading' } : { value: r.sys / tck / (msgs / 1e6) }
  if (r.ticks == null) return { why: 'no CPU reading' }
  return { value: r.ticks / tck / (msgs / 1e6) }
}
const fmt = {
  idle: v => `${fmtInt(v)} B`,
  rate: fmtInt,
  responses: fmtInt,
  p99answer: fmtUs,
  mibps: v => `${fmtInt(v)} MiB/s`,
  p99: fmtUs,
  cpu: v => `${v.toFixed(2)} s`,
  sys: v => `${v.toFixed(2)} s`,
  cpugib: v => `${v.toFixed(2)} s`,
}
// All rounds of one metric: { values: [..] } (one per round, null where it failed) or { why }.
function series(server, workload, what) {
  const runs = results[server]?.[workload]
  if (!runs?.length) return { why: results[server]?.start?.[0]?.note || 'not run' }
  const ms = runs.map(r => measure(r, what))
  const bad = ms.find(m => m.why)
  return bad ? { why: bad.why } : { values: ms.map(m => m.value) }
}
const mean = xs => xs.reduce((a, b) => a + b, 0) / xs.length

const rows = []
const parts = (opt.only || 'base,arena,peerjs,ywebrtc,webtorrent').split(',')
// the echo servers run for base (every workload) or arena (that profile only)
const base = parts.includes('base')
const arena = base || parts.includes('arena')
// sigyard's kernel time per message ÷ the original's whole CPU per message, as text: a floor
// under the CPU ratio that no work in sigyard's own code can go below.
function floor(sys, cpu) {
  const r = ratioOf(sys, cpu)
  return r == null ? 'not measured' : r.toFixed(3)
}
// The sigyard ÷ original ratio of the means of one metric (null if either is missing).
function ratioOf(a, b) {
  return a.why || b.why ? null : mean(a.values) / mean(b.values)
}
function row(peer, workload, metric, what, a, b) {
  const cell = m => (m.why ? `— (${m.why})` : fmt[what](mean(m.values)))
  let ratio = '—'
  if (!a.why && !b.why) {
    ratio = `**${(mean(a.values) / mean(b.values)).toFixed(2)}**`
    const n = Math.min(a.values.length, b.values.length)
    if (n > 1) ratio += ` (${a.values.slice(0, n).map((v, i) => (v / b.values[i]).toFixed(2)).join(', ')})`
  }
  rows.push(`| ${peer} | ${workload} | ${metric} | ${cell(a)} | ${cell(b)} | ${ratio} |`)
}

const peers = [
  ['relay4', '`@localfirst/relay` 4.2.2 (node)', 'pipe'],
  ['tokio', 'tokio-tungstenite echo, 4 KiB buffers, 1 thread', 'echo'],
  ['fastws', 'fastwebsockets echo (hyper 1 upgrade), 1 thread', 'echo'],
  ['bun', `bun${opt.bun ? ' ' + opt.bun : ''} \`Bun.serve\` (µWebSockets)`, 'echo'],
]
const A = fmtInt(Number(opt['arena-connections']))
const arenaLabel = `arena: ${A} connections, ${opt['arena-size']} B, 1 in flight each`
if (arena) {
  for (const [key, label, mode] of peers) {
    if (!base && mode !== 'echo') continue
    const idleLabel = key === 'relay4' ? 'idle (waiting pipe sockets)' : 'idle'
    if (results[key]?.start) {
      const what = base ? `${idleLabel}, ${mode}${mode === 'echo' ? ', arena' : ''}` : 'arena'
      rows.push(`| ${label} | ${what} | all | — | — (${results[key].start[0].note}) | — |`)
      continue
    }
    if (base) {
      row(label, idleLabel, 'memory per connection', 'idle', series('sigyard', 'idle', 'idle'), series(key, 'idle', 'idle'))
      row(label, mode, 'messages/s', 'rate', series('sigyard', mode, 'rate'), series(key, mode, 'rate'))
      row(label, mode, mode === 'pipe' ? 'p99 one way' : 'p99 round trip', 'p99', series('sigyard', mode, 'p99'), series(key, mode, 'p99'))
      row(label, mode, 'server CPU s per million messages', 'cpu', series('sigyard', mode, 'cpu'), series(key, mode, 'cpu'))
      if (mode === 'echo') {
        const w = `echo, ${opt.window} in flight`
        row(label, w, 'messages/s', 'rate', series('sigyard', 'echo-window', 'rate'), series(key, 'echo-window', 'rate'))
        row(label, w, 'server CPU s per million messages', 'cpu', series('sigyard', 'echo-window', 'cpu'), series(key, 'echo-window', 'cpu'))
      }
    }
    if (mode === 'echo') {
      row(label, arenaLabel, 'messages/s', 'rate', series('sigyard', 'arena', 'rate'), series(key, 'arena', 'rate'))
      row(label, arenaLabel, 'p99 round trip', 'p99', series('sigyard', 'arena', 'p99'), series(key, 'arena', 'p99'))
      row(label, arenaLabel, 'server CPU s per million messages', 'cpu', series('sigyard', 'arena', 'cpu'), series(key, 'arena', 'cpu'))
    }
  }
}
if (base) {
  {
    const label = 'plain TCP copy (`benches/compare.d/tcp-copy`)'
    const w = `pipe stream, ${fmtInt(Number(opt['stream-size']) / 1024)} KiB × ${opt['stream-window']} in flight`
    if (results['tcp-copy']?.start) rows.push(`| ${label} | ${w} | all | — | — (${results['tcp-copy'].start[0].note}) | — |`)
    else {
      row(label, w, 'payload throughput', 'mibps', series('sigyard', 'stream', 'mibps'), series('tcp-copy', 'stream', 'mibps'))
      row(label, w, 'server CPU s per GiB', 'cpugib', series('sigyard', 'stream', 'cpugib'), series('tcp-copy', 'stream', 'cpugib'))
    }
  }
}
// The dialects against their original servers, and the targets: at most 1/10 of the original's
// CPU per message and 1/20 of its memory per client.
const C = fmtInt(Number(opt.clients))
const dialects = [
  ['peerjs', 'peer', '`peer` 1.0.2 (PeerJS server, node)', `idle, ${C} registered clients`,
    `${opt.pairs} pairs: OFFER, ANSWER (${opt['signal-size']} B SDP), 2 CANDIDATE`, 'messages relayed/s', 'p99 OFFER → ANSWER'],
  ['ywebrtc', 'ywebrtc', '`y-webrtc` 10.3.0 `bin/server.js` (node)', `idle, ${C} subscribed clients`,
    `${fmtInt(opt.fanout * opt.pairs)} subscribers, topics of ${opt.fanout}, ${opt['signal-size']}-char publishes`, 'deliveries/s', 'p99 publish → last subscriber'],
]
const verdicts = []
for (const [part, key, label, idle, load, rateName, p99Name] of dialects) {
  if (!parts.includes(part)) continue
  if (results[key]?.start) {
    rows.push(`| ${label} | ${part} | all | — | — (${results[key].start[0].note}) | — |`)
    continue
  }
  const mem = [series('sigyard', `${part}-idle`, 'idle'), series(key, `${part}-idle`, 'idle')]
  const cpu = [series('sigyard', part, 'cpu'), series(key, part, 'cpu')]
  row(label, idle, 'memory per client', 'idle', ...mem)
  row(label, load, rateName, 'rate', series('sigyard', part, 'rate'), series(key, part, 'rate'))
  row(label, load, p99Name, 'p99', series('sigyard', part, 'p99'), series(key, part, 'p99'))
  row(label, load, `server CPU s per million ${part === 'peerjs' ? 'messages' : 'deliveries'}`, 'cpu', ...cpu)
  const sys = series('sigyard', part, 'sys')
  row(label, load, `sigyard's kernel time (stime) per million ${part === 'peerjs' ? 'messages' : 'deliveries'}, against the original's whole CPU`, 'sys', sys, cpu[1])
  const verdict = (r, limit) => (r == null ? 'not measured' : `${r.toFixed(3)}, ${r <= limit ? 'met' : 'NOT met'}`)
  verdicts.push(`* ${label}: CPU per message ÷ the original's ${verdict(ratioOf(...cpu), 0.1)} (target ≤ 0.1;` +
    ` sigyard's kernel time alone is ${floor(sys, cpu[1])} of the original's CPU);` +
    ` memory per client ÷ the original's ${verdict(ratioOf(...mem), 0.05)} (target ≤ 0.05).`)
}
// The WebTorrent tracker against bittorrent-tracker's own server; frames that did not have the
// original's exact shape (member order included) are listed under the table.
const K = opt.offers
const wtPeers = fmtInt(opt.fanout * opt.pairs)
const wtLabel = '`bittorrent-tracker` 11.2.3 `Server` (WebSocket tracker, node)'
const wtNotes = []
if (parts.includes('webtorrent')) {
  const key = 'bittorrent-tracker'
  if (results[key]?.start) rows.push(`| ${wtLabel} | webtorrent | all | — | — (${results[key].start[0].note}) | — |`)
  else {
    const load = `${wtPeers} peers, swarms of ${opt.fanout}: announce, ${K} offers (${opt['signal-size']}-char SDP) relayed and answered`
    const s = (server, workload, what) => series(server, workload, what)
    row(wtLabel, `idle, ${C} announced peers (no offers)`, 'memory per peer', 'idle', s('sigyard', 'webtorrent-idle', 'idle'), s(key, 'webtorrent-idle', 'idle'))
    row(wtLabel, load, 'announce responses/s', 'responses', s('sigyard', 'webtorrent', 'responses'), s(key, 'webtorrent', 'responses'))
    row(wtLabel, load, 'messages received/s', 'rate', s('sigyard', 'webtorrent', 'rate'), s(key, 'webtorrent', 'rate'))
    row(wtLabel, load, 'p99 announce → response', 'p99', s('sigyard', 'webtorrent', 'p99'), s(key, 'webtorrent', 'p99'))
    row(wtLabel, load, 'p99 offer → answer back', 'p99answer', s('sigyard', 'webtorrent', 'p99answer'), s(key, 'webtorrent', 'p99answer'))
    row(wtLabel, load, 'server CPU s per million messages', 'cpu', s('sigyard', 'webtorrent', 'cpu'), s(key, 'webtorrent', 'cpu'))
    row(wtLabel, load, `sigyard's kernel time (stime) per million messages, against the original's whole CPU`, 'sys', s('sigyard', 'webtorrent', 'sys'), s(key, 'webtorrent', 'cpu'))
    const cpu = [s('sigyard', 'webtorrent', 'cpu'), s(key, 'webtorrent', 'cpu')]
    const r = ratioOf(...cpu)
    verdicts.push(`* ${wtLabel}: CPU per message ÷ the original's ${r == null ? 'not measured' : `${r.toFixed(3)} (${(1 / r).toFixed(1)}× its messages per CPU-second), ${r <= 0.1 ? 'met' : 'NOT met'}`}` +
      ` (target ≥ 10×; sigyard's kernel time alone is ${floor(s('sigyard', 'webtorrent', 'sys'), cpu[1])} of the original's CPU).`)
  }
  for (const server of ['sigyard', key]) {
    const seen = {}
    for (const r of [...(results[server]?.webtorrent ?? []), ...(results[server]?.['webtorrent-idle'] ?? [])]) {
      for (const [why, n] of Object.entries(r.json?.errors ?? {})) seen[why] = (seen[why] ?? 0) + n
    }
    const list = Object.entries(seen).map(([why, n]) => `${why} (×${fmtInt(n)})`)
    if (list.length) wtNotes.push(`* WebTorrent, ${server}: frames or exchanges that did not go as with the original: ${list.join('; ')}.`)
  }
}

// ' (name version, …)' of the crates NAMES in benches/compare.d/CRATE/Cargo.lock ('' if unreadable)
function lockVersions(crate, names) {
  try {
    const lock = fs.readFileSync(new URL(`./${crate}/Cargo.lock`, import.meta.url), 'utf8')
    const ver = name => lock.match(new RegExp(`name = "${name}"\\nversion = "([^"]+)"`))?.[1]
    return ` (${names.map(n => `${n} ${ver(n)}`).join(', ')})`
  } catch {
    return ''
  }
}
const tt = lockVersions('tokio-echo', ['tokio', 'tokio-tungstenite'])
const fw = lockVersions('fastws-echo', ['fastwebsockets', 'hyper', 'tokio'])

const N = fmtInt(Number(opt.connections))
const baseText = `* sigyard: release build, \`--echo --threads 1 --ping-interval 0 --idle-timeout 0\`.
${base ? `* \`@localfirst/relay\` 4.2.2 on node ${opt.node}, started by \`tests/npm/reference-server.mjs relay4\`;
  it has no echo endpoint, so it is compared on the pipe, and its idle sockets are pipe requests
  waiting for their peer (all on one \`/connection/…\` path) against sigyard's idle \`/echo\` sockets.
` : ''}* tokio-tungstenite: \`benches/compare.d/tokio-echo\`${tt}:
  a current-thread runtime, one task per connection, \`WebSocketConfig\` read and write
  buffers of 4 KiB, answers queued with \`feed\` and flushed once per batch of ready messages.
* fastwebsockets (the WebSocket library under Deno's server): \`benches/compare.d/fastws-echo\`${fw}:
  a current-thread runtime, hyper's HTTP/1 server answering the upgrade
  (\`fastwebsockets::upgrade\`), then one task per connection reading whole messages through a
  \`FragmentCollector\` and writing each text or binary one back (one write per message, as
  the library does); auto-close and auto-pong on.
* bun: \`benches/compare.d/bun/echo.js\`, \`Bun.serve\` with \`websocket.message(ws, m) { ws.send(m) }\`.
${base ? `* plain TCP copy: \`benches/compare.d/tcp-copy\`, a forwarder that pairs two connections by a
  first line and then copies bytes each way (blocking \`read\` into 64 KiB, \`write_all\`, a thread
  per direction): the floor for any relay. \`sigyard-load --url tcp://…\` sends it the same
  frames, unmasked, that the pipe clients send sigyard masked.
` : ''}
Workloads (\`sigyard-load\`): ${base ? `**idle** opens ${N} WebSockets, holds them ${opt.hold} s, and takes
the server's VmRSS at ${N} minus before, per connection (kernel socket memory is not in RSS).
**echo** / **pipe**: ${opt.pairs} connections (pairs) in closed loop, ${opt.size}-byte binary
messages, ${opt.duration} s; p99 is the round trip (echo) or one way through the server (pipe).
**echo, ${opt.window} in flight**: the same with \`--window ${opt.window}\` (pipelined clients: several
messages per read and write). **pipe stream**: one pipe pair, \`--size ${opt['stream-size']} --window ${opt['stream-window']}\`,
payload bytes delivered per second. ` : ''}**arena**, the HttpArena WebSocket echo profile: \`relay --mode echo
--pairs ${opt['arena-connections']} --size ${opt['arena-size']}\`, ${A} connections from one client process (one thread, one
source address), each with one ${opt['arena-size']}-byte binary message in flight, closed loop, ${opt.duration} s once all
${A} are open; p99 is the round trip, which at this many messages in flight is mostly queueing.
Its server CPU includes the ${A} upgrades (opening them takes a few seconds).
`
const dialectParts = parts.some(p => p === 'peerjs' || p === 'ywebrtc')
const dialectText = `* Dialects: a fresh sigyard per dialect (release, \`--threads 1 --ping-interval 0 --idle-timeout 0\`,
  the limits off, \`--peerjs-concurrent-limit 20000\`) against the original on node ${opt.node}, run
  unmodified from \`benches/compare.d/originals\` (package.json and lock) with \`loopback.cjs\`
  preloaded (binds 127.0.0.1, prints the port): npm \`peer\` 1.0.2's CLI \`peerjs --key peerjs --path /
  --concurrent_limit 20000\`, and y-webrtc 10.3.0's \`bin/server.js\` (\`PORT=0\`).

Dialect workloads: **idle** sets up ${C} clients (\`sigyard-load peerjs --pairs ${fmtInt(opt.clients / 2)}\`, each
client registered with its own id; \`sigyard-load ywebrtc --connections ${C} --fanout ${opt.fanout}\`, each
subscribed) from 4 source addresses and takes the server's VmRSS with all of them set up minus
before, per client. **PeerJS traffic**: ${opt.pairs} pairs in closed loop, each OFFER → ANSWER → CANDIDATE →
CANDIDATE (\`--size ${opt['signal-size']}\`), ${opt.duration} s; messages relayed, p99 of OFFER sent → ANSWER
received. **y-webrtc traffic**: ${fmtInt(opt.fanout * opt.pairs)} subscribers in topics of ${opt.fanout}, one publish of
${opt['signal-size']} data characters in flight per topic, ${opt.duration} s; deliveries (each publish reaches the
${opt.fanout} subscribers of its topic), p99 of publish → its last subscriber's receipt.
`
const webtorrentText = `* WebTorrent tracker: a fresh sigyard (release, \`--threads 1 --ping-interval 0 --idle-timeout 0\`, the
  limits off; its tracker on \`/announce\`) against npm
  \`bittorrent-tracker\` 11.2.3's own \`Server({ udp: false, http: false, ws: true })\` on node ${opt.node}
  (\`benches/compare.d/originals/bittorrent-tracker.mjs\`, \`loopback.cjs\` preloaded; its CLI imports the
  package's client, whose native WebRTC module is not built here).

WebTorrent workloads (\`sigyard-load webtorrent\`, peers in swarms of ${opt.fanout}, ${K} offers per announce as the
browser client sends in traffic): **idle** sets up ${C} peers (each announced \`started\`, without offers, so
that what is measured is the peers' state and not offers still in flight) from 4 source addresses and takes
the server's VmRSS with all of them announced minus before, per peer. **Traffic**: ${wtPeers} peers in closed loop, each announce (${K} offers of ${opt['signal-size']} SDP characters) →
its response → the ${K} offers relayed to other peers of the swarm, answered at once → the ${K} answers back,
then the next announce, ${opt.duration} s; messages are the frames the peers received (responses, offers,
answers: ${2 * K + 1} per announce); p99 of announce sent → its response, and of offer sent → its answer back.
Every frame is checked against bittorrent-tracker's exact shapes and member order.
`
const section = `## Side by side (benches/compare)

\`${opt.cmd}\`, ${opt.date}, on the project's shared 2-core machine (${opt.cpu || 'unknown CPU'};
load average ${opt.loadavg} at the start: other work kept running), loopback only. One script
run of ${opt.rounds} rounds; in each round one server after another, each a fresh process alone on
core 0 (\`taskset -c 0\`), the load generator on core 1 (\`taskset -c 1 sigyard-load --threads 1\`);
measuring took ${opt.elapsed} s.

${[arena && baseText, dialectParts && dialectText, parts.includes('webtorrent') && webtorrentText].filter(Boolean).join('\n')}**CPU** is the server's utime+stime (all its threads) over the whole relay run, connection setup
included, per million messages delivered (y-webrtc: deliveries). Figures are the mean over the
rounds. Ratios are sigyard ÷ peer of those means, then each round's own ratio in parentheses:
above 1 favours sigyard for messages/s, below 1 favours sigyard for memory, p99 and CPU.

| peer | workload | metric | sigyard | peer | sigyard ÷ peer |
|---|---|---|---|---|---|
${rows.join('\n')}
${verdicts.length || wtNotes.length ? '\n' + [...verdicts, ...wtNotes].join('\n') + '\n' : ''}
On this shared machine the rates and tails move by tens of percent between runs (see "Whole
server" above and the per-round ratios); the memory figures move much less.
`

process.stdout.write('\n' + section)

if (opt.write) {
  const file = opt.write
  const text = fs.readFileSync(file, 'utf8')
  const lines = text.split('\n')
  const start = lines.findIndex(l => l.trim() === '## Side by side (benches/compare)')
  let out
  if (start < 0) {
    out = text.replace(/\n*$/, '\n\n') + section
  } else {
    let end = lines.findIndex((l, i) => i > start && /^## /.test(l))
    const before = lines.slice(0, start).join('\n')
    const after = end < 0 ? '' : '\n' + lines.slice(end).join('\n')
    out = before + (before ? '\n' : '') + section + after
  }
  fs.writeFileSync(file, out)
  console.error(`== wrote the section "## Side by side (benches/compare)" in ${file}`)
}
