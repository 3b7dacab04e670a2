/**
 * Signed metadata that contradicts itself or the store about a file's size
 * (one sha256 listed at two sizes) is refused, and no answer ever completes
 * with bytes that do not match the item's own signed size and sha256: through
 * the real proxy, with real signatures, files and SQLite.
 */

import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MIRROR_PATH, selections, startHarness, type Harness } from '../support/proxy-harness.js'
import { rawRequest, sha256 } from '../support/http.js'
import { buildUpstreamTree, type TreeItem, type UpstreamTree } from '../support/upstream-tree.js'
import { startUpstreamServer, type UpstreamServer } from '../support/upstream-server.js'
import { generateSigningKey } from '../../src/streams/signing-key.js'
import { clearsign, verifyClearsigned } from '../../src/streams/signature.js'
import type { IndexDocument, IndexEntry, ProductsDocument, StreamItem } from '../../src/streams/types.js'

const IMAGES_ID = 'com.ubuntu.maas:stable:v3:download'
const NEWEST = '20250201'
const INDEX = 'streams/v1/index.sjson'

interface ItemChange {
  release: string
  item: 'boot-kernel' | 'boot-initrd'
  set: Partial<StreamItem>
}

const itemOf = (tree: UpstreamTree, release: string, name: string): TreeItem => {
  const found = tree.items.find((i) => i.item === name && i.version === NEWEST && i.path.startsWith(`${release}/amd64/${NEWEST}/ga-`))
  assert.ok(found, `no ${name} of ${release}`)
  return found
}

/**
 * `tree` with items of the newest amd64 ga product of a release changed, the
 * images document re-signed and its index entry marked updated, as upstream
 * publishes a change.
 */
async function withItems(tree: UpstreamTree, changes: ItemChange[]): Promise<UpstreamTree> {
  const doc = JSON.parse(JSON.stringify(tree.products.get(IMAGES_ID))) as ProductsDocument
  for (const { release, item, set } of changes) {
    const product = itemOf(tree, release, item).product
    const entry = doc.products[product]?.versions[NEWEST]?.items[item]
    assert.ok(entry, `${product} ${item}`)
    Object.assign(entry, set)
  }
  const text = `${JSON.stringify(doc, null, 1)}\n`
  const files = new Map(tree.files)
  files.set(tree.productsPath(IMAGES_ID, 'json'), Buffer.from(text))
  files.set(tree.productsPath(IMAGES_ID, 'sjson'), Buffer.from(await clearsign(text, tree.key.privateKey)))
  const index = JSON.parse(await verifyClearsigned((tree.files.get(INDEX) as Buffer).toString(), [tree.key.publicKey])) as IndexDocument
  ;(index.index[IMAGES_ID] as IndexEntry).updated = 'Sat, 01 Mar 2025 00:00:00 +0000'
  files.set(INDEX, Buffer.from(await clearsign(`${JSON.stringify(index, null, 1)}\n`, tree.key.privateKey)))
  return { ...tree, files }
}

interface MirrorStatus {
  name: string
  metadataError: string | null
  metadataWarnings: string[]
}
async function mirrorStatus(h: Harness, name: string): Promise<MirrorStatus> {
  const report = (await (await fetch(`${h.proxy.url}/status`)).json()) as { mirrors: MirrorStatus[] }
  const mirror = report.mirrors.find((candidate) => candidate.name === name)
  assert.ok(mirror)
  return mirror
}

/** A message naming an item fully: product, version, item name, path and a size. */
function namesItem(message: string, item: TreeItem, size: number): void {
  for (const part of [item.product, item.version, item.item, item.path, String(size)]) assert.ok(message.includes(part), `${JSON.stringify(part)} missing from: ${message}`)
}

