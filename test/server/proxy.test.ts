/**
 * The pull-through proxy end to end: a real proxy on a real port in front of
 * the signed test upstream, with real files and a real SQLite index.
 */

import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { MIRROR_PATH, startHarness, type Harness } from '../support/proxy-harness.js'
import { rawRequest, sha256 } from '../support/http.js'
import { gpgvText } from '../support/gpgv.js'
import { listTempFiles } from '../support/temp-files.js'
import type { TreeItem } from '../support/upstream-tree.js'
import { verifyClearsigned, readKeyring } from '../../src/streams/signature.js'
import { parseIndex, parseProducts } from '../../src/streams/documents.js'

const NEWEST = '20250201'

function item(h: Harness, predicate: (item: TreeItem) => boolean): TreeItem {
  const found = h.tree.items.find(predicate)
  assert.ok(found, 'no such item in the test tree')
  return found
}
const squashfs = (h: Harness, release = 'noble') => item(h, (i) => i.ftype === 'squashfs' && i.path.startsWith(`${release}/amd64/${NEWEST}/`))
const kernel = (h: Harness) => item(h, (i) => i.item === 'boot-kernel' && i.path.startsWith(`noble/amd64/${NEWEST}/ga-`))
const initrd = (h: Harness) => item(h, (i) => i.item === 'boot-initrd' && i.path.startsWith(`noble/amd64/${NEWEST}/ga-`))

async function storedFiles(h: Harness): Promise<string[]> {
  const blobs = join(h.dataDir, 'blobs')
  const names: string[] = []
  for (const prefix of await readdir(blobs)) names.push(...(await readdir(join(blobs, prefix))))
  return names
}

const tempFiles = (h: Harness) => listTempFiles(h.dataDir)

