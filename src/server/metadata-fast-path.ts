/**
 * Metadata answered before the framework sees the request. MAAS polls the
 * index and every products file several times per cycle from every rack, so
 * this is the proxy's most frequent request; a raw path that is exactly a
 * published document's path is safe by construction and needs neither
 * decoding nor hono's routing. Anything else falls through to the app.
 */

import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Logger } from '../log/logger.js'
import type { Mirror } from '../mirror/mirror.js'
import type { Publication, ServedDocument } from '../mirror/publication.js'
import { matchesEtag } from './etag.js'
import { recordRequest } from './request-log.js'
import type { Traffic } from './traffic.js'

export interface MetadataFastPathDeps {
  mirrors: readonly Mirror[]
  traffic: Traffic
  log: Logger
}

/** Writes a document (or 304 when `ifNoneMatch` names its ETag); returns the status sent. */
export function writeDocument(response: ServerResponse, document: ServedDocument, method: string, ifNoneMatch: string | undefined): number {
  if (matchesEtag(ifNoneMatch, document.etag)) {
    const { 'content-length': _length, ...unsized } = document.headers
    response.writeHead(304, unsized)
    response.end()
    return 304
  }
  response.writeHead(200, document.headers)
  response.end(method === 'HEAD' ? undefined : document.body)
  return 200
}

/**
 * Every published document by the exact request path that names it, rebuilt
 * when a mirror's publication changes: a request then costs one lookup.
 * Mirror paths never prefix one another (the configuration refuses it), so
 * each path belongs to one mirror.
 */
function createDocumentIndex(mirrors: readonly Mirror[]): (path: string) => ServedDocument | undefined {
  const indexed: Array<Publication | undefined> = mirrors.map(() => undefined)
  let byPath = new Map<string, ServedDocument>()
  return function documentAt(path) {
    let changed = false
    for (const [at, mirror] of mirrors.entries()) {
      // Also starts a refresh behind the held publication once the TTL has passed.
      const publication = mirror.served()
      if (publication !== indexed[at]) {
        indexed[at] = publication
        changed = true
      }
    }
    if (changed) {
      byPath = new Map()
      for (const [at, mirror] of mirrors.entries()) {
        for (const [documentPath, document] of indexed[at]?.documents ?? []) byPath.set(mirror.config.path + documentPath, document)
      }
    }
    return byPath.get(path)
  }
}

/** A Host the app accepts as it is: a name or IPv4 address, or a bracketed IPv6 one, with an optional port. */
const PLAIN_HOST = /^(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/

/**
 * What the fast path needs of the raw headers (building `headers` costs
 * more): If-None-Match as Node would join it, and whether Host is one the app
 * would accept without a second look. No Host at all is HTTP/1.0 (Node
 * refuses HTTP/1.1 without one), which RFC 9112 allows and the app serves too.
 */
function readHeaders(rawHeaders: string[]): { ifNoneMatch: string | undefined; plainHost: boolean } {
  let ifNoneMatch: string | undefined
  let hosts = 0
  let plainHost = true
  for (let at = 0; at < rawHeaders.length; at += 2) {
    const name = rawHeaders[at] as string
    if (name.length === 4 && name.toLowerCase() === 'host') {
      hosts++
      plainHost = PLAIN_HOST.test(rawHeaders[at + 1] as string)
      continue
    }
    if (name.length !== 13 || name.toLowerCase() !== 'if-none-match') continue
    const field = rawHeaders[at + 1] as string
    ifNoneMatch = ifNoneMatch === undefined ? field : `${ifNoneMatch}, ${field}`
  }
  return { ifNoneMatch, plainHost: plainHost && hosts <= 1 }
}

/**
 * Returns a listener that answers and returns true, or returns false to let
 * the app answer. Only an exact document path is answered here; a target with
 * a query, in absolute form or otherwise unusual, or an unusual Host, goes
 * to the app, which checks and decodes it.
 */
export function createMetadataFastPath(deps: MetadataFastPathDeps) {
  const documentAt = createDocumentIndex(deps.mirrors)
  return function metadataFastPath(request: IncomingMessage, response: ServerResponse): boolean {
    const method = request.method
    if (method !== 'GET' && method !== 'HEAD') return false
    const started = performance.now()
    const path = request.url ?? ''
    const document = documentAt(path)
    if (document === undefined) return false
    const headers = readHeaders(request.rawHeaders)
    // An unusual Host is the app's to judge, so that a document and a file get the same answer.
    if (!headers.plainHost) return false
    const status = writeDocument(response, document, method, headers.ifNoneMatch)
    const bytes = status === 200 && method === 'GET' ? document.body.length : 0
    deps.traffic.servedBytes += bytes
    recordRequest(deps.traffic, deps.log, { route: 'metadata', method, path, status, bytes, cache: undefined, ms: Math.round(performance.now() - started), aborted: false })
    return true
  }
}
