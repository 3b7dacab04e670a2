/**
 * The Host header is judged the same way for metadata (answered by the fast
 * path) and for files (answered by the app): HTTP/1.0 without Host is served
 * (RFC 9112 requires Host of HTTP/1.1 only; Node refuses HTTP/1.1 without it),
 * and an invalid or repeated Host is a 400 for both.
 */

import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { MIRROR_PATH, startHarness, type Harness } from '../support/proxy-harness.js'
import type { TreeItem } from '../support/upstream-tree.js'

/** Sends `head` (request line and headers) on a fresh connection and returns the status line's code. */
function statusOf(url: string, head: string): Promise<number | undefined> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    const socket = net.connect(Number(port), hostname, () => socket.write(`${head}\r\n`))
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('error', () => undefined)
    socket.on('close', () => {
      const code = /^HTTP\/1\.[01] (\d{3})/.exec(Buffer.concat(chunks).toString('latin1'))?.[1]
      resolve(code === undefined ? undefined : Number(code))
    })
  })
}

describe('the Host header', () => {
  let h: Harness
  let paths: Record<'metadata' | 'file', string>
  before(async () => {
    h = await startHarness()
    const kernel = h.tree.items.find((i) => i.item === 'boot-kernel' && i.path.startsWith('noble/amd64/20250201/ga-')) as TreeItem
    paths = { metadata: `${MIRROR_PATH}streams/v1/index.sjson`, file: MIRROR_PATH + kernel.path }
  })
  after(() => h.close())

  for (const kind of ['metadata', 'file'] as const) {
    test(`HTTP/1.0 without Host is served: ${kind}`, async () => {
      assert.equal(await statusOf(h.proxy.url, `GET ${paths[kind]} HTTP/1.0\r\n`), 200)
    })

    test(`HTTP/1.1 without Host is 400: ${kind}`, async () => {
      assert.equal(await statusOf(h.proxy.url, `GET ${paths[kind]} HTTP/1.1\r\nConnection: close\r\n`), 400)
    })

    test(`an invalid Host is 400: ${kind}`, async () => {
      assert.equal(await statusOf(h.proxy.url, `GET ${paths[kind]} HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n`), 400)
    })

    test(`an ordinary Host is served: ${kind}`, async () => {
      assert.equal(await statusOf(h.proxy.url, `GET ${paths[kind]} HTTP/1.1\r\nHost: proxy.example:8080\r\nConnection: close\r\n`), 200)
    })
  }
})