describe('serving files', () => {
  let h: Harness
  before(async () => {
    h = await startHarness()
  })
  after(() => h.close())

  test('a miss is fetched once from upstream, verified and stored; the next request is a hit from disk', async () => {
    const file = kernel(h)
    const miss = await rawRequest(h.proxy.url, MIRROR_PATH + file.path)
    assert.equal(miss.status, 200)
    assert.equal(miss.headers['x-cache'], 'MISS')
    assert.equal(sha256(miss.body), file.sha256)
    await h.proxy.core.store.fills.idle()
    const hit = await rawRequest(h.proxy.url, MIRROR_PATH + file.path)
    assert.equal(hit.status, 200)
    assert.equal(hit.headers['x-cache'], 'HIT')
    assert.equal(hit.headers['content-length'], String(file.size))
    assert.equal(hit.headers.etag, `"${file.sha256}"`)
    assert.equal(hit.headers['accept-ranges'], 'bytes')
    assert.equal(sha256(hit.body), file.sha256)
    assert.equal(h.upstream.requestCount(file.path), 1)
    assert.ok((await storedFiles(h)).includes(file.sha256))
  })

  test('Range on a hit answers 206 with the bytes asked for, and 416 past the end', async () => {
    const file = kernel(h)
    const whole = h.tree.files.get(file.path) as Buffer
    const partial = await rawRequest(h.proxy.url, MIRROR_PATH + file.path, { headers: { range: 'bytes=100-199' } })
    assert.equal(partial.status, 206)
    assert.equal(partial.headers['content-range'], `bytes 100-199/${file.size}`)
    assert.deepEqual(partial.body, whole.subarray(100, 200))
    const suffix = await rawRequest(h.proxy.url, MIRROR_PATH + file.path, { headers: { range: 'bytes=-10' } })
    assert.deepEqual(suffix.body, whole.subarray(whole.length - 10))
    const beyond = await rawRequest(h.proxy.url, MIRROR_PATH + file.path, { headers: { range: `bytes=${file.size}-` } })
    assert.equal(beyond.status, 416)
    assert.equal(beyond.headers['content-range'], `bytes */${file.size}`)
    const several = await rawRequest(h.proxy.url, MIRROR_PATH + file.path, { headers: { range: 'bytes=0-1,5-6' } })
    assert.equal(several.status, 200, 'several ranges are ignored and the whole file is sent')
    assert.equal(several.body.length, file.size)
  })

  test('Range on a miss answers 206 while the file fills', async () => {
    const file = initrd(h)
    const whole = h.tree.files.get(file.path) as Buffer
    const partial = await rawRequest(h.proxy.url, MIRROR_PATH + file.path, { headers: { range: 'bytes=10-19' } })
    assert.equal(partial.status, 206)
    assert.deepEqual(partial.body, whole.subarray(10, 20))
    await h.proxy.core.store.fills.idle()
  })

  test('HEAD gives the headers of GET without a body and without asking upstream', async () => {
    const file = squashfs(h, 'noble')
    const before = h.upstream.requestCount(file.path)
    const head = await rawRequest(h.proxy.url, MIRROR_PATH + file.path, { method: 'HEAD' })
    assert.equal(head.status, 200)
    assert.equal(head.headers['content-length'], String(file.size))
    assert.equal(head.body.length, 0)
    assert.equal(h.upstream.requestCount(file.path), before)
  })

  test('If-None-Match with the sha256 ETag answers 304', async () => {
    const file = kernel(h)
    const response = await rawRequest(h.proxy.url, MIRROR_PATH + file.path, { headers: { 'if-none-match': `"${file.sha256}"` } })
    assert.equal(response.status, 304)
    assert.equal(response.body.length, 0)
  })

  test('a path no selected item names is 404 and nothing is asked of upstream', async () => {
    const old = item(h, (i) => i.path.startsWith('noble/amd64/20250101/'))
    const arm = item(h, (i) => i.path.startsWith(`noble/arm64/${NEWEST}/`))
    const manifestless = 'noble/amd64/20250201/not-an-item'
    h.upstream.resetCounters()
    for (const path of [old.path, arm.path, manifestless]) {
      const response = await rawRequest(h.proxy.url, MIRROR_PATH + path)
      assert.equal(response.status, 404, path)
    }
    assert.equal(h.upstream.requestCount(), 0)
  })

  test('a path shared by ga and hwe products is stored once', async () => {
    const file = squashfs(h, 'noble')
    const sharing = h.tree.items.filter((i) => i.path === file.path)
    assert.ok(sharing.length >= 2)
    await rawRequest(h.proxy.url, MIRROR_PATH + file.path)
    await h.proxy.core.store.fills.idle()
    const names = await storedFiles(h)
    assert.equal(names.filter((name) => name === file.sha256).length, 1)
  })
})

describe('one shared fill per file', () => {
  let h: Harness
  before(async () => {
    h = await startHarness({ tree: { sizes: { squashfs: 4 * 1024 * 1024 } } })
  })
  after(() => h.close())

  test('10 concurrent clients on one cold file make exactly one upstream request and all get the right bytes', async () => {
    const file = squashfs(h)
    h.upstream.setFault(file.path, { kind: 'rate', bytesPerSecond: 8 * 1024 * 1024 })
    const responses = await Promise.all(Array.from({ length: 10 }, () => rawRequest(h.proxy.url, MIRROR_PATH + file.path)))
    for (const response of responses) {
      assert.equal(response.status, 200)
      assert.ok(response.complete)
      assert.equal(sha256(response.body), file.sha256)
    }
    assert.equal(h.upstream.requestCount(file.path), 1)
    h.upstream.setFault(file.path, undefined)
  })
})