describe('one sha256 listed at 16 and at 4 bytes in a mirror\'s signed metadata', () => {
  let h: Harness
  let inconsistent: UpstreamTree
  let kernel: TreeItem
  let initrd: TreeItem
  before(async () => {
    h = await startHarness({ tree: { sizes: { kernel: 16 } } })
    kernel = itemOf(h.tree, 'noble', 'boot-kernel')
    initrd = itemOf(h.tree, 'noble', 'boot-initrd')
    // The initrd item names the kernel's sha256, at 4 bytes.
    inconsistent = await withItems(h.tree, [{ release: 'noble', item: 'boot-initrd', set: { sha256: kernel.sha256, size: 4 } }])
  })
  after(() => h.close())

  test('a refresh to it is refused naming both items, and every answer keeps the last good metadata\'s bytes', async () => {
    const mirror = h.proxy.core.mirrors[0]!
    assert.equal((await rawRequest(h.proxy.url, MIRROR_PATH + kernel.path)).status, 200)
    await h.proxy.core.store.fills.idle()
    h.upstream.setTree(inconsistent)
    await mirror.refresh()
    const error = mirror.metadataStatus().metadataError ?? ''
    assert.match(error, /inconsistent/)
    namesItem(error, kernel, 16)
    namesItem(error, initrd, 4)
    assert.equal((await mirrorStatus(h, 'stable')).metadataError, error, 'shown on /status')
    for (const item of [kernel, initrd]) {
      const response = await rawRequest(h.proxy.url, MIRROR_PATH + item.path)
      assert.equal(response.status, 200, item.path)
      assert.equal(response.headers['content-length'], String(item.size), item.path)
      assert.equal(sha256(response.body), item.sha256, item.path)
    }
    await h.proxy.core.store.fills.idle()
  })

  test('with no earlier metadata, the mirror answers 503 naming the inconsistency rather than any bytes', async () => {
    await h.stopProxy()
    await rm(join(h.dataDir, 'metadata'), { recursive: true, force: true })
    await h.restartProxy()
    for (const item of [kernel, initrd]) {
      const response = await rawRequest(h.proxy.url, MIRROR_PATH + item.path)
      assert.equal(response.status, 503, item.path)
      assert.match(response.body.toString(), /inconsistent/)
    }
    h.upstream.setTree(h.tree)
    await h.proxy.core.mirrors[0]!.refresh()
    assert.equal(h.proxy.core.mirrors[0]!.metadataStatus().metadataError, null)
  })
})

describe('a sha256 whose size disagrees with the stored file', () => {
  let h: Harness
  let kernel: TreeItem
  before(async () => {
    h = await startHarness({ tree: { sizes: { kernel: 16 } } })
    kernel = itemOf(h.tree, 'noble', 'boot-kernel')
    assert.equal((await rawRequest(h.proxy.url, MIRROR_PATH + kernel.path)).status, 200)
    await h.proxy.core.store.fills.idle()
  })
  after(() => h.close())

  test('upstream re-listing a stored file at 4 bytes is refused, naming the item and both sizes; the stored bytes are still served whole', async () => {
    const mirror = h.proxy.core.mirrors[0]!
    h.upstream.setTree(await withItems(h.tree, [{ release: 'noble', item: 'boot-kernel', set: { size: 4 } }]))
    await mirror.refresh()
    const error = mirror.metadataStatus().metadataError ?? ''
    assert.match(error, /inconsistent/)
    namesItem(error, kernel, 4)
    assert.ok(error.includes('16'), error)
    const response = await rawRequest(h.proxy.url, MIRROR_PATH + kernel.path)
    assert.equal(response.status, 200)
    assert.equal(response.headers['content-length'], '16')
    assert.equal(sha256(response.body), kernel.sha256)
    h.upstream.setTree(h.tree)
    await mirror.refresh()
    assert.equal(mirror.metadataStatus().metadataError, null)
  })

  test('a stored file whose recorded size differs from the item\'s is not served as a hit: 502 naming it, shown on /status', async () => {
    const { index } = h.proxy.core.store
    index.put({ sha256: kernel.sha256, size: 20, path: kernel.path })
    try {
      for (const request of [{}, { method: 'HEAD' }, { headers: { range: 'bytes=0-3' } }]) {
        const response = await rawRequest(h.proxy.url, MIRROR_PATH + kernel.path, request)
        assert.equal(response.status, 502, JSON.stringify(request))
        assert.notEqual(response.headers['x-cache'], 'HIT')
      }
      const response = await rawRequest(h.proxy.url, MIRROR_PATH + kernel.path)
      assert.match(response.body.toString(), /inconsistent/)
      assert.ok(response.body.toString().includes(kernel.path))
      const [warning, ...others] = (await mirrorStatus(h, 'stable')).metadataWarnings
      assert.equal(others.length, 0, 'one warning per item, however often it is asked for')
      namesItem(warning ?? '', kernel, 16)
      assert.ok(warning?.includes('20'), warning)
    } finally {
      index.put({ sha256: kernel.sha256, size: 16, path: kernel.path })
    }
    const response = await rawRequest(h.proxy.url, MIRROR_PATH + kernel.path)
    assert.equal(response.status, 200)
    assert.equal(sha256(response.body), kernel.sha256)
  })
})

