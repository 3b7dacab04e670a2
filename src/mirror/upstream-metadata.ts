/**
 * The upstream half of a mirror's metadata: fetch `streams/v1/index.sjson`
 * and every products file it lists, and keep the last good set on disk so a
 * restart with upstream down still has it. Requests are conditional, and a
 * products file whose index entry did not change is not fetched again.
 * Verifying and parsing happen in the metadata worker (`IndexVerifier` here,
 * the products documents when the publication is built): this module holds
 * only the raw signed text, never a parsed document.
 */

import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { UpstreamSource } from '../upstream/upstream-source.js'

export const INDEX_PATH = 'streams/v1/index.sjson'

/** One upstream `.sjson` file, as upstream sent it. */
export interface UpstreamDocument {
  /** Relative to the mirror root, e.g. `streams/v1/index.sjson`. */
  path: string
  /** The clearsigned bytes exactly as upstream sent them. */
  signed: string
  etag?: string
  lastModified?: string
}

/** What the signed index says of each products document, by content id: all a refresh needs to decide what to fetch. */
export type IndexEntries = Record<string, { path: string; format?: string; updated?: string }>

export interface UpstreamMetadata {
  /** When this set was last confirmed current with upstream (ms). */
  checkedAt: number
  /** The index, whose signature verified, with its entries. */
  index: UpstreamDocument & { entries: IndexEntries }
  /** Products documents by content id; verified when the publication is built from them. */
  products: Map<string, UpstreamDocument>
}

/** Verifies and parses a signed index (in the metadata worker); rejects with `UpstreamMetadataError` naming `location`. */
export type IndexVerifier = (document: UpstreamDocument, location: string) => Promise<IndexEntries>

export interface FetchMetadataOptions {
  source: UpstreamSource
  verifyIndex: IndexVerifier
  previous?: UpstreamMetadata
}

/** Metadata upstream served that does not verify or parse: retrying will not help until upstream changes. */
export class UpstreamMetadataError extends Error {
  override name = 'UpstreamMetadataError'
}

/** Where signed documents come from: upstream over HTTP, or the saved copy at start-up. */
type DocumentReader = (path: string, previous: UpstreamDocument | undefined) => Promise<RawDocument | 'unchanged'>
type RawDocument = UpstreamDocument

/** Fetches the current upstream metadata; `changed` is false when upstream confirmed `previous`. */
export async function fetchUpstreamMetadata(options: FetchMetadataOptions): Promise<{ metadata: UpstreamMetadata; changed: boolean }> {
  const { source } = options
  const read: DocumentReader = async (path, previous) => {
    const result = await source.getDocument(path, { etag: previous?.etag, lastModified: previous?.lastModified })
    if (result.status === 304) {
      if (previous === undefined) throw new UpstreamMetadataError(`${source.describe(path)}: 304 Not Modified to an unconditional request`)
      return 'unchanged'
    }
    return { path, signed: result.text, etag: result.etag, lastModified: result.lastModified }
  }
  return assemble(read, source, options.verifyIndex, options.previous)
}

async function assemble(read: DocumentReader, source: UpstreamSource, verifyIndex: IndexVerifier, previous: UpstreamMetadata | undefined): Promise<{ metadata: UpstreamMetadata; changed: boolean }> {
  const indexRaw = await read(INDEX_PATH, previous?.index)
  if (indexRaw === 'unchanged' && previous !== undefined) {
    return { metadata: { ...previous, checkedAt: Date.now() }, changed: false }
  }
  const raw = indexRaw as RawDocument
  const index = { ...raw, entries: await verifyIndex(raw, source.describe(raw.path)) }
  const products: UpstreamMetadata['products'] = new Map()
  for (const [contentId, entry] of Object.entries(index.entries)) {
    if (entry.format !== undefined && entry.format !== 'products:1.0') continue
    // Signed is not enough: an entry may only name a file under the upstream root.
    const problem = source.pathProblem(entry.path)
    if (problem !== undefined) throw new UpstreamMetadataError(`${source.describe(INDEX_PATH)}: index["${contentId}"].path ${JSON.stringify(entry.path)} ${problem}`)
    const before = previous?.products.get(contentId)
    const unchangedEntry = before !== undefined && before.path === entry.path && previous?.index.entries[contentId]?.updated === entry.updated
    const document = unchangedEntry ? 'unchanged' : await read(entry.path, before)
    products.set(contentId, document === 'unchanged' ? (before as UpstreamDocument) : document)
  }
  return { metadata: { checkedAt: Date.now(), index, products }, changed: true }
}

interface SavedMetadata {
  checkedAt: number
  documents: RawDocument[]
}

/** Writes the set atomically: one file, replaced by rename. */
export async function saveUpstreamMetadata(file: string, metadata: UpstreamMetadata): Promise<void> {
  const strip = ({ path, signed, etag, lastModified }: UpstreamDocument): RawDocument => ({ path, signed, etag, lastModified })
  const saved: SavedMetadata = {
    checkedAt: metadata.checkedAt,
    documents: [strip(metadata.index), ...[...metadata.products.values()].map(strip)],
  }
  await mkdir(dirname(file), { recursive: true })
  const temp = `${file}.${process.pid}.tmp`
  await writeFile(temp, JSON.stringify(saved))
  await rename(temp, file)
}

/**
 * Reads a saved set back, verifying the index's signature again (the file on
 * disk is not trusted more than upstream; the products documents are verified
 * when the publication is built). Undefined when there is none.
 */
export async function loadUpstreamMetadata(file: string, options: { source: UpstreamSource; verifyIndex: IndexVerifier }): Promise<UpstreamMetadata | undefined> {
  let saved: SavedMetadata
  try {
    saved = JSON.parse(await readFile(file, 'utf8')) as SavedMetadata
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new UpstreamMetadataError(`${file}: unreadable saved metadata: ${(error as Error).message}`)
  }
  const byPath = new Map(saved.documents.map((document) => [document.path, document]))
  const read: DocumentReader = async (path) => {
    const document = byPath.get(path)
    if (document === undefined) throw new UpstreamMetadataError(`${file}: no saved copy of ${path}`)
    return document
  }
  const { metadata } = await assemble(read, options.source, options.verifyIndex, undefined)
  return { ...metadata, checkedAt: saved.checkedAt }
}
