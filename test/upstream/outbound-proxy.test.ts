/**
 * The outbound HTTP proxy (issue 14 item 1), through a real squid: metadata,
 * misses and prefetch all go through it, for an http upstream (absolute-form
 * requests, one access-log line each) and an https one (CONNECT tunnels,
 * whose bytes squid counts); HTTP_PROXY and NO_PROXY are honoured as curl
 * does; a proxy that refuses the credentials is a clear error naming it,
 * redacted.
 */

import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { createLogger } from '../../src/log/logger.js'
import { createHttpSource } from '../../src/upstream/http-source.js'
import { createUpstreamClient } from '../../src/upstream/upstream-client.js'
import { createTransport } from '../../src/upstream/outbound-transport.js'
import { rawRequest } from '../support/http.js'
import { MIRROR_PATH, startHarness, type Harness } from '../support/proxy-harness.js'
import { startSquid, type Squid } from '../support/squid.js'
import { createTestCa, type TestCa } from '../support/test-ca.js'
import { buildUpstreamTree, type UpstreamTree } from '../support/upstream-tree.js'
import { startUpstreamServer, type UpstreamServer } from '../support/upstream-server.js'

const USER = 'maas-proxy'
const PASSWORD = 'Pr0xy-S3cret'

interface StatusMirror {
  name: string
  metadataError: string | null
}

async function mirrorStatus(h: Harness, name = 'stable'): Promise<StatusMirror> {
  const status = (await (await fetch(`${h.proxy.url}/status`)).json()) as { mirrors: StatusMirror[] }
  return status.mirrors.find((mirror) => mirror.name === name)!
}

/** A selected file the harness's metadata names, for a miss. */
function kernelOf(tree: UpstreamTree) {
  return tree.items.find((entry) => entry.path.startsWith('noble/amd64/20250201/') && entry.item === 'boot-kernel')!
}

describe('an http upstream through squid (mirrors[].proxy)', () => {
  let squid: Squid
  let h: Harness

  before(async () => {
    squid = await startSquid()
    h = await startHarness({ mirror: { proxy: squid.url } })
  })
  after(async () => {
    await h.close()
    await squid.close()
  })

  test('metadata, a miss and a prefetch pass are each one GET in squid\'s access log', async () => {
    const logged = async (path: string) => (await squid.settledAccessLog()).filter((line) => line.includes(` GET ${h.upstream.url}${path} `))
    // Metadata was fetched when the harness started.
    assert.equal((await logged('streams/v1/index.sjson')).length, 1, (await squid.settledAccessLog()).join('\n'))
    const miss = kernelOf(h.tree)
    const answer = await rawRequest(h.proxy.url, MIRROR_PATH + miss.path)
    assert.equal(answer.status, 200)
    assert.equal((await logged(miss.path)).length, 1)

    const outcome = await h.proxy.core.prefetcher.run('stable', { gc: false })
    assert.equal(outcome.result, 'ok')
    const fetched = new Set(h.tree.items.map((item) => item.path).filter((path) => h.upstream.requestCount(path) > 0))
    assert.ok(fetched.size > 3, 'the pass fetched files')
    for (const path of fetched) assert.ok((await logged(path)).length >= 1, `${path} did not go through squid`)
    // Nothing reached the upstream that squid did not see.
    const gets = (await squid.settledAccessLog()).filter((line) => line.includes(` GET ${h.upstream.url}`))
    assert.equal(gets.length, h.upstream.requestCount())
  })

  test('a reload that sets "proxy": false goes direct from then on (the route is not restart-only)', async () => {
    const before = (await squid.settledAccessLog()).length
    const [mirror] = h.config.mirrors
    await h.proxy.reload({ ...h.config, mirrors: [{ ...mirror!, proxy: false }] })
    const requests = h.upstream.requestCount()
    // Every selected file is stored by now: a metadata refresh is what still asks upstream.
    await h.proxy.core.mirrors[0]!.refresh()
    assert.equal(h.upstream.requestCount(), requests + 1)
    assert.deepEqual((await squid.settledAccessLog()).slice(before), [])
  })
})

describe('an https upstream through squid with basic auth (a proxy URL with credentials, the test CA in ca)', () => {
  let squid: Squid
  let h: Harness
  let dir: string
  let ca: TestCa

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sstream-proxy-connect-'))
    ca = await createTestCa(dir)
    const pair = await ca.issue('upstream')
    squid = await startSquid({ auth: { user: USER, password: PASSWORD } })
    h = await startHarness({
      upstream: { tls: { cert: await readFile(pair.cert), key: await readFile(pair.key) } },
      mirror: { proxy: squid.urlWith(USER, PASSWORD), ca: { path: ca.certPath, mode: 'add', key: 'ca' } },
    })
  })
  after(async () => {
    await h.close()
    await squid.close()
    await rm(dir, { recursive: true, force: true })
  })

  test('metadata, a miss and a prefetch pass go through CONNECT tunnels squid logs with the user', async () => {
    assert.match(h.upstream.url, /^https:/)
    const miss = kernelOf(h.tree)
    assert.equal((await rawRequest(h.proxy.url, MIRROR_PATH + miss.path)).status, 200)
    assert.equal((await h.proxy.core.prefetcher.run('stable', { gc: false })).result, 'ok')
    const served = [...h.tree.files.entries()].filter(([path]) => h.upstream.bytesSent(path) > 0)
    const upstreamBytes = served.reduce((sum, [path]) => sum + h.upstream.bytesSent(path), 0)
    // squid logs a tunnel when it closes: close the proxy's connections first.
    await h.stopProxy()
    const port = new URL(h.upstream.url).port
    const tunnels = (await squid.settledAccessLog()).filter((line) => line.includes(` CONNECT 127.0.0.1:${port} ${USER} `))
    assert.ok(tunnels.length >= 1, (await squid.settledAccessLog()).join('\n'))
    // Every body byte the upstream sent (plus TLS and headers) went through squid's tunnels.
    const tunnelled = tunnels.reduce((sum, line) => sum + Number(line.split(/\s+/)[4]), 0)
    assert.ok(served.some(([path]) => path === 'streams/v1/index.sjson'))
    assert.ok(served.some(([path]) => path === miss.path))
    assert.ok(tunnelled > upstreamBytes, `squid tunnelled ${tunnelled} bytes, upstream sent ${upstreamBytes}`)
    assert.ok(!(await squid.settledAccessLog()).some((line) => line.includes(PASSWORD)))
    await h.restartProxy()
  })
})

