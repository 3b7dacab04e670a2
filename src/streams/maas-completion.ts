/**
 * Keeps what a filtered mirror publishes acceptable to MAAS 3.8 without
 * fetching anything more. MAAS rejects a whole products file for one version
 * missing an item its models require (facts page §6), though it never
 * downloads some of them (`manifest`), and it reads product attributes only
 * from the product itself. So each published version keeps the items MAAS
 * requires from its upstream version even where the selection left them out
 * (`ftype!=manifest`, a kernel-only selection, an hwe product whose squashfs
 * the ga product shares), and each product gets the attributes MAAS reads that
 * upstream put at the top of the document. The added items are served on
 * demand, never prefetched: they are not part of the selection.
 */

import { productItems, type FlatItem } from './flatten.js'
import { addFile, type SelectedFile, type SelectionResult } from './selection.js'
import type { ProductsDocument, StreamItem, StreamProduct, StreamVersion } from './types.js'

/** Product attributes MAAS's models read from the product itself. */
const PRODUCT_ATTRIBUTES = [
  'arch', 'label', 'os', 'arches', 'bootloader-type', 'release', 'release_title', 'subarch', 'subarches',
  'support_eol', 'version', 'kflavor', 'krel', 'release_codename',
]

/** The items MAAS requires of a version of `product`, given what upstream's version holds and what is kept. */
function requiredItems(product: StreamProduct, upstream: StreamVersion, kept: StreamVersion): string[] {
  // A bootloader version needs any one of its four keys, which a kept version has if upstream's did.
  if (typeof product['bootloader-type'] === 'string') return []
  if (upstream.items['root-tgz'] !== undefined) return ['manifest', 'root-tgz']
  const rootImage = kept.items.squashfs !== undefined || kept.items['root-image.gz'] !== undefined ? [] : upstream.items.squashfs !== undefined ? ['squashfs'] : ['root-image.gz']
  return ['boot-initrd', 'boot-kernel', 'manifest', ...rootImage]
}

/** `result` (a selection of `upstream`) with what MAAS requires added from upstream; the result itself when nothing is missing. */
export function completeForMaas(upstream: ProductsDocument, result: SelectionResult): SelectionResult {
  const added: FlatItem[] = []
  let changed = false
  const products: Array<[string, StreamProduct]> = []
  for (const [name, kept] of Object.entries(result.document.products)) {
    const source = upstream.products[name]
    if (source === undefined) {
      products.push([name, kept])
      continue
    }
    const inherited = inheritedAttributes(upstream, kept)
    const product: StreamProduct = inherited === undefined ? kept : { ...inherited, ...kept }
    const versions: Array<[string, StreamVersion]> = []
    let versionsChanged = false
    for (const [versionName, version] of Object.entries(kept.versions)) {
      const full = source.versions[versionName]
      const missing = full === undefined ? [] : requiredItems(product, full, version).filter((item) => version.items[item] === undefined && full.items[item] !== undefined)
      if (missing.length === 0 || full === undefined) {
        versions.push([versionName, version])
        continue
      }
      versionsChanged = true
      const items: Record<string, StreamItem> = { ...version.items }
      for (const item of missing) items[item] = full.items[item] as StreamItem
      // Upstream's item order, as the document had it before filtering.
      const ordered = Object.fromEntries(Object.keys(full.items).filter((item) => items[item] !== undefined).map((item) => [item, items[item] as StreamItem]))
      versions.push([versionName, { ...version, items: ordered }])
      added.push(...productItems(upstream, name, source).filter((item) => item.versionName === versionName && missing.includes(item.itemName)))
    }
    if (inherited === undefined && !versionsChanged) {
      products.push([name, kept])
      continue
    }
    changed = true
    products.push([name, versionsChanged ? { ...product, versions: Object.fromEntries(versions) } : product])
  }
  if (!changed) return result
  const byPath = new Map<string, SelectedFile>(result.files.map((file) => [file.path, { ...file, refs: [...file.refs] }]))
  for (const item of added) addFile(byPath, item)
  return {
    document: { ...result.document, products: Object.fromEntries(products) },
    files: [...byPath.values()].sort((a, b) => (a.path < b.path ? -1 : 1)),
  }
}

/** The attributes MAAS reads that `product` lacks and the document's top level has, or undefined when none. */
function inheritedAttributes(document: ProductsDocument, product: StreamProduct): Record<string, unknown> | undefined {
  let found: Record<string, unknown> | undefined
  for (const key of PRODUCT_ATTRIBUTES) {
    if (Object.hasOwn(product, key) || !Object.hasOwn(document, key)) continue
    const value = document[key]
    if (typeof value !== 'string') continue
    found ??= {}
    found[key] = value
  }
  return found
}
