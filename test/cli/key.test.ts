import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as openpgp from 'openpgp'
import { runCli } from '../../src/cli/run-cli.js'
import { loadOrCreateSigningKey, loadSigningKey } from '../../src/streams/signing-key.js'
import { clearsign } from '../../src/streams/signature.js'
import { gpgvText } from '../support/gpgv.js'

let cwd: string

before(async () => {
  cwd = await mkdtemp(join(tmpdir(), 'sstream-key-'))
})
after(async () => {
  await rm(cwd, { recursive: true, force: true })
})

/** Runs `key` in this process with the built-in default (key under `cwd/data`), capturing stdout as bytes. */
async function key(flags: string[], stdoutIsTTY = false): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  const chunks: Buffer[] = []
  let stderr = ''
  const code = await runCli(['key', ...flags], {
    cwd,
    env: {},
    stdout: { write: (chunk) => chunks.push(Buffer.from(chunk)), isTTY: stdoutIsTTY },
    stderr: { write: (chunk) => (stderr += String(chunk)) },
  })
  return { code, stdout: Buffer.concat(chunks), stderr }
}

const keyPath = () => join(cwd, 'data', 'signing-key.asc')

describe('key', () => {
  test('creates the signing key when there is none, saying so on stderr', async () => {
    const result = await key(['--armor'])
    assert.equal(result.code, 0, result.stderr)
    const signing = await loadSigningKey(keyPath())
    assert.equal(result.stderr, `sstream-proxy key: created signing key ${signing.fingerprint} at ${keyPath()}\n`)
  })

  test('writes the binary public key, which openpgp reads and gpgv accepts as a keyring', async () => {
    const result = await key([])
    assert.equal(result.code, 0, result.stderr)
    assert.equal(result.stderr, '', 'an existing key is used silently')
    const { key: signing } = await loadOrCreateSigningKey(keyPath())
    const publicKey = await openpgp.readKey({ binaryKey: result.stdout })
    assert.equal(publicKey.isPrivate(), false)
    assert.equal(publicKey.getFingerprint().toUpperCase(), signing.fingerprint)

    const signed = await clearsign('{"format": "index:1.0"}\n', signing.privateKey)
    const verdict = await gpgvText(result.stdout, signed)
    assert.equal(verdict.ok, true, verdict.stderr)
  })

  test('--armor and -a write the armored public key', async () => {
    for (const flag of ['--armor', '-a']) {
      const result = await key([flag])
      assert.equal(result.code, 0, result.stderr)
      const text = result.stdout.toString('utf8')
      assert.ok(text.startsWith('-----BEGIN PGP PUBLIC KEY BLOCK-----\n'), text)
      const publicKey = await openpgp.readKey({ armoredKey: text })
      assert.equal(publicKey.getFingerprint().toUpperCase(), (await loadSigningKey(keyPath())).fingerprint)
    }
  })

  test('refuses to write binary to a terminal, but writes armor there', async () => {
    const binary = await key([], true)
    assert.equal(binary.code, 2)
    assert.equal(binary.stdout.length, 0)
    assert.equal(binary.stderr, 'sstream-proxy: key: refusing to write a binary key to a terminal (redirect it to a file, or use --armor)\n')
    assert.equal((await key(['--armor'], true)).code, 0)
  })
})
