/**
 * Upstream faults that test/server/proxy.test.ts does not already cover, one
 * test each: what the client sees, that nothing bad is stored, that the last
 * good metadata stays served, and that the next good request works.
 */

import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { readFile, rm } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { MIRROR_PATH, startHarness, type Harness } from '../support/proxy-harness.js'
import { captureLog } from '../support/log-capture.js'
import { rawRequest, sha256 } from '../support/http.js'
import { buildUpstreamTree, type TreeItem, type UpstreamTree } from '../support/upstream-tree.js'
import { clearsign } from '../../src/streams/signature.js'
import { evict } from './support/evict.js'
import { storedBlobs, tempFiles } from './support/store-check.js'

const NEWEST = '20250201'
const INDEX = 'streams/v1/index.sjson'
const IMAGES_ID = 'com.ubuntu.maas:stable:v3:download'

function item(h: Harness, predicate: (item: TreeItem) => boolean): TreeItem {
  const found = h.tree.items.find(predicate)
  assert.ok(found, 'no such item in the test tree')
  return found
}
const kernel = (h: Harness) => item(h, (i) => i.item === 'boot-kernel' && i.path.startsWith(`noble/amd64/${NEWEST}/ga-`))
const initrd = (h: Harness) => item(h, (i) => i.item === 'boot-initrd' && i.path.startsWith(`noble/amd64/${NEWEST}/ga-`))
const manifest = (h: Harness) => item(h, (i) => i.item === 'manifest' && i.path.startsWith(`noble/amd64/${NEWEST}/`))

/** Nothing of `file` under blobs/, in the index or in tmp/. */
async function assertNotStored(h: Harness, file: TreeItem): Promise<void> {
  await h.proxy.core.store.fills.idle()
  assert.ok(!(await storedBlobs(h.dataDir)).has(file.sha256), `${file.path} was stored`)
  assert.equal(h.proxy.core.store.index.get(file.sha256), undefined)
  const temps = (await tempFiles(h.dataDir)).filter((name) => basename(name).startsWith(file.sha256))
  assert.deepEqual(temps, [], 'temp files left')
}

async function assertGood(h: Harness, file: TreeItem): Promise<void> {
  const response = await rawRequest(h.proxy.url, MIRROR_PATH + file.path)
  assert.equal(response.status, 200, `${file.path}: ${response.body.toString().slice(0, 300)}`)
  assert.ok(response.complete)
  assert.equal(sha256(response.body), file.sha256)
  await h.proxy.core.store.fills.idle()
  assert.ok((await storedBlobs(h.dataDir)).has(file.sha256))
}

// With no metadata held, a failed fetch answers for requests this long.
const UNAVAILABLE_RETRY_MS = 1_000

// Every proxy below logs here: request ids are unique, so one capture serves them all.
const logged = captureLog()

