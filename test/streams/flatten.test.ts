import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { flattenItems } from '../../src/streams/flatten.js'
import type { ProductsDocument } from '../../src/streams/types.js'

const doc: ProductsDocument = {
  format: 'products:1.0',
  content_id: 'com.ubuntu.maas:stable:v3:download',
  datatype: 'image-downloads',
  label: 'top',
  level: 'top',
  products: {
    'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04': {
      arch: 'amd64',
      release: 'noble',
      level: 'product',
      subarches: 'generic,hwe-p',
      aliases: ['not', 'a', 'scalar'],
      versions: {
        '20250709': {
          level: 'version',
          ftype: 'from-version',
          items: {
            'boot-kernel': {
              ftype: 'boot-kernel',
              level: 'item',
              path: 'noble/amd64/20250709/ga-24.04/generic/boot-kernel',
              size: 15,
              supported: true,
              nested: { not: 'inherited' },
            },
            squashfs: { path: 'noble/amd64/20250709/squashfs' },
          },
        },
      },
    },
  },
}

/** Every attribute an item shows, own and inherited, as one plain object. */
function allAttributes(item: object | undefined): Record<string, unknown> {
  const all: Record<string, unknown> = {}
  for (const key in item) all[key] = (item as Record<string, unknown>)[key]
  return all
}

describe('flattenItems', () => {
  test('each level overrides the one above it: top, product, version, item', () => {
    const [kernel, squashfs] = flattenItems(doc)
    assert.equal(kernel?.level, 'item')
    assert.equal(kernel?.ftype, 'boot-kernel')
    assert.equal(squashfs?.level, 'version')
    assert.equal(squashfs?.ftype, 'from-version')
    assert.equal(squashfs?.label, 'top')
    assert.equal(squashfs?.arch, 'amd64')
  })

  test('adds content_id and the product, version and item names', () => {
    const [kernel] = flattenItems(doc)
    assert.deepEqual(allAttributes(kernel), {
      datatype: 'image-downloads',
      label: 'top',
      level: 'item',
      arch: 'amd64',
      release: 'noble',
      subarches: 'generic,hwe-p',
      ftype: 'boot-kernel',
      path: 'noble/amd64/20250709/ga-24.04/generic/boot-kernel',
      size: 15,
      supported: true,
      format: 'products:1.0',
      content_id: 'com.ubuntu.maas:stable:v3:download',
      product_name: 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04',
      version_name: '20250709',
      item_name: 'boot-kernel',
    })
  })

  test('containers and other non-scalar attributes are not inherited', () => {
    const [kernel] = flattenItems(doc)
    for (const key of ['products', 'versions', 'items', 'aliases', 'nested']) {
      assert.equal(key in (kernel ?? {}), false, key)
    }
  })

  test('the identifying names win over attributes of the same name', () => {
    const tricky: ProductsDocument = {
      format: 'products:1.0',
      content_id: 'real',
      products: { p: { product_name: 'fake', versions: { v: { items: { i: { item_name: 'fake', content_id: 'fake' } } } } } },
    }
    const [item] = flattenItems(tricky)
    assert.deepEqual(
      [item?.content_id, item?.product_name, item?.version_name, item?.item_name],
      ['real', 'p', 'v', 'i'],
    )
  })

  test('"__proto__" and "constructor" are plain attributes, and missing ones read as undefined', () => {
    const parsed = JSON.parse(
      '{"format":"products:1.0","content_id":"c","products":{"p":{"__proto__":"x","versions":{"v":{"items":{"i":{}}}}}}}',
    ) as ProductsDocument
    const [item] = flattenItems(parsed)
    assert.equal((item as Record<string, unknown>)['__proto__'], 'x')
    assert.equal((item as Record<string, unknown>)['constructor'], undefined)
    assert.equal((item as Record<string, unknown>)['toString'], undefined)
  })

  test('lists items in document order, one per item', () => {
    const names = flattenItems(doc).map((item) => item.item_name)
    assert.deepEqual(names, ['boot-kernel', 'squashfs'])
  })
})
