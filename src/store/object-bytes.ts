/**
 * A stored object's bytes as chunks, for consumers that take a whole file in
 * order (verify, export copies), whichever store holds it.
 */

import type { RangeReader } from './object-store.js'

const CHUNK_BYTES = 1024 * 1024

/** Reads `[start, end]` from `reader` forward and closes it, also when the consumer stops early. */
export async function* readChunks(reader: RangeReader, start: number, end: number): AsyncGenerator<Buffer> {
  let position = start
  try {
    while (position <= end) {
      const buffer = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, end + 1 - position))
      const { bytesRead } = await reader.read(buffer, 0, buffer.length, position)
      if (bytesRead === 0) return
      position += bytesRead
      yield bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead)
    }
  } finally {
    await reader.close()
  }
}
