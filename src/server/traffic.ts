/** Running totals of what the proxy served and fetched, for `/status` and `/metrics`. */

export interface Traffic {
  hits: number
  misses: number
  /** Bytes sent to clients (files and metadata). */
  servedBytes: number
  /** Bytes received from upstream for files. */
  upstreamBytes: number
  /** Fills that failed size or sha256 verification. */
  verificationFailures: number
  upstreamErrors: number
  /** Requests by route and status, e.g. `file 200`. */
  requests: Map<string, number>
}

export function createTraffic(): Traffic {
  return { hits: 0, misses: 0, servedBytes: 0, upstreamBytes: 0, verificationFailures: 0, upstreamErrors: 0, requests: new Map() }
}

export function countRequest(traffic: Traffic, route: string, status: number): void {
  const key = `${route} ${status}`
  traffic.requests.set(key, (traffic.requests.get(key) ?? 0) + 1)
}
