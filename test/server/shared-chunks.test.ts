/**
 * Downloads of one stored file share their reads (src/store/shared-chunks.ts),
 * through the real server on a real socket: many clients on one file read
 * each 1 MiB chunk from disk once, ranged and full requests on several files
 * at once get exactly their bytes while the budget is contested and never
 * passed, clients that leave mid-transfer let go of their chunks, and a
 * download whose file cannot be opened again reads it alone.
 */

import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { DEFAULT_LIMITS } from '../../src/config/defaults.js'
import type { ObjectStore, RangeReader } from '../../src/store/object-store.js'
import { CHUNK_BYTES } from '../../src/store/shared-chunks.js'
import { MIRROR_PATH, startHarness, type Harness } from '../support/proxy-harness.js'
import { rawRequest, sha256 } from '../support/http.js'
import type { TreeItem } from '../support/upstream-tree.js'

const MiB = 1024 * 1024
const BUDGET_BYTES = 4 * MiB
/** Five chunks, the last one short. */
const FILE_BYTES = 4 * MiB + 4321

/** Polls `check` until it holds; false after a generous bound. */
async function eventually(check: () => boolean, ms = 30_000): Promise<boolean> {
  for (const until = performance.now() + ms; !check(); await sleep(10)) {
    if (performance.now() > until) return false
  }
  return true
}

