import assert from 'node:assert/strict'
import { createHash, randomBytes, randomUUID } from 'node:crypto'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { CreateMultipartUploadCommand, HeadObjectCommand, ListMultipartUploadsCommand } from '@aws-sdk/client-s3'
import type { RangeReader } from '../../src/store/object-store.js'
import { createS3Store, type S3StoreOptions } from '../../src/store/s3-store.js'
import { listTempFiles } from '../support/temp-files.js'
import { startCephRgw, type CephRgw } from '../support/ceph-rgw.js'
import { storeContract } from './store-contract.js'

const BUCKET = 'cache'
let rgw: CephRgw
before(async () => {
  rgw = await startCephRgw()
  process.stderr.write(`# Ceph RGW up in ${rgw.startMs} ms\n`)
  await rgw.createBucket(BUCKET)
})
after(async () => {
  await rgw?.down()
})

async function openS3(overrides: Partial<S3StoreOptions> = {}) {
  const dataDir = await mkdtemp(join(tmpdir(), 'sstream-s3-store-'))
  const prefix = `t-${randomUUID()}/`
  const store = createS3Store({
    endpoint: rgw.endpoint,
    bucket: BUCKET,
    prefix,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: rgw.keys,
    dataDir,
    owner: 'test',
    partBytes: 5 * 1024 * 1024,
    abandonedUploadAgeMs: 24 * 3600_000,
    ...overrides,
  })
  const uploads = async () =>
    (await rgw.client().send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: prefix }))).Uploads?.length ?? 0
  return { store, prefix, dataDir, uploads, leftovers: async () => (await listTempFiles(dataDir)).length + (await uploads()) }
}

storeContract('the S3 store on Ceph RGW', { largeBytes: 12 * 1024 * 1024, open: () => openS3() })

