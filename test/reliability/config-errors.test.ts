/**
 * Every kind of configuration mistake, and a dataDir that cannot be written,
 * stop `serve` before it listens: exit status 2 and one line on stderr naming
 * the key (or the path) that is wrong. Run in process through `runCli`; two
 * cases also through the real executable.
 */

import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runCli } from '../../src/cli/run-cli.js'
import { MIRROR_PATH } from '../support/proxy-harness.js'
import { runServe } from './support/child-proxy.js'

let root: string
let keyring: string
let counter = 0

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'sstream-config-errors-'))
  keyring = join(root, 'keyring.gpg')
  // Any file will do: a bad config must be refused before the keyring is parsed.
  await writeFile(keyring, 'not read')
  await writeFile(join(root, 'a-file'), 'a regular file')
})
after(async () => {
  await rm(root, { recursive: true, force: true })
})

/** A valid configuration, which each case breaks in one way. */
function good(): Record<string, any> {
  return {
    listen: { host: '127.0.0.1', port: 0 },
    dataDir: join(root, 'data'),
    metadataTtl: '10m',
    prefetch: { onStart: false, interval: '1h', concurrency: 4 },
    mirrors: [{ name: 'stable', path: MIRROR_PATH, upstream: 'http://127.0.0.1:9/', keyring, selections: [{ filters: ['arch=amd64'], max: 1 }] }],
  }
}

async function writeConfig(text: string): Promise<string> {
  const path = join(root, `config-${counter++}.json`)
  await writeFile(path, text)
  return path
}

async function serveInProcess(configPath: string): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = ''
  let stderr = ''
  const running = runCli(['serve', '--config', configPath], {
    env: {},
    cwd: root,
    stdout: { write: (chunk) => (stdout += String(chunk)) },
    stderr: { write: (chunk) => (stderr += String(chunk)) },
  })
  const timer = setTimeout(() => {
    // The configuration was accepted and the server runs: stop it the way an operator would.
    process.emit('SIGTERM')
  }, 5_000)
  const code = await running.finally(() => clearTimeout(timer))
  return { code, stdout, stderr }
}