describe('upstream refuses connections', () => {
  let h: Harness
  before(async () => {
    // A status, not a reset, so the cause can be found by request id; a short wait keeps the tests quick.
    h = await startHarness({ metadataUnavailableRetryMs: UNAVAILABLE_RETRY_MS, mirror: { missFailure: '503', missWait: 1 }, log: logged.log })
  })
  after(() => h.close())

  test('metadata refresh: the last good metadata and cached files stay served; status says ECONNREFUSED; recovery when upstream returns', async () => {
    const cached = kernel(h)
    await assertGood(h, cached)
    const index = await (await fetch(h.url('streams/v1/index.json'))).text()
    const saved = await readFile(join(h.dataDir, 'metadata', 'stable.json'), 'utf8')
    await h.upstream.down()
    try {
      await h.proxy.core.mirrors[0]!.refresh()
      const status = h.proxy.core.mirrors[0]!.metadataStatus()
      assert.match(status.metadataError ?? '', /ECONNREFUSED/)
      assert.equal(status.upstreamReachable, false)
      assert.equal(await (await fetch(h.url('streams/v1/index.json'))).text(), index)
      const hit = await rawRequest(h.proxy.url, MIRROR_PATH + cached.path)
      assert.equal(hit.headers['x-cache'], 'HIT')
      assert.equal(sha256(hit.body), cached.sha256)
      assert.equal(await readFile(join(h.dataDir, 'metadata', 'stable.json'), 'utf8'), saved)
    } finally {
      await h.upstream.up()
    }
    await h.proxy.core.mirrors[0]!.refresh()
    assert.equal(h.proxy.core.mirrors[0]!.metadataStatus().metadataError, null)
    assert.equal(h.proxy.core.mirrors[0]!.metadataStatus().upstreamReachable, true)
  })

  test('a miss with missFailure 503: 503 with Retry-After once missWait is over, nothing stored; the same request works once upstream is back', async () => {
    const cold = await evict(h, initrd(h))
    await h.upstream.down()
    try {
      const response = await rawRequest(h.proxy.url, MIRROR_PATH + cold.path)
      assert.equal(response.status, 503)
      assert.ok(Number(response.headers['retry-after']) > 0)
      // The client gets a request id; the log has the cause under it.
      assert.doesNotMatch(response.body.toString(), /ECONNREFUSED/)
      assert.match(logged.errorFor(response.body) ?? '', /ECONNREFUSED/)
      await assertNotStored(h, cold)
    } finally {
      await h.upstream.up()
    }
    await assertGood(h, cold)
  })

  test('no metadata ever fetched: metadata and files are 503 with Retry-After, and served once upstream is back', async () => {
    const file = await evict(h, manifest(h))
    await h.stopProxy()
    await rm(join(h.dataDir, 'metadata'), { recursive: true, force: true })
    await h.upstream.down()
    try {
      await h.restartProxy()
      for (const path of ['streams/v1/index.sjson', file.path]) {
        const response = await rawRequest(h.proxy.url, MIRROR_PATH + path)
        assert.equal(response.status, 503, path)
        assert.ok(Number(response.headers['retry-after']) > 0)
        assert.match(response.body.toString(), /metadata unavailable.*ECONNREFUSED/)
      }
    } finally {
      await h.upstream.up()
    }
    await sleep(UNAVAILABLE_RETRY_MS)
    assert.equal((await rawRequest(h.proxy.url, MIRROR_PATH + 'streams/v1/index.sjson')).status, 200)
    await assertGood(h, file)
  })

  test('no metadata and upstream failing: requests soon after a failed fetch get 503 without asking upstream again', async () => {
    await h.stopProxy()
    await rm(join(h.dataDir, 'metadata'), { recursive: true, force: true })
    h.upstream.setFault('*', { kind: 'status', status: 502 })
    try {
      await h.restartProxy()
      h.upstream.resetCounters()
      for (let i = 0; i < 10; i++) {
        const response = await rawRequest(h.proxy.url, MIRROR_PATH + INDEX)
        assert.equal(response.status, 503)
        assert.match(response.body.toString(), /metadata unavailable.*502/)
      }
      assert.equal(h.upstream.requestCount(INDEX), 0, 'upstream was asked again within the retry time')
      await sleep(UNAVAILABLE_RETRY_MS)
      assert.equal((await rawRequest(h.proxy.url, MIRROR_PATH + INDEX)).status, 503)
      // One fetch, with the client's own retries of a 502.
      assert.ok(h.upstream.requestCount(INDEX) > 0, 'upstream is asked again once the retry time has passed')
    } finally {
      h.upstream.setFault('*', undefined)
    }
    await sleep(UNAVAILABLE_RETRY_MS)
    assert.equal((await rawRequest(h.proxy.url, MIRROR_PATH + INDEX)).status, 200)
  })
})

