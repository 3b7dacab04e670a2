/**
 * The metadata worker dying mid-job: the job becomes that mirror's metadata
 * error, the last good publication keeps being served, the process stays up,
 * and the next refresh runs on a new worker.
 */

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import type { Mirror } from '../../src/mirror/mirror.js'
import { startHarness } from '../support/proxy-harness.js'

test('a worker that dies mid-job fails only that refresh; the next one runs on a new worker', { timeout: 120_000 }, async () => {
  const h = await startHarness()
  try {
    const mirror = h.proxy.core.mirrors[0] as Mirror
    const worker = h.proxy.core.metadataWorker
    const before = mirror.current()
    // A large unsigned index keeps the worker busy long enough to end it mid-job.
    const files = new Map(h.tree.files)
    files.set('streams/v1/index.sjson', Buffer.concat([Buffer.from('-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n'), Buffer.alloc(12 * 1024 * 1024, 'a\n')]))
    h.upstream.setTree({ ...h.tree, files })
    const refreshing = mirror.refresh()
    while (h.upstream.requestCount('streams/v1/index.sjson') < 2) await new Promise((resolve) => setTimeout(resolve, 20))
    await new Promise((resolve) => setTimeout(resolve, 200))
    await worker.thread?.terminate()
    await refreshing
    assert.match(mirror.metadataStatus().metadataError ?? '', /metadata worker died/)
    assert.equal(worker.restarts, 1)
    assert.equal(mirror.current(), before, 'the last good publication is kept')
    assert.equal((await fetch(h.url('streams/v1/index.sjson'))).status, 200, 'and served')

    h.upstream.setTree(h.tree)
    await mirror.refresh()
    assert.equal(mirror.metadataStatus().metadataError, null, 'the next refresh succeeds')
    // And a new worker verifies the real index.
    const signed = new Uint8Array(h.tree.files.get('streams/v1/index.sjson') as Buffer).slice().buffer
    const entries = await worker.run({ kind: 'verify-index', keyring: { bytes: await readFile(h.keyringPath), source: h.keyringPath }, index: { path: 'streams/v1/index.sjson', location: 'test', signed } }, [signed])
    assert.deepEqual(Object.keys(entries).sort(), [...h.tree.products.keys()].sort())
    assert.notEqual(worker.thread, undefined)
  } finally {
    await h.close()
  }
})
