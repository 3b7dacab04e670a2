/**
 * Bad input from clients that test/server/proxy.test.ts does not already
 * cover: huge request lines and headers, malformed Range headers, unusual
 * methods, slowloris clients, a thousand idle connections and clients that
 * stop reading a download. The proxy
 * answers each with the right status or closes the connection, keeps serving
 * everyone else, stays within bounded memory, and touches no file outside
 * its dataDir.
 */

import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { createLogger } from '../../src/log/logger.js'
import { MIRROR_PATH, startHarness, type Harness } from '../support/proxy-harness.js'
import { rawRequest, sha256 } from '../support/http.js'
import type { TreeItem } from '../support/upstream-tree.js'
import { evict, settle } from './support/evict.js'
import { storedBlobs } from './support/store-check.js'

const NEWEST = '20250201'

interface Exchange {
  /** The status of the first response, or undefined when the connection closed without one. */
  status: number | undefined
  text: string
  closedAfterMs: number
}

/** Writes `request` on a fresh connection (all at once, or `drip`ped byte by byte) and reads until the server closes. */
function exchange(url: string, request: string | Buffer, options: { dripMs?: number; timeoutMs?: number } = {}): Promise<Exchange> {
  const { hostname, port } = new URL(url)
  const started = performance.now()
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname)
    const chunks: Buffer[] = []
    let drip: NodeJS.Timeout | undefined
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`connection still open after ${options.timeoutMs ?? 10_000} ms`))
    }, options.timeoutMs ?? 10_000)
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('error', () => undefined)
    socket.on('close', () => {
      clearTimeout(timer)
      clearInterval(drip)
      const text = Buffer.concat(chunks).toString('latin1')
      const status = /^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]
      resolve({ status: status === undefined ? undefined : Number(status), text, closedAfterMs: performance.now() - started })
    })
    socket.on('connect', () => {
      const bytes = Buffer.from(request)
      if (options.dripMs === undefined) return void socket.write(bytes)
      let at = 0
      drip = setInterval(() => {
        if (at < bytes.length && !socket.destroyed) socket.write(bytes.subarray(at, ++at))
      }, options.dripMs)
    })
  })
}

function item(h: Harness, predicate: (item: TreeItem) => boolean): TreeItem {
  const found = h.tree.items.find(predicate)
  assert.ok(found, 'no such item in the test tree')
  return found
}

