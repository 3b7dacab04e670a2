import { before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { parseFilter } from '../../src/streams/filter.js'
import { completeForMaas } from '../../src/streams/maas-completion.js'
import { checkProducts } from '../../src/streams/maas-compatibility.js'
import { applySelections } from '../../src/streams/selection.js'
import type { ProductsDocument } from '../../src/streams/types.js'
import { buildUpstreamTree, type UpstreamTree } from '../support/upstream-tree.js'

const IMAGES = 'com.ubuntu.maas:stable:v3:download'
const CENTOS = 'com.ubuntu.maas:stable:centos-bases-download'
const GA = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04'

let tree: UpstreamTree
before(async () => {
  tree = await buildUpstreamTree({ releases: [{ release: 'noble', version: '24.04' }], arches: ['amd64'] })
})

const select = (document: ProductsDocument, ...filters: string[]) => applySelections(document, [{ filters: filters.map(parseFilter), max: 1 }])

describe('completeForMaas', () => {
  test('puts back the manifest a selection left out, with its file, and leaves the selection alone', () => {
    const upstream = tree.products.get(IMAGES) as ProductsDocument
    const selection = select(upstream, 'ftype!=manifest')
    assert.ok(checkProducts(IMAGES, selection.document).length > 0, 'MAAS would reject the bare selection')
    const completed = completeForMaas(upstream, selection)
    assert.deepEqual(checkProducts(IMAGES, completed.document), [])
    assert.deepEqual(Object.keys(completed.document.products[GA]?.versions['20250201']?.items ?? {}), ['boot-initrd', 'boot-kernel', 'manifest', 'squashfs'])
    const manifest = completed.files.find((file) => file.path === 'noble/amd64/20250201/squashfs.manifest')
    assert.deepEqual(manifest?.refs.map((ref) => ref.product).sort(), [GA, 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:hwe-24.04'])
    assert.ok(!selection.files.some((file) => file.path.endsWith('.manifest')), 'the selection itself is unchanged')
    assert.ok(!('manifest' in (selection.document.products[GA]?.versions['20250201']?.items ?? {})))
  })

  test('puts back root-tgz and manifest of a single-file version', () => {
    const upstream = tree.products.get(CENTOS) as ProductsDocument
    const completed = completeForMaas(upstream, select(upstream, 'ftype=root-tgz'))
    assert.deepEqual(checkProducts(CENTOS, completed.document), [])
  })

  test('writes product attributes upstream put at the top of the document onto each product', () => {
    const upstream = structuredClone(tree.products.get(IMAGES) as ProductsDocument)
    upstream.label = 'stable'
    upstream.os = 'ubuntu'
    for (const product of Object.values(upstream.products)) {
      delete product.label
      delete product.os
    }
    assert.ok(checkProducts(IMAGES, upstream).length > 0, 'MAAS does not inherit')
    const completed = completeForMaas(upstream, select(upstream, 'arch=amd64'))
    assert.deepEqual(checkProducts(IMAGES, completed.document), [])
    assert.deepEqual([completed.document.products[GA]?.label, completed.document.products[GA]?.os], ['stable', 'ubuntu'])
  })

  test('returns a selection MAAS accepts as it is', () => {
    const upstream = tree.products.get(IMAGES) as ProductsDocument
    const selection = select(upstream, 'arch=amd64')
    assert.equal(completeForMaas(upstream, selection), selection)
  })
})
