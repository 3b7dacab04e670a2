/**
 * The HTTP interface of product.md as a hono app: mirrors under their paths,
 * the proxy's key, `/status` (JSON, or HTML for browsers), `/metrics` and
 * `/health`.
 * `createApp` only wires what it is given, so tests drive it with
 * `app.request(...)` and the composition root serves it. Under
 * @hono/node-server, file bodies are written straight into Node's response
 * rather than through web streams; exact metadata paths are answered even
 * before the app (metadata-fast-path.ts).
 */

import { Hono, type Context } from 'hono'
import type { HttpBindings } from '@hono/node-server'
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response'
import { randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import type { Logger } from '../log/logger.js'
import { createProxyMetrics } from '../metrics/proxy-metrics.js'
import type { Mirror } from '../mirror/mirror.js'
import type { ServedDocument } from '../mirror/publication.js'
import type { SigningKey } from '../streams/signing-key.js'
import type { Store } from '../store/store.js'
import { VerificationError } from '../store/fill.js'
import type { UpstreamClient } from '../upstream/upstream-client.js'
import { answerFile, RETRY_AFTER_SECONDS, type FileAnswer } from './file-response.js'
import type { BufferPool } from '../store/buffer-pool.js'
import type { SharedChunks } from '../store/shared-chunks.js'
import { rangeStream, sendRange } from '../store/range-source.js'
import { rawRequestPath, resolveRequestPath } from './request-path.js'
import { buildStatusReport, type StatusDeps } from './status-report.js'
import { prefersHtml, statusPage } from './status-page.js'
import type { Traffic } from './traffic.js'
import { recordRequest } from './request-log.js'
import { matchesEtag } from './etag.js'
import { writeDocument } from './metadata-fast-path.js'
import { connectionClosed, mayWrite } from './connection-pipeline.js'
import type { Replica } from '../fleet/replica.js'
import { FLEET_FILLS_PATH, peerRequestRefusal } from '../fleet/peer-fill.js'
import { openPeerRange } from '../fleet/peer-range.js'

export interface AppDeps {
  version: string
  startedAt: number
  /** When the configuration in force was loaded, for /status. */
  configLoaded?: number
  mirrors: readonly Mirror[]
  store: Store
  client: UpstreamClient
  signingKey: SigningKey
  traffic: Traffic
  log: Logger
  prefetchStatus?: StatusDeps['prefetchStatus']
  bandwidth?: StatusDeps['bandwidth']
  /** The read buffers every file download shares, under `limits.readBufferMemory`. */
  readBuffers: BufferPool
  fleet?: StatusDeps['fleet']
  /** Chunks of stored files that their downloads share, from the same budget. */
  sharedChunks?: SharedChunks
  /** How long a file download may take no bytes before it is cut; default 120 s. */
  sendStallTimeoutMs?: number
  /** This process as a replica of a fleet: the internal endpoint answers the other replicas. */
  replica?: Replica
}

/**
 * A client that takes no bytes for this long is cut, as nginx's `send_timeout`
 * does (60 s there). Otherwise a reader that stopped (a hung machine whose TCP
 * stack still answers) holds its socket, its file and 2 MiB of read buffers
 * for good. Generous, because a write counts as done only once the client has
 * taken a whole 1 MiB chunk: a client reading 9 KB/s or more is never cut.
 * Time spent waiting for a fill does not count.
 */
const SEND_STALL_TIMEOUT_MS = 120_000

type Env = { Bindings: Partial<HttpBindings>; Variables: { route: string; cache: 'hit' | 'miss' | undefined; bytes: number | undefined } }

export function createApp(deps: AppDeps): Hono<Env> {
  const { store, traffic, log } = deps
  const app = new Hono<Env>()
  const metrics = createProxyMetrics(deps)

  app.use(async (c, next) => {
    const started = performance.now()
    c.set('route', 'other')
    // Heard from the start: a client that leaves while the answer is being
    // prepared (a miss waiting for upstream) closes the response before it is sent.
    let closed = false
    let onClosed: (() => void) | undefined
    c.env?.outgoing?.once('close', () => {
      closed = true
      // After the other 'close' listeners, such as the one that sets the byte count.
      if (onClosed !== undefined) queueMicrotask(onClosed)
    })
    await next()
    if (c.res !== RESPONSE_ALREADY_SENT && c.res.body !== null && !c.res.headers.has('content-length')) {
      // Generated answers (status, metrics, errors) are small: sized, they keep
      // the connection simple for clients and give the log their real length.
      const body = new Uint8Array(await c.res.arrayBuffer())
      const headers = new Headers(c.res.headers)
      headers.set('content-length', String(body.length))
      c.res = new Response(body, { status: c.res.status, headers })
    }
    const finish = (status: number, bytes: number | undefined, completed: boolean) =>
      recordRequest(traffic, log, {
        route: c.get('route'),
        method: c.req.method,
        path: rawRequestPath(c.env?.incoming?.url ?? c.req.url),
        status,
        bytes,
        cache: c.get('cache'),
        ms: Math.round(performance.now() - started),
        aborted: !completed,
      })
    // Answers written straight to Node's response count their own bytes; the others are sized above.
    const written = c.res === RESPONSE_ALREADY_SENT
    const length = written || c.req.method === 'HEAD' ? 0 : Number(c.res.headers.get('content-length') ?? 0)
    const outgoing = c.env?.outgoing
    if (outgoing === undefined) {
      finish(c.res.status, length, true)
      return
    }
    // Logged when the response is over, with what was really sent.
    onClosed = () => finish(outgoing.statusCode, written ? (c.get('bytes') ?? 0) : length, outgoing.writableFinished)
    if (closed) onClosed()
  })

  app.on(['GET', 'HEAD'], '/status', (c) => {
    c.set('route', 'status')
    c.header('vary', 'accept')
    if (prefersHtml(c.req.header('accept'))) return c.html(statusPage({ ...deps }))
    return c.json(buildStatusReport({ ...deps }))
  })
  // For load balancers (contrib/haproxy): answers as long as this process
  // serves HTTP, with no work behind it. The store is shared by every replica,
  // so a store that is down is no reason to take this one out of rotation.
  app.on(['GET', 'HEAD'], '/health', (c) => {
    c.set('route', 'health')
    return c.text('ok\n')
  })
  app.on(['GET', 'HEAD'], '/metrics', async (c) => {
    c.set('route', 'metrics')
    return c.body(await metrics.render(), 200, { 'content-type': metrics.contentType })
  })
  app.on(['GET', 'HEAD'], '/keyring.gpg', (c) => {
    c.set('route', 'keyring')
    return c.body(Buffer.from(deps.signingKey.publicBinary), 200, { 'content-type': 'application/pgp-keys' })
  })
  app.on(['GET', 'HEAD'], '/keyring.asc', (c) => {
    c.set('route', 'keyring')
    return c.body(deps.signingKey.publicArmored, 200, { 'content-type': 'application/pgp-keys; charset=utf-8' })
  })

  const { replica } = deps
  if (replica !== undefined) app.get(`${FLEET_FILLS_PATH}:sha256`, (c) => answerPeer(c, replica))

  app.on(['GET', 'HEAD'], '*', async (c) => {
    const rawPath = rawRequestPath(c.env?.incoming?.url ?? c.req.url)
    const resolved = resolveRequestPath(rawPath, deps.mirrors)
    if (resolved.kind === 'unsafe') return c.text(`bad request: ${resolved.reason}\n`, 400)
    if (resolved.kind === 'outside') return c.text('not found\n', 404)
    const { mirror, path } = resolved
    const publication = await mirror.publication()
    if (publication === undefined) {
      c.set('route', 'metadata')
      const reason = mirror.metadataStatus().metadataError ?? 'no metadata yet'
      return c.text(`${mirror.config.name}: metadata unavailable: ${reason}\n`, 503, { 'retry-after': String(RETRY_AFTER_SECONDS) })
    }
    const document = publication.documents.get(path)
    if (document !== undefined) return sendDocument(c, document)
    c.set('route', 'file')
    const file = publication.files.get(path)
    if (file === undefined) return c.text(`not found: ${path} is not in the selection of mirror ${mirror.config.name}\n`, 404)
    // A pipelined answer opens its file and joins its fill only once it may
    // write: queued behind others, it would hold them for nothing.
    const outgoing = c.env?.outgoing
    const connection = c.env?.incoming?.socket
    if (outgoing !== undefined && connection !== undefined && !(await mayWrite(outgoing, connection))) {
      return RESPONSE_ALREADY_SENT
    }
    const answer = await answerFile(store, file, {
      method: c.req.method as 'GET' | 'HEAD',
      range: header(c, 'range'),
      ifNoneMatch: header(c, 'if-none-match'),
    }, mirror.fileSource(path), mirror.config.missWait * 1000)
    if (answer.kind === 'unavailable') {
      const { missFailure } = mirror.config
      const requestId = newRequestId()
      log.warn('miss failed', { requestId, mirror: mirror.config.name, path, error: answer.message, answer: missFailure === 'reset' ? 'connection reset' : '503' })
      const connection = c.env?.incoming?.socket
      if (missFailure === '503' || connection === undefined) {
        return c.text(`${path}: not cached, and fetching it from upstream failed; try again later (request id ${requestId})\n`, 503, {
          'retry-after': String(RETRY_AFTER_SECONDS),
          'x-request-id': requestId,
        })
      }
      // No status at all: MAAS fails its whole sync on any 4xx or 5xx, but
      // retries a broken connection from byte 0 with backoff, and its retry
      // joins or starts a fill then. Logged and counted as status 0.
      const outgoing = c.env?.outgoing
      if (outgoing !== undefined) outgoing.statusCode = 0
      connection.resetAndDestroy()
      return RESPONSE_ALREADY_SENT
    }
    if (answer.kind === 'inconsistent') {
      mirror.reportInconsistency(answer.message)
      return c.text(`${mirror.config.name}: ${answer.message}\n`, 502)
    }
    c.set('cache', answer.cache)
    if (answer.kind === 'body' && answer.status === 200) {
      if (answer.cache === 'hit') traffic.hits++
      else traffic.misses++
    }
    return send(c, answer)
  })

  app.all('*', (c) => c.text(`method ${c.req.method} not allowed\n`, 405, { allow: 'GET, HEAD' }))

  // The detail (a path, an errno, upstream's answer) goes to the log only;
  // the client gets the id that finds it there.
  app.onError((error, c) => {
    const requestId = newRequestId()
    log.error('request failed', { requestId, path: c.req.path, error: error.message })
    const [status, text] = error instanceof VerificationError ? [502, 'upstream sent bytes that failed verification'] as const : [500, 'internal error'] as const
    return c.text(`${text} (request id ${requestId})\n`, status, { 'x-request-id': requestId })
  })

  /**
   * The internal endpoint: another replica following this one's fill of a
   * file reads its bytes from `from` (peer-range.ts); 404 when this replica
   * has neither fill nor file. Refused with 403, and no detail, unless signed
   * with the fleet secret.
   */
  async function answerPeer(c: Context<Env>, fleet: Replica): Promise<Response> {
    c.set('route', 'fleet')
    const target = c.env?.incoming?.url ?? new URL(c.req.url).pathname + new URL(c.req.url).search
    const headers = c.env?.incoming?.headers ?? Object.fromEntries(c.req.raw.headers)
    const refusal = peerRequestRefusal(fleet.secret, c.req.method, target, headers)
    if (refusal !== undefined) {
      log.warn('fleet request refused', { path: rawRequestPath(target), reason: refusal, address: c.env?.incoming?.socket?.remoteAddress })
      return c.text('forbidden\n', 403)
    }
    const sha256 = c.req.param('sha256') ?? ''
    const from = Number(c.req.query('from') ?? '0')
    if (!/^[0-9a-f]{64}$/.test(sha256) || !Number.isSafeInteger(from) || from < 0) return c.text('bad request: /_fleet/fills/<sha256>?from=<offset>\n', 400)
    const range = await openPeerRange(store, sha256, from)
    if (range === undefined) return c.text('not here\n', 404)
    const { source, size } = range
    const answerHeaders: Record<string, string> = { 'content-type': 'application/octet-stream', 'content-length': String(size - from) }
    if (from > 0) answerHeaders['content-range'] = `bytes ${from}-${size - 1}/${size}`
    const outgoing = c.env?.outgoing
    if (outgoing === undefined) {
      await source.close()
      return c.text('the internal endpoint answers only on a socket\n', 500)
    }
    outgoing.writeHead(from > 0 ? 206 : 200, answerHeaders)
    outgoing.flushHeaders()
    let bytes = 0
    outgoing.once('close', () => c.set('bytes', bytes))
    const connection = c.env?.incoming?.socket
    void sendRange(source, outgoing, {
      onBytes: (length) => {
        bytes += length
        traffic.peerServedBytes += length
      },
      signal: connection === undefined ? undefined : connectionClosed(connection),
      stallMs: deps.sendStallTimeoutMs ?? SEND_STALL_TIMEOUT_MS,
      pool: deps.readBuffers,
    })
    return RESPONSE_ALREADY_SENT
  }

  /** Sends a metadata document, straight into Node's response when there is one. */
  function sendDocument(c: Context<Env>, document: ServedDocument): Response {
    c.set('route', 'metadata')
    const outgoing = c.env?.outgoing
    if (outgoing !== undefined) {
      const status = writeDocument(outgoing, document, c.req.method, header(c, 'if-none-match'))
      const bytes = status === 200 && c.req.method === 'GET' ? document.body.length : 0
      traffic.servedBytes += bytes
      c.set('bytes', bytes)
      return RESPONSE_ALREADY_SENT
    }
    if (matchesEtag(c.req.header('if-none-match'), document.etag)) {
      const { 'content-length': _length, ...unsized } = document.headers
      return c.body(null, 304, unsized)
    }
    if (c.req.method === 'HEAD') return c.body(null, 200, document.headers)
    traffic.servedBytes += document.body.length
    return c.body(document.body, 200, document.headers)
  }

  /** A request header, read from Node's request when there is one (building a web Headers object costs more than the whole lookup). */
  function header(c: Context<Env>, name: string): string | undefined {
    const incoming = c.env?.incoming
    if (incoming === undefined) return c.req.header(name)
    const value = incoming.headers[name]
    return Array.isArray(value) ? value.join(', ') : value
  }

  /** Sends a file answer, straight into Node's response when there is one. */
  function send(c: Context<Env>, answer: Exclude<FileAnswer, { kind: 'unavailable' | 'inconsistent' }>): Response {
    const source = answer.kind === 'body' ? answer.body : undefined
    if (source === undefined) return c.body(null, answer.status, answer.headers)
    let bytes = 0
    const count = (length: number) => {
      bytes += length
      traffic.servedBytes += length
    }
    const outgoing = c.env?.outgoing
    if (outgoing === undefined) {
      const body = rangeStream(source)
      body.on('data', (chunk: Buffer) => count(chunk.length))
      return new Response(Readable.toWeb(body) as ReadableStream, { status: answer.status, headers: answer.headers })
    }
    outgoing.writeHead(answer.status, answer.headers)
    // On a miss the status goes out at once: a fill that fails before its first
    // byte reaches this client then shows as a broken 200, never as silence.
    if (answer.cache === 'miss') outgoing.flushHeaders()
    // The logging middleware reads the count after every 'close' listener has run.
    outgoing.once('close', () => c.set('bytes', bytes))
    const connection = c.env?.incoming?.socket
    const stallMs = deps.sendStallTimeoutMs ?? SEND_STALL_TIMEOUT_MS
    void sendRange(source, outgoing, {
      onBytes: count,
      pool: deps.readBuffers,
      chunks: deps.sharedChunks,
      signal: connection === undefined ? undefined : connectionClosed(connection),
      stallMs,
      onStall: () => log.warn('client stopped reading', { path: c.req.path, sentBytes: bytes, stalledSeconds: stallMs / 1000 }),
    })
    return RESPONSE_ALREADY_SENT
  }

  return app
}

/** A short random id that ties an error answer to the log line holding its detail. */
function newRequestId(): string {
  return randomBytes(8).toString('hex')
}