describe('bad client input', () => {
  let h: Harness
  let root: string
  let sentinel: string
  let kernel: TreeItem
  let squashfs: TreeItem
  before(async () => {
    // dataDir is one entry of a private directory, so anything written beside it shows.
    root = await mkdtemp(join(tmpdir(), 'sstream-client-input-'))
    sentinel = join(root, 'sentinel.txt')
    await writeFile(sentinel, 'must stay untouched\n')
    h = await startHarness({ dataDir: join(root, 'data') })
    kernel = item(h, (i) => i.item === 'boot-kernel' && i.path.startsWith(`noble/amd64/${NEWEST}/ga-`))
    squashfs = item(h, (i) => i.ftype === 'squashfs' && i.path.startsWith(`noble/amd64/${NEWEST}/`))
    assert.equal(sha256((await rawRequest(h.proxy.url, MIRROR_PATH + kernel.path)).body), kernel.sha256)
    await settle(h)
  })
  after(async () => {
    await h.close()
    await rm(root, { recursive: true, force: true })
  })

  /** The proxy still answers a normal request correctly. */
  async function assertServing(): Promise<void> {
    const response = await rawRequest(h.proxy.url, MIRROR_PATH + kernel.path)
    assert.equal(response.status, 200)
    assert.equal(sha256(response.body), kernel.sha256)
  }

  test('a 100 KB request line is refused with 414/431 (or the connection closed), and the proxy keeps serving', async () => {
    const path = `${MIRROR_PATH}${'a/'.repeat(50 * 1024)}x`
    const result = await exchange(h.proxy.url, `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`)
    assert.ok(result.status === undefined || result.status === 414 || result.status === 431, `got ${result.status}`)
    await assertServing()
  })

  test('huge headers (one of 100 KB, or 500 of 1 KB) are refused with 431 (or the connection closed), and the proxy keeps serving', async () => {
    const one = `GET ${MIRROR_PATH}${kernel.path} HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(100 * 1024)}\r\n\r\n`
    const many = `GET ${MIRROR_PATH}${kernel.path} HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 500 }, (_, i) => `X-H${i}: ${'c'.repeat(1024)}\r\n`).join('')}\r\n`
    for (const request of [one, many]) {
      const result = await exchange(h.proxy.url, request)
      assert.ok(result.status === undefined || result.status === 431, `got ${result.status}`)
    }
    await assertServing()
  })

  test('malformed Range headers: another unit, garbage, reversed or several ranges give the whole file; unsatisfiable ones 416', async () => {
    const whole = h.tree.files.get(kernel.path) as Buffer
    const full = ['bytes=abc', 'bytes=5-1', 'items=0-1', 'bytes=0-1,5-6', 'bytes=0-0, -1', 'bytes=', 'bytes=--1', 'bytes=1-2-3', 'bytes = 0-1', 'bytes=0x10-0x20', `bytes=${'9'.repeat(5000)}-1`]
    for (const range of full) {
      const response = await rawRequest(h.proxy.url, MIRROR_PATH + kernel.path, { headers: { range } })
      assert.equal(response.status, 200, range)
      assert.deepEqual(response.body, whole, range)
    }
    for (const range of ['bytes=-0', `bytes=${kernel.size}-${kernel.size + 10}`, `bytes=${'9'.repeat(30)}-`]) {
      const response = await rawRequest(h.proxy.url, MIRROR_PATH + kernel.path, { headers: { range } })
      assert.equal(response.status, 416, range)
      assert.equal(response.headers['content-range'], `bytes */${kernel.size}`, range)
    }
  })

  test('a malformed Range on a miss still fills the whole file correctly', async () => {
    await evict(h, squashfs)
    const response = await rawRequest(h.proxy.url, MIRROR_PATH + squashfs.path, { headers: { range: 'bytes=9-3' } })
    assert.equal(response.status, 200)
    assert.equal(response.headers['x-cache'], 'MISS')
    assert.equal(sha256(response.body), squashfs.sha256)
  })

  test('OPTIONS, TRACE, PROPFIND and a POST with a body are 405 on files, metadata and /status; nothing is fetched or stored', async () => {
    // The previous test's fill commits just after its client got the last byte.
    await settle(h)
    h.upstream.resetCounters()
    const blobsBefore = [...(await storedBlobs(h.dataDir)).keys()].sort()
    const cold = item(h, (i) => i.item === 'boot-initrd' && i.path.startsWith(`noble/amd64/${NEWEST}/hwe-`))
    for (const path of [MIRROR_PATH + cold.path, `${MIRROR_PATH}streams/v1/index.sjson`, '/status']) {
      for (const method of ['OPTIONS', 'TRACE', 'PROPFIND']) {
        const response = await rawRequest(h.proxy.url, path, { method })
        assert.equal(response.status, 405, `${method} ${path}`)
        assert.equal(response.headers.allow, 'GET, HEAD')
      }
      const post = await exchange(h.proxy.url, `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\nConnection: close\r\n\r\n${'p'.repeat(65536)}`)
      assert.equal(post.status, 405, `POST ${path}`)
    }
    const garbage = await exchange(h.proxy.url, `FROB ${MIRROR_PATH}${cold.path} HTTP/1.1\r\nHost: x\r\n\r\n`)
    assert.ok(garbage.status === undefined || garbage.status === 400 || garbage.status === 405, `unknown method gave ${garbage.status}`)
    const connect = await exchange(h.proxy.url, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n')
    assert.ok(connect.status === undefined || connect.status >= 400, `CONNECT gave ${connect.status}`)
    assert.equal(h.upstream.requestCount(), 0)
    assert.deepEqual([...(await storedBlobs(h.dataDir)).keys()].sort(), blobsBefore)
    await assertServing()
  })

  test('slowloris: clients dripping headers a byte at a time are cut by headersTimeout while others are served', async () => {
    // The proxy's own limit is 20 s; a shorter one keeps the test short.
    h.proxy.server.headersTimeout = 2_000
    h.proxy.server.requestTimeout = 3_000
    try {
      const slow = Array.from({ length: 20 }, () =>
        exchange(h.proxy.url, `GET ${MIRROR_PATH}${kernel.path} HTTP/1.1\r\nHost: x\r\nX-Slow: ${'s'.repeat(100)}\r\n\r\n`, { dripMs: 1000, timeoutMs: 8_000 }),
      )
      await sleep(500)
      const started = performance.now()
      await assertServing()
      assert.ok(performance.now() - started < 1000, 'a normal client must not wait behind slow ones')
      for (const result of await Promise.all(slow)) {
        assert.ok(result.status === undefined || result.status === 408, `a slow client got ${result.status}`)
        assert.ok(result.closedAfterMs < 5_000, `a slow client held its connection ${Math.round(result.closedAfterMs)} ms`)
      }
    } finally {
      h.proxy.server.headersTimeout = 20_000
      h.proxy.server.requestTimeout = 0
    }
    await assertServing()
  })

  test('1000 idle connections: the proxy keeps serving, memory stays bounded', async () => {
    const rssBefore = process.memoryUsage().rss
    const { hostname, port } = new URL(h.proxy.url)
    const sockets = await Promise.all(
      Array.from({ length: 1000 }, () => new Promise<net.Socket>((resolve, reject) => {
        const socket = net.connect(Number(port), hostname, () => resolve(socket))
        socket.on('error', reject)
      })),
    )
    try {
      const responses = await Promise.all(Array.from({ length: 20 }, () => rawRequest(h.proxy.url, MIRROR_PATH + kernel.path)))
      for (const response of responses) assert.equal(sha256(response.body), kernel.sha256)
      const grown = process.memoryUsage().rss - rssBefore
      assert.ok(grown < 100 * 1024 * 1024, `RSS grew by ${Math.round(grown / 1024 / 1024)} MB with 1000 idle connections`)
      assert.ok(sockets.every((socket) => !socket.destroyed), 'idle connections inside the timeouts stay open')
    } finally {
      for (const socket of sockets) socket.destroy()
    }
    await assertServing()
  })

  test('traversal towards a file beside dataDir reads and writes nothing outside dataDir', async () => {
    const before = await stat(sentinel)
    for (const path of [
      `${MIRROR_PATH}../../../../../../../../${sentinel.slice(1)}`,
      `${MIRROR_PATH}..%2f..%2f..%2f..%2f..%2f..%2f..%2f${sentinel.slice(1).replaceAll('/', '%2f')}`,
      `${MIRROR_PATH}%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/${sentinel.slice(1)}`,
      `${MIRROR_PATH}..%5c..%5c..%5c..%5c${sentinel.slice(1)}`,
      `${MIRROR_PATH}%c0%ae%c0%ae/%c0%ae%c0%ae/${sentinel.slice(1)}`,
      `/${'../'.repeat(10)}${sentinel.slice(1)}`,
    ]) {
      const response = await rawRequest(h.proxy.url, path)
      assert.ok(response.status === 400 || response.status === 404, `${path} gave ${response.status}`)
      assert.doesNotMatch(response.body.toString(), /must stay untouched/)
    }
    assert.deepEqual((await readdir(root)).sort(), ['data', 'sentinel.txt'])
    const after = await stat(sentinel)
    assert.equal(after.mtimeMs, before.mtimeMs)
    assert.equal(await readFile(sentinel, 'utf8'), 'must stay untouched\n')
  })
})

/** How many of this process's file descriptors are open on `path` (the proxy runs in the test's process). */
async function openFdsOn(path: string): Promise<number> {
  const targets = await Promise.all((await readdir('/proc/self/fd')).map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => '')))
  return targets.filter((target) => target === path).length
}

