/**
 * The reader over an object store's streamed body (the S3 store's hits): a
 * sender passes the body's own chunks on without read buffers, and the
 * reader holds about one read's worth of the body, however large it is.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import { createBufferPool } from '../../src/store/buffer-pool.js'
import { READ_CHUNK_BYTES, sendRange, storedRange } from '../../src/store/range-source.js'
import { createStreamReader } from '../../src/store/stream-reader.js'
import { rawRequest, sha256 } from '../support/http.js'

const CHUNK_BYTES = 64 * 1024

/** A body of `chunks` random 64 KiB chunks, produced only as it is read; `pulled` counts what was produced. */
function countedBody(chunks: number): { body: Readable; bytes: Buffer; pulled: () => number } {
  const bytes = randomBytes(chunks * CHUNK_BYTES)
  let next = 0
  const body = new Readable({
    read() {
      this.push(next < chunks ? bytes.subarray(next * CHUNK_BYTES, ++next * CHUNK_BYTES) : null)
    },
  })
  return { body, bytes, pulled: () => next * CHUNK_BYTES }
}

describe('the stream reader', () => {
  test('a sender passes the body\'s chunks on as they are, under the read buffer budget: the bytes are exact and the budget is given back', async () => {
    const pool = createBufferPool({ budgetBytes: 4 * READ_CHUNK_BYTES, idleMs: 60_000 })
    const { body, bytes } = countedBody(5 * 16 + 3)
    let sent: Promise<void> | undefined
    const server = createServer((_request, response) => {
      response.writeHead(200, { 'content-length': String(bytes.length) })
      sent = sendRange(storedRange(createStreamReader(body, 0), 0, bytes.length - 1), response, { onBytes: () => undefined, pool })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    try {
      const response = await rawRequest(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, '/')
      await sent
      assert.ok(response.complete)
      assert.equal(sha256(response.body), sha256(bytes))
      assert.equal(pool.stats().heldBytes, 0)
      assert.equal(pool.stats().transfers, 0)
    } finally {
      await new Promise((resolve) => server.close(resolve))
    }
  })

  test('holds about one read\'s worth of the body, and reads many chunks at once when they are there', async () => {
    const { body, bytes, pulled } = countedBody(128)
    const reader = createStreamReader(body, 0)
    const read = 256 * 1024
    const first = await reader.readChunks!(read, 0)
    // The body runs ahead of the reader only up to the read's length, plus the stream's own small buffer.
    await new Promise((resolve) => setTimeout(resolve, 100))
    assert.ok(pulled() <= 2 * read + 2 * CHUNK_BYTES, `${pulled()} bytes pulled after one read of ${read}`)
    const second = await reader.readChunks!(read, Buffer.concat(first).length)
    assert.ok(second.length > 1, 'one read took one chunk where several were queued')
    const buffer = Buffer.alloc(bytes.length)
    let position = Buffer.concat([...first, ...second]).copy(buffer)
    for (;;) {
      const { bytesRead } = await reader.read(buffer, position, Math.min(read, bytes.length - position), position)
      if (bytesRead === 0) break
      position += bytesRead
    }
    assert.equal(position, bytes.length)
    assert.ok(buffer.equals(bytes))
    await reader.close()
  })

  test('a body that breaks fails the read once what came before it is handed over', async () => {
    const body = new Readable({ read() {} })
    const reader = createStreamReader(body, 0)
    body.push(Buffer.from('abc'))
    assert.deepEqual(Buffer.concat(await reader.readChunks!(10, 0)).toString(), 'abc')
    body.destroy(new Error('connection reset'))
    await assert.rejects(reader.readChunks!(10, 3), /connection reset/)
  })
})
