// Module-loader hooks (registered by lib/setup.mjs) that make @localfirst/relay-client 3.x
// loadable in plain Node. Its published dist/ is ES-module syntax, but its package.json has
// no "type": "module", its relative imports have no ".js" extension, and it imports
// "../package.json" without a JSON import attribute, and it does a named import
// `{ EventEmitter }` from eventemitter3 4.x, a CommonJS module whose named export Node cannot
// detect (it is `module.exports = EventEmitter`, so the default import is the same class).
// These hooks only touch files inside that package's dist/ folder.
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'

const DIST = '/@localfirst/relay-client/dist/'

const inRelayClient = url => typeof url === 'string' && url.startsWith('file:') && url.includes(DIST)

export async function resolve(specifier, context, nextResolve) {
  const { parentURL } = context
  if (inRelayClient(parentURL) && specifier.startsWith('.')) {
    const target = new URL(specifier, parentURL)
    if (target.pathname.endsWith('.json')) {
      return { url: target.href, format: 'relay-client-json', shortCircuit: true }
    }
    if (!/\.[cm]?js$/.test(target.pathname) && existsSync(fileURLToPath(target) + '.js')) {
      return { url: target.href + '.js', format: 'module', shortCircuit: true }
    }
  }
  return nextResolve(specifier, context)
}

export async function load(url, context, nextLoad) {
  if (inRelayClient(url) && url.endsWith('.json')) {
    const json = await readFile(fileURLToPath(url), 'utf8')
    return { format: 'module', source: `export default ${json.trim()};`, shortCircuit: true }
  }
  if (inRelayClient(url) && url.endsWith('.js')) {
    const source = (await readFile(fileURLToPath(url), 'utf8')).replace(
      /import\s*\{\s*EventEmitter as (\w+)\s*\}\s*from\s*'eventemitter3'/,
      "import $1 from 'eventemitter3'"
    )
    return { format: 'module', source, shortCircuit: true }
  }
  return nextLoad(url, context)
}
