/**
 * The bandwidth budget (issue 14, item 5), measured against a real proxy in
 * this process and the synthetic upstream in its own, with no limit of its own:
 *
 * 1. four parallel misses behind `limits.upstreamRate`: the bytes read from
 *    upstream over 20 s must stay within 10 % of the cap;
 * 2. a prefetch pass allowed the whole cap (`prefetch.rate` = the cap), then a
 *    miss on a file the pass has not started: the miss must get at least half
 *    the cap while the pass goes on.
 *
 * Run with `node --import tsx bench/upstream-rate.ts`; about a minute. Not
 * part of `npm test` (it is timed) nor of `npm run bench`.
 */

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { validateConfig } from '../src/config/validate-config.js'
import { silentLogger } from '../src/log/logger.js'
import { startProxy, type RunningProxy } from '../src/runtime.js'
import { get } from './lib/http-client.js'
import { MB, MiB } from './lib/results.js'
import { squashfsTree } from './lib/stand.js'
import { startUpstream, type BenchUpstream, type UpstreamItem } from './lib/upstream.js'

const CAP = 8 * MB
const PARALLEL = 4
const MEASURE_SECONDS = 20
// Each of the four transfers gets a quarter of the cap: 40 MB in 20 s, less than one file.
const FILE_BYTES = 48 * MiB
const FILES = 6
const MIRROR_PATH = '/bench/'

async function startCappedProxy(upstream: BenchUpstream, dir: string, prefetchRate?: number): Promise<RunningProxy> {
  const config = validateConfig(
    {
      listen: { host: '127.0.0.1', port: 0 },
      dataDir: await mkdtemp(join(dir, 'data-')),
      prefetch: { onStart: false, interval: '24h', concurrency: PARALLEL, ...(prefetchRate === undefined ? {} : { rate: prefetchRate }) },
      limits: { upstreamRate: CAP },
      mirrors: [{ name: 'bench', path: MIRROR_PATH, upstream: upstream.url, keyring: upstream.keyringPath, selections: [] }],
    },
    { source: 'bench', baseDir: dir },
  )
  const proxy = await startProxy(config, { log: silentLogger, version: 'bench' })
  await Promise.all(proxy.core.mirrors.map((mirror) => mirror.publication()))
  return proxy
}

/** Bytes the proxy read from upstream (through the budget) and the upstream sent, over `seconds`. */
async function measure(proxy: RunningProxy, upstream: BenchUpstream, seconds: number) {
  const readBefore = proxy.core.traffic.upstreamBytes
  const sentBefore = await upstream.bytesSent()
  const started = performance.now()
  await sleep(seconds * 1000)
  const elapsed = (performance.now() - started) / 1000
  return {
    read: (proxy.core.traffic.upstreamBytes - readBefore) / elapsed,
    sent: ((await upstream.bytesSent()) - sentBefore) / elapsed,
  }
}

const mbps = (bytesPerSecond: number) => `${(bytesPerSecond / MB).toFixed(2)} MB/s`

async function parallelMisses(upstream: BenchUpstream, dir: string, files: UpstreamItem[]): Promise<boolean> {
  const proxy = await startCappedProxy(upstream, dir)
  try {
    const transfers = files.slice(0, PARALLEL).map((file) => get(`${proxy.url}${MIRROR_PATH}${file.path}`))
    // The first second holds the bucket's burst and the transfers' start.
    await sleep(1_000)
    const rate = await measure(proxy, upstream, MEASURE_SECONDS)
    const fills = proxy.core.store.fills.active().map((fill) => fill.written)
    const ratio = rate.read / CAP
    console.log(`1. ${PARALLEL} parallel misses, cap ${mbps(CAP)}, over ${MEASURE_SECONDS} s:`)
    console.log(`   read from upstream ${mbps(rate.read)} (${(ratio * 100).toFixed(1)} % of the cap); upstream sent ${mbps(rate.sent)}`)
    console.log(`   bytes per transfer so far: ${fills.map((bytes) => (bytes / MB).toFixed(1)).join(', ')} MB`)
    void Promise.allSettled(transfers)
    return Math.abs(ratio - 1) <= 0.1
  } finally {
    await proxy.close(0)
  }
}

async function missDuringPrefetch(upstream: BenchUpstream, dir: string, files: UpstreamItem[]): Promise<boolean> {
  // Prefetch may take the whole cap: the miss must win its share by priority alone.
  const proxy = await startCappedProxy(upstream, dir, CAP)
  try {
    const pass = proxy.core.prefetcher.run('bench', { gc: false })
    await sleep(2_000)
    const prefetchAlone = await measure(proxy, upstream, 5)
    const active = new Set(proxy.core.store.fills.active().map((fill) => fill.target.sha256))
    const cold = files.find((file) => !active.has(file.sha256)) as UpstreamItem
    const miss = await get(`${proxy.url}${MIRROR_PATH}${cold.path}`)
    if (miss.bytes !== cold.size) throw new Error(`miss got ${miss.bytes} of ${cold.size} bytes`)
    const missRate = miss.bytes / (miss.ms / 1000)
    const share = missRate / CAP
    console.log(`2. prefetch pass (${PARALLEL} transfers, prefetch.rate = cap ${mbps(CAP)}), then a miss on a ${(cold.size / MB).toFixed(1)} MB file:`)
    console.log(`   prefetch alone: ${mbps(prefetchAlone.read)}; the miss: ${mbps(missRate)} over ${(miss.ms / 1000).toFixed(1)} s (${(share * 100).toFixed(1)} % of the cap, first byte after ${miss.ttfbMs.toFixed(0)} ms)`)
    void pass.catch(() => undefined)
    return share >= 0.5
  } finally {
    await proxy.close(0)
  }
}

const dir = await mkdtemp(join(tmpdir(), 'sstream-bench-rate-'))
const upstream = await startUpstream({ tree: squashfsTree(FILE_BYTES, FILES), keyringDir: dir })
try {
  const files = upstream.items.filter((item) => item.path.endsWith('/squashfs'))
  // The synthetic upstream hashes a file for its ETag on the first request: not a cost any real upstream has.
  for (const file of files) await fetch(`${upstream.url}${file.path}`, { method: 'HEAD' })
  const capHolds = await parallelMisses(upstream, dir, files)
  const missServed = await missDuringPrefetch(upstream, dir, files)
  console.log(`cap within 10 %: ${capHolds ? 'yes' : 'NO'}; miss during prefetch got at least half: ${missServed ? 'yes' : 'NO'}`)
  process.exitCode = capHolds && missServed ? 0 : 1
} finally {
  await upstream.close()
  await rm(dir, { recursive: true, force: true })
}
