/**
 * A `RangeReader` over a body that streams forward from `start` (an object
 * store's GET with `Range`). The body flows into a queue of its own chunks
 * while the caller is busy (writing the last read to its client) and is
 * paused once the queue holds the last read's length: what one open stream
 * holds is about one read's worth (the caller chooses its size) plus one
 * socket read, whatever the object's size. `readChunks` hands the queued
 * chunks over as they are, which a sender writes to its client without
 * copying them; `read` copies them into the caller's buffer.
 *
 * Measured against Ceph RGW on a 2-core machine, a hit copied into the
 * sender's buffers cost 1.9 CPU-s per GB where `body.pipe(response)` cost
 * 1.5, and reached 0.46x of a direct GET where the pipe reached 0.56x.
 */

import type { Readable } from 'node:stream'
import type { RangeReader } from './object-store.js'

/** Queued before the first read says how much the caller takes at once. */
const FIRST_QUEUE_BYTES = 64 * 1024

export function createStreamReader(body: Readable, start: number): RangeReader {
  let position = start
  const queue: Buffer[] = []
  let queued = 0
  /** Bytes queued at which the body is paused: the last read's length. */
  let queueLimit = FIRST_QUEUE_BYTES
  let ended = false
  let failure: Error | undefined
  let wake: (() => void) | undefined
  const woken = () => {
    const waiting = wake
    wake = undefined
    waiting?.()
  }
  body.on('data', (chunk: Buffer) => {
    queue.push(chunk)
    queued += chunk.length
    if (queued >= queueLimit) body.pause()
    woken()
  })
  body.once('end', () => {
    ended = true
    woken()
  })
  body.once('error', (error) => {
    failure ??= error
    woken()
  })
  body.once('close', () => {
    if (!ended) failure ??= new Error(`the store's body closed at byte ${position + queued}`)
    woken()
  })

  /**
   * The queued chunks, up to `length` bytes from `at`, taken off the queue;
   * waits for the first when none is queued. Empty only at the end.
   */
  async function next(length: number, at: number): Promise<Buffer[]> {
    if (at < position) throw new Error(`a streamed read cannot go back from byte ${position} to ${at}`)
    // Bytes the caller had from elsewhere (a fill's memory) are read and dropped.
    while (position < at) {
      if ((await next(Math.min(length, at - position), position)).length === 0) return []
    }
    queueLimit = length
    // Hand over what is here rather than wait for a full read.
    while (queued === 0 && !ended) {
      if (failure !== undefined) throw failure
      if (body.isPaused()) body.resume()
      await new Promise<void>((resolve) => (wake = resolve))
    }
    if (queued === 0 && failure !== undefined) throw failure
    const taken: Buffer[] = []
    let bytes = 0
    while (bytes < length && queue.length > 0) {
      const chunk = queue[0] as Buffer
      const part = Math.min(chunk.length, length - bytes)
      taken.push(part === chunk.length ? chunk : chunk.subarray(0, part))
      bytes += part
      if (part === chunk.length) queue.shift()
      else queue[0] = chunk.subarray(part)
    }
    queued -= bytes
    position += bytes
    if (queued < queueLimit && !ended && body.isPaused()) body.resume()
    return taken
  }

  return {
    async read(buffer, offset, length, at) {
      let filled = 0
      for (const chunk of await next(length, at)) filled += chunk.copy(buffer, offset + filled)
      return { bytesRead: filled }
    },
    // The body's chunks are its own (a socket read allocates each): nothing else writes to them.
    readChunks: (length, at) => next(length, at),
    async close() {
      if (!ended) body.destroy()
    },
  }
}
