/**
 * One benchmark's setup: a synthetic upstream process and a proxy process in
 * front of it, sharing a directory that `close` leaves for the caller to remove.
 */

import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { TreeOptions } from '../../src/demo/synthetic-tree.js'
import { startProxyProcess, type ProxyProcess } from './proxy-process.js'
import { startUpstream, type BenchUpstream, type UpstreamItem } from './upstream.js'

export interface Stand {
  upstream: BenchUpstream
  proxy: ProxyProcess
  dir: string
  /** The distinct items whose path ends with `suffix`, in path order. */
  items(suffix: string): UpstreamItem[]
  close(): Promise<void>
}

export interface StandOptions {
  dir: string
  tree: Omit<TreeOptions, 'key'>
  nodeArgs?: string[]
}

/**
 * The proxy prefetches its selection as soon as its first metadata arrives
 * (a metadata change starts a pass, whatever `prefetch.onStart` says). The
 * benchmarks need the big files cold, so upstream answers them 404 (not
 * retried) until that first pass has ended.
 */
const HELD_BACK_SUFFIX = '/squashfs'

export async function startStand(options: StandOptions): Promise<Stand> {
  await mkdir(options.dir, { recursive: true })
  const upstream = await startUpstream({ tree: options.tree, keyringDir: options.dir })
  try {
    const held = upstream.items.filter((item) => item.path.endsWith(HELD_BACK_SUFFIX))
    for (const item of held) await upstream.setStatusFault(item.path, 404)
    const proxy = await startProxyProcess({ upstreamUrl: upstream.url, keyringPath: upstream.keyringPath, dir: join(options.dir, 'proxy'), nodeArgs: options.nodeArgs })
    await firstPassEnded(proxy, upstream, held)
    for (const item of held) {
      await upstream.setStatusFault(item.path, undefined)
      // The synthetic upstream hashes a file for its ETag on the first request: not a cost any real upstream has.
      await fetch(`${upstream.url}${item.path}`, { method: 'HEAD' })
    }
    await upstream.resetCounters()
    return {
      upstream,
      proxy,
      dir: options.dir,
      items: (suffix) => upstream.items.filter((item) => item.path.endsWith(suffix)).sort((a, b) => (a.path < b.path ? -1 : 1)),
      async close() {
        await proxy.close()
        await upstream.close()
      },
    }
  } catch (error) {
    await upstream.close()
    throw error
  }
}

async function firstPassEnded(proxy: ProxyProcess, upstream: BenchUpstream, held: UpstreamItem[]): Promise<void> {
  const deadline = Date.now() + 60_000
  for (;;) {
    const asked = await Promise.all(held.map((item) => upstream.requestCount(item.path)))
    const status = (await (await fetch(proxy.statusUrl, { headers: { accept: 'application/json' } })).json()) as { mirrors: Array<{ prefetch: { state: string } }> }
    if (asked.every((count) => count > 0) && status.mirrors.every((mirror) => mirror.prefetch.state !== 'running')) return
    if (Date.now() > deadline) throw new Error(`the proxy's first prefetch pass did not end within 60 s; see ${proxy.statusUrl}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** One release, one arch: a tree whose only big files are its squashfs images, one per version. */
export function squashfsTree(bytes: number, versions: number): Omit<TreeOptions, 'key'> {
  return {
    releases: [{ release: 'noble', version: '24.04' }],
    arches: ['amd64'],
    versions: Array.from({ length: versions }, (_, index) => `2025${String(index + 1).padStart(2, '0')}01`),
    sizes: { squashfs: bytes },
  }
}