describe('upstream answers a miss badly', () => {
  let h: Harness
  before(async () => {
    h = await startHarness({ log: logged.log })
  })
  after(() => h.close())

  test('a Range inside a cold file whose body fails verification never completes, though all its own bytes arrived', async () => {
    const file = await evict(h, kernel(h))
    // Corrupt inside the range: its bytes are wrong, and the sha256 of the whole file fails.
    h.upstream.setFault(file.path, { kind: 'corrupt', offset: 15 })
    // Slow enough that the range's bytes arrive long before the whole file can be checked.
    h.upstream.setDefaultRate(2048)
    let broken
    try {
      broken = await rawRequest(h.proxy.url, MIRROR_PATH + file.path, { headers: { range: 'bytes=10-19' } })
    } finally {
      h.upstream.setDefaultRate(undefined)
    }
    assert.equal(broken.complete, false, 'a client holding every byte of its Content-Length has a complete response')
    await assertNotStored(h, file)
    h.upstream.setFault(file.path, undefined)
    const good = await rawRequest(h.proxy.url, MIRROR_PATH + file.path, { headers: { range: 'bytes=10-19' } })
    assert.equal(good.status, 206)
    assert.ok(good.complete)
    assert.deepEqual(good.body, h.tree.files.get(file.path)?.subarray(10, 20))
  })

  test('404 for a file the metadata names: the connection is reset at once, without a status MAAS would take as final; nothing stored, the next good request works', async () => {
    const file = await evict(h, kernel(h))
    h.upstream.setFault(file.path, { kind: 'status', status: 404 })
    const requestsBefore = h.upstream.requestCount(file.path)
    const response = await rawRequest(h.proxy.url, MIRROR_PATH + file.path)
    assert.equal(response.status, 0, 'no status at all')
    assert.equal(response.complete, false)
    assert.equal(h.upstream.requestCount(file.path) - requestsBefore, 1, 'a 404 is not retried within missWait')
    await assertNotStored(h, file)
    h.upstream.setFault(file.path, undefined)
    await assertGood(h, file)
  })

  test('a slow trickle that keeps flowing completes: all bytes, verified, stored', async () => {
    const file = await evict(h, initrd(h))
    // 8 KiB at 3 KiB/s: well over the harness's 1.5 s idle timeout in total, never silent that long.
    h.upstream.setFault(file.path, { kind: 'rate', bytesPerSecond: 3 * 1024 })
    const requestsBefore = h.upstream.requestCount(file.path)
    const started = performance.now()
    const response = await rawRequest(h.proxy.url, MIRROR_PATH + file.path)
    assert.ok(performance.now() - started > 2000, 'the trickle should take seconds')
    assert.equal(response.status, 200)
    assert.ok(response.complete)
    assert.equal(sha256(response.body), file.sha256)
    h.upstream.setFault(file.path, undefined)
    await h.proxy.core.store.fills.idle()
    assert.equal(h.upstream.requestCount(file.path) - requestsBefore, 1, 'a trickle is not a failure to retry')
    assert.equal((await rawRequest(h.proxy.url, MIRROR_PATH + file.path)).headers['x-cache'], 'HIT')
  })
})

/**
 * A hand-written upstream for what the test server cannot send: a
 * `Content-Length` that disagrees with the body, bytes after the body on a
 * kept-alive connection, and a body in chunks a second apart.
 */
type Misbehaviour = 'length-too-big' | 'length-too-small' | 'garbage-after-body' | 'chunks-1s-apart'

