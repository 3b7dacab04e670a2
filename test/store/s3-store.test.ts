import assert from 'node:assert/strict'
import { createHash, randomBytes, randomUUID } from 'node:crypto'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { CreateMultipartUploadCommand, ListMultipartUploadsCommand } from '@aws-sdk/client-s3'
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
})
