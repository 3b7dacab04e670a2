import { test, describe, before, after, beforeEach } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { openDatabase } from '../../src/store/database.js'
import { createLeases } from '../../src/store/lease.js'
import { buildUpstreamTree, type TreeItem } from '../support/upstream-tree.js'
import { selectedFiles, startHarness, type Harness } from '../support/proxy-harness.js'

const selectedPaths = (items: readonly TreeItem[], version: string) => selectedFiles(items, version).map((file) => file.path)

const itemRequests = (h: Harness) =>
  [...h.tree.files.keys()].filter((path) => !path.startsWith('streams/')).reduce((sum, path) => sum + h.upstream.requestCount(path), 0)

const shaOf = (h: Harness, path: string) => (h.tree.items.find((item) => item.path === path) as TreeItem).sha256

describe('a prefetch pass', () => {
  let h: Harness
  before(async () => {
    h = await startHarness({ fillAttempts: 3 })
  })
  after(() => h.close())
  beforeEach(() => h.upstream.resetCounters())

  test('fetches exactly the selected files, once each, and records the pass', async () => {
    const expected = selectedPaths(h.tree.items, '20250201')
    assert.equal(expected.length, 10)
    const outcome = await h.proxy.core.prefetcher.run('stable')
    assert.equal(outcome.result, 'ok')
    assert.deepEqual({ done: outcome.counts.filesDone, total: outcome.counts.filesTotal }, { done: 10, total: 10 })
    for (const path of expected) {
      assert.equal(h.upstream.requestCount(path), 1, path)
      assert.ok(h.proxy.core.store.index.get(shaOf(h, path)), `${path} stored`)
    }
    assert.equal(itemRequests(h), 10, 'nothing outside the selection was requested')
    const status = h.proxy.core.prefetcher.status('stable')
    assert.equal(status.lastResult, 'ok')
    assert.equal(status.passes[0]?.filesDone, 10)
    assert.equal(status.passes[0]?.bytesDone, outcome.counts.bytesTotal)
  })

  test('a second pass fetches nothing', async () => {
    const outcome = await h.proxy.core.prefetcher.run('stable')
    assert.equal(outcome.result, 'ok')
    assert.equal(outcome.counts.filesTotal, 0)
    assert.equal(itemRequests(h), 0)
  })

  test('/status shows the prefetch state and the last passes', async () => {
    const report = (await (await fetch(`${h.proxy.url}/status`)).json()) as {
      mirrors: Array<{ prefetch: { state: string; lastResult: string; passes: Array<{ result: string }> }; selection: { cachedFiles: number } }>
    }
    const mirror = report.mirrors[0]
    assert.equal(mirror?.prefetch.state, 'idle')
    assert.equal(mirror?.prefetch.lastResult, 'ok')
    assert.deepEqual(mirror?.prefetch.passes.map((pass) => pass.result), ['ok', 'ok'])
    assert.equal(mirror?.selection.cachedFiles, 10)
  })

  test('a new upstream version is fetched and the old one collected', async () => {
    const old = selectedPaths(h.tree.items, '20250201')
    const tree = await buildUpstreamTree({ key: h.tree.key, versions: ['20250101', '20250201', '20250301'] })
    h.upstream.setTree(tree)
    const outcome = await h.proxy.core.prefetcher.run('stable')
    assert.equal(outcome.result, 'ok')
    assert.equal(outcome.counts.filesTotal, 10)
    for (const path of selectedPaths(tree.items, '20250301')) assert.equal(h.upstream.requestCount(path), 1, path)
    assert.equal(outcome.garbage?.files.length, 10)
    for (const path of old) {
      const sha256 = shaOf(h, path)
      assert.equal(h.proxy.core.store.index.get(sha256), undefined, `${path} row collected`)
      await assert.rejects(stat(h.proxy.core.store.objects.localPath!(sha256)), { code: 'ENOENT' })
    }
  })
})

