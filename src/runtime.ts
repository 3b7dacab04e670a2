/**
 * The composition root: builds the store, the upstream client, the mirrors,
 * the prefetcher and the HTTP app from a validated configuration, and serves
 * them. Commands and tests start the proxy through `startProxy` (or, without
 * HTTP, `openCore`); nothing else wires modules.
 */

import type { AddressInfo } from 'node:net'
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer, Server as HttpsServer } from 'node:https'
import { getRequestListener } from '@hono/node-server'
import { readTlsFiles } from './config/tls-files.js'
import { ConfigError } from './config/validate-config.js'
import type { Config, MirrorConfig } from './config/types.js'
import { readCaFile } from './config/ca-file.js'
import type { Logger } from './log/logger.js'
import { createMetadataWorker, type MetadataWorker } from './metadata-worker/metadata-worker.js'
import { createMirror, type Mirror } from './mirror/mirror.js'
import { createPrefetcher, type Prefetcher } from './prefetch/prefetcher.js'
import { createAccessControl } from './server/access-control.js'
import { createApp } from './server/create-app.js'
import { createMetadataFastPath } from './server/metadata-fast-path.js'
import { createPipelineLimit } from './server/connection-pipeline.js'
import { createTraffic, type Traffic } from './server/traffic.js'
import { loadOrCreateSigningKey, type SigningKey } from './streams/signing-key.js'
import { openStore, type Store } from './store/store.js'
import { createBufferPool, type BufferPool } from './store/buffer-pool.js'
import { createSharedChunks, type SharedChunks } from './store/shared-chunks.js'
import { VerificationError } from './store/fill.js'
import { StoreAccessError, StoreUnavailableError } from './store/object-store.js'
import { createSource } from './upstream/create-source.js'
import { createFailoverSource } from './upstream/failover-source.js'
import { createUpstreamClient, type TransportSettings, type UpstreamClient, type UpstreamClientOptions } from './upstream/upstream-client.js'
import { createRateBudget, type RateBudget } from './upstream/rate-budget.js'
import { openReplica, type Replica } from './fleet/replica.js'
import { createBucketLeases } from './fleet/bucket-leases.js'
import { createFleetPasses } from './fleet/fleet-passes.js'
import { createReplicaRegistry, type ReplicaRegistry } from './fleet/replica-registry.js'
import { createFleetMonitor, type FleetMonitor } from './fleet/fleet-monitor.js'
import type { AsyncLeases } from './store/lease.js'
import { createFillClaims } from './fleet/fill-claims.js'
import type { FillPlanner } from './store/fill.js'
import type { BandwidthStatus } from './server/status-report.js'

