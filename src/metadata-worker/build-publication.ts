/**
 * Builds what a mirror publishes for one state of upstream, in the metadata
 * worker: the metadata documents it serves (filtered and re-signed, or
 * upstream's own bytes) and the files its selection names, encoded as the
 * compact `PublicationTables` the main thread receives. Built once per
 * upstream change, never per request, and, with `publish: "cached"`, again
 * when a version's last file is stored.
 */

import { createHash } from 'node:crypto'
import type * as openpgp from 'openpgp'
import type { MirrorConfig } from '../config/types.js'
import { completeForMaas } from '../streams/maas-completion.js'
import { checkMaasCompatibility, type MaasDocuments } from '../streams/maas-compatibility.js'
import { applySelections, selectedVersions, type FileRef, type SelectedFile, type SelectionResult } from '../streams/selection.js'
import { clearsign } from '../streams/signature.js'
import { checkSizesAgree, describeItem, InconsistentMetadataError } from '../streams/size-consistency.js'
import type { IndexDocument, IndexEntry, ProductsDocument, StreamProduct, StreamVersion } from '../streams/types.js'
import { INDEX_PATH } from '../mirror/upstream-metadata.js'
import type { PendingVersion, PublicationTables, SelectionSummary } from '../mirror/publication.js'

export interface PublishInput {
  index: ParsedDocument<IndexDocument>
  /** Products documents by content id. */
  products: Map<string, ParsedDocument<ProductsDocument>>
  mirror: Pick<MirrorConfig, 'metadata' | 'selections' | 'publish'>
  signingKey: openpgp.PrivateKey
  /** Whether a file is stored, for `publish: "cached"`. */
  isStored: (sha256: string) => boolean
}

/** One verified upstream document: its path, the clearsigned bytes, the text inside and what it parses to. */
export interface ParsedDocument<T> {
  path: string
  signed: string
  text: string
  parsed: T
}

/** The path of a products document as the index lists it: `.sjson` in the signed index, `.json` in the plain one. */
const withExtension = (path: string, extension: 'json' | 'sjson') => path.replace(/\.s?json$/, `.${extension}`)

/** The publication and the buffers to transfer with it. */
export async function buildPublication(options: PublishInput): Promise<{ tables: PublicationTables; transfer: ArrayBuffer[] }> {
  const { mirror } = options
  const selections = new Map<string, SelectionResult>()
  const published = new Map<string, SelectionResult>()
  const pending: PendingVersion[] = []
  // Upstream metadata is served byte for byte, so it cannot hide a version: cached then only keeps files.
  const cached = mirror.publish === 'cached' && mirror.metadata === 'filtered'
  for (const [contentId, products] of options.products) {
    const selection = applySelections(products.parsed, mirror.selections)
    selections.set(contentId, selection)
    if (mirror.metadata === 'upstream') {
      published.set(contentId, selection)
      continue
    }
    if (!cached) {
      published.set(contentId, completeForMaas(products.parsed, selection))
      continue
    }
    // The same groups without `max`: every version the filters match, older ones included.
    const unbounded = applySelections(products.parsed, mirror.selections.map(({ filters }) => ({ filters })))
    const complete = completeVersions(contentId, selection, unbounded, options.isStored)
    published.set(contentId, completeForMaas(products.parsed, complete.result))
    pending.push(...complete.pending)
  }
  const selected = mergeFiles([...selections.values()])
  // What is published beyond the selection: older complete versions with
  // `publish: "cached"`, and the items added for MAAS.
  const beyond = [...published].filter(([contentId, result]) => result !== selections.get(contentId)).map(([, result]) => result)
  const files = beyond.length === 0 ? selected : mergeFiles([...selections.values(), ...beyond])
  const advertised = beyond.length === 0 ? selected : mergeFiles([...published.values()])
  // Before the expensive signing: an item that could only be served as bytes failing its sha256 refuses the metadata.
  checkSizesAgree(files.values())
  const { documents, maasView } = mirror.metadata === 'upstream' ? upstreamDocuments(options) : await filteredDocuments(options, published, options.signingKey)
  const table = fileTables(files, selected, advertised)
  const upstreamFiles = utf8Json(listUpstreamFiles(options))
  const tables: PublicationTables = {
    documents,
    files: table.files,
    versions: versionTables(selections, table.indexOf),
    pending,
    upstreamFiles,
    summary: summarise(selections, selected),
    selectionDigest: digestFiles(selected),
    maasProblems: checkMaasCompatibility(maasView),
    upstreamUpdated: typeof options.index.parsed.updated === 'string' ? options.index.parsed.updated : undefined,
  }
  const { sizes, selected: selectedFlags, published: publishedFlags, refs } = table.files
  const transfer = [...documents.map((document) => document.body), upstreamFiles, refs, sizes.buffer, selectedFlags.buffer, publishedFlags.buffer, tables.versions.starts.buffer, tables.versions.files.buffer] as ArrayBuffer[]
  return { tables, transfer }
}

const utf8Json = (value: unknown) => new TextEncoder().encode(JSON.stringify(value)).buffer as ArrayBuffer

