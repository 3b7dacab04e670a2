/**
 * Redirects from upstream (issue 14 item 3), from real servers: relative and
 * absolute (another port) Locations are followed for metadata and files, and
 * a client gets the file, never a 3xx; a chain of five is followed and a
 * sixth refused; https down to http and other schemes are refused;
 * credentials stay with their origin; a fill interrupted after a redirect
 * resumes with Range at the URL that answered.
 */

import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { createLogger } from '../../src/log/logger.js'
import { createHttpSource } from '../../src/upstream/http-source.js'
import { createUpstreamClient, type UpstreamClient } from '../../src/upstream/upstream-client.js'
import { rawRequest, sha256 } from '../support/http.js'
import { MIRROR_PATH, startHarness, type Harness } from '../support/proxy-harness.js'
import { startRedirector, type Redirector } from '../support/redirector.js'
import { createTestCa } from '../support/test-ca.js'
import { buildUpstreamTree, type UpstreamTree } from '../support/upstream-tree.js'
import { startUpstreamServer, type UpstreamServer } from '../support/upstream-server.js'

const INDEX = 'streams/v1/index.sjson'

let tree: UpstreamTree
let upstream: UpstreamServer
before(async () => {
  tree = await buildUpstreamTree()
  upstream = await startUpstreamServer(tree)
})
after(async () => {
  await upstream.close()
})

/** `/prefix/rest` → `rest`, or undefined when `path` is not under `prefix`. */
function under(prefix: string, path: string): string | undefined {
  return path.startsWith(prefix) ? path.slice(prefix.length) : undefined
}

describe('a mirror whose upstream redirects (relative, then to another port)', () => {
  let redirector: Redirector
  let h: Harness
  let dir: string
  const lines: string[] = []

  before(async () => {
    redirector = await startRedirector({
      rule(path) {
        const mirrored = under('/mirror/', path)
        // Relative: resolved against /mirror/<rest>, this is /hop/<rest>.
        if (mirrored !== undefined) return { status: 301, location: `${'../'.repeat(mirrored.split('/').length)}hop/${mirrored}` }
        const hopped = under('/hop/', path)
        if (hopped !== undefined) return { status: 307, location: `${upstream.url}${hopped}` }
        return undefined
      },
    })
    dir = await mkdtemp(join(tmpdir(), 'sstream-proxy-redirects-'))
    const keyring = await tree.writeKeyring(dir)
    h = await startHarness({
      dataDir: join(dir, 'data'),
      tree: { key: tree.key },
      fillAttempts: 4,
      log: createLogger({ json: true, write: (line) => lines.push(line) }),
      mirror: { upstreams: [`${redirector.url}mirror/`], keyring },
    })
  })
  after(async () => {
    await h.close()
    await redirector.close()
    await rm(dir, { recursive: true, force: true })
  })

  test('metadata and a miss are served from where the redirects lead; the client never sees a 3xx', async () => {
    const index = await rawRequest(h.proxy.url, MIRROR_PATH + INDEX)
    assert.equal(index.status, 200)
    const item = tree.items.find((entry) => entry.path.startsWith('noble/amd64/20250201/') && entry.item === 'boot-kernel')!
    const file = await rawRequest(h.proxy.url, MIRROR_PATH + item.path)
    assert.equal(file.status, 200)
    assert.equal(sha256(file.body), item.sha256)
    assert.ok(redirector.requests.some((request) => request.path === `/hop/${item.path}`), 'the relative Location was resolved')
    assert.equal(upstream.requestCount(item.path), 1)
    await new Promise((resolve) => setTimeout(resolve, 200)) // info lines are batched for up to 100 ms
    const logged = lines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((entry) => entry.message === 'upstream redirected')
    assert.ok(logged.some((entry) => entry.final === `${upstream.url}${item.path}` && entry.redirects === 2), lines.join('\n'))
  })

  test('a fill broken after a redirect resumes with Range at the final URL, not through the redirects again', async () => {
    const item = tree.items.find((entry) => entry.path.startsWith('noble/amd64/20250201/') && entry.item === 'boot-initrd')!
    const half = Math.floor(item.size / 2)
    upstream.setFault(item.path, { kind: 'truncate', afterBytes: half })
    const asked = redirector.requests.length
    const file = await rawRequest(h.proxy.url, MIRROR_PATH + item.path)
    upstream.setFault(item.path, undefined)
    assert.equal(file.status, 200)
    assert.equal(sha256(file.body), item.sha256)
    assert.deepEqual(upstream.rangeRequests(item.path), [`bytes=${half}-`])
    // Two hops for the first request, none for the resume.
    assert.deepEqual(redirector.requests.slice(asked).map((request) => request.path), [`/mirror/${item.path}`, `/hop/${item.path}`])
  })
})

