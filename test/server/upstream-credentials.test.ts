/**
 * Credentials in an upstream URL (issue 12 item 4): they reach the upstream
 * as Basic auth (a real server refuses requests without them) and nowhere
 * else: not on /status (JSON or HTML), /metrics, 503 bodies for misses and
 * metadata, metadataError, prefetch errors, or any log line.
 */

import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { createLogger } from '../../src/log/logger.js'
import { MIRROR_PATH, selections, DEFAULT_SELECTIONS, startHarness, type Harness } from '../support/proxy-harness.js'
import { rawRequest } from '../support/http.js'
import { buildUpstreamTree, type UpstreamTree } from '../support/upstream-tree.js'
import { startUpstreamServer, type UpstreamServer } from '../support/upstream-server.js'

const USER = 'mirror-user'
const PASSWORD = 'S3cret-Upstream-Pa55'
const DOWN_PATH = '/down/'

describe('an upstream URL with user:password@', () => {
  let tree: UpstreamTree
  let upstream: UpstreamServer
  let h: Harness
  let dataDir: string
  const lines: string[] = []
  const surfaces: Array<[string, string]> = []

  before(async () => {
    tree = await buildUpstreamTree()
    upstream = await startUpstreamServer(tree, { basicAuth: { user: USER, password: PASSWORD } })
    dataDir = await mkdtemp(join(tmpdir(), 'sstream-proxy-credentials-'))
    const keyring = await tree.writeKeyring(dataDir)
    const withCredentials = upstream.url.replace('http://', `http://${USER}:${PASSWORD}@`)
    // Misses answer 503 (not MAAS's reset) so that their bodies can be searched too.
    const mirror = { keyring, keyringIsDefault: false, metadata: 'filtered', publish: 'selected', missFailure: '503', missWait: 1, upstreamCooldown: 300, selections: selections(DEFAULT_SELECTIONS) } as const
    h = await startHarness({
      dataDir,
      tree: { key: tree.key },
      log: createLogger({ json: true, write: (line) => lines.push(line) }),
      config: {
        mirrors: [
          { ...mirror, name: 'stable', path: MIRROR_PATH, upstreams: [withCredentials] },
          // Nothing listens on port 1: this mirror never gets metadata.
          { ...mirror, name: 'down', path: DOWN_PATH, upstreams: [`http://${USER}:${PASSWORD}@127.0.0.1:1/stable/`] },
        ],
      },
    })
  })
  after(async () => {
    await h.close()
    await upstream.close()
    await rm(dataDir, { recursive: true, force: true })
  })

  test('are sent as Basic auth: the upstream that demands them serves the metadata and files', async () => {
    const index = await rawRequest(h.proxy.url, `${MIRROR_PATH}streams/v1/index.sjson`)
    assert.equal(index.status, 200)
    const item = tree.items.find((entry) => entry.path.startsWith('noble/amd64/20250201/') && entry.item === 'boot-kernel')!
    const file = await rawRequest(h.proxy.url, MIRROR_PATH + item.path)
    assert.equal(file.status, 200)
    assert.equal(upstream.requestCount(item.path), 1)
  })

  test('appear on no surface, redacted as user:***@ where the upstream is named', async () => {
    const failing = tree.items.find((entry) => entry.path.startsWith('noble/amd64/20250201/') && entry.item === 'boot-initrd')!
    upstream.setFault(failing.path, { kind: 'status', status: 500 })
    const miss = await rawRequest(h.proxy.url, MIRROR_PATH + failing.path)
    assert.equal(miss.status, 503)
    surfaces.push(['503 body of a miss', miss.body.toString()])
    const metadata = await rawRequest(h.proxy.url, `${DOWN_PATH}streams/v1/index.sjson`)
    assert.equal(metadata.status, 503)
    surfaces.push(['503 body for metadata', metadata.body.toString()])
    await h.proxy.core.prefetcher.run('stable', { gc: false })
    upstream.setFault(failing.path, undefined)

    const json = await (await fetch(`${h.proxy.url}/status`)).text()
    surfaces.push(['/status JSON', json])
    surfaces.push(['/status HTML', await (await fetch(`${h.proxy.url}/status`, { headers: { accept: 'text/html' } })).text()])
    surfaces.push(['/metrics', await (await fetch(`${h.proxy.url}/metrics`)).text()])
    const status = JSON.parse(json) as { mirrors: Array<{ name: string; upstream: string; metadataError: string | null; prefetch: { errors: string[] } }> }
    const [stable, down] = status.mirrors
    surfaces.push(['metadataError', String(down!.metadataError)])
    surfaces.push(['prefetch errors', stable!.prefetch.errors.join('\n')])
    await new Promise((resolve) => setTimeout(resolve, 200)) // info lines are batched for up to 100 ms
    surfaces.push(['log', lines.join('\n')])

    for (const [surface, text] of surfaces) assert.ok(!text.includes(PASSWORD), `${surface} shows the password:\n${text}`)
    // Redacted, not dropped: the operator still sees which upstream and user.
    assert.equal(stable!.upstream, upstream.url.replace('http://', `http://${USER}:***@`))
    // A miss's answer names no upstream at all (its cause is logged under the request id), so only the log shows it, redacted.
    assert.match(miss.body.toString(), /request id [0-9a-f]+/)
    assert.match(String(down!.metadataError), new RegExp(`http://${USER}:\\*\\*\\*@127\\.0\\.0\\.1:1/stable/streams/v1/index\\.sjson: ECONNREFUSED`))
    assert.match(metadata.body.toString(), new RegExp(`${USER}:\\*\\*\\*@`))
    assert.ok(stable!.prefetch.errors.some((error) => error.includes(`${USER}:***@`)), stable!.prefetch.errors.join('\n'))
    assert.ok(lines.some((line) => line.includes(`${USER}:***@`)), 'the log names the upstream redacted')
  })
})