/** The file table, sorted by path, and each path's row. */
function fileTables(files: Map<string, SelectedFile>, selected: Map<string, SelectedFile>, published: Map<string, SelectedFile>): { files: PublicationTables['files']; indexOf: Map<string, number> } {
  const sorted = [...files.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
  const indexOf = new Map(sorted.map((file, index) => [file.path, index]))
  return {
    files: {
      paths: sorted.map((file) => file.path),
      sha256s: sorted.map((file) => file.sha256).join(''),
      sizes: Float64Array.from(sorted, (file) => file.size),
      selected: Uint8Array.from(sorted, (file) => (selected.has(file.path) ? 1 : 0)),
      published: Uint8Array.from(sorted, (file) => (published.has(file.path) ? 1 : 0)),
      refs: utf8Json(sorted.map((file) => file.refs.map((ref) => [ref.contentId, ref.product, ref.version, ref.item]))),
    },
    indexOf,
  }
}

/** The selected versions in document order, each with its files (one per path, sorted), for status and plans. */
function versionTables(selections: Map<string, SelectionResult>, indexOf: Map<string, number>): PublicationTables['versions'] {
  const names: string[] = []
  const starts = [0]
  const files: number[] = []
  for (const selection of selections.values()) {
    for (const { product, version, files: paths } of selectedVersions(selection)) {
      const entry = selection.document.products[product] as StreamProduct
      const label = ['os', 'release', 'arch', 'subarch', 'bootloader-type']
        .map((attribute) => entry[attribute])
        .filter((value): value is string => typeof value === 'string')
        .join(' ')
      names.push(product, label || product, version)
      for (const path of paths) files.push(indexOf.get(path) as number)
      starts.push(files.length)
    }
  }
  return { names, starts: Uint32Array.from(starts), files: Uint32Array.from(files) }
}

/** Every item upstream lists, as flat [sha256, product, version] triples. */
function listUpstreamFiles(options: PublishInput): string[] {
  const triples: string[] = []
  for (const products of options.products.values()) {
    for (const file of applySelections(products.parsed, []).files) {
      for (const ref of file.refs) triples.push(file.sha256, ref.product, ref.version)
    }
  }
  return triples
}

/** One entry per path across several selections, with every ref (a path named in two documents keeps both). */
function mergeFiles(results: SelectionResult[]): Map<string, SelectedFile> {
  const files = new Map<string, SelectedFile>()
  for (const result of results) {
    for (const file of result.files) {
      const known = files.get(file.path)
      if (known === undefined) {
        files.set(file.path, { ...file, refs: [...file.refs] })
        continue
      }
      // Within one document selection refuses this; across documents it is caught here.
      if (known.sha256 !== file.sha256 || known.size !== file.size) {
        throw new InconsistentMetadataError(`inconsistent signed metadata: path ${JSON.stringify(file.path)} names different files in ${describeItem(known)} (sha256 ${known.sha256}) and ${describeItem(file)} (sha256 ${file.sha256})`)
      }
      // A file has a handful of refs; comparing them beats building a key per ref.
      for (const ref of file.refs) {
        if (!known.refs.some((other) => sameItem(other, ref))) known.refs.push(ref)
      }
    }
  }
  return files
}

function sameItem(a: FileRef, b: FileRef): boolean {
  return a.item === b.item && a.version === b.version && a.product === b.product && a.contentId === b.contentId
}

/**
 * `publish: "cached"` for one products document: per product, the newest N
 * versions whose files are all stored, N being how many versions the
 * selection keeps, among the versions the filters match up to the newest
 * selected one. So an older complete version stays published until the one
 * that replaces it is complete, and a newer one appears once it is. A product
 * with no complete version yet publishes its newest selected one, filled on
 * demand: MAAS rejects an index or products file with nothing in it, which
 * would keep it from ever asking for the files that complete it.
 */
function completeVersions(
  contentId: string,
  selection: SelectionResult,
  unbounded: SelectionResult,
  isStored: (sha256: string) => boolean,
): { result: SelectionResult; pending: PendingVersion[] } {
  const versionFiles = new Map<string, string[]>()
  const versionKey = (product: string, version: string) => JSON.stringify([product, version])
  for (const file of unbounded.files) {
    for (const ref of file.refs) {
      const key = versionKey(ref.product, ref.version)
      versionFiles.set(key, [...(versionFiles.get(key) ?? []), file.sha256])
    }
  }
  const isComplete = (product: string, version: string) => (versionFiles.get(versionKey(product, version)) ?? []).every(isStored)
  const kept = new Set<string>()
  const pending: PendingVersion[] = []
  const products: ProductsDocument['products'] = {}
  for (const [product, entry] of Object.entries(unbounded.document.products)) {
    const selectedNames = Object.keys(selection.document.products[product]?.versions ?? {}).sort()
    const newestSelected = selectedNames.at(-1)
    if (newestSelected === undefined) continue
    for (const version of selectedNames) {
      if (!isComplete(product, version)) pending.push({ contentId, product, version, sha256s: [...new Set(versionFiles.get(versionKey(product, version)))] })
    }
    const complete = Object.keys(entry.versions)
      .filter((version) => version <= newestSelected && isComplete(product, version))
      .sort()
      .slice(-selectedNames.length)
    const names = complete.length > 0 ? complete : [newestSelected]
    for (const version of names) kept.add(versionKey(product, version))
    products[product] = { ...entry, versions: Object.fromEntries(names.map((version) => [version, entry.versions[version] as StreamVersion])) }
  }
  const files = unbounded.files
    .map((file) => ({ ...file, refs: file.refs.filter((ref) => kept.has(versionKey(ref.product, ref.version))) }))
    .filter((file) => file.refs.length > 0)
  return { result: { document: { ...unbounded.document, products }, files }, pending }
}

type Document = PublicationTables['documents'][number]

/** The served documents, and the index and products documents as MAAS reads them, for the compatibility check. */
interface ServedSet {
  documents: Document[]
  maasView: MaasDocuments
}

function upstreamDocuments(metadata: PublishInput): ServedSet {
  const documents: Document[] = []
  for (const document of [metadata.index, ...metadata.products.values()]) {
    documents.push(served(withExtension(document.path, 'sjson'), document.signed, 'sjson'))
    // Upstream's `.json` twin is not fetched (it is unsigned): a products
    // document's signed text is the same document.
    if (document !== metadata.index) documents.push(served(withExtension(document.path, 'json'), document.text, 'json'))
  }
  // The plain index lists the plain products documents, as upstream's own does;
  // the signed one's entries name `.sjson` files a `.json` reader cannot parse.
  const plainEntries: IndexDocument['index'] = {}
  for (const [contentId, entry] of Object.entries(metadata.index.parsed.index)) plainEntries[contentId] = { ...entry, path: withExtension(entry.path, 'json') }
  documents.push(served(withExtension(INDEX_PATH, 'json'), toJsonText({ ...metadata.index.parsed, index: plainEntries }), 'json'))
  const products = new Map([...metadata.products].map(([contentId, document]) => [contentId, document.parsed]))
  return { documents, maasView: { index: metadata.index.parsed, products } }
}

async function filteredDocuments(metadata: PublishInput, selections: Map<string, SelectionResult>, key: openpgp.PrivateKey): Promise<ServedSet> {
  const documents: Document[] = []
  const products = new Map<string, ProductsDocument>()
  const signedEntries: Record<string, IndexEntry> = {}
  const plainEntries: Record<string, IndexEntry> = {}
  for (const [contentId, selection] of selections) {
    const productNames = Object.keys(selection.document.products)
    // MAAS fetches every products file the index lists; one with nothing selected is left out.
    if (productNames.length === 0) continue
    const entry = metadata.index.parsed.index[contentId] as IndexEntry
    const path = (metadata.products.get(contentId) as { path: string }).path
    signedEntries[contentId] = { ...entry, path: withExtension(path, 'sjson'), products: productNames }
    plainEntries[contentId] = { ...entry, path: withExtension(path, 'json'), products: productNames }
    products.set(contentId, selection.document)
    const text = toJsonText(selection.document)
    documents.push(served(withExtension(path, 'json'), text, 'json'))
    documents.push(served(withExtension(path, 'sjson'), await clearsign(text, key), 'sjson'))
  }
  const index = (entries: Record<string, IndexEntry>): IndexDocument => ({ ...metadata.index.parsed, index: entries })
  documents.push(served(withExtension(INDEX_PATH, 'json'), toJsonText(index(plainEntries)), 'json'))
  documents.push(served(INDEX_PATH, await clearsign(toJsonText(index(signedEntries)), key), 'sjson'))
  return { documents, maasView: { index: index(signedEntries), products } }
}

/**
 * One-space indent and a final newline, as python-simplestreams writes it. Keys
 * keep upstream's order (which the reference already sorted): re-sorting a
 * large document would cost a full copy per publication.
 */
function toJsonText(document: unknown): string {
  return `${JSON.stringify(document, null, 1)}\n`
}

function served(path: string, text: string, extension: 'json' | 'sjson'): Document {
  const body = new TextEncoder().encode(text)
  const contentType = extension === 'json' ? 'application/json' : 'text/plain; charset=utf-8'
  const etag = `"${createHash('sha256').update(body).digest('hex').slice(0, 32)}"`
  return { path, contentType, etag, body: body.buffer as ArrayBuffer }
}

function digestFiles(files: Map<string, SelectedFile>): string {
  const hash = createHash('sha256')
  for (const path of [...files.keys()].sort()) {
    const file = files.get(path) as SelectedFile
    hash.update(`${JSON.stringify([path, file.sha256, file.size])}\n`)
  }
  return hash.digest('hex')
}

function summarise(selections: Map<string, SelectionResult>, files: Map<string, SelectedFile>): SelectionSummary {
  let products = 0
  let versions = 0
  for (const { document } of selections.values()) {
    for (const product of Object.values(document.products)) {
      products++
      versions += Object.keys(product.versions).length
    }
  }
  let bytes = 0
  for (const file of files.values()) bytes += file.size
  return { products, versions, files: files.size, bytes }
}
