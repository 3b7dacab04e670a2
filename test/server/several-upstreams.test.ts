/**
 * A mirror with two upstreams, end to end: a real proxy in front of two real
 * test upstreams, the first failing in each way the failover knows (refused,
 * 5xx for metadata, a signature by another key, a file transfer reset part-way,
 * a file it lacks). Metadata comes whole from one upstream, files are verified
 * whichever upstream sent them, and /status shows both with their state.
 */

import assert from 'node:assert/strict'
import { afterEach, describe, test } from 'node:test'
import { MIRROR_PATH, startHarness, type Harness } from '../support/proxy-harness.js'
import { rawRequest, sha256 } from '../support/http.js'
import { buildUpstreamTree, type TreeItem, type TreeOptions, type UpstreamTree } from '../support/upstream-tree.js'
import { startUpstreamServer, type UpstreamServer } from '../support/upstream-server.js'
import { INDEX_PATH } from '../../src/mirror/upstream-metadata.js'

// One release, arch and version keep the trees quick to build; the kernel is large enough to cut part-way.
const TREE: TreeOptions = { releases: [{ release: 'noble', version: '24.04' }], arches: ['amd64'], versions: ['20250201'], sizes: { kernel: 512 * 1024 } }

interface Pair {
  tree: UpstreamTree
  first: UpstreamServer
  second: UpstreamServer
  h: Harness
}

let running: Pair | undefined
afterEach(async () => {
  if (running === undefined) return
  await running.h.close()
  await running.first.close()
  await running.second.close()
  running = undefined
})

/**
 * Two upstreams serving the same signed tree (the first may serve `firstTree`
 * instead) and a proxy whose mirror lists them in that order; `prepare` breaks
 * the first before the proxy fetches its metadata.
 */
async function startPair(options: { firstTree?: (tree: UpstreamTree) => Promise<UpstreamTree>; prepare?: (first: UpstreamServer) => Promise<void> | void } = {}): Promise<Pair> {
  const tree = await buildUpstreamTree(TREE)
  const first = await startUpstreamServer(options.firstTree === undefined ? tree : await options.firstTree(tree))
  const second = await startUpstreamServer(tree)
  await options.prepare?.(first)
  const h = await startHarness({ tree: { ...TREE, key: tree.key }, mirror: { upstreams: [first.url, second.url] } })
  running = { tree, first, second, h }
  return running
}

const kernelOf = (tree: UpstreamTree): TreeItem => {
  const found = tree.items.find((item) => item.item === 'boot-kernel' && item.path.includes('/ga-'))
  assert.ok(found)
  return found
}
const productsPaths = (tree: UpstreamTree) => [...tree.products.keys()].map((contentId) => tree.productsPath(contentId, 'sjson'))

interface UpstreamsStatus {
  mirrors: Array<{ upstream: string; upstreamReachable: boolean | null; metadataError: string | null; upstreams: Array<{ url: string; state: string; coolingUntil: string | null; lastError: string | null; lastErrorAt: string | null }> }>
}
async function upstreamsStatus(h: Harness) {
  const status = (await (await fetch(`${h.proxy.url}/status`)).json()) as UpstreamsStatus
  return status.mirrors[0]!
}

/** The mirror publishes, and a file fetched through it arrives whole and verified. */
async function servesVerifiedFile(pair: Pair): Promise<TreeItem> {
  const index = await rawRequest(pair.h.proxy.url, `${MIRROR_PATH}${INDEX_PATH}`)
  assert.equal(index.status, 200, 'the mirror publishes')
  const kernel = kernelOf(pair.tree)
  const response = await rawRequest(pair.h.proxy.url, `${MIRROR_PATH}${kernel.path}`)
  assert.equal(response.status, 200)
  assert.equal(sha256(response.body), kernel.sha256)
  return kernel
}

