/**
 * What a mirror publishes for one state of upstream: the metadata documents
 * it serves (filtered and re-signed, or upstream's own bytes) and the files
 * its selection names. Built once per upstream change, never per request,
 * and, with `publish: "cached"`, again when a version's last file is stored.
 */

import { createHash } from 'node:crypto'
import type * as openpgp from 'openpgp'
import type { MirrorConfig } from '../config/types.js'
import { completeForMaas } from '../streams/maas-completion.js'
import { checkMaasCompatibility, type MaasDocuments, type MaasProblem } from '../streams/maas-compatibility.js'
import { applySelections, type FileRef, type SelectedFile, type SelectionResult } from '../streams/selection.js'
import { clearsign } from '../streams/signature.js'
import { checkSizesAgree, describeItem, InconsistentMetadataError } from '../streams/size-consistency.js'
import type { IndexDocument, IndexEntry, ProductsDocument, StreamVersion } from '../streams/types.js'
import { INDEX_PATH, type UpstreamMetadata } from './upstream-metadata.js'

export interface ServedDocument {
  body: Buffer<ArrayBuffer>
  contentType: string
  /** Quoted strong validator. */
  etag: string
  /** The response headers of a 200, built once rather than per request. */
  headers: Record<string, string>
}

export interface SelectionSummary {
  products: number
  versions: number
  files: number
  bytes: number
}

/** A selected version not yet published because some of its files are not stored. */
export interface PendingVersion {
  contentId: string
  product: string
  version: string
  /** Every file of the version, stored or not. */
  sha256s: string[]
}

export interface Publication {
  /** Metadata documents by path relative to the mirror root. */
  documents: Map<string, ServedDocument>
  /** Files that may be served, by item path: the selection's, plus those of published versions outside it. */
  files: Map<string, SelectedFile>
  /** The selection of each products document, by content id. */
  selections: Map<string, SelectionResult>
  /**
   * What the served documents advertise, by content id: the selection, or with
   * `publish: "cached"` its complete part; with filtered metadata, plus the
   * items MAAS requires of each version (served on demand, not prefetched).
   */
  published: Map<string, SelectionResult>
  /** With `publish: "cached"`: the selected versions waiting for files. */
  pending: PendingVersion[]
  /** Every item upstream lists, by sha256: names a stored file for plans and reports. */
  upstreamFiles: Map<string, FileRef[]>
  summary: SelectionSummary
  /**
   * Digest of the selected files as (path, sha256, size): equal digests select
   * the same bytes, however the documents were signed or fetched.
   */
  selectionDigest: string
  /** Upstream's `updated` of the index this was built from. */
  upstreamUpdated: string | undefined
  /** The upstream metadata this was built from. */
  source: UpstreamMetadata
  /** What MAAS 3.8 would reject in the served documents; empty when it accepts them. */
  maasProblems: MaasProblem[]
}

export interface PublishOptions {
  metadata: UpstreamMetadata
  mirror: Pick<MirrorConfig, 'metadata' | 'selections' | 'publish'>
  signingKey: openpgp.PrivateKey
  /** Whether a file is stored, for `publish: "cached"`. */
  isStored?: (sha256: string) => boolean
}

/** The path of a products document as the index lists it: `.sjson` in the signed index, `.json` in the plain one. */
const withExtension = (path: string, extension: 'json' | 'sjson') => path.replace(/\.s?json$/, `.${extension}`)