describe('a prefetch pass with a failing upstream', () => {
  let h: Harness
  before(async () => {
    h = await startHarness({ fillAttempts: 3 })
  })
  after(() => h.close())

  test('a 5xx on one file fails only that file; the pass reports it and collects nothing', async () => {
    const [bad, ...good] = selectedPaths(h.tree.items, '20250201')
    h.upstream.setFault(bad as string, { kind: 'status', status: 503 })
    const outcome = await h.proxy.core.prefetcher.run('stable')
    h.upstream.setFault(bad as string, undefined)
    assert.equal(outcome.result, 'failed')
    assert.equal(outcome.counts.filesDone, 9)
    assert.equal(outcome.counts.errors.length, 1)
    assert.match(outcome.counts.errors[0] as string, new RegExp(`${bad}: .*HTTP 503`))
    assert.equal(outcome.garbage, undefined)
    for (const path of good) assert.ok(h.proxy.core.store.index.get(shaOf(h, path)), path)
    const status = h.proxy.core.prefetcher.status('stable')
    assert.equal(status.lastResult, 'failed')
    assert.deepEqual(status.errors, outcome.counts.errors)
    assert.deepEqual(status.passes[0]?.errors, outcome.counts.errors)
  })

  test('an interrupted transfer resumes with Range and is verified whole', async () => {
    const tree = await buildUpstreamTree({ key: h.tree.key, versions: ['20250101', '20250201', '20250301'] })
    h.upstream.setTree(tree)
    h.upstream.resetCounters()
    const path = 'noble/amd64/20250301/squashfs'
    h.upstream.setFault(path, { kind: 'reset', afterBytes: 20_000 })
    const running = h.proxy.core.prefetcher.run('stable')
    // The fault is read when a request arrives: clearing it after the first leaves only that one cut.
    while (h.upstream.requestCount(path) === 0) await new Promise((resolve) => setImmediate(resolve))
    h.upstream.setFault(path, undefined)
    const outcome = await running
    assert.equal(outcome.result, 'ok')
    assert.deepEqual(h.upstream.rangeRequests(path), ['bytes=20000-'])
    const sha256 = (tree.items.find((item) => item.path === path) as TreeItem).sha256
    const stored = await readFile(h.proxy.core.store.objects.localPath!(sha256))
    assert.ok(stored.equals(tree.files.get(path) as Buffer))
  })
})

describe('one pass per mirror at a time', () => {
  let h: Harness
  before(async () => {
    h = await startHarness({ fillAttempts: 3 })
  })
  after(() => h.close())

  test('in one process, a second request joins the running pass', async () => {
    const prefetcher = h.proxy.core.prefetcher
    const [first, second] = await Promise.all([prefetcher.run('stable'), prefetcher.run('stable')])
    assert.equal(first, second)
    assert.equal(itemRequests(h), 10)
    assert.equal(prefetcher.status('stable').passes.length, 1)
  })

  test('a lease held through another connection skips the pass; a lapsed one does not block', async () => {
    const db = openDatabase(join(h.dataDir, 'index.sqlite'))
    try {
      const lease = createLeases(db).tryAcquire('prefetch:stable')
      assert.ok(lease)
      const skipped = await h.proxy.core.prefetcher.run('stable')
      assert.equal(skipped.result, 'skipped')
      lease.release()
      // A holder that crashed: its lease is past its expiry and is taken over.
      db.prepare("INSERT INTO leases (name, owner, expires_at) VALUES ('prefetch:stable', 'elsewhere:1:gone', ?)").run(Date.now() - 1)
      assert.equal((await h.proxy.core.prefetcher.run('stable')).result, 'ok')
    } finally {
      db.close()
    }
  })

  test('a second process holding the lease blocks the pass until it is killed and the lease lapses', async () => {
    const script = `
      import { openDatabase } from './src/store/database.js'
      import { createLeases } from './src/store/lease.js'
      const lease = createLeases(openDatabase(process.argv[1]), { ttlMs: 600 }).tryAcquire('prefetch:stable')
      console.log(lease ? 'held' : 'busy')
      setInterval(() => {}, 1000)
    `
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, join(h.dataDir, 'index.sqlite')], {
      cwd: join(import.meta.dirname, '../..'),
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    try {
      const [line] = (await once(child.stdout, 'data')) as [Buffer]
      assert.equal(line.toString().trim(), 'held')
      assert.equal((await h.proxy.core.prefetcher.run('stable')).result, 'skipped')
      child.kill('SIGKILL')
      await once(child, 'exit')
      await new Promise((resolve) => setTimeout(resolve, 700))
      assert.equal((await h.proxy.core.prefetcher.run('stable')).result, 'ok')
    } finally {
      child.kill('SIGKILL')
    }
  })
})
