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
import type { ServedDocument } from '../mirror/publication.js'
import { recordRequest } from './request-log.js'
import { rawRequestPath } from './request-path.js'
import type { Traffic } from './traffic.js'

export interface MetadataFastPathDeps {
  mirrors: readonly Mirror[]
  traffic: Traffic
  log: Logger
}

/** Writes a document (or 304 when `ifNoneMatch` is its ETag); returns the status sent. */
export function writeDocument(response: ServerResponse, document: ServedDocument, method: string, ifNoneMatch: string | undefined): number {
  if (ifNoneMatch === document.etag) {
    const { 'content-length': _length, ...unsized } = document.headers
    response.writeHead(304, unsized)
    response.end()
    return 304
  }
  response.writeHead(200, document.headers)
  response.end(method === 'HEAD' ? undefined : document.body)
  return 200
}

/** Returns a listener that answers and returns true, or returns false to let the app answer. */
export function createMetadataFastPath(deps: MetadataFastPathDeps) {
  return function metadataFastPath(request: IncomingMessage, response: ServerResponse): boolean {
    if (request.method !== 'GET' && request.method !== 'HEAD') return false
    const started = performance.now()
    const path = rawRequestPath(request.url ?? '/')
    const mirror = deps.mirrors.find((candidate) => path.startsWith(candidate.config.path))
    const document = mirror?.served()?.documents.get(path.slice(mirror.config.path.length))
    if (mirror === undefined || document === undefined) return false
    const header = request.headers['if-none-match']
    const status = writeDocument(response, document, request.method, Array.isArray(header) ? header.join(', ') : header)
    const bytes = status === 200 && request.method === 'GET' ? document.body.length : 0
    deps.traffic.servedBytes += bytes
    recordRequest(deps.traffic, deps.log, { route: 'metadata', method: request.method, path, status, bytes, cache: undefined, ms: Math.round(performance.now() - started), aborted: false })
    return true
  }
}
