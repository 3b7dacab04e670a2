/**
 * One benchmark's setup: a synthetic upstream process and a proxy process in
 * front of it, sharing a directory that `close` leaves for the caller to remove.
 */

import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { TreeOptions } from '../../src/demo/synthetic-tree.js'
import { startProxyProcess, type ProxyProcess, type ProxyProcessOptions } from './proxy-process.js'
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
  store?: ProxyProcessOptions['store']
  env?: ProxyProcessOptions['env']
}

export async function startStand(options: StandOptions): Promise<Stand> {
  await mkdir(options.dir, { recursive: true })
  const upstream = await startUpstream({ tree: options.tree, keyringDir: options.dir })
  try {
    // prefetch.onStart is false in the bench configuration, so every file stays cold until asked for.
    const proxy = await startProxyProcess({ upstreamUrl: upstream.url, keyringPath: upstream.keyringPath, dir: join(options.dir, 'proxy'), nodeArgs: options.nodeArgs, store: options.store, env: options.env })
    await metadataLoaded(proxy)
    for (const item of upstream.items) {
      // The synthetic upstream hashes a file for its ETag on the first request: not a cost any real upstream has.
      if (item.path.endsWith('/squashfs')) await fetch(`${upstream.url}${item.path}`, { method: 'HEAD' })
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

/** Waits until `proxy` has every mirror's metadata. */
export async function metadataLoaded(proxy: ProxyProcess): Promise<void> {
  const deadline = Date.now() + 60_000
  for (;;) {
    const status = (await (await fetch(proxy.statusUrl, { headers: { accept: 'application/json' } })).json()) as { mirrors: Array<{ metadataUpdated: string | null }> }
    if (status.mirrors.every((mirror) => mirror.metadataUpdated !== null)) return
    if (Date.now() > deadline) throw new Error(`the proxy had no metadata within 60 s; see ${proxy.statusUrl}`)
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
