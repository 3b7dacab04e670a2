/**
 * Answers a request for an item file: from disk on a hit (1 MiB reads, no
 * re-hash), or by joining the file's shared fill on a miss so that bytes
 * reach the client as they arrive from upstream. Handles `Range`, `HEAD`,
 * `ETag` and `If-None-Match`.
 */

import type { Store } from '../store/store.js'
import { fillRange, storedRange, type RangeSource } from '../store/range-source.js'
import type { Fill, FillSource } from '../store/fill.js'
import type { ServableFile } from '../mirror/publication.js'
import { parseRange } from './byte-range.js'
import { matchesEtag } from './etag.js'

export interface FileRequest {
  method: 'GET' | 'HEAD'
  range: string | undefined
  ifNoneMatch: string | undefined
}

export type FileAnswer =
  | { kind: 'body'; status: 200 | 206; headers: Record<string, string>; body: RangeSource | undefined; cache: 'hit' | 'miss' }
  | { kind: 'empty'; status: 304 | 416; headers: Record<string, string>; cache: 'hit' | 'miss' }
  | { kind: 'unavailable'; message: string }

/** Seconds a client is told to wait after upstream failed a miss. */
export const RETRY_AFTER_SECONDS = 30

export async function answerFile(store: Store, file: ServableFile, request: FileRequest, source: FillSource): Promise<FileAnswer> {
  const etag = `"${file.sha256}"`
  const stored = await store.openStored(file.sha256)
  const cache = stored !== undefined ? 'hit' : 'miss'
  const headers: Record<string, string> = {
    'accept-ranges': 'bytes',
    etag,
    'content-type': 'application/octet-stream',
    'x-cache': cache.toUpperCase(),
  }
  const close = () => void stored?.handle.close().catch(() => undefined)

  if (matchesEtag(request.ifNoneMatch, etag)) {
    close()
    return { kind: 'empty', status: 304, headers, cache }
  }
  const range = parseRange(request.range, file.size)
  if (range.kind === 'unsatisfiable') {
    close()
    return { kind: 'empty', status: 416, headers: { ...headers, 'content-range': `bytes */${file.size}` }, cache }
  }
  const start = range.kind === 'partial' ? range.start : 0
  const end = range.kind === 'partial' ? range.end : file.size - 1
  const status = range.kind === 'partial' ? 206 : 200
  headers['content-length'] = String(Math.max(0, end - start + 1))
  if (range.kind === 'partial') headers['content-range'] = `bytes ${start}-${end}/${file.size}`

  if (stored !== undefined) {
    store.index.recordHit(file.sha256)
    if (request.method === 'HEAD' || file.size === 0) {
      close()
      return { kind: 'body', status, headers, body: undefined, cache }
    }
    return { kind: 'body', status, headers, body: storedRange(stored.handle, start, end), cache }
  }

  if (request.method === 'HEAD') return { kind: 'body', status, headers, body: undefined, cache }
  const fill = store.fills.fill({ sha256: file.sha256, size: file.size, path: file.path }, source)
  await firstBytesOrEnd(fill)
  if (fill.state === 'failed') {
    return { kind: 'unavailable', message: `${file.path}: not cached and upstream failed: ${fill.error?.message ?? 'unknown error'}` }
  }
  return { kind: 'body', status, headers, body: fillRange(fill, store.blobs.blobPath(file.sha256), start, end), cache }
}

/**
 * Waits until the fill has bytes or has ended, so that an upstream that is
 * down becomes a 503 rather than a 200 whose body breaks at once.
 */
function firstBytesOrEnd(fill: Fill): Promise<void> {
  return new Promise((resolve) => {
    const check = () => {
      if (fill.written > 0 || fill.state !== 'filling') {
        fill.off('progress', check)
        resolve()
      }
    }
    fill.on('progress', check)
    check()
  })
}