describe('downloads of one stored file share their chunks', () => {
  let h: Harness
  let images: TreeItem[]
  let objects: ObjectStore
  const bytesOf = (image: TreeItem) => h.tree.files.get(image.path) as Buffer

  before(async () => {
    h = await startHarness({
      tree: { releases: [{ release: 'noble', version: '24.04' }, { release: 'jammy', version: '22.04' }], arches: ['amd64', 'arm64'], versions: ['20250201'], sizes: { squashfs: FILE_BYTES } },
      mirror: { selections: [{ filters: ['release~(noble|jammy)'], max: 1 }] },
      config: { limits: { ...DEFAULT_LIMITS, readBufferMemory: BUDGET_BYTES } },
    })
    // One per file: a file named by several products is listed once for each.
    images = [...new Map(h.tree.items.filter((i) => i.ftype === 'squashfs').map((i) => [i.sha256, i])).values()]
    assert.equal(images.length, 4)
    for (const image of images) assert.equal(sha256((await rawRequest(h.proxy.url, MIRROR_PATH + image.path)).body), image.sha256)
    await h.proxy.core.store.fills.idle()
    objects = h.proxy.core.store.objects
  })
  after(async () => {
    await h.close()
  })

  /** Held chunks, references and the budget's pages all back to nothing. */
  const allLetGo = () => {
    const chunks = h.proxy.sharedChunks.stats()
    return chunks.chunks === 0 && chunks.references === 0 && h.proxy.readBuffers.stats().heldBytes === 0
  }

  test('30 clients on one stored file: each chunk is read from disk once, and every body is exact', async () => {
    const clients = 30
    const [image] = images as [TreeItem]
    // Every read of the store, counted; a read waits until all the clients
    // want that chunk and no other is held, so that none can be missed by a
    // client that was merely slower to get there.
    const reads: Array<{ position: number; length: number }> = []
    const openRange = objects.openRange.bind(objects)
    objects.openRange = async (sha256, start, end) => {
      const reader = await openRange(sha256, start, end)
      if (reader === undefined) return undefined
      const counted: RangeReader = {
        async read(buffer, offset, length, position) {
          await eventually(() => {
            const stats = h.proxy.sharedChunks.stats()
            return stats.chunks === 1 && stats.references === clients
          })
          const result = await reader.read(buffer, offset, length, position)
          reads.push({ position, length: result.bytesRead })
          return result
        },
        close: () => reader.close(),
      }
      return counted
    }
    const readsBefore = h.proxy.sharedChunks.stats().reads
    let responses
    try {
      responses = await Promise.all(Array.from({ length: clients }, () => rawRequest(h.proxy.url, MIRROR_PATH + image.path)))
    } finally {
      objects.openRange = openRange
    }
    for (const response of responses) {
      assert.equal(response.status, 200)
      assert.equal(sha256(response.body), image.sha256)
    }
    const chunkCount = Math.ceil(FILE_BYTES / CHUNK_BYTES)
    assert.deepEqual(
      reads.sort((a, b) => a.position - b.position),
      Array.from({ length: chunkCount }, (_, index) => ({ position: index * CHUNK_BYTES, length: Math.min(CHUNK_BYTES, FILE_BYTES - index * CHUNK_BYTES) })),
      `${clients} downloads of ${FILE_BYTES} bytes read ${reads.length} times`,
    )
    assert.equal(h.proxy.sharedChunks.stats().reads - readsBefore, chunkCount)
    assert.ok(await eventually(allLetGo), 'every chunk went back to the budget')
  })

  test('200 full and ranged requests at odd offsets on four files at once: exact bytes, the budget never passed', async () => {
    const requests = Array.from({ length: 200 }, (_, index) => {
      const image = images[index % images.length] as TreeItem
      if (index % 5 === 0) return { image, start: 0, end: FILE_BYTES - 1, range: undefined }
      // Starts and ends anywhere, across chunk boundaries and inside one chunk; overlapping each other.
      const start = (index * 769_231) % FILE_BYTES
      const end = Math.min(FILE_BYTES - 1, start + ((index * 1_299_709) % (3 * MiB)))
      return { image, start, end, range: `bytes=${start}-${end}` }
    })
    let peakHeld = 0
    let peakWaiting = 0
    let overBudget = 0
    const sampler = setInterval(() => {
      const stats = h.proxy.readBuffers.stats()
      peakHeld = Math.max(peakHeld, stats.heldBytes)
      peakWaiting = Math.max(peakWaiting, stats.waiting)
      if (stats.heldBytes > BUDGET_BYTES) overBudget++
    }, 1)
    let responses
    try {
      responses = await Promise.all(
        requests.map(({ image, range }) => rawRequest(h.proxy.url, MIRROR_PATH + image.path, { headers: range === undefined ? {} : { range } })),
      )
    } finally {
      clearInterval(sampler)
    }
    responses.forEach((response, index) => {
      const { image, start, end, range } = requests[index] as (typeof requests)[number]
      assert.equal(response.status, range === undefined ? 200 : 206, `${image.path} ${range}`)
      assert.equal(sha256(response.body), sha256(bytesOf(image).subarray(start, end + 1)), `${image.path} ${range ?? 'whole'}: the bytes asked for`)
    })
    assert.equal(overBudget, 0, `the chunks held more than the ${BUDGET_BYTES}-byte budget (peak ${peakHeld})`)
    assert.ok(peakWaiting > 0, 'with 20 chunks wanted at once on a 4-chunk budget some waited their turn')
    assert.ok(await eventually(allLetGo), 'every chunk went back to the budget')
  })

  test('clients leaving mid-transfer let go of their chunks, and those staying get every byte', async () => {
    const [image] = images as [TreeItem]
    const leaving = Array.from({ length: 20 }, (_, index) => rawRequest(h.proxy.url, MIRROR_PATH + image.path, { abortAfterBytes: MiB + 7 + index * 99_991 }))
    const staying = Array.from({ length: 10 }, () => rawRequest(h.proxy.url, MIRROR_PATH + image.path))
    const left = await Promise.all(leaving)
    for (const response of left) assert.ok(response.body.length < FILE_BYTES && !response.complete)
    for (const response of await Promise.all(staying)) assert.equal(sha256(response.body), image.sha256)
    assert.ok(await eventually(allLetGo), `chunks still held after the clients left: ${JSON.stringify(h.proxy.sharedChunks.stats())}, ${h.proxy.readBuffers.stats().heldBytes} bytes of the budget`)
  })

  test('a file gone from the store once its download began is sent whole through the reader the download opened', async () => {
    const image = images[1] as TreeItem
    // The download's own reader opens; every later open (a chunk's) finds the file gone, as after a removal.
    let opens = 0
    const openRange = objects.openRange.bind(objects)
    objects.openRange = async (sha256, start, end) => (++opens === 1 ? openRange(sha256, start, end) : undefined)
    let response
    try {
      response = await rawRequest(h.proxy.url, MIRROR_PATH + image.path, { headers: { range: `bytes=12345-` } })
    } finally {
      objects.openRange = openRange
    }
    assert.equal(response.status, 206)
    assert.ok(opens >= 2, 'a chunk was opened apart from the download')
    assert.equal(sha256(response.body), sha256(bytesOf(image).subarray(12_345)))
    assert.ok(await eventually(allLetGo))
  })
})
