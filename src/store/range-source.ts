/**
 * A byte range of a file that may still be growing: a stored file (all there,
 * final) or a running fill (bytes released as they are written, final once
 * verified). Bytes are read through the store's `RangeReader`, whichever
 * store it is. Both ways of sending a range, straight into a Node response
 * (`sendRange`) or as a Readable (`rangeStream`), read through this one
 * interface, so a hit and a miss follow the same rules. `sendRange` sends
 * a stored file of a store that reads at any position from chunks shared with
 * every other download of it (shared-chunks.ts).
 */

import type { ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import { LARGEST_BUFFER_BYTES, type BufferPool } from './buffer-pool.js'
import type { Fill } from './fill.js'
import type { ObjectStore, RangeReader } from './object-store.js'
import { CHUNK_BYTES, type ChunkLease, type SharedChunks, type SharedFile } from './shared-chunks.js'

export const READ_CHUNK_BYTES = LARGEST_BUFFER_BYTES

export interface RangeSource {
  /** First byte, inclusive. */
  readonly start: number
  /** Last byte, inclusive. */
  readonly end: number
  /** The reader, opened on the first call (reads start at `position`); the source owns it. */
  open(position: number): Promise<RangeReader>
  /** Bytes before this offset may be read now; throws the failure of a failed fill. */
  available(): number
  /** True once every byte is verified: only then may a body end. */
  final(): boolean
  /** Resolves when `available`, `final` or a failure may have changed. */
  changed(): Promise<void>
  /** Bytes `[position, end)` already in memory, to send without reading the file; undefined when not held. */
  held(position: number, end: number): Buffer[] | undefined
  /** Set when the source's file reads at any position (a stored file, or a fill's written bytes): its chunks may be shared with other downloads. */
  readonly shared?: SharedFile
  /**
   * Closes the reader the source holds, if any; `open` fails afterwards. The
   * source owns its reader: a sender calls this once when it is done, in every
   * case, even when it never read (its client had already left).
   */
  close(): Promise<void>
}

/**
 * A stored (verified) file, already opened at `start`: the source owns the
 * reader from here on. `shared` names the file when `reader` reads at any
 * position, so that its downloads may share chunks.
 */
export function storedRange(reader: RangeReader, start: number, end: number, shared?: SharedFile): RangeSource {
  let closed = false
  return {
    start,
    end,
    shared,
    open: () => (closed ? Promise.reject(new Error('range source closed')) : Promise.resolve(reader)),
    available: () => end + 1,
    final: () => true,
    changed: () => Promise.resolve(),
    held: () => undefined,
    async close() {
      if (closed) return
      closed = true
      await reader.close().catch(() => undefined)
    },
  }
}

const isVerified = (fill: Fill) => fill.state === 'verified' || fill.state === 'committed'

/** Opens a reader over a fill's bytes at `position`: what it has written, or the stored file once committed. */
async function openFillReader(fill: Fill, objects: Pick<ObjectStore, 'openRange'>, position: number, end: number): Promise<RangeReader> {
  if (fill.state !== 'committed') {
    try {
      return await fill.openWritten()
    } catch (error) {
      // The writer committed between the check and the open: it is
      // committing ('verified' until the commit and the index row are done) or committed.
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || !isVerified(fill)) throw error
    }
  }
  const stored = await objects.openRange(fill.target.sha256, position, end)
  if (stored === undefined) throw new Error(`${fill.target.path}: gone from the store right after it was stored`)
  return stored
}

/** Each fill's file for shared chunks, one per fill, so that all its readers share them. */
const fillFiles = new WeakMap<Fill, SharedFile>()
let fillFileCount = 0

/**
 * A running fill's bytes as a shared file: readers that fell behind the bytes
 * the fill holds in memory (twenty clients ask for more than a machine sends
 * while the fill runs) then read each chunk once for all of them, instead of
 * once each. Keyed apart from the stored file: these bytes are not verified.
 */
