/**
 * A connection costs a bounded amount however many requests it queues: a
 * pipelined response opens its file and takes read buffers only once it is at
 * the head of its connection, a connection holds at most
 * `limits.pipelinedRequests` requests, and everything is released when the
 * client leaves. The proxy runs in the test's process, so its descriptors are
 * this process's /proc/self/fd and its read buffers the shared pool.
 */

import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { readdir, readlink } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { DEFAULT_LIMITS } from '../../src/config/defaults.js'
import { MIRROR_PATH, startHarness, type Harness } from '../support/proxy-harness.js'
import { rawRequest, sha256 } from '../support/http.js'
import type { TreeItem } from '../support/upstream-tree.js'

const FILE_BYTES = 4 * 1024 * 1024

const openFds = async () => (await readdir('/proc/self/fd')).length

/** How many of this process's descriptors are open on `path`. */
async function openFdsOn(path: string): Promise<number> {
  const targets = await Promise.all((await readdir('/proc/self/fd')).map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => '')))
  return targets.filter((target) => target === path).length
}

/** Polls `measure` until `done` holds or `ms` have passed; returns the last value. */
async function waitFor<T>(measure: () => Promise<T> | T, done: (value: T) => boolean, ms = 5_000): Promise<T> {
  const deadline = Date.now() + ms
  let value = await measure()
  while (!done(value) && Date.now() < deadline) {
    await sleep(50)
    value = await measure()
  }
  return value
}

/** Opens a raw connection and writes `requests` pipelined GETs of `path` at once. */
async function pipeline(h: Harness, path: string, requests: number): Promise<net.Socket> {
  const { hostname, port } = new URL(h.proxy.url)
  const socket = net.connect(Number(port), hostname)
  socket.on('error', () => undefined)
  await new Promise((resolve) => socket.once('connect', resolve))
  socket.write(`GET ${MIRROR_PATH}${path} HTTP/1.1\r\nHost: x\r\n\r\n`.repeat(requests))
  return socket
}

/** Collects everything the server sends until it closes the connection. */
function readToClose(socket: net.Socket): Promise<string> {
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  return new Promise((resolve) => socket.once('close', () => resolve(Buffer.concat(chunks).toString('latin1'))))
}