describe('misses stream as bytes arrive', () => {
  let h: Harness
  before(async () => {
    h = await startHarness({ tree: { sizes: { squashfs: 1024 * 1024 } } })
  })
  after(() => h.close())

  test("a slow upstream's first bytes reach the client at once, not after the fill", async () => {
    const file = squashfs(h)
    h.upstream.setFault(file.path, { kind: 'rate', bytesPerSecond: 256 * 1024 })
    const started = performance.now()
    const response = await rawRequest(h.proxy.url, MIRROR_PATH + file.path)
    const totalMs = performance.now() - started
    assert.equal(sha256(response.body), file.sha256)
    assert.ok(totalMs > 3000, `the rate limit should make the transfer slow (took ${totalMs} ms)`)
    assert.ok((response.firstByteMs ?? Infinity) < 1000, `first byte after ${response.firstByteMs} ms`)
    h.upstream.setFault(file.path, undefined)
  })

  test('a client that disconnects mid-miss leaves the fill running to the cache', async () => {
    const file = initrd(h)
    h.upstream.setFault(file.path, { kind: 'rate', bytesPerSecond: 16 * 1024 })
    const partial = await rawRequest(h.proxy.url, MIRROR_PATH + file.path, { abortAfterBytes: 1 })
    assert.ok(partial.body.length < file.size)
    await h.proxy.core.store.fills.idle()
    h.upstream.setFault(file.path, undefined)
    const hit = await rawRequest(h.proxy.url, MIRROR_PATH + file.path)
    assert.equal(hit.headers['x-cache'], 'HIT')
    assert.equal(sha256(hit.body), file.sha256)
    assert.equal(h.upstream.requestCount(file.path), 1)
  })
})

describe('bad upstream bodies are never cached', () => {
  let h: Harness
  before(async () => {
    h = await startHarness({ tree: { sizes: { squashfs: 512 * 1024 } } })
  })
  after(() => h.close())

  for (const fault of [
    { kind: 'corrupt', offset: 1000 },
    { kind: 'corrupt', offset: 512 * 1024 - 1 },
    { kind: 'truncate', afterBytes: 200 * 1024 },
    { kind: 'reset', afterBytes: 200 * 1024 },
    { kind: 'extra', bytes: 10 },
    { kind: 'stall', afterBytes: 100 * 1024 },
  ] as const) {
    test(`${fault.kind} ${JSON.stringify(fault)}: the client's transfer fails, nothing is stored, the next good request works`, async () => {
      const file = squashfs(h)
      h.upstream.setFault(file.path, fault)
      const bad = await rawRequest(h.proxy.url, MIRROR_PATH + file.path)
      assert.ok(!(bad.status === 200 && bad.complete && bad.body.length === file.size), 'a bad body must never arrive complete')
      await h.proxy.core.store.fills.idle()
      assert.ok(!(await storedFiles(h)).includes(file.sha256))
      assert.deepEqual(await tempFiles(h), [])
      assert.equal(h.proxy.core.store.index.get(file.sha256), undefined)
      h.upstream.setFault(file.path, undefined)
      const good = await rawRequest(h.proxy.url, MIRROR_PATH + file.path)
      assert.equal(good.status, 200)
      assert.equal(sha256(good.body), file.sha256)
      await h.proxy.core.store.fills.idle()
      await h.proxy.core.store.objects.remove(file.sha256)
      h.proxy.core.store.index.delete(file.sha256)
    })
  }

  test('upstream failing before any byte: 503 with Retry-After once missWait is over, with missFailure 503', async () => {
    const file = kernel(h)
    const mirror = h.proxy.core.mirrors[0]!.config
    // Read per request: the setting changes for this test only.
    Object.assign(mirror, { missFailure: '503', missWait: 1 })
    h.upstream.setFault(file.path, { kind: 'status', status: 500 })
    try {
      const requestsBefore = h.upstream.requestCount(file.path)
      const response = await rawRequest(h.proxy.url, MIRROR_PATH + file.path)
      assert.equal(response.status, 503)
      assert.ok(Number(response.headers['retry-after']) > 0)
      // The cause (HTTP 500) is logged under the request id, not shown to the client.
      assert.match(response.body.toString(), /not cached, and fetching it from upstream failed; try again later \(request id [0-9a-f]+\)/)
      assert.ok(h.upstream.requestCount(file.path) - requestsBefore > 2, 'a 5xx is retried within missWait, beyond the fill\'s own attempts')
    } finally {
      h.upstream.setFault(file.path, undefined)
      Object.assign(mirror, { missFailure: 'reset', missWait: 8 })
    }
  })
})

