/**
 * The `/status` document: what the proxy holds and what it is doing, per
 * mirror. The field names are the contract of product.md.
 */

import type { Mirror } from '../mirror/mirror.js'
import type { Publication } from '../mirror/publication.js'
import { describeMaasProblem } from '../streams/maas-compatibility.js'
import type { BufferPool } from '../store/buffer-pool.js'
import type { Store } from '../store/store.js'
import type { FleetStatus } from '../fleet/fleet-monitor.js'
import type { Traffic } from './traffic.js'
import type { UpstreamHealth } from '../upstream/upstream-source.js'

export interface PrefetchStatus {
  /** `paused`: a pass is running but outside `prefetch.windows`, so it starts no file and its transfers wait. */
  state: 'idle' | 'running' | 'paused' | 'disabled'
  lastStarted: string | null
  lastFinished: string | null
  lastResult: string | null
  filesDone: number
  filesTotal: number
  bytesDone: number
  bytesTotal: number
  errors: string[]
}

/** The bandwidth budget and the prefetch windows, for the top of `/status`. */
export interface BandwidthStatus {
  /** Bytes per second over every upstream transfer; null for no cap. */
  upstreamRate: number | null
  /** Bytes per second over prefetch transfers; null for no cap of their own. */
  prefetchRate: number | null
  prefetchWindows: string[]
  /** Inside a prefetch window now (always, without windows). */
  prefetchWindowOpen: boolean
  /** Scheduled passes wait and prefetch transfers are held until a window opens. */
  prefetchPaused: boolean
  /** Transfers held for the budget now, by the priority they are served with. */
  waiting: { miss: number; prefetch: number }
}

export const UNLIMITED_BANDWIDTH: BandwidthStatus = {
  upstreamRate: null,
  prefetchRate: null,
  prefetchWindows: [],
  prefetchWindowOpen: true,
  prefetchPaused: false,
  waiting: { miss: 0, prefetch: 0 },
}

export interface StatusDeps {
  version: string
  startedAt: number
  /** When the configuration in force was loaded (at start or by the last reload). */
  configLoaded?: number
  mirrors: readonly Mirror[]
  store: Store
  traffic: Traffic
  /** The prefetch state of a mirror, when prefetch is wired in. */
  prefetchStatus?: (mirror: string) => PrefetchStatus
  /** Rate limits and windows, when they are wired in. */
  bandwidth?: () => BandwidthStatus
  /** The file downloads' read buffers. */
  readBuffers: Pick<BufferPool, 'stats'>
  /** This replica and the fleet, for a replica of one; the report has no `fleet` otherwise. */
  fleet?: () => FleetStatus
}

export const IDLE_PREFETCH: PrefetchStatus = {
  state: 'idle',
  lastStarted: null,
  lastFinished: null,
  lastResult: null,
  filesDone: 0,
  filesTotal: 0,
  bytesDone: 0,
  bytesTotal: 0,
  errors: [],
}

export function buildStatusReport(deps: StatusDeps) {
  const { store, traffic } = deps
  const totals = store.index.totals()
  const mirrors = deps.mirrors.map((mirror) => {
      const publication = mirror.current()
      return {
        name: mirror.config.name,
        path: mirror.config.path,
        upstream: mirror.upstream.describe(),
        // Each upstream in the order tried, with its state: several with failover.
        upstreams: mirror.upstream.health?.() ?? [{ url: mirror.upstream.describe(), state: 'ok', coolingUntil: null, lastError: null, lastErrorAt: null } satisfies UpstreamHealth],
        ...mirror.metadataStatus(),
        selection: selectionStatus(publication, store),
        // What MAAS 3.8 would reject in what this mirror serves, one line each.
        maasProblems: (publication?.maasProblems ?? []).map(describeMaasProblem),
        prefetch: deps.prefetchStatus?.(mirror.config.name) ?? IDLE_PREFETCH,
      }
    })
  return {
    version: deps.version,
    uptimeSeconds: Math.round((Date.now() - deps.startedAt) / 1000),
    configLoaded: new Date(deps.configLoaded ?? deps.startedAt).toISOString(),
    cache: {
      files: totals.files,
      bytes: totals.bytes,
      hits: traffic.hits,
      misses: traffic.misses,
      upstreamBytes: traffic.upstreamBytes,
      servedBytes: traffic.servedBytes,
      activeFills: store.fills.active().length,
    },
    bandwidth: deps.bandwidth?.() ?? UNLIMITED_BANDWIDTH,
    store: store.status(),
    memory: memoryStatus(deps.readBuffers),
    ...(deps.fleet && { fleet: deps.fleet() }),
    mirrors,
  }
}

export type StatusReport = ReturnType<typeof buildStatusReport>

/** The read buffer budget: what downloads hold of it, and how many wait for it. */
function memoryStatus(readBuffers: Pick<BufferPool, 'stats'>) {
  const stats = readBuffers.stats()
  return {
    readBufferBudget: stats.budgetBytes,
    readBufferHeldBytes: stats.heldBytes,
    readBufferAllocatedBytes: stats.allocatedBytes,
    downloadsReading: stats.transfers,
    downloadsWaiting: stats.waiting,
  }
}

function selectionStatus(publication: Publication | undefined, store: Store) {
  const summary = publication?.summary ?? { products: 0, versions: 0, files: 0, bytes: 0 }
  let cachedFiles = 0
  let cachedBytes = 0
  // Over the selection's files, the set `files` and `bytes` count (one per
  // path), not `publication.files`: with `publish: "cached"` that also holds
  // the older versions still published, which are stored while the selection
  // waits for its own, and would show the selection as cached.
  for (const file of publication?.selectedFiles() ?? []) {
    if (store.index.get(file.sha256) !== undefined) {
      cachedFiles++
      cachedBytes += file.size
    }
  }
  return { ...summary, cachedFiles, cachedBytes }
}
