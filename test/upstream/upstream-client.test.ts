/**
 * The upstream client against real HTTP servers on 127.0.0.1: the test
 * upstream with its faults, and one-off servers for behaviour it lacks.
 */

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { once } from 'node:events'
import { buffer } from 'node:stream/consumers'
import { UpstreamError, backoffMs, createUpstreamClient, type UpstreamClient } from '../../src/upstream/upstream-client.js'
import { buildUpstreamTree, fileBytes, sha256, type UpstreamTree } from '../support/upstream-tree.js'
import { startUpstreamServer, type UpstreamServer } from '../support/upstream-server.js'

const INDEX = 'streams/v1/index.json'

let tree: UpstreamTree
let upstream: UpstreamServer
let fileCount = 0
const clients: UpstreamClient[] = []

before(async () => {
  tree = await buildUpstreamTree({ releases: [{ release: 'noble', version: '24.04' }], arches: ['amd64'], versions: ['20250101'] })
  upstream = await startUpstreamServer(tree)
})
after(async () => {
  for (const client of clients) client.close()
  await upstream.close()
})

const clientWith = (options: Parameters<typeof createUpstreamClient>[0]) => {
  const client = createUpstreamClient(options)
  clients.push(client)
  return client
}

function upstreamFile(size: number): { path: string; content: Buffer } {
  const path = `files/${++fileCount}`
  const content = fileBytes(path, size)
  tree.files.set(path, content)
  return { path, content }
}