describe('metadata', () => {
  let h: Harness
  before(async () => {
    h = await startHarness()
  })
  after(() => h.close())

  test('a SimpleStreams client walks index.sjson, products .sjson and items end to end, verifying with the proxy key', async () => {
    const keys = await readKeyring((await (await fetch(`${h.proxy.url}/keyring.gpg`)).arrayBuffer().then((b) => new Uint8Array(b))), 'keyring.gpg')
    const indexText = await verifyClearsigned(await (await fetch(h.url('streams/v1/index.sjson'))).text(), keys)
    const index = parseIndex(indexText, 'index.sjson')
    const contentIds = Object.keys(index.index)
    assert.deepEqual(contentIds.sort(), ['com.ubuntu.maas:stable:1:bootloader-download', 'com.ubuntu.maas:stable:v3:download'])
    let fetched = 0
    for (const [contentId, entry] of Object.entries(index.index)) {
      assert.match(entry.path, /\.sjson$/)
      const products = parseProducts(await verifyClearsigned(await (await fetch(h.url(entry.path))).text(), keys), entry.path)
      assert.equal(products.content_id, contentId)
      assert.deepEqual(Object.keys(products.products).sort(), [...(entry.products ?? [])].sort())
      for (const product of Object.values(products.products)) {
        if (product.os === 'ubuntu') assert.equal(product.arch, 'amd64')
        for (const version of Object.values(product.versions)) {
          for (const file of Object.values(version.items)) {
            const body = Buffer.from(await (await fetch(h.url(file.path as string))).arrayBuffer())
            assert.equal(sha256(body), file.sha256)
            fetched++
          }
        }
      }
    }
    assert.ok(fetched > 0)
  })

  test('a document path with a query or in absolute form gets the same document, ETag and 304 as the exact path', async () => {
    const path = `${MIRROR_PATH}streams/v1/index.sjson`
    const exact = await rawRequest(h.proxy.url, path)
    assert.equal(exact.status, 200)
    const etag = exact.headers.etag as string
    for (const target of [`${path}?probe=1`, `${h.proxy.url}${path}`]) {
      const other = await rawRequest(h.proxy.url, target)
      assert.equal(other.status, 200, target)
      assert.equal(other.headers.etag, etag, target)
      assert.ok(other.body.equals(exact.body), target)
    }
    for (const target of [path, `${path}?probe=1`]) {
      // Two If-None-Match lines count as one list, as Node joins them (raw headers carry no Host of their own).
      const revalidated = await rawRequest(h.proxy.url, target, { headers: ['Host', 'proxy', 'If-None-Match', '"other"', 'if-none-match', etag] })
      assert.equal(revalidated.status, 304, target)
      assert.equal(revalidated.body.length, 0)
    }
  })

  test('filtered metadata holds only the selection: newest noble amd64 images and the bootloaders', async () => {
    const images = parseProducts(await (await fetch(h.url('streams/v1/com.ubuntu.maas:stable:v3:download.json'))).text(), 'x')
    for (const [name, product] of Object.entries(images.products)) {
      assert.match(name, /:24\.04:amd64:/)
      assert.deepEqual(Object.keys(product.versions), [NEWEST])
    }
    const plainIndex = parseIndex(await (await fetch(h.url('streams/v1/index.json'))).text(), 'x')
    for (const entry of Object.values(plainIndex.index)) assert.match(entry.path, /\.json$/)
  })

  test('the filtered .sjson files verify with the real gpgv and the exported key', async () => {
    const keyring = new Uint8Array(await (await fetch(`${h.proxy.url}/keyring.gpg`)).arrayBuffer())
    for (const path of ['streams/v1/index.sjson', 'streams/v1/com.ubuntu.maas:stable:v3:download.sjson']) {
      const result = await gpgvText(keyring, await (await fetch(h.url(path))).text())
      assert.ok(result.ok, `gpgv rejected ${path}: ${result.stderr}`)
    }
    const armored = await (await fetch(`${h.proxy.url}/keyring.asc`)).text()
    assert.match(armored, /^-----BEGIN PGP PUBLIC KEY BLOCK-----/)
  })

  test('a tampered upstream signature keeps the last good metadata, served and reported', async () => {
    const before = await (await fetch(h.url('streams/v1/index.json'))).text()
    const mirror = h.proxy.core.mirrors[0]!
    const newer = await (await import('../support/upstream-tree.js')).buildUpstreamTree({ key: h.tree.key, versions: ['20250101', '20250201', '20250301'] })
    h.upstream.setTree(newer)
    h.upstream.setFault('streams/v1/index.sjson', { kind: 'tamper' })
    await mirror.refresh()
    const status = await (await fetch(`${h.proxy.url}/status`)).json() as { mirrors: Array<{ metadataError: string | null }> }
    assert.match(status.mirrors[0]?.metadataError ?? '', /signature/)
    assert.equal(await (await fetch(h.url('streams/v1/index.json'))).text(), before)
    h.upstream.setFault('streams/v1/index.sjson', undefined)
    await mirror.refresh()
    assert.equal(mirror.metadataStatus().metadataError, null)
    const images = parseProducts(await (await fetch(h.url('streams/v1/com.ubuntu.maas:stable:v3:download.json'))).text(), 'x')
    for (const product of Object.values(images.products)) assert.deepEqual(Object.keys(product.versions), ['20250301'])
    h.upstream.setTree(h.tree)
    await mirror.refresh()
  })

  test('upstream mode serves the upstream .sjson bytes unchanged, and a plain index that lists the plain products files', async () => {
    const upstreamMode = await startHarness({ mirror: { metadata: 'upstream' } })
    try {
      const served = await (await fetch(upstreamMode.url('streams/v1/index.sjson'))).text()
      assert.equal(served, upstreamMode.tree.files.get('streams/v1/index.sjson')?.toString())
      const plain = JSON.parse(await (await fetch(upstreamMode.url('streams/v1/index.json'))).text()) as { index: Record<string, { path: string }> }
      assert.deepEqual(plain, JSON.parse(upstreamMode.tree.files.get('streams/v1/index.json')?.toString() ?? ''))
      for (const entry of Object.values(plain.index)) assert.match(entry.path, /\.json$/)
      const old = item(upstreamMode, (i) => i.path.startsWith('noble/amd64/20250101/'))
      assert.equal((await rawRequest(upstreamMode.proxy.url, MIRROR_PATH + old.path)).status, 404)
    } finally {
      await upstreamMode.close()
    }
  })
})