describe('the redirect rules, through the upstream client', () => {
  let client: UpstreamClient
  let redirector: Redirector
  let other: Redirector
  let dir: string

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sstream-proxy-redirect-rules-'))
    client = createUpstreamClient({ connectTimeoutMs: 5_000 })
    // Another origin that records what it was sent before passing the request on.
    other = await startRedirector({ rule: (path) => ({ status: 302, location: `${upstream.url}${path.replace(/^\/[^/]+\//, '')}` }) })
    redirector = await startRedirector({
      rule(path) {
        const chain = /^\/chain\/(\d+)\/(.*)$/.exec(path)
        if (chain !== null) {
          const left = Number(chain[1])
          return { status: 302, location: left === 0 ? `${upstream.url}${chain[2]}` : `/chain/${left - 1}/${chain[2]}` }
        }
        const auth = under('/auth/', path)
        if (auth !== undefined) return { status: 308, location: `/auth-same-origin/${auth}` }
        const same = under('/auth-same-origin/', path)
        if (same !== undefined) return { status: 303, location: `${other.url}elsewhere/${same}` }
        const ftp = under('/ftp/', path)
        if (ftp !== undefined) return { status: 301, location: `ftp://127.0.0.1/${ftp}` }
        return undefined
      },
    })
  })
  after(async () => {
    client.close()
    await redirector.close()
    await other.close()
    await rm(dir, { recursive: true, force: true })
  })

  const fetchIndex = (root: string, transport = {}) => createHttpSource({ root, client, transport }).getDocument(INDEX)

  test('a chain of five redirects is followed', async () => {
    const result = await fetchIndex(`${redirector.url}chain/4/`)
    assert.equal(result.status, 200)
    assert.ok(result.status === 200 && result.text === tree.files.get(INDEX)!.toString())
  })

  test('a sixth redirect is refused, naming the upstream', async () => {
    await assert.rejects(fetchIndex(`${redirector.url}chain/5/`), (error: Error) => {
      assert.equal(error.message, `${redirector.url}chain/5/${INDEX}: more than 5 redirects (the last one by ${redirector.url}chain/0/${INDEX})`)
      return true
    })
  })

  test('a scheme other than http or https is refused', async () => {
    await assert.rejects(fetchIndex(`${redirector.url}ftp/`), {
      message: `${redirector.url}ftp/${INDEX}: redirect to ftp://127.0.0.1/${INDEX} refused: only http and https are followed`,
    })
  })

  test('Authorization goes along to the same origin only', async () => {
    const root = `${redirector.url.replace('http://', 'http://mirror-user:mirror-pass@')}auth/`
    const result = await fetchIndex(root)
    assert.equal(result.status, 200)
    const basic = `Basic ${Buffer.from('mirror-user:mirror-pass').toString('base64')}`
    const sent = (path: string) => redirector.requests.find((request) => request.path === path)?.authorization
    assert.equal(sent(`/auth/${INDEX}`), basic)
    assert.equal(sent(`/auth-same-origin/${INDEX}`), basic)
    const elsewhere = other.requests.find((request) => request.path === `/elsewhere/${INDEX}`)
    assert.ok(elsewhere !== undefined)
    assert.equal(elsewhere.authorization, undefined)
  })

  test('https down to http is refused', async () => {
    const ca = await createTestCa(dir)
    const pair = await ca.issue('redirector')
    const secure = await startRedirector({
      tls: { cert: await readFile(pair.cert), key: await readFile(pair.key) },
      rule: (path) => ({ status: 302, location: `${upstream.url}${path.slice('/down/'.length)}` }),
    })
    try {
      const transport = { ca: { certificates: [await readFile(ca.certPath, 'utf8')], mode: 'add' as const } }
      await assert.rejects(fetchIndex(`${secure.url}down/`, transport), {
        message: `${secure.url}down/${INDEX}: redirect from https down to http refused (${upstream.url}${INDEX})`,
      })
      // The refused redirect never reaches the http upstream.
      const before = upstream.requestCount(INDEX)
      await assert.rejects(fetchIndex(`${secure.url}down/`, transport))
      assert.equal(upstream.requestCount(INDEX), before)
    } finally {
      await secure.close()
    }
  })
})
