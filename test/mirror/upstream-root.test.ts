/**
 * Signed metadata may only name files under the mirror's upstream root
 * (issue 12 item 3): an item or index entry path with a URL scheme is
 * refused as a metadata error naming it, the last good metadata stays served,
 * and the proxy never connects to the host the path names (a second real
 * server that records every connection).
 */

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { once } from 'node:events'
import { clearsign } from '../../src/streams/signature.js'
import type { IndexDocument, ProductsDocument } from '../../src/streams/types.js'
import { MIRROR_PATH, startHarness, type Harness } from '../support/proxy-harness.js'
import { rawRequest } from '../support/http.js'
import { buildUpstreamTree, type UpstreamTree } from '../support/upstream-tree.js'

const IMAGES_ID = 'com.ubuntu.maas:stable:v3:download'
const BOOTLOADERS_ID = 'com.ubuntu.maas:stable:1:bootloader-download'
const KERNEL_PRODUCT = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04'
const OTHER_ANSWER = 'OTHER-HOST-ANSWER 0123456789'

/** The "internal" host a hostile path names: it answers anything and counts connections. */
async function startOtherHost(): Promise<{ port: number; connections(): number; close(): Promise<void> }> {
  let connections = 0
  const server: Server = createServer((_req, res) => res.writeHead(200).end(OTHER_ANSWER))
  server.on('connection', () => connections++)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    port: (server.address() as AddressInfo).port,
    connections: () => connections,
    async close() {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
}

const serialize = (doc: object) => `${JSON.stringify(doc, null, 1)}\n`

/** A newer build of the tree (same key) with `edit` applied to its signed documents, re-signed. */
async function hostileTree(h: Harness, edit: (products: ProductsDocument, index: IndexDocument) => void): Promise<UpstreamTree> {
  const tree = await buildUpstreamTree({ key: h.tree.key, versions: ['20250101', '20250201', '20250301'] })
  const products = structuredClone(tree.products.get(IMAGES_ID)) as ProductsDocument
  const index = structuredClone(tree.index)
  for (const entry of Object.values(index.index)) entry.path = entry.path.replace(/\.json$/, '.sjson')
  edit(products, index)
  tree.files.set(tree.productsPath(IMAGES_ID, 'sjson'), Buffer.from(await clearsign(serialize(products), tree.key.privateKey)))
  tree.files.set('streams/v1/index.sjson', Buffer.from(await clearsign(serialize(index), tree.key.privateKey)))
  return tree
}

describe('a signed path that leaves the upstream root', () => {
  let h: Harness
  let other: Awaited<ReturnType<typeof startOtherHost>>
  before(async () => {
    other = await startOtherHost()
    h = await startHarness()
  })
  after(async () => {
    await h.close()
    await other.close()
  })

  test('an item path with a scheme: refused naming the product and path, the other host never contacted, the last good metadata served', async () => {
    // The test upstream is http: only another scheme resolves to another host.
    const hostile = `https:127.0.0.1:${other.port}/admin/secret`
    const tree = await hostileTree(h, (products) => {
      const items = products.products[KERNEL_PRODUCT]!.versions['20250301']!.items
      items['boot-kernel']!.path = hostile
    })
    h.upstream.setTree(tree)
    const mirror = h.proxy.core.mirrors[0]!
    await mirror.refresh()
    const error = mirror.metadataStatus().metadataError ?? ''
    assert.ok(error.includes(KERNEL_PRODUCT) && error.includes(JSON.stringify(hostile)), error)
    const item = await rawRequest(h.proxy.url, MIRROR_PATH + hostile)
    assert.ok(item.status >= 400, `answered ${item.status}`)
    assert.ok(!item.body.toString().includes(OTHER_ANSWER), item.body.toString())
    const status = (await (await fetch(`${h.proxy.url}/status`)).json()) as { mirrors: Array<{ metadataError: string }> }
    assert.ok(status.mirrors[0]!.metadataError.includes(KERNEL_PRODUCT) && status.mirrors[0]!.metadataError.includes(hostile), status.mirrors[0]!.metadataError)
    // The last good metadata is still served, with its files.
    const kernel = h.tree.items.find((entry) => entry.product === KERNEL_PRODUCT && entry.version === '20250201' && entry.item === 'boot-kernel')!
    assert.equal((await rawRequest(h.proxy.url, MIRROR_PATH + kernel.path)).status, 200)
    assert.equal(other.connections(), 0, 'the proxy connected to the host the path names')
  })

  test('an index entry path with a scheme: refused naming the index entry, the other host never contacted', async () => {
    const hostile = `https:127.0.0.1:${other.port}/streams/v1/bootloaders.sjson`
    const tree = await hostileTree(h, (_products, index) => {
      index.index[BOOTLOADERS_ID]!.path = hostile
      index.index[BOOTLOADERS_ID]!.updated = 'Sat, 01 Mar 2025 00:00:01 +0000'
    })
    h.upstream.setTree(tree)
    const mirror = h.proxy.core.mirrors[0]!
    await mirror.refresh()
    const error = mirror.metadataStatus().metadataError ?? ''
    assert.ok(error.includes(`index["${BOOTLOADERS_ID}"].path`) && error.includes(hostile), error)
    const status = await (await fetch(`${h.proxy.url}/status`)).text()
    assert.ok(status.includes(BOOTLOADERS_ID) && status.includes(hostile), status)
    assert.equal(other.connections(), 0, 'the proxy connected to the host the path names')
  })
})
