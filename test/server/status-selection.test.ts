/**
 * The selection figures of `/status` and `/metrics` with `publish: "cached"`:
 * once upstream moves on, the mirror keeps publishing the older, stored
 * version while the new one waits for its files. The cached figures count the
 * selection only (the new version), so they must not borrow the stored files
 * of the older version still published.
 */

import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { buildUpstreamTree, type TreeItem } from '../support/upstream-tree.js'
import { startHarness, type Harness } from '../support/proxy-harness.js'

interface SelectionFigures {
  files: number
  bytes: number
  cachedFiles: number
  cachedBytes: number
}

const NEW_VERSION = '20250301'

describe('selection figures with publish: "cached"', () => {
  let h: Harness
  before(async () => {
    h = await startHarness({ mirror: { publish: 'cached' } })
  })
  after(() => h.close())

  const statusSelection = async () => {
    const report = (await (await fetch(`${h.proxy.url}/status`)).json()) as { mirrors: Array<{ selection: SelectionFigures }> }
    return report.mirrors[0]?.selection as SelectionFigures
  }
  const metric = async (name: string) => {
    const text = await (await fetch(`${h.proxy.url}/metrics`)).text()
    const line = text.split('\n').find((candidate) => candidate.startsWith(`${name}{mirror="stable"} `))
    assert.ok(line !== undefined, `${name} exposed`)
    return Number(line.split(' ')[1])
  }
  const stored = (item: TreeItem) => h.proxy.core.store.index.get(item.sha256) !== undefined

  test('a fully fetched selection is reported fully cached', async () => {
    assert.equal((await h.proxy.core.prefetcher.run('stable')).result, 'ok')
    const selection = await statusSelection()
    assert.equal(selection.files, 10)
    assert.deepEqual({ files: selection.cachedFiles, bytes: selection.cachedBytes }, { files: selection.files, bytes: selection.bytes })
  })

  test('a new version whose files all fail is reported not cached, though the old version is stored and published', async () => {
    const next = await buildUpstreamTree({ key: h.tree.key, versions: ['20250101', '20250201', NEW_VERSION] })
    const newItems = next.items.filter((item) => item.version.startsWith(NEW_VERSION))
    for (const item of newItems) h.upstream.setFault(item.path, { kind: 'status', status: 500 })
    h.upstream.setTree(next)
    assert.equal((await h.proxy.core.prefetcher.run('stable')).result, 'failed')
    assert.equal(newItems.filter(stored).length, 0, 'nothing of the new version stored')
    // The scenario that misled the figures: the older version's files still published, and stored.
    const published = [...(h.proxy.core.mirrors[0]?.current()?.files.values() ?? [])]
    assert.ok(published.some((file) => file.path.includes('/20250201/') && h.proxy.core.store.index.get(file.sha256) !== undefined))

    const selection = await statusSelection()
    assert.equal(selection.files, 10)
    assert.equal(selection.cachedFiles, 0)
    assert.equal(selection.cachedBytes, 0)
    assert.equal(await metric('sstream_proxy_selection_files'), selection.files)
    assert.equal(await metric('sstream_proxy_selection_cached_files'), selection.cachedFiles)
    assert.equal(await metric('sstream_proxy_selection_cached_bytes'), selection.cachedBytes)
  })

  test('cached figures count the new version as its files arrive', async () => {
    const next = await buildUpstreamTree({ key: h.tree.key, versions: ['20250101', '20250201', NEW_VERSION] })
    // Only the bootloaders recover: the images of the new version still fail.
    const recovered = next.items.filter((item) => item.version === `${NEW_VERSION}.0`)
    assert.ok(recovered.length > 0)
    for (const item of recovered) h.upstream.setFault(item.path, undefined)
    assert.equal((await h.proxy.core.prefetcher.run('stable', { gc: false })).result, 'failed')

    const selection = await statusSelection()
    const recoveredPaths = new Set(recovered.filter(stored).map((item) => item.path))
    assert.ok(recoveredPaths.size > 0 && recoveredPaths.size < selection.files)
    assert.equal(selection.cachedFiles, recoveredPaths.size)
    assert.equal(await metric('sstream_proxy_selection_cached_files'), selection.cachedFiles)
  })
})