export interface ProxyCore {
  /** The configuration in force; replaced, with `mirrors` and `prefetcher`, by `reconfigure`. */
  config: Config
  store: Store
  client: UpstreamClient
  signingKey: SigningKey
  /** Verifies and publishes every mirror's metadata off the main thread; outlives reloads. */
  metadataWorker: MetadataWorker
  mirrors: Mirror[]
  /** Passes, history and status; `startProxy` starts its schedule, commands run passes directly. */
  prefetcher: Prefetcher
  traffic: Traffic
  log: Logger
  /** This process as a replica of a fleet (`fleet`); undefined for a proxy on its own. */
  replica: Replica | undefined
  /** The fleet's leases in the bucket (prefetch passes, `gc`), for a replica. */
  fleetLeases: AsyncLeases | undefined
  /**
   * Puts a new configuration in force: new mirrors and a new prefetcher, built
   * by the same factories, swapped in together; then the old prefetcher is
   * stopped. Resolves to the mirrors whose pass it stopped: the caller starts
   * the new prefetcher with them as `resume`, so no pass is lost. The store, its fills,
   * the metadata worker and the upstream client are kept: `dataDir`, `store`
   * and `signingKey` stay as they were (the caller says a restart is needed). A
   * changed `proxy` or `ca` (or a replaced CA file) takes effect: the new
   * mirrors get the client's transport for their settings, while transfers on
   * the old one finish.
   */
  reconfigure(config: Config): Promise<string[]>
  /** Rate limits and prefetch windows as `/status` shows them. */
  bandwidth(): BandwidthStatus
  /** Stops the prefetcher and the metadata worker, then closes the store and the client. */
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
  /** Where S3 credentials are read; default `process.env`. */
  env?: NodeJS.ProcessEnv
  /** How often a store that is down is asked again; default 30 s. */
  storeCheckIntervalMs?: number
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
  // The fleet's claims need the replica, which needs the opened store: bound once both exist, before any fill.
  let planFill: FillPlanner | undefined
  const store = await openStore({
    plan: config.fleet && ((target, upstream, signal) => (planFill as FillPlanner)(target, upstream, signal)),
    relist: config.fleet !== undefined,
    dataDir: config.dataDir,
    budget,
    backend: config.store,
    env: options.env,
    storeCheckIntervalMs: options.storeCheckIntervalMs,
    fillAttempts: options.fillAttempts,
    fillRetryBaseMs: options.fillRetryBaseMs,
    onUpstreamBytes: (bytes) => (traffic.upstreamBytes += bytes),
    onUpstreamTransfer: () => traffic.upstreamTransfers++,
    onPeerBytes: (bytes) => (traffic.peerBytes += bytes),
    onCommitted: (fill) => {
      log.info('stored', { path: fill.target.path, bytes: fill.target.size, ms: Date.now() - fill.startedAt })
      for (const mirror of mirrors) void mirror.fileStored(fill.target.sha256)
    },
    onAdopted: (sha256) => {
      for (const mirror of mirrors) void mirror.fileStored(sha256)
    },
    onError: (message) => log.warn('store', { error: message }),
    onFailed: (fill, error) => {
      if (error instanceof VerificationError) traffic.verificationFailures++
      // A store that failed mid-fill is counted by the store's own error count.
      else if (!(error instanceof StoreUnavailableError)) traffic.upstreamErrors++
      log.warn('fill failed', { path: fill.target.path, error: error.message })
    },
  }).catch((error: unknown) => {
    // Credentials, bucket or permissions the operator must fix: one line, exit 2.
    if (error instanceof StoreAccessError) throw new ConfigError(config.source, error.key, error.problem)
    throw error
  })
  const { startup } = store
  log.info('store opened', { dataDir: config.dataDir, store: store.objects.location, ...startup })
  const replica = config.fleet && (await openReplica(config.fleet, store.objects, config.source))
  if (replica !== undefined) {
    log.info('fleet replica', { id: replica.id, advertise: replica.advertise })
    planFill = createFillClaims({
      replica,
      objects: store.objects,
      log,
      onPeerFill: () => traffic.peerFills++,
      onTakeover: () => traffic.takeovers++,
    })
  }
  const fleetLeases =
    replica &&
    createBucketLeases({
      records: replica.records,
      ttlMs: replica.leaseTtlMs,
      replica,
      onError: (message) => log.warn('fleet lease', { error: message }),
      onLost: (name) => log.warn('fleet lease lost: another replica took it over', { lease: name }),
    })
  const prefetchFleet = replica &&
    fleetLeases && {
      replica,
      leases: fleetLeases,
      passes: createFleetPasses(replica.records),
      records: replica.records,
      checkEveryMs: replica.leaseTtlMs / 3,
    }
  const client = createUpstreamClient({
    userAgent: 'sstream-proxy',
    onRedirect: (from, to, redirects) => log.info('upstream redirected', { url: from, final: to, redirects }),
    metadataMaxBytes: config.limits.metadataMaxBytes,
    metadataTimeoutMs: config.limits.metadataTimeout * 1000,
    ...options.upstream,
  })
  const isStored = (sha256: string) => store.index.get(sha256) !== undefined
  const metadataWorker = createMetadataWorker({ signingKeyArmored: signingKey.privateKey.armor(), log })
  // Read at start like the client's own cap (restart-only): directory sources enforce the same one.
  const { metadataMaxBytes } = config.limits
  /** A mirror's route out: its proxy setting and its CA file, read now so that a reload picks up a replaced file. */
  const transportOf = async (mirror: MirrorConfig, source: string): Promise<TransportSettings> => {
    const ca = mirror.ca && { certificates: await readCaFile(mirror.ca.path, mirror.ca.key, source), mode: mirror.ca.mode }
    return { ...(mirror.proxy !== undefined && { proxy: mirror.proxy }), ...(ca && { ca }) }
  }
  const buildMirrors = async (settings: Config): Promise<Mirror[]> => {
    const transports = await Promise.all(settings.mirrors.map((mirror) => transportOf(mirror, settings.source)))
    const built = settings.mirrors.map((mirror, index) =>
      createMirror({
        config: mirror,
        upstream: createFailoverSource({
          members: mirror.upstreams.map((url) => createSource(url, { client, metadataMaxBytes, transport: transports[index] })),
          // With one upstream there is no other to turn to: it is never cooled down (its last
          // error still shows on /status), and its failures are logged where they happen.
          cooldownMs: mirror.upstreams.length < 2 ? 0 : mirror.upstreamCooldown * 1000,
          onCooldown:
            mirror.upstreams.length < 2
              ? undefined
              : (upstream, error, until) =>
                  log.warn('upstream cooling down, using the next', { mirror: mirror.name, upstream, until: new Date(until).toISOString(), error: error.message }),
        }),
        worker: metadataWorker,
        dataDir: settings.dataDir,
        metadataTtlSeconds: settings.metadataTtl,
        log,
        isStored,
        listStored: () => store.index.all().map((file) => file.sha256),
        storedSize: (sha256) => store.index.get(sha256)?.size,
        unavailableRetryMs: options.metadataUnavailableRetryMs,
      }),
    )
    await Promise.all(built.map((mirror) => mirror.start()))
    return built
  }
  const buildPrefetcher = (settings: Config, forMirrors: Mirror[]): Prefetcher =>
    createPrefetcher({
      mirrors: forMirrors,
      store,
      settings: settings.prefetch,
      log,
      attempts: options.prefetchAttempts,
      retryBaseMs: options.prefetchRetryBaseMs ?? options.fillRetryBaseMs,
      leaseTtlMs: options.leaseTtlMs,
      budget,
      now: options.now,
      windowCheckMs: options.windowCheckMs,
      fleet: prefetchFleet,
    })
  mirrors = await buildMirrors(config)
  const core: ProxyCore = {
    config,
    store,
    client,
    signingKey,
    metadataWorker,
    mirrors,
    prefetcher: buildPrefetcher(config, mirrors),
    traffic,
    log,
    replica,
    fleetLeases,
    async reconfigure(next) {
      const settings = { ...next, dataDir: core.config.dataDir, store: core.config.store, fleet: core.config.fleet, signingKey: core.config.signingKey }
      const built = await buildMirrors(settings)
      const previous = core.prefetcher
      // One synchronous step: no request or commit sees new mirrors with the old configuration.
      mirrors = built
      core.config = settings
      core.mirrors = built
      core.prefetcher = buildPrefetcher(settings, built)
      return previous.stop()
    },
    bandwidth() {
      const window = core.prefetcher.window()
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
      await core.prefetcher.stop()
      await metadataWorker.close()
      await store.close()
      client.close()
    },
  }
  return core
}

