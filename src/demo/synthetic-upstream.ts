/**
 * A real HTTP upstream on 127.0.0.1 serving an `UpstreamTree` (for tests and
 * `sstream-proxy demo`), with the misbehaviour tests need injected per path:
 * delays, slow or stalled bodies, error statuses, cut or reset connections,
 * corrupted or oversized bodies and tampered signatures. Bodies go out in
 * chunks, honouring backpressure, so rate limits and stalls happen on the
 * wire and not just in a buffer. With `tls` it speaks https.
 */
import { once } from 'node:events'
import { createServer } from 'node:http'
import { createServer as createTlsServer } from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileBytes, sha256 } from './synthetic-tree.js'
import type { UpstreamTree } from './synthetic-tree.js'

export type Fault =
  /** Wait before sending headers. */
  | { kind: 'delay'; ms: number }
  /** Throttle the body. */
  | { kind: 'rate'; bytesPerSecond: number }
  /** Send N body bytes, then hold the connection open silently until the client leaves or the server closes. */
  | { kind: 'stall'; afterBytes: number }
  /** Answer with this status and a short text body. */
  | { kind: 'status'; status: number }
  /** Advertise the full Content-Length, send N bytes, then end the connection (FIN). */
  | { kind: 'truncate'; afterBytes: number }
  /** Send N bytes, then reset the connection (RST). */
  | { kind: 'reset'; afterBytes: number }
  /** Flip one byte (XOR 0xff) at this offset of the file (none past its end); same length, same ETag. */
  | { kind: 'corrupt'; offset: number }
  /** Append this many bytes beyond the file, sent chunked without Content-Length. */
  | { kind: 'extra'; bytes: number }
  /** Change the last digit of the signed text of a .sjson (the top-level `updated`), keeping the signature block; on other files, the last digit anywhere. */
  | { kind: 'tamper' }
  /** Answer a conditional request in full (200, same bytes), as upstreams that ignore validators do. */
  | { kind: 'unconditional' }

export interface UpstreamServer {
  /** `http://127.0.0.1:PORT/` (or `https://`) plus the prefix: the mirror root. */
  url: string
  tree: UpstreamTree
  /** Serve another build from now on (Last-Modified moves forward). */
  setTree(tree: UpstreamTree): void
  /** `path` relative to the root, or `*` for every path without a fault of its own. */
  setFault(path: string, fault: Fault | undefined): void
  /** Per-connection rate limit for every body without a `rate` fault. */
  setDefaultRate(bytesPerSecond: number | undefined): void
  /** GET and HEAD requests for `path` (every path when omitted), 404s included; requests outside the prefix are not counted. */
  requestCount(path?: string): number
  /** Body bytes written for `path` (every path when omitted). */
  bytesSent(path?: string): number
  /** The Range headers received for `path` (every path when omitted). */
  rangeRequests(path?: string): string[]
  resetCounters(): void
  /** Stop listening (connections are refused) and destroy open connections. */
  down(): Promise<void>
  /** Listen again on the same port. */
  up(): Promise<void>
  close(): Promise<void>
}

export interface UpstreamServerOptions {
  /** Serve the tree under this path, like `/maas/images/ephemeral-v3/stable/`; default `/`. */
  prefix?: string
  /** Answer 401 to every request without these Basic auth credentials. */
  basicAuth?: { user: string; password: string }
  /** Serve https with this PEM certificate chain and key instead of http. */
  tls?: { cert: string | Buffer; key: string | Buffer }
}

const CHUNK = 64 * 1024

