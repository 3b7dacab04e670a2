import { existsSync, readFileSync } from 'node:fs'
import { before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import * as openpgp from 'openpgp'
import { KeyringError, SignatureError, clearsign, readKeyring, verifyClearsigned } from '../../src/streams/signature.js'
import type { SignatureFailure } from '../../src/streams/signature.js'
import { generateSigningKey } from '../../src/streams/signing-key.js'
import type { SigningKey } from '../../src/streams/signing-key.js'
import { gpgClearsign, gpgvText } from '../support/gpgv.js'

// Products-file shaped JSON, plus lines that need dash-escaping and "From ".
const document = `${JSON.stringify({ content_id: 'com.ubuntu.maas:stable:v3:download', format: 'products:1.0', products: { a: { arch: 'amd64' } } }, null, 1)}\n`
const awkward = '{\n "x": 1\n}\n-leading dash\n--\n-----BEGIN PGP SIGNATURE-----\nFrom here\n\n\nend\n'

let signer: SigningKey
let stranger: SigningKey

before(async () => {
  ;[signer, stranger] = await Promise.all([generateSigningKey({ name: 'signer' }), generateSigningKey({ name: 'stranger' })])
})

async function rejectsWith(promise: Promise<unknown>, reason: SignatureFailure, pattern?: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof SignatureError, `expected SignatureError, got ${String(error)}`)
    assert.equal(error.reason, reason, error.message)
    assert.ok(!error.message.includes('\n'), 'one-line message')
    if (pattern !== undefined) assert.match(error.message, pattern)
    return true
  })
}

function concat(...parts: Uint8Array[]): Uint8Array {
  return Buffer.concat(parts)
}

describe('verifyClearsigned', () => {
  test('returns exactly the text that was clearsigned', async () => {
    for (const text of [document, awkward]) {
      const signed = await clearsign(text, signer.privateKey)
      assert.equal(await verifyClearsigned(signed, [signer.publicKey]), text)
    }
  })

  test('returns the text of a document clearsigned by the real gpg', async () => {
    const signed = await gpgClearsign(signer.privateKey.armor(), signer.fingerprint, awkward)
    assert.ok(signed.includes('\n- -leading dash\n'), 'gpg dash-escaped the text')
    assert.equal(await verifyClearsigned(signed, [signer.publicKey]), awkward)
  })

  test('rejects a document whose signed text was changed as bad-signature', async () => {
    const signed = await clearsign(document, signer.privateKey)
    const tampered = signed.replace('amd64', 'arm64')
    assert.notEqual(tampered, signed)
    await rejectsWith(verifyClearsigned(tampered, [signer.publicKey]), 'bad-signature')
  })

  test('rejects a document whose signature block was damaged as bad-signature', async () => {
    const signed = await clearsign(document, signer.privateKey)
    const withoutBlock = signed.slice(0, signed.indexOf('-----BEGIN PGP SIGNATURE-----'))
    await rejectsWith(verifyClearsigned(withoutBlock, [signer.publicKey]), 'bad-signature')
  })

  test('rejects plain JSON as unsigned', async () => {
    await rejectsWith(verifyClearsigned(document, [signer.publicKey]), 'unsigned')
  })

  test('rejects a document signed by a key outside the keyring as unknown-key, naming that key', async () => {
    const signed = await clearsign(document, stranger.privateKey)
    const keyId = stranger.publicKey.getKeyID().toHex()
    await rejectsWith(verifyClearsigned(signed, [signer.publicKey]), 'unknown-key', new RegExp(keyId, 'i'))
  })

  test('accepts a document with several signatures when one is by a known key', async () => {
    const message = await openpgp.createCleartextMessage({ text: document.slice(0, -1) })
    const signed = await openpgp.sign({ message, signingKeys: [stranger.privateKey, signer.privateKey] })
    assert.equal(await verifyClearsigned(signed, [signer.publicKey]), document)
    await rejectsWith(verifyClearsigned(signed.replace('amd64', 'arm64'), [signer.publicKey]), 'bad-signature')
  })

  test('accepts a document signed by any key of the keyring', async () => {
    const signed = await clearsign(document, signer.privateKey)
    assert.equal(await verifyClearsigned(signed, [stranger.publicKey, signer.publicKey]), document)
  })
})

