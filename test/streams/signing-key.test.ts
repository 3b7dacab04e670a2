import { chmod, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import * as openpgp from 'openpgp'
import { clearsign, readKeyring, verifyClearsigned } from '../../src/streams/signature.js'
import {
  SigningKeyError,
  generateSigningKey,
  loadOrCreateSigningKey,
  loadSigningKey,
  saveSigningKey,
} from '../../src/streams/signing-key.js'
import type { SigningKey } from '../../src/streams/signing-key.js'
import { gpgvText } from '../support/gpgv.js'

let dir: string
let key: SigningKey

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'signing-key-'))
  key = await generateSigningKey({ name: 'test proxy' })
})
after(async () => {
  await rm(dir, { recursive: true, force: true })
})

async function rejectsNaming(promise: Promise<unknown>, path: string, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof SigningKeyError, String(error))
    assert.ok(error.message.includes(path), error.message)
    assert.ok(!error.message.includes('\n'), error.message)
    assert.match(error.message, pattern)
    return true
  })
}

describe('generateSigningKey', () => {
  test('makes a v4 Ed25519 signing-only key with the given name', () => {
    assert.equal(key.privateKey.keyPacket.version, 4)
    assert.deepEqual(key.privateKey.getAlgorithmInfo(), { algorithm: 'eddsaLegacy', curve: 'ed25519Legacy' })
    assert.equal(key.privateKey.getSubkeys().length, 0)
    assert.deepEqual(key.publicKey.getUserIDs(), ['test proxy'])
    assert.equal(key.fingerprint, key.publicKey.getFingerprint().toUpperCase())
    assert.match(key.fingerprint, /^[0-9A-F]{40}$/)
    assert.ok(!key.publicKey.isPrivate())
  })

  test('exports a public key that round-trips in binary and armored form', async () => {
    for (const [bytes, source] of [[key.publicBinary, 'binary'], [Buffer.from(key.publicArmored), 'armored']] as const) {
      const [read, ...rest] = await readKeyring(bytes, source)
      assert.equal(rest.length, 0)
      assert.equal(read?.getFingerprint().toUpperCase(), key.fingerprint)
    }
    assert.match(key.publicArmored, /^-----BEGIN PGP PUBLIC KEY BLOCK-----/)
  })

  test('signs documents the real gpgv accepts with the binary public key', async () => {
    const result = await gpgvText(key.publicBinary, await clearsign('{}\n', key.privateKey))
    assert.ok(result.ok, result.stderr)
  })
})

describe('saveSigningKey and loadSigningKey', () => {
  test('save writes the armored private key with mode 0600 and no leftovers', async () => {
    const path = join(dir, 'save', 'key.asc')
    await mkdir(join(dir, 'save'))
    await saveSigningKey(path, key)
    assert.equal((await stat(path)).mode & 0o777, 0o600)
    assert.match(await readFile(path, 'utf8'), /^-----BEGIN PGP PRIVATE KEY BLOCK-----/)
    assert.deepEqual((await readdir(join(dir, 'save'))).sort(), ['key.asc'])
  })

  test('save refuses to overwrite without force and replaces with force', async () => {
    const path = join(dir, 'overwrite.asc')
    await saveSigningKey(path, key)
    const other = await generateSigningKey()
    await rejectsNaming(saveSigningKey(path, other), path, /already exists/)
    assert.equal((await loadSigningKey(path)).fingerprint, key.fingerprint)
    await saveSigningKey(path, other, { force: true })
    assert.equal((await loadSigningKey(path)).fingerprint, other.fingerprint)
    assert.equal((await stat(path)).mode & 0o777, 0o600)
    assert.deepEqual((await readdir(dir)).filter((name) => name.startsWith('overwrite')), ['overwrite.asc'])
  })

  test('save names the path when the directory does not exist', async () => {
    const path = join(dir, 'missing-dir', 'key.asc')
    await rejectsNaming(saveSigningKey(path, key), path, /cannot write/)
  })

  test('load returns a key that signs like the original', async () => {
    const path = join(dir, 'load.asc')
    await saveSigningKey(path, key)
    const loaded = await loadSigningKey(path)
    assert.equal(loaded.fingerprint, key.fingerprint)
    assert.deepEqual(loaded.publicBinary, key.publicBinary)
    assert.equal(loaded.publicArmored, key.publicArmored)
    const signed = await clearsign('{"a": 1}\n', loaded.privateKey)
    assert.equal(await verifyClearsigned(signed, [key.publicKey]), '{"a": 1}\n')
  })

  test('load reads a binary private key too', async () => {
    const path = join(dir, 'binary.gpg')
    await writeFile(path, key.privateKey.write())
    assert.equal((await loadSigningKey(path)).fingerprint, key.fingerprint)
  })

  test('load names the path when the file is missing, unreadable, public or encrypted', async () => {
    const missing = join(dir, 'nope.asc')
    await rejectsNaming(loadSigningKey(missing), missing, /does not exist/)

    const publicOnly = join(dir, 'public.asc')
    await writeFile(publicOnly, key.publicArmored)
    await rejectsNaming(loadSigningKey(publicOnly), publicOnly, /not an OpenPGP private key/)

    const garbage = join(dir, 'garbage.asc')
    await writeFile(garbage, 'not a key at all\n')
    await rejectsNaming(loadSigningKey(garbage), garbage, /not an OpenPGP private key/)

    const encrypted = join(dir, 'encrypted.asc')
    const locked = await openpgp.encryptKey({ privateKey: key.privateKey, passphrase: 'secret' })
    await writeFile(encrypted, locked.armor())
    await rejectsNaming(loadSigningKey(encrypted), encrypted, /passphrase/)

    // A directory cannot be read as a file whatever the user's privileges.
    await rejectsNaming(loadSigningKey(dir), dir, /cannot read/)
  })
})

describe('loadOrCreateSigningKey', () => {
  test('creates the directory and a key, then loads the same key', async () => {
    const path = join(dir, 'nested', 'deeper', 'signing-key.asc')
    const first = await loadOrCreateSigningKey(path)
    assert.equal(first.created, true)
    assert.equal((await stat(path)).mode & 0o777, 0o600)
    const second = await loadOrCreateSigningKey(path)
    assert.equal(second.created, false)
    assert.equal(second.key.fingerprint, first.key.fingerprint)
  })

  test('does not replace a file that is not a key', async () => {
    const path = join(dir, 'broken.asc')
    await writeFile(path, 'oops\n')
    await chmod(path, 0o600)
    await rejectsNaming(loadOrCreateSigningKey(path), path, /not an OpenPGP private key/)
    assert.equal(await readFile(path, 'utf8'), 'oops\n')
  })
})
