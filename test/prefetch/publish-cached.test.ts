import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ProductsDocument } from '../../src/streams/types.js'
import { startHarness, type Harness } from '../support/proxy-harness.js'

const IMAGES = 'streams/v1/com.ubuntu.maas:stable:v3:download.json'
const GA = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04'
const NEW_SQUASHFS = 'noble/amd64/20250201/squashfs'
const OLD_SQUASHFS = 'noble/amd64/20250101/squashfs'

describe('publish: "cached"', () => {
  let dataDir: string
  let h: Harness
  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'sstream-cached-'))
    // First the older version alone, as an earlier selection left it on disk.
    const seed = await startHarness({ dataDir, mirror: { selections: [{ filters: ['arch=amd64', 'release=noble', 'version_name=20250101'] }] } })
    assert.equal((await seed.proxy.core.prefetcher.run('stable', { gc: false })).result, 'ok')
    await seed.close()
    h = await startHarness({ dataDir, mirror: { publish: 'cached', selections: [{ filters: ['arch=amd64', 'release=noble'], max: 1 }] } })
  })
  after(async () => {
    await h.close()
    await rm(dataDir, { recursive: true, force: true })
  })

  const publishedVersions = async () => {
    const response = await fetch(h.url(IMAGES))
    assert.equal(response.status, 200)
    const document = (await response.json()) as ProductsDocument
    return Object.keys(document.products[GA]?.versions ?? {})
  }
  const stored = (path: string) => h.proxy.core.store.index.get(h.tree.items.find((item) => item.path === path)?.sha256 ?? '') !== undefined

  test('an incomplete new version stays hidden and the complete old one stays published and stored', async () => {
    assert.deepEqual(await publishedVersions(), ['20250101'])
    h.upstream.setFault(NEW_SQUASHFS, { kind: 'status', status: 503 })
    const outcome = await h.proxy.core.prefetcher.run('stable')
    h.upstream.setFault(NEW_SQUASHFS, undefined)
    assert.equal(outcome.result, 'failed')
    assert.deepEqual(await publishedVersions(), ['20250101'])
    assert.ok(stored(OLD_SQUASHFS))
    // The old version's files stay servable while it is published.
    assert.equal((await fetch(h.url(OLD_SQUASHFS))).headers.get('x-cache'), 'HIT')
  })

  test('the new version appears once its last file is stored, and the old one is then collected', async () => {
    const outcome = await h.proxy.core.prefetcher.run('stable')
    assert.equal(outcome.result, 'ok')
    assert.deepEqual(await publishedVersions(), ['20250201'])
    assert.ok(!stored(OLD_SQUASHFS))
    assert.equal((await fetch(h.url(OLD_SQUASHFS))).status, 404)
  })
})