describe('clearsign', () => {
  test('writes LF line endings and dash-escapes like gpg', async () => {
    const signed = await clearsign(awkward, signer.privateKey)
    assert.ok(!signed.includes('\r'))
    assert.match(signed, /^-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA\d+\n\n\{\n/)
    assert.ok(signed.includes('\n- -----BEGIN PGP SIGNATURE-----\n'))
    assert.ok(signed.includes('\nend\n-----BEGIN PGP SIGNATURE-----\n'))
  })

  test('refuses text that could not round-trip', async () => {
    await assert.rejects(clearsign('{}', signer.privateKey), /end with a newline/)
    await assert.rejects(clearsign('{\n "a": 1, \n}\n', signer.privateKey), /trailing whitespace.*line 2/)
    await assert.rejects(clearsign('{\r\n}\n', signer.privateKey), /carriage return on line 1/)
    await assert.rejects(clearsign('{\n}\t\n', signer.privateKey), /trailing whitespace.*line 2/)
    await assert.rejects(clearsign('{\n\t\n "a": 1 \n}\n', signer.privateKey), /trailing whitespace.*line 2/)
  })

  test('is accepted by the real gpgv, which extracts the same text', async () => {
    const signed = await clearsign(awkward, signer.privateKey)
    const result = await gpgvText(signer.publicBinary, signed)
    assert.ok(result.ok, result.stderr)
    assert.match(result.stderr, /Good signature/)
    assert.equal(result.output, awkward)
  })

  test('is rejected by gpgv after tampering or with another keyring', async () => {
    const signed = await clearsign(document, signer.privateKey)
    const tampered = await gpgvText(signer.publicBinary, signed.replace('amd64', 'arm64'))
    assert.equal(tampered.ok, false)
    assert.match(tampered.stderr, /BAD signature/)
    const otherKeyring = await gpgvText(stranger.publicBinary, signed)
    assert.equal(otherKeyring.ok, false)
    assert.match(otherKeyring.stderr, /No public key|Can't check signature/)
  })
})

describe('readKeyring', () => {
  const fingerprints = (keys: { getFingerprint(): string }[]) => keys.map((key) => key.getFingerprint().toUpperCase())

  test('reads a binary keyring with one key', async () => {
    const keys = await readKeyring(signer.publicBinary, 'one.gpg')
    assert.deepEqual(fingerprints(keys), [signer.fingerprint])
  })

  test('reads a binary keyring of several keys and verifies with the second', async () => {
    const keys = await readKeyring(concat(stranger.publicBinary, signer.publicBinary), 'two.gpg')
    assert.deepEqual(fingerprints(keys), [stranger.fingerprint, signer.fingerprint])
    assert.equal(await verifyClearsigned(await clearsign(document, signer.privateKey), keys), document)
  })

  test('reads armored text with one and with several key blocks', async () => {
    const one = await readKeyring(Buffer.from(signer.publicArmored), 'one.asc')
    assert.deepEqual(fingerprints(one), [signer.fingerprint])
    const several = await readKeyring(Buffer.from(`${stranger.publicArmored}\n${signer.publicArmored}`), 'two.asc')
    assert.deepEqual(fingerprints(several), [stranger.fingerprint, signer.fingerprint])
    assert.equal(await verifyClearsigned(await clearsign(document, signer.privateKey), several), document)
  })

  test('reduces a private key to its public half', async () => {
    const keys = await readKeyring(signer.privateKey.write(), 'private.gpg')
    assert.deepEqual(fingerprints(keys), [signer.fingerprint])
    assert.ok(keys.every((key) => !key.isPrivate()))
  })

  test('reads the system Debian archive keyring', { skip: !existsSync('/usr/share/keyrings/debian-archive-keyring.gpg') }, async () => {
    const keys = await readKeyring(readFileSync('/usr/share/keyrings/debian-archive-keyring.gpg'), 'debian-archive-keyring.gpg')
    assert.ok(keys.length > 1)
  })

  test('names the source of an empty, garbage or truncated keyring', async () => {
    for (const [bytes, source] of [
      [new Uint8Array(), 'empty.gpg'],
      [Buffer.from('hello, not a key\n'), 'garbage.asc'],
      [signer.publicBinary.subarray(0, 20), 'truncated.gpg'],
    ] as const) {
      await assert.rejects(readKeyring(bytes, source), (error: unknown) => {
        assert.ok(error instanceof KeyringError)
        assert.ok(error.message.includes(source), error.message)
        assert.ok(!error.message.includes('\n'))
        return true
      })
    }
  })
})
