import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { parseIndex, parseProducts, StreamFormatError } from '../../src/streams/documents.js'

const SOURCE = 'streams/v1/com.ubuntu.maas:stable:v3:download.json'
const SHA = 'a'.repeat(64)
const PRODUCT = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04'
const ITEM = `products["${PRODUCT}"].versions["20250709"].items["boot-kernel"]`

function products() {
  return {
    format: 'products:1.0',
    content_id: 'com.ubuntu.maas:stable:v3:download',
    datatype: 'image-downloads',
    updated: 'Wed, 09 Jul 2025 10:00:00 +0000',
    products: {
      [PRODUCT]: {
        arch: 'amd64',
        release: 'noble',
        versions: {
          '20250709': {
            items: {
              'boot-kernel': {
                ftype: 'boot-kernel',
                path: 'noble/amd64/20250709/ga-24.04/generic/boot-kernel',
                sha256: SHA,
                md5: 'b'.repeat(32),
                size: 15_000_000,
              },
            },
          },
        },
      },
    },
  }
}

type Doc = ReturnType<typeof products>

function kernel(doc: Doc): Record<string, unknown> {
  return doc.products[PRODUCT]!.versions['20250709']!.items['boot-kernel'] as Record<string, unknown>
}

/** Parses `products()` after `change` and expects exactly `message`. */
function rejects(change: (doc: Doc) => void, message: string): void {
  const doc = products()
  change(doc)
  assert.throws(() => parseProducts(JSON.stringify(doc), SOURCE), { name: 'StreamFormatError', message })
}

describe('parseProducts', () => {
  test('returns the document as upstream wrote it', () => {
    const doc = products()
    assert.deepEqual(parseProducts(JSON.stringify(doc), SOURCE), doc)
  })

  test('malformed JSON gives one line naming the source', () => {
    assert.throws(
      () => parseProducts('{\n"format":\nproducts}', SOURCE),
      (error: unknown) => {
        assert.ok(error instanceof StreamFormatError)
        assert.match(error.message, /^streams\/v1\/com\.ubuntu\.maas:stable:v3:download\.json: not valid JSON \(.+\)$/)
        assert.doesNotMatch(error.message, /\n/)
        return true
      },
    )
  })

  test('the top level must be an object', () => {
    assert.throws(() => parseProducts('[]', SOURCE), {
      name: 'StreamFormatError',
      message: `${SOURCE}: expected a JSON object at the top level`,
    })
  })

  test('wrong or missing format', () => {
    rejects((doc) => (doc.format = 'index:1.0'), `${SOURCE}: format: expected "products:1.0", got "index:1.0"`)
    rejects((doc) => delete (doc as Partial<Doc>).format, `${SOURCE}: format: expected "products:1.0", missing`)
  })

  test('content_id is required', () => {
    rejects((doc) => delete (doc as Partial<Doc>).content_id, `${SOURCE}: content_id: expected a non-empty string, missing`)
    rejects((doc) => (doc.content_id = ''), `${SOURCE}: content_id: expected a non-empty string, got ""`)
  })

  test('products, versions, items and each item must be objects', () => {
    rejects((doc) => ((doc as Record<string, unknown>).products = []), `${SOURCE}: products: expected an object, got an array`)
    rejects(
      (doc) => delete (doc.products[PRODUCT] as Partial<Doc['products'][typeof PRODUCT]>).versions,
      `${SOURCE}: products["${PRODUCT}"].versions: expected an object, missing`,
    )
    rejects(
      (doc) => ((doc.products[PRODUCT]!.versions['20250709'] as Record<string, unknown>).items = null),
      `${SOURCE}: products["${PRODUCT}"].versions["20250709"].items: expected an object, got null`,
    )
    rejects(
      (doc) => ((doc.products[PRODUCT]!.versions['20250709']!.items as Record<string, unknown>)['boot-kernel'] = 'x'),
      `${SOURCE}: ${ITEM}: expected an object, got "x"`,
    )
  })

  test('an item with a path needs a size', () => {
    rejects((doc) => delete kernel(doc).size, `${SOURCE}: ${ITEM}.size: missing; an item with a path needs a size`)
  })

  test('size must be a non-negative integer', () => {
    for (const size of [-1, 1.5, '15000000', null]) {
      rejects((doc) => (kernel(doc).size = size), `${SOURCE}: ${ITEM}.size: expected a non-negative integer`)
    }
  })

  test('an item with a path needs a sha256, even when it has another checksum', () => {
    rejects(
      (doc) => delete kernel(doc).sha256,
      `${SOURCE}: ${ITEM}.sha256: missing; an item with a path needs a sha256 (MAAS items always carry one)`,
    )
  })

  test('sha256 must be 64 lowercase hex digits; md5 and sha512 are checked when present', () => {
    for (const sha256 of ['a'.repeat(63), 'A'.repeat(64), 'g'.repeat(64), 42]) {
      rejects((doc) => (kernel(doc).sha256 = sha256), `${SOURCE}: ${ITEM}.sha256: expected 64 lowercase hex digits`)
    }
    rejects((doc) => (kernel(doc).md5 = 'b'.repeat(31)), `${SOURCE}: ${ITEM}.md5: expected 32 lowercase hex digits`)
    rejects((doc) => (kernel(doc).sha512 = SHA), `${SOURCE}: ${ITEM}.sha512: expected 128 lowercase hex digits`)
  })

  test('unsafe item paths are rejected with the path in the message', () => {
    const cases: Array<[string, string]> = [
      ['/etc/passwd', '"/etc/passwd" (absolute)'],
      ['noble/../../etc/passwd', '"noble/../../etc/passwd" (has a ".." segment)'],
      ['noble\\boot-kernel', '"noble\\\\boot-kernel" (contains "\\")'],
      ['noble/boot-kernel\u0000', '"noble/boot-kernel\\u0000" (contains a control character)'],
      ['noble//boot-kernel', '"noble//boot-kernel" (has an empty segment)'],
    ]
    for (const [path, described] of cases) {
      rejects((doc) => (kernel(doc).path = path), `${SOURCE}: ${ITEM}.path: unsafe path ${described}`)
    }
    rejects((doc) => (kernel(doc).path = 7), `${SOURCE}: ${ITEM}.path: expected a string, got number`)
  })

  test('items without a path need neither size nor checksum', () => {
    const doc = products()
    doc.products[PRODUCT]!.versions['20250709']!.items['boot-kernel'] = { ftype: 'boot-kernel' } as never
    assert.doesNotThrow(() => parseProducts(JSON.stringify(doc), SOURCE))
  })

  test('size and sha256 moved up to the version by a generator still count, and are checked there', () => {
    const doc = products()
    const version = doc.products[PRODUCT]!.versions['20250709'] as Record<string, unknown>
    version.size = 15_000_000
    version.sha256 = SHA
    delete kernel(doc).size
    delete kernel(doc).sha256
    assert.doesNotThrow(() => parseProducts(JSON.stringify(doc), SOURCE))
    version.size = -5
    assert.throws(() => parseProducts(JSON.stringify(doc), SOURCE), {
      message: `${SOURCE}: products["${PRODUCT}"].versions["20250709"].size: expected a non-negative integer`,
    })
  })
})