function fillFile(fill: Fill, objects: Pick<ObjectStore, 'openRange' | 'positionalReads'>): SharedFile | undefined {
  if (objects.positionalReads !== true) return undefined
  let file = fillFiles.get(fill)
  if (file === undefined) {
    const { sha256, size } = fill.target
    file = { sha256, size, key: `${sha256}.fill${++fillFileCount}`, written: () => fill.written, open: () => openFillReader(fill, objects, 0, size - 1) }
    fillFiles.set(fill, file)
  }
  return file
}

/** A running fill, followed as it grows; once committed, the rest is read from `objects`. */
export function fillRange(fill: Fill, objects: Pick<ObjectStore, 'openRange' | 'positionalReads'>, start = 0, end = fill.target.size - 1): RangeSource {
  const verified = () => isVerified(fill)
  let handle: RangeReader | undefined
  let closed = false
  const openReader = (position: number) => openFillReader(fill, objects, position, end)
  return {
    start,
    end,
    async open(position) {
      if (handle !== undefined) return handle
      if (closed) throw new Error('range source closed')
      const opened = await openReader(position)
      // Closed while the open was under way: nobody will close this one but us.
      if (closed) {
        await opened.close().catch(() => undefined)
        throw new Error('range source closed')
      }
      handle = opened
      return opened
    },
    async close() {
      closed = true
      const closing = handle
      handle = undefined
      await closing?.close().catch(() => undefined)
    },
    available() {
      if (fill.state === 'failed') throw fill.error ?? new Error(`${fill.target.path}: fill failed`)
      // The range's own last byte waits for the whole file's verification: a
      // client has a complete response once it holds every byte its
      // Content-Length promised, so a range ending before the file's end would
      // otherwise complete with bytes that may yet fail the sha256.
      return verified() ? end + 1 : Math.min(fill.releasable, end)
    },
    // A body ends only once the whole file is verified, even when its range ended
    // earlier: until then any byte passed on may be bad, and the transfer must fail.
    final: verified,
    changed: () => new Promise((resolve) => fill.once('progress', () => resolve())),
    held: (position, until) => fill.held(position, until),
    shared: fillFile(fill, objects),
  }
}

/**
 * The next step of sending a range from `position`: read up to `read`
 * bytes, wait for the source, or stop. Shared by both senders. Bytes held in
 * memory are taken all at once, up to what is available: a reader at the head
 * of a fill then sends all it can in one write, not a write per chunk.
 */
async function nextStep(source: RangeSource, position: number): Promise<{ read: number; held: Buffer[] | undefined } | 'done'> {
  for (;;) {
    const available = source.available()
    if (position > source.end && source.final()) return 'done'
    if (position < available) {
      const read = Math.min(READ_CHUNK_BYTES, available - position)
      return { read, held: source.held(position, available) }
    }
    await source.changed()
  }
}

export interface SendRangeOptions {
  /** Called with the size of each write as it is made. */
  onBytes(bytes: number): void
  /** Read buffers, shared by every transfer under one budget. */
  pool: BufferPool
  /** Chunks of stored files shared by their downloads (from the same budget); without it every download reads alone. */
  chunks?: SharedChunks
  /**
   * Ends the transfer when aborted: the connection closed. A pipelined
   * response has no socket until the one before it ends, and when its client
   * leaves first Node neither closes it nor settles its writes.
   */
  signal?: AbortSignal
  /** How long one write may wait for the client to take its bytes before the transfer is cut. */
  stallMs?: number
  /** Called when a write has waited `stallMs`, before the transfer is cut. */
  onStall?(): void
}

