/**
 * The HTTP upstream source against real servers on 127.0.0.1: a path from
 * metadata never leaves the root (a second server, the "other host", must
 * never see a connection), credentials in the root go out as Basic auth and
 * never appear in what the source shows.
 */

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { once } from 'node:events'
import { buffer } from 'node:stream/consumers'
import { createHttpSource } from '../../src/upstream/http-source.js'
import { createUpstreamClient, type UpstreamClient } from '../../src/upstream/upstream-client.js'
import { UpstreamPathError } from '../../src/upstream/upstream-source.js'

const PASSWORD = 'Pa55-w0rd-never-shown'

interface Recorder {
  port: number
  connections: number
  requests: Array<{ url: string; headers: IncomingHttpHeaders }>
  close(): Promise<void>
}

/** A server that answers every request with `answer` and records every connection and request. */
async function startRecorder(answer: string): Promise<Recorder> {
  const server: Server = createServer((req, res) => {
    recorder.requests.push({ url: req.url ?? '', headers: req.headers })
    res.writeHead(200, { 'content-type': 'text/plain' }).end(answer)
  })
  server.on('connection', () => recorder.connections++)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const recorder: Recorder = {
    port: (server.address() as AddressInfo).port,
    connections: 0,
    requests: [],
    async close() {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
  return recorder
}

let client: UpstreamClient
let other: Recorder
let upstream: Recorder
before(async () => {
  client = createUpstreamClient({ connectTimeoutMs: 2_000, idleTimeoutMs: 2_000 })
  other = await startRecorder('OTHER-HOST-ANSWER: internal secret')
  upstream = await startRecorder('upstream document')
})
after(async () => {
  client.close()
  await other.close()
  await upstream.close()
})

describe('a path from metadata stays under the upstream root', () => {
  const hostilePaths = () => [
    // The issue's case: another scheme is not a relative path and names another host.
    `http:127.0.0.1:${other.port}/admin/secret`,
    `https:127.0.0.1:${other.port}/admin/secret`,
    `//127.0.0.1:${other.port}/admin/secret`,
    `\\\\127.0.0.1:${other.port}\\admin\\secret`,
    `/admin/secret`,
    `../admin/secret`,
    `streams/../../admin/secret`,
    `%2e%2e/admin/secret`,
    `%2E%2E/%2e%2e/admin/secret`,
    `..\\admin\\secret`,
    `streams/v1/index.sjson?x=1`,
    `streams/v1/index.sjson#x`,
  ]

  for (const scheme of ['http', 'https'] as const) {
    test(`an ${scheme} root refuses each escape before connecting, naming the path, for documents and files`, async () => {
      // The https root has nothing listening: a request would fail, not pass; the other host must see nothing.
      const root = scheme === 'http' ? `http://mirror:${PASSWORD}@127.0.0.1:${upstream.port}/root/` : `https://mirror:${PASSWORD}@127.0.0.1:1/root/`
      const source = createHttpSource({ root, client })
      for (const path of hostilePaths()) {
        assert.notEqual(source.pathProblem(path), undefined, path)
        const named = (error: unknown) => {
          assert.ok(error instanceof UpstreamPathError, `${path}: ${String(error)}`)
          assert.ok(error.message.includes(JSON.stringify(path)), error.message)
          assert.ok(!error.message.includes(PASSWORD), error.message)
          assert.ok(!error.message.includes('OTHER-HOST-ANSWER'), error.message)
          return true
        }
        await assert.rejects(source.getDocument(path), named)
        await assert.rejects(source.openFile(path, { offset: 10 }), named)
      }
      assert.equal(other.connections, 0, 'the other host was connected to')
      assert.deepEqual(other.requests, [])
    })
  }

  test('plain relative paths resolve under the root and are fetched from it', async () => {
    const source = createHttpSource({ root: `http://127.0.0.1:${upstream.port}/root/`, client })
    for (const path of ['streams/v1/index.sjson', 'streams/v1/com.ubuntu.maas:stable:v3:download.sjson', 'noble/amd64/20250101/squashfs']) {
      assert.equal(source.pathProblem(path), undefined, path)
    }
    const before = upstream.requests.length
    assert.deepEqual(await source.getDocument('streams/v1/index.sjson'), { status: 200, text: 'upstream document' })
    const file = await source.openFile('noble/amd64/20250101/squashfs', { offset: 5 })
    assert.equal((await buffer(file.body)).toString(), 'upstream document')
    assert.deepEqual(upstream.requests.slice(before).map((request) => [request.url, request.headers.range]), [
      ['/root/streams/v1/index.sjson', undefined],
      ['/root/noble/amd64/20250101/squashfs', 'bytes=5-'],
    ])
  })
})

describe('credentials in the root', () => {
  test('go to the upstream as Basic auth and nowhere in what the source shows', async () => {
    const source = createHttpSource({ root: `http://mirror:${PASSWORD}@127.0.0.1:${upstream.port}/root/`, client })
    const before = upstream.requests.length
    await source.getDocument('streams/v1/index.sjson')
    const file = await source.openFile('noble/amd64/20250101/squashfs')
    await buffer(file.body)
    const expected = `Basic ${Buffer.from(`mirror:${PASSWORD}`).toString('base64')}`
    assert.deepEqual(upstream.requests.slice(before).map((request) => request.headers.authorization), [expected, expected])
    assert.equal(source.describe(), `http://mirror:***@127.0.0.1:${upstream.port}/root/`)
    assert.equal(source.describe('streams/v1/index.sjson'), `http://mirror:***@127.0.0.1:${upstream.port}/root/streams/v1/index.sjson`)
    assert.ok(!file.url.includes(PASSWORD), file.url)
  })

  test('errors from the client name the URL redacted', async () => {
    const source = createHttpSource({ root: `http://mirror:${PASSWORD}@127.0.0.1:1/root/`, client })
    await assert.rejects(source.getDocument('streams/v1/index.sjson'), (error: Error) => {
      assert.match(error.message, /^http:\/\/mirror:\*\*\*@127\.0\.0\.1:1\/root\/streams\/v1\/index\.sjson: ECONNREFUSED/)
      return true
    })
  })

  test('a token alone as user name is hidden too', () => {
    const source = createHttpSource({ root: `https://${PASSWORD}@images.example/stable/`, client })
    assert.equal(source.describe(), 'https://***@images.example/stable/')
  })
})
