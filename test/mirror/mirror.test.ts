/**
 * The metadata a mirror serves across upstream changes, through the real
 * proxy: held while fresh, refreshed behind the requests once the TTL has
 * passed, never waited for by a client that can be answered.
 */

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { parseProducts } from '../../src/streams/documents.js'
import { buildUpstreamTree } from '../support/upstream-tree.js'
import { startHarness, type Harness } from '../support/proxy-harness.js'

const TTL_SECONDS = 2
const PRODUCTS = 'streams/v1/com.ubuntu.maas:stable:v3:download.json'
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** The version names of every product the proxy publishes now. */
async function publishedVersions(h: Harness): Promise<string[]> {
  const products = parseProducts(await (await fetch(h.url(PRODUCTS))).text(), PRODUCTS)
  return [...new Set(Object.values(products.products).flatMap((product) => Object.keys(product.versions)))].sort()
}

describe('metadata past its TTL', () => {
  let h: Harness
  before(async () => {
    h = await startHarness({ config: { metadataTtl: TTL_SECONDS } })
  })
  after(() => h.close())

  test('is served while fresh without asking upstream, then refreshed behind the next request', async () => {
    const index = h.url('streams/v1/index.sjson')
    assert.deepEqual(await publishedVersions(h), ['20250201'])
    h.upstream.resetCounters()
    for (let i = 0; i < 5; i++) assert.equal((await fetch(index)).status, 200)
    assert.equal(h.upstream.requestCount('streams/v1/index.sjson'), 0, 'fresh metadata is not asked for again')

    h.upstream.setTree(await buildUpstreamTree({ key: h.tree.key, versions: ['20250101', '20250201', '20250301'] }))
    await sleep(TTL_SECONDS * 1000 + 100)
    // The stale copy answers at once; the refresh it starts runs behind it.
    assert.deepEqual(await publishedVersions(h), ['20250201'])
    const deadline = Date.now() + 5_000
    while ((await publishedVersions(h)).includes('20250201') && Date.now() < deadline) await sleep(50)
    assert.deepEqual(await publishedVersions(h), ['20250301'])
    assert.ok(h.upstream.requestCount('streams/v1/index.sjson') >= 1)
  })
})
