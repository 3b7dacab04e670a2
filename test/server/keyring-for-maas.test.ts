/**
 * What the README tells operators to give MAAS, checked with the real gpgv as
 * MAAS runs it (`gpgv --keyring=FILE`, the keyring written as given): the
 * binary /keyring.gpg verifies the proxy's metadata; the armored /keyring.asc
 * is refused as a keyring, which is why pasting it into MAAS's web UI fails.
 */

import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { startHarness, type Harness } from '../support/proxy-harness.js'
import { gpgvText } from '../support/gpgv.js'

let h: Harness
let index: string
before(async () => {
  h = await startHarness()
  index = await (await fetch(h.url('streams/v1/index.sjson'))).text()
})
after(() => h.close())

test('gpgv accepts the binary /keyring.gpg as the keyring for the proxy metadata', async () => {
  const keyring = new Uint8Array(await (await fetch(`${h.proxy.url}/keyring.gpg`)).arrayBuffer())
  const result = await gpgvText(keyring, index)
  assert.equal(result.ok, true, result.stderr)
})

test('gpgv refuses the armored /keyring.asc as a keyring, as MAAS given keyring_data in that form does', async () => {
  const armored = new Uint8Array(await (await fetch(`${h.proxy.url}/keyring.asc`)).arrayBuffer())
  assert.match(Buffer.from(armored).toString(), /^-----BEGIN PGP PUBLIC KEY BLOCK-----/)
  const result = await gpgvText(armored, index)
  assert.equal(result.ok, false, 'gpgv took an armored keyring')
  assert.notEqual(result.exitCode, 0)
})
