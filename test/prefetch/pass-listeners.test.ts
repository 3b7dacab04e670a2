/**
 * A prefetch pass listens for 'abort' on a signal that outlives it (the
 * prefetcher's, stopped only on shutdown): each pass must take its listener
 * away when it ends, or they pile up, one per pass, each holding the pass.
 */

import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { getEventListeners } from 'node:events'
import { setImmediate as nextTurn } from 'node:timers/promises'
import type { Publication } from '../../src/mirror/publication.js'
import { startPass } from '../../src/prefetch/pass.js'
import { startHarness, type Harness } from '../support/proxy-harness.js'

const PASSES = 15
// One selected file that always fails, so every pass has work, retries and an error, not just an empty plan.
const FAILING = 'noble/amd64/20250201/squashfs'

describe('prefetch passes on a long-lived signal', () => {
  let h: Harness
  before(async () => {
    h = await startHarness()
    h.upstream.setFault(FAILING, { kind: 'status', status: 500 })
  })
  after(() => h.close())

  test('each pass removes its abort listener when it ends', async () => {
    const mirror = h.proxy.core.mirrors[0]!
    const publication = mirror.current() as Publication
    const stopping = new AbortController()
    const listeners = () => getEventListeners(stopping.signal, 'abort').length
    for (let i = 1; i <= PASSES; i++) {
      const pass = startPass({
        publication,
        store: h.proxy.core.store,
        source: (path) => mirror.fileSource(path),
        concurrency: 4,
        attempts: 2,
        retryBaseMs: 1,
        signal: stopping.signal,
      })
      assert.ok(pass.targets.some((target) => target.path === FAILING), `pass ${i} tries the failing file`)
      const { result } = await pass.done
      assert.equal(result, 'failed')
      assert.equal(listeners(), 0, `listeners left after pass ${i}`)
    }
  })

  test('many prefetcher passes raise no MaxListenersExceededWarning', async () => {
    const warnings: Error[] = []
    const onWarning = (warning: Error) => warnings.push(warning)
    process.on('warning', onWarning)
    try {
      for (let i = 1; i <= PASSES; i++) {
        assert.equal((await h.proxy.core.prefetcher.run('stable', { gc: false })).result, 'failed')
      }
      // process.emitWarning delivers on a later tick.
      await nextTurn()
    } finally {
      process.off('warning', onWarning)
    }
    assert.deepEqual(
      warnings.filter((warning) => warning.name === 'MaxListenersExceededWarning').map((warning) => warning.message),
      [],
    )
  })
})