async function startRawUpstream(tree: UpstreamTree): Promise<{ url: string; set(path: string, how: Misbehaviour | undefined): void; requests(path: string): number; close(): Promise<void> }> {
  const faults = new Map<string, Misbehaviour>()
  const counts = new Map<string, number>()
  const sockets = new Set<Socket>()
  const server = http.createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname.slice(1))
    counts.set(path, (counts.get(path) ?? 0) + 1)
    const body = tree.files.get(path)
    if (body === undefined) return void res.writeHead(404).end()
    const socket = req.socket
    const head = (length: number) => `HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${length}\r\nConnection: keep-alive\r\n\r\n`
    switch (faults.get(path)) {
      case 'length-too-big':
        socket.end(Buffer.concat([Buffer.from(head(body.length + 100)), body]))
        return
      case 'length-too-small':
        socket.end(Buffer.concat([Buffer.from(head(body.length - 100)), body]))
        return
      case 'garbage-after-body':
        socket.write(Buffer.concat([Buffer.from(head(body.length)), body, Buffer.from('GARBAGE NOT HTTP\r\n\r\n')]))
        return
      case 'chunks-1s-apart': {
        res.writeHead(200, { 'content-length': body.length })
        const quarter = Math.ceil(body.length / 4)
        void (async () => {
          for (let at = 0; at < body.length; at += quarter) {
            res.write(body.subarray(at, at + quarter))
            await sleep(1000)
          }
          res.end()
        })()
        return
      }
      default:
        res.writeHead(200, { 'content-length': body.length }).end(body)
    }
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    set: (path, how) => (how === undefined ? faults.delete(path) : faults.set(path, how)),
    requests: (path) => counts.get(path) ?? 0,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  }
}

describe('upstream sends a wrong Content-Length', () => {
  let h: Harness
  let raw: Awaited<ReturnType<typeof startRawUpstream>>
  before(async () => {
    // A status, so the test can find why the miss was refused by its request id.
    h = await startHarness({ mirror: { missFailure: '503' }, log: logged.log })
    raw = await startRawUpstream(h.tree)
    await h.stopProxy()
    h.config.mirrors[0]!.upstreams = [raw.url]
    await h.restartProxy()
    // The restart served the saved metadata at once; let the refresh from the new upstream land.
    await h.proxy.core.mirrors[0]!.refresh()
  })
  after(async () => {
    await h.close()
    await raw.close()
  })

  for (const how of ['length-too-big', 'length-too-small'] as const) {
    test(`${how}: refused before any byte (503 naming Content-Length), nothing stored, the next good request works`, async () => {
      const file = await evict(h, how === 'length-too-big' ? kernel(h) : initrd(h))
      raw.set(file.path, how)
      const requestsBefore = raw.requests(file.path)
      const response = await rawRequest(h.proxy.url, MIRROR_PATH + file.path)
      assert.equal(response.status, 503)
      assert.match(logged.errorFor(response.body) ?? '', /Content-Length/)
      assert.equal(raw.requests(file.path) - requestsBefore, 1, 'a length that contradicts the signed metadata is not retried')
      await assertNotStored(h, file)
      raw.set(file.path, undefined)
      await assertGood(h, file)
    })
  }

  test('garbage after a correct body on a kept-alive connection: the file is served and stored, later requests still work', async () => {
    const file = await evict(h, kernel(h))
    for (const next of [initrd(h), manifest(h)]) await evict(h, next)
    raw.set(file.path, 'garbage-after-body')
    await assertGood(h, file)
    raw.set(file.path, undefined)
    for (const next of [initrd(h), manifest(h)]) await assertGood(h, next)
  })

  test('chunks a second apart (under the idle timeout) complete', async () => {
    const file = await evict(h, item(h, (i) => i.item === 'boot-initrd' && i.path.startsWith(`noble/amd64/${NEWEST}/hwe-`)))
    raw.set(file.path, 'chunks-1s-apart')
    const requestsBefore = raw.requests(file.path)
    const response = await rawRequest(h.proxy.url, MIRROR_PATH + file.path)
    assert.equal(response.status, 200)
    assert.ok(response.complete)
    assert.equal(sha256(response.body), file.sha256)
    assert.equal(raw.requests(file.path) - requestsBefore, 1)
  })
})

