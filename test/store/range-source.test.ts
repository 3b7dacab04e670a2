/**
 * sendRange over real sockets: a stored file on disk sent by a node:http
 * server to real clients, with the read buffers shared through a pool.
 * Reusing buffers must never let one transfer's bytes reach another client.
 */

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { randomBytes } from 'node:crypto'
import { createServer, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createBufferPool } from '../../src/store/buffer-pool.js'
import { READ_CHUNK_BYTES, sendRange, storedRange, type RangeSource } from '../../src/store/range-source.js'
import { rawRequest, sha256 } from '../support/http.js'

// Files of different bytes and of sizes that are not whole chunks.
const FILES = { a: 5 * READ_CHUNK_BYTES + 12_345, b: 3 * READ_CHUNK_BYTES + 1 }

describe('sendRange with pooled read buffers', () => {
  const pool = createBufferPool({ budgetBytes: 16 * READ_CHUNK_BYTES, idleMs: 60_000 })
  const contents = new Map<string, Buffer>()
  let dir: string
  let server: Server
  let base: string
  let sending = 0
  let sent: Promise<void>[] = []

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sstream-range-'))
    for (const [name, size] of Object.entries(FILES)) {
      const bytes = randomBytes(size)
      contents.set(name, bytes)
      await writeFile(join(dir, name), bytes)
    }
    server = createServer((request, response) => {
      const name = (request.url ?? '').slice(1)
      const size = FILES[name as keyof typeof FILES]
      void (async () => {
        const handle = await open(join(dir, name), 'r')
        response.writeHead(200, { 'content-length': String(size) })
        sending++
        const done = sendRange(storedRange(handle, 0, size - 1), response, { onBytes: () => undefined, pool }).finally(() => sending--)
        sent.push(done)
      })()
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  after(async () => {
    await new Promise((resolve) => server.close(resolve))
    await rm(dir, { recursive: true, force: true })
  })

  /** Resolves once every transfer started has given its buffers back. */
  async function settled(): Promise<void> {
    await Promise.all(sent)
    sent = []
    assert.equal(sending, 0)
  }

  test('clients fetching different files at once each get exactly their own bytes', async () => {
    const names = ['a', 'b', 'a', 'b', 'a', 'b', 'a', 'b']
    const responses = await Promise.all(names.map((name) => rawRequest(base, `/${name}`)))
    for (const [at, response] of responses.entries()) {
      const name = names[at] as string
      assert.ok(response.complete, name)
      assert.equal(sha256(response.body), sha256(contents.get(name) as Buffer), `client ${at} (${name}) got other bytes`)
    }
    await settled()
  })

  test('transfers one after another reuse the same memory, and give it back each time', async () => {
    await settled()
    const before = pool.stats().allocatedBytes
    for (let i = 0; i < 5; i++) {
      const response = await rawRequest(base, '/a')
      assert.equal(sha256(response.body), sha256(contents.get('a') as Buffer))
      await settled()
      assert.equal(pool.stats().heldBytes, 0)
    }
    assert.equal(pool.stats().allocatedBytes, Math.max(before, 32 * READ_CHUNK_BYTES), 'one slab serves transfers in a row')
  })

  test('a client that leaves mid-transfer gives its buffers back, and the others still get their own bytes', async () => {
    await settled()
    const [left, ...stayed] = await Promise.all([
      rawRequest(base, '/a', { abortAfterBytes: READ_CHUNK_BYTES }),
      rawRequest(base, '/b'),
      rawRequest(base, '/a'),
    ])
    assert.equal(left?.complete, false)
    for (const response of stayed) assert.ok(response.complete)
    assert.equal(sha256(stayed[0]?.body as Buffer), sha256(contents.get('b') as Buffer))
    assert.equal(sha256(stayed[1]?.body as Buffer), sha256(contents.get('a') as Buffer))
    await settled()
    assert.deepEqual([pool.stats().heldBytes, pool.stats().transfers], [0, 0], 'every buffer back in the pool')
    // The buffers the leaving client held are reused: the next transfers must still be exact.
    const next = await Promise.all([rawRequest(base, '/b'), rawRequest(base, '/a')])
    assert.equal(sha256(next[0]?.body as Buffer), sha256(contents.get('b') as Buffer))
    assert.equal(sha256(next[1]?.body as Buffer), sha256(contents.get('a') as Buffer))
    await settled()
  })
})

describe('sendRange to a client that has just left', () => {
  test('a write made after the socket is destroyed, before it has closed, still ends the transfer', async () => {
    // A fill's bytes held in memory: written in the same tick they become available, with no disk read between.
    const bytes = randomBytes(3 * READ_CHUNK_BYTES)
    let available = READ_CHUNK_BYTES
    let grow = () => undefined as void
    const source: RangeSource = {
      start: 0,
      end: bytes.length - 1,
      open: () => Promise.reject(new Error('held bytes need no file')),
      available: () => available,
      final: () => available === bytes.length,
      changed: () => new Promise<void>((resolve) => (grow = resolve)),
      held: (position, end) => [bytes.subarray(position, end)],
      close: () => Promise.resolve(),
    }
    let response: ServerResponse | undefined
    let sending: Promise<void> | undefined
    const server = createServer((_request, res) => {
      response = res
      res.writeHead(200, { 'content-length': String(bytes.length) })
      sending = sendRange(source, res, { onBytes: () => undefined, pool: createBufferPool({ budgetBytes: 2 * READ_CHUNK_BYTES, idleMs: 60_000 }) })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    try {
      const port = (server.address() as AddressInfo).port
      const client = await rawRequest(`http://127.0.0.1:${port}`, '/', { abortAfterBytes: READ_CHUNK_BYTES })
      assert.equal(client.complete, false)
      // The socket is destroyed now but emits 'close' only later; the next bytes are written in between.
      response?.socket?.destroy()
      available = bytes.length
      grow()
      const outcome = await Promise.race([sending?.then(() => 'settled'), new Promise((resolve) => setTimeout(resolve, 3_000, 'hung'))])
      assert.equal(outcome, 'settled', 'the sender still waits for a write that was dropped')
    } finally {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  })
})

describe('sendRange whose client left before it started', () => {
  test('closes the stored file it was given although it never reads it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sstream-range-'))
    try {
      await writeFile(join(dir, 'file'), randomBytes(1024))
      const handle = await open(join(dir, 'file'), 'r')
      let response: ServerResponse | undefined
      const server = createServer((_request, res) => (response = res))
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      try {
        const port = (server.address() as AddressInfo).port
        void rawRequest(`http://127.0.0.1:${port}`, '/', { abortAfterBytes: 1 }).catch(() => undefined)
        while (response === undefined) await new Promise((resolve) => setTimeout(resolve, 10))
        response.writeHead(200, { 'content-length': '1024' })
        await sendRange(storedRange(handle, 0, 1023), response, { onBytes: () => undefined, pool: createBufferPool({ budgetBytes: 2 * READ_CHUNK_BYTES, idleMs: 60_000 }), signal: AbortSignal.abort() })
        // A closed FileHandle has fd -1; an open one would be closed by the garbage collector, with a warning.
        assert.equal(handle.fd, -1, 'the stored file is still open')
      } finally {
        server.closeAllConnections()
        await new Promise((resolve) => server.close(resolve))
      }
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
