/** Running totals of what the proxy served and fetched, for `/status` and `/metrics`. */

export interface Traffic {
  hits: number
  misses: number
  /** Bytes sent to clients (files and metadata). */
  servedBytes: number
  /** Bytes received from upstream for files. */
  upstreamBytes: number
  /** File bodies opened upstream by fills (a resumed transfer counts again). */
  upstreamTransfers: number
  /** Fleet: fills that followed another replica's, and the bytes received from it. */
  peerFills: number
  peerBytes: number
  /** Fleet: fills taken over from a replica whose claim expired. */
  takeovers: number
  /** Fleet: bytes sent to other replicas following this one's fills. */
  peerServedBytes: number
  /** Fills that failed size or sha256 verification. */
  verificationFailures: number
  upstreamErrors: number
  /** Requests by route and status, e.g. `file 200`. */
  requests: Map<string, number>
}

export function createTraffic(): Traffic {
  return { hits: 0, misses: 0, servedBytes: 0, upstreamBytes: 0, upstreamTransfers: 0, peerFills: 0, peerBytes: 0, takeovers: 0, peerServedBytes: 0, verificationFailures: 0, upstreamErrors: 0, requests: new Map() }
}

export function countRequest(traffic: Traffic, route: string, status: number): void {
  const key = `${route} ${status}`
  traffic.requests.set(key, (traffic.requests.get(key) ?? 0) + 1)
}
