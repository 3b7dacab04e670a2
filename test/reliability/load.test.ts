/**
 * Load, short form: 50 concurrent clients for 10 s over hits and misses of a
 * proxy running as its own process. No request fails, every body matches its
 * sha256, memory stays bounded and no file descriptor leaks. The long form is
 * `npm run test:soak` (test/soak/soak.ts); docs/reliability.md has its figures.
 */

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { runLoadScenario } from './support/load-scenario.js'

const MB = 1024 * 1024

test('50 clients for 10 s over hits and misses: no errors, every body verified, bounded RSS, no fd leak', { timeout: 30_000 }, async () => {
  const report = await runLoadScenario({
    clients: 50,
    durationMs: 10_000,
    sampleEveryMs: 1000,
    settleMs: 500,
    upstreamBytesPerSecond: 8 * MB,
    evict: { everyMs: 500, count: 3 },
  })
  const { load } = report
  assert.deepEqual(load.errors.slice(0, 10), [], `${load.errors.length} of ${load.requests} requests failed`)
  assert.ok(load.requests > 500, `only ${load.requests} requests in 10 s`)
  assert.ok(load.hits > 0 && load.misses > 0, `hits ${load.hits}, misses ${load.misses}: the mix must have both`)
  assert.ok(load.ranges > 0)
  const peak = Math.max(...report.samples.map((sample) => sample.rssBytes))
  // 50 downloads hold up to 2 MiB of read buffers each (docs/operations.md, "Memory to plan
  // for"): about 100 MB, plus what V8 and the allocator keep while the suite loads both cores.
  assert.ok(peak - report.before.rssBytes < 200 * MB, `RSS grew from ${Math.round(report.before.rssBytes / MB)} MB to ${Math.round(peak / MB)} MB`)
  // Up to 16 kept-alive upstream connections may still be pooled right after the load.
  assert.ok(report.afterSettle.openFds <= report.before.openFds + 20, `fds ${report.before.openFds} before, ${report.afterSettle.openFds} after`)
})
