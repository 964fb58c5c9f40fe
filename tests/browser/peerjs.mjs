// Three headless Chromium pages run the unmodified PeerJS 1.5.5 client (its published
// browser build) against sigyard: A gets its id from the server, B picks one and opens a
// DataConnection to A, a message crosses it both ways; C asks for B's id and is refused
// with `unavailable-id`.
//
// Runs inside its own network namespace like run.mjs (see tests/browser.rs) and bridges a
// local TCP port to each Unix socket in SIGYARD_SOCK (comma-separated; with two, A uses the
// first and B and C the second: two nodes of a cluster). Prints `RESULT <json>`, exits 0 on
// success.
import http from 'node:http';
import net from 'node:net';
import { readFile } from 'node:fs/promises';
import { chromium } from 'playwright-core';

const socks = process.env.SIGYARD_SOCK.split(',');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const timeoutMs = Number(process.env.BROWSER_TIMEOUT_MS || 30000);

function listen(server) {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

const bridges = socks.map((sock) => net.createServer((client) => {
  const upstream = net.createConnection({ path: sock });
  client.pipe(upstream).pipe(client);
  const end = () => { client.destroy(); upstream.destroy(); };
  client.on('error', end);
  upstream.on('error', end);
}));
const ports = await Promise.all(bridges.map(listen));

const files = {
  '/peerjs.html': ['text/html; charset=utf-8', await readFile(new URL('./peerjs.html', import.meta.url))],
  '/peerjs.min.js': ['text/javascript', await readFile(new URL('./node_modules/peerjs/dist/peerjs.min.js', import.meta.url))],
};
const web = http.createServer((req, res) => {
  const f = files[req.url.split('?')[0]];
  if (!f) { res.writeHead(404); res.end(); return; }
  res.writeHead(200, { 'Content-Type': f[0] });
  res.end(f[1]);
});
const webPort = await listen(web);

const result = { ok: false };
const pages = [];
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--disable-features=WebRtcHideLocalIpsWithMdns',
    ...(process.env.CHROMIUM_ARGS ? process.env.CHROMIUM_ARGS.split(' ') : []),
  ],
});
const open = async (i, id) => {
  const p = await (await browser.newContext()).newPage();
  const port = ports[Math.min(i, ports.length - 1)];
  await p.goto(`http://127.0.0.1:${webPort}/peerjs.html?port=${port}${id ? `&id=${id}` : ''}`);
  pages.push(p);
  return p;
};
try {
  const a = await open(0);
  result.a = await (await a.waitForFunction(() => window.peerId || window.errors[0], null, { timeout: timeoutMs })).jsonValue();
  const bId = `bob-${process.pid}`;
  const b = await open(1, bId);
  result.b = await (await b.waitForFunction(() => window.peerId || window.errors[0], null, { timeout: timeoutMs })).jsonValue();
  await b.evaluate((other) => window.connectTo(other), result.a);
  result.atA = await (await a.waitForFunction(() => window.received[0], null, { timeout: timeoutMs })).jsonValue();
  result.atB = await (await b.waitForFunction(() => window.received[0], null, { timeout: timeoutMs })).jsonValue();
  const c = await open(1, bId);
  result.c = await (await c.waitForFunction(() => window.errors[0] || window.peerId, null, { timeout: timeoutMs })).jsonValue();
  result.ok = /^[0-9a-f-]{36}$/.test(result.a) && result.b === bId
    && result.atA === `hello from ${bId}` && result.atB === `echo: hello from ${bId}`
    && result.c === 'unavailable-id';
} catch (e) {
  result.error = String(e && e.message || e);
} finally {
  result.events = [];
  for (const p of pages) result.events.push(await p.evaluate(() => window.events).catch((e) => [String(e)]));
  await browser.close().catch(() => {});
  for (const b of bridges) b.close();
  web.close();
}
console.log(`RESULT ${JSON.stringify(result)}`);
process.exit(result.ok ? 0 : 1);
