/**
 * A hostile upstream's metadata (issue 12 item 2, first half): an unsigned or
 * unknown-key document of 12 MB is refused by the cheap checks before the
 * clearsign parser, a 200 MB body without line breaks is cut at
 * `limits.metadataMaxBytes` while it is read, and only that mirror is
 * affected: a second mirror's stored file is served all along.
 */

import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { once } from 'node:events'
import { after, before, describe, test } from 'node:test'
import { DEFAULT_LIMITS } from '../../src/config/defaults.js'
import { clearsign } from '../../src/streams/signature.js'
import { generateSigningKey } from '../../src/streams/signing-key.js'
import { MIRROR_PATH, selections, DEFAULT_SELECTIONS, startHarness, type Harness } from '../support/proxy-harness.js'
import { rawRequest, sha256 } from '../support/http.js'
import { buildUpstreamTree, type UpstreamTree } from '../support/upstream-tree.js'
import { startUpstreamServer, type UpstreamServer } from '../support/upstream-server.js'

const MiB = 1024 * 1024
const CAP = 16 * MiB
const HEADER = '-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n'

/** 12 MB of short JSON-ish lines, as in the report. */
const shortLines = (): string => '{"a":1},\n'.repeat(Math.ceil((12 * 1000 * 1000) / 9))

type Body = { kind: 'text'; text: string } | { kind: 'endless'; total: number }

/** The hostile upstream: serves `index.sjson` as set, counting what it sent and whether the client left early. */
async function startHostile() {
  let body: Body = { kind: 'text', text: '' }
  let sent = 0
  let sentWhenClosed: number | undefined
  const server: Server = createServer((_req, res: ServerResponse) => {
    sent = 0
    sentWhenClosed = undefined
    res.on('close', () => (sentWhenClosed = sent))
    if (body.kind === 'text') return void res.writeHead(200, { 'content-type': 'application/json' }).end(body.text)
    const { total } = body
    const chunk = Buffer.alloc(64 * 1024, 'x')
    res.writeHead(200, { 'content-type': 'application/json' })
    const pump = () => {
      while (sent < total && !res.destroyed) {
        sent += chunk.length
        if (!res.write(chunk)) return void res.once('drain', pump)
      }
      if (!res.destroyed) res.end()
    }
    pump()
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    set: (next: Body) => (body = next),
    /** What the upstream had sent when the proxy closed the transfer, once it has (the close reaches it a moment later). */
    async sentWhenClosed(): Promise<number | undefined> {
      for (let waited = 0; sentWhenClosed === undefined && waited < 5_000; waited += 10) await new Promise((resolve) => setTimeout(resolve, 10))
      return sentWhenClosed
    },
    async close() {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
}

describe('hostile metadata on one mirror', () => {
  let tree: UpstreamTree
  let healthy: UpstreamServer
  let hostile: Awaited<ReturnType<typeof startHostile>>
  let h: Harness
  let dataDir: string
  let cached: { path: string; sha256: string }

  before(async () => {
    tree = await buildUpstreamTree()
    healthy = await startUpstreamServer(tree)
    hostile = await startHostile()
    dataDir = await mkdtemp(join(tmpdir(), 'sstream-proxy-hostile-'))
    const keyring = await tree.writeKeyring(dataDir)
    const mirror = { keyring, keyringIsDefault: false, metadata: 'filtered', publish: 'selected', missFailure: 'reset', missWait: 8, upstreamCooldown: 300, selections: selections(DEFAULT_SELECTIONS) } as const
    h = await startHarness({
      dataDir,
      tree: { key: tree.key },
      config: {
        limits: { ...DEFAULT_LIMITS, metadataMaxBytes: CAP, metadataTimeout: 120 },
        mirrors: [
          { ...mirror, name: 'stable', path: MIRROR_PATH, upstreams: [healthy.url] },
          { ...mirror, name: 'hostile', path: '/hostile/', upstreams: [hostile.url] },
        ],
      },
    })
    const item = tree.items.find((entry) => entry.path.startsWith('noble/amd64/20250201/') && entry.item === 'boot-kernel')!
    cached = { path: item.path, sha256: item.sha256 }
    assert.equal((await rawRequest(h.proxy.url, MIRROR_PATH + cached.path)).status, 200)
    await h.proxy.core.store.fills.idle()
  })
  after(async () => {
    await h.close()
    await healthy.close()
    await hostile.close()
    await rm(dataDir, { recursive: true, force: true })
  })

  /** Refreshes the hostile mirror while the healthy mirror's stored file is fetched; returns the hostile mirror's error. */
  async function refreshWhileServing(): Promise<string> {
    const mirror = h.proxy.core.mirrors.find((each) => each.config.name === 'hostile')!
    const refreshed = mirror.refresh()
    let served = 0
    let done = false
    void refreshed.finally(() => (done = true))
    do {
      const response = await rawRequest(h.proxy.url, MIRROR_PATH + cached.path)
      assert.equal(response.status, 200)
      assert.equal(response.headers['x-cache'], 'HIT')
      assert.equal(sha256(response.body), cached.sha256)
      served++
    } while (!done)
    await refreshed
    assert.ok(served >= 1)
    return mirror.metadataStatus().metadataError ?? ''
  }

  test('an unsigned 12 MB index is refused by the cheap check, not parsed', async () => {
    hostile.set({ kind: 'text', text: `${HEADER}${shortLines()}` })
    const error = await refreshWhileServing()
    assert.match(error, /index\.sjson: malformed clearsigned document: no "-----BEGIN PGP SIGNATURE-----" \.\.\. "-----END PGP SIGNATURE-----" block at its end/)
  })

  test('a 12 MB index signed by a key outside the keyring is refused by its signature block alone', async () => {
    const stranger = await generateSigningKey({ name: 'Not the upstream key' })
    const signed = await clearsign('{"format":"index:1.0","index":{}}\n', stranger.privateKey)
    // The stranger's valid signature block after 12 MB of text it does not cover.
    const block = signed.slice(signed.indexOf('-----BEGIN PGP SIGNATURE-----'))
    hostile.set({ kind: 'text', text: `${HEADER}${shortLines()}${block}` })
    const error = await refreshWhileServing()
    assert.match(error, new RegExp(`signed by key ${stranger.publicKey.getKeyID().toHex()}, which is not in the keyring`, 'i'))
  })

  test('a 200 MB body without line breaks is cut at the cap, the upstream never gets to send it all', async () => {
    const total = 200 * MiB
    hostile.set({ kind: 'endless', total })
    const error = await refreshWhileServing()
    assert.match(error, new RegExp(`^${hostile.url}streams/v1/index\\.sjson: transfer cut after \\d+ bytes, over the metadata limit of ${CAP} bytes \\(limits\\.metadataMaxBytes\\)`))
    const sent = await hostile.sentWhenClosed()
    assert.ok(sent !== undefined && sent < 4 * CAP, `the upstream sent ${sent} bytes before the proxy left`)
  })
})
