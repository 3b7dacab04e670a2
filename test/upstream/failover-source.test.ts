/**
 * The failover source against two real test upstreams on 127.0.0.1, with an
 * injected clock: a failed upstream is not asked again within its cool-down,
 * is asked again after it, and is still asked when every upstream is cooling
 * down; a 404 for one file moves to the next upstream without a cool-down.
 */

import assert from 'node:assert/strict'
import { after, afterEach, before, describe, test } from 'node:test'
import { buffer } from 'node:stream/consumers'
import { DEFAULT_LIMITS } from '../../src/config/defaults.js'
import { createSource } from '../../src/upstream/create-source.js'
import { createFailoverSource } from '../../src/upstream/failover-source.js'
import { createUpstreamClient, type UpstreamClient } from '../../src/upstream/upstream-client.js'
import type { UpstreamSource } from '../../src/upstream/upstream-source.js'
import { buildUpstreamTree, sha256, type UpstreamTree } from '../support/upstream-tree.js'
import { startUpstreamServer, type UpstreamServer } from '../support/upstream-server.js'

const INDEX = 'streams/v1/index.sjson'
const COOLDOWN_MS = 300_000

let tree: UpstreamTree
let first: UpstreamServer
let second: UpstreamServer
let client: UpstreamClient
let clock: number
let source: UpstreamSource

before(async () => {
  tree = await buildUpstreamTree({ releases: [{ release: 'noble', version: '24.04' }], arches: ['amd64'], versions: ['20250101'] })
  first = await startUpstreamServer(tree)
  second = await startUpstreamServer(tree)
  client = createUpstreamClient({ connectTimeoutMs: 3_000, idleTimeoutMs: 1_500 })
})
after(async () => {
  client.close()
  await first.close()
  await second.close()
})

/** A fresh source (no member cooling) over both upstreams, the clock at a fixed start. */
function freshSource(): UpstreamSource {
  clock = Date.parse('2026-01-01T00:00:00Z')
  return createFailoverSource({ members: [first.url, second.url].map((url) => createSource(url, { client, metadataMaxBytes: DEFAULT_LIMITS.metadataMaxBytes })), cooldownMs: COOLDOWN_MS, now: () => clock })
}

afterEach(async () => {
  first.setFault('*', undefined)
  second.setFault('*', undefined)
  await first.up().catch(() => undefined)
  await second.up().catch(() => undefined)
  first.resetCounters()
  second.resetCounters()
})

describe('a failover source over two upstreams', () => {
  test('an upstream answering 5xx is skipped for the cool-down, and asked again once it is over', async () => {
    source = freshSource()
    first.setFault('*', { kind: 'status', status: 503 })
    const served = await source.getDocument(INDEX)
    assert.equal(served.status, 200)
    assert.ok(first.requestCount(INDEX) > 0, 'the first upstream was asked first')
    assert.equal(second.requestCount(INDEX), 1, 'the second served the document')
    const [cooling, ok] = source.health?.() ?? []
    assert.equal(cooling?.state, 'cooling')
    assert.equal(cooling?.coolingUntil, new Date(clock + COOLDOWN_MS).toISOString())
    assert.match(cooling?.lastError ?? '', /HTTP 503/)
    assert.equal(ok?.state, 'ok')
    assert.equal(ok?.lastError, null)

    // Within the cool-down: documents and files go to the second only.
    first.resetCounters()
    clock += COOLDOWN_MS - 1
    assert.equal((await source.getDocument(INDEX)).status, 200)
    const file = tree.items[0]!
    const response = await source.openFile(file.path)
    assert.equal(sha256(await buffer(response.body)), file.sha256)
    assert.equal(first.requestCount(), 0, 'not asked within the cool-down')

    // After it: asked again first (and, still failing, cooled down again).
    clock += 2
    first.setFault('*', undefined)
    assert.equal((await source.getDocument(INDEX)).status, 200)
    assert.equal(first.requestCount(INDEX), 1, 'asked again after the cool-down')
    assert.equal(source.health?.()[0]?.state, 'ok')
  })

  test('a refused connection cools the upstream down; when every upstream is cooling down they are still tried', async () => {
    source = freshSource()
    await first.down()
    assert.equal((await source.getDocument(INDEX)).status, 200)
    assert.match(source.health?.()[0]?.lastError ?? '', /ECONNREFUSED/)
    await first.up()
    second.setFault('*', { kind: 'status', status: 502 })
    // The second fails now too: the first, still cooling down, is the last resort and serves.
    const file = tree.items[0]!
    const response = await source.openFile(file.path)
    assert.equal(response.status, 200)
    assert.equal(sha256(await buffer(response.body)), file.sha256)
    assert.equal(first.requestCount(file.path), 1)
    assert.deepEqual(source.health?.().map((upstream) => upstream.state), ['cooling', 'cooling'])
  })

  test('a 404 for a file is taken from the next upstream, and the first is not cooled down for it', async () => {
    source = freshSource()
    const file = tree.items[0]!
    first.setFault(file.path, { kind: 'status', status: 404 })
    const response = await source.openFile(file.path)
    assert.equal(response.status, 200)
    assert.equal(sha256(await buffer(response.body)), file.sha256)
    assert.equal(second.requestCount(file.path), 1)
    const [missing] = source.health?.() ?? []
    assert.equal(missing?.state, 'ok', 'a missing file says nothing of the upstream')
    assert.match(missing?.lastError ?? '', /HTTP 404/)
    assert.equal((await source.getDocument(INDEX)).status, 200)
    assert.equal(first.requestCount(INDEX), 1, 'still asked first')
  })

  test('when every upstream answers 404 the last answer is what the fill sees', async () => {
    source = freshSource()
    const file = tree.items[0]!
    first.setFault(file.path, { kind: 'status', status: 404 })
    second.setFault(file.path, { kind: 'status', status: 404 })
    const response = await source.openFile(file.path)
    response.body.resume()
    assert.equal(response.status, 404)
    assert.ok(response.url.startsWith(second.url))
  })

  test('a path must stay under every upstream root, and the source describes each upstream', () => {
    source = freshSource()
    assert.match(source.pathProblem('../outside') ?? '', /".." segment/)
    assert.equal(source.pathProblem(INDEX), undefined)
    assert.equal(source.describe(), `${first.url}, ${second.url}`)
  })
})
