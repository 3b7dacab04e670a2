/**
 * A `RangeReader` over a body that streams forward from `start` (an object
 * store's GET with `Range`). Reads pull from the stream in paused mode, so
 * what one open stream holds is its own high-water mark plus one socket read
 * (tens of KiB), whatever the size of the object; the caller's buffer is the
 * only large allocation, and it comes from the shared pool.
 */

import type { Readable } from 'node:stream'
import type { RangeReader } from './object-store.js'

export function createStreamReader(body: Readable, start: number): RangeReader {
  let position = start
  let leftover: Buffer | undefined
  let ended = false
  let failure: Error | undefined
  body.pause()
  body.once('end', () => (ended = true))
  body.once('error', (error) => (failure = error))
  body.once('close', () => {
    if (!ended) failure ??= new Error(`the store's body closed at byte ${position}`)
  })

  /** Resolves once the stream may have more to read, has ended or failed. */
  const readable = () =>
    new Promise<void>((resolve) => {
      const done = () => {
        body.off('readable', done)
        body.off('end', done)
        body.off('close', done)
        body.off('error', done)
        resolve()
      }
      body.once('readable', done)
      body.once('end', done)
      body.once('close', done)
      body.once('error', done)
    })

  return {
    async read(buffer, offset, length, at) {
      if (at < position) throw new Error(`a streamed read cannot go back from byte ${position} to ${at}`)
      // Bytes the caller had from elsewhere (a fill's memory) are read and dropped.
      while (position < at) {
        const skipped = await this.read(buffer, offset, Math.min(length, at - position), position)
        if (skipped.bytesRead === 0) return skipped
      }
      let filled = 0
      while (filled < length) {
        const chunk = leftover ?? (body.read() as Buffer | null)
        leftover = undefined
        if (chunk === null) {
          if (failure !== undefined) throw failure
          // Hand over what is here rather than wait for a full buffer.
          if (ended || filled > 0) break
          await readable()
          continue
        }
        const take = Math.min(chunk.length, length - filled)
        chunk.copy(buffer, offset + filled, 0, take)
        if (take < chunk.length) leftover = chunk.subarray(take)
        filled += take
      }
      position += filled
      return { bytesRead: filled }
    },
    async close() {
      if (!ended) body.destroy()
    },
  }
}
