/**
 * What `/metrics` exposes: the proxy's traffic, the upstream client's counts
 * and latency, and per mirror the figures of `/status`, as Prometheus metric
 * families. Everything is read at scrape time from the same sources as
 * `/status`, so the two never disagree.
 */

import type { PassRecord } from '../prefetch/pass-history.js'
import { buildStatusReport, type PrefetchStatus, type StatusDeps } from '../server/status-report.js'
import type { UpstreamClient } from '../upstream/upstream-client.js'
import { encodeExposition, type MetricFamily, type Sample } from './exposition.js'

export interface MetricsDeps extends StatusDeps {
  client: Pick<UpstreamClient, 'stats'>
}

/** The `/metrics` body. */
export function renderMetrics(deps: MetricsDeps): string {
  return encodeExposition(proxyMetrics(deps))
}

export function proxyMetrics(deps: MetricsDeps): MetricFamily[] {
  const { traffic } = deps
  const report = buildStatusReport(deps)
  const upstream = deps.client.stats()
  const perMirror = (pick: (mirror: (typeof report.mirrors)[number]) => number | null): Sample[] =>
    report.mirrors.flatMap((mirror) => {
      const value = pick(mirror)
      return value === null ? [] : [{ labels: { mirror: mirror.name }, value }]
    })
  const counter = (name: string, help: string, samples: Sample[] | number): MetricFamily => ({
    type: 'counter',
    name,
    help,
    samples: typeof samples === 'number' ? [{ value: samples }] : samples,
  })
  const gauge = (name: string, help: string, samples: Sample[] | number): MetricFamily => ({
    type: 'gauge',
    name,
    help,
    samples: typeof samples === 'number' ? [{ value: samples }] : samples,
  })
  const requests = [...traffic.requests].sort(([a], [b]) => a.localeCompare(b)).map(([key, value]) => {
    const [route = '', status = ''] = key.split(' ')
    return { labels: { route, status }, value }
  })

  const memory = process.memoryUsage()

  return [
    gauge('process_resident_memory_bytes', 'Resident memory of the proxy process.', memory.rss),
    gauge('nodejs_heap_size_used_bytes', 'JavaScript heap in use.', memory.heapUsed),
    gauge('nodejs_heap_size_total_bytes', 'JavaScript heap reserved.', memory.heapTotal),
    gauge('nodejs_external_memory_bytes', 'Memory of buffers and other objects outside the JavaScript heap.', memory.external),
    gauge('sstream_proxy_build_info', 'The running version, as a label; always 1.', [{ labels: { version: report.version }, value: 1 }]),
    gauge('sstream_proxy_start_time_seconds', 'When the proxy started, in seconds since the epoch.', deps.startedAt / 1000),
    counter('sstream_proxy_requests_total', 'HTTP requests answered, by route (file, metadata, keyring, status, metrics, other) and status code.', requests),
    counter('sstream_proxy_cache_hits_total', 'File requests answered from the cache.', traffic.hits),
    counter('sstream_proxy_cache_misses_total', 'File requests that had to be fetched from upstream.', traffic.misses),
    counter('sstream_proxy_served_bytes_total', 'Bytes sent to clients, files and metadata.', traffic.servedBytes),
    counter('sstream_proxy_upstream_bytes_total', 'File bytes received from upstream.', traffic.upstreamBytes),
    counter('sstream_proxy_upstream_requests_total', 'Requests sent upstream, metadata and files.', upstream.requests),
    counter('sstream_proxy_upstream_errors_total', 'Upstream requests that failed: kind="network" got no complete answer (refused, timed out, cut), kind="http" got a status of 400 or more.', [
      { labels: { kind: 'network' }, value: upstream.errors },
      { labels: { kind: 'http' }, value: upstream.httpErrors },
    ]),
    {
      type: 'histogram',
      name: 'sstream_proxy_upstream_request_duration_seconds',
      help: 'Seconds from sending an upstream request to its response headers.',
      series: [{ histogram: upstream.latency }],
    },
    counter('sstream_proxy_verification_failures_total', 'Files from upstream that failed size or sha256 verification and were discarded.', traffic.verificationFailures),
    counter('sstream_proxy_fill_failures_total', 'Files abandoned after every upstream attempt failed (verification failures are counted apart).', traffic.upstreamErrors),
    gauge('sstream_proxy_active_fills', 'Files being fetched from upstream now.', report.cache.activeFills),
    gauge('sstream_proxy_cache_files', 'Files in the cache.', report.cache.files),
    gauge('sstream_proxy_cache_bytes', 'Bytes in the cache.', report.cache.bytes),
    gauge('sstream_proxy_store_up', 'Whether the last request to the store (filesystem or S3) got an answer (absent before the first).', report.store.state === 'unknown' ? [] : Number(report.store.state === 'ok')),
    counter('sstream_proxy_store_errors_total', 'Requests to the store that failed (unreachable, refused, 5xx); a missing object is not an error.', report.store.errors),
    gauge('sstream_proxy_upstream_up', 'Whether the last metadata check reached upstream (absent before the first check).', perMirror((m) => (m.upstreamReachable === null ? null : Number(m.upstreamReachable)))),
    gauge('sstream_proxy_metadata_updated_timestamp_seconds', 'When the mirror last checked its metadata with upstream successfully.', perMirror((m) => isoSeconds(m.metadataUpdated))),
    gauge('sstream_proxy_metadata_error', '1 while the last metadata refresh of the mirror failed.', perMirror((m) => Number(m.metadataError !== null))),
    gauge('sstream_proxy_selection_files', 'Files the selection of the mirror names.', perMirror((m) => m.selection.files)),
    gauge('sstream_proxy_selection_bytes', 'Bytes the selection of the mirror names.', perMirror((m) => m.selection.bytes)),
    gauge('sstream_proxy_selection_cached_files', 'Files of the selection that are in the cache.', perMirror((m) => m.selection.cachedFiles)),
    gauge('sstream_proxy_selection_cached_bytes', 'Bytes of the selection that are in the cache.', perMirror((m) => m.selection.cachedBytes)),
    gauge('sstream_proxy_prefetch_running', '1 while a prefetch pass of the mirror runs.', perMirror((m) => Number(m.prefetch.state === 'running'))),
    gauge('sstream_proxy_prefetch_done_files', 'Files the current or last prefetch pass has fetched or found cached.', perMirror((m) => m.prefetch.filesDone)),
    gauge('sstream_proxy_prefetch_planned_files', 'Files the current or last prefetch pass set out to fetch.', perMirror((m) => m.prefetch.filesTotal)),
    gauge('sstream_proxy_prefetch_done_bytes', 'Bytes the current or last prefetch pass has fetched or found cached.', perMirror((m) => m.prefetch.bytesDone)),
    gauge('sstream_proxy_prefetch_planned_bytes', 'Bytes the current or last prefetch pass set out to fetch.', perMirror((m) => m.prefetch.bytesTotal)),
    gauge('sstream_proxy_prefetch_last_success_timestamp_seconds', 'When the last prefetch pass that ended ok finished (absent when none of the last passes did).', perMirror((m) => lastSuccess(m.prefetch))),
  ]
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
