/**
 * Reads of a stored file shared by every download that wants the same bytes
 * (the apt-cacher-ng idea, applied to hits). A stored file is cut into
 * aligned 1 MiB chunks, keyed by its sha256 and the chunk's index; a chunk is
 * read once, into a 1 MiB buffer from the read buffer budget, and lent to
 * every download that asks for it while it is there. It goes back to the
 * budget as soon as the last download holding it lets go (once its write has
 * settled): nothing is kept for later, so memory follows what is being sent,
 * and 1,000 clients on one 8 MiB file need at most 8 MiB of chunks.
 *
 * Only for stores whose readers read at any position (the filesystem).
 * Chunks are read through a reader of their own, not a download's (that
 * closes when its client leaves, while others still wait for the chunk): one
 * per file, open while any chunk of the file is present.
 */

import { LARGEST_BUFFER_BYTES, type BufferPool } from './buffer-pool.js'
import type { RangeReader } from './object-store.js'

export const CHUNK_BYTES = LARGEST_BUFFER_BYTES

/** A stored (verified) file, or one a fill is still writing, whose chunks may be shared. */
export interface SharedFile {
  sha256: string
  size: number
  /**
   * What its chunks are known by; the sha256 when absent. A running fill's
   * bytes are not verified yet, so they are kept apart from the stored file's.
   */
  key?: string
  /** Bytes written so far, for a file still being written: only chunks wholly written are shared. */
  written?(): number
  /** Opens a reader over the file that reads at any position. */
  open(): Promise<RangeReader>
}

/** One download's hold on a chunk: `bytes` are the chunk's bytes, valid until `release`. */
export interface ChunkLease {
  /** Bytes `[index * CHUNK_BYTES, index * CHUNK_BYTES + bytes.length)` of the file. */
  readonly bytes: Buffer
  /** Lets go of the chunk; call once nothing (no pending write) uses `bytes` any more. Safe to call twice. */
  release(): void
}

export interface SharedChunksStats {
  /** Chunks present: being read or held by downloads. */
  chunks: number
  /** Holds on them (a download counts once per chunk it holds or waits for). */
  references: number
  /** Chunks read from the store since start. */
  reads: number
}

export interface SharedChunks {
  /**
   * Chunk `index` of `file`: the one present, or one read now into a buffer
   * from the budget (waiting for it when spent). Rejects if the read fails,
   * or if `signal` aborts first.
   */
  acquire(file: SharedFile, index: number, signal?: AbortSignal): Promise<ChunkLease>
  stats(): SharedChunksStats
}

export interface SharedChunksOptions {
  /** Where chunk buffers come from, counted against its budget. */
  pool: Pick<BufferPool, 'takeChunk' | 'giveChunk'>
}

interface ChunkState {
  key: string
  /** The file's key (its sha256 unless given). */
  fileKey: string
  /** The file's reader, which this chunk keeps open while it is present. */
  fileReader: FileReader
  references: number
  /** The pool's buffer, once taken; given back when the last reference goes and no read uses it. */
  buffer: Buffer | undefined
  reading: boolean
  /** Stops waiting for a buffer when every download that wanted the chunk has left. */
  abandoned: AbortController
}

/** The reader of one file's chunks, and how many of its chunks are present. */
interface FileReader {
  reader: Promise<RangeReader>
  chunks: number
}

interface Chunk extends ChunkState {
  /** Resolves with the chunk's bytes once read. */
  ready: Promise<Buffer>
}

export function createSharedChunks(options: SharedChunksOptions): SharedChunks {
  const { pool } = options
  const chunks = new Map<string, Chunk>()
  const readers = new Map<string, FileReader>()
  let references = 0
  let reads = 0

  const giveBack = (chunk: ChunkState) => {
    if (chunk.buffer === undefined || chunk.reading || chunk.references > 0) return
    const buffer = chunk.buffer
    chunk.buffer = undefined
    pool.giveChunk(buffer)
  }

  const readerFor = (file: SharedFile): FileReader => {
    const fileKey = file.key ?? file.sha256
    let entry = readers.get(fileKey)
    if (entry === undefined) {
      entry = { reader: file.open(), chunks: 0 }
      // A failed open fails the chunks read through it, which is where it is awaited.
      entry.reader.catch(() => undefined)
      readers.set(fileKey, entry)
    }
    return entry
  }

  /** Removes the chunk, once: the next download to want its bytes reads them again. */
  const forget = (chunk: ChunkState) => {
    if (chunks.get(chunk.key) !== chunk) return
    chunks.delete(chunk.key)
    const entry = chunk.fileReader
    if (--entry.chunks > 0) return
    if (readers.get(chunk.fileKey) === entry) readers.delete(chunk.fileKey)
    // A read still under way finishes first: a FileHandle closes after its pending operations.
    void entry.reader.then((reader) => reader.close()).catch(() => undefined)
  }

  const letGo = (chunk: Chunk) => {
    chunk.references--
    references--
    if (chunk.references > 0) return
    forget(chunk)
    chunk.abandoned.abort()
    giveBack(chunk)
  }

  const read = async (chunk: ChunkState, file: SharedFile, index: number): Promise<Buffer> => {
    const start = index * CHUNK_BYTES
    const length = Math.min(CHUNK_BYTES, file.size - start)
    const buffer = await pool.takeChunk(chunk.abandoned.signal)
    chunk.buffer = buffer
    chunk.reading = true
    reads++
    try {
      const reader = await chunk.fileReader.reader
      let filled = 0
      while (filled < length) {
        const { bytesRead } = await reader.read(buffer, filled, length - filled, start + filled)
        if (bytesRead === 0) throw new Error(`${file.sha256}: file ended at byte ${start + filled}, before byte ${file.size}`)
        filled += bytesRead
      }
      return buffer.subarray(0, length)
    } catch (error) {
      // Nobody got these bytes: the next download to ask reads the chunk again.
      forget(chunk)
      throw error
    } finally {
      chunk.reading = false
      giveBack(chunk)
    }
  }

  return {
    async acquire(file, index, signal) {
      if (!Number.isInteger(index) || index < 0 || index * CHUNK_BYTES >= file.size) {
        throw new RangeError(`chunk ${index} is outside ${file.sha256} (${file.size} bytes)`)
      }
      const fileKey = file.key ?? file.sha256
      const key = `${fileKey}:${index}`
      let chunk = chunks.get(key)
      if (chunk === undefined) {
        const fileReader = readerFor(file)
        fileReader.chunks++
        const state: ChunkState = { key, fileKey, fileReader, references: 0, buffer: undefined, reading: false, abandoned: new AbortController() }
        chunk = Object.assign(state, { ready: read(state, file, index) })
        // Awaited by every download holding a reference; this only keeps a failure after they all left from going unhandled.
        chunk.ready.catch(() => undefined)
        chunks.set(key, chunk)
      }
      chunk.references++
      references++
      const held = chunk
      let released = false
      const release = () => {
        if (released) return
        released = true
        letGo(held)
      }
      try {
        const bytes = await untilAborted(held.ready, signal)
        return { bytes, release }
      } catch (error) {
        release()
        throw error
      }
    },
    stats: () => ({ chunks: chunks.size, references, reads }),
  }
}

/** `promise`, or a rejection as soon as `signal` aborts. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise
  if (signal.aborted) return Promise.reject(new Error('transfer ended while waiting for a chunk'))
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new Error('transfer ended while waiting for a chunk'))
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort)
        resolve(value)
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(error as Error)
      },
    )
  })
}