describe('a proxy that refuses the credentials', () => {
  let squid: Squid
  let tree: UpstreamTree
  let upstream: UpstreamServer

  before(async () => {
    squid = await startSquid({ auth: { user: USER, password: PASSWORD } })
    tree = await buildUpstreamTree()
    upstream = await startUpstreamServer(tree)
  })
  after(async () => {
    await upstream.close()
    await squid.close()
  })

  test('is a 407 error on /status and in the log naming the proxy, its password redacted', async () => {
    const lines: string[] = []
    const h = await startHarness({
      tree: { key: tree.key },
      log: createLogger({ json: true, write: (line) => lines.push(line) }),
      mirror: { proxy: squid.urlWith(USER, 'wrong-password') },
    })
    try {
      const error = (await mirrorStatus(h)).metadataError
      const shownProxy = `http://${USER}:***@127.0.0.1:${new URL(squid.url).port}/`
      assert.ok(error?.includes(`proxy ${shownProxy} answered 407 Proxy Authentication Required`), String(error))
      assert.ok(lines.some((line) => line.includes('407') && line.includes(`${USER}:***@`)))
      assert.ok(!lines.some((line) => line.includes('wrong-password')))
      assert.ok(!String(error).includes('wrong-password'))
    } finally {
      await h.close()
    }
  })

  test('through a CONNECT tunnel too (an https upstream)', async () => {
    const client = createUpstreamClient({ connectTimeoutMs: 5_000 })
    try {
      const source = createHttpSource({ root: 'https://127.0.0.1:1/stable/', client, transport: { proxy: squid.urlWith(USER, 'wrong') } })
      await assert.rejects(source.getDocument('streams/v1/index.sjson'), (error: Error) => {
        assert.match(error.message, new RegExp(`^https://127\\.0\\.0\\.1:1/stable/streams/v1/index\\.sjson: proxy http://${USER}:\\*\\*\\*@127\\.0\\.0\\.1:\\d+/ answered 407`))
        return true
      })
    } finally {
      client.close()
    }
  })
})

describe('HTTP_PROXY and NO_PROXY from the environment', () => {
  let squid: Squid
  let tree: UpstreamTree
  let upstream: UpstreamServer
  const saved = { ...process.env }

  before(async () => {
    squid = await startSquid()
    tree = await buildUpstreamTree()
    upstream = await startUpstreamServer(tree)
  })
  after(async () => {
    process.env = saved
    await upstream.close()
    await squid.close()
  })

  /** Fetches the index with a mirror that configures no proxy, and returns the squid lines it added. */
  async function fetchIndex(env: Record<string, string>, proxy?: false): Promise<string[]> {
    for (const name of ['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy']) delete process.env[name]
    Object.assign(process.env, env)
    const before = (await squid.settledAccessLog()).length
    const client = createUpstreamClient()
    try {
      const source = createHttpSource({ root: upstream.url, client, transport: proxy === false ? { proxy } : {} })
      const result = await source.getDocument('streams/v1/index.sjson')
      assert.equal(result.status, 200)
    } finally {
      client.close()
    }
    return (await squid.settledAccessLog()).slice(before)
  }

  test('HTTP_PROXY (either case) sends an http upstream through the proxy', async () => {
    assert.equal((await fetchIndex({ HTTP_PROXY: squid.url })).length, 1)
    assert.equal((await fetchIndex({ http_proxy: squid.url })).length, 1)
  })

  test('NO_PROXY naming the upstream host (or its domain suffix, or *) goes direct', async () => {
    assert.deepEqual(await fetchIndex({ HTTP_PROXY: squid.url, NO_PROXY: 'localhost,127.0.0.1' }), [])
    assert.deepEqual(await fetchIndex({ http_proxy: squid.url, no_proxy: '*' }), [])
    // Another host in NO_PROXY does not stop the proxy.
    assert.equal((await fetchIndex({ HTTP_PROXY: squid.url, NO_PROXY: 'mirror.internal' })).length, 1)
  })

  test('a proxy written without a scheme is http://, for https upstreams too (as curl reads it)', () => {
    Object.assign(process.env, { HTTPS_PROXY: 'proxy.corp.example:3128' })
    const transport = createTransport({ maxConnections: 1 })
    try {
      assert.equal(transport.route(new URL('https://images.example/stable/')).proxy, 'http://proxy.corp.example:3128')
    } finally {
      transport.destroy()
      delete process.env.HTTPS_PROXY
    }
  })

  test('HTTPS_PROXY alone leaves an http upstream direct, and "proxy": false overrides HTTP_PROXY', async () => {
    assert.deepEqual(await fetchIndex({ HTTPS_PROXY: squid.url }), [])
    assert.deepEqual(await fetchIndex({ HTTP_PROXY: squid.url }, false), [])
  })
})
