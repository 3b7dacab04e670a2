/**
 * The `/status` document: what the proxy holds and what it is doing, per
 * mirror. The field names are the contract of product.md.
 */

import type { Mirror } from '../mirror/mirror.js'
import type { Publication } from '../mirror/publication.js'
import type { Store } from '../store/store.js'
import type { Traffic } from './traffic.js'

export interface PrefetchStatus {
  state: 'idle' | 'running' | 'disabled'
  lastStarted: string | null
  lastFinished: string | null
  lastResult: string | null
  filesDone: number
  filesTotal: number
  bytesDone: number
  bytesTotal: number
  errors: string[]
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
        ...mirror.metadataStatus(),
        selection: selectionStatus(publication, store),
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
    store: store.status(),
    mirrors,
  }
}

export type StatusReport = ReturnType<typeof buildStatusReport>

function selectionStatus(publication: Publication | undefined, store: Store) {
  const summary = publication?.summary ?? { products: 0, versions: 0, files: 0, bytes: 0 }
  let cachedFiles = 0
  let cachedBytes = 0
  // Over the selection's files, the set `files` and `bytes` count (one per
  // path), not `publication.files`: with `publish: "cached"` that also holds
  // the older versions still published, which are stored while the selection
  // waits for its own, and would show the selection as cached.
  const counted = new Set<string>()
  for (const selection of publication?.selections.values() ?? []) {
    for (const file of selection.files) {
      if (counted.has(file.path)) continue
      counted.add(file.path)
      if (store.index.get(file.sha256) !== undefined) {
        cachedFiles++
        cachedBytes += file.size
      }
    }
  }
  return { ...summary, cachedFiles, cachedBytes }
}
