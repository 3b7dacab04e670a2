/**
 * The composition root: builds the store, the upstream client, the mirrors
 * and the HTTP app from a validated configuration, and serves them. Commands
 * and tests start the proxy through `startProxy`; nothing else wires modules.
 */

import type { AddressInfo } from 'node:net'
import type { Server } from 'node:http'
import { createAdaptorServer } from '@hono/node-server'
import type { Config } from './config/types.js'
import type { Logger } from './log/logger.js'
import { createMirror, type Mirror } from './mirror/mirror.js'
import { createApp } from './server/create-app.js'
import { createTraffic, type Traffic } from './server/traffic.js'
import { loadOrCreateSigningKey, type SigningKey } from './streams/signing-key.js'
import { openStore, type Store } from './store/store.js'
import { VerificationError } from './store/fill.js'
import { createUpstreamClient, type UpstreamClient, type UpstreamClientOptions } from './upstream/upstream-client.js'

export interface ProxyCore {
  config: Config
  store: Store
  client: UpstreamClient
  signingKey: SigningKey
  mirrors: Mirror[]
  traffic: Traffic
  log: Logger
  close(): Promise<void>
}

export interface CoreOptions {
  log: Logger
  upstream?: UpstreamClientOptions
  /** Upstream attempts per file before a fill fails. */
  fillAttempts?: number
  fillRetryBaseMs?: number
}

/** Opens everything but the HTTP server: what `serve`, `prefetch`, `gc` and `verify` share. */
export async function openCore(config: Config, options: CoreOptions): Promise<ProxyCore> {
  const { log } = options
  const traffic = createTraffic()
  const { key: signingKey, created } = await loadOrCreateSigningKey(config.signingKey)
  if (created) log.info('created signing key', { path: config.signingKey, fingerprint: signingKey.fingerprint })
  const store = await openStore({
    dataDir: config.dataDir,
    fillAttempts: options.fillAttempts,
    fillRetryBaseMs: options.fillRetryBaseMs,
    onUpstreamBytes: (bytes) => (traffic.upstreamBytes += bytes),
    onCommitted: (fill) => log.info('stored', { path: fill.target.path, bytes: fill.target.size, ms: Date.now() - fill.startedAt }),
    onFailed: (fill, error) => {
      if (error instanceof VerificationError) traffic.verificationFailures++
      else traffic.upstreamErrors++
      log.warn('fill failed', { path: fill.target.path, error: error.message })
    },
  })
  const { startup } = store
  log.info('store opened', { dataDir: config.dataDir, ...startup })
  const client = createUpstreamClient({ userAgent: 'sstream-proxy', ...options.upstream })
  const mirrors = config.mirrors.map((mirror) =>
    createMirror({ config: mirror, client, signingKey, dataDir: config.dataDir, metadataTtlSeconds: config.metadataTtl, log }),
  )
  await Promise.all(mirrors.map((mirror) => mirror.start()))
  return {
    config,
    store,
    client,
    signingKey,
    mirrors,
    traffic,
    log,
    async close() {
      await store.close()
      client.close()
    },
  }
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
  })
  const server = createAdaptorServer({ fetch: app.fetch }) as Server
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
