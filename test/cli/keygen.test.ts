import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runCli } from '../../src/cli/run-cli.js'
import { loadSigningKey } from '../../src/streams/signing-key.js'

let cwd: string
const keyPath = () => join(cwd, 'state', 'keys', 'proxy.asc')

before(async () => {
  cwd = await mkdtemp(join(tmpdir(), 'sstream-keygen-'))
  const config = { signingKey: 'state/keys/proxy.asc', mirrors: [{ name: 'a', path: '/a/', upstream: 'https://x.example/' }] }
  await writeFile(join(cwd, 'config.json'), JSON.stringify(config))
})
after(async () => {
  await rm(cwd, { recursive: true, force: true })
})

async function keygen(...flags: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = ''
  let stderr = ''
  const code = await runCli(['keygen', ...flags], {
    cwd,
    env: {},
    stdout: { write: (chunk) => (stdout += String(chunk)) },
    stderr: { write: (chunk) => (stderr += String(chunk)) },
  })
  return { code, stdout, stderr }
}

describe('keygen', () => {
  test('creates the key at signingKey (directories included), mode 0600, and prints its fingerprint and path', async () => {
    const result = await keygen()
    assert.equal(result.code, 0, result.stderr)
    const key = await loadSigningKey(keyPath())
    assert.match(key.fingerprint, /^[0-9A-F]{40}$/)
    assert.equal(result.stdout.split('\n')[0], `created signing key ${key.fingerprint} at ${keyPath()}`)
    assert.equal((await stat(keyPath())).mode & 0o777, 0o600)
  })

  test('refuses to replace an existing key without --force, leaving it as it was', async () => {
    const before = await readFile(keyPath(), 'utf8')
    const result = await keygen()
    assert.deepEqual(result, { code: 1, stdout: '', stderr: `sstream-proxy keygen: ${keyPath()} already exists (use --force to replace it)\n` })
    assert.equal(await readFile(keyPath(), 'utf8'), before)
  })

  test('--force replaces it with a new key', async () => {
    const old = await loadSigningKey(keyPath())
    const result = await keygen('--force')
    assert.equal(result.code, 0, result.stderr)
    const replaced = await loadSigningKey(keyPath())
    assert.notEqual(replaced.fingerprint, old.fingerprint)
    assert.match(result.stdout, new RegExp(`created signing key ${replaced.fingerprint} at `))
    assert.equal((await stat(keyPath())).mode & 0o777, 0o600)
  })
})
