/**
 * The replicas' internal endpoint for running fills: `GET /_fleet/fills/<sha256>?from=N`
 * answers the bytes of the file from N, as this replica's running fill
 * writes them (or from the store once it has committed). A replica that
 * follows another's fill reads it here. Requests carry
 * `x-sstream-fleet-auth: <ms since epoch> <MAC>`, the MAC keyed with the fleet
 * secret over the method, the path with its query and the timestamp; a missing
 * or wrong MAC, or one older than a minute, is refused. What is sent is never
 * trusted as verified: the follower checks size and sha256 itself.
 */

import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { fleetMac, fleetMacMatches } from './fleet-secret.js'
import { UpstreamError } from '../upstream/upstream-client.js'
import type { FillResponse } from '../store/fill.js'

/** Reserved in validate-config.ts: no mirror path may take it. */
export const FLEET_ROUTE = '/_fleet'
export const FLEET_FILLS_PATH = `${FLEET_ROUTE}/fills/`
export const FLEET_AUTH_HEADER = 'x-sstream-fleet-auth'

/** How far a request's timestamp may be from this replica's clock. */
const MAX_SKEW_MS = 60_000

const subjectOf = (method: string, path: string, timestamp: string) => `${method} ${path} ${timestamp}`

/** The header that proves a request to another replica comes from the fleet. */
export function signPeerRequest(secret: string, method: string, path: string, now = Date.now()): Record<string, string> {
  const timestamp = String(now)
  return { [FLEET_AUTH_HEADER]: `${timestamp} ${fleetMac(secret, subjectOf(method, path, timestamp))}` }
}

/** Why a request to the internal endpoint is refused, for the log; undefined when it is from the fleet. */
export function peerRequestRefusal(secret: string, method: string, path: string, headers: IncomingHttpHeaders, now = Date.now()): string | undefined {
  const value = headers[FLEET_AUTH_HEADER]
  if (typeof value !== 'string') return `no ${FLEET_AUTH_HEADER} header`
  const match = /^(\d{1,16}) ([0-9a-f]{64})$/.exec(value)
  if (match === null) return `malformed ${FLEET_AUTH_HEADER} header`
  const [, timestamp = '', mac = ''] = match
  if (Math.abs(now - Number(timestamp)) > MAX_SKEW_MS) return `timestamp ${timestamp} more than ${MAX_SKEW_MS / 1000}s from this replica's clock`
  if (!fleetMacMatches(secret, subjectOf(method, path, timestamp), mac)) return 'MAC does not match (another fleet secret?)'
  return undefined
}

export interface OpenPeerFillOptions {
  /** The owner's advertise URL, ending with `/`. */
  advertise: string
  secret: string
  sha256: string
  offset: number
  /** No byte (nor headers) for this long: the owner is taken for gone. */
  idleMs: number
}

/**
 * The owner's bytes of the file from `offset`: resolves with the response
 * once its headers arrive (200 from 0, 206 with Content-Range after),
 * rejects with an `UpstreamError` for anything else (refused, 404, 403).
 */
export function openPeerFill(options: OpenPeerFillOptions): Promise<FillResponse> {
  const path = `${FLEET_FILLS_PATH}${options.sha256}?from=${options.offset}`
  const url = new URL(path.slice(1), options.advertise)
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest
  return new Promise((resolve, reject) => {
    const outgoing = request(url, { method: 'GET', headers: signPeerRequest(options.secret, 'GET', url.pathname + url.search), agent: false }, (response) => {
      const status = response.statusCode ?? 0
      if (status !== 200 && status !== 206) {
        response.resume()
        outgoing.destroy()
        return reject(new UpstreamError(url.href, `the replica that owns the fill answered HTTP ${status}`))
      }
      resolve({ url: url.href, status, headers: response.headers, body: response, from: 'peer' })
    })
    // A replica that stopped answering (frozen, cut off) must not hold the follower for good.
    outgoing.setTimeout(options.idleMs, () => outgoing.destroy(new Error(`no byte for ${options.idleMs} ms`)))
    outgoing.on('error', (error: NodeJS.ErrnoException) => reject(new UpstreamError(url.href, error.code ?? error.message)))
    outgoing.end()
  })
}
