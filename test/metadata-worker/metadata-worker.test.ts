/**
 * The metadata worker's life: one dying mid-job (here of its heap limit, as a hostile
 * document would make it: 12 MB of short lines inside a real index, so that
 * it passes the cheap signature checks and reaches openpgp's parser): the job fails, which a mirror records as its
 * metadata error, the process stays up, and the next job runs on a new worker;
 * one idle for `idleMs` is ended (not a death) and the next job starts another.
 */

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { readFile } from 'node:fs/promises'
import { silentLogger } from '../../src/log/logger.js'
import { createMetadataWorker } from '../../src/metadata-worker/metadata-worker.js'
import { startHarness } from '../support/proxy-harness.js'

test('a worker that dies mid-job fails only that job; the next one runs on a new worker', { timeout: 120_000 }, async () => {
  const h = await startHarness()
  // A heap too small for the document: the worker dies of it, as it would of a hostile one.
  const worker = createMetadataWorker({ signingKeyArmored: h.proxy.core.signingKey.privateKey.armor(), log: silentLogger, maxHeapMb: 32 })
  try {
    const keyring = { bytes: await readFile(h.keyringPath), source: h.keyringPath }
    const real = (h.tree.files.get('streams/v1/index.sjson') as Buffer).toString()
    const bodyAt = real.indexOf('\n\n') + 2
    const hostile = Buffer.from(`${real.slice(0, bodyAt)}${'a\n'.repeat(6 * 1024 * 1024)}${real.slice(bodyAt)}`)
    const signed = new Uint8Array(hostile).slice().buffer
    await assert.rejects(worker.run({ kind: 'verify-index', keyring, index: { path: 'streams/v1/index.sjson', location: 'test', signed } }, [signed]), /metadata worker died/)
    assert.equal(worker.restarts, 1)
    // The process is up and serving.
    assert.equal((await fetch(h.url('streams/v1/index.sjson'))).status, 200)
    const index = new Uint8Array(h.tree.files.get('streams/v1/index.sjson') as Buffer).slice().buffer
    const entries = await worker.run({ kind: 'verify-index', keyring, index: { path: 'streams/v1/index.sjson', location: 'test', signed: index } }, [index])
    assert.deepEqual(Object.keys(entries).sort(), [...h.tree.products.keys()].sort())
  } finally {
    await worker.close()
    await h.close()
  }
})

test('a worker idle for idleMs is ended, not counted as a death; the next job starts a new one', { timeout: 60_000 }, async () => {
  const h = await startHarness()
  const worker = createMetadataWorker({ signingKeyArmored: h.proxy.core.signingKey.privateKey.armor(), log: silentLogger, idleMs: 200 })
  try {
    const keyring = { bytes: await readFile(h.keyringPath), source: h.keyringPath }
    const verifyIndex = async () => {
      const index = new Uint8Array(h.tree.files.get('streams/v1/index.sjson') as Buffer).slice().buffer
      return worker.run({ kind: 'verify-index', keyring, index: { path: 'streams/v1/index.sjson', location: 'test', signed: index } }, [index])
    }
    await verifyIndex()
    const first = worker.thread
    assert.ok(first !== undefined, 'a worker runs while it has work')
    await once(first, 'exit')
    assert.equal(worker.thread, undefined, 'ended once idle')
    assert.equal(worker.restarts, 0, 'an idle end is not a death')
    const entries = await verifyIndex()
    assert.deepEqual(Object.keys(entries).sort(), [...h.tree.products.keys()].sort())
    assert.notEqual(worker.thread, first, 'the next job ran on a new worker')
  } finally {
    await worker.close()
    await h.close()
  }
})