/**
 * The budget upstream bodies are read through, when there is anything to
 * hold them to: a rate, or windows outside which prefetch transfers wait.
 * Without either, bodies are read directly, as fast as the link gives them.
 */
function createBudget(config: Config): RateBudget | undefined {
  const upstreamRate = config.limits.upstreamRate
  const prefetchRate = config.prefetch.rate
  if (upstreamRate === undefined && prefetchRate === undefined && (config.prefetch.windows ?? []).length === 0) return undefined
  return createRateBudget({ bytesPerSecond: upstreamRate ?? Infinity, prefetchBytesPerSecond: prefetchRate ?? Infinity })
}

export interface RunningProxy {
  core: ProxyCore
  server: HttpServer | HttpsServer
  /** The read buffers file downloads share, under `limits.readBufferMemory`. */
  readBuffers: BufferPool
  /** Chunks of stored files that their downloads share, taken from `readBuffers`. */
  sharedChunks: SharedChunks
  /** `http://host:port` (or `https://`) the server listens on. */
  url: string
  /**
   * Puts a new configuration in force without dropping a connection (SIGHUP):
   * mirrors, selections, prefetch, allowlists and the TLS certificate. Keys that
   * need a restart keep their running values and are named in the log. Throws
   * `ConfigError` for TLS files that cannot be used, with the old configuration
   * still in force.
   */
  reload(config: Config): Promise<void>
  /** Stops accepting, lets running transfers end (up to `graceMs`), then closes the store. */
  close(graceMs?: number): Promise<void>
}

export interface StartProxyOptions extends CoreOptions {
  version: string
  /** How long idle read buffers are kept for the next burst before they are handed back; default 10 s. */
  readBufferIdleMs?: number
  /** How long a file download may take no bytes before it is cut; default 120 s. */
  sendStallTimeoutMs?: number
}

type RequestListener = (request: IncomingMessage, response: ServerResponse) => void