describe('the S3 store', () => {
  test('a writer for an object stored elsewhere spools only, and at commit uploads only when the object is still absent', async () => {
    const { store, prefix, uploads } = await openS3()
    const content = randomBytes(12 * 1024 * 1024)
    const target = { sha256: createHash('sha256').update(content).digest('hex'), size: content.length }
    const lastModified = async () => (await rgw.client().send(new HeadObjectCommand({ Bucket: BUCKET, Key: `${prefix}${target.sha256}` }))).LastModified?.getTime()
    // Absent at commit: more than two parts' worth, all uploaded then, none while writing.
    const first = await store.createWriter(target, { storedElsewhere: true })
    await first.write([content], content.length)
    await new Promise((resolve) => setTimeout(resolve, 300))
    assert.equal(await uploads(), 0, 'no upload while writing')
    await first.commit()
    assert.equal(await store.head(target.sha256), content.length)
    const readBack = Buffer.alloc(content.length)
    const reader = await store.openRange(target.sha256, 0, content.length - 1)
    for (let at = 0; at < content.length; ) at += (await reader!.read(readBack, at, content.length - at, at)).bytesRead
    await reader!.close()
    assert.ok(readBack.equals(content))
    const stored = await lastModified()
    // Present at commit: nothing is uploaded (the object is not rewritten).
    await new Promise((resolve) => setTimeout(resolve, 1_100))
    const second = await store.createWriter(target, { storedElsewhere: true })
    await second.write([content], content.length)
    await second.commit()
    assert.equal(await lastModified(), stored)
    assert.equal(await uploads(), 0)
    store.close()
  })

  test('aborts multipart uploads older than the set age, not those of its own running fills', async () => {
    const { store, prefix, uploads } = await openS3({ abandonedUploadAgeMs: 0 })
    await rgw.client().send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: `${prefix}${'a'.repeat(64)}` }))
    const content = randomBytes(11 * 1024 * 1024)
    const writer = await store.createWriter({ sha256: 'b'.repeat(64), size: content.length })
    await writer.write([content], content.length)
    // The writer's first part is under way once more than a part is written.
    for (let i = 0; i < 100 && (await uploads()) < 2; i++) await new Promise((resolve) => setTimeout(resolve, 50))
    assert.equal(await uploads(), 2)
    assert.deepEqual(await store.maintain(), { abortedUploads: 1 })
    assert.equal(await uploads(), 1)
    await writer.discard()
    assert.equal(await uploads(), 0)
    store.close()
  })

  test('more hits at once than the SDK\'s default of 50 sockets all start: none waits for another to end', { timeout: 60_000 }, async () => {
    const { store } = await openS3()
    const content = randomBytes(2 * 1024 * 1024)
    const sha256 = createHash('sha256').update(content).digest('hex')
    const writer = await store.createWriter({ sha256, size: content.length })
    await writer.write([content], content.length)
    await writer.commit()
    // Each reader holds its connection until its body is read or closed, as a hit to a slow client does.
    const readers = await Promise.all(Array.from({ length: 64 }, () => store.openRange(sha256, 0, content.length - 1)))
    try {
      for (const reader of readers) {
        const buffer = Buffer.alloc(16)
        const { bytesRead } = await (reader as RangeReader).read(buffer, 0, buffer.length, 0)
        assert.deepEqual(buffer.subarray(0, bytesRead), content.subarray(0, bytesRead))
        assert.ok(bytesRead > 0)
      }
    } finally {
      await Promise.all(readers.map((reader) => reader?.close()))
      store.close()
    }
  })

  test('says what the store answered: ok after a request, unavailable with the error while the gateway is down', async () => {
    const { store } = await openS3({ connectTimeoutMs: 1_000 })
    assert.equal(store.health().state, 'unknown')
    assert.equal(await store.head('c'.repeat(64)), undefined)
    assert.equal(store.health().state, 'ok')
    await rgw.stopGateway()
    try {
      await assert.rejects(store.head('c'.repeat(64)), { name: 'StoreUnavailableError' })
      const health = store.health()
      assert.equal(health.state, 'unavailable')
      assert.match(health.lastError ?? '', /ECONNREFUSED/)
      assert.ok(health.errors >= 1)
    } finally {
      await rgw.startGateway()
    }
    assert.equal(await store.head('c'.repeat(64)), undefined)
    assert.equal(store.health().state, 'ok')
    store.close()
  })

  test('reports every request it sends to its observer: the S3 operation, how it ended and how long it took', async () => {
    const seen: Array<{ operation: string; outcome: string; seconds: number }> = []
    const { store } = await openS3({ observeRequest: (operation, outcome, seconds) => void seen.push({ operation, outcome, seconds }) })
    const outcomes = () => seen.map(({ operation, outcome }) => `${operation} ${outcome}`)
    await store.check()
    assert.deepEqual(outcomes(), ['ListObjectsV2 ok', 'CreateMultipartUpload ok', 'AbortMultipartUpload ok'], 'the start-up check counts too')
    seen.length = 0
    const content = randomBytes(4096)
    const target = { sha256: createHash('sha256').update(content).digest('hex'), size: content.length }
    assert.equal(await store.head(target.sha256), undefined)
    for (let copy = 0; copy < 2; copy++) {
      const writer = await store.createWriter(target)
      await writer.write([content], content.length)
      await writer.commit()
    }
    const reader = await store.openRange(target.sha256, 0, content.length - 1)
    await reader?.close()
    await store.remove(target.sha256)
    // The second copy is refused by `If-None-Match: *`: another proxy's verified bytes are as good.
    assert.deepEqual(outcomes(), ['HeadObject not_found', 'PutObject ok', 'PutObject refused', 'GetObject ok', 'DeleteObject ok'])
    assert.ok(seen.every(({ seconds }) => seconds >= 0 && seconds < 30), JSON.stringify(seen))
    store.close()

    const unreachable = await openS3({ endpoint: 'http://127.0.0.1:1', connectTimeoutMs: 1_000, observeRequest: (operation, outcome, seconds) => void seen.push({ operation, outcome, seconds }) })
    seen.length = 0
    await assert.rejects(unreachable.store.head(target.sha256), { name: 'StoreUnavailableError' })
    assert.deepEqual(outcomes(), ['HeadObject error'])
    unreachable.store.close()
  })
})
