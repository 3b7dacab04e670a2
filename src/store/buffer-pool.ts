/**
 * Read buffers shared by every transfer. A sender takes its buffers on its
 * first disk read and gives them back once its last write has settled, so
 * steady traffic reads into the same memory over and over. Without it each
 * transfer left its 1 MiB buffers as garbage that V8 collects only when
 * external memory has grown by about 64 MB, and the process's RSS carried
 * that much dead memory after every burst of hits. Up to `maxIdle` buffers
 * are kept between bursts; beyond that, given-back buffers go to the GC.
 */

export interface BufferPoolOptions {
  /** Size of every buffer. */
  bytes: number
  /** Buffers kept for reuse while no transfer needs them. */
  maxIdle: number
}

export interface BufferPool {
  readonly bytes: number
  /** A buffer no one else holds: an idle one, else a new one. */
  take(): Buffer
  /** Returns a buffer that nothing reads from or writes to any more. */
  give(buffer: Buffer): void
  /** Buffers waiting for a taker. */
  readonly idle: number
  /** Buffers allocated since the pool was made. */
  readonly allocated: number
  /** Buffers taken and not yet given back: what transfers hold right now. */
  readonly inUse: number
}

export function createBufferPool(options: BufferPoolOptions): BufferPool {
  const idle: Buffer[] = []
  let allocated = 0
  let inUse = 0
  return {
    bytes: options.bytes,
    take() {
      inUse++
      const reused = idle.pop()
      if (reused !== undefined) return reused
      allocated++
      // Outside Node's small-buffer slab: the pool owns the whole allocation.
      return Buffer.allocUnsafeSlow(options.bytes)
    },
    give(buffer) {
      if (buffer.length !== options.bytes) throw new RangeError(`a ${buffer.length}-byte buffer given to a pool of ${options.bytes}-byte buffers`)
      if (idle.includes(buffer)) throw new Error('a buffer given back twice')
      inUse--
      if (idle.length < options.maxIdle) idle.push(buffer)
    },
    get idle() {
      return idle.length
    },
    get allocated() {
      return allocated
    },
    get inUse() {
      return inUse
    },
  }
}
