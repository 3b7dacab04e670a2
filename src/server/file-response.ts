/**
 * Answers a request for an item file: from the store on a hit (no re-hash),
 * or by joining the file's shared fill on a miss so that bytes reach the
 * client as they arrive from upstream. Handles `Range`, `HEAD`,
 * `ETag` and `If-None-Match`.
 */

import type { Store } from '../store/store.js'
import { fillRange, storedRange, type RangeSource } from '../store/range-source.js'
import { StoreUnavailableError, type RangeReader } from '../store/object-store.js'
import type { FillSource } from '../store/fill.js'
import { awaitFirstBytes } from '../store/first-bytes.js'
import type { SharedFile } from '../store/shared-chunks.js'
import type { ServableFile } from '../mirror/publication.js'
import { sizeConflict } from '../streams/size-consistency.js'
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
  /** The store holds or fetches the item's sha256 at another size: the item's metadata is wrong, or another's is. */
  | { kind: 'inconsistent'; message: string }

/** Seconds a client is told to wait after upstream failed a miss. */
export const RETRY_AFTER_SECONDS = 30

/** `missWaitMs`: how long a miss may wait for upstream's first byte, retries included (the mirror's `missWait`). */
export async function answerFile(store: Store, file: ServableFile, request: FileRequest, source: FillSource, missWaitMs: number): Promise<FileAnswer> {
  const etag = `"${file.sha256}"`
  const target = { sha256: file.sha256, size: file.size, path: file.path }
  // Not in this proxy's index: an S3 bucket may hold it all the same (another replica stored it).
  const row = store.index.get(file.sha256) ?? ((await store.adoptStored(target)) ? store.index.get(file.sha256) : undefined)
  // Content-Length and ranges come from the item's size: a stored file of
  // another size would end the response with bytes that fail its sha256.
  const storedConflict = row === undefined ? undefined : sizeConflict(file, { size: row.size, state: 'stored' })
  if (storedConflict !== undefined) return { kind: 'inconsistent', message: storedConflict }
  let cache: 'hit' | 'miss' = row !== undefined ? 'hit' : 'miss'
  const headers: Record<string, string> = {
    'accept-ranges': 'bytes',
    etag,
    'content-type': 'application/octet-stream',
    'x-cache': cache.toUpperCase(),
  }

  if (matchesEtag(request.ifNoneMatch, etag)) return { kind: 'empty', status: 304, headers, cache }
  const range = parseRange(request.range, file.size)
  if (range.kind === 'unsatisfiable') {
    return { kind: 'empty', status: 416, headers: { ...headers, 'content-range': `bytes */${file.size}` }, cache }
  }
  const start = range.kind === 'partial' ? range.start : 0
  const end = range.kind === 'partial' ? range.end : file.size - 1
  const status = range.kind === 'partial' ? 206 : 200
  headers['content-length'] = String(Math.max(0, end - start + 1))
  if (range.kind === 'partial') headers['content-range'] = `bytes ${start}-${end}/${file.size}`

  if (row !== undefined) {
    if (request.method === 'HEAD' || file.size === 0) {
      store.index.recordHit(file.sha256)
      return { kind: 'body', status, headers, body: undefined, cache }
    }
    let reader: RangeReader | undefined
    try {
      reader = await store.openStored(file.sha256, start, end)
    } catch (error) {
      // The store is down: the file is there but cannot be read; a fill could not store it either.
      if (error instanceof StoreUnavailableError) return { kind: 'unavailable', message: `${file.path}: the store cannot be read: ${error.message}` }
      throw error
    }
    if (reader !== undefined) {
      store.index.recordHit(file.sha256)
      return { kind: 'body', status, headers, body: storedRange(reader, start, end, sharedFile(store, file)), cache }
    }
    // Gone from the store since it was indexed (its row is dropped): a miss after all.
    cache = 'miss'
    headers['x-cache'] = 'MISS'
  }

  if (request.method === 'HEAD') return { kind: 'body', status, headers, body: undefined, cache }
  // No status goes out before the first byte: an upstream that is down ends
  // as `unavailable` (answered as the mirror's `missFailure` says), never as a
  // 200 whose body breaks at once.
  const first = await awaitFirstBytes(target, source, { fills: store.fills, waitMs: missWaitMs })
  if (first.kind === 'failed') return { kind: 'unavailable', message: first.message }
  // A running fill of the sha256 started for another item keeps that item's size.
  const fillConflict = sizeConflict(file, { size: first.fill.target.size, state: 'being fetched' })
  if (fillConflict !== undefined) return { kind: 'inconsistent', message: fillConflict }
  return { kind: 'body', status, headers, body: fillRange(first.fill, store.objects, start, end), cache }
}

/** The stored file's chunks may be shared by its downloads when the store reads at any position. */
function sharedFile(store: Store, file: ServableFile): SharedFile | undefined {
  const { objects } = store
  if (objects.positionalReads !== true) return undefined
  return {
    sha256: file.sha256,
    size: file.size,
    async open() {
      const reader = await objects.openRange(file.sha256, 0, file.size - 1)
      if (reader === undefined) throw new Error(`${file.path}: gone from the store`)
      return reader
    },
  }
}
