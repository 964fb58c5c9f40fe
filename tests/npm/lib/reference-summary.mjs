// Summarizes run-reference.sh's TAP logs: one row per test, one column per reference server
// (pass / FAIL / -), then checks the tests each server is expected to pass.
// Usage: node lib/reference-summary.mjs <logdir> <server>=<expected-pass-regex> ...
// Exit code 1 if an expected-pass test failed or did not run.
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'

const [logDir, ...specs] = process.argv.slice(2)
const servers = specs.map(s => {
  const i = s.indexOf('=')
  return { name: s.slice(0, i), expect: new RegExp(s.slice(i + 1)) }
})

/** name -> result, from TAP `ok N - name` / `not ok N - name` lines (tests and suites). */
function parseTap(text) {
  const results = new Map()
  for (const line of text.split('\n')) {
    const m = /^\s*(not ok|ok) \d+ - (.*?)(\s+#\s*(SKIP|TODO).*)?$/.exec(line)
    if (m) results.set(m[2].replace(/\\#/g, '#'), m[4] ? m[4].toLowerCase() : m[1] === 'ok' ? 'pass' : 'FAIL')
  }
  return results
}

const table = new Map() // test name -> { server: result }
for (const server of servers) {
  for (const f of readdirSync(logDir).filter(f => f.startsWith(`${server.name}__`) && f.endsWith('.tap'))) {
    const file = f.slice(server.name.length + 2, -4)
    for (const [name, result] of parseTap(readFileSync(join(logDir, f), 'utf8'))) {
      if (!/: /.test(name)) continue // skip suite lines ("dialect A (cevitxe JSON)", "pipe (/connection/...)")
      const row = table.get(name) ?? { file, results: {} }
      row.results[server.name] = result
      table.set(name, row)
    }
  }
}

const cols = servers.map(s => s.name)
console.log(`| test file | test | ${cols.join(' | ')} |`)
console.log(`|---|---|${cols.map(() => '---').join('|')}|`)
for (const [name, row] of table) {
  console.log(`| ${row.file} | ${name} | ${cols.map(c => row.results[c] ?? '-').join(' | ')} |`)
}

let bad = 0
for (const server of servers) {
  const expected = [...table].filter(([name]) => server.expect.test(name))
  const failed = expected.filter(([, row]) => row.results[server.name] !== 'pass')
  console.log(`\n${server.name}: ${expected.length - failed.length}/${expected.length} expected-pass tests passed`)
  for (const [name, row] of failed) console.log(`  UNEXPECTED ${row.results[server.name] ?? 'not run'}: ${name}`)
  if (!expected.length) console.log('  (no tests matched the expectation pattern)')
  bad += failed.length + (expected.length ? 0 : 1)
}
process.exit(bad ? 1 : 0)
