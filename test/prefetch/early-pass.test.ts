/**
 * A prefetch pass starts early (before `prefetch.interval`) only when what a
 * mirror's selection resolves to changed, not whenever a refresh fetched
 * documents: upstreams that ignore conditional requests, or re-sign the same
 * content, answer every refresh with new bytes.
 */

import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { selectedFiles, startHarness, type Harness } from '../support/proxy-harness.js'
import { buildUpstreamTree } from '../support/upstream-tree.js'

describe('an early prefetch pass (onStart false, hourly interval)', () => {
  let h: Harness
  const passes = () => h.proxy.core.prefetcher.status('stable').passes.length
  const mirror = () => h.proxy.core.mirrors[0]!
  before(async () => {
    h = await startHarness()
    assert.equal(h.config.prefetch.onStart, false)
    // Every conditional request is answered 200 with the same bytes.
    h.upstream.setFault('*', { kind: 'unconditional' })
  })
  after(() => h.close())

  test('an upstream answering 200 with identical bytes to every conditional request starts no pass', async () => {
    for (let refresh = 0; refresh < 3; refresh++) await mirror().refresh()
    assert.ok(h.upstream.requestCount('streams/v1/index.sjson') >= 4, 'each refresh fetched the index again')
    assert.equal(passes(), 0)
  })

  test('a restart with saved metadata starts no pass', async () => {
    await h.stopProxy()
    await h.restartProxy()
    // Joins the refresh the start began behind the saved metadata.
    await mirror().refresh()
    assert.equal(mirror().metadataStatus().metadataError, null)
    assert.equal(passes(), 0)
  })

  test('upstream adding a version to the selection starts a pass, which fetches it', async () => {
    const newer = await buildUpstreamTree({ key: h.tree.key, versions: ['20250101', '20250201', '20250301'] })
    h.upstream.setTree(newer)
    await mirror().refresh()
    assert.equal(passes(), 1)
    assert.equal(h.proxy.core.prefetcher.status('stable').state, 'running')
    // Joins the running pass.
    const outcome = await h.proxy.core.prefetcher.run('stable')
    assert.equal(outcome.result, 'ok')
    // Nothing was stored before (no pass ran): the pass fetches the whole selection of the new tree.
    const selected = selectedFiles(newer.items, '20250301')
    assert.equal(outcome.counts.filesDone, selected.length)
    for (const file of selected) assert.ok(h.proxy.core.store.index.get(file.sha256), `${file.path} stored`)
    await mirror().refresh()
    assert.equal(passes(), 1, 'the same selection again is no change')
  })
})