describe('pipelined requests', () => {
  let h: Harness
  let image: TreeItem
  let kernel: TreeItem
  const warnings: string[] = []
  const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`)
  before(async () => {
    h = await startHarness({
      tree: { releases: [{ release: 'noble', version: '24.04' }], arches: ['amd64'], versions: ['20250201'], sizes: { squashfs: FILE_BYTES } },
      // Deep enough that 500 queued requests are all accepted: what each costs is measured here, not the limit.
      config: { limits: { ...DEFAULT_LIMITS, pipelinedRequests: 1000 } },
    })
    image = h.tree.items.find((i) => i.ftype === 'squashfs') as TreeItem
    kernel = h.tree.items.find((i) => i.item === 'boot-kernel') as TreeItem
    for (const file of [image, kernel]) assert.equal(sha256((await rawRequest(h.proxy.url, MIRROR_PATH + file.path)).body), file.sha256)
    await h.proxy.core.store.fills.idle()
    process.on('warning', onWarning)
  })
  after(async () => {
    process.off('warning', onWarning)
    await h.close()
  })

  test('500 queued GETs of a stored 4 MiB file from a client that never reads hold one file (opened twice) and two chunks, all released on reset', async (t) => {
    const fdsBefore = await openFds()
    const buffersBefore = h.proxy.readBuffers.stats().transfers
    const socket = await pipeline(h, image.path, 500)
    // Long enough for every request to be parsed and answered as far as it can be.
    await sleep(1_000)
    const fdsHeld = await openFds()
    const buffersHeld = h.proxy.readBuffers.stats().transfers
    const chunksHeld = h.proxy.sharedChunks.stats().chunks
    socket.resetAndDestroy()
    const fdsAfter = await waitFor(openFds, (fds) => fds <= fdsBefore)
    const buffersAfter = await waitFor(() => h.proxy.readBuffers.stats().transfers, (inUse) => inUse <= buffersBefore)
    t.diagnostic(`fds: ${fdsBefore} before, ${fdsHeld} held, ${fdsAfter} after; transfers holding buffers: ${buffersBefore}, ${buffersHeld}, ${buffersAfter}; rss ${Math.round(process.memoryUsage().rss / 2 ** 20)} MiB`)
    // The connection's socket, the head response's reader and the file's shared-chunk reader.
    assert.ok(fdsHeld - fdsBefore <= 4, `${fdsHeld - fdsBefore} descriptors opened for one connection`)
    assert.ok(buffersHeld - buffersBefore <= 1, `${buffersHeld - buffersBefore} pairs of read buffers held for one connection`)
    // The chunk on the socket and the next one.
    assert.ok(chunksHeld <= 2, `${chunksHeld} shared chunks held for one connection`)
    assert.ok(fdsAfter <= fdsBefore, `${fdsAfter - fdsBefore} descriptors still open after the client left`)
    assert.equal(await waitFor(() => h.proxy.sharedChunks.stats().references, (held) => held === 0), 0, 'chunks still held after the client left')
    assert.equal(buffersAfter, buffersBefore)
    assert.deepEqual(warnings.filter((warning) => /MaxListeners|Closing file descriptor/.test(warning)), [])
  })
})

describe('the pipeline limit', () => {
  const LIMIT = 4
  let h: Harness
  let kernel: TreeItem
  before(async () => {
    h = await startHarness({ config: { limits: { ...DEFAULT_LIMITS, pipelinedRequests: LIMIT } } })
    kernel = h.tree.items.find((i) => i.item === 'boot-kernel' && i.path.startsWith('noble/amd64/20250201/ga-')) as TreeItem
  })
  after(() => h.close())

  test('a client pipelining one request more than the limit gets the first answers in order, then 503 with Connection: close', async () => {
    const socket = await pipeline(h, kernel.path, LIMIT + 1)
    const text = await readToClose(socket)
    const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((match) => Number(match[1]))
    assert.deepEqual(statuses, [...Array.from({ length: LIMIT }, () => 200), 503])
    const refused = text.slice(text.lastIndexOf('HTTP/1.1 503'))
    assert.match(refused, /\r\nconnection: close\r\n/i)
    assert.match(refused, /\r\nretry-after: 1\r\n/i)
    assert.match(refused, /too many pipelined requests/)
  })

  test('a client that keeps sending past the limit is cut, and the proxy keeps serving', { timeout: 30_000 }, async () => {
    const fdsBefore = await openFds()
    const socket = await pipeline(h, kernel.path, 2_000)
    // Answers the client never reads must not keep the connection open: it is cut without waiting for them.
    await readToClose(socket)
    assert.ok(socket.destroyed)
    assert.ok((await waitFor(openFds, (fds) => fds <= fdsBefore)) <= fdsBefore, 'descriptors left open')
    const served = await rawRequest(h.proxy.url, MIRROR_PATH + kernel.path)
    assert.equal(sha256(served.body), kernel.sha256)
  })
})

describe('clients that leave at once', () => {
  let h: Harness
  let kernel: TreeItem
  before(async () => {
    h = await startHarness()
    kernel = h.tree.items.find((i) => i.item === 'boot-kernel' && i.path.startsWith('noble/amd64/20250201/ga-')) as TreeItem
    assert.equal(sha256((await rawRequest(h.proxy.url, MIRROR_PATH + kernel.path)).body), kernel.sha256)
    await h.proxy.core.store.fills.idle()
  })
  after(() => h.close())

  test('300 connections that send a GET of a stored file and reset at once leave no file open', async () => {
    const blob = h.proxy.core.store.objects.localPath!(kernel.sha256)
    const warnings: string[] = []
    const onWarning = (warning: Error) => warnings.push(warning.message)
    process.on('warning', onWarning)
    const fdsBefore = await openFds()
    const { hostname, port } = new URL(h.proxy.url)
    await Promise.all(
      Array.from({ length: 300 }, () => new Promise<void>((resolve) => {
        const socket = net.connect(Number(port), hostname, () => {
          socket.write(`GET ${MIRROR_PATH}${kernel.path} HTTP/1.1\r\nHost: x\r\n\r\n`)
          // Some resets reach the proxy before it opens the file, some after: both must close it.
          setImmediate(() => socket.resetAndDestroy())
        })
        socket.on('error', () => undefined)
        socket.on('close', () => resolve())
      })),
    )
    // Leaked handles stay open until the garbage collector finds them; closed ones are gone once the proxy settles.
    assert.equal(await waitFor(() => openFdsOn(blob), (fds) => fds === 0), 0, 'the stored file is still open')
    const fdsAfter = await waitFor(openFds, (fds) => fds <= fdsBefore)
    assert.ok(fdsAfter <= fdsBefore, `${fdsAfter - fdsBefore} descriptors left open`)
    // A handle the collector found first was leaked all the same.
    process.off('warning', onWarning)
    assert.deepEqual(warnings.filter((warning) => /Closing (file descriptor|a FileHandle)/.test(warning)), [])
  })
})
