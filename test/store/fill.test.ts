/**
 * Shared fills against a real upstream on 127.0.0.1, with a real filesystem store
 * and SQLite index in a temp directory, read through real fill readers.
 */

import assert from 'node:assert/strict'
import { after, afterEach, before, beforeEach, describe, test } from 'node:test'
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Readable } from 'node:stream'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { once } from 'node:events'
import { openStore, type Store } from '../../src/store/store.js'
import { VerificationError, createFillCoordinator, type Fill, type FillPlan, type FillSource, type FillTarget } from '../../src/store/fill.js'
import { createFillReader } from '../../src/store/range-source.js'
import type { StoredObject } from '../../src/store/object-store.js'
import { UpstreamError, createUpstreamClient, type UpstreamClient } from '../../src/upstream/upstream-client.js'
import { buildUpstreamTree, fileBytes, sha256, type UpstreamTree } from '../support/upstream-tree.js'
import { startUpstreamServer, type UpstreamServer } from '../support/upstream-server.js'
import { listTempFiles } from '../support/temp-files.js'

const SIZE = 256 * 1024
const IDLE_TIMEOUT_MS = 300

let tree: UpstreamTree
let upstream: UpstreamServer
let client: UpstreamClient
let store: Store
let dataDir: string
let fileCount = 0

before(async () => {
  tree = await buildUpstreamTree({ releases: [{ release: 'noble', version: '24.04' }], arches: ['amd64'], versions: ['20250101'] })
  upstream = await startUpstreamServer(tree)
  client = createUpstreamClient({ connectTimeoutMs: 2_000, idleTimeoutMs: IDLE_TIMEOUT_MS })
})
after(async () => {
  client.close()
  await upstream.close()
})
beforeEach(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'sstream-fill-'))
  store = await openStore({ dataDir, fillRetryBaseMs: 5 })
})
afterEach(async () => {
  await store.close()
  await rm(dataDir, { recursive: true, force: true })
})

/** A fresh file on the upstream, so counters and faults of one test never meet another's. */
function upstreamFile(size = SIZE): { target: FillTarget; content: Buffer } {
  const path = `files/${++fileCount}`
  const content = fileBytes(path, size)
  tree.files.set(path, content)
  return { target: { sha256: sha256(content), size, path }, content }
}

/** What the proxy passes: the item's upstream URL, asking for the rest with `Range` on a resume. */
const sourceFor =
  (base: string, path: string): FillSource =>
  (offset) =>
    client.request(base + path, offset > 0 ? { headers: { range: `bytes=${offset}-` } } : {})

const readerOf = (fill: Fill) => createFillReader({ fill, objects: store.objects })
const blobPath = (sha: string) => (store.objects.localPath as (sha256: string) => string)(sha)

/** Everything a reader yields, and how it ended. */
async function drain(readable: Readable): Promise<{ bytes: Buffer; error: Error | undefined }> {
  const chunks: Buffer[] = []
  try {
    for await (const chunk of readable) chunks.push(chunk as Buffer)
    return { bytes: Buffer.concat(chunks), error: undefined }
  } catch (error) {
    return { bytes: Buffer.concat(chunks), error: error as Error }
  }
}

/** Resolves once the fill satisfies `predicate` (checked on every progress event). */
async function until(fill: Fill, predicate: (fill: Fill) => boolean): Promise<void> {
  while (!predicate(fill)) await once(fill, 'progress')
}