export async function buildPublication(options: PublishOptions): Promise<Publication> {
  const { metadata, mirror } = options
  const selections = new Map<string, SelectionResult>()
  const published = new Map<string, SelectionResult>()
  const pending: PendingVersion[] = []
  // Upstream metadata is served byte for byte, so it cannot hide a version: cached then only keeps files.
  const cached = mirror.publish === 'cached' && mirror.metadata === 'filtered'
  for (const [contentId, products] of metadata.products) {
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
    const complete = completeVersions(contentId, selection, unbounded, options.isStored ?? (() => false))
    published.set(contentId, completeForMaas(products.parsed, complete.result))
    pending.push(...complete.pending)
  }
  const selected = mergeFiles([...selections.values()])
  // The selection's files, plus what is published beyond it: older complete
  // versions with `publish: "cached"`, and the items added for MAAS.
  const beyond = [...published].filter(([contentId, result]) => result !== selections.get(contentId)).map(([, result]) => result)
  const files = beyond.length === 0 ? selected : mergeFiles([...selections.values(), ...beyond])
  // Before the expensive signing: an item that could only be served as bytes failing its sha256 refuses the metadata.
  checkSizesAgree(files.values())
  const { documents, maasView } =
    mirror.metadata === 'upstream' ? upstreamDocuments(metadata) : await filteredDocuments(metadata, published, options.signingKey)
  return {
    source: metadata,
    documents,
    files,
    selections,
    published,
    pending,
    get upstreamFiles() {
      // Only plans and reports need it: built on first use, not on every metadata change.
      const value = listUpstreamFiles(metadata)
      Object.defineProperty(this, 'upstreamFiles', { value })
      return value
    },
    summary: summarise(selections, selected),
    selectionDigest: digestFiles(selected),
    maasProblems: checkMaasCompatibility(maasView),
    upstreamUpdated: typeof metadata.index.parsed.updated === 'string' ? metadata.index.parsed.updated : undefined,
  }
}

function listUpstreamFiles(metadata: UpstreamMetadata): Map<string, FileRef[]> {
  const bySha256 = new Map<string, FileRef[]>()
  for (const products of metadata.products.values()) {
    for (const file of applySelections(products.parsed, []).files) {
      const refs = bySha256.get(file.sha256)
      if (refs === undefined) bySha256.set(file.sha256, [...file.refs])
      else refs.push(...file.refs)
    }
  }
  return bySha256
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

/** The served documents by path, and the index and products documents as MAAS reads them, for the compatibility check. */
interface ServedSet {
  documents: Map<string, ServedDocument>
  maasView: MaasDocuments
}

function upstreamDocuments(metadata: UpstreamMetadata): ServedSet {
  const documents = new Map<string, ServedDocument>()
  for (const document of [metadata.index, ...metadata.products.values()]) {
    documents.set(withExtension(document.path, 'sjson'), served(document.signed, 'sjson'))
    // Upstream's `.json` twin is not fetched (it is unsigned): a products
    // document's signed text is the same document.
    if (document !== metadata.index) documents.set(withExtension(document.path, 'json'), served(document.text, 'json'))
  }
  // The plain index lists the plain products documents, as upstream's own does;
  // the signed one's entries name `.sjson` files a `.json` reader cannot parse.
  const plainEntries: IndexDocument['index'] = {}
  for (const [contentId, entry] of Object.entries(metadata.index.parsed.index)) plainEntries[contentId] = { ...entry, path: withExtension(entry.path, 'json') }
  documents.set(withExtension(INDEX_PATH, 'json'), served(toJsonText({ ...metadata.index.parsed, index: plainEntries }), 'json'))
  const products = new Map([...metadata.products].map(([contentId, document]) => [contentId, document.parsed]))
  return { documents, maasView: { index: metadata.index.parsed, products } }
}

async function filteredDocuments(metadata: UpstreamMetadata, selections: Map<string, SelectionResult>, key: openpgp.PrivateKey): Promise<ServedSet> {
  const documents = new Map<string, ServedDocument>()
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
    documents.set(withExtension(path, 'json'), served(text, 'json'))
    documents.set(withExtension(path, 'sjson'), served(await clearsign(text, key), 'sjson'))
  }
  const index = (entries: Record<string, IndexEntry>): IndexDocument => ({ ...metadata.index.parsed, index: entries })
  documents.set(withExtension(INDEX_PATH, 'json'), served(toJsonText(index(plainEntries)), 'json'))
  documents.set(INDEX_PATH, served(await clearsign(toJsonText(index(signedEntries)), key), 'sjson'))
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

function served(text: string, extension: 'json' | 'sjson'): ServedDocument {
  const body = Buffer.from(text)
  const contentType = extension === 'json' ? 'application/json' : 'text/plain; charset=utf-8'
  const etag = `"${createHash('sha256').update(body).digest('hex').slice(0, 32)}"`
  return {
    body,
    contentType,
    etag,
    headers: { 'content-type': contentType, etag, 'cache-control': 'no-cache', 'content-length': String(body.length) },
  }
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