describe('parseIndex', () => {
  const INDEX_SOURCE = 'streams/v1/index.json'
  function index() {
    return {
      format: 'index:1.0',
      updated: 'Wed, 09 Jul 2025 10:00:00 +0000',
      index: {
        'com.ubuntu.maas:stable:v3:download': {
          path: 'streams/v1/com.ubuntu.maas:stable:v3:download.json',
          format: 'products:1.0',
          datatype: 'image-downloads',
          products: [PRODUCT],
          updated: 'Wed, 09 Jul 2025 10:00:00 +0000',
        },
      },
    }
  }
  const ENTRY = 'index["com.ubuntu.maas:stable:v3:download"]'
  type Entry = Record<string, unknown>
  function rejectsIndex(change: (entry: Entry) => void, message: string): void {
    const doc = index()
    change(doc.index['com.ubuntu.maas:stable:v3:download'] as Entry)
    assert.throws(() => parseIndex(JSON.stringify(doc), INDEX_SOURCE), { name: 'StreamFormatError', message })
  }

  test('returns the document as upstream wrote it', () => {
    assert.deepEqual(parseIndex(JSON.stringify(index()), INDEX_SOURCE), index())
  })

  test('wrong format and malformed JSON', () => {
    assert.throws(() => parseIndex(JSON.stringify(products()), INDEX_SOURCE), {
      message: `${INDEX_SOURCE}: format: expected "index:1.0", got "products:1.0"`,
    })
    assert.throws(() => parseIndex('{"format": "index:1.0"', INDEX_SOURCE), { message: /^streams\/v1\/index\.json: not valid JSON/ })
  })

  test('index must be an object of objects', () => {
    const doc = index() as Record<string, unknown>
    delete doc.index
    assert.throws(() => parseIndex(JSON.stringify(doc), INDEX_SOURCE), {
      message: `${INDEX_SOURCE}: index: expected an object, missing`,
    })
  })

  test('every entry needs a safe string path', () => {
    rejectsIndex((entry) => delete entry.path, `${INDEX_SOURCE}: ${ENTRY}.path: expected a string, missing`)
    rejectsIndex(
      (entry) => (entry.path = '../streams/v1/x.json'),
      `${INDEX_SOURCE}: ${ENTRY}.path: unsafe path "../streams/v1/x.json" (has a ".." segment)`,
    )
  })

  test('the optional fields have the types the index format gives them', () => {
    rejectsIndex((entry) => (entry.products = 'p'), `${INDEX_SOURCE}: ${ENTRY}.products: expected an array of strings, got "p"`)
    rejectsIndex((entry) => (entry.products = ['p', 3]), `${INDEX_SOURCE}: ${ENTRY}.products[1]: expected a string, got number`)
    rejectsIndex((entry) => (entry.datatype = 1), `${INDEX_SOURCE}: ${ENTRY}.datatype: expected a string, got number`)
  })
})
