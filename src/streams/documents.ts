/**
 * Parsing of upstream `index:1.0` and `products:1.0` documents. Everything the
 * proxy later relies on is checked here once, so that the rest of the code can
 * trust the types: an item with a path has a safe path, a size and a sha256.
 * Unknown attributes are kept untouched.
 */

import { unsafePathReason } from './item-path.js'
import type { IndexDocument, ProductsDocument } from './types.js'

/** Upstream metadata that is not what SimpleStreams says it is; the message names the file and the JSON path. */
export class StreamFormatError extends Error {
  override name = 'StreamFormatError'
}

type JsonObject = Record<string, unknown>

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function describe(value: unknown): string {
  if (value === undefined) return 'missing'
  if (value === null) return 'got null'
  if (Array.isArray(value)) return 'got an array'
  return `got ${typeof value === 'string' ? JSON.stringify(value) : typeof value}`
}

function child(parent: string, name: string): string {
  return parent === '' ? name : `${parent}.${name}`
}

function entry(parent: string, name: string): string {
  return `${parent}[${JSON.stringify(name)}]`
}

const DIGEST_LENGTHS = { md5: 32, sha256: 64, sha512: 128 } as const
const LOWER_HEX = /^[0-9a-f]*$/

/** Collects the checks of one document so each failure names the file it came from. */
function createChecker(source: string) {
  const fail = (path: string, problem: string) => new StreamFormatError(`${source}: ${path}: ${problem}`)
  const string = (value: unknown, path: string): string => {
    if (typeof value !== 'string') throw fail(path, `expected a string, ${describe(value)}`)
    return value
  }

  return {
    fail,
    string,
    root(text: string): JsonObject {
      let parsed: unknown
      try {
        parsed = JSON.parse(text)
      } catch (error) {
        // V8 quotes the offending text, which may span lines; messages are one line.
        const reason = (error as Error).message.replace(/\s+/g, ' ')
        throw new StreamFormatError(`${source}: not valid JSON (${reason})`)
      }
      if (!isObject(parsed)) throw new StreamFormatError(`${source}: expected a JSON object at the top level`)
      return parsed
    },
    format(doc: JsonObject, expected: string): void {
      if (doc.format !== expected) throw fail('format', `expected "${expected}", ${describe(doc.format)}`)
    },
    object(value: unknown, path: string): JsonObject {
      if (!isObject(value)) throw fail(path, `expected an object, ${describe(value)}`)
      return value
    },
    optionalString(value: unknown, path: string): void {
      if (value !== undefined) string(value, path)
    },
    safePath(value: unknown, path: string): void {
      const reason = unsafePathReason(string(value, path))
      if (reason !== undefined) throw fail(path, `unsafe path ${JSON.stringify(value)} (${reason})`)
    },
  }
}

type Checker = ReturnType<typeof createChecker>

/** Parses `streams/v1/index.json` (or the text inside `index.sjson`). */
export function parseIndex(text: string, source: string): IndexDocument {
  const check = createChecker(source)
  const doc = check.root(text)
  check.format(doc, 'index:1.0')
  const index = check.object(doc.index, 'index')
  for (const [contentId, value] of Object.entries(index)) {
    const at = entry('index', contentId)
    const indexEntry = check.object(value, at)
    check.safePath(indexEntry.path, child(at, 'path'))
    for (const name of ['format', 'datatype', 'updated']) check.optionalString(indexEntry[name], child(at, name))
    const products = indexEntry.products
    if (products !== undefined) {
      if (!Array.isArray(products)) throw check.fail(child(at, 'products'), `expected an array of strings, ${describe(products)}`)
      products.forEach((name, n) => check.string(name, `${child(at, 'products')}[${n}]`))
    }
  }
  return doc as IndexDocument
}

/** The file attributes an item may have, present on this level or inherited from above. */
interface FileAttributes {
  path: boolean
  size: boolean
  sha256: boolean
}

// Generators move values every child shares up to the parent, so file attributes
// are checked on whichever level holds them and required on the flattened item.
function checkFileAttributes(check: Checker, attributes: JsonObject, at: string, inherited: FileAttributes): FileAttributes {
  const has = (name: string) => Object.hasOwn(attributes, name)
  if (has('path')) check.safePath(attributes.path, child(at, 'path'))
  if (has('size')) {
    const size = attributes.size
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
      throw check.fail(child(at, 'size'), 'expected a non-negative integer')
    }
  }
  for (const [name, length] of Object.entries(DIGEST_LENGTHS)) {
    if (!has(name)) continue
    const digest = attributes[name]
    if (typeof digest !== 'string' || digest.length !== length || !LOWER_HEX.test(digest)) {
      throw check.fail(child(at, name), `expected ${length} lowercase hex digits`)
    }
  }
  if (has('ftype')) check.string(attributes.ftype, child(at, 'ftype'))
  return {
    path: inherited.path || has('path'),
    size: inherited.size || has('size'),
    sha256: inherited.sha256 || has('sha256'),
  }
}

/** Parses a products file (`streams/v1/CONTENT_ID.json`, or the text inside its `.sjson`). */
export function parseProducts(text: string, source: string): ProductsDocument {
  const check = createChecker(source)
  const doc = check.root(text)
  check.format(doc, 'products:1.0')
  if (typeof doc.content_id !== 'string' || doc.content_id === '') {
    throw check.fail('content_id', `expected a non-empty string, ${describe(doc.content_id)}`)
  }
  const fromTop = checkFileAttributes(check, doc, '', { path: false, size: false, sha256: false })
  const products = check.object(doc.products, 'products')
  for (const [productName, productValue] of Object.entries(products)) {
    const productAt = entry('products', productName)
    const product = check.object(productValue, productAt)
    const fromProduct = checkFileAttributes(check, product, productAt, fromTop)
    const versions = check.object(product.versions, child(productAt, 'versions'))
    for (const [versionName, versionValue] of Object.entries(versions)) {
      const versionAt = entry(child(productAt, 'versions'), versionName)
      const version = check.object(versionValue, versionAt)
      const fromVersion = checkFileAttributes(check, version, versionAt, fromProduct)
      const items = check.object(version.items, child(versionAt, 'items'))
      for (const [itemName, itemValue] of Object.entries(items)) {
        const itemAt = entry(child(versionAt, 'items'), itemName)
        const file = checkFileAttributes(check, check.object(itemValue, itemAt), itemAt, fromVersion)
        if (file.path && !file.size) throw check.fail(child(itemAt, 'size'), 'missing; an item with a path needs a size')
        if (file.path && !file.sha256) {
          throw check.fail(child(itemAt, 'sha256'), 'missing; an item with a path needs a sha256 (MAAS items always carry one)')
        }
      }
    }
  }
  return doc as ProductsDocument
}
