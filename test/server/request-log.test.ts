/**
 * One log line per request, with method, path, status, bytes, hit or miss
 * and duration, for every way a request is answered.
 */

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createLogger } from '../../src/log/logger.js'
import { MIRROR_PATH, startHarness } from '../support/proxy-harness.js'
import { rawRequest } from '../support/http.js'

/** A proxy whose log lines are kept, parsed, and a kernel of its tree. */
async function startLoggedHarness() {
  const lines: Array<Record<string, unknown>> = []
  const h = await startHarness({ log: createLogger({ json: true, write: (line) => lines.push(JSON.parse(line) as Record<string, unknown>) }) })
  const kernel = h.tree.items.find((item) => item.item === 'boot-kernel' && item.path.startsWith('noble/amd64/20250201/'))
  assert.ok(kernel)
  return { h, lines, kernel }
}

test('each request is logged once with method, path, status, bytes, cache and duration', async () => {
  const { h, lines, kernel } = await startLoggedHarness()
  try {
    const index = await rawRequest(h.proxy.url, `${MIRROR_PATH}streams/v1/index.sjson`)
    await rawRequest(h.proxy.url, MIRROR_PATH + kernel.path)
    await h.proxy.core.store.fills.idle()
    await rawRequest(h.proxy.url, MIRROR_PATH + kernel.path, { headers: { range: 'bytes=0-99' } })
    await rawRequest(h.proxy.url, `${MIRROR_PATH}not/selected`)
    await rawRequest(h.proxy.url, '/status')
    // The log line of a response is written once it has closed.
    await new Promise((resolve) => setTimeout(resolve, 50))

    const requests = lines.filter((line) => line.message === 'request')
    const logged = requests.map(({ method, path, status, bytes, cache }) => ({ method, path, status, bytes, cache }))
    assert.deepEqual(logged.slice(0, 4), [
      { method: 'GET', path: `${MIRROR_PATH}streams/v1/index.sjson`, status: 200, bytes: index.body.length, cache: undefined },
      { method: 'GET', path: MIRROR_PATH + kernel.path, status: 200, bytes: kernel.size, cache: 'miss' },
      { method: 'GET', path: MIRROR_PATH + kernel.path, status: 206, bytes: 100, cache: 'hit' },
      { method: 'GET', path: `${MIRROR_PATH}not/selected`, status: 404, bytes: logged[3]?.bytes, cache: undefined },
    ])
    assert.ok((logged[3]?.bytes as number) > 0)
    assert.equal(logged[4]?.path, '/status')
    assert.ok((logged[4]?.bytes as number) > 0)
    assert.equal(requests.length, 5)
    for (const line of requests) assert.equal(typeof line.ms, 'number')
  } finally {
    await h.close()
  }
})

test('a client that leaves while a miss waits for upstream is still logged, as aborted', async () => {
  const { h, lines, kernel } = await startLoggedHarness()
  try {
    h.upstream.setFault(kernel.path, { kind: 'delay', ms: 1_000 })
    const leaving = new AbortController()
    setTimeout(() => leaving.abort(), 200)
    await fetch(h.url(kernel.path), { signal: leaving.signal }).catch(() => undefined)
    await h.proxy.core.store.fills.idle()
    await new Promise((resolve) => setTimeout(resolve, 50))
    const logged = lines.filter((line) => line.message === 'request' && line.path === MIRROR_PATH + kernel.path)
    assert.equal(logged.length, 1)
    assert.equal(logged[0]?.aborted, true)
    assert.equal(h.proxy.core.traffic.requests.get('file 200'), 1)
  } finally {
    await h.close()
  }
})
