/**
 * The fleet as MAAS meets it: a client that behaves as MAAS 3.8 (gpgv on
 * every document, every file at once, the 10 s heartbeat, a status ends the
 * sync) syncs through HAProxy's shipped configuration in front of 3 replicas
 * on one bucket, once with the path hash and once round-robin (every request
 * on another replica than the last). Every signature and file verifies, and
 * the files cross the upstream link once however the requests were spread.
 */

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { MIRROR_PATH } from '../support/proxy-harness.js'
import { startFleet, type Fleet } from '../support/fleet.js'
import { startHaproxy } from '../support/haproxy.js'
import { createMaasClient, type SyncResult } from '../support/maas-client.js'

const MiB = 1024 * 1024

let fleet: Fleet
before(async () => {
  fleet = await startFleet({ tree: { sizes: { squashfs: 3 * MiB, initrd: MiB, kernel: 512 * 1024 } } })
})
after(async () => {
  await fleet?.close()
})

async function syncThrough(balance: 'shipped' | 'roundrobin'): Promise<SyncResult> {
  const haproxy = await startHaproxy({ replicaPorts: fleet.replicas.map((replica) => replica.port), balance })
  try {
    const keyring = new Uint8Array(await (await fetch(`${haproxy.url}/keyring.gpg`)).arrayBuffer())
    const client = createMaasClient({ url: `${haproxy.url}${MIRROR_PATH}`, keyring, heartbeatMs: 10_000, backoffMs: 200, maxBackoffMs: 2_000, giveUpAfterMs: 60_000 })
    return await client.sync()
  } finally {
    await haproxy.close()
  }
}

function assertVerified(result: SyncResult): void {
  assert.ok(result.ok, `sync failed: ${result.failure}`)
  assert.ok(result.files.length >= 5, `${result.files.length} files`)
  for (const file of result.files) assert.equal(file.outcome, 'verified', `${file.path}: ${file.errors.join('; ')}`)
  // The client checked each document's signature with gpgv against the keyring it was given.
  assert.ok(result.metadata.documents.size >= 2, `${result.metadata.documents.size} documents`)
}

describe('a MAAS-like client through HAProxy in front of a fleet of 3', () => {
  test('with the shipped path hash: every signature and every file verifies, each file fetched from upstream once', { timeout: 120_000 }, async () => {
    const result = await syncThrough('shipped')
    assertVerified(result)
    for (const file of result.files) assert.equal(fleet.upstream.requestCount(file.path), 1, `${file.path} fetched from upstream`)
    const downloaded = result.files.reduce((sum, file) => sum + file.size, 0)
    const sent = result.files.reduce((sum, file) => sum + fleet.upstream.bytesSent(file.path), 0)
    assert.equal(sent, downloaded, 'upstream bytes = 1.00x the files synced')
  })

  test('round-robin over the replicas, the files now stored by whichever replica fetched them: all verify again, nothing more from upstream', { timeout: 120_000 }, async () => {
    const result = await syncThrough('roundrobin')
    assertVerified(result)
    for (const file of result.files) assert.equal(fleet.upstream.requestCount(file.path), 1, `${file.path} fetched from upstream again`)
    for (const object of await fleet.storedObjects()) assert.equal(object.sha256, object.name, `object ${object.name} holds other bytes`)
  })
})