export async function startUpstreamServer(tree: UpstreamTree, options: UpstreamServerOptions = {}): Promise<UpstreamServer> {
  const prefix = `/${(options.prefix ?? '/').replace(/^\/+|\/+$/g, '')}/`.replace('//', '/')
  let current = tree
  let lastModified = wholeSeconds(Date.now())
  let defaultRate: number | undefined
  const faults = new Map<string, Fault>()
  const requests = new Map<string, number>()
  const bytes = new Map<string, number>()
  const ranges = new Map<string, string[]>()
  const sockets = new Set<Socket>()
  const etags = new WeakMap<Buffer, string>()
  const auth = options.basicAuth
  const expectedAuth = auth === undefined ? undefined : `Basic ${Buffer.from(`${auth.user}:${auth.password}`).toString('base64')}`

  const etagOf = (content: Buffer) => {
    let etag = etags.get(content)
    if (etag === undefined) {
      etag = `"${sha256(content)}"`
      etags.set(content, etag)
    }
    return etag
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const closed = new AbortController()
    res.on('close', () => closed.abort())
    const pathname = new URL(req.url ?? '/', 'http://upstream').pathname
    if (!pathname.startsWith(prefix)) return plain(res, 404, `not under ${prefix}`)
    let path: string
    try {
      path = decodeURIComponent(pathname.slice(prefix.length))
    } catch {
      return plain(res, 400, 'bad percent-encoding')
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return plain(res, 405, `method ${req.method} not allowed`)
    if (expectedAuth !== undefined && req.headers.authorization !== expectedAuth) {
      res.setHeader('WWW-Authenticate', 'Basic realm="upstream"')
      return plain(res, 401, 'credentials required')
    }
    requests.set(path, (requests.get(path) ?? 0) + 1)
    const range = req.headers.range
    if (range !== undefined) ranges.set(path, [...(ranges.get(path) ?? []), range])

    const fault = faults.get(path) ?? faults.get('*')
    if (fault?.kind === 'delay') {
      if (!(await pause(fault.ms, closed.signal))) return
    }
    if (fault?.kind === 'status') return plain(res, fault.status, `fault: status ${fault.status}`)
    const original = current.files.get(path)
    if (original === undefined) return plain(res, 404, `no such file: ${path}`)

    const etag = etagOf(original)
    res.setHeader('ETag', etag)
    res.setHeader('Last-Modified', new Date(lastModified).toUTCString())
    res.setHeader('Content-Type', contentType(path))
    res.setHeader('Accept-Ranges', 'bytes')
    if (fault?.kind !== 'unconditional' && notModified(req, etag, lastModified)) {
      res.writeHead(304).end()
      return
    }

    let body = fault?.kind === 'corrupt' ? corrupt(original, fault.offset) : fault?.kind === 'tamper' ? tamper(original) : original
    const wanted = range === undefined ? undefined : parseRange(range, body.length)
    if (wanted === 'unsatisfiable') {
      res.setHeader('Content-Range', `bytes */${body.length}`)
      return plain(res, 416, `range ${range} outside ${body.length} bytes`)
    }
    let status = 200
    if (wanted !== undefined) {
      status = 206
      res.setHeader('Content-Range', `bytes ${wanted.start}-${wanted.end}/${body.length}`)
      body = body.subarray(wanted.start, wanted.end + 1)
    }
    if (fault?.kind === 'extra') {
      // No Content-Length: Node sends the body chunked, so nothing on the wire
      // says where the real file ends.
      body = Buffer.concat([body, fileBytes(`extra:${path}`, fault.bytes)])
    } else {
      res.setHeader('Content-Length', body.length)
    }
    res.writeHead(status)
    if (req.method === 'HEAD') {
      res.end()
      return
    }
    // Headers go out now, even when a fault sends no body byte at all.
    res.flushHeaders()
    const stopAfter = fault?.kind === 'stall' || fault?.kind === 'truncate' || fault?.kind === 'reset' ? fault.afterBytes : body.length
    const rate = fault?.kind === 'rate' ? fault.bytesPerSecond : defaultRate
    const flushed = await send(res, body.subarray(0, stopAfter), rate, closed.signal, (n) => bytes.set(path, (bytes.get(path) ?? 0) + n))
    if (!flushed) return
    switch (fault?.kind) {
      case 'stall':
        // Hold the connection: it ends when the client leaves or close() destroys it.
        return
      case 'truncate':
        res.socket?.end()
        return
      case 'reset':
        // Give loopback a moment to deliver the bytes before the RST discards them.
        if (await pause(20, closed.signal)) res.socket?.resetAndDestroy()
        return
      default:
        res.end()
    }
  }

  const answer = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) plain(res, 500, String(error))
      else res.destroy()
    })
  }
  const server = options.tls === undefined ? createServer(answer) : createTlsServer(options.tls, answer)
  server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })

  const listen = (port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject)
        const address = server.address()
        resolve(typeof address === 'object' && address !== null ? address.port : port)
      })
    })
  const stop = async () => {
    if (!server.listening) return
    const closing = new Promise<void>((resolve) => server.close(() => resolve()))
    for (const socket of sockets) socket.destroy()
    await closing
  }

  const port = await listen(0)
  const sum = (map: Map<string, number>, path?: string) =>
    path === undefined ? [...map.values()].reduce((a, b) => a + b, 0) : (map.get(path) ?? 0)

  return {
    url: `${options.tls === undefined ? 'http' : 'https'}://127.0.0.1:${port}${prefix}`,
    get tree() {
      return current
    },
    setTree(next) {
      current = next
      // Strictly later, so If-Modified-Since never hides a new build made within the same second.
      lastModified = Math.max(wholeSeconds(Date.now()), lastModified + 1000)
    },
    setFault(path, fault) {
      if (fault === undefined) faults.delete(path)
      else faults.set(path, fault)
    },
    setDefaultRate(bytesPerSecond) {
      defaultRate = bytesPerSecond
    },
    requestCount: (path) => sum(requests, path),
    bytesSent: (path) => sum(bytes, path),
    rangeRequests: (path) => (path === undefined ? [...ranges.values()].flat() : [...(ranges.get(path) ?? [])]),
    resetCounters() {
      requests.clear()
      bytes.clear()
      ranges.clear()
    },
    down: stop,
    async up() {
      if (!server.listening) await listen(port)
    },
    close: stop,
  }
}

