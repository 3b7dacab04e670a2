/**
 * buildPublication (the metadata worker's build) on its own: a sha256 listed at two sizes, or a path naming
 * two files across products documents, is refused naming the items; the
 * selection digest changes only with the selected (path, sha256, size) set.
 */

import { describe, test, before } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import type { MirrorConfig } from '../../src/config/types.js'
import { buildPublication, type PublishInput } from '../../src/metadata-worker/build-publication.js'
import { INDEX_PATH } from '../../src/mirror/upstream-metadata.js'
import { generateSigningKey, type SigningKey } from '../../src/streams/signing-key.js'
import { InconsistentMetadataError } from '../../src/streams/size-consistency.js'
import type { ProductsDocument, StreamItem } from '../../src/streams/types.js'
import { selections } from '../support/proxy-harness.js'

const A = 'com.example:a'
const B = 'com.example:b'

interface Item {
  product: string
  version: string
  item: string
  path: string
  sha256?: string
  size?: number
}

const shaOf = (text: string) => createHash('sha256').update(text).digest('hex')

function products(contentId: string, items: Item[]): ProductsDocument {
  const doc: ProductsDocument = { format: 'products:1.0', content_id: contentId, products: {} }
  for (const { product, version, item, path, sha256, size } of items) {
    const entry = (doc.products[product] ??= { arch: product === 'pb' ? 'arm64' : 'amd64', versions: {} })
    const versionEntry = (entry.versions[version] ??= { items: {} })
    const streamItem: StreamItem = { ftype: 'file', path, sha256: sha256 ?? shaOf(path), size: size ?? path.length }
    versionEntry.items[item] = streamItem
  }
  return doc
}

function metadata(documents: ProductsDocument[]): Pick<PublishInput, 'index' | 'products'> {
  const index = Object.fromEntries(documents.map((doc) => [doc.content_id, { path: `streams/v1/${doc.content_id}.sjson`, format: 'products:1.0' }]))
  return {
    index: { path: INDEX_PATH, signed: '', text: '', parsed: { format: 'index:1.0', index } },
    products: new Map(documents.map((doc) => [doc.content_id, { path: `streams/v1/${doc.content_id}.sjson`, signed: '', text: '', parsed: doc }])),
  }
}

describe('buildPublication', () => {
  let key: SigningKey
  const mirror = (groups: Array<{ filters: string[]; max?: number }> = []): Pick<MirrorConfig, 'metadata' | 'selections' | 'publish'> => ({
    metadata: 'upstream',
    publish: 'selected',
    selections: selections(groups),
  })
  const build = (documents: ProductsDocument[], groups?: Array<{ filters: string[]; max?: number }>) =>
    buildPublication({ ...metadata(documents), mirror: mirror(groups), signingKey: key.privateKey, isStored: () => false })
  before(async () => {
    key = await generateSigningKey({ name: 'test' })
  })

  test('one sha256 at 16 and at 4 bytes in two products documents is refused, naming both items and sizes', async () => {
    const sha256 = shaOf('kernel')
    const first = products(A, [{ product: 'pa', version: 'v1', item: 'kernel', path: 'a/kernel', sha256, size: 16 }])
    const second = products(B, [{ product: 'pb', version: 'v2', item: 'initrd', path: 'b/initrd', sha256, size: 4 }])
    await assert.rejects(build([first, second]), (error: Error) => {
      assert.ok(error instanceof InconsistentMetadataError)
      for (const part of [A, 'pa', 'v1', 'kernel', 'a/kernel', '16 bytes', B, 'pb', 'v2', 'initrd', 'b/initrd', '4 bytes', sha256]) assert.ok(error.message.includes(part), `${part}: ${error.message}`)
      return true
    })
  })

  test('one path naming different files in two products documents is refused', async () => {
    const first = products(A, [{ product: 'pa', version: 'v1', item: 'kernel', path: 'shared/file', sha256: shaOf('one') }])
    const second = products(B, [{ product: 'pb', version: 'v1', item: 'kernel', path: 'shared/file', sha256: shaOf('two') }])
    await assert.rejects(build([first, second]), /inconsistent signed metadata: path "shared\/file" names different files/)
  })

  test('the same sha256 at the same size under two paths is fine', async () => {
    const sha256 = shaOf('same')
    const publication = await build([
      products(A, [
        { product: 'pa', version: 'v1', item: 'one', path: 'x/one', sha256, size: 7 },
        { product: 'pa', version: 'v1', item: 'two', path: 'x/two', sha256, size: 7 },
      ]),
    ])
    assert.equal(publication.tables.files.paths.length, 2)
  })

  test('the selection digest follows the selected (path, sha256, size) set only', async () => {
    const items: Item[] = [
      { product: 'pa', version: 'v1', item: 'kernel', path: 'v1/kernel' },
      { product: 'pb', version: 'v1', item: 'kernel', path: 'pb/v1/kernel' },
    ]
    const groups = [{ filters: ['arch=amd64'] }]
    const digest = async (list: Item[]) => (await build([products(A, list)], groups)).tables.selectionDigest
    const base = await digest(items)
    assert.match(base, /^[0-9a-f]{64}$/)
    assert.equal(await digest(JSON.parse(JSON.stringify(items)) as Item[]), base, 'equal documents, equal digest')
    assert.equal(await digest([items[0] as Item, { ...(items[1] as Item), size: 99 }]), base, 'an unselected item does not count')
    assert.notEqual(await digest([...items, { product: 'pa', version: 'v2', item: 'kernel', path: 'v2/kernel' }]), base, 'a new version changes it')
    assert.notEqual(await digest([{ ...(items[0] as Item), sha256: shaOf('rebuilt') }, items[1] as Item]), base, 'a new sha256 changes it')
  })
})