describe('one sha256 at two sizes across mirrors sharing the store', () => {
  let h: Harness
  let other: UpstreamServer
  let keyringDir: string
  let kernel: TreeItem
  let candidateInitrd: TreeItem
  const CANDIDATE_PATH = '/maas/images/ephemeral-v3/candidate/'
  before(async () => {
    const key = await generateSigningKey({ name: 'Test upstream image signing key' })
    const plain = await buildUpstreamTree({ key })
    kernel = itemOf(plain, 'noble', 'boot-kernel')
    candidateInitrd = itemOf(plain, 'jammy', 'boot-initrd')
    // The candidate mirror selects jammy only; its jammy initrd names stable's noble kernel, at 4 bytes.
    other = await startUpstreamServer(await withItems(plain, [{ release: 'jammy', item: 'boot-initrd', set: { sha256: kernel.sha256, size: 4 } }]))
    keyringDir = await mkdtemp(join(tmpdir(), 'sstream-proxy-keyring-'))
    h = await startHarness({
      tree: { key },
      extraMirrors: [
        {
          name: 'candidate',
          path: CANDIDATE_PATH,
          upstreams: [other.url],
          upstreamCooldown: 300,
          keyring: await plain.writeKeyring(keyringDir),
          keyringIsDefault: false,
          metadata: 'filtered',
          publish: 'selected',
          missFailure: 'reset',
          missWait: 8,
          selections: selections([{ filters: ['arch=amd64', 'release~(jammy)'], max: 1 }]),
        },
      ],
    })
    assert.equal(h.proxy.core.mirrors[1]?.metadataStatus().metadataError, null, 'nothing stored yet: nothing to contradict')
  })
  after(async () => {
    await h.close()
    await other.close()
    await rm(keyringDir, { recursive: true, force: true })
  })

  test('joining a running fill of the sha256 at another size is refused with 502', async () => {
    h.upstream.setFault(kernel.path, { kind: 'rate', bytesPerSecond: 4096 })
    try {
      const filling = rawRequest(h.proxy.url, MIRROR_PATH + kernel.path)
      while (h.proxy.core.store.fills.get(kernel.sha256) === undefined) await new Promise((resolve) => setTimeout(resolve, 5))
      const joined = await rawRequest(h.proxy.url, CANDIDATE_PATH + candidateInitrd.path)
      assert.equal(joined.status, 502)
      assert.match(joined.body.toString(), /inconsistent.*being fetched/)
      const [warning] = (await mirrorStatus(h, 'candidate')).metadataWarnings
      namesItem(warning ?? '', { ...candidateInitrd, sha256: kernel.sha256 }, 4)
      assert.ok(warning?.includes(String(kernel.size)))
      const whole = await filling
      assert.equal(whole.status, 200)
      assert.equal(sha256(whole.body), kernel.sha256)
    } finally {
      h.upstream.setFault(kernel.path, undefined)
    }
    await h.proxy.core.store.fills.idle()
  })

  test('once the other mirror stored it, the hit is refused with 502 and the warning names both sizes', async () => {
    assert.ok(h.proxy.core.store.index.get(kernel.sha256))
    const response = await rawRequest(h.proxy.url, CANDIDATE_PATH + candidateInitrd.path)
    assert.equal(response.status, 502)
    assert.match(response.body.toString(), /inconsistent.*stored file/)
    const warnings = (await mirrorStatus(h, 'candidate')).metadataWarnings.filter((warning) => warning.includes('stored file'))
    assert.equal(warnings.length, 1)
    namesItem(warnings[0] ?? '', { ...candidateInitrd, sha256: kernel.sha256 }, 4)
    assert.ok(warnings[0]?.includes(String(kernel.size)))
    assert.deepEqual((await mirrorStatus(h, 'stable')).metadataWarnings, [])
    const hit = await rawRequest(h.proxy.url, MIRROR_PATH + kernel.path)
    assert.equal(hit.status, 200)
    assert.equal(sha256(hit.body), kernel.sha256)
  })
})
