/**
 * The proxy as MAAS 3.8 meets it (test/support/maas-client.ts): a sync that
 * starts while upstream is down or failing completes on its own once upstream
 * is back, because a miss upstream cannot serve is a broken connection (which
 * MAAS retries) and never a status (which fails its whole sync); files
 * outside the selection are 404 at once; metadata is answered from what the
 * proxy holds even while upstream hangs. Times are MAAS's scaled down: 10 s
 * heartbeat to 3 s, `missWait` 8 s to 2 s, backoff 1 s to 200 ms.
 */

import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { MIRROR_PATH, startHarness, type Harness } from '../support/proxy-harness.js'
import { createMaasClient, type MaasClient, type SyncResult } from '../support/maas-client.js'
import { rawRequest } from '../support/http.js'
import { evict } from '../reliability/support/evict.js'

const HEARTBEAT_MS = 3_000
const MISS_WAIT_SECONDS = 2

async function maasClient(h: Harness, metadataTimeoutMs?: number): Promise<MaasClient> {
  const keyring = new Uint8Array(await (await fetch(`${h.proxy.url}/keyring.gpg`)).arrayBuffer())
  return createMaasClient({
    url: h.url(''),
    keyring,
    heartbeatMs: HEARTBEAT_MS,
    backoffMs: 200,
    maxBackoffMs: 2_000,
    giveUpAfterMs: 120_000,
    ...(metadataTimeoutMs === undefined ? {} : { metadataTimeoutMs }),
  })
}

/** Evicts every file the sync will download, so each one is a miss. */
async function coldStart(h: Harness, client: MaasClient): Promise<void> {
  const { files } = await client.fetchMetadata()
  assert.ok(files.length >= 5, `a MAAS-sized selection (${files.length} files)`)
  for (const file of files) {
    const item = h.tree.items.find((candidate) => candidate.sha256 === file.sha256)
    assert.ok(item, file.path)
    await evict(h, item)
  }
}

function assertAllVerified(result: SyncResult): void {
  assert.equal(result.ok, true, result.failure)
  for (const file of result.files) assert.equal(file.outcome, 'verified', `${file.path}: ${file.errors.join('; ')}`)
}

describe('a MAAS sync against a cold proxy', () => {
  let h: Harness
  let client: MaasClient
  before(async () => {
    h = await startHarness({ mirror: { missWait: MISS_WAIT_SECONDS } })
    client = await maasClient(h)
  })
  after(() => h.close())

  test('upstream well: every file downloaded once and verified', async () => {
    await coldStart(h, client)
    const result = await client.sync()
    assertAllVerified(result)
    for (const file of result.files) assert.equal(file.attempts, 1, file.path)
  })

  test('upstream down when the sync starts, back after an outage longer than the heartbeat: the sync completes on its own, every file verified', async () => {
    await coldStart(h, client)
    await h.upstream.down()
    const outageMs = 2 * HEARTBEAT_MS
    const sync = client.sync()
    await sleep(outageMs)
    await h.upstream.up()
    const result = await sync
    assertAllVerified(result)
    for (const file of result.files) {
      assert.ok(file.attempts > 1, `${file.path}: retried by the client through the outage`)
      // Each failed attempt was a broken connection, never a status MAAS would take as final.
      for (const error of file.errors) assert.doesNotMatch(error, /HTTP \d/, file.path)
    }
  })

  test('a burst of 5xx from upstream: the sync completes on its own, every file verified', async () => {
    await coldStart(h, client)
    h.upstream.setFault('*', { kind: 'status', status: 503 })
    const sync = client.sync()
    await sleep(HEARTBEAT_MS + 1_000)
    h.upstream.setFault('*', undefined)
    const result = await sync
    assertAllVerified(result)
    for (const file of result.files) for (const error of file.errors) assert.doesNotMatch(error, /HTTP \d/, file.path)
  })

  test('a 5xx burst shorter than missWait is ridden out by the proxy: MAAS sees no failure at all', async () => {
    await coldStart(h, client)
    h.upstream.setFault('*', { kind: 'status', status: 502 })
    const sync = client.sync()
    await sleep(300)
    h.upstream.setFault('*', undefined)
    const result = await sync
    assertAllVerified(result)
    for (const file of result.files) assert.equal(file.attempts, 1, `${file.path}: ${file.errors.join('; ')}`)
  })

  test('a file outside the selection is 404 at once, upstream not asked, even with upstream down', async () => {
    const outside = h.tree.items.find((item) => item.path.startsWith('jammy/'))
    assert.ok(outside)
    await h.upstream.down()
    try {
      const response = await rawRequest(h.proxy.url, MIRROR_PATH + outside.path)
      assert.equal(response.status, 404)
      assert.equal(h.upstream.requestCount(outside.path), 0)
    } finally {
      await h.upstream.up()
    }
  })
})

describe('MAAS metadata fetch while upstream hangs', () => {
  let h: Harness
  before(async () => {
    h = await startHarness()
  })
  after(() => h.close())

  test('a restarted proxy holding only saved, stale metadata answers index and every products file without waiting on upstream', async () => {
    await h.stopProxy()
    // Accepts the connection, never answers.
    h.upstream.setFault('*', { kind: 'delay', ms: 600_000 })
    try {
      await h.restartProxy()
      h.upstream.resetCounters()
      const client = await maasClient(h, 30_000)
      const metadata = await client.fetchMetadata()
      assert.ok(metadata.files.length > 0)
      // The refresh behind it is still hanging on upstream: the answers did not wait for it.
      assert.ok(h.upstream.requestCount() > 0, 'a refresh was started')
      assert.equal(h.proxy.core.mirrors[0]!.metadataStatus().metadataError, null, 'the refresh had not even timed out')
      // The app's path (a target the fast path leaves to it) does not wait either.
      assert.equal((await rawRequest(h.proxy.url, `${MIRROR_PATH}streams/v1/index.sjson?from=maas`)).status, 200)
    } finally {
      h.upstream.setFault('*', undefined)
    }
  })
})
