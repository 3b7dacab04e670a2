/**
 * The composition root: builds the store, the upstream client, the mirrors,
 * the prefetcher and the HTTP app from a validated configuration, and serves
 * them. Commands and tests start the proxy through `startProxy` (or, without
 * HTTP, `openCore`); nothing else wires modules.
 */

import type { AddressInfo } from 'node:net'
import type { Server } from 'node:http'
import { createServer } from 'node:http'
import { getRequestListener } from '@hono/node-server'
import type { Config } from './config/types.js'
import type { Logger } from './log/logger.js'
import { createMirror, type Mirror } from './mirror/mirror.js'
import { createPrefetcher, type Prefetcher } from './prefetch/prefetcher.js'
import { createApp } from './server/create-app.js'
import { createMetadataFastPath } from './server/metadata-fast-path.js'
import { createTraffic, type Traffic } from './server/traffic.js'
import { loadOrCreateSigningKey, type SigningKey } from './streams/signing-key.js'
import { openStore, type Store } from './store/store.js'
import { VerificationError } from './store/fill.js'
import { createUpstreamClient, type UpstreamClient, type UpstreamClientOptions } from './upstream/upstream-client.js'
import { createRateBudget, type RateBudget } from './upstream/rate-budget.js'
import type { BandwidthStatus } from './server/status-report.js'

export interface ProxyCore {
  config: Config
  store: Store
  client: UpstreamClient
  signingKey: SigningKey
  mirrors: Mirror[]
  /** Passes, history and status; `startProxy` starts its schedule, commands run passes directly. */
  prefetcher: Prefetcher
  traffic: Traffic
  log: Logger
  /** Rate limits and prefetch windows as `/status` shows them. */
  bandwidth(): BandwidthStatus
  /** Stops the prefetcher, then closes the store and the client. */
  close(): Promise<void>
}

export interface CoreOptions {
  log: Logger
  upstream?: UpstreamClientOptions
  /** Upstream attempts per file before a fill fails. */
  fillAttempts?: number
  fillRetryBaseMs?: number
  /** Fills per file before a prefetch pass counts it failed. */
  prefetchAttempts?: number
  /** Base of the pass's backoff between a file's fills; default `fillRetryBaseMs`, else 1 s. */
  prefetchRetryBaseMs?: number
  /** How long a crashed process's prefetch lease blocks other processes. */
  leaseTtlMs?: number
  /** With no metadata held, how long after a failed fetch requests are answered 503 without asking upstream. */
  metadataUnavailableRetryMs?: number
  /** The local time `prefetch.windows` are read against; tests pass a fake clock. */
  now?: () => Date
  /** How often the prefetch schedule looks at the clock for its windows; default 30 s. */
  windowCheckMs?: number
}

/** Opens everything but the HTTP server: what `serve`, `prefetch`, `gc` and `verify` share. */
export async function openCore(config: Config, options: CoreOptions): Promise<ProxyCore> {
  const { log } = options
  const traffic = createTraffic()
  const { key: signingKey, created } = await loadOrCreateSigningKey(config.signingKey)
  // Created below, after the store whose commits they hear about.
  let mirrors: Mirror[] = []
  if (created) log.info('created signing key', { path: config.signingKey, fingerprint: signingKey.fingerprint })
  const budget = createBudget(config)
  const store = await openStore({
    dataDir: config.dataDir,
    budget,
    fillAttempts: options.fillAttempts,
    fillRetryBaseMs: options.fillRetryBaseMs,
    onUpstreamBytes: (bytes) => (traffic.upstreamBytes += bytes),
    onCommitted: (fill) => {
      log.info('stored', { path: fill.target.path, bytes: fill.target.size, ms: Date.now() - fill.startedAt })
      for (const mirror of mirrors) void mirror.fileStored(fill.target.sha256)
    },
    onError: (message) => log.warn('store', { error: message }),
    onFailed: (fill, error) => {
      if (error instanceof VerificationError) traffic.verificationFailures++
      else traffic.upstreamErrors++
      log.warn('fill failed', { path: fill.target.path, error: error.message })
    },
  })
  const { startup } = store
  log.info('store opened', { dataDir: config.dataDir, ...startup })
  const client = createUpstreamClient({ userAgent: 'sstream-proxy', ...options.upstream })
  const isStored = (sha256: string) => store.index.get(sha256) !== undefined
  mirrors = config.mirrors.map((mirror) =>
    createMirror({
      config: mirror,
      client,
      signingKey,
      dataDir: config.dataDir,
      metadataTtlSeconds: config.metadataTtl,
      log,
      isStored,
      storedSize: (sha256) => store.index.get(sha256)?.size,
      unavailableRetryMs: options.metadataUnavailableRetryMs,
    }),
  )
  await Promise.all(mirrors.map((mirror) => mirror.start()))
  const prefetcher = createPrefetcher({
    mirrors,
    store,
    client,
    settings: config.prefetch,
    log,
    attempts: options.prefetchAttempts,
    retryBaseMs: options.prefetchRetryBaseMs ?? options.fillRetryBaseMs,
    leaseTtlMs: options.leaseTtlMs,
    budget,
    now: options.now,
    windowCheckMs: options.windowCheckMs,
  })
  return {
    config,
    store,
    client,
    signingKey,
    mirrors,
    prefetcher,
    traffic,
    log,
    bandwidth() {
      const window = prefetcher.window()
      const rates = budget?.status()
      return {
        upstreamRate: rates?.upstreamRate ?? null,
        prefetchRate: rates?.prefetchRate ?? null,
        prefetchWindows: window.windows,
        prefetchWindowOpen: window.open,
        prefetchPaused: window.paused,
        waiting: rates?.waiting ?? { miss: 0, prefetch: 0 },
      }
    },
    async close() {
      await prefetcher.stop()
      await store.close()
      client.close()
    },
  }
}

