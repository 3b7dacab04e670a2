/**
 * What MAAS 3.8 would reject in the metadata a mirror publishes: its strict
 * models (`maasservicelayer/simplestreams/models.py`, facts page §6) read as
 * rules over the index and products documents. One products file MAAS
 * rejects fails its whole fetch, every image of the boot source with it, so
 * each problem names where it is and what MAAS requires. A pure function over
 * parsed documents: no I/O, so it runs wherever the publication is built.
 */

import type { IndexDocument, ProductsDocument, StreamProduct, StreamVersion } from './types.js'

export interface MaasProblem {
  contentId?: string
  product?: string
  version?: string
  item?: string
  /** What MAAS requires, for an operator. */
  message: string
}

export interface MaasDocuments {
  /** The index as MAAS reads it (the signed one). */
  index: IndexDocument
  /** The products documents the index lists, by content id. */
  products: ReadonlyMap<string, ProductsDocument>
}

/** One line for logs and warnings: where, then what. */
export function describeMaasProblem(problem: MaasProblem): string {
  const where = [
    problem.contentId,
    problem.product === undefined ? undefined : `product ${problem.product}`,
    problem.version === undefined ? undefined : `version ${problem.version}`,
    problem.item === undefined ? undefined : `item ${problem.item}`,
  ].filter((part) => part !== undefined)
  return where.length === 0 ? problem.message : `${where.join(' ')}: ${problem.message}`
}

const DATATYPES = ['image-ids', 'image-downloads']
const BOOTLOADER_ITEMS = ['grub2-signed', 'shim-signed', 'grub2', 'syslinux']
const FILE_FIELDS = ['ftype', 'path', 'sha256'] as const
const BOOTLOADER_FIELDS = ['src_package', 'src_release', 'src_version'] as const
const PRODUCT_FIELDS = ['arch', 'label', 'os'] as const
const IMAGE_PRODUCT_FIELDS = ['release', 'release_title', 'subarch', 'subarches', 'version'] as const
const MULTI_FILE_PRODUCT_FIELDS = ['kflavor', 'krel', 'release_codename'] as const

/** The three product-list models MAAS tries in turn; a document must match one of them entirely. */
export type MaasModel = 'bootloader' | 'multi-file' | 'single-file'

/** Every problem MAAS 3.8 would reject the published documents for; empty when it accepts them all. */
export function checkMaasCompatibility(documents: MaasDocuments): MaasProblem[] {
  const problems = checkIndex(documents.index)
  for (const [contentId, products] of documents.products) problems.push(...checkProducts(contentId, products))
  return problems
}

function checkIndex(index: IndexDocument): MaasProblem[] {
  const problems: MaasProblem[] = []
  if (!isTimestamp(index.updated)) problems.push({ message: `index: "updated" must be a date such as "Wed, 25 Jun 2025 11:01:49 +0000", got ${shown(index.updated)}` })
  const entries = Object.entries(index.index ?? {})
  if (entries.length === 0) {
    problems.push({ message: 'index: no entries; MAAS rejects an index with none ("Got invalid data for the index file")' })
  }
  for (const [contentId, entry] of entries) {
    if (typeof entry.path !== 'string') problems.push({ contentId, message: 'index entry: "path" must be a string' })
    if (!isTimestamp(entry.updated)) problems.push({ contentId, message: `index entry: "updated" must be a date, got ${shown(entry.updated)}` })
    if (!Array.isArray(entry.products) || !entry.products.every((name) => typeof name === 'string')) {
      problems.push({ contentId, message: 'index entry: "products" must be a list of product names' })
    }
    if (entry.datatype !== undefined && !DATATYPES.includes(entry.datatype)) {
      problems.push({ contentId, message: `index entry: "datatype" must be "image-ids" or "image-downloads", got ${shown(entry.datatype)}` })
    }
  }
  return problems
}

/** The problems of one products document, against the model it is meant for (or none if any model accepts it). */
export function checkProducts(contentId: string, document: ProductsDocument): MaasProblem[] {
  const problems: MaasProblem[] = []
  if (!DATATYPES.includes(document.datatype as string)) {
    problems.push({ contentId, message: `"datatype" must be "image-ids" or "image-downloads", got ${shown(document.datatype)}` })
  }
  if (!isTimestamp(document.updated)) problems.push({ contentId, message: `"updated" must be a date, got ${shown(document.updated)}` })
  if (typeof document.content_id !== 'string') problems.push({ contentId, message: '"content_id" must be a string' })
  const products = Object.entries(document.products ?? {})
  if (products.length === 0) {
    problems.push({ contentId, message: 'no products; MAAS rejects an empty products file (leave the content out of the index instead)' })
    return problems
  }
  // MAAS accepts the document if any model matches all of it; otherwise the
  // problems worth showing are those against the model it looks meant for.
  // That model is tried first: a valid document (the usual case) is then
  // checked once rather than against all three models.
  const intended = intendedModel(document)
  const intendedProblems = productProblems(contentId, products, intended)
  if (intendedProblems.length === 0) return problems
  const others = (['bootloader', 'multi-file', 'single-file'] as const).filter((model) => model !== intended)
  if (others.some((model) => productProblems(contentId, products, model).length === 0)) return problems
  problems.push(...intendedProblems)
  return problems
}

