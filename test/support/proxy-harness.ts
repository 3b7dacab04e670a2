/**
 * A signed test upstream and a real proxy in front of it, on 127.0.0.1 with
 * a fresh data directory: what the proxy, prefetch and reliability tests share.
 */

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DEFAULT_LIMITS } from '../../src/config/defaults.js'
import type { Config, MirrorConfig, SelectionConfig } from '../../src/config/types.js'
import { parseFilter } from '../../src/streams/filter.js'
import { silentLogger, type Logger } from '../../src/log/logger.js'
import { startProxy, type RunningProxy } from '../../src/runtime.js'
import { buildUpstreamTree, type TreeItem, type TreeOptions, type UpstreamTree } from './upstream-tree.js'
import { startUpstreamServer, type UpstreamServer, type UpstreamServerOptions } from './upstream-server.js'

export const MIRROR_PATH = '/maas/images/ephemeral-v3/stable/'

/** Selections as in product.md: amd64 noble images and the grub/pxelinux bootloaders, newest version only. */
export function selections(groups: Array<{ filters: string[]; max?: number }>): SelectionConfig[] {
  return groups.map(({ filters, max }) => ({ filters: filters.map(parseFilter), ...(max === undefined ? {} : { max }) }))
}

export const DEFAULT_SELECTIONS = [
  { filters: ['arch=amd64', 'release~(noble)'], max: 1 },
  { filters: ['os~(grub*|pxelinux)'], max: 1 },
]

/**
 * What DEFAULT_SELECTIONS picks from a tree whose newest version is `version`:
 * the noble amd64 images of `version` and every bootloader of `<version>.0`,
 * one entry per distinct path, sorted by path. Written from the tree's
 * shapes, not with the proxy's selection code, so tests can check it.
 */
export function selectedFiles(items: readonly TreeItem[], version: string): TreeItem[] {
  const byPath = new Map<string, TreeItem>()
  for (const item of items) {
    const image = item.product.includes(':24.04:amd64:') && item.version === version
    const bootloader = item.contentId.endsWith(':bootloader-download') && item.version === `${version}.0`
    if ((image || bootloader) && !byPath.has(item.path)) byPath.set(item.path, item)
  }
  // An empty pick would make every comparison with it vacuous.
  const kinds = new Set([...byPath.values()].map((item) => item.contentId))
  if (kinds.size !== 2) throw new Error(`selectedFiles: the tree lacks the noble amd64 images or the bootloaders of version ${version}`)
  return [...byPath.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
}

export interface HarnessOptions {
  tree?: TreeOptions
  /** How the test upstream serves (https, basic auth). */
  upstream?: UpstreamServerOptions
  mirror?: Partial<Omit<MirrorConfig, 'selections'>> & { selections?: Array<{ filters: string[]; max?: number }> }
  config?: Partial<Config>
  dataDir?: string
  log?: Logger
  fillAttempts?: number
  metadataUnavailableRetryMs?: number
  sendStallTimeoutMs?: number
  /** How long idle read buffers are kept before they are handed back. */
  readBufferIdleMs?: number
  /** The local time prefetch windows are read against, and how often the schedule looks at it. */
  now?: () => Date
  windowCheckMs?: number
  /** The proxy's environment (S3 credentials). */
  env?: NodeJS.ProcessEnv
  /** How often a store that is down is asked again. */
  storeCheckIntervalMs?: number
  /** Mirrors served besides the harness's own `stable`, sharing its store. */
  extraMirrors?: MirrorConfig[]
}

export interface Harness {
  tree: UpstreamTree
  upstream: UpstreamServer
  proxy: RunningProxy
  config: Config
  dataDir: string
  keyringPath: string
  /** Full URL of a path inside the mirror. */
  url(path: string): string
  /** Stops the proxy only (the data directory and upstream stay). */
  stopProxy(): Promise<void>
  /** Starts a new proxy on the same data directory and configuration. */
  restartProxy(): Promise<RunningProxy>
  close(): Promise<void>
}

export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const tree = await buildUpstreamTree(options.tree)
  const upstream = await startUpstreamServer(tree, options.upstream)
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'sstream-proxy-test-')))
  const keyringPath = await tree.writeKeyring(dataDir)
  const { selections: groups, ...mirror } = options.mirror ?? {}
  const config: Config = {
    listen: { host: '127.0.0.1', port: 0 },
    dataDir,
    signingKey: join(dataDir, 'signing-key.asc'),
    metadataTtl: 600,
    prefetch: { onStart: false, interval: 3600, concurrency: 4 },
    store: { type: 'filesystem' },
    limits: DEFAULT_LIMITS,
    mirrors: [
      {
        name: 'stable',
        path: MIRROR_PATH,
        upstreams: [upstream.url],
        upstreamCooldown: 300,
        keyring: keyringPath,
        keyringIsDefault: false,
        metadata: 'filtered',
        publish: 'selected',
        missFailure: 'reset',
        missWait: 8,
        selections: selections(groups ?? DEFAULT_SELECTIONS),
        ...mirror,
      },
      ...(options.extraMirrors ?? []),
    ],
    source: 'test harness',
    ...options.config,
  }
  const start = async () => {
    const started = await startProxy(config, {
      log: options.log ?? silentLogger,
      version: 'test',
      fillAttempts: options.fillAttempts ?? 2,
      fillRetryBaseMs: 20,
      upstream: { connectTimeoutMs: 3_000, idleTimeoutMs: 1_500 },
      metadataUnavailableRetryMs: options.metadataUnavailableRetryMs,
      sendStallTimeoutMs: options.sendStallTimeoutMs,
      readBufferIdleMs: options.readBufferIdleMs,
      now: options.now,
      windowCheckMs: options.windowCheckMs,
      env: options.env,
      storeCheckIntervalMs: options.storeCheckIntervalMs,
    })
    // Tests count upstream requests: let the first metadata fetch finish before they start.
    await Promise.all(started.core.mirrors.map((mirror) => mirror.publication()))
    return started
  }
  let proxy = await start()
  const harness: Harness = {
    tree,
    upstream,
    get proxy() {
      return proxy
    },
    config,
    dataDir,
    keyringPath,
    url: (path) => `${proxy.url}${MIRROR_PATH}${path}`,
    async stopProxy() {
      await proxy.close(0)
    },
    async restartProxy() {
      proxy = await start()
      return proxy
    },
    async close() {
      await proxy.close(0).catch(() => undefined)
      await upstream.close()
      if (options.dataDir === undefined) await rm(dataDir, { recursive: true, force: true })
    },
  }
  return harness
}
