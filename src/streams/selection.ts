/**
 * What a mirror selects from an upstream products document: the union of its
 * filter groups, each working like one `sstream-mirror --max N FILTERS...` run
 * into the same directory. The result is the filtered document the proxy
 * publishes and the list of files it may serve, each with every item that
 * names it (ga and hwe products share one squashfs).
 */

import type { SelectionConfig } from '../config/types.js'
import { StreamFormatError } from './documents.js'
import { matchesAll } from './filter.js'
import { productItems, type FlatItem } from './flatten.js'
import type { ProductsDocument, StreamProduct, StreamVersion } from './types.js'

/** One item that names a file. */
export interface FileRef {
  contentId: string
  product: string
  version: string
  item: string
  ftype?: string
}

export interface SelectedFile {
  path: string
  size: number
  sha256: string
  refs: FileRef[]
}

export interface SelectionResult {
  /** The upstream document holding only the selected items; emptied versions and products are left out. */
  document: ProductsDocument
  /** One entry per distinct item path, sorted by path. */
  files: SelectedFile[]
}

/** Selected item names by version name, within one product. */
type Chosen = Map<string, Set<string>>

// The reference orders version names as plain strings, newest last, and counts
// only versions that still hold a matching item.
function newestVersions(names: string[], max: number | undefined): string[] {
  if (max === undefined) return names
  return [...names].sort().slice(Math.max(0, names.length - max))
}

/** The items of one product that the union of the groups selects; undefined (everything) without groups. */
function chooseItems(items: readonly FlatItem[], selections: readonly SelectionConfig[]): Chosen | undefined {
  if (selections.length === 0) return undefined
  const chosen: Chosen = new Map()
  for (const group of selections) {
    const matched = new Map<string, string[]>()
    for (const item of items) {
      if (!matchesAll(group.filters, item)) continue
      const names = matched.get(item.versionName)
      if (names === undefined) matched.set(item.versionName, [item.itemName])
      else names.push(item.itemName)
    }
    for (const version of newestVersions([...matched.keys()], group.max)) {
      let names = chosen.get(version)
      if (names === undefined) chosen.set(version, (names = new Set()))
      for (const name of matched.get(version) as string[]) names.add(name)
    }
  }
  return chosen
}

/**
 * The product holding only the chosen items, emptied versions left out, or
 * undefined if nothing is left. Every attribute of every level is kept;
 * a version or product that keeps everything is the upstream object itself,
 * as documents are never modified once parsed, which spares copying them all.
 */
function filterProduct(product: StreamProduct, chosen: Chosen | undefined): StreamProduct | undefined {
  // Entries and spreads rather than assignment, so no upstream key (`__proto__`
  // included) is treated specially.
  const versions: Array<[string, StreamVersion]> = []
  let whole = true
  for (const [versionName, version] of Object.entries(product.versions)) {
    const names = chosen?.get(versionName)
    const entries = Object.entries(version.items)
    const items = chosen === undefined ? entries : entries.filter(([itemName]) => names?.has(itemName) === true)
    if (items.length === 0) {
      whole = false
      continue
    }
    if (items.length === entries.length) {
      versions.push([versionName, version])
    } else {
      whole = false
      versions.push([versionName, { ...version, items: Object.fromEntries(items) }])
    }
  }
  if (versions.length === 0) return undefined
  return whole ? product : { ...product, versions: Object.fromEntries(versions) }
}

function refName(ref: FileRef): string {
  return `products[${JSON.stringify(ref.product)}].versions[${JSON.stringify(ref.version)}].items[${JSON.stringify(ref.item)}]`
}

/** Adds the file `item` names to `byPath` (or its ref to the file already there); throws if one path names two different files. */
export function addFile(byPath: Map<string, SelectedFile>, item: FlatItem): void {
  const path = item.get('path')
  if (typeof path !== 'string') return
  // parseProducts guarantees an item with a path a valid size and sha256.
  const size = item.get('size') as number
  const sha256 = item.get('sha256') as string
  const ref: FileRef = { contentId: item.doc.content_id, product: item.productName, version: item.versionName, item: item.itemName }
  const ftype = item.get('ftype')
  if (typeof ftype === 'string') ref.ftype = ftype
  const file = byPath.get(path)
  if (file === undefined) {
    byPath.set(path, { path, size, sha256, refs: [ref] })
  } else if (file.size !== size || file.sha256 !== sha256) {
    throw new StreamFormatError(
      `${ref.contentId}: path ${JSON.stringify(path)} names different files in ${refName(file.refs[0] as FileRef)} and ${refName(ref)} (size or sha256 differ)`,
    )
  } else {
    file.refs.push(ref)
  }
}

/**
 * Applies a mirror's selections to an upstream document; no selections select
 * everything. Works one product at a time, as `max` counts versions per product.
 */
export function applySelections(doc: ProductsDocument, selections: readonly SelectionConfig[]): SelectionResult {
  const products: Array<[string, StreamProduct]> = []
  const byPath = new Map<string, SelectedFile>()
  for (const [productName, product] of Object.entries(doc.products)) {
    const items = productItems(doc, productName, product)
    const chosen = chooseItems(items, selections)
    const kept = filterProduct(product, chosen)
    if (kept === undefined) continue
    products.push([productName, kept])
    for (const item of items) {
      if (chosen === undefined || chosen.get(item.versionName)?.has(item.itemName) === true) addFile(byPath, item)
    }
  }
  return {
    document: { ...doc, products: Object.fromEntries(products) },
    files: [...byPath.values()].sort((a, b) => (a.path < b.path ? -1 : 1)),
  }
}

/** The selected versions in document order, each with the paths of its files (sorted), for status and plans. */
export function selectedVersions(result: SelectionResult): Array<{ product: string; version: string; files: string[] }> {
  const paths = new Map<string, string[]>()
  const key = (product: string, version: string) => JSON.stringify([product, version])
  for (const file of result.files) {
    for (const ref of file.refs) {
      const versionKey = key(ref.product, ref.version)
      const list = paths.get(versionKey) ?? []
      // Two items of one version may share a path; list it once.
      if (list.at(-1) !== file.path) list.push(file.path)
      paths.set(versionKey, list)
    }
  }
  return Object.entries(result.document.products).flatMap(([product, { versions }]) =>
    Object.keys(versions).map((version) => ({ product, version, files: paths.get(key(product, version)) ?? [] })),
  )
}
