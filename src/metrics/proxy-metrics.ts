/**
 * What `/metrics` exposes: prom-client's process metrics, the proxy's
 * traffic, the upstream client's counts and latency, and per mirror the
 * figures of `/status`, on a prom-client registry of the app's own (several
 * proxies in one process, as in tests, must not collide on the global one).
 * Nothing is counted on the request path for this: every metric's
 * `collect()` reads the same sources as `/status` at scrape time, once per
 * scrape, so the two never disagree. Only latencies (upstream's, the
 * store's) are observed as they happen, into histograms their owners keep. A new metric is one `gauge(...)` or
 * `counter(...)` line below, and one row in docs/operations.md.
 */

import { setTimeout as sleep } from 'node:timers/promises'
import { Counter, Gauge, Registry } from 'prom-client'
import type { PassRecord } from '../prefetch/pass-history.js'
import { buildStatusReport, type PrefetchStatus, type StatusDeps, type StatusReport } from '../server/status-report.js'
import type { UpstreamClient, UpstreamClientStats } from '../upstream/upstream-client.js'
import { processMetrics } from './process-metrics.js'

export interface MetricsDeps extends StatusDeps {
  client: Pick<UpstreamClient, 'stats' | 'latency'>
}

export interface ProxyMetrics {
  /** The `/metrics` body. */
  render(): Promise<string>
  contentType: string
}

/** What one scrape reads, once, for all the metrics. */
interface Reading {
  report: StatusReport
  upstream: UpstreamClientStats
}

type Mirror = StatusReport['mirrors'][number]
type Labels = Record<string, string>
/** One value, or one per label set; a null value leaves its series out of the scrape. */
type Read = (reading: Reading) => number | ReadonlyArray<{ labels: Labels; value: number | null }>