/** Long enough to keep buffers across the gaps in steady traffic, short enough that memory returns soon after a burst. */
const READ_BUFFER_IDLE_MS = 10_000

/** Keys read only when the server starts: a reload that changes them is logged and ignored. */
const RESTART_ONLY: Array<[string, (config: Config) => unknown]> = [
  ['listen.host', (config) => config.listen.host],
  ['listen.port', (config) => config.listen.port],
  ['listen.tls', (config) => config.listen.tls !== undefined],
  ['dataDir', (config) => config.dataDir],
  ['store', (config) => JSON.stringify(config.store)],
  ['fleet', (config) => JSON.stringify(config.fleet)],
  ['signingKey', (config) => config.signingKey],
  // The budget every fill reads through is made once, at start, with these rates.
  ['limits.upstreamRate', (config) => config.limits.upstreamRate],
  ['prefetch.rate', (config) => config.prefetch.rate],
  // The upstream client, which enforces these, is kept across reloads with its connections.
  ['limits.metadataMaxBytes', (config) => config.limits.metadataMaxBytes],
  ['limits.metadataTimeout', (config) => config.limits.metadataTimeout],
  // Every download's buffers come from the one pool made at start.
  ['limits.readBufferMemory', (config) => config.limits.readBufferMemory],
]

export async function startProxy(config: Config, options: StartProxyOptions): Promise<RunningProxy> {
  // Read before anything opens: a bad certificate must not leave a store open behind it.
  const tlsFiles = config.listen.tls === undefined ? undefined : await readTlsFiles(config.listen.tls, config.source)
  const core = await openCore(config, options)
  const readBuffers = createBufferPool({ budgetBytes: config.limits.readBufferMemory, idleMs: options.readBufferIdleMs ?? READ_BUFFER_IDLE_MS })
  const monitor = await joinFleet(core, options.version).catch(async (error: unknown) => {
    await core.close()
    throw error
  })
  const sharedChunks = createSharedChunks({ pool: readBuffers })
  const startedAt = Date.now()
  let configLoaded = startedAt
  /** The listener for the configuration in force: the access check, the metadata fast path, then the app. */
  const buildListener = (): RequestListener => {
    const app = createApp({
      version: options.version,
      startedAt,
      configLoaded,
      mirrors: core.mirrors,
      store: core.store,
      client: core.client,
      signingKey: core.signingKey,
      traffic: core.traffic,
      log: core.log,
      prefetchStatus: (mirror) => core.prefetcher.status(mirror),
      bandwidth: () => core.bandwidth(),
      readBuffers,
      fleet: monitor && (() => monitor.status()),
      sharedChunks,
      sendStallTimeoutMs: options.sendStallTimeoutMs,
      replica: core.replica,
    })
    // An HTTP/1.0 request may come without Host (RFC 9112 requires it of
    // HTTP/1.1 only, and Node refuses those itself): the app then names its URL
    // with this host, as the metadata fast path serves such requests too.
    const answerWithApp = getRequestListener(app.fetch, { hostname: 'localhost' })
    const metadataFastPath = createMetadataFastPath({ mirrors: core.mirrors, traffic: core.traffic, log: core.log })
    const refuseUnlisted = createAccessControl({ ...core.config.listen, traffic: core.traffic, log: core.log })
    return (request, response) => {
      if (refuseUnlisted(request, response)) return
      if (!metadataFastPath(request, response)) void answerWithApp(request, response)
    }
  }
  // Rebuilt for the first request after `core.reconfigure` swaps the configuration;
  // requests already in progress keep the listener (and mirrors) they started with.
  let listener = buildListener()
  let listenerFor = core.config
  // Node enforces headersTimeout only when it checks its connections, every
  // 30 s by default: a slowloris would hold its socket up to 50 s, not 20.
  const serverOptions = { connectionsCheckingInterval: 1_000 }
  // Per connection, so it outlives listener rebuilds; its limit is read per request.
  const admitRequest = createPipelineLimit({ maxInFlight: () => core.config.limits.pipelinedRequests, log: core.log })
  const answer: RequestListener = (request, response) => {
    if (!admitRequest(request, response)) return
    if (listenerFor !== core.config) {
      listener = buildListener()
      listenerFor = core.config
    }
    listener(request, response)
  }
  const server =
    tlsFiles === undefined ? createHttpServer(serverOptions, answer) : createHttpsServer({ ...serverOptions, ...tlsFiles }, answer)
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
  const url = `${tlsFiles === undefined ? 'http' : 'https'}://${host}:${address.port}`
  const describeMirrors = () => core.mirrors.map((mirror) => `${mirror.config.name}=${mirror.config.path}`).join(',')
  // Described by the source: credentials in an upstream URL are redacted.
  const describeUpstreams = () => core.mirrors.map((mirror) => `${mirror.config.name}=${mirror.upstream.describe()}`).join(',')
  core.log.info('listening', { url, mirrors: describeMirrors(), upstreams: describeUpstreams() })
  for (const mirror of core.mirrors) void mirror.publication()
  core.prefetcher.start()

  // One reload at a time: a second SIGHUP waits for the first to be in force.
  let reloads = Promise.resolve()
  const reload = async (next: Config): Promise<void> => {
    const running = core.config
    const nextTls = next.listen.tls
    // The only step that can fail once the file is loaded: taken before anything is swapped.
    const nextTlsFiles = nextTls === undefined || tlsFiles === undefined ? undefined : await readTlsFiles(nextTls, next.source)
    const kept = RESTART_ONLY.filter(([, read]) => read(next) !== read(running)).map(([key]) => key)
    if (kept.length > 0) core.log.warn('restart needed to change', { keys: kept.join(','), source: next.source })
    const { host: _host, port: _port, tls: _tls, ...access } = next.listen
    const listen = { host: running.listen.host, port: running.listen.port, ...access, ...(running.listen.tls && { tls: nextTls ?? running.listen.tls }) }
    const previousLoaded = configLoaded
    configLoaded = Date.now()
    let stoppedPasses: string[]
    try {
      stoppedPasses = await core.reconfigure({ ...next, listen })
    } catch (error) {
      configLoaded = previousLoaded
      throw error
    }
    if (nextTlsFiles !== undefined && server instanceof HttpsServer) server.setSecureContext(nextTlsFiles)
    core.log.info('configuration reloaded', { source: next.source, mirrors: describeMirrors() })
    await monitor?.mirrorsChanged(core.config.mirrors)
    for (const mirror of core.mirrors) void mirror.publication()
    core.prefetcher.start({ resume: stoppedPasses })
  }

  return {
    core,
    server,
    readBuffers,
    sharedChunks,
    url,
    reload(next) {
      const done = reloads.then(() => reload(next))
      reloads = done.catch(() => undefined)
      return done
    },
    async close(graceMs = 10_000) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      server.closeIdleConnections()
      const timer = setTimeout(() => server.closeAllConnections(), graceMs)
      await closed
      clearTimeout(timer)
      await monitor?.leave()
      await core.close()
    },
  }
}

