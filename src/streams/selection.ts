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
import { flattenItems } from './flatten.js'
import type { FlatItem, ProductsDocument, StreamItem, StreamProduct, StreamVersion } from './types.js'

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

/** Selected item names by product, then version. */
type Chosen = Map<string, Map<string, Set<string>>>

type IsChosen = (product: string, version: string, item: string) => boolean

function choose(chosen: Chosen, product: string, version: string, item: string): void {
  let versions = chosen.get(product)
  if (versions === undefined) chosen.set(product, (versions = new Map()))
  let items = versions.get(version)
  if (items === undefined) versions.set(version, (items = new Set()))
  items.add(item)
}

// The reference orders version names as plain strings, newest last, and counts
// only versions that still hold a matching item.
function newestVersions(names: string[], max: number | undefined): Set<string> {
  if (max === undefined) return new Set(names)
  return new Set([...names].sort().slice(Math.max(0, names.length - max)))
}

function chooseGroup(items: readonly FlatItem[], group: SelectionConfig, chosen: Chosen): void {
  const matched: Chosen = new Map()
  for (const item of items) {
    if (matchesAll(group.filters, item)) choose(matched, item.product_name, item.version_name, item.item_name)
  }
  for (const [product, versions] of matched) {
    const kept = newestVersions([...versions.keys()], group.max)
    for (const [version, names] of versions) {
      if (kept.has(version)) for (const name of names) choose(chosen, product, version, name)
    }
  }
}

function filterDocument(doc: ProductsDocument, isChosen: IsChosen): ProductsDocument {
  // Entries and spreads rather than assignment, so no upstream key (`__proto__`
  // included) is treated specially; every attribute of every level is kept.
  const products: Array<[string, StreamProduct]> = []
  for (const [productName, product] of Object.entries(doc.products)) {
    const versions: Array<[string, StreamVersion]> = []
    for (const [versionName, version] of Object.entries(product.versions)) {
      const items: Array<[string, StreamItem]> = Object.entries(version.items)
        .filter(([itemName]) => isChosen(productName, versionName, itemName))
        .map(([itemName, item]) => [itemName, { ...item }])
      if (items.length > 0) versions.push([versionName, { ...version, items: Object.fromEntries(items) }])
    }
    if (versions.length > 0) products.push([productName, { ...product, versions: Object.fromEntries(versions) }])
  }
  return { ...doc, products: Object.fromEntries(products) }
}

function refName(ref: FileRef): string {
  return `products[${JSON.stringify(ref.product)}].versions[${JSON.stringify(ref.version)}].items[${JSON.stringify(ref.item)}]`
}

function collectFiles(contentId: string, items: readonly FlatItem[]): SelectedFile[] {
  const byPath = new Map<string, SelectedFile>()
  for (const item of items) {
    if (typeof item.path !== 'string') continue
    // parseProducts guarantees an item with a path a valid size and sha256.
    const size = item.size as number
    const sha256 = item.sha256 as string
    const ref: FileRef = { contentId, product: item.product_name, version: item.version_name, item: item.item_name }
    if (typeof item.ftype === 'string') ref.ftype = item.ftype
    const file = byPath.get(item.path)
    if (file === undefined) {
      byPath.set(item.path, { path: item.path, size, sha256, refs: [ref] })
    } else if (file.size !== size || file.sha256 !== sha256) {
      throw new StreamFormatError(
        `${contentId}: path ${JSON.stringify(item.path)} names different files in ${refName(file.refs[0] as FileRef)} and ${refName(ref)} (size or sha256 differ)`,
      )
    } else {
      file.refs.push(ref)
    }
  }
  return [...byPath.values()].sort((a, b) => (a.path < b.path ? -1 : 1))
}

/** Applies a mirror's selections to an upstream document; no selections select everything. */
export function applySelections(doc: ProductsDocument, selections: readonly SelectionConfig[]): SelectionResult {
  const items = flattenItems(doc)
  let isChosen: IsChosen = () => true
  if (selections.length > 0) {
    const chosen: Chosen = new Map()
    for (const group of selections) chooseGroup(items, group, chosen)
    isChosen = (product, version, item) => chosen.get(product)?.get(version)?.has(item) ?? false
  }
  return {
    document: filterDocument(doc, isChosen),
    files: collectFiles(
      doc.content_id,
      items.filter((item) => isChosen(item.product_name, item.version_name, item.item_name)),
    ),
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
