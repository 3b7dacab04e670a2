/**
 * Readers that fell behind the bytes a running fill holds in memory share
 * chunk reads of its written bytes, as downloads of a stored file do: real
 * sockets, a real spool on disk, the last byte still held back until the
 * sha256 is checked.
 */

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { createHash, randomBytes } from 'node:crypto'
import { createServer, get, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { PassThrough } from 'node:stream'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openStore, type Store } from '../../src/store/store.js'
import type { Fill, FillTarget } from '../../src/store/fill.js'
import { createBufferPool } from '../../src/store/buffer-pool.js'
import { createSharedChunks } from '../../src/store/shared-chunks.js'
import { READ_CHUNK_BYTES, fillRange, sendRange } from '../../src/store/range-source.js'

const CLIENTS = 5
// Well beyond the 4 MiB a fill holds in memory, and not whole chunks.
const SIZE = 12 * READ_CHUNK_BYTES + 4321

describe('readers behind a running fill', () => {
  const pool = createBufferPool({ budgetBytes: 32 * READ_CHUNK_BYTES, idleMs: 60_000 })
  const chunks = createSharedChunks({ pool })
  let dataDir: string
  let store: Store
  let server: Server
  let base: string
  let fill: Fill | undefined

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'sstream-fill-chunks-'))
    store = await openStore({ dataDir })
    server = createServer((_request, response) => {
      const running = fill as Fill
      response.writeHead(200, { 'content-length': String(SIZE) })
      void sendRange(fillRange(running, store.objects), response, { onBytes: () => undefined, pool, chunks })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  after(async () => {
    await new Promise((resolve) => server.close(resolve))
    await store.close()
    await rm(dataDir, { recursive: true, force: true })
  })

  /** A client counting the body bytes; `done` resolves with them once complete, rejects if the connection breaks first. */
  function download(): { received: () => number; done: Promise<Buffer> } {
    // Settled, and possibly rejected, before the test looks: never an unhandled rejection.
    const parts: Buffer[] = []
    let received = 0
    const done = new Promise<Buffer>((resolve, reject) => {
      get(`${base}/file`, (response) => {
        response.on('data', (chunk: Buffer) => {
          parts.push(chunk)
          received += chunk.length
        })
        response.once('end', () => resolve(Buffer.concat(parts)))
        response.once('error', reject)
        response.once('aborted', () => reject(new Error('aborted')))
      }).once('error', reject)
    })
    done.catch(() => undefined)
    return { received: () => received, done }
  }

  /** As upstream sends it: in 64 KiB pieces, each a chunk the fill holds (or drops from its window). */
  function writeInPieces(body: PassThrough, bytes: Buffer): void {
    for (let at = 0; at < bytes.length; at += 64 * 1024) body.write(bytes.subarray(at, at + 64 * 1024))
  }

  async function until(condition: () => boolean): Promise<void> {
    while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5))
  }

  test('read each chunk for all of them, get every byte but the last before verification, and all of them after', async () => {
    const content = randomBytes(SIZE)
    const target: FillTarget = { sha256: createHash('sha256').update(content).digest('hex'), size: SIZE, path: 'files/behind' }
    const body = new PassThrough()
    fill = store.fills.fill(target, () => Promise.resolve({ url: 'test://files/behind', status: 200, headers: { 'content-length': String(SIZE) }, body }))
    writeInPieces(body, content.subarray(0, SIZE - 1))
    const running = fill
    await until(() => running.written === SIZE - 1)

    const clients = Array.from({ length: CLIENTS }, () => download())
    await until(() => clients.every((client) => client.received() === SIZE - 1))
    // Each behind the held window would have read its own 8 chunks; shared, far fewer reads serve them all.
    const { reads } = chunks.stats()
    assert.ok(reads >= 1, 'readers behind the held window read shared chunks')
    assert.ok(reads < CLIENTS * 8, `${reads} chunk reads for ${CLIENTS} clients`)
    // The last byte waits for the sha256: no client has a complete body yet.
    await new Promise((resolve) => setTimeout(resolve, 50))
    assert.ok(clients.every((client) => client.received() === SIZE - 1))

    body.end(content.subarray(SIZE - 1))
    for (const client of clients) assert.ok((await client.done).equals(content))
    await fill.done
    assert.equal(chunks.stats().chunks, 0, 'every chunk goes back once sent')
  })

  test('a fill failing its sha256 breaks every reader behind it', async () => {
    const content = randomBytes(SIZE)
    const target: FillTarget = { sha256: createHash('sha256').update(content).digest('hex'), size: SIZE, path: 'files/bad' }
    const body = new PassThrough()
    fill = store.fills.fill(target, () => Promise.resolve({ url: 'test://files/bad', status: 200, headers: { 'content-length': String(SIZE) }, body }))
    writeInPieces(body, content.subarray(0, SIZE - 1))
    const running = fill
    await until(() => running.written === SIZE - 1)
    const clients = Array.from({ length: CLIENTS }, () => download())
    await until(() => clients.every((client) => client.received() === SIZE - 1))

    body.end(Buffer.from([content[SIZE - 1]! ^ 0xff]))
    await assert.rejects(fill.done)
    for (const client of clients) assert.equal(await client.done.then(() => 'complete', () => 'broken'), 'broken')
  })
})