const cases: Array<{ mistake: string; names: RegExp; config: () => string }> = [
  { mistake: 'invalid JSON', names: /config-\d+\.json.*(JSON|position|line)/i, config: () => '{ "mirrors": [ }' },
  { mistake: 'unknown top-level key', names: /mirrorz/, config: () => JSON.stringify({ ...good(), mirrorz: [] }) },
  { mistake: 'unknown mirror key', names: /mirrors\[0\]\.upsteam/, config: () => JSON.stringify({ ...good(), mirrors: [{ ...good().mirrors[0], upsteam: 'x' }] }) },
  { mistake: 'wrong type (port as a string)', names: /listen\.port/, config: () => JSON.stringify({ ...good(), listen: { host: '127.0.0.1', port: '8080' } }) },
  { mistake: 'wrong type (mirrors an object)', names: /mirrors/, config: () => JSON.stringify({ ...good(), mirrors: {} }) },
  { mistake: 'wrong type (onStart a string)', names: /prefetch\.onStart/, config: () => JSON.stringify({ ...good(), prefetch: { onStart: 'yes' } }) },
  { mistake: 'bad duration', names: /metadataTtl/, config: () => JSON.stringify({ ...good(), metadataTtl: '10 minutes' }) },
  { mistake: 'negative duration', names: /prefetch\.interval/, config: () => JSON.stringify({ ...good(), prefetch: { interval: '-1h' } }) },
  { mistake: 'port out of range', names: /listen\.port/, config: () => JSON.stringify({ ...good(), listen: { port: 70000 } }) },
  { mistake: 'filter without an operator', names: /mirrors\[0\]\.selections\[0\]\.filters\[0\].*operator/, config: () => JSON.stringify({ ...good(), mirrors: [{ ...good().mirrors[0], selections: [{ filters: ['arch'] }] }] }) },
  { mistake: 'filter with a bad regex', names: /mirrors\[0\]\.selections\[0\]\.filters\[1\].*regular expression/, config: () => JSON.stringify({ ...good(), mirrors: [{ ...good().mirrors[0], selections: [{ filters: ['arch=amd64', 'release~('] }] }] }) },
  { mistake: 'bad max', names: /mirrors\[0\]\.selections\[0\]\.max/, config: () => JSON.stringify({ ...good(), mirrors: [{ ...good().mirrors[0], selections: [{ filters: ['arch=amd64'], max: 0 }] }] }) },
  { mistake: 'bad mirror path', names: /mirrors\[0\]\.path/, config: () => JSON.stringify({ ...good(), mirrors: [{ ...good().mirrors[0], path: '/maas/../images/' }] }) },
  { mistake: 'mirror path without trailing slash', names: /mirrors\[0\]\.path/, config: () => JSON.stringify({ ...good(), mirrors: [{ ...good().mirrors[0], path: '/maas' }] }) },
  { mistake: 'bad upstream URL', names: /mirrors\[0\]\.upstream/, config: () => JSON.stringify({ ...good(), mirrors: [{ ...good().mirrors[0], upstream: 'ftp://example.com/' }] }) },
  { mistake: 'bad metadata mode', names: /mirrors\[0\]\.metadata/, config: () => JSON.stringify({ ...good(), mirrors: [{ ...good().mirrors[0], metadata: 'signed' }] }) },
  { mistake: 'missing mirror name', names: /mirrors\[0\]\.name/, config: () => JSON.stringify({ ...good(), mirrors: [{ ...good().mirrors[0], name: undefined }] }) },
  {
    mistake: 'duplicate mirror name',
    names: /mirrors\[1\]\.name/,
    config: () => JSON.stringify({ ...good(), mirrors: [good().mirrors[0], { ...good().mirrors[0], path: '/maas/images/ephemeral-v3/candidate/' }] }),
  },
  {
    mistake: 'duplicate mirror path',
    names: /mirrors\[1\]\.path/,
    config: () => JSON.stringify({ ...good(), mirrors: [good().mirrors[0], { ...good().mirrors[0], name: 'candidate' }] }),
  },
  { mistake: 'no mirrors', names: /mirrors/, config: () => JSON.stringify({ ...good(), mirrors: [] }) },
  { mistake: 'missing keyring file', names: /mirrors\[0\]\.keyring.*no-such-keyring\.gpg/, config: () => JSON.stringify({ ...good(), mirrors: [{ ...good().mirrors[0], keyring: join(root, 'no-such-keyring.gpg') }] }) },
  { mistake: 'keyring is a directory', names: /mirrors\[0\]\.keyring/, config: () => JSON.stringify({ ...good(), mirrors: [{ ...good().mirrors[0], keyring: root }] }) },
  { mistake: 'dataDir under a regular file', names: /dataDir .*a-file\/data.*(ENOTDIR|EEXIST)/, config: () => JSON.stringify({ ...good(), dataDir: join(root, 'a-file', 'data') }) },
  { mistake: 'dataDir is a regular file', names: /dataDir .*a-file.*(ENOTDIR|EEXIST)/, config: () => JSON.stringify({ ...good(), dataDir: join(root, 'a-file') }) },
]

describe('serve refuses a bad configuration: exit 2, one line naming the key', () => {
  for (const { mistake, names, config } of cases) {
    test(mistake, async () => {
      const result = await serveInProcess(await writeConfig(config()))
      assert.equal(result.code, 2, `${mistake}: exit ${result.code}, stderr ${result.stderr}`)
      assert.equal(result.stdout, '', 'nothing is logged: the server never started')
      const lines = result.stderr.split('\n').filter((line) => line !== '')
      assert.equal(lines.length, 1, `one line, got: ${result.stderr}`)
      assert.match(lines[0] as string, /^sstream-proxy: /)
      assert.match(lines[0] as string, names)
    })
  }

  test('the real executable: an unwritable dataDir and a missing keyring each give one line and exit 2', async () => {
    const [dataDir, keyringMissing] = await Promise.all([
      writeConfig(JSON.stringify({ ...good(), dataDir: join(root, 'a-file', 'data') })),
      writeConfig(JSON.stringify({ ...good(), mirrors: [{ ...good().mirrors[0], keyring: join(root, 'gone.gpg') }] })),
    ].map(async (path) => runServe(await path)))
    for (const [exit, names] of [[dataDir, /dataDir .*a-file\/data/], [keyringMissing, /mirrors\[0\]\.keyring/]] as const) {
      assert.equal(exit?.code, 2, exit?.stderr)
      assert.equal(exit?.stdout, '')
      assert.match(exit?.stderr ?? '', new RegExp(`^sstream-proxy: .*${names.source}.*\\n$`))
    }
  })
})