/**
 * Writes the range into a Node response, then ends it. Bytes a fill still
 * holds in memory go out as they are, and a stored file's shared chunks
 * (`options.chunks`, when `source.shared` is set) are held only until their
 * write settles; a reader that streams its own chunks (`readChunks`, an
 * object store's body) hands them over without a copy; the rest is read with two buffers from
 * the pool (1 MiB each, smaller when many transfers run), taken on the first
 * read and used in turn (one is read from disk while the other is on the socket): a read stream would
 * allocate a fresh buffer per chunk, and that garbage costs a large share of
 * the throughput. The buffers go back to the pool only once no write holds
 * them. Closes the source in every case, also when its client had left
 * before the first read; on a failure the response is
 * destroyed, so the client sees a broken transfer, never a complete one.
 */
export async function sendRange(source: RangeSource, response: ServerResponse, options: SendRangeOptions): Promise<void> {
  const { pool } = options
  let buffers: Buffer[] | undefined
  let handle: RangeReader | undefined
  let position = source.start
  let writing: Promise<void> | undefined
  let turn = 0
  /** Undefined once a chunk cannot be read shared (the file was removed since this download opened it): the rest is read alone. */
  let sharing = source.shared !== undefined && options.chunks !== undefined ? { file: source.shared, chunks: options.chunks } : undefined
  try {
    while (!response.destroyed && options.signal?.aborted !== true) {
      const step = await nextStep(source, position)
      if (step === 'done') break
      let chunks = step.held
      let lease: ChunkLease | undefined
      const index = Math.floor(position / CHUNK_BYTES)
      const chunkStart = index * CHUNK_BYTES
      if (chunks === undefined && sharing !== undefined && whollyWritten(sharing.file, chunkStart)) {
        // The aligned chunk holding `position`, shared with every download of the file; sent from `position` on.
        try {
          lease = await sharing.chunks.acquire(sharing.file, index, options.signal)
        } catch (error) {
          if (clientLeft(response, options.signal)) throw error
          // Through this download's own reader, opened before: a removed file stays readable there.
          sharing = undefined
          continue
        }
        chunks = [lease.bytes.subarray(position - chunkStart, Math.min(lease.bytes.length, position + step.read - chunkStart))]
      } else if (chunks === undefined) {
        handle ??= await source.open(position)
        if (buffers !== undefined && pool.oversized(buffers)) {
          // Others wait for the budget: trade this pair, once no write holds it, for a fair one.
          await writing
          const traded = buffers
          buffers = undefined
          buffers = await pool.trade(traded, options.signal)
        }
        // A streamed body needs no buffers to copy into, but takes its pair all
        // the same: the budget then bounds how much of its body a download
        // queues (a read's length), and 1,000 S3 hits wait their turn as file hits do.
        buffers ??= await pool.take(options.signal)
        const length = Math.min(step.read, (buffers[0] as Buffer).length)
        if (handle.readChunks !== undefined) {
          chunks = await handle.readChunks(length, position)
        } else {
          // This buffer's last write was awaited before the other buffer was written.
          const buffer = buffers[turn] as Buffer
          turn ^= 1
          const { bytesRead } = await handle.read(buffer, 0, length, position)
          chunks = bytesRead === 0 ? [] : [buffer.subarray(0, bytesRead)]
        }
        if (chunks.length === 0) throw new Error(`file ended at byte ${position}, before byte ${source.end + 1}`)
      }
      const bytes = chunks.reduce((sum, chunk) => sum + chunk.length, 0)
      position += bytes
      await writing?.catch((error: unknown) => {
        lease?.release()
        throw error
      })
      writing = write(response, chunks, options)
      // The chunk is held until the socket no longer needs its bytes.
      if (lease !== undefined) void writing.then(lease.release, lease.release)
      // Awaited on the next turn; if the loop stops first, its failure is the client's leaving.
      writing.catch(() => undefined)
      options.onBytes(bytes)
    }
    await writing
    if (!response.destroyed && options.signal?.aborted !== true) response.end()
    else response.destroy()
  } catch {
    // A broken connection is how the client learns the body failed (a fill
    // that failed verification, a file that could not be read).
    response.destroy()
  } finally {
    await source.close()
    if (buffers !== undefined) {
      // A destroyed socket settles its pending write; until then the kernel may still copy from the buffer.
      await writing?.catch(() => undefined)
      pool.give(buffers)
    }
  }
}

