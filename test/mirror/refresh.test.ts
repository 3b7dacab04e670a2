/**
 * Metadata refreshes that go wrong part-way, through the real proxy: upstream
 * metadata that verifies but cannot be published, a republish racing a
 * refresh, and a keyring that appears after the proxy started.
 */

import assert from 'node:assert/strict'
import { readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseProducts } from '../../src/streams/documents.js'
import { clearsign } from '../../src/streams/signature.js'
import { startHarness, type Harness } from '../support/proxy-harness.js'
import { buildUpstreamTree } from '../support/upstream-tree.js'

const IMAGES = 'streams/v1/com.ubuntu.maas:stable:v3:download'
const NEXT_VERSIONS = ['20250101', '20250201', '20250301']

/** The version names the proxy publishes now in one products document. */
async function publishedVersions(h: Harness, document: string): Promise<string[]> {
  const products = parseProducts(await (await fetch(h.url(`${document}.json`))).text(), document)
  return [...new Set(Object.values(products.products).flatMap((product) => Object.keys(product.versions)))].sort()
}

describe('a metadata refresh', () => {
  test('of metadata that verifies but cannot be published stays an error on every later refresh, the last good copy served', async () => {
    const h = await startHarness()
    try {
      const mirror = h.proxy.core.mirrors[0]!
      const bad = await buildUpstreamTree({ key: h.tree.key, versions: NEXT_VERSIONS })
      // Two selected items give one path different bytes: upstream contradicts itself.
      const document = structuredClone(bad.products.get('com.ubuntu.maas:stable:v3:download')) as {
        products: Record<string, { versions: Record<string, { items: Record<string, { path: string; size: number }> }> }>
      }
      const ga = document.products['com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04']!.versions['20250301']!.items
      const hwe = document.products['com.ubuntu.maas.stable:v3:boot:24.04:amd64:hwe-24.04']!.versions['20250301']!.items
      hwe['boot-kernel']!.path = ga['boot-kernel']!.path
      hwe['boot-kernel']!.size = 1234
      const text = `${JSON.stringify(document, null, 1)}\n`
      bad.files.set(`${IMAGES}.json`, Buffer.from(text))
      bad.files.set(`${IMAGES}.sjson`, Buffer.from(await clearsign(text, bad.key.privateKey)))
      h.upstream.setTree(bad)
      for (let refresh = 1; refresh <= 3; refresh++) {
        await mirror.refresh()
        assert.match(mirror.metadataStatus().metadataError ?? '', /names different files/, `refresh ${refresh}`)
        assert.deepEqual(await publishedVersions(h, IMAGES), ['20250201'])
      }
    } finally {
      await h.close()
    }
  })

  test('that a republish overtakes (publish: "cached") still publishes the new upstream metadata', async () => {
    const h = await startHarness({ mirror: { publish: 'cached' }, config: { metadataTtl: 2 } })
    try {
      const mirror = h.proxy.core.mirrors[0]!
      const grub = 'bootloaders/uefi/amd64/20250201.0/grub2-signed.tar.xz'
      // The whole selection stored but one bootloader, whose version stays pending.
      h.upstream.setFault(grub, { kind: 'status', status: 404 })
      await h.proxy.core.prefetcher.run('stable', { gc: false })
      h.upstream.setFault(grub, undefined)
      await mirror.republished()
      // Upstream moves on; its images document is slow, so the refresh is still running when...
      const next = await buildUpstreamTree({ key: h.tree.key, versions: NEXT_VERSIONS })
      h.upstream.setTree(next)
      h.upstream.setFault(`${IMAGES}.sjson`, { kind: 'delay', ms: 2_000 })
      await sleep(2_200)
      await fetch(h.url('streams/v1/index.sjson'))
      await sleep(300)
      // ...the pending bootloader is stored, and its version republished from the older metadata.
      assert.equal((await fetch(h.url(grub))).status, 200)
      await mirror.republished()
      await sleep(4_000)
      h.upstream.setFault(`${IMAGES}.sjson`, undefined)
      // The change starts a prefetch pass, which stores the new version for publish: "cached".
      for (let ttl = 0; ttl < 3; ttl++) {
        await sleep(2_200)
        await fetch(h.url('streams/v1/index.sjson'))
        await sleep(500)
      }
      assert.equal(mirror.current()?.upstreamUpdated, next.index.updated, 'the publication is built from metadata upstream replaced')
      assert.deepEqual(await publishedVersions(h, IMAGES), ['20250301'])
    } finally {
      await h.close()
    }
  })

  test('picks up a keyring installed after the proxy started', async () => {
    const h = await startHarness({ metadataUnavailableRetryMs: 200 })
    try {
      const keyring = await readFile(h.keyringPath)
      await h.stopProxy()
      await rm(join(h.dataDir, 'metadata'), { recursive: true, force: true })
      await rm(h.keyringPath)
      await h.restartProxy()
      const mirror = h.proxy.core.mirrors[0]!
      assert.match(mirror.metadataStatus().metadataError ?? '', /not found/)
      assert.equal((await fetch(h.url('streams/v1/index.sjson'))).status, 503)
      await writeFile(h.keyringPath, keyring)
      await sleep(250)
      assert.equal((await fetch(h.url('streams/v1/index.sjson'))).status, 200)
      assert.equal(mirror.metadataStatus().metadataError, null)
    } finally {
      await h.close()
    }
  })
})
