/**
 * HTTP(S) client for upstream SimpleStreams servers. It bounds the number of
 * parallel upstream connections, gives up on a server that does not answer
 * (`connectTimeoutMs` until the response headers) or stops sending
 * (`idleTimeoutMs` between body chunks), retries metadata with backoff, and
 * names the URL in every error, its credentials redacted. A metadata document
 * is read under a size cap and an overall deadline, so a hostile upstream can
 * neither fill memory nor hold a refresh forever. Requests go out through a
 * `Transport` (direct or through a proxy, with the CAs of the mirror asking)
 * and follow up to five redirects, never from https down to http, and never
 * carrying credentials to another origin than the one they were given for.
 */

import http from 'node:http'
import https from 'node:https'
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Histogram } from 'prom-client'
import { createUpstreamLatencyHistogram } from '../metrics/upstream-latency.js'
import { redactUrl } from './redact-url.js'
import { createTransport, ProxySettingError, type Route, type Transport, type TransportOptions } from './outbound-transport.js'
import { createSemaphore } from './semaphore.js'

export interface UpstreamClientOptions {
  /** Upstream connections open at once; further requests wait for a free one. */
  maxConnections?: number
  /** Milliseconds from sending the request to receiving the response headers. */
  connectTimeoutMs?: number
  /** Milliseconds without a byte of body before the transfer is abandoned. */
  idleTimeoutMs?: number
  userAgent?: string
  /** Bytes a metadata document may have; the transfer is cut as soon as it passes them. Default 64 MiB. */
  metadataMaxBytes?: number
  /** Milliseconds a metadata document fetch may take in all, retries included. Default 2 minutes. */
  metadataTimeoutMs?: number
  /** Hears of each request answered after redirects: where it was asked, where it was answered (both redacted). */
  onRedirect?: (from: string, to: string, redirects: number) => void
}

export class UpstreamError extends Error {
  override name = 'UpstreamError'
  /** The URL the error is about, credentials redacted. */
  readonly url: string
  constructor(
    url: string,
    message: string,
    /** The HTTP status when upstream answered, undefined for network failures. */
    readonly status?: number,
  ) {
    const shown = redactUrl(url)
    super(`${shown}: ${message}`)
    this.url = shown
  }

  /** Network failures and 5xx may pass; other statuses will not change on retry. */
  get retryable(): boolean {
    return this.status === undefined || this.status >= 500 || this.status === 429
  }
}

export interface UpstreamResponse {
  /** Where the answer came from, after redirects; credentials redacted: for messages. */
  url: string
  /** The same URL with the credentials it was requested with: for a resume, and never for display. */
  location: string
  status: number
  headers: IncomingHttpHeaders
  /** The body; destroy it when abandoning the transfer so the connection is freed. */
  body: IncomingMessage
}

export interface RequestOptions {
  method?: 'GET' | 'HEAD'
  headers?: Record<string, string>
  /** Abandons the request (or its body) with the signal's reason. */
  signal?: AbortSignal
  /** The route out (proxy, CAs), from `transport()`; direct with Node's roots when omitted. */
  transport?: Transport
}

/** What a mirror says about its route out: `TransportOptions` but for the connection bound, which the client sets. */
export type TransportSettings = Omit<TransportOptions, 'maxConnections'>

/** Redirects followed for one request: enough for a mirror network and a CDN, few enough to end a loop quickly. */
export const MAX_REDIRECTS = 5
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308])

export type TextResult =
  | { status: 200; text: string; etag?: string; lastModified?: string }
  | { status: 304 }

export interface FetchTextOptions {
  etag?: string
  lastModified?: string
  transport?: Transport
  /** Attempts in all, with exponential backoff between them. */
  attempts?: number
}

export const DEFAULT_METADATA_MAX_BYTES = 64 * 1024 * 1024
export const DEFAULT_METADATA_TIMEOUT_MS = 120_000

export interface UpstreamClientStats {
  requests: number
  /** Requests that got no complete answer: network failures, timeouts, broken bodies. */
  errors: number
  /** Answers with an HTTP status of 400 or more. */
  httpErrors: number
  /** Requests waiting for a connection slot. */
  waiting: number
  active: number
}

