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
import { buildUpstreamTree, type TreeOptions, type UpstreamTree } from './upstream-tree.js'
import { startUpstreamServer, type UpstreamServer } from './upstream-server.js'

export const MIRROR_PATH = '/maas/images/ephemeral-v3/stable/'

/** Selections as in product.md: amd64 noble images and the grub/pxelinux bootloaders, newest version only. */
export function selections(groups: Array<{ filters: string[]; max?: number }>): SelectionConfig[] {
  return groups.map(({ filters, max }) => ({ filters: filters.map(parseFilter), ...(max === undefined ? {} : { max }) }))
}

export const DEFAULT_SELECTIONS = [
  { filters: ['arch=amd64', 'release~(noble)'], max: 1 },
  { filters: ['os~(grub*|pxelinux)'], max: 1 },
]

export interface HarnessOptions {
  tree?: TreeOptions
  mirror?: Partial<Omit<MirrorConfig, 'selections'>> & { selections?: Array<{ filters: string[]; max?: number }> }
  config?: Partial<Config>
  dataDir?: string
  log?: Logger
  fillAttempts?: number
  metadataUnavailableRetryMs?: number
  sendStallTimeoutMs?: number
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
  const upstream = await startUpstreamServer(tree)
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
        upstream: upstream.url,
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
