// Drives two headless Chromium pages that open a WebRTC data channel to each other, signaled
// only through sigyard's HTTP API, and checks that a message crosses it both ways.
//
// Meant to run inside its own network namespace (tests/browser.rs does `unshare -n` and sets up
// a private veth pair), so every ICE candidate stays inside it. The server lives outside: this script
// bridges a local TCP port to the Unix socket SIGYARD_SOCK, which the test forwards to the
// server. It also serves page.html itself, so the API is called cross-origin (CORS). With two
// sockets in SIGYARD_SOCK (comma-separated: two nodes of a cluster), each page uses its own.
//
// Prints one line `RESULT <json>` and exits 0 on success.
import { readFile } from 'node:fs/promises';
import { bridges, serve, launch, timeoutMs } from './lib.mjs';

const bridge = await bridges();
const apiPorts = bridge.ports;
const web = await serve({
  '/page.html': ['text/html; charset=utf-8', await readFile(new URL('./page.html', import.meta.url))],
});
const webPort = web.port;

const result = { ok: false };
let a;
let b;
const browser = await launch();
try {
  const ctx = await browser.newContext();
  const base = (i) => {
    const api = encodeURIComponent(`http://127.0.0.1:${apiPorts[i % apiPorts.length]}/`);
    return `http://127.0.0.1:${webPort}/page.html?api=${api}`;
  };
  a = await ctx.newPage();
  await a.goto(`${base(0)}&role=offer`);
  const channel = await (await a.waitForFunction(() => window.channelId || window.failed, null, { timeout: timeoutMs })).jsonValue();
  result.channel = channel;
  b = await ctx.newPage();
  await b.goto(`${base(1)}&role=answer&channel=${channel}`);
  const done = () => window.received || window.failed;
  result.received = await (await b.waitForFunction(done, null, { timeout: timeoutMs })).jsonValue();
  result.reply = await (await a.waitForFunction(() => window.reply || window.failed, null, { timeout: timeoutMs })).jsonValue();
  result.ok = result.received === 'hello through sigyard' && result.reply === 'echo: hello through sigyard';
} catch (e) {
  result.error = String(e && e.message || e);
} finally {
  for (const [name, p] of [['offerEvents', a], ['answerEvents', b]]) {
    if (p) result[name] = await p.evaluate(() => window.events).catch((e) => [String(e)]);
  }
  await browser.close().catch(() => {});
  bridge.close();
  web.close();
}
console.log(`RESULT ${JSON.stringify(result)}`);
process.exit(result.ok ? 0 : 1);