/**
 * A replica's entry into its fleet, before it serves: refused with a
 * `ConfigError` when the live replicas sign with another key or have other
 * mirrors; then its record is kept fresh and the fleet is read for /status.
 * Undefined for a proxy on its own.
 */
async function joinFleet(core: ProxyCore, version: string): Promise<(FleetMonitor & Pick<ReplicaRegistry, 'mirrorsChanged'> & { leave(): Promise<void> }) | undefined> {
  const { replica, fleetLeases, config, log } = core
  if (replica === undefined || fleetLeases === undefined) return undefined
  const registry = createReplicaRegistry({ replica, signingKeyFingerprint: core.signingKey.fingerprint, mirrors: config.mirrors, version, source: config.source, log })
  await registry.join()
  const monitor = createFleetMonitor({
    replica,
    registry,
    leases: fleetLeases,
    records: replica.records,
    mirrorNames: () => core.mirrors.map((mirror) => mirror.config.name),
    everyMs: replica.leaseTtlMs / 3,
  })
  monitor.start()
  return {
    ...monitor,
    mirrorsChanged: (mirrors) => registry.mirrorsChanged(mirrors),
    async leave() {
      await monitor.stop()
      await registry.leave()
    },
  }
}

/**
 * SIGHUP's work: the configuration loaded again and put in force, or refused
 * with its one-line message in the log while the running one stays. Resolves
 * to whether the new configuration is in force; never rejects, since a signal
 * must not take the server down.
 */
export async function reloadConfig(proxy: RunningProxy, load: () => Promise<Config>): Promise<boolean> {
  const { log } = proxy.core
  log.info('reloading configuration')
  try {
    await proxy.reload(await load())
    return true
  } catch (error) {
    const message = error instanceof ConfigError ? error.message : `cannot reload: ${(error as Error).message}`
    log.error('configuration refused, the running one stays in force', { error: message })
    return false
  }
}
