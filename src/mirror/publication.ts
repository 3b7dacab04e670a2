/**
 * What a mirror publishes for one state of upstream: the metadata documents
 * it serves (filtered and re-signed, or upstream's own bytes) and the files
 * its selection names. Built once per upstream change, never per request.
 */

import { createHash } from 'node:crypto'
import type * as openpgp from 'openpgp'
import type { MirrorConfig } from '../config/types.js'
import { applySelections, type SelectedFile, type SelectionResult } from '../streams/selection.js'
import { clearsign } from '../streams/signature.js'
import type { IndexDocument, IndexEntry } from '../streams/types.js'
import { INDEX_PATH, type UpstreamMetadata } from './upstream-metadata.js'

export interface ServedDocument {
  body: Buffer<ArrayBuffer>
  contentType: string
  /** Quoted strong validator. */
  etag: string
}

export interface SelectionSummary {
  products: number
  versions: number
  files: number
  bytes: number
}

export interface Publication {
  /** Metadata documents by path relative to the mirror root. */
  documents: Map<string, ServedDocument>
  /** Files the selection names, by item path. */
  files: Map<string, SelectedFile>
  /** The selection of each products document, by content id. */
  selections: Map<string, SelectionResult>
  summary: SelectionSummary
  /** Upstream's `updated` of the index this was built from. */
  upstreamUpdated: string | undefined
}

export interface PublishOptions {
  metadata: UpstreamMetadata
  mirror: Pick<MirrorConfig, 'metadata' | 'selections'>
  signingKey: openpgp.PrivateKey
}

/** The path of a products document as the index lists it: `.sjson` in the signed index, `.json` in the plain one. */
const withExtension = (path: string, extension: 'json' | 'sjson') => path.replace(/\.s?json$/, `.${extension}`)

export async function buildPublication(options: PublishOptions): Promise<Publication> {
  const { metadata, mirror } = options
  const selections = new Map<string, SelectionResult>()
  for (const [contentId, products] of metadata.products) {
    selections.set(contentId, applySelections(products.parsed, mirror.selections))
  }
  const files = new Map<string, SelectedFile>()
  for (const selection of selections.values()) {
    for (const file of selection.files) {
      const known = files.get(file.path)
      if (known === undefined) files.set(file.path, { ...file, refs: [...file.refs] })
      else known.refs.push(...file.refs)
    }
  }
  const documents = mirror.metadata === 'upstream' ? upstreamDocuments(metadata) : await filteredDocuments(metadata, selections, options.signingKey)
  return {
    documents,
    files,
    selections,
    summary: summarise(selections, files),
    upstreamUpdated: typeof metadata.index.parsed.updated === 'string' ? metadata.index.parsed.updated : undefined,
  }
}

function upstreamDocuments(metadata: UpstreamMetadata): Map<string, ServedDocument> {
  const documents = new Map<string, ServedDocument>()
  for (const document of [metadata.index, ...metadata.products.values()]) {
    documents.set(withExtension(document.path, 'sjson'), served(document.signed, 'sjson'))
    // Upstream's `.json` twin is not fetched: the signed text is the same document.
    documents.set(withExtension(document.path, 'json'), served(document.text, 'json'))
  }
  return documents
}

async function filteredDocuments(metadata: UpstreamMetadata, selections: Map<string, SelectionResult>, key: openpgp.PrivateKey): Promise<Map<string, ServedDocument>> {
  const documents = new Map<string, ServedDocument>()
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
    const text = toJsonText(selection.document)
    documents.set(withExtension(path, 'json'), served(text, 'json'))
    documents.set(withExtension(path, 'sjson'), served(await clearsign(text, key), 'sjson'))
  }
  const index = (entries: Record<string, IndexEntry>): IndexDocument => ({ ...metadata.index.parsed, index: entries })
  documents.set(withExtension(INDEX_PATH, 'json'), served(toJsonText(index(plainEntries)), 'json'))
  documents.set(INDEX_PATH, served(await clearsign(toJsonText(index(signedEntries)), key), 'sjson'))
  return documents
}

/** As python-simplestreams writes it: one-space indent, sorted keys, a final newline. */
function toJsonText(document: unknown): string {
  return `${JSON.stringify(sortKeys(document), null, 1)}\n`
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys)
  if (value === null || typeof value !== 'object') return value
  return Object.fromEntries(Object.keys(value).sort().map((key) => [key, sortKeys((value as Record<string, unknown>)[key])]))
}

function served(text: string, extension: 'json' | 'sjson'): ServedDocument {
  const body = Buffer.from(text)
  return {
    body,
    contentType: extension === 'json' ? 'application/json' : 'text/plain; charset=utf-8',
    etag: `"${createHash('sha256').update(body).digest('hex').slice(0, 32)}"`,
  }
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