describe('a client that stops reading a download', () => {
  const STALL_MS = 1_000
  // Bigger than loopback's socket buffers on both sides, so a client that reads nothing stalls the proxy's writes.
  const SIZE = 24 * 1024 * 1024
  const lines: string[] = []
  let h: Harness
  let image: TreeItem
  before(async () => {
    h = await startHarness({
      tree: { releases: [{ release: 'noble', version: '24.04' }], arches: ['amd64'], versions: [NEWEST], sizes: { squashfs: SIZE } },
      log: createLogger({ json: true, write: (line) => lines.push(line) }),
      sendStallTimeoutMs: STALL_MS,
    })
    image = item(h, (i) => i.ftype === 'squashfs')
    assert.equal(sha256((await rawRequest(h.proxy.url, MIRROR_PATH + image.path)).body), image.sha256)
  })
  after(() => h.close())

  /** Requests the image on a raw connection; `read` decides when the client takes what has arrived. */
  function download(read: (socket: net.Socket) => void): Promise<{ bytes: number }> {
    const { hostname, port } = new URL(h.proxy.url)
    return new Promise((resolve) => {
      let bytes = 0
      const socket = net.connect(Number(port), hostname, () => {
        socket.write(`GET ${MIRROR_PATH}${image.path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)
        read(socket)
      })
      socket.on('data', (chunk: Buffer) => (bytes += chunk.length))
      socket.on('error', () => undefined)
      socket.on('close', () => resolve({ bytes }))
    })
  }

  test('is cut once it has taken nothing for the stall timeout, with a warning naming the file', async () => {
    // A paused client sees the end of the connection only once it reads again: it resumes well after the timeout.
    const stalled = await download((socket) => {
      socket.pause()
      setTimeout(() => socket.resume(), STALL_MS + 1_500)
    })
    assert.ok(stalled.bytes < SIZE, `the client got all ${SIZE} bytes: the proxy waited for it instead of cutting it`)
    const warning = lines.map((line) => JSON.parse(line) as Record<string, unknown>).find((entry) => entry.message === 'client stopped reading')
    assert.equal(warning?.path, MIRROR_PATH + image.path)
    const served = await rawRequest(h.proxy.url, MIRROR_PATH + image.path)
    assert.equal(sha256(served.body), image.sha256)
  })

  test('time spent waiting for the fill to reach a Range does not count as a stall', async () => {
    await evict(h, image)
    // The fill needs about 2 s to reach the range, twice the stall timeout.
    h.upstream.setDefaultRate(8 * 1024 * 1024)
    const before = lines.length
    try {
      const start = 16 * 1024 * 1024
      const response = await rawRequest(h.proxy.url, MIRROR_PATH + image.path, { headers: { range: `bytes=${start}-` } })
      assert.equal(response.status, 206)
      assert.ok(response.complete, 'the client was cut while it waited for the fill')
      assert.deepEqual(response.body, h.tree.files.get(image.path)?.subarray(start))
      assert.ok(!lines.slice(before).some((line) => line.includes('client stopped reading')))
    } finally {
      h.upstream.setDefaultRate(undefined)
    }
  })

  test('a pipelined download opens its file only at its turn, and not at all when its client leaves first', async () => {
    const kernel = item(h, (i) => i.item === 'boot-kernel')
    assert.equal(sha256((await rawRequest(h.proxy.url, MIRROR_PATH + kernel.path)).body), kernel.sha256)
    const blob = h.proxy.core.store.objects.localPath!(kernel.sha256)
    await evict(h, image)
    // The first response is a slow miss; the second, a hit, waits behind it in Node's queue with no socket.
    h.upstream.setDefaultRate(1024 * 1024)
    const warnings: string[] = []
    const onWarning = (warning: Error) => warnings.push(warning.message)
    process.on('warning', onWarning)
    try {
      const { hostname, port } = new URL(h.proxy.url)
      const socket = net.connect(Number(port), hostname)
      await new Promise((resolve) => socket.once('connect', resolve))
      const get = (path: string) => `GET ${MIRROR_PATH}${path} HTTP/1.1\r\nHost: x\r\n\r\n`
      socket.write(get(image.path) + get(kernel.path))
      socket.on('data', () => undefined)
      await sleep(300)
      assert.equal(await openFdsOn(blob), 0, 'the queued hit has opened its file before its turn')
      socket.destroy()
      const deadline = Date.now() + 1_000
      while ((await openFdsOn(blob)) > 0 && Date.now() < deadline) await sleep(50)
      assert.equal(await openFdsOn(blob), 0, 'the proxy still holds the stored file open')
      // Closed by the sender, not by the garbage collector on a handle left behind.
      assert.deepEqual(warnings, [])
    } finally {
      process.off('warning', onWarning)
      h.upstream.setDefaultRate(undefined)
    }
  })

  test('a client that reads in bursts with pauses shorter than the stall timeout gets the whole file', async () => {
    let timer: NodeJS.Timeout | undefined
    const bursty = await download((socket) => {
      socket.pause()
      timer = setInterval(() => {
        socket.resume()
        setTimeout(() => socket.pause(), 20)
      }, STALL_MS * 0.6)
    })
    clearInterval(timer)
    // Headers included, hence at least the body's size.
    assert.ok(bursty.bytes >= SIZE, `the client got ${bursty.bytes} of ${SIZE} bytes before the proxy closed`)
  })
})