describe('a mirror with two upstreams', () => {
  test('the first refuses connections: metadata and files come from the second; /status shows the first cooling down with its error', async () => {
    const pair = await startPair({ prepare: (first) => first.down() })
    const { h, second } = pair
    const kernel = await servesVerifiedFile(pair)
    assert.equal(second.requestCount(INDEX_PATH), 1)
    assert.equal(second.requestCount(kernel.path), 1)

    const mirror = await upstreamsStatus(h)
    assert.equal(mirror.upstreamReachable, true)
    assert.equal(mirror.metadataError, null)
    assert.deepEqual(mirror.upstreams.map((upstream) => [upstream.url, upstream.state]), [[pair.first.url, 'cooling'], [second.url, 'ok']])
    assert.match(mirror.upstreams[0]?.lastError ?? '', /ECONNREFUSED/)
    assert.ok(Date.parse(mirror.upstreams[0]?.coolingUntil ?? '') > Date.now(), 'cooling down until a time to come')
    assert.equal(mirror.upstreams[1]?.lastError, null)

    const html = await (await fetch(`${h.proxy.url}/status`, { headers: { accept: 'text/html' } })).text()
    assert.match(html, new RegExp(`<li data-state="cooling"><a href="${pair.first.url}">[^<]*</a> <span class="badge bad">cooling down until <time`))
    assert.match(html, /last error [^<]*ECONNREFUSED/)
    assert.match(html, new RegExp(`<li data-state="ok"><a href="${second.url}">[^<]*</a> <span class="badge ok">ok</span></li>`))
  })

  test('the first answers 5xx for a products file: the whole set, index included, comes from the second', async () => {
    let products: string[] = []
    const pair = await startPair({
      prepare: (first) => {
        products = productsPaths(first.tree)
        first.setFault(products[0]!, { kind: 'status', status: 503 })
      },
    })
    const { first, second } = pair
    assert.equal(first.requestCount(INDEX_PATH), 1, 'the first gave its index')
    assert.equal(second.requestCount(INDEX_PATH), 1, 'the index was fetched again from the second, not mixed with the first one')
    for (const path of products) assert.equal(second.requestCount(path), 1, `${path} from the second`)
    await servesVerifiedFile(pair)
    const mirror = await upstreamsStatus(pair.h)
    assert.match(mirror.upstreams[0]?.lastError ?? '', /HTTP 503/)
    assert.equal(mirror.upstreams[0]?.state, 'cooling')
  })

  test('the first serves metadata signed by another key: it is cooled down and the second, verified by the keyring, is used', async () => {
    const pair = await startPair({ firstTree: () => buildUpstreamTree(TREE) })
    assert.equal(pair.second.requestCount(INDEX_PATH), 1)
    await servesVerifiedFile(pair)
    const mirror = await upstreamsStatus(pair.h)
    assert.equal(mirror.metadataError, null)
    assert.equal(mirror.upstreams[0]?.state, 'cooling')
    assert.match(mirror.upstreams[0]?.lastError ?? '', /signature|key/i)
    assert.ok(mirror.upstreams[0]?.lastError?.startsWith(pair.first.url), 'the error names the upstream')
  })

  test('a file transfer reset part-way on the first resumes with Range on the second and is verified', async () => {
    const cutAfter = 200 * 1024
    const pair = await startPair()
    const kernel = kernelOf(pair.tree)
    pair.first.setFault(kernel.path, { kind: 'reset', afterBytes: cutAfter })
    await servesVerifiedFile(pair)
    assert.equal(pair.first.requestCount(kernel.path), 1)
    assert.deepEqual(pair.first.rangeRequests(kernel.path), [])
    assert.deepEqual(pair.second.rangeRequests(kernel.path), [`bytes=${cutAfter}-`], 'the second was asked for the rest only')
    assert.equal(pair.second.bytesSent(kernel.path), kernel.size - cutAfter)
    await pair.h.proxy.core.store.fills.idle()
    assert.equal(pair.h.proxy.core.store.index.get(kernel.sha256)?.size, kernel.size, 'stored once verified')
    const mirror = await upstreamsStatus(pair.h)
    assert.equal(mirror.upstreams[0]?.state, 'cooling')
    assert.match(mirror.upstreams[0]?.lastError ?? '', /ECONNRESET|aborted|closed/)
  })

  test('a file the first lacks (404) comes from the second, and the first is not cooled down for it', async () => {
    const pair = await startPair()
    const kernel = kernelOf(pair.tree)
    pair.first.setFault(kernel.path, { kind: 'status', status: 404 })
    await servesVerifiedFile(pair)
    assert.equal(pair.first.requestCount(kernel.path), 1)
    assert.equal(pair.second.requestCount(kernel.path), 1)
    const mirror = await upstreamsStatus(pair.h)
    assert.equal(mirror.upstreams[0]?.state, 'ok')
    assert.match(mirror.upstreams[0]?.lastError ?? '', /HTTP 404/)
    // The next refresh still asks the first.
    await pair.h.proxy.core.mirrors[0]!.refresh()
    assert.equal(pair.first.requestCount(INDEX_PATH), 2)
    assert.equal(pair.second.requestCount(INDEX_PATH), 0)
  })
})