/** Whether the chunk from `chunkStart` is all in the file yet (a fill's file grows). */
function whollyWritten(file: SharedFile, chunkStart: number): boolean {
  return file.written === undefined || Math.min(file.size, chunkStart + CHUNK_BYTES) <= file.written()
}

/** True once the response can take no more bytes. */
function clientLeft(response: ServerResponse, signal: AbortSignal | undefined): boolean {
  return response.destroyed || signal?.aborted === true
}

/**
 * Writes `chunks` and resolves once the last is handed to the socket. It
 * rejects instead when the response closes or `signal` aborts first (an HTTP
 * response drops a write, callback and all, when its socket is destroyed but
 * has not yet emitted 'close'), or when the client has taken nothing for
 * `stallMs`. The stall clock runs only while a write waits on a socket: not
 * while the sender waits for a fill, nor while a pipelined response waits for
 * the one before it. An HTTP response corks its socket on a write until the
 * next tick, so chunks written together leave as one writev; corking here as
 * well measured half the throughput of a hit to one client, by deferring each
 * write's callback.
 */
function write(response: ServerResponse, chunks: Buffer[], options: SendRangeOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    const { signal, stallMs } = options
    if (response.destroyed || signal?.aborted === true) return reject(new Error('response closed'))
    let stall: NodeJS.Timeout | undefined
    let settled = false
    const settle = (error?: Error | null) => {
      if (settled) return
      settled = true
      clearTimeout(stall)
      response.off('socket', startStallClock)
      response.off('close', closed)
      signal?.removeEventListener('abort', closed)
      if (error) reject(error)
      else resolve()
    }
    const closed = () => settle(new Error('response closed'))
    response.once('close', closed)
    signal?.addEventListener('abort', closed, { once: true })
    const startStallClock = () => {
      if (settled || stallMs === undefined) return
      stall = setTimeout(() => {
        options.onStall?.()
        response.destroy()
        settle(new Error(`the client took nothing for ${stallMs} ms`))
      }, stallMs)
    }
    if (response.socket !== null) startStallClock()
    else response.once('socket', startStallClock)
    chunks.forEach((chunk, index) => {
      response.write(chunk, index < chunks.length - 1 ? undefined : settle)
    })
  })
}

/** The range as a Readable, for consumers that want a stream (web responses, tests). */
export function rangeStream(source: RangeSource): Readable {
  let position = source.start
  let handle: RangeReader | undefined
  return new Readable({
    highWaterMark: READ_CHUNK_BYTES,
    read() {
      void (async () => {
        try {
          const step = await nextStep(source, position)
          if (this.destroyed) return
          if (step === 'done') return void this.push(null)
          if (step.held !== undefined) {
            for (const chunk of step.held) {
              position += chunk.length
              this.push(chunk)
            }
            return
          }
          handle ??= await source.open(position)
          if (this.destroyed) return
          const buffer = Buffer.allocUnsafe(step.read)
          const { bytesRead } = await handle.read(buffer, 0, step.read, position)
          if (bytesRead === 0) throw new Error(`file ended at byte ${position}, before byte ${source.end + 1}`)
          position += bytesRead
          this.push(bytesRead === step.read ? buffer : buffer.subarray(0, bytesRead))
        } catch (error) {
          this.destroy(error as Error)
        }
      })()
    },
    destroy(error, callback) {
      void source.close().then(() => callback(error))
    },
  })
}

export interface FillReaderOptions {
  fill: Fill
  /** Where the committed file is read, for readers that arrive after the commit. */
  objects: Pick<ObjectStore, 'openRange' | 'positionalReads'>
  start?: number
  end?: number
}

/** A Readable following a fill as it grows, failing when the fill fails. */
export function createFillReader(options: FillReaderOptions): Readable {
  return rangeStream(fillRange(options.fill, options.objects, options.start, options.end))
}