/**
 * The budget upstream bodies are read through, when there is anything to
 * hold them to: a rate, or windows outside which prefetch transfers wait.
 * Without either, bodies are read directly, as fast as the link gives them.
 */
function createBudget(config: Config): RateBudget | undefined {
  const upstreamRate = config.limits?.upstreamRate
  const prefetchRate = config.prefetch.rate
  if (upstreamRate === undefined && prefetchRate === undefined && (config.prefetch.windows ?? []).length === 0) return undefined
  return createRateBudget({ bytesPerSecond: upstreamRate ?? Infinity, prefetchBytesPerSecond: prefetchRate ?? Infinity })
}

export interface RunningProxy {
  core: ProxyCore
  server: Server
  /** `http://host:port` the server listens on. */
  url: string
  /** Stops accepting, lets running transfers end (up to `graceMs`), then closes the store. */
  close(graceMs?: number): Promise<void>
}

export interface StartProxyOptions extends CoreOptions {
  version: string
  /** How long a file download may take no bytes before it is cut; default 120 s. */
  sendStallTimeoutMs?: number
}

export async function startProxy(config: Config, options: StartProxyOptions): Promise<RunningProxy> {
  const core = await openCore(config, options)
  const app = createApp({
    version: options.version,
    startedAt: Date.now(),
    mirrors: core.mirrors,
    store: core.store,
    client: core.client,
    signingKey: core.signingKey,
    traffic: core.traffic,
    log: core.log,
    prefetchStatus: (mirror) => core.prefetcher.status(mirror),
    bandwidth: () => core.bandwidth(),
    sendStallTimeoutMs: options.sendStallTimeoutMs,
  })
  // Node enforces headersTimeout only when it checks its connections, every
  // 30 s by default: a slowloris would hold its socket up to 50 s, not 20.
  const answerWithApp = getRequestListener(app.fetch)
  const metadataFastPath = createMetadataFastPath({ mirrors: core.mirrors, traffic: core.traffic, log: core.log })
  const server = createServer({ connectionsCheckingInterval: 1_000 }, (request, response) => {
    if (!metadataFastPath(request, response)) void answerWithApp(request, response)
  })
  // Slow or idle clients must not hold sockets forever (slowloris).
  server.headersTimeout = 20_000
  server.requestTimeout = 0
  server.keepAliveTimeout = 30_000
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(config.listen.port, config.listen.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address() as AddressInfo
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  const url = `http://${host}:${address.port}`
  core.log.info('listening', { url, mirrors: config.mirrors.map((mirror) => `${mirror.name}=${mirror.path}`).join(',') })
  for (const mirror of core.mirrors) void mirror.publication()
  core.prefetcher.start()

  return {
    core,
    server,
    url,
    async close(graceMs = 10_000) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      server.closeIdleConnections()
      const timer = setTimeout(() => server.closeAllConnections(), graceMs)
      await closed
      clearTimeout(timer)
      await core.close()
    },
  }
}