export function createProxyMetrics(deps: MetricsDeps): ProxyMetrics {
  const registry = new Registry()

  let reading: Reading | undefined
  const read = (): Reading => (reading ??= { report: buildStatusReport(deps), upstream: deps.client.stats() })
  const samples = (pick: Read) => {
    const value = pick(read())
    return typeof value === 'number' ? [{ labels: {}, value }] : value
  }
  const gauge = (name: string, help: string, labelNames: readonly string[], pick: Read) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset()
        for (const { labels, value } of samples(pick)) if (value !== null) this.set(labels, value)
      },
    })
  // Totals the app keeps: set, through a reset, to what they are at scrape time.
  const counter = (name: string, help: string, labelNames: readonly string[], pick: Read) =>
    new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset()
        for (const { labels, value } of samples(pick)) if (value !== null) this.inc(labels, value)
      },
    })
  const perMirror = (pick: (mirror: Mirror) => number | null) => (r: Reading) => r.report.mirrors.map((mirror) => ({ labels: { mirror: mirror.name }, value: pick(mirror) }))
  const mirror = ['mirror']

  gauge('sstream_proxy_build_info', 'The running version, as a label; always 1.', ['version'], (r) => [{ labels: { version: r.report.version }, value: 1 }])
  gauge('sstream_proxy_start_time_seconds', 'When the proxy started, in seconds since the epoch.', [], () => deps.startedAt / 1000)
  counter('sstream_proxy_requests_total', 'HTTP requests answered, by route (file, metadata, keyring, status, metrics, health, fleet, other) and status code.', ['route', 'status'], () =>
    [...deps.traffic.requests].sort(([a], [b]) => a.localeCompare(b)).map(([key, value]) => {
      const [route = '', status = ''] = key.split(' ')
      return { labels: { route, status }, value }
    }),
  )
  counter('sstream_proxy_cache_hits_total', 'File requests answered from the cache.', [], () => deps.traffic.hits)
  counter('sstream_proxy_cache_misses_total', 'File requests that had to be fetched from upstream.', [], () => deps.traffic.misses)
  counter('sstream_proxy_served_bytes_total', 'Bytes sent to clients, files and metadata.', [], () => deps.traffic.servedBytes)
  counter('sstream_proxy_upstream_bytes_total', 'File bytes received from upstream.', [], () => deps.traffic.upstreamBytes)
  counter('sstream_proxy_upstream_transfers_total', 'File bodies fetched from upstream by fills; a transfer resumed with Range counts again.', [], () => deps.traffic.upstreamTransfers)
  counter('sstream_proxy_fleet_peer_fills_total', 'Fills that streamed the file from the replica of the fleet that owned its fill, instead of from upstream.', [], () => deps.traffic.peerFills)
  counter('sstream_proxy_fleet_peer_bytes_total', 'File bytes received from other replicas of the fleet.', [], () => deps.traffic.peerBytes)
  counter('sstream_proxy_fleet_peer_served_bytes_total', 'File bytes sent to other replicas of the fleet following this one\'s fills.', [], () => deps.traffic.peerServedBytes)
  counter('sstream_proxy_fleet_takeovers_total', 'Fills taken over, resuming from upstream, after the replica that owned them stopped renewing its claim.', [], () => deps.traffic.takeovers)
  counter('sstream_proxy_upstream_requests_total', 'Requests sent upstream, metadata and files.', [], (r) => r.upstream.requests)
  counter('sstream_proxy_upstream_errors_total', 'Upstream requests that failed: kind="network" got no complete answer (refused, timed out, cut), kind="http" got a status of 400 or more.', ['kind'], (r) => [
    { labels: { kind: 'network' }, value: r.upstream.errors },
    { labels: { kind: 'http' }, value: r.upstream.httpErrors },
  ])
  registry.registerMetric(deps.client.latency)
  counter('sstream_proxy_verification_failures_total', 'Files from upstream that failed size or sha256 verification and were discarded.', [], () => deps.traffic.verificationFailures)
  counter('sstream_proxy_fill_failures_total', 'Files abandoned after every upstream attempt failed (verification failures are counted apart).', [], () => deps.traffic.upstreamErrors)
  gauge('sstream_proxy_active_fills', 'Files being fetched from upstream now.', [], (r) => r.report.cache.activeFills)
  gauge('sstream_proxy_cache_files', 'Files in the cache.', [], (r) => r.report.cache.files)
  gauge('sstream_proxy_cache_bytes', 'Bytes in the cache.', [], (r) => r.report.cache.bytes)
  gauge('sstream_proxy_store_up', 'Whether the last request to the store (filesystem or S3) got an answer (absent before the first).', [], (r) => (r.report.store.state === 'unknown' ? [] : Number(r.report.store.state === 'ok')))
  counter('sstream_proxy_store_errors_total', 'Requests to the store that failed (unreachable, refused, 5xx); a missing object is not an error.', [], (r) => r.report.store.errors)
  registry.registerMetric(deps.store.requestMetrics.requests)
  registry.registerMetric(deps.store.requestMetrics.duration)
  gauge('sstream_proxy_read_buffer_budget_bytes', 'The read buffer budget of file downloads (limits.readBufferMemory).', [], (r) => r.report.memory.readBufferBudget)
  gauge('sstream_proxy_read_buffer_held_bytes', 'Bytes of the read buffer budget file downloads hold now.', [], (r) => r.report.memory.readBufferHeldBytes)
  gauge('sstream_proxy_read_buffer_allocated_bytes', 'Bytes allocated for read buffers, held and idle; idle memory is handed back after 10 s.', [], (r) => r.report.memory.readBufferAllocatedBytes)
  gauge('sstream_proxy_downloads_waiting_for_buffers', 'File downloads waiting for the read buffer budget.', [], (r) => r.report.memory.downloadsWaiting)
  gauge('sstream_proxy_upstream_up', 'Whether the last metadata check reached upstream (absent before the first check).', mirror, perMirror((m) => (m.upstreamReachable === null ? null : Number(m.upstreamReachable))))
  gauge('sstream_proxy_metadata_updated_timestamp_seconds', 'When the mirror last checked its metadata with upstream successfully.', mirror, perMirror((m) => isoSeconds(m.metadataUpdated)))
  gauge('sstream_proxy_metadata_error', '1 while the last metadata refresh of the mirror failed.', mirror, perMirror((m) => Number(m.metadataError !== null)))
  gauge('sstream_proxy_maas_problems', 'Problems MAAS 3.8 would reject the metadata the mirror serves for (see /status); 0 when MAAS accepts it.', mirror, perMirror((m) => m.maasProblems.length))
  gauge('sstream_proxy_selection_files', 'Files the selection of the mirror names.', mirror, perMirror((m) => m.selection.files))
  gauge('sstream_proxy_selection_bytes', 'Bytes the selection of the mirror names.', mirror, perMirror((m) => m.selection.bytes))
  gauge('sstream_proxy_selection_cached_files', 'Files of the selection that are in the cache.', mirror, perMirror((m) => m.selection.cachedFiles))
  gauge('sstream_proxy_selection_cached_bytes', 'Bytes of the selection that are in the cache.', mirror, perMirror((m) => m.selection.cachedBytes))
  gauge('sstream_proxy_prefetch_running', '1 while a prefetch pass of the mirror runs.', mirror, perMirror((m) => Number(m.prefetch.state === 'running')))
  gauge('sstream_proxy_prefetch_done_files', 'Files the current or last prefetch pass has fetched or found cached.', mirror, perMirror((m) => m.prefetch.filesDone))
  gauge('sstream_proxy_prefetch_planned_files', 'Files the current or last prefetch pass set out to fetch.', mirror, perMirror((m) => m.prefetch.filesTotal))
  gauge('sstream_proxy_prefetch_done_bytes', 'Bytes the current or last prefetch pass has fetched or found cached.', mirror, perMirror((m) => m.prefetch.bytesDone))
  gauge('sstream_proxy_prefetch_planned_bytes', 'Bytes the current or last prefetch pass set out to fetch.', mirror, perMirror((m) => m.prefetch.bytesTotal))
  // A replica of a fleet only: without `fleet` these have no series.
  const fleet = (pick: (fleet: NonNullable<StatusReport['fleet']>) => number | ReadonlyArray<{ labels: Labels; value: number | null }>) => (r: Reading) =>
    r.report.fleet === undefined ? [] : pick(r.report.fleet)
  gauge('sstream_proxy_fleet_replicas', 'Live replicas of the fleet, this one included, as last read from the bucket.', [], fleet((f) => f.replicas.length))
  gauge('sstream_proxy_fleet_replicas_disagreeing', 'Live replicas that sign with another key or have other mirrors than this one (see /status).', [], fleet((f) => f.replicas.filter((replica) => replica.disagrees !== null).length))
  gauge('sstream_proxy_fleet_prefetch_lease_held', '1 while this replica holds the mirror\'s prefetch lease (runs its pass for the fleet).', mirror, fleet((f) =>
    f.leases.flatMap((lease) => (lease.mirror === null ? [] : [{ labels: { mirror: lease.mirror }, value: Number(lease.heldHere) }])),
  ))
  gauge('sstream_proxy_fleet_gc_lease_held', '1 while this replica holds the fleet\'s garbage collection lease.', [], fleet((f) => Number(f.leases.some((lease) => lease.name === 'gc' && lease.heldHere))))
  gauge('sstream_proxy_fleet_fills', 'Files being fetched from upstream fleet-wide (live fill claims in the bucket).', [], fleet((f) => f.fills.length))
  gauge('sstream_proxy_fleet_read_error', '1 while the last read of the fleet\'s records in the bucket failed.', [], fleet((f) => Number(f.error !== null)))
  gauge('sstream_proxy_prefetch_last_success_timestamp_seconds', 'When the last prefetch pass that ended ok finished (absent when none of the last passes did).', mirror, perMirror((m) => lastSuccess(m.prefetch)))

  const scraped = Registry.merge([processMetrics(), registry])
  return {
    async render() {
      // Node's event-loop delay monitor records a stall at its first tick
      // after it; a scrape answered in the same loop turn as the stall ended
      // would miss it. A timer runs after that overdue tick.
      await sleep(1)
      try {
        return await scraped.metrics()
      } finally {
        reading = undefined
      }
    },
    contentType: scraped.contentType,
  }
}

function isoSeconds(iso: string | null): number | null {
  if (iso === null) return null
  const ms = Date.parse(iso)
  return Number.isNaN(ms) ? null : ms / 1000
}

/** The newest pass that ended `ok`, from the history when the prefetcher gives one. */
function lastSuccess(prefetch: PrefetchStatus & { passes?: PassRecord[] }): number | null {
  const ok = prefetch.passes?.find((pass) => pass.result === 'ok')
  return isoSeconds(ok?.finishedAt ?? (prefetch.lastResult === 'ok' ? prefetch.lastFinished : null))
}