/** A one-off server whose handler sees how many requests came before; it records each request's headers. */
async function startServer(handler: (req: IncomingMessage, res: ServerResponse, count: number) => void) {
  const requests: IncomingHttpHeaders[] = []
  const server = createServer((req, res) => {
    requests.push(req.headers)
    handler(req, res, requests.length)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/doc.json`,
    requests,
    close: async () => {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
}

/** Resolves once every slot is free again (a drained body releases its slot as it closes), failing after a second. */
async function allSlotsFree(client: UpstreamClient): Promise<void> {
  const deadline = performance.now() + 1_000
  while (client.stats().active > 0) {
    assert.ok(performance.now() < deadline, `${client.stats().active} upstream slots still held`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** Asserts an UpstreamError whose one-line message starts with the URL and matches `pattern`. */
const upstreamError = (url: string, pattern: RegExp, status?: number) => (error: unknown) => {
  assert.ok(error instanceof UpstreamError, String(error))
  assert.equal(error.url, url)
  assert.ok(error.message.startsWith(`${url}: `), error.message)
  assert.match(error.message, pattern)
  assert.doesNotMatch(error.message, /\n/)
  assert.equal(error.status, status)
  return true
}

describe('request', () => {
  test('returns status, headers and the body as a stream, with the user agent sent', async () => {
    const { path, content } = upstreamFile(10_000)
    const server = await startServer((_req, res) => res.end('ok'))
    const client = clientWith({ userAgent: 'sstream-proxy/test' })
    const response = await client.request(upstream.url + path)
    assert.equal(response.status, 200)
    assert.equal(response.url, upstream.url + path)
    assert.equal(response.headers['content-length'], '10000')
    assert.ok((await buffer(response.body)).equals(content))

    await buffer((await client.request(server.url)).body)
    assert.equal(server.requests[0]?.['user-agent'], 'sstream-proxy/test')
    await server.close()
  })

  test('sends the given headers, such as Range', async () => {
    const { path, content } = upstreamFile(10_000)
    const client = clientWith({})
    const response = await client.request(upstream.url + path, { headers: { range: 'bytes=9000-' } })
    assert.equal(response.status, 206)
    assert.ok((await buffer(response.body)).equals(content.subarray(9000)))
    assert.deepEqual(upstream.rangeRequests(path), ['bytes=9000-'])
  })

  test('never has more than maxConnections requests open at upstream; the rest wait their turn', async () => {
    const files = [1, 2, 3, 4, 5].map(() => upstreamFile(20_000))
    for (const { path } of files) upstream.setFault(path, { kind: 'rate', bytesPerSecond: 200_000 })
    const client = clientWith({ maxConnections: 2 })
    let maxActive = 0
    let maxWaiting = 0
    const sample = () => {
      const { active, waiting } = client.stats()
      maxActive = Math.max(maxActive, active)
      maxWaiting = Math.max(maxWaiting, waiting)
    }
    const sampler = setInterval(sample, 2)
    try {
      const bodies = await Promise.all(
        files.map(async ({ path }) => {
          const response = await client.request(upstream.url + path)
          sample()
          response.body.on('data', sample)
          return buffer(response.body)
        }),
      )
      bodies.forEach((body, i) => assert.equal(sha256(body), sha256(files[i]!.content)))
    } finally {
      clearInterval(sampler)
    }
    assert.equal(maxActive, 2)
    assert.equal(maxWaiting, 3)
    const stats = client.stats()
    assert.equal(stats.requests, 5)
    assert.equal(stats.active, 0)
    assert.equal(stats.waiting, 0)
    assert.equal(stats.errors, 0)
  })

  test('a server that sends no headers within connectTimeoutMs fails with an UpstreamError naming the URL, and frees its slot', async () => {
    const { path } = upstreamFile(100)
    upstream.setFault(path, { kind: 'delay', ms: 2_000 })
    const client = clientWith({ connectTimeoutMs: 200, maxConnections: 1 })
    const url = upstream.url + path
    const started = performance.now()
    await assert.rejects(client.request(url), upstreamError(url, /no response within 0\.2s/))
    assert.ok(performance.now() - started < 1_000)
    assert.equal(client.stats().active, 0)
    assert.equal(client.stats().errors, 1)
    upstream.setFault(path, undefined)
    const next = await client.request(url)
    await buffer(next.body)
    assert.equal(next.status, 200)
  })

  test('a body that goes silent for idleTimeoutMs fails with an UpstreamError naming the URL, and frees its slot', async () => {
    const { path } = upstreamFile(100_000)
    upstream.setFault(path, { kind: 'stall', afterBytes: 1_000 })
    const client = clientWith({ idleTimeoutMs: 200, maxConnections: 1 })
    const url = upstream.url + path
    const response = await client.request(url)
    assert.equal(response.status, 200)
    let received = 0
    response.body.on('data', (chunk: Buffer) => (received += chunk.length))
    await assert.rejects(buffer(response.body), upstreamError(url, /no data for 0\.2s/))
    assert.equal(received, 1_000)
    await allSlotsFree(client)
    assert.equal(client.stats().errors, 1)
  })

  test('a slow but steady body is not cut off by the idle timeout', async () => {
    const { path, content } = upstreamFile(20_000)
    upstream.setFault(path, { kind: 'rate', bytesPerSecond: 40_000 })
    const client = clientWith({ idleTimeoutMs: 200 })
    const response = await client.request(upstream.url + path)
    assert.ok((await buffer(response.body)).equals(content))
  })

  test('a refused connection fails with an UpstreamError naming the URL and ECONNREFUSED', async () => {
    const server = await startServer(() => undefined)
    await server.close()
    const client = clientWith({})
    await assert.rejects(client.request(server.url), upstreamError(server.url, /ECONNREFUSED/))
    assert.equal(client.stats().active, 0)
  })

  test('an unsupported protocol is refused, naming the URL', async () => {
    const client = clientWith({})
    await assert.rejects(client.request('ftp://127.0.0.1/x'), upstreamError('ftp://127.0.0.1/x', /unsupported protocol ftp:/))
  })
})

describe('fetchText', () => {
  test('returns the text with its validators', async () => {
    const client = clientWith({})
    const result = await client.fetchText(upstream.url + INDEX)
    assert.equal(result.status, 200)
    assert.ok(result.status === 200)
    assert.equal(result.text, tree.files.get(INDEX)?.toString('utf8'))
    assert.equal(result.etag, `"${sha256(tree.files.get(INDEX)!)}"`)
    assert.ok(result.lastModified !== undefined && !Number.isNaN(Date.parse(result.lastModified)))
  })

  test('sends If-None-Match and If-Modified-Since and returns { status: 304 } when unchanged', async () => {
    const client = clientWith({})
    const first = await client.fetchText(upstream.url + INDEX)
    assert.ok(first.status === 200 && first.etag !== undefined && first.lastModified !== undefined)
    assert.deepEqual(await client.fetchText(upstream.url + INDEX, { etag: first.etag }), { status: 304 })
    assert.deepEqual(await client.fetchText(upstream.url + INDEX, { lastModified: first.lastModified }), { status: 304 })

    const server = await startServer((_req, res) => res.writeHead(304).end())
    assert.deepEqual(await client.fetchText(server.url, { etag: '"abc"', lastModified: first.lastModified }), { status: 304 })
    assert.equal(server.requests[0]?.['if-none-match'], '"abc"')
    assert.equal(server.requests[0]?.['if-modified-since'], first.lastModified)
    await server.close()
  })

  test('a changed document under an old ETag comes back in full', async () => {
    const client = clientWith({})
    const result = await client.fetchText(upstream.url + INDEX, { etag: '"stale"' })
    assert.equal(result.status, 200)
  })

  test('retries a 503 and returns the answer that follows', async () => {
    const server = await startServer((_req, res, count) => {
      if (count === 1) res.writeHead(503).end('busy')
      else res.writeHead(200, { etag: '"v2"' }).end('{"ok":true}')
    })
    const client = clientWith({})
    assert.deepEqual(await client.fetchText(server.url), { status: 200, text: '{"ok":true}', etag: '"v2"' })
    assert.equal(server.requests.length, 2)
    await server.close()
  })

  test('retries a broken body and gives up after the attempts, naming the URL', async () => {
    const server = await startServer((_req, res) => {
      res.writeHead(200, { 'content-length': '100' })
      res.write('{"partial":', () => res.socket?.end())
    })
    const client = clientWith({})
    await assert.rejects(client.fetchText(server.url, { attempts: 2 }), upstreamError(server.url, /.+/))
    assert.equal(server.requests.length, 2)
    await server.close()
  })

  test('a 503 that persists fails after the attempts with the status', async () => {
    const server = await startServer((_req, res) => res.writeHead(503).end('busy'))
    const client = clientWith({})
    await assert.rejects(client.fetchText(server.url, { attempts: 2 }), upstreamError(server.url, /HTTP 503/, 503))
    assert.equal(server.requests.length, 2)
    await server.close()
  })

  test('does not retry a 404', async () => {
    const client = clientWith({})
    const url = `${upstream.url}streams/v1/missing.json`
    await assert.rejects(client.fetchText(url), upstreamError(url, /HTTP 404/, 404))
    assert.equal(upstream.requestCount('streams/v1/missing.json'), 1)
    await allSlotsFree(client)
  })
})

describe('fetchText limits (limits.metadataMaxBytes, limits.metadataTimeout)', () => {
  const MiB = 1024 * 1024

  test('a 200 MB body without line breaks is cut as soon as it passes the cap: the server never gets to send it all', async () => {
    const total = 200 * MiB
    const chunk = Buffer.alloc(64 * 1024, 'x')
    let sent = 0
    let sentWhenClosed: number | undefined
    let responseClosed: () => void
    const closed = new Promise<void>((resolve) => (responseClosed = resolve))
    const server = await startServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.on('close', () => {
        sentWhenClosed = sent
        responseClosed()
      })
      const pump = () => {
        while (sent < total && !res.destroyed) {
          sent += chunk.length
          if (!res.write(chunk)) return void res.once('drain', pump)
        }
        if (!res.destroyed) res.end()
      }
      pump()
    })
    const client = clientWith({ metadataMaxBytes: MiB })
    await assert.rejects(client.fetchText(server.url), upstreamError(server.url, /over the metadata limit of 1048576 bytes \(limits\.metadataMaxBytes\)/, 200))
    await allSlotsFree(client)
    await closed
    await server.close()
    assert.equal(server.requests.length, 1, 'a document over the cap is not fetched again')
    assert.ok(sentWhenClosed !== undefined && sentWhenClosed < total, `the server sent the whole body (${sentWhenClosed} bytes)`)
    // The cap plus what the sockets' buffers held when the transfer was cut.
    assert.ok(sent < 32 * MiB, `${sent} bytes sent`)
  })

  test('a Content-Length over the cap is refused before the body is read', async () => {
    const server = await startServer((_req, res) => {
      res.writeHead(200, { 'content-length': String(8 * MiB) })
      res.write(Buffer.alloc(1024))
    })
    const client = clientWith({ metadataMaxBytes: MiB })
    await assert.rejects(client.fetchText(server.url), upstreamError(server.url, /Content-Length 8388608, over the metadata limit of 1048576 bytes/, 200))
    await allSlotsFree(client)
    await server.close()
  })

  test('a trickle that never trips the idle timeout is cut at the deadline, retries included', async () => {
    const server = await startServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      const timer = setInterval(() => res.write(' '), 100)
      res.on('close', () => clearInterval(timer))
    })
    const client = clientWith({ idleTimeoutMs: 2_000, metadataTimeoutMs: 1_000 })
    await assert.rejects(client.fetchText(server.url, { attempts: 3 }), upstreamError(server.url, /not received within 1s \(limits\.metadataTimeout\)/))
    await allSlotsFree(client)
    await server.close()
    assert.equal(server.requests.length, 1)
  })

  test('a document under the cap is read whole', async () => {
    const body = 'y'.repeat(MiB)
    const server = await startServer((_req, res) => res.writeHead(200).end(body))
    const client = clientWith({ metadataMaxBytes: MiB })
    assert.deepEqual(await client.fetchText(server.url), { status: 200, text: body })
    await server.close()
  })
})

describe('UpstreamError', () => {
  test('shows a URL with its credentials redacted', () => {
    const error = new UpstreamError('https://mirror:S3cret@images.example/stable/x', 'HTTP 500', 500)
    assert.equal(error.url, 'https://mirror:***@images.example/stable/x')
    assert.equal(error.message, 'https://mirror:***@images.example/stable/x: HTTP 500')
  })

  test('network failures, 5xx and 429 are worth a retry; other statuses are not', () => {
    assert.equal(new UpstreamError('u', 'reset').retryable, true)
    assert.equal(new UpstreamError('u', 'x', 500).retryable, true)
    assert.equal(new UpstreamError('u', 'x', 503).retryable, true)
    assert.equal(new UpstreamError('u', 'x', 429).retryable, true)
    assert.equal(new UpstreamError('u', 'x', 404).retryable, false)
    assert.equal(new UpstreamError('u', 'x', 403).retryable, false)
  })
})

describe('backoffMs', () => {
  test('doubles from the base, randomised within the upper half, capped at 30 s', () => {
    for (let i = 0; i < 100; i++) {
      const first = backoffMs(1)
      assert.ok(first >= 250 && first <= 500, String(first))
      const third = backoffMs(3, 100)
      assert.ok(third >= 200 && third <= 400, String(third))
      const late = backoffMs(20)
      assert.ok(late >= 15_000 && late <= 30_000, String(late))
    }
  })
})
