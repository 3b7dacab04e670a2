/**
 * `/health`, the load balancers' check (contrib/haproxy): a cheap 200 on a
 * real socket, counted under its own route in `/metrics` but kept out of the
 * request log, which checks every few seconds from each balancer would drown.
 */

import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { createLogger } from '../../src/log/logger.js'
import { startHarness, type Harness } from '../support/proxy-harness.js'

describe('GET /health', () => {
  let h: Harness
  const lines: Array<Record<string, unknown>> = []
  before(async () => {
    h = await startHarness({ log: createLogger({ json: true, write: (line) => void lines.push(JSON.parse(line)) }) })
  })
  after(() => h.close())

  test('answers ok to GET and HEAD, counted as route="health" and not logged', async () => {
    const got = await fetch(`${h.proxy.url}/health`)
    assert.equal(got.status, 200)
    assert.equal(await got.text(), 'ok\n')
    const head = await fetch(`${h.proxy.url}/health`, { method: 'HEAD' })
    assert.equal(head.status, 200)
    await head.arrayBuffer()
    // A logged request for comparison: once its line is there, a health line would be too.
    await (await fetch(`${h.proxy.url}/status`)).arrayBuffer()
    for (let waited = 0; waited < 5_000 && !lines.some((line) => line.path === '/status'); waited += 20) await sleep(20)
    assert.ok(lines.some((line) => line.message === 'request' && line.path === '/status'), 'the status request is logged')
    assert.deepEqual(lines.filter((line) => line.path === '/health'), [])
    const metrics = await (await fetch(`${h.proxy.url}/metrics`)).text()
    assert.match(metrics, /^sstream_proxy_requests_total\{route="health",status="200"\} 2$/m)
  })
})
