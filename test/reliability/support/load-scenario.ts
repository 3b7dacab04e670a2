/**
 * The load scenario the short load test and `npm run test:soak` share: a
 * signed upstream in this process, the proxy as a child process (so its
 * memory and file descriptors are its own), N clients for a fixed time over
 * every item of the tree, with evictions keeping misses next to hits. The
 * proxy's RSS and open descriptors are sampled from /proc throughout.
 */

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { buildUpstreamTree } from '../../support/upstream-tree.js'
import { startUpstreamServer } from '../../support/upstream-server.js'
import { sampleProcess, startChildProxy, writeProxyConfig, type ProcessSample } from './child-proxy.js'
import { runLoad, type LoadResult } from './load.js'

export interface ScenarioOptions {
  clients: number
  durationMs: number
  sampleEveryMs: number
  /** How long to wait after the load before the last sample (idle upstream connections close after 5 s). */
  settleMs: number
  /** Per-connection upstream rate, so that misses take a while and overlap. */
  upstreamBytesPerSecond?: number
  evict: { everyMs: number; count: number }
  /** Progress lines, for the soak run. */
  progress?: (line: string) => void
}

export interface ScenarioReport {
  files: number
  treeBytes: number
  load: LoadResult
  /** After start-up and the first prefetch pass, before any client. */
  before: ProcessSample
  /** Right after the clients stopped. */
  afterLoad: ProcessSample
  /** After `settleMs` of quiet. */
  afterSettle: ProcessSample
  samples: Array<ProcessSample & { atMs: number }>
}

export async function runLoadScenario(options: ScenarioOptions): Promise<ScenarioReport> {
  const tree = await buildUpstreamTree({ sizes: { squashfs: 1024 * 1024, initrd: 256 * 1024, kernel: 64 * 1024 } })
  const upstream = await startUpstreamServer(tree)
  upstream.setDefaultRate(options.upstreamBytesPerSecond)
  const dir = await mkdtemp(join(tmpdir(), 'sstream-load-'))
  const dataDir = join(dir, 'data')
  try {
    // Every item of the tree: both releases, arches and versions.
    const configPath = await writeProxyConfig({ dir, dataDir, upstream: upstream.url, keyring: await tree.writeKeyring(dir), selections: [] })
    const proxy = await startChildProxy(configPath)
    try {
      const paths = [...new Set(tree.items.map((item) => item.path))]
      const treeBytes = paths.reduce((sum, path) => sum + (tree.files.get(path)?.length ?? 0), 0)
      // Let the start-up prefetch pass (a first metadata fetch starts one) finish first.
      for (let seen = -1, quiet = 0; quiet < 4; quiet = upstream.requestCount() === seen ? quiet + 1 : 0, seen = upstream.requestCount()) {
        await sleep(250)
      }
      const before = await sampleProcess(proxy.pid)
      const samples: ScenarioReport['samples'] = []
      const started = performance.now()
      const sampler = setInterval(() => {
        void sampleProcess(proxy.pid).then((sample) => {
          samples.push({ atMs: Math.round(performance.now() - started), ...sample })
          options.progress?.(`t=${Math.round((performance.now() - started) / 1000)}s rss=${(sample.rssBytes / 1048576).toFixed(1)}MB fds=${sample.openFds}`)
        })
      }, options.sampleEveryMs)
      let load: LoadResult
      try {
        load = await runLoad({ url: proxy.url, tree, paths, clients: options.clients, durationMs: options.durationMs, evict: { dataDir, ...options.evict } })
      } finally {
        clearInterval(sampler)
      }
      const afterLoad = await sampleProcess(proxy.pid)
      await sleep(options.settleMs)
      const afterSettle = await sampleProcess(proxy.pid)
      const exit = await proxy.stop('SIGTERM')
      if (exit.code !== 0) throw new Error(`proxy exited ${exit.code ?? exit.signal}: ${exit.stderr}`)
      // The proxy logs to stdout; on stderr Node reports what the proxy got wrong,
      // such as a file handle nobody closed, which the garbage collector closed instead.
      if (exit.stderr.trim() !== '') throw new Error(`the proxy wrote to stderr under load:\n${exit.stderr.trim()}`)
      return { files: paths.length, treeBytes, load, before, afterLoad, afterSettle, samples }
    } finally {
      await proxy.stop('SIGKILL')
    }
  } finally {
    await upstream.close()
    await rm(dir, { recursive: true, force: true })
  }
}
