// Two headless Chromium contexts (not two tabs of one: those would sync over BroadcastChannel
// and never need the server) open the same y-webrtc room with the unmodified WebrtcProvider,
// signaled only through sigyard; an edit made in each appears in the other.
//
// Runs inside its own network namespace like run.mjs (see tests/browser.rs) and bridges a
// local TCP port to each Unix socket in SIGYARD_SOCK (comma-separated; with two, each context
// uses its own: two nodes of a cluster). Prints `RESULT <json>`, exits 0 on success.
import { readFile } from 'node:fs/promises';
import { build } from 'esbuild';
import { bridges, serve, launch, conclude, timeoutMs } from './lib.mjs';

const bridge = await bridges();
const ports = bridge.ports;
const bundle = (await build({
  entryPoints: [new URL('./ywebrtc-entry.mjs', import.meta.url).pathname],
  bundle: true,
  format: 'esm',
  write: false,
  logLevel: 'silent',
})).outputFiles[0].contents;
const web = await serve({
  '/ywebrtc.html': ['text/html; charset=utf-8', await readFile(new URL('./ywebrtc.html', import.meta.url))],
  '/bundle.js': ['text/javascript', bundle],
});
const webPort = web.port;

const pages = [];
const browser = await launch();
await conclude({ browser, pages, bridge, web }, async (result) => {
  const room = `sigyard-${process.pid}`;
  for (let i = 0; i < 2; i++) {
    const ctx = await browser.newContext();
    const p = await ctx.newPage();
    const signaling = encodeURIComponent(`ws://127.0.0.1:${ports[i % ports.length]}`);
    await p.goto(`http://127.0.0.1:${webPort}/ywebrtc.html?room=${room}&signaling=${signaling}`);
    await p.waitForFunction(() => window.ready, null, { timeout: timeoutMs });
    pages.push(p);
  }
  const [a, b] = pages;
  await a.evaluate(() => window.text.insert(0, 'hello from A'));
  result.seenByB = await (await b.waitForFunction(() => window.text.toString().includes('hello from A') && window.text.toString(), null, { timeout: timeoutMs })).jsonValue();
  await b.evaluate(() => window.text.insert(window.text.length, ', and from B'));
  result.seenByA = await (await a.waitForFunction(() => window.text.toString().includes('and from B') && window.text.toString(), null, { timeout: timeoutMs })).jsonValue();
  result.webrtcPeers = await a.evaluate(() => window.webrtcPeers);
  result.ok = result.seenByA === 'hello from A, and from B' && result.seenByB === 'hello from A' && result.webrtcPeers === 1;
});