describe('bad upstream metadata keeps the last good metadata', () => {
  let h: Harness
  let newer: UpstreamTree
  before(async () => {
    h = await startHarness({ log: logged.log })
    // A good newer build: accepting any of the bad variants below would publish 20250301.
    newer = await buildUpstreamTree({ key: h.tree.key, versions: ['20250101', '20250201', '20250301'] })
  })
  after(() => h.close())

  /** The newer tree with some files replaced or removed. */
  function variant(changes: Record<string, Buffer | undefined>): UpstreamTree {
    const files = new Map(newer.files)
    for (const [path, bytes] of Object.entries(changes)) {
      if (bytes === undefined) files.delete(path)
      else files.set(path, bytes)
    }
    return { ...newer, files }
  }
  const textOf = (tree: UpstreamTree, path: string) => (tree.files.get(path) as Buffer).toString('utf8')
  /** The JSON text a clearsigned document signs. */
  const signedText = (tree: UpstreamTree, path: string) => textOf(tree, path.replace(/\.sjson$/, '.json'))

  const cases: Array<{ name: string; error: RegExp; tree: () => Promise<UpstreamTree> }> = [
    {
      name: 'signed by another key',
      error: /index\.sjson.*(key|signature)/i,
      tree: async () => buildUpstreamTree({ versions: ['20250101', '20250201', '20250301'] }),
    },
    {
      name: 'unsigned',
      error: /index\.sjson.*(not clearsigned|unsigned|signed)/i,
      tree: async () => variant({ [INDEX]: Buffer.from(signedText(newer, INDEX)) }),
    },
    {
      name: 'malformed JSON, validly signed',
      error: /index\.sjson.*JSON/i,
      tree: async () => variant({ [INDEX]: Buffer.from(await clearsign('{"format": "index:1.0", "index": {\n', h.tree.key.privateKey)) }),
    },
    {
      name: 'a products file missing (404)',
      error: /download\.sjson.*HTTP 404/,
      tree: async () => variant({ [newer.productsPath(IMAGES_ID, 'sjson')]: undefined }),
    },
    {
      name: 'an item path with ".."',
      error: /unsafe path "\.\.\/\.\.\/etc\/passwd"/,
      tree: async () => {
        const path = newer.productsPath(IMAGES_ID, 'sjson')
        const text = signedText(newer, path).replace(/"path": ?"noble\/amd64\/20250301\/squashfs"/, '"path": "../../etc/passwd"')
        assert.match(text, /\.\.\/\.\.\/etc\/passwd/)
        return variant({ [path]: Buffer.from(await clearsign(text, h.tree.key.privateKey)) })
      },
    },
  ]

  for (const { name, error, tree } of cases) {
    test(`${name}: refresh fails naming the document, last good metadata served and kept on disk, the next good refresh works`, async () => {
      const mirror = h.proxy.core.mirrors[0]!
      const cached = kernel(h)
      await assertGood(h, cached)
      const before = await (await fetch(h.url('streams/v1/com.ubuntu.maas:stable:v3:download.json'))).text()
      const savedFile = join(h.dataDir, 'metadata', 'stable.json')
      const saved = await readFile(savedFile, 'utf8')
      h.upstream.setTree(await tree())
      await mirror.refresh()
      assert.match(mirror.metadataStatus().metadataError ?? '', error)
      assert.equal(await (await fetch(h.url('streams/v1/com.ubuntu.maas:stable:v3:download.json'))).text(), before)
      assert.doesNotMatch(before, /20250301/)
      assert.equal(await readFile(savedFile, 'utf8'), saved, 'the saved metadata must not change')
      const hit = await rawRequest(h.proxy.url, MIRROR_PATH + cached.path)
      assert.equal(sha256(hit.body), cached.sha256)
      assert.equal((await rawRequest(h.proxy.url, `${MIRROR_PATH}../../etc/passwd`)).status, 400)

      h.upstream.setTree(newer)
      await mirror.refresh()
      assert.equal(mirror.metadataStatus().metadataError, null)
      const after = await (await fetch(h.url('streams/v1/com.ubuntu.maas:stable:v3:download.json'))).text()
      assert.match(after, /20250301/)
      assert.notEqual(await readFile(savedFile, 'utf8'), saved)
      // Back to the original build for the next case.
      h.upstream.setTree(h.tree)
      await mirror.refresh()
      assert.equal(mirror.metadataStatus().metadataError, null)
    })
  }
})
