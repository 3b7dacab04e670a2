import { test, describe, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { DEFAULT_LIMITS } from '../../src/config/defaults.js'
import { parseWindow } from '../../src/prefetch/windows.js'
import { selectedFiles, startHarness, type Harness } from '../support/proxy-harness.js'
import type { TreeItem } from '../support/upstream-tree.js'

const MB = 1_000_000

const squashfsOf = (h: Harness) =>
  h.tree.items.find((item) => item.path.endsWith('/squashfs') && item.product.includes(':24.04:amd64:') && item.version === '20250201') as TreeItem

const itemRequests = (h: Harness) =>
  [...h.tree.files.keys()].filter((path) => !path.startsWith('streams/')).reduce((sum, path) => sum + h.upstream.requestCount(path), 0)

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`)
    await sleep(20)
  }
}

async function status(h: Harness) {
  return (await (await fetch(`${h.proxy.url}/status`)).json()) as {
    bandwidth: { upstreamRate: number | null; prefetchRate: number | null; prefetchWindows: string[]; prefetchWindowOpen: boolean; prefetchPaused: boolean }
    mirrors: Array<{ prefetch: { state: string; lastResult: string | null } }>
  }
}

describe('limits.upstreamRate', () => {
  let h: Harness
  after(() => h.close())

  test('a miss of 3 MB behind a 2 MB/s cap takes at least the time the cap implies, and arrives whole', async () => {
    h = await startHarness({ tree: { sizes: { squashfs: 3 * MB } }, config: { limits: { ...DEFAULT_LIMITS, upstreamRate: 2 * MB } } })
    const file = squashfsOf(h)
    const started = performance.now()
    const response = await fetch(h.url(file.path))
    assert.equal(response.status, 200)
    const body = Buffer.from(await response.arrayBuffer())
    const seconds = (performance.now() - started) / 1000
    assert.equal(createHash('sha256').update(body).digest('hex'), file.sha256)
    // 3 MB less the burst (a tenth of a second) and one chunk, at 2 MB/s: at least 1.3 s.
    assert.ok(seconds >= 1.3, `took ${seconds.toFixed(2)} s`)
    const report = await status(h)
    assert.deepEqual(report.bandwidth, {
      upstreamRate: 2 * MB,
      prefetchRate: null,
      prefetchWindows: [],
      prefetchWindowOpen: true,
      prefetchPaused: false,
      waiting: { miss: 0, prefetch: 0 },
    })
  })
})

describe('prefetch.windows', () => {
  let clock = new Date(2025, 0, 15, 12, 0)
  const windows = [parseWindow('22:00-06:00')]

  test('outside its window no scheduled pass starts; the pass due runs when the window opens', async () => {
    clock = new Date(2025, 0, 15, 12, 0)
    const h = await startHarness({
      config: { prefetch: { onStart: true, interval: 3600, concurrency: 4, windows } },
      now: () => clock,
      windowCheckMs: 25,
    })
    try {
      await sleep(500)
      assert.equal(itemRequests(h), 0, 'no file fetched outside the window')
      let report = await status(h)
      assert.equal(report.bandwidth.prefetchPaused, true)
      assert.equal(report.bandwidth.prefetchWindowOpen, false)
      assert.deepEqual(report.bandwidth.prefetchWindows, ['22:00-06:00'])
      assert.equal(report.mirrors[0]?.prefetch.lastResult, null)
      clock = new Date(2025, 0, 15, 22, 30)
      await until('the deferred pass has run', async () => (await status(h)).mirrors[0]?.prefetch.lastResult === 'ok')
      report = await status(h)
      assert.equal(report.bandwidth.prefetchPaused, false)
      assert.equal(itemRequests(h), selectedFiles(h.tree.items, '20250201').length, 'each selected file once')
    } finally {
      await h.close()
    }
  })

  test('a running pass pauses when its window closes, a miss still gets its file, and the pass resumes when a window opens', async () => {
    clock = new Date(2025, 0, 15, 23, 0)
    const h = await startHarness({
      tree: { sizes: { squashfs: 1 * MB, initrd: 400_000 } },
      // A slow prefetch, so that the pass is still running when the window closes.
      config: { prefetch: { onStart: true, interval: 3600, concurrency: 4, windows, rate: 400_000 } },
      now: () => clock,
      windowCheckMs: 25,
    })
    try {
      const { core } = h.proxy
      await until('the pass has fetched some bytes', () => core.traffic.upstreamBytes > 100_000)
      clock = new Date(2025, 0, 16, 6, 30)
      await until('the pass is paused', async () => (await status(h)).mirrors[0]?.prefetch.state === 'paused')
      assert.equal((await status(h)).bandwidth.prefetchPaused, true)
      await sleep(300)
      const pausedAt = core.traffic.upstreamBytes
      // Longer than the harness's 1.5 s upstream idle timeout: a held transfer is not a silent upstream.
      await sleep(2_000)
      assert.equal(core.traffic.upstreamBytes, pausedAt, 'no prefetch bytes while paused')

      // A miss on a file the paused pass is fetching raises that fill to miss priority: it completes.
      const active = core.store.fills.active()
      assert.ok(active.length > 0)
      const joined = active[0]!.target
      const response = await fetch(h.url(joined.path))
      assert.equal(response.status, 200)
      assert.equal(createHash('sha256').update(Buffer.from(await response.arrayBuffer())).digest('hex'), joined.sha256)
      assert.equal((await status(h)).mirrors[0]?.prefetch.state, 'paused')

      clock = new Date(2025, 0, 16, 22, 0)
      await until('the pass has finished', async () => (await status(h)).mirrors[0]?.prefetch.lastResult === 'ok')
      for (const item of h.tree.items.filter((candidate) => core.store.index.get(candidate.sha256) !== undefined)) {
        assert.equal(h.upstream.requestCount(item.path), 1, `${item.path} fetched in one transfer, never cut for idling`)
      }
    } finally {
      await h.close()
    }
  })
})
