/**
 * The upstream latency histogram. The upstream client, kept across
 * configuration reloads, observes into it as answers arrive; each app
 * registers it on its `/metrics` registry. It is on no registry of its own
 * (prom-client's default would be the global one).
 */

import { Histogram } from 'prom-client'

/** Seconds, from a fast loopback answer to a slow mirror across the world. */
const LATENCY_BOUNDS_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

export function createUpstreamLatencyHistogram(): Histogram {
  return new Histogram({
    name: 'sstream_proxy_upstream_request_duration_seconds',
    help: 'Seconds from sending an upstream request to its response headers.',
    buckets: LATENCY_BOUNDS_SECONDS,
    registers: [],
  })
}