/**
 * Writes `body` in chunks, paced to `rate` bytes per second when given, and
 * waits for each write to drain. Resolves true once every byte reached the
 * socket, false when the client went away first.
 */
async function send(res: ServerResponse, body: Buffer, rate: number | undefined, signal: AbortSignal, count: (n: number) => void): Promise<boolean> {
  // Small chunks under a rate limit keep the flow smooth instead of bursty.
  const size = rate === undefined ? CHUNK : Math.max(1, Math.min(CHUNK, Math.floor(rate / 20)))
  const started = Date.now()
  for (let sent = 0; sent < body.length; ) {
    if (rate !== undefined) {
      const due = started + (sent / rate) * 1000 - Date.now()
      if (due > 0 && !(await pause(due, signal))) return false
    }
    if (signal.aborted) return false
    const chunk = body.subarray(sent, sent + size)
    const written = new Promise<boolean>((resolve) => res.write(chunk, (error) => resolve(error == null)))
    sent += chunk.length
    count(chunk.length)
    if (res.writableNeedDrain) {
      try {
        await once(res, 'drain', { signal })
      } catch {
        return false
      }
    }
    if (sent >= body.length && !(await written)) return false
  }
  return !signal.aborted
}

/** Sleeps, resolving false if the response closed meanwhile. */
async function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  try {
    await sleep(ms, undefined, { signal })
    return true
  } catch {
    return false
  }
}

function plain(res: ServerResponse, status: number, message: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' }).end(`${message}\n`)
}

function contentType(path: string): string {
  if (path.endsWith('.json')) return 'application/json'
  if (path.endsWith('.sjson')) return 'text/plain'
  return 'application/octet-stream'
}

function notModified(req: IncomingMessage, etag: string, lastModified: number): boolean {
  const ifNoneMatch = req.headers['if-none-match']
  if (ifNoneMatch !== undefined) {
    return ifNoneMatch.split(',').some((tag) => {
      const trimmed = tag.trim()
      return trimmed === '*' || trimmed.replace(/^W\//, '') === etag
    })
  }
  const since = Date.parse(req.headers['if-modified-since'] ?? '')
  return !Number.isNaN(since) && lastModified <= since
}

/** One `bytes=` range; undefined when the header is not one we honour (the whole file is sent). */
function parseRange(header: string, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (match === null || (match[1] === '' && match[2] === '')) return undefined
  if (match[1] === '') {
    const suffix = Number(match[2])
    if (suffix === 0 || size === 0) return 'unsatisfiable'
    return { start: Math.max(0, size - suffix), end: size - 1 }
  }
  const start = Number(match[1])
  const last = match[2] === '' ? Infinity : Number(match[2])
  // RFC 9110: a last position before the first makes the header invalid, so it is ignored.
  if (last < start) return undefined
  if (start >= size) return 'unsatisfiable'
  return { start, end: Math.min(last, size - 1) }
}

function corrupt(content: Buffer, offset: number): Buffer {
  const copy = Buffer.from(content)
  if (offset < copy.length) copy[offset] = copy[offset]! ^ 0xff
  return copy
}

function tamper(content: Buffer): Buffer {
  const text = content.toString('latin1')
  const signatureAt = text.indexOf('\n-----BEGIN PGP SIGNATURE-----')
  const searched = signatureAt === -1 ? text : text.slice(0, signatureAt)
  const at = searched.search(/\d(?=\D*$)/)
  const copy = Buffer.from(content)
  if (at === -1) return corrupt(copy, 0)
  copy[at] = 0x30 + ((copy[at]! - 0x30 + 1) % 10)
  return copy
}

function wholeSeconds(ms: number): number {
  return Math.floor(ms / 1000) * 1000
}
