/**
 * Memory is bounded by `limits.readBufferMemory`, not by the clients: 250
 * concurrent downloads of stored files through the real server never make
 * the read buffers hold more than the budget (the downloads of one file share
 * its chunks, so they are spread over several files to contest the budget), each gets the exact bytes, the
 * buffers come back, /status and /metrics say so, and the idle memory is
 * dropped after the idle period.
 */

import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { DEFAULT_LIMITS } from '../../src/config/defaults.js'
import { MIRROR_PATH, startHarness, type Harness } from '../support/proxy-harness.js'
import { rawRequest, sha256 } from '../support/http.js'
import type { TreeItem } from '../support/upstream-tree.js'

const MiB = 1024 * 1024
const BUDGET_BYTES = 4 * MiB
const CLIENTS = 250
const IDLE_MS = 300

describe('read buffer budget under many concurrent downloads', () => {
  let h: Harness
  let images: TreeItem[]
  before(async () => {
    h = await startHarness({
      tree: { releases: [{ release: 'noble', version: '24.04' }, { release: 'jammy', version: '22.04' }], arches: ['amd64', 'arm64'], versions: ['20250201'], sizes: { squashfs: 3 * MiB + 4321 } },
      mirror: { selections: [{ filters: ['release~(noble|jammy)'], max: 1 }] },
      config: { limits: { ...DEFAULT_LIMITS, readBufferMemory: BUDGET_BYTES } },
      readBufferIdleMs: IDLE_MS,
    })
    // One per file: a file named by several products is listed once for each.
    images = [...new Map(h.tree.items.filter((i) => i.ftype === 'squashfs').map((i) => [i.sha256, i])).values()]
    assert.equal(images.length, 4)
    for (const image of images) assert.equal(sha256((await rawRequest(h.proxy.url, MIRROR_PATH + image.path)).body), image.sha256)
    await h.proxy.core.store.fills.idle()
  })
  after(async () => {
    await h.close()
  })

  test(`${CLIENTS} clients at once: the buffers never pass the budget, every body is exact, and the memory is handed back when idle`, async (t) => {
    let peakHeld = 0
    let peakWaiting = 0
    let peakTransfers = 0
    const sampler = setInterval(() => {
      const stats = h.proxy.readBuffers.stats()
      peakHeld = Math.max(peakHeld, stats.heldBytes)
      peakWaiting = Math.max(peakWaiting, stats.waiting)
      peakTransfers = Math.max(peakTransfers, stats.transfers)
      assert.ok(stats.heldBytes <= BUDGET_BYTES && stats.allocatedBytes <= 32 * MiB, `buffers hold ${stats.heldBytes} bytes, allocated ${stats.allocatedBytes}`)
    }, 1)
    let responses
    try {
      responses = await Promise.all(Array.from({ length: CLIENTS }, (_, index) => rawRequest(h.proxy.url, MIRROR_PATH + (images[index % images.length] as TreeItem).path)))
    } finally {
      clearInterval(sampler)
    }
    t.diagnostic(`peak: ${peakHeld} bytes held, ${peakTransfers} downloads reading, ${peakWaiting} waiting`)
    responses.forEach((response, index) => {
      assert.equal(response.status, 200)
      assert.equal(sha256(response.body), (images[index % images.length] as TreeItem).sha256)
    })
    assert.ok(peakHeld > 0 && peakHeld <= BUDGET_BYTES)
    assert.ok(peakWaiting > 0, 'with 250 clients on a 4 MiB budget some downloads waited their turn')

    const status = (await (await fetch(`${h.proxy.url}/status`, { headers: { accept: 'application/json' } })).json()) as { memory: Record<string, number> }
    assert.equal(status.memory.readBufferBudget, BUDGET_BYTES)
    assert.equal(status.memory.downloadsWaiting, 0)
    const metrics = await (await fetch(`${h.proxy.url}/metrics`)).text()
    assert.match(metrics, new RegExp(`^sstream_proxy_read_buffer_budget_bytes ${BUDGET_BYTES}$`, 'm'))
    assert.match(metrics, /^sstream_proxy_downloads_waiting_for_buffers 0$/m)

    // Every download has ended: its buffers are back, then the idle slab is dropped.
    let stats = h.proxy.readBuffers.stats()
    for (let tries = 0; (stats.transfers > 0 || stats.allocatedBytes > 0) && tries < 200; tries++) {
      await sleep(50)
      stats = h.proxy.readBuffers.stats()
    }
    assert.deepEqual({ held: stats.heldBytes, transfers: stats.transfers, waiting: stats.waiting, allocated: stats.allocatedBytes }, { held: 0, transfers: 0, waiting: 0, allocated: 0 })
    const after = (await (await fetch(`${h.proxy.url}/status`, { headers: { accept: 'application/json' } })).json()) as { memory: Record<string, number> }
    assert.deepEqual(after.memory, { readBufferBudget: BUDGET_BYTES, readBufferHeldBytes: 0, readBufferAllocatedBytes: 0, downloadsReading: 0, downloadsWaiting: 0 })

    // And the next download reads again, from a new slab.
    const [image] = images as [TreeItem]
    assert.equal(sha256((await rawRequest(h.proxy.url, MIRROR_PATH + image.path)).body), image.sha256)
  })
})