describe('restart', () => {
  test('with upstream down, a restarted proxy serves its cached files and last good metadata', async () => {
    const h = await startHarness({ mirror: { missWait: 1 } })
    try {
      const file = kernel(h)
      const first = await rawRequest(h.proxy.url, MIRROR_PATH + file.path)
      assert.equal(sha256(first.body), file.sha256)
      const index = await (await fetch(h.url('streams/v1/index.json'))).text()
      await h.stopProxy()
      await h.upstream.down()
      await h.restartProxy()
      assert.equal(await (await fetch(h.url('streams/v1/index.json'))).text(), index)
      const again = await rawRequest(h.proxy.url, MIRROR_PATH + file.path)
      assert.equal(again.headers['x-cache'], 'HIT')
      assert.equal(sha256(again.body), file.sha256)
      const cold = initrd(h)
      const unavailable = await rawRequest(h.proxy.url, MIRROR_PATH + cold.path)
      assert.equal(unavailable.status, 0, 'a miss upstream cannot serve is a reset connection (missFailure "reset")')
      await h.proxy.core.mirrors[0]!.refresh()
      const status = await (await fetch(`${h.proxy.url}/status`)).json() as { mirrors: Array<{ upstreamReachable: boolean; metadataError: string | null }> }
      assert.equal(status.mirrors[0]?.upstreamReachable, false)
      assert.match(status.mirrors[0]?.metadataError ?? '', /ECONNREFUSED/)
    } finally {
      await h.upstream.up()
      await h.close()
    }
  })

  test('a temp file left by a crash is removed at start-up and never served', async () => {
    const h = await startHarness()
    try {
      const file = kernel(h)
      await h.stopProxy()
      await writeFile(join(h.dataDir, 'tmp', `${file.sha256}.dead.part`), 'half-written')
      await h.restartProxy()
      assert.deepEqual(await tempFiles(h), [])
      const response = await rawRequest(h.proxy.url, MIRROR_PATH + file.path)
      assert.equal(response.headers['x-cache'], 'MISS')
      assert.equal(sha256(response.body), file.sha256)
    } finally {
      await h.close()
    }
  })
})

