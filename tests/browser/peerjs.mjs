// Three headless Chromium pages run the unmodified PeerJS 1.5.5 client (its published
// browser build) against sigyard: A gets its id from the server, B picks one and opens a
// DataConnection to A, a message crosses it both ways; C asks for B's id and is refused
// with `unavailable-id`.
//
// Runs inside its own network namespace like run.mjs (see tests/browser.rs) and bridges a
// local TCP port to each Unix socket in SIGYARD_SOCK (comma-separated; with two, A uses the
// first and B and C the second: two nodes of a cluster). Prints `RESULT <json>`, exits 0 on
// success.
import { readFile } from 'node:fs/promises';
import { bridges, serve, launch, conclude, timeoutMs } from './lib.mjs';

const bridge = await bridges();
const ports = bridge.ports;
const web = await serve({
  '/peerjs.html': ['text/html; charset=utf-8', await readFile(new URL('./peerjs.html', import.meta.url))],
  '/peerjs.min.js': ['text/javascript', await readFile(new URL('./node_modules/peerjs/dist/peerjs.min.js', import.meta.url))],
});
const webPort = web.port;

const pages = [];
const browser = await launch();
const open = async (i, id) => {
  const p = await (await browser.newContext()).newPage();
  const port = ports[Math.min(i, ports.length - 1)];
  await p.goto(`http://127.0.0.1:${webPort}/peerjs.html?port=${port}${id ? `&id=${id}` : ''}`);
  pages.push(p);
  return p;
};
await conclude({ browser, pages, bridge, web }, async (result) => {
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
});
