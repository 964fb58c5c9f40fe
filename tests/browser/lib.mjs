// What the browser drivers share: a local TCP port bridged to each Unix socket the test
// forwards to a sigyard server (SIGYARD_SOCK, comma-separated), a small static web server,
// and Chromium launched with the flags this machine needs.
import http from 'node:http';
import net from 'node:net';
import { chromium } from 'playwright-core';

export const timeoutMs = Number(process.env.BROWSER_TIMEOUT_MS || 30000);

/** Listen on a free 127.0.0.1 port; resolves to the port. */
export function listen(server) {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

/** One local port per socket in SIGYARD_SOCK, each piped to its socket: `{ ports, close }`. */
export async function bridges() {
  const servers = process.env.SIGYARD_SOCK.split(',').map((sock) => net.createServer((client) => {
    const upstream = net.createConnection({ path: sock });
    client.pipe(upstream).pipe(client);
    const end = () => { client.destroy(); upstream.destroy(); };
    client.on('error', end);
    upstream.on('error', end);
  }));
  const ports = await Promise.all(servers.map(listen));
  return { ports, close: () => servers.forEach((s) => s.close()) };
}

/** Serve `files` (`{ '/path': [contentType, body] }`); `{ port, close }`. */
export async function serve(files) {
  const web = http.createServer((req, res) => {
    const f = files[req.url.split('?')[0]];
    if (!f) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { 'Content-Type': f[0] });
    res.end(f[1]);
  });
  return { port: await listen(web), close: () => web.close() };
}

/** Headless Chromium (Debian's, or CHROMIUM), extra flags from CHROMIUM_ARGS. */
export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      // Host candidates as addresses, not mDNS names nobody here can resolve.
      '--disable-features=WebRtcHideLocalIpsWithMdns',
      ...(process.env.CHROMIUM_ARGS ? process.env.CHROMIUM_ARGS.split(' ') : []),
    ],
  });
}

/**
 * Run `steps(result)`, which sets `result.ok`; whatever happens, collect every page's
 * `window.events`, close the browser, `bridge` and `web`, print `RESULT <json>` and exit
 * 0 only on success.
 */
export async function conclude({ browser, pages, bridge, web }, steps) {
  const result = { ok: false };
  try {
    await steps(result);
  } catch (e) {
    result.error = String(e && e.message || e);
  } finally {
    result.events = [];
    for (const p of pages) result.events.push(await p.evaluate(() => window.events).catch((e) => [String(e)]));
    await browser.close().catch(() => {});
    bridge.close();
    web.close();
  }
  console.log(`RESULT ${JSON.stringify(result)}`);
  process.exit(result.ok ? 0 : 1);
}