describe('routing', () => {
  let h: Harness
  before(async () => {
    h = await startHarness()
  })
  after(() => h.close())

  test('unsafe paths in any encoding are refused without asking upstream', async () => {
    h.upstream.resetCounters()
    const attempts = [
      `${MIRROR_PATH}../../../etc/passwd`,
      `${MIRROR_PATH}noble/%2e%2e/%2e%2e/etc/passwd`,
      `${MIRROR_PATH}noble%2f..%2fetc`,
      `${MIRROR_PATH}noble\\..\\etc`,
      `${MIRROR_PATH}noble/%00`,
      `${MIRROR_PATH}noble/%252e%252e/x`,
      `${MIRROR_PATH}./streams/v1/index.json`,
    ]
    for (const path of attempts) {
      const response = await rawRequest(h.proxy.url, path)
      assert.ok(response.status === 400 || response.status === 404, `${path} gave ${response.status}`)
    }
    assert.equal(h.upstream.requestCount(), 0)
  })

  test('the old client probe without the trailing slash answers 404', async () => {
    const probe = `${MIRROR_PATH.slice(0, -1)}streams/v1/index.sjson`
    assert.equal((await rawRequest(h.proxy.url, probe)).status, 404)
  })

  test('paths outside every mirror are 404', async () => {
    assert.equal((await rawRequest(h.proxy.url, '/other/streams/v1/index.sjson')).status, 404)
    assert.equal((await rawRequest(h.proxy.url, MIRROR_PATH)).status, 404)
  })

  test('methods other than GET and HEAD are 405 with Allow', async () => {
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      const response = await rawRequest(h.proxy.url, MIRROR_PATH + 'streams/v1/index.json', { method })
      assert.equal(response.status, 405)
      assert.equal(response.headers.allow, 'GET, HEAD')
    }
  })

  test('/status reports the cache and the mirror with the product.md fields', async () => {
    const status = (await (await fetch(`${h.proxy.url}/status`)).json()) as Record<string, any>
    for (const key of ['version', 'uptimeSeconds', 'cache', 'mirrors']) assert.ok(key in status, key)
    for (const key of ['files', 'bytes', 'hits', 'misses', 'upstreamBytes', 'servedBytes']) assert.ok(key in status.cache, key)
    const mirror = status.mirrors[0]
    for (const key of ['name', 'path', 'upstream', 'upstreamReachable', 'metadataUpdated', 'metadataError', 'selection', 'prefetch']) assert.ok(key in mirror, key)
    assert.equal(mirror.selection.files > 0, true)
  })
})

describe('several mirrors in one process', () => {
  test('stable and candidate are served under their own paths and share identical files', async () => {
    const h = await startHarness()
    const candidateTree = h.tree
    try {
      await h.stopProxy()
      h.config.mirrors.push({ ...h.config.mirrors[0]!, name: 'candidate', path: '/maas/images/ephemeral-v3/candidate/' })
      await h.restartProxy()
      const file = kernel(h)
      const stable = await rawRequest(h.proxy.url, MIRROR_PATH + file.path)
      await h.proxy.core.store.fills.idle()
      const candidate = await rawRequest(h.proxy.url, `/maas/images/ephemeral-v3/candidate/${file.path}`)
      assert.equal(stable.headers['x-cache'], 'MISS')
      assert.equal(candidate.headers['x-cache'], 'HIT', 'the same sha256 is stored once across mirrors')
      assert.equal(sha256(candidate.body), file.sha256)
      assert.equal(candidateTree.files.size > 0, true)
      await sleep(0)
    } finally {
      await h.close()
    }
  })
})
