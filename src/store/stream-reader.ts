/**
 * A `RangeReader` over a body that streams forward from `start` (an object
 * store's GET with `Range`). The body flows into a queue of its own chunks
 * while the caller is busy (writing the last read to its client), and one
 * read takes every chunk queued, up to the caller's length, with one copy
 * into the caller's buffer. The body is paused once the queue holds the last
 * read's length: what one open stream holds is about one read's worth (the
 * caller chooses its size) plus one socket read, whatever the object's size.
 *
 * Measured on a 2-core machine against Ceph RGW: read in paused mode, the
 * body (high-water mark 16 KiB) stopped its socket after each 64 KiB socket
 * read, so each read returned one such chunk and the sender ping-ponged
 * 64 KiB writes with the store, at half the gateway's own speed.
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

  /** Copies queued chunks into `buffer` up to `length` bytes; what a chunk has beyond stays queued. */
  const take = (buffer: Buffer, offset: number, length: number): number => {
    let filled = 0
    while (filled < length && queue.length > 0) {
      const chunk = queue[0] as Buffer
      const part = Math.min(chunk.length, length - filled)
      chunk.copy(buffer, offset + filled, 0, part)
      filled += part
      if (part === chunk.length) queue.shift()
      else queue[0] = chunk.subarray(part)
    }
    queued -= filled
    return filled
  }

  return {
    async read(buffer, offset, length, at) {
      if (at < position) throw new Error(`a streamed read cannot go back from byte ${position} to ${at}`)
      // Bytes the caller had from elsewhere (a fill's memory) are read and dropped.
      while (position < at) {
        const skipped = await this.read(buffer, offset, Math.min(length, at - position), position)
        if (skipped.bytesRead === 0) return skipped
      }
      queueLimit = length
      // Hand over what is here rather than wait for a full buffer.
      while (queued === 0 && !ended) {
        if (failure !== undefined) throw failure
        if (body.isPaused()) body.resume()
        await new Promise<void>((resolve) => (wake = resolve))
      }
      if (queued === 0 && failure !== undefined) throw failure
      const filled = take(buffer, offset, length)
      if (queued < queueLimit && !ended && body.isPaused()) body.resume()
      position += filled
      return { bytesRead: filled }
    },
    async close() {
      if (!ended) body.destroy()
    },
  }
}
