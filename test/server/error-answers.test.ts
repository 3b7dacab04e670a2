/**
 * Internal error text never reaches clients: a failed request is answered
 * with a short, fixed message and a request id (also in `X-Request-Id`); the
 * detail (a path, an errno, upstream's address and answer) is in the log,
 * under the same id.
 */

import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { rm, symlink } from 'node:fs/promises'
import { createLogger } from '../../src/log/logger.js'
import { MIRROR_PATH, startHarness, type Harness } from '../support/proxy-harness.js'
import { rawRequest, sha256 } from '../support/http.js'
import type { TreeItem } from '../support/upstream-tree.js'

describe('error answers', () => {
  const lines: string[] = []
  let h: Harness
  const item = (predicate: (item: TreeItem) => boolean) => h.tree.items.find(predicate) as TreeItem
  before(async () => {
    // A status rather than a reset (MAAS's default), so the answer's text can be read.
    h = await startHarness({ mirror: { missFailure: '503', missWait: 1 }, log: createLogger({ json: true, write: (line) => lines.push(line) }) })
  })
  after(() => h.close())

  /** The log entry carrying `requestId`. */
  const logged = (requestId: string) => lines.map((line) => JSON.parse(line) as Record<string, unknown>).find((entry) => entry.requestId === requestId)

  /** The request id of a body `TEXT (request id ID)`, checked against `X-Request-Id`. */
  function requestIdOf(response: { body: Buffer; headers: Record<string, unknown> }, text: string): string {
    const match = new RegExp(`^${text} \\(request id ([0-9a-f]{16})\\)\\n$`).exec(response.body.toString())
    assert.ok(match, `unexpected body: ${JSON.stringify(response.body.toString())}`)
    assert.equal(response.headers['x-request-id'], match[1])
    return match[1] as string
  }

  test('a stored file that cannot be opened is a 500 without path or errno; the log has both under its request id', async () => {
    const file = item((i) => i.item === 'boot-kernel' && i.path.startsWith('noble/amd64/20250201/ga-'))
    assert.equal(sha256((await rawRequest(h.proxy.url, MIRROR_PATH + file.path)).body), file.sha256)
    await h.proxy.core.store.fills.idle()
    // A link to itself: opening it fails with ELOOP, also for root, which permissions would not stop.
    const blob = h.proxy.core.store.objects.localPath!(file.sha256)
    await rm(blob)
    await symlink(blob, blob)
    const response = await rawRequest(h.proxy.url, MIRROR_PATH + file.path)
    assert.equal(response.status, 500)
    const requestId = requestIdOf(response, 'internal error')
    assert.doesNotMatch(response.body.toString(), /ELOOP|blobs|\//)
    const entry = logged(requestId)
    assert.equal(entry?.level, 'error')
    assert.match(String(entry?.error), /ELOOP/)
    assert.ok(String(entry?.error).includes(blob), 'the log names the file')
  })

  test('a miss upstream fails is a 503 that names neither upstream nor its answer; the log has them under its request id', async () => {
    const file = item((i) => i.item === 'boot-initrd' && i.path.startsWith('noble/amd64/20250201/ga-'))
    h.upstream.setFault(file.path, { kind: 'status', status: 500 })
    try {
      const response = await rawRequest(h.proxy.url, MIRROR_PATH + file.path)
      assert.equal(response.status, 503)
      assert.equal(response.headers['retry-after'], '30')
      const requestId = requestIdOf(response, `${file.path}: not cached, and fetching it from upstream failed; try again later`)
      const { host } = new URL(h.upstream.url)
      assert.ok(!response.body.toString().includes(host), 'the body names the upstream')
      assert.doesNotMatch(response.body.toString(), /500/)
      const entry = logged(requestId)
      assert.equal(entry?.message, 'miss failed')
      assert.match(String(entry?.error), /500/)
    } finally {
      h.upstream.setFault(file.path, undefined)
    }
  })
})