/** Bootloaders by their product attribute, single-file images by their root tarball, anything else multi-file. */
export function intendedModel(document: ProductsDocument): MaasModel {
  const products = Object.values(document.products ?? {})
  if (products.some((product) => 'bootloader-type' in product)) return 'bootloader'
  const hasRootTgz = products.some((product) => Object.values(product.versions ?? {}).some((version) => 'root-tgz' in (version.items ?? {})))
  return hasRootTgz ? 'single-file' : 'multi-file'
}

function productProblems(contentId: string, products: Array<[string, StreamProduct]>, model: MaasModel): MaasProblem[] {
  const problems: MaasProblem[] = []
  for (const [product, entry] of products) {
    const at = { contentId, product }
    const required: readonly string[] = [
      ...PRODUCT_FIELDS,
      ...(model === 'bootloader' ? ['arches', 'bootloader-type'] : IMAGE_PRODUCT_FIELDS),
      ...(model === 'multi-file' ? MULTI_FILE_PRODUCT_FIELDS : []),
    ]
    const missing = required.filter((key) => typeof entry[key] !== 'string')
    if (missing.length > 0) problems.push({ ...at, message: `${model} product needs ${missing.join(', ')} on the product itself (MAAS does not inherit attributes)` })
    if (model !== 'bootloader' && !(Object.hasOwn(entry, 'support_eol') && (entry.support_eol === null || isDate(entry.support_eol)))) {
      problems.push({ ...at, message: 'image product needs support_eol (a YYYY-MM-DD date, or null)' })
    }
    const versions = Object.entries(entry.versions ?? {})
    if (versions.length === 0) problems.push({ ...at, message: 'no versions; MAAS rejects a product without any' })
    for (const [version, content] of versions) problems.push(...versionProblems({ ...at, version }, content, model))
  }
  return problems
}

function versionProblems(at: { contentId: string; product: string; version: string }, version: StreamVersion, model: MaasModel): MaasProblem[] {
  const items = version.items ?? {}
  const problems: MaasProblem[] = []
  const file = (name: string, extra: readonly string[] = []) => {
    const item = items[name]
    if (item === undefined) return
    const missing = [...FILE_FIELDS, ...extra].filter((key) => typeof item[key] !== 'string')
    if (!Number.isInteger(item.size)) missing.push('size')
    if (missing.length > 0) problems.push({ ...at, item: name, message: `item needs ${missing.join(', ')}` })
  }
  const needAll = (names: readonly string[]) => {
    const missing = names.filter((name) => items[name] === undefined)
    if (missing.length > 0) problems.push({ ...at, message: `${model} version needs items ${names.join(', ')}; missing ${missing.join(', ')}` })
  }
  switch (model) {
    case 'bootloader':
      if (!BOOTLOADER_ITEMS.some((name) => items[name] !== undefined)) {
        problems.push({ ...at, message: `bootloader version needs an item keyed grub2-signed, shim-signed, grub2 or syslinux; has ${Object.keys(items).join(', ') || 'none'}` })
      }
      for (const name of BOOTLOADER_ITEMS) file(name, BOOTLOADER_FIELDS)
      break
    case 'multi-file':
      needAll(['boot-initrd', 'boot-kernel', 'manifest'])
      if (items.squashfs === undefined && items['root-image.gz'] === undefined) problems.push({ ...at, message: 'multi-file version needs a squashfs or root-image.gz item' })
      for (const name of ['boot-initrd', 'boot-kernel', 'manifest', 'squashfs', 'root-image.gz']) file(name)
      for (const key of ['support_eol', 'support_esm_eol']) {
        if (version[key] !== undefined && version[key] !== null && !isDate(version[key])) problems.push({ ...at, message: `version ${key} must be a YYYY-MM-DD date, got ${shown(version[key])}` })
      }
      break
    case 'single-file':
      needAll(['manifest', 'root-tgz'])
      for (const name of ['manifest', 'root-tgz']) file(name)
      break
  }
  return problems
}

// MAAS parses `updated` with strptime("%a, %d %b %Y %H:%M:%S %z"), else as ISO 8601.
const RFC_2822 = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{1,2}:\d{1,2}:\d{1,2} (Z|[+-]\d{2}:?\d{2})$/
const ISO_8601 = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/

function isTimestamp(value: unknown): boolean {
  return typeof value === 'string' && (RFC_2822.test(value) || (ISO_8601.test(value) && !Number.isNaN(Date.parse(value.replace(' ', 'T')))))
}

function isDate(value: unknown): boolean {
  if (typeof value !== 'string') return false
  const match = /^(\d{4})-(\d{1,2})-(\d{1,2})$/.exec(value)
  if (match === null) return false
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])]
  const date = new Date(Date.UTC(year, month - 1, day))
  return date.getUTCFullYear() === year && date.getUTCMonth() === month - 1 && date.getUTCDate() === day
}

function shown(value: unknown): string {
  return value === undefined ? 'nothing' : JSON.stringify(value)
}
