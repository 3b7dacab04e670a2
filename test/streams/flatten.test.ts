import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { productItems } from '../../src/streams/flatten.js'
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

/** Every item of a document, in document order. */
const flattenItems = (document: ProductsDocument) =>
  Object.entries(document.products).flatMap(([name, product]) => productItems(document, name, product))

/** The attributes `keys` of an item, as one plain object. */
function attributes(item: { get(key: string): unknown } | undefined, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.map((key) => [key, item?.get(key)]))
}

describe('FlatItem', () => {
  test('each level overrides the one above it: top, product, version, item', () => {
    const [kernel, squashfs] = flattenItems(doc)
    assert.equal(kernel?.get('level'), 'item')
    assert.equal(kernel?.get('ftype'), 'boot-kernel')
    assert.equal(squashfs?.get('level'), 'version')
    assert.equal(squashfs?.get('ftype'), 'from-version')
    assert.equal(squashfs?.get('label'), 'top')
    assert.equal(squashfs?.get('arch'), 'amd64')
  })

  test('shows every scalar attribute of every level, content_id and the product, version and item names', () => {
    const [kernel] = flattenItems(doc)
    const expected = {
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
    }
    assert.deepEqual(attributes(kernel, Object.keys(expected)), expected)
  })

  test('containers and other non-scalar attributes are not inherited', () => {
    const [kernel] = flattenItems(doc)
    for (const key of ['products', 'versions', 'items', 'aliases', 'nested']) {
      assert.equal(kernel?.get(key), undefined, key)
    }
  })

  test('a non-scalar attribute does not hide a scalar one of the same name above it', () => {
    const shadowed: ProductsDocument = {
      format: 'products:1.0',
      content_id: 'c',
      products: { p: { arch: 'amd64', versions: { v: { items: { i: { arch: ['not', 'scalar'] } } } } } },
    }
    assert.equal(flattenItems(shadowed)[0]?.get('arch'), 'amd64')
  })

  test('the identifying names win over attributes of the same name', () => {
    const tricky: ProductsDocument = {
      format: 'products:1.0',
      content_id: 'real',
      products: { p: { product_name: 'fake', versions: { v: { items: { i: { item_name: 'fake', content_id: 'fake' } } } } } },
    }
    const [item] = flattenItems(tricky)
    assert.deepEqual(attributes(item, ['content_id', 'product_name', 'version_name', 'item_name']), {
      content_id: 'real',
      product_name: 'p',
      version_name: 'v',
      item_name: 'i',
    })
  })

  test('"__proto__" and "constructor" are plain attributes, and missing ones read as undefined', () => {
    const parsed = JSON.parse(
      '{"format":"products:1.0","content_id":"c","products":{"p":{"__proto__":"x","versions":{"v":{"items":{"i":{}}}}}}}',
    ) as ProductsDocument
    const [item] = flattenItems(parsed)
    assert.equal(item?.get('__proto__'), 'x')
    assert.equal(item?.get('constructor'), undefined)
    assert.equal(item?.get('toString'), undefined)
  })

  test('lists items in document order, one per item', () => {
    const names = flattenItems(doc).map((item) => item.itemName)
    assert.deepEqual(names, ['boot-kernel', 'squashfs'])
  })
})