export interface UpstreamClient {
  request(url: string, options?: RequestOptions): Promise<UpstreamResponse>
  /** A metadata document, conditionally when validators are given, retried on transient failure. */
  fetchText(url: string, options?: FetchTextOptions): Promise<TextResult>
  /** The transport for these settings, shared by every source that names the same ones; closed with the client. */
  transport(settings: TransportSettings): Transport
  stats(): UpstreamClientStats
  /** Seconds from sending a request to its response headers, for answered requests. */
  readonly latency: Histogram
  close(): void
}

export function createUpstreamClient(options: UpstreamClientOptions = {}): UpstreamClient {
  const maxConnections = options.maxConnections ?? 16
  const connectTimeoutMs = options.connectTimeoutMs ?? 15_000
  const idleTimeoutMs = options.idleTimeoutMs ?? 10_000
  const userAgent = options.userAgent ?? 'sstream-proxy'
  const metadataMaxBytes = options.metadataMaxBytes ?? DEFAULT_METADATA_MAX_BYTES
  const metadataTimeoutMs = options.metadataTimeoutMs ?? DEFAULT_METADATA_TIMEOUT_MS
  // Kept for the client's life: a reload that changes a proxy or CA gets new
  // ones, while transfers on the old ones finish undisturbed.
  const transports = new Map<string, Transport>()
  const transportFor = (settings: TransportSettings): Transport => {
    const key = JSON.stringify([settings.proxy ?? null, settings.ca ?? null])
    let found = transports.get(key)
    if (found === undefined) {
      found = createTransport({ ...settings, maxConnections })
      transports.set(key, found)
    }
    return found
  }
  const defaultTransport = transportFor({})
  const slots = createSemaphore(maxConnections)
  let requests = 0
  let errors = 0
  let httpErrors = 0
  const latency = createUpstreamLatencyHistogram()

  async function request(url: string, requestOptions: RequestOptions = {}): Promise<UpstreamResponse> {
    const asked = new URL(url)
    let target = asked
    for (let redirects = 0; ; redirects++) {
      const response = await requestOnce(target, requestOptions)
      const location = response.headers.location
      if (!REDIRECT_STATUSES.has(response.status) || location === undefined) {
        if (redirects > 0) options.onRedirect?.(redactUrl(url), response.url, redirects)
        return response
      }
      response.body.resume()
      if (redirects === MAX_REDIRECTS) {
        throw new UpstreamError(url, `more than ${MAX_REDIRECTS} redirects (the last one by ${response.url})`, response.status)
      }
      target = redirectTarget(url, asked, target, location, response.status)
    }
  }

  async function requestOnce(target: URL, requestOptions: RequestOptions): Promise<UpstreamResponse> {
    const url = target.href
    const transport = target.protocol === 'https:' ? https : target.protocol === 'http:' ? http : undefined
    if (transport === undefined) throw new UpstreamError(url, `unsupported protocol ${target.protocol}`)
    let route: Route
    try {
      route = (requestOptions.transport ?? defaultTransport).route(target)
    } catch (error) {
      if (error instanceof ProxySettingError) throw new UpstreamError(url, error.message)
      throw error
    }
    const through = route.proxy === undefined ? '' : ` (through proxy ${route.proxy})`
    const { signal } = requestOptions
    signal?.throwIfAborted()
    const release = await slots.acquire()
    requests++
    const sent = performance.now()
    try {
      const response = await new Promise<IncomingMessage>((resolve, reject) => {
        const req = transport.request(target, {
          method: requestOptions.method ?? 'GET',
          agent: route.agent,
          ...route.tls,
          headers: { 'user-agent': userAgent, ...requestOptions.headers },
        })
        const timer = setTimeout(() => {
          req.destroy(new UpstreamError(url, `no response within ${connectTimeoutMs / 1000}s${through}`))
        }, connectTimeoutMs)
        const onAbort = () => req.destroy(signal?.reason as Error)
        signal?.addEventListener('abort', onAbort, { once: true })
        if (signal?.aborted === true) onAbort()
        req.once('close', () => signal?.removeEventListener('abort', onAbort))
        req.once('response', (res) => {
          clearTimeout(timer)
          latency.observe((performance.now() - sent) / 1000)
          if ((res.statusCode ?? 0) >= 400) httpErrors++
          resolve(res)
        })
        req.once('error', (error) => {
          clearTimeout(timer)
          reject(error instanceof UpstreamError ? error : new UpstreamError(url, `${describeNetworkError(error)}${through}`))
        })
        req.end()
      })
      if (response.statusCode === 407 && route.proxy !== undefined) {
        // The proxy's answer, not the upstream's: name the proxy, never its password.
        response.resume()
        throw new UpstreamError(url, `proxy ${route.proxy} answered 407 Proxy Authentication Required (check the user and password in the proxy URL)`, 407)
      }
      // Bound every silence in the body: a stalled upstream must fail the
      // transfer, not hold its clients (MAAS gives up after 10 s) forever.
      const socket = response.socket
      const onIdle = () => {
        // Bytes waiting unread: the reader holds the body back (the rate
        // budget, a slow disk), so the quiet is ours, not upstream's. Look
        // again one period later.
        if (response.readableLength > 0) return void socket.setTimeout(idleTimeoutMs)
        response.destroy(new UpstreamError(url, `no data for ${idleTimeoutMs / 1000}s`))
      }
      socket.setTimeout(idleTimeoutMs)
      socket.on('timeout', onIdle)
      const onAbort = () => response.destroy(signal?.reason as Error)
      signal?.addEventListener('abort', onAbort, { once: true })
      response.once('close', () => {
        // The socket goes back to the keep-alive pool: leave no listener of this response on it.
        socket.setTimeout(0)
        socket.off('timeout', onIdle)
        signal?.removeEventListener('abort', onAbort)
        release()
      })
      response.once('error', () => errors++)
      return { url: redactUrl(url), location: url, status: response.statusCode ?? 0, headers: response.headers, body: response }
    } catch (error) {
      errors++
      release()
      throw error
    }
  }

  async function fetchTextOnce(url: string, options: FetchTextOptions, signal: AbortSignal): Promise<TextResult> {
    const headers: Record<string, string> = {}
    if (options.etag !== undefined) headers['if-none-match'] = options.etag
    if (options.lastModified !== undefined) headers['if-modified-since'] = options.lastModified
    const response = await request(url, { headers, signal, transport: options.transport })
    if (response.status === 304) {
      response.body.resume()
      return { status: 304 }
    }
    if (response.status !== 200) {
      response.body.resume()
      throw new UpstreamError(url, `HTTP ${response.status}`, response.status)
    }
    const declared = Number(response.headers['content-length'])
    // Upstream answered: a document over the cap is its content, not a failure to retry (status 200).
    const tooLarge = (what: string) => new UpstreamError(url, `${what}, over the metadata limit of ${metadataMaxBytes} bytes (limits.metadataMaxBytes)`, 200)
    if (Number.isFinite(declared) && declared > metadataMaxBytes) {
      response.body.destroy()
      throw tooLarge(`Content-Length ${declared}`)
    }
    // Decoded chunk by chunk as it arrives: joining and decoding a document of
    // tens of MB at the end held the event loop for tens of ms. The BOM is kept,
    // as Buffer's own decoding does.
    const decoder = new TextDecoder('utf-8', { ignoreBOM: true })
    let text = ''
    let received = 0
    try {
      for await (const chunk of response.body as AsyncIterable<Buffer>) {
        received += chunk.length
        // Cut at once: the rest is never read, so memory stays bounded by the cap.
        if (received > metadataMaxBytes) {
          response.body.destroy()
          throw tooLarge(`transfer cut after ${received} bytes`)
        }
        text += decoder.decode(chunk, { stream: true })
      }
      text += decoder.decode()
    } catch (error) {
      throw error instanceof UpstreamError ? error : new UpstreamError(url, describeNetworkError(error as Error))
    }
    if (Number.isFinite(declared) && received !== declared) {
      throw new UpstreamError(url, `body of ${received} bytes, Content-Length said ${declared}`)
    }
    const result: TextResult = { status: 200, text }
    const etag = response.headers.etag
    const lastModified = response.headers['last-modified']
    if (etag !== undefined) result.etag = etag
    if (lastModified !== undefined) result.lastModified = lastModified
    return result
  }

  return {
    request,
    async fetchText(url, fetchOptions = {}) {
      const attempts = fetchOptions.attempts ?? 3
      // One deadline for the whole fetch: the idle timeout alone lets a trickle
      // (a byte every few seconds) hold a refresh for hours.
      const deadline = new AbortController()
      const timer = setTimeout(() => deadline.abort(new UpstreamError(url, `metadata document not received within ${metadataTimeoutMs / 1000}s (limits.metadataTimeout)`)), metadataTimeoutMs)
      try {
        for (let attempt = 1; ; attempt++) {
          try {
            return await fetchTextOnce(url, fetchOptions, deadline.signal)
          } catch (error) {
            if (deadline.signal.aborted) throw deadline.signal.reason
            if (attempt >= attempts || !(error instanceof UpstreamError) || !error.retryable) throw error
            await sleep(backoffMs(attempt), undefined, { signal: deadline.signal }).catch(() => undefined)
            if (deadline.signal.aborted) throw deadline.signal.reason
          }
        }
      } finally {
        clearTimeout(timer)
      }
    },
    latency,
    transport: transportFor,
    stats() {
      return { requests, errors, httpErrors, waiting: slots.waiting(), active: slots.active() }
    },
    close() {
      for (const each of transports.values()) each.destroy()
    },
  }
}

