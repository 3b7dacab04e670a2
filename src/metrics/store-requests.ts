/**
 * The store's request counts and latency. The store, kept across
 * configuration reloads, reports each request it sends through the observer
 * (an S3 store; the filesystem store makes system calls, not requests); each
 * app registers the two metrics on its `/metrics` registry. They are on no
 * registry of their own (prom-client's default would be the global one).
 */

import { Counter, Histogram } from 'prom-client'
import type { StoreRequestObserver } from '../store/object-store.js'

/** Seconds, from a HEAD on a store next door to a 16 MiB part over a slow link. */
const LATENCY_BOUNDS_SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

export interface StoreRequestMetrics {
  observe: StoreRequestObserver
  requests: Counter
  duration: Histogram
}

export function createStoreRequestMetrics(): StoreRequestMetrics {
  const requests = new Counter({
    name: 'sstream_proxy_store_requests_total',
    help: 'Requests sent to the S3 store, by operation (GetObject, PutObject, UploadPart, ...) and outcome: ok, not_found, refused (another 4xx), error (5xx or no answer).',
    labelNames: ['operation', 'outcome'],
    registers: [],
  })
  const duration = new Histogram({
    name: 'sstream_proxy_store_request_duration_seconds',
    help: 'Seconds from sending a request to the S3 store to its response headers (a GetObject\'s body streams after), by operation.',
    labelNames: ['operation'],
    buckets: LATENCY_BOUNDS_SECONDS,
    registers: [],
  })
  return {
    observe(operation, outcome, seconds) {
      requests.inc({ operation, outcome })
      duration.observe({ operation }, seconds)
    },
    requests,
    duration,
  }
}