/** A one-off upstream for behaviour the test upstream does not offer; it records each request's headers. */
async function startServer(handler: (req: IncomingMessage, res: ServerResponse) => void) {
  const requests: IncomingHttpHeaders[] = []
  const server = createServer((req, res) => {
    requests.push(req.headers)
    handler(req, res)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    requests,
    close: async () => {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
}

const exists = (path: string) => stat(path).then(() => true, () => false)
const temps = () => listTempFiles(dataDir)

describe('a fill', () => {
  test('makes one upstream request for many readers, who all get the exact bytes; the file is committed with its row', async () => {
    const { target, content } = upstreamFile()
    upstream.setFault(target.path, { kind: 'rate', bytesPerSecond: 2 * 1024 * 1024 })
    const committed: Fill[] = []
    await store.close()
    store = await openStore({ dataDir, onCommitted: (fill) => committed.push(fill) })

    const fill = store.fills.fill(target, sourceFor(upstream.url, target.path))
    const results = []
    for (let i = 0; i < 5; i++) {
      assert.equal(store.fills.fill(target, sourceFor(upstream.url, target.path)), fill, 'the same sha256 joins the running fill')
      results.push(drain(readerOf(fill)))
    }
    for (const { bytes, error } of await Promise.all(results)) {
      assert.equal(error, undefined)
      assert.ok(bytes.equals(content))
    }
    await fill.done
    assert.equal(upstream.requestCount(target.path), 1)
    assert.equal(fill.state, 'committed')
    assert.deepEqual(committed, [fill])
    assert.ok((await readFile(blobPath(target.sha256))).equals(content))
    assert.equal(store.index.get(target.sha256)?.size, SIZE)
    assert.deepEqual(await temps(), [])
    assert.equal(store.fills.get(target.sha256), undefined)
  })

  test('a reader that arrives mid-fill, and one that arrives after the commit, get the whole file', async () => {
    const { target, content } = upstreamFile()
    upstream.setFault(target.path, { kind: 'rate', bytesPerSecond: 1024 * 1024 })
    const fill = store.fills.fill(target, sourceFor(upstream.url, target.path))
    await until(fill, (f) => f.written >= SIZE / 4)
    assert.equal(fill.state, 'filling')
    const middle = drain(readerOf(fill))
    await fill.done
    const late = drain(readerOf(fill))
    for (const { bytes, error } of [await middle, await late]) {
      assert.equal(error, undefined)
      assert.ok(bytes.equals(content))
    }
  })

  test('holds the last 4 MiB written in memory, the same bytes as the file, and lets go of them once ended', async () => {
    const size = 6 * 1024 * 1024
    const { target, content } = upstreamFile(size)
    upstream.setFault(target.path, { kind: 'rate', bytesPerSecond: 16 * 1024 * 1024 })
    const fill = store.fills.fill(target, sourceFor(upstream.url, target.path))
    await until(fill, (f) => f.written >= 5 * 1024 * 1024)
    const written = fill.written
    const recent = fill.held(written - 3 * 1024 * 1024, written)
    assert.ok(recent !== undefined, 'the last 3 MiB are held')
    assert.ok(Buffer.concat(recent).equals(content.subarray(written - 3 * 1024 * 1024, written)))
    assert.equal(fill.held(0, 1024), undefined, 'the start of the file is read from disk')
    assert.equal(fill.held(written - 10, written + 10), undefined, 'nothing past what is written')
    const { bytes, error } = await drain(readerOf(fill))
    assert.equal(error, undefined)
    assert.ok(bytes.equals(content))
    await fill.done
    assert.equal(fill.held(size - 10, size), undefined)
  })

  test('a reader can ask for a range of the file', async () => {
    const { target, content } = upstreamFile()
    const fill = store.fills.fill(target, sourceFor(upstream.url, target.path))
    const { bytes, error } = await drain(createFillReader({ fill, objects: store.objects, start: 1000, end: 1999 }))
    assert.equal(error, undefined)
    assert.ok(bytes.equals(content.subarray(1000, 2000)))
    assert.ok(fill.state === 'verified' || fill.state === 'committed', 'a range ends only once the whole file is verified')
  })

  test('a reader of a range of a file that fails verification errors instead of ending', async () => {
    const { target } = upstreamFile()
    upstream.setFault(target.path, { kind: 'corrupt', offset: 1500 })
    const fill = store.fills.fill(target, sourceFor(upstream.url, target.path))
    const { error } = await drain(createFillReader({ fill, objects: store.objects, start: 1000, end: 1999 }))
    assert.ok(error instanceof VerificationError)
    await assert.rejects(fill.done, VerificationError)
  })

  test('an empty file is released only once verified', async () => {
    const path = `files/${++fileCount}`
    tree.files.set(path, Buffer.alloc(0))
    const good = store.fills.fill({ sha256: sha256(Buffer.alloc(0)), size: 0, path }, sourceFor(upstream.url, path))
    const ok = await drain(readerOf(good))
    assert.equal(ok.error, undefined)
    assert.equal(ok.bytes.length, 0)
    await good.done

    // Signed metadata whose sha256 the empty body does not match: the reader must not end cleanly.
    const bad = store.fills.fill({ sha256: 'f'.repeat(64), size: 0, path }, sourceFor(upstream.url, path))
    const failed = await drain(readerOf(bad))
    assert.ok(failed.error instanceof VerificationError)
    await assert.rejects(bad.done, VerificationError)
  })

  test('holds back the last byte until the body has ended and the sha256 matched', async () => {
    const { target, content } = upstreamFile()
    // Every byte arrives, but the body (chunked, without Content-Length) never ends:
    // nothing proves yet that the file is complete.
    const server = await startServer((_req, res) => {
      res.writeHead(200)
      res.write(content)
    })
    try {
      const fill = store.fills.fill(target, sourceFor(server.url, target.path))
      const received: Buffer[] = []
      const reader = readerOf(fill)
      reader.on('data', (chunk: Buffer) => received.push(chunk))
      const ended = once(reader, 'end')

      await until(fill, (f) => f.written === SIZE)
      assert.equal(fill.state, 'filling')
      assert.equal(fill.releasable, SIZE - 1)
      await new Promise((resolve) => setTimeout(resolve, IDLE_TIMEOUT_MS / 3))
      assert.equal(Buffer.concat(received).length, SIZE - 1, 'the reader has all but the last byte and waits')
      assert.equal(fill.state, 'filling')

      // The idle timeout ends the silent transfer; every byte is in, so the fill verifies, commits and releases the rest.
      await fill.done
      await ended
      assert.ok(Buffer.concat(received).equals(content))
      assert.equal(server.requests.length, 1)
    } finally {
      await server.close()
    }
  })

  test('a corrupt body fails with VerificationError: the temp file is removed, readers error, nothing is stored', async () => {
    const { target } = upstreamFile()
    upstream.setFault(target.path, { kind: 'corrupt', offset: 1234 })
    const failed: Error[] = []
    await store.close()
    store = await openStore({ dataDir, onFailed: (_fill, error) => failed.push(error) })
    const fill = store.fills.fill(target, sourceFor(upstream.url, target.path))
    const reader = drain(readerOf(fill))
    await assert.rejects(fill.done, (error: unknown) => {
      assert.ok(error instanceof VerificationError)
      assert.ok(error.message.includes(target.path) && error.message.includes(target.sha256), error.message)
      return true
    })
    const { bytes, error } = await reader
    assert.ok(error instanceof VerificationError)
    assert.ok(bytes.length < SIZE, 'a reader never gets a complete body of bad bytes')
    assert.equal(fill.state, 'failed')
    assert.equal(failed.length, 1)
    assert.equal(upstream.requestCount(target.path), 1, 'a checksum mismatch is not retried')
    assert.deepEqual(await temps(), [])
    assert.equal(await exists(blobPath(target.sha256)), false)
    assert.equal(store.index.get(target.sha256), undefined)
  })

  test('a body corrupt in its very last byte is never released to a reader', async () => {
    const { target } = upstreamFile()
    upstream.setFault(target.path, { kind: 'corrupt', offset: SIZE - 1 })
    const fill = store.fills.fill(target, sourceFor(upstream.url, target.path))
    const { bytes, error } = await drain(readerOf(fill))
    await assert.rejects(fill.done, VerificationError)
    assert.ok(error instanceof VerificationError)
    assert.ok(bytes.length <= SIZE - 1)
  })

  test('a connection reset mid-body is resumed with Range from the byte where it stopped', async () => {
    const { target, content } = upstreamFile()
    upstream.setFault(target.path, { kind: 'reset', afterBytes: 100_000 })
    const base = sourceFor(upstream.url, target.path)
    let calls = 0
    // Fail once: the fault applies to the first request only.
    const source: FillSource = async (offset) => {
      const response = await base(offset)
      if (++calls === 1) upstream.setFault(target.path, undefined)
      return response
    }
    const fill = store.fills.fill(target, source)
    const { bytes, error } = await drain(readerOf(fill))
    await fill.done
    assert.equal(error, undefined)
    assert.ok(bytes.equals(content))
    assert.equal(upstream.requestCount(target.path), 2)
    const ranges = upstream.rangeRequests(target.path)
    assert.equal(ranges.length, 1)
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(ranges[0] ?? '')?.[1])
    assert.ok(resumedAt > 0 && resumedAt <= 100_000, `resumed at ${ranges[0]}`)
  })

  test('a body that keeps breaking off fails after the configured attempts, each resuming further on', async () => {
    const { target } = upstreamFile()
    upstream.setFault(target.path, { kind: 'truncate', afterBytes: 1000 })
    const fill = store.fills.fill(target, sourceFor(upstream.url, target.path))
    const reader = drain(readerOf(fill))
    await assert.rejects(fill.done, (error: unknown) => {
      assert.ok(error instanceof UpstreamError)
      assert.ok(error.message.includes(upstream.url + target.path), error.message)
      return true
    })
    assert.ok((await reader).error instanceof UpstreamError)
    assert.deepEqual(upstream.rangeRequests(target.path), ['bytes=1000-', 'bytes=2000-'])
    assert.deepEqual(await temps(), [])
  })

  test('an upstream that ignores Range and answers 200 from byte 0 has the bytes already held skipped', async () => {
    const { target, content } = upstreamFile()
    // Cuts the first answer off half-way, then sends the whole file with 200 whatever was asked.
    const server = await startServer((req, res) => {
      res.writeHead(200, { 'content-length': String(content.length) })
      if (server.requests.length > 1) return void res.end(content)
      res.write(content.subarray(0, SIZE / 2), () => setTimeout(() => res.socket?.resetAndDestroy(), 20))
    })
    try {
      const fill = store.fills.fill(target, sourceFor(server.url, target.path))
      const { bytes, error } = await drain(readerOf(fill))
      await fill.done
      assert.equal(error, undefined)
      assert.ok(bytes.equals(content))
      assert.equal(server.requests.length, 2)
      assert.equal(server.requests[0]?.range, undefined)
      assert.match(server.requests[1]?.range ?? '', /^bytes=\d+-$/)
      assert.ok((await readFile(blobPath(target.sha256))).equals(content))
    } finally {
      await server.close()
    }
  })

  test('a Content-Length other than the signed size fails at once, without a retry', async () => {
    const { target } = upstreamFile()
    const fill = store.fills.fill({ ...target, size: SIZE + 1 }, sourceFor(upstream.url, target.path))
    await assert.rejects(fill.done, (error: unknown) => {
      assert.ok(error instanceof VerificationError)
      assert.match(error.message, /Content-Length 262144 differs from the signed metadata \(262145\)/)
      return true
    })
    assert.equal(upstream.requestCount(target.path), 1)
    assert.deepEqual(await temps(), [])
  })

  test('a body longer than the signed size fails as soon as it passes it', async () => {
    const { target } = upstreamFile()
    upstream.setFault(target.path, { kind: 'extra', bytes: 10 })
    const fill = store.fills.fill(target, sourceFor(upstream.url, target.path))
    const { bytes, error } = await drain(readerOf(fill))
    await assert.rejects(fill.done, /upstream sent more than the 262144 bytes/)
    assert.ok(error instanceof VerificationError)
    assert.ok(bytes.length < SIZE)
    assert.equal(upstream.requestCount(target.path), 1)
  })

  test('an HTTP error status fails the fill naming the URL; a 404 is not retried', async () => {
    const { target } = upstreamFile()
    upstream.setFault(target.path, { kind: 'status', status: 404 })
    const fill = store.fills.fill(target, sourceFor(upstream.url, target.path))
    await assert.rejects(fill.done, (error: unknown) => {
      assert.ok(error instanceof UpstreamError)
      assert.equal(error.status, 404)
      assert.ok(error.message.includes(upstream.url + target.path), error.message)
      return true
    })
    assert.equal(upstream.requestCount(target.path), 1)
  })

  test('a client leaving does not stop the fill', async () => {
    const { target, content } = upstreamFile()
    upstream.setFault(target.path, { kind: 'rate', bytesPerSecond: 2 * 1024 * 1024 })
    const fill = store.fills.fill(target, sourceFor(upstream.url, target.path))
    const reader = readerOf(fill)
    await once(reader, 'readable')
    reader.destroy()
    await fill.done
    assert.ok((await readFile(blobPath(target.sha256))).equals(content))
  })
})

describe('a planned fill (a fleet decides where the bytes come from)', () => {
  test('a plan that finds the file stored commits it at once: no transfer, a row, the plan ended', async () => {
    const { target } = upstreamFile()
    let ended = 0
    const fills = createFillCoordinator({
      objects: store.objects,
      index: store.index,
      plan: async (_target, upstream) => ({ stored: true, source: upstream, storedElsewhere: false, role: () => undefined, end: async () => void ended++ }),
    })
    const fill = fills.fill(target, sourceFor(upstream.url, target.path))
    await fill.done
    assert.equal(fill.state, 'committed')
    assert.equal(store.index.get(target.sha256)?.size, target.size)
    assert.equal(upstream.requestCount(target.path), 0)
    assert.equal(ended, 1)
  })

  test('bytes from another replica that keep breaking off cost no attempt while they advance, are not counted as upstream bytes, and are verified', async () => {
    const { target, content } = upstreamFile()
    upstream.setFault(target.path, { kind: 'truncate', afterBytes: 32 * 1024 })
    const counted = { upstream: 0, peer: 0, transfers: 0 }
    let ended = 0
    const plan: FillPlan = {
      stored: false,
      // The test upstream stands in for the owner's internal endpoint.
      source: async (offset) => ({ ...(await sourceFor(upstream.url, target.path)(offset)), from: 'peer' }),
      storedElsewhere: true,
      role: () => ({ role: 'follower', owner: 'http://owner.example/' }),
      end: async () => void ended++,
    }
    const fills = createFillCoordinator({
      objects: store.objects,
      index: store.index,
      attempts: 2,
      retryBaseMs: 1,
      plan: async () => plan,
      onUpstreamBytes: (bytes) => (counted.upstream += bytes),
      onPeerBytes: (bytes) => (counted.peer += bytes),
      onUpstreamTransfer: () => counted.transfers++,
    })
    const fill = fills.fill(target, sourceFor(upstream.url, target.path))
    const reader = drain(readerOf(fill))
    await until(fill, (current) => current.fleet !== undefined)
    assert.deepEqual(fill.fleet, { role: 'follower', owner: 'http://owner.example/' })
    await fill.done
    assert.ok((await reader).bytes.equals(content))
    assert.equal(upstream.rangeRequests(target.path).length, SIZE / (32 * 1024) - 1)
    assert.deepEqual(counted, { upstream: 0, peer: SIZE, transfers: 0 })
    assert.equal(ended, 1)
  })
})

describe('a failed fill', () => {
  test('cannot be joined: a request that comes while the failure is still being cleaned up starts a fresh fill', async () => {
    const { target, content } = upstreamFile()
    upstream.setFault(target.path, { kind: 'corrupt', offset: 1234 })
    // The moment the race needs, made certain: the failed fill is removing its
    // temp file, exactly when a client that saw its connection break retries.
    let joined: Fill | undefined
    const objects = {
      ...store.objects,
      createWriter: async (object: StoredObject) => {
        const writer = await store.objects.createWriter(object)
        return Object.defineProperties({ ...writer }, {
          written: { get: () => writer.written },
          discard: {
            value: async () => {
              if (joined === undefined) {
                upstream.setFault(target.path, undefined)
                joined = fills.fill(target, sourceFor(upstream.url, target.path))
              }
              await writer.discard()
            },
          },
        })
      },
    }
    const fills = createFillCoordinator({ objects, index: store.index, retryBaseMs: 5 })
    const failing = fills.fill(target, sourceFor(upstream.url, target.path))
    await assert.rejects(failing.done, VerificationError)
    assert.ok(joined !== undefined, 'the failure removed its temp file')
    assert.notEqual(joined, failing, 'the retry joined the fill that had failed')
    await joined.done
    assert.equal(joined.state, 'committed')
    assert.ok((await readFile(blobPath(target.sha256))).equals(content))
    assert.equal(fills.get(target.sha256), undefined, 'the failed fill, ending after the new one started, must not drop it from the running set')
  })
})

describe('abortAll', () => {
  test('fails every running fill at once: temp files removed, readers error, nothing stored', async () => {
    const files = [upstreamFile(), upstreamFile()]
    for (const { target } of files) upstream.setFault(target.path, { kind: 'rate', bytesPerSecond: 64 * 1024 })
    const fills = files.map(({ target }) => store.fills.fill(target, sourceFor(upstream.url, target.path)))
    const readers = fills.map((fill) => drain(readerOf(fill)))
    await Promise.all(fills.map((fill) => until(fill, (f) => f.written > 0)))
    assert.equal((await temps()).length, 2)

    const started = performance.now()
    await store.fills.abortAll('shutting down')
    assert.ok(performance.now() - started < 1_000, 'abortAll does not wait for the transfers')
    for (const fill of fills) {
      assert.equal(fill.state, 'failed')
      await assert.rejects(fill.done, /shutting down/)
    }
    for (const reader of readers) {
      const { bytes, error } = await reader
      assert.match(error?.message ?? '', /shutting down/)
      assert.ok(bytes.length < SIZE)
    }
    assert.deepEqual(store.fills.active(), [])
    assert.deepEqual(await temps(), [])
    assert.equal(store.index.totals().files, 0)
  })

  test('does not wait for a fill whose upstream has not answered yet, nor for a retry backoff', async () => {
    const slow = upstreamFile()
    upstream.setFault(slow.target.path, { kind: 'delay', ms: 1_500 })
    const retrying = upstreamFile()
    upstream.setFault(retrying.target.path, { kind: 'status', status: 503 })
    await store.close()
    store = await openStore({ dataDir, fillRetryBaseMs: 2_000 })
    const fills = [slow, retrying].map(({ target }) => store.fills.fill(target, sourceFor(upstream.url, target.path)))
    await new Promise((resolve) => setTimeout(resolve, 100))
    const started = performance.now()
    await store.fills.abortAll('shutting down')
    const took = performance.now() - started
    for (const fill of fills) await assert.rejects(fill.done, /shutting down/)
    assert.ok(took < 500, `abortAll took ${Math.round(took)} ms`)
    assert.equal(upstream.requestCount(retrying.target.path), 1)
    assert.deepEqual(await temps(), [])
  })
})