/** Exponential backoff with full jitter: 0.5 s, 1 s, 2 s ... capped at 30 s, each randomised downwards. */
export function backoffMs(attempt: number, baseMs = 500): number {
  const ceiling = Math.min(30_000, baseMs * 2 ** (attempt - 1))
  return ceiling / 2 + Math.random() * (ceiling / 2)
}

/**
 * Where a redirect leads: resolved against the URL that answered, only http
 * or https, never from https down to http. Credentials of the URL first asked
 * go along only to that URL's origin, as curl and browsers do: a mirror
 * network redirecting to a CDN must not hand it the mirror's password.
 */
function redirectTarget(url: string, asked: URL, from: URL, location: string, status: number): URL {
  let next: URL
  try {
    next = new URL(location, from)
  } catch {
    throw new UpstreamError(url, `redirect (HTTP ${status}) to an invalid Location ${JSON.stringify(redactUrl(location))}`, status)
  }
  const shown = redactUrl(next.href)
  if (next.protocol !== 'http:' && next.protocol !== 'https:') throw new UpstreamError(url, `redirect to ${shown} refused: only http and https are followed`, status)
  if (from.protocol === 'https:' && next.protocol === 'http:') throw new UpstreamError(url, `redirect from https down to http refused (${shown})`, status)
  next.hash = ''
  next.username = ''
  next.password = ''
  if (next.origin === asked.origin) {
    next.username = asked.username
    next.password = asked.password
  }
  return next
}

/** Node's certificate error codes in the words an operator looks for. */
const TLS_REASONS: Record<string, string> = {
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'unknown CA',
  UNABLE_TO_GET_ISSUER_CERT: 'unknown CA',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'unknown CA',
  SELF_SIGNED_CERT_IN_CHAIN: 'unknown CA (self-signed certificate in the chain)',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'unknown CA (self-signed certificate)',
  ERR_TLS_CERT_ALTNAME_INVALID: 'certificate name mismatch',
  CERT_HAS_EXPIRED: 'certificate expired',
  CERT_NOT_YET_VALID: 'certificate not yet valid',
  CERT_REVOKED: 'certificate revoked',
  CERT_UNTRUSTED: 'certificate not trusted',
  CERT_SIGNATURE_FAILURE: 'certificate signature invalid',
}

function describeNetworkError(error: Error): string {
  const code = (error as NodeJS.ErrnoException).code
  if (code === undefined) return error.message
  const reason = TLS_REASONS[code]
  if (reason === undefined) return `${code} (${error.message})`
  const hint = reason.startsWith('unknown CA') ? '; trust the CA with the "ca" key or NODE_EXTRA_CA_CERTS' : ''
  return `TLS: ${reason} (${code}: ${error.message})${hint}`
}
