/**
 * HTTP(S) client for upstream SimpleStreams servers. It bounds the number of
 * parallel upstream connections, gives up on a server that does not answer
 * (`connectTimeoutMs` until the response headers) or stops sending
 * (`idleTimeoutMs` between body chunks), retries metadata with backoff, and
 * names the URL in every error.
 */

import http from 'node:http'
import https from 'node:https'
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { text as readText } from 'node:stream/consumers'
import { createHistogram, LATENCY_BOUNDS_SECONDS, type HistogramSnapshot } from '../metrics/histogram.js'
import { createSemaphore } from './semaphore.js'

export interface UpstreamClientOptions {
  /** Upstream connections open at once; further requests wait for a free one. */
  maxConnections?: number
  /** Milliseconds from sending the request to receiving the response headers. */
  connectTimeoutMs?: number
  /** Milliseconds without a byte of body before the transfer is abandoned. */
  idleTimeoutMs?: number
  userAgent?: string
}

export class UpstreamError extends Error {
  override name = 'UpstreamError'
  constructor(
    readonly url: string,
    message: string,
    /** The HTTP status when upstream answered, undefined for network failures. */
    readonly status?: number,
  ) {
    super(`${url}: ${message}`)
  }

  /** Network failures and 5xx may pass; other statuses will not change on retry. */
  get retryable(): boolean {
    return this.status === undefined || this.status >= 500 || this.status === 429
  }
}

export interface UpstreamResponse {
  url: string
  status: number
  headers: IncomingHttpHeaders
  /** The body; destroy it when abandoning the transfer so the connection is freed. */
  body: IncomingMessage
}

export interface RequestOptions {
  method?: 'GET' | 'HEAD'
  headers?: Record<string, string>
}

export type TextResult =
  | { status: 200; text: string; etag?: string; lastModified?: string }
  | { status: 304 }

export interface FetchTextOptions {
  etag?: string
  lastModified?: string
  /** Attempts in all, with exponential backoff between them. */
  attempts?: number
}

export interface UpstreamClientStats {
  requests: number
  /** Requests that got no complete answer: network failures, timeouts, broken bodies. */
  errors: number
  /** Answers with an HTTP status of 400 or more. */
  httpErrors: number
  /** Seconds from sending a request to its response headers, for answered requests. */
  latency: HistogramSnapshot
  /** Requests waiting for a connection slot. */
  waiting: number
  active: number
}

export interface UpstreamClient {
  request(url: string, options?: RequestOptions): Promise<UpstreamResponse>
  /** A metadata document, conditionally when validators are given, retried on transient failure. */
  fetchText(url: string, options?: FetchTextOptions): Promise<TextResult>
  stats(): UpstreamClientStats
  close(): void
}

export function createUpstreamClient(options: UpstreamClientOptions = {}): UpstreamClient {
  const maxConnections = options.maxConnections ?? 16
  const connectTimeoutMs = options.connectTimeoutMs ?? 15_000
  const idleTimeoutMs = options.idleTimeoutMs ?? 10_000
  const userAgent = options.userAgent ?? 'sstream-proxy'
  const agents = {
    'http:': new http.Agent({ keepAlive: true, maxSockets: maxConnections }),
    'https:': new https.Agent({ keepAlive: true, maxSockets: maxConnections }),
  }
  const slots = createSemaphore(maxConnections)
  let requests = 0
  let errors = 0
  let httpErrors = 0
  const latency = createHistogram(LATENCY_BOUNDS_SECONDS)

  async function request(url: string, requestOptions: RequestOptions = {}): Promise<UpstreamResponse> {
    const target = new URL(url)
    const transport = target.protocol === 'https:' ? https : target.protocol === 'http:' ? http : undefined
    if (transport === undefined) throw new UpstreamError(url, `unsupported protocol ${target.protocol}`)
    const release = await slots.acquire()
    requests++
    const sent = performance.now()
    try {
      const response = await new Promise<IncomingMessage>((resolve, reject) => {
        const req = transport.request(target, {
          method: requestOptions.method ?? 'GET',
          agent: agents[target.protocol as 'http:' | 'https:'],
          headers: { 'user-agent': userAgent, ...requestOptions.headers },
        })
        const timer = setTimeout(() => {
          req.destroy(new UpstreamError(url, `no response within ${connectTimeoutMs / 1000}s`))
        }, connectTimeoutMs)
        req.once('response', (res) => {
          clearTimeout(timer)
          latency.observe((performance.now() - sent) / 1000)
          if ((res.statusCode ?? 0) >= 400) httpErrors++
          resolve(res)
        })
        req.once('error', (error) => {
          clearTimeout(timer)
          reject(error instanceof UpstreamError ? error : new UpstreamError(url, describeNetworkError(error)))
        })
        req.end()
      })
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
      response.once('close', () => {
        // The socket goes back to the keep-alive pool: leave no listener of this response on it.
        socket.setTimeout(0)
        socket.off('timeout', onIdle)
        release()
      })
      response.once('error', () => errors++)
      return { url, status: response.statusCode ?? 0, headers: response.headers, body: response }
    } catch (error) {
      errors++
      release()
      throw error
    }
  }

  async function fetchTextOnce(url: string, options: FetchTextOptions): Promise<TextResult> {
    const headers: Record<string, string> = {}
    if (options.etag !== undefined) headers['if-none-match'] = options.etag
    if (options.lastModified !== undefined) headers['if-modified-since'] = options.lastModified
    const response = await request(url, { headers })
    if (response.status === 304) {
      response.body.resume()
      return { status: 304 }
    }
    if (response.status !== 200) {
      response.body.resume()
      throw new UpstreamError(url, `HTTP ${response.status}`, response.status)
    }
    let text: string
    try {
      text = await readText(response.body)
    } catch (error) {
      throw error instanceof UpstreamError ? error : new UpstreamError(url, describeNetworkError(error as Error))
    }
    const declared = Number(response.headers['content-length'])
    if (Number.isFinite(declared) && Buffer.byteLength(text) !== declared) {
      throw new UpstreamError(url, `body of ${Buffer.byteLength(text)} bytes, Content-Length said ${declared}`)
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
      for (let attempt = 1; ; attempt++) {
        try {
          return await fetchTextOnce(url, fetchOptions)
        } catch (error) {
          if (attempt >= attempts || !(error instanceof UpstreamError) || !error.retryable) throw error
          await sleep(backoffMs(attempt))
        }
      }
    },
    stats() {
      return { requests, errors, httpErrors, latency: latency.snapshot(), waiting: slots.waiting(), active: slots.active() }
    },
    close() {
      agents['http:'].destroy()
      agents['https:'].destroy()
    },
  }
}

/** Exponential backoff with full jitter: 0.5 s, 1 s, 2 s ... capped at 30 s, each randomised downwards. */
export function backoffMs(attempt: number, baseMs = 500): number {
  const ceiling = Math.min(30_000, baseMs * 2 ** (attempt - 1))
  return ceiling / 2 + Math.random() * (ceiling / 2)
}

function describeNetworkError(error: Error): string {
  const code = (error as NodeJS.ErrnoException).code
  return code !== undefined ? `${code} (${error.message})` : error.message
}
