// Two headless Chromium contexts run the unmodified webtorrent 3.0.21 client (its published
// browser build, dist/webtorrent.min.js) with sigyard as their only tracker: one seeds 256 KiB of
// random bytes, the other downloads them by magnet link over the WebRTC connection sigyard
// signaled, and the bytes must match (SHA-256 and length). No DHT, no local discovery, no web
// seeds; the magnet link and both torrents name no tracker but sigyard's (with two nodes, the
// seeder knows only the first and the downloader only the second).
//
// Runs inside its own network namespace like run.mjs (see tests/browser.rs) and bridges a
// local TCP port to each Unix socket in SIGYARD_SOCK (comma-separated; with two, the seeder uses
// the first and the downloader the second: two nodes of a cluster). The tracker URL on a port is
// ws://127.0.0.1:<port><TRACKER_PATH> (default /announce). Prints `RESULT <json>`, exits 0 on
// success.
import { readFile } from 'node:fs/promises';
import { bridges, serve, launch, conclude, timeoutMs } from './lib.mjs';

const SIZE = 256 * 1024;
const trackerPath = process.env.TRACKER_PATH ?? '/announce';
const bridge = await bridges();
const ports = bridge.ports;
const web = await serve({
  '/webtorrent.html': ['text/html; charset=utf-8', await readFile(new URL('./webtorrent.html', import.meta.url))],
  '/webtorrent.min.js': ['text/javascript', await readFile(new URL('./node_modules/webtorrent/dist/webtorrent.min.js', import.meta.url))],
});
const webPort = web.port;
const trackers = ports.map((p) => `ws://127.0.0.1:${p}${trackerPath}`);

/** `page.evaluate(fn, arg)`, failing after timeoutMs with `what`. */
function evaluate(page, fn, arg, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms: ${what}`)), timeoutMs);
  });
  return Promise.race([page.evaluate(fn, arg), timeout]).finally(() => clearTimeout(timer));
}

const pages = [];
const browser = await launch();
await conclude({ browser, pages, bridge, web }, async (result) => {
  for (let i = 0; i < 2; i++) {
    const p = await (await browser.newContext()).newPage();
    pages.push(p);
    const tracker = encodeURIComponent(trackers[i % trackers.length]);
    await p.goto(`http://127.0.0.1:${webPort}/webtorrent.html?tracker=${tracker}`);
    await p.waitForFunction(() => window.ready, null, { timeout: timeoutMs });
  }
  const [seeder, leecher] = pages;
  const [seedTracker, fetchTracker] = [trackers[0], trackers[1 % trackers.length]];
  result.trackers = trackers;
  result.seed = await evaluate(seeder, (size) => window.seed(size), SIZE, 'seeding');
  result.magnetTrackers = new URL(result.seed.magnetURI).searchParams.getAll('tr');
  // The downloader's magnet link names its own tracker only (on a cluster: the other node).
  const magnet = result.seed.magnetURI.replace(encodeURIComponent(seedTracker), encodeURIComponent(fetchTracker));
  result.fetched = await evaluate(leecher, (m) => window.fetchMagnet(m), magnet, 'the download');
  const only = (list, url) => Array.isArray(list) && list.length === 1 && list[0] === url;
  result.ok = result.fetched.length === SIZE && result.fetched.sha256 === result.seed.sha256
    && only(result.magnetTrackers, seedTracker) && only(result.seed.announce, seedTracker)
    && only(result.fetched.announce, fetchTracker);
});
