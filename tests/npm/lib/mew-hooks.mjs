// Module-loader hooks (registered by mewconnect.test.mjs) that load the V2 signaling code of
// @myetherwallet/mewconnect-web-client 2.2.0-beta.18 from its published src/ in plain Node:
// - its src/ is ES-module syntax in a package without "type": "module": load it as ESM;
// - its relative imports have no extension ('../config', './constants/index'), and it imports
//   'uuid/v4' (uuid 3.x, no "exports"): retry a failed resolution with '.js';
// - some of its modules mix `require()` into ES-module syntax (config.js reads package.json):
//   give each module a `require` made by createRequire;
// - it imports the native 'wrtc' module at the top of MewConnectInitiatorV2.js. Its binary is
//   downloaded by an install script, which does not run here, and WebRTC itself is not under
//   test: 'wrtc' resolves to an empty stub. The WebRTC side is the test's own fake.
// Only imports made from inside that package's src/ are touched.
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'

const SRC = '/@myetherwallet/mewconnect-web-client/src/'

const inMewSrc = url => typeof url === 'string' && url.startsWith('file:') && url.includes(SRC)

export async function resolve(specifier, context, nextResolve) {
  if (!inMewSrc(context.parentURL)) return nextResolve(specifier, context)
  if (specifier === 'wrtc') {
    return { url: 'data:text/javascript,export default {}', shortCircuit: true }
  }
  try {
    return await nextResolve(specifier, context)
  } catch (e) {
    if (/\.[cm]?js$/.test(specifier)) throw e
    return nextResolve(specifier + '.js', context)
  }
}

export async function load(url, context, nextLoad) {
  if (inMewSrc(url) && url.endsWith('.js')) {
    const source =
      "import { createRequire as __mewCreateRequire } from 'node:module';" +
      'const require = __mewCreateRequire(import.meta.url);' +
      (await readFile(fileURLToPath(url), 'utf8'))
    return { format: 'module', source, shortCircuit: true }
  }
  return nextLoad(url, context)
}
