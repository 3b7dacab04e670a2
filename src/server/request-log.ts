/** The one log line and the counters of each answered request, wherever it was answered. */

import type { Logger } from '../log/logger.js'
import { countRequest, type Traffic } from './traffic.js'

export interface RequestRecord {
  route: string
  method: string
  path: string
  status: number
  bytes: number | undefined
  cache: 'hit' | 'miss' | undefined
  ms: number
  /** True when the response did not complete (the client left, or the transfer was broken). */
  aborted: boolean
}

export function recordRequest(traffic: Traffic, log: Logger, record: RequestRecord): void {
  countRequest(traffic, record.route, record.status)
  // Each load balancer checks every replica every few seconds: counted, but a
  // line each would drown the log.
  if (record.route === 'health') return
  log.info('request', {
    method: record.method,
    path: record.path,
    status: record.status,
    bytes: record.bytes,
    cache: record.cache,
    ms: record.ms,
    aborted: record.aborted ? true : undefined,
  })
}
