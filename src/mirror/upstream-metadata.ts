/**
 * The upstream half of a mirror's metadata: fetch `streams/v1/index.sjson`
 * and every products file it lists, and keep the last good set on disk so a
 * restart with upstream down still has it. Requests are conditional, and a
 * products file whose index entry did not change is not fetched again.
 * Verifying and parsing happen in the metadata worker (`MetadataVerifier`):
 * this module holds only the raw signed text, never a parsed document.
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
  /** Where it was read from, for messages (credentials redacted); not saved. */
  location: string
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

/**
 * Verifies and parses signed documents (in the metadata worker); rejects with
 * `UpstreamMetadataError` naming `location`. A products document is checked
 * while its upstream is the one being read, so that with several upstreams a
 * bad one fails over to the next; the publication built from it later finds
 * it already verified.
 */
export interface MetadataVerifier {
  index(document: UpstreamDocument): Promise<IndexEntries>
  /** Also checks its `content_id` is `contentId`. */
  products(document: UpstreamDocument, contentId: string): Promise<void>
}

export interface FetchMetadataOptions {
  source: UpstreamSource
  verify: MetadataVerifier
  previous?: UpstreamMetadata
}

/** Metadata upstream served that does not verify or parse: retrying will not help until upstream changes. */
export class UpstreamMetadataError extends Error {
  override name = 'UpstreamMetadataError'
}

/** Where signed documents come from: upstream over HTTP, or the saved copy at start-up. */
type DocumentReader = (path: string, previous: UpstreamDocument | undefined) => Promise<UpstreamDocument | 'unchanged'>

/**
 * Fetches the current upstream metadata; `changed` is false when upstream
 * confirmed `previous`. The index and its products files come from one
 * upstream: with several, a member whose set fails (unreachable, 5xx, a
 * signature that does not verify, a document that does not parse) is put in
 * cool-down by the source and the whole set is fetched from the next.
 */
export async function fetchUpstreamMetadata(options: FetchMetadataOptions): Promise<{ metadata: UpstreamMetadata; changed: boolean }> {
  const fetchFrom = (source: UpstreamSource) => {
    const read: DocumentReader = async (path, previous) => {
      const result = await source.getDocument(path, { etag: previous?.etag, lastModified: previous?.lastModified })
      if (result.status === 304) {
        if (previous === undefined) throw new UpstreamMetadataError(`${source.describe(path)}: 304 Not Modified to an unconditional request`)
        return 'unchanged'
      }
      return { path, signed: result.text, location: source.describe(path), etag: result.etag, lastModified: result.lastModified }
    }
    return assemble(read, source, options.verify, options.previous)
  }
  const { source } = options
  return source.withOneMember === undefined ? fetchFrom(source) : source.withOneMember(fetchFrom)
}

async function assemble(read: DocumentReader, source: UpstreamSource, verify: MetadataVerifier, previous: UpstreamMetadata | undefined): Promise<{ metadata: UpstreamMetadata; changed: boolean }> {
  const indexRaw = await read(INDEX_PATH, previous?.index)
  if (indexRaw === 'unchanged' && previous !== undefined) {
    return { metadata: { ...previous, checkedAt: Date.now() }, changed: false }
  }
  const raw = indexRaw as UpstreamDocument
  const index = { ...raw, entries: await verify.index(raw) }
  const products: UpstreamMetadata['products'] = new Map()
  for (const [contentId, entry] of Object.entries(index.entries)) {
    if (entry.format !== undefined && entry.format !== 'products:1.0') continue
    // Signed is not enough: an entry may only name a file under the upstream root.
    const problem = source.pathProblem(entry.path)
    if (problem !== undefined) throw new UpstreamMetadataError(`${source.describe(INDEX_PATH)}: index["${contentId}"].path ${JSON.stringify(entry.path)} ${problem}`)
    const before = previous?.products.get(contentId)
    const unchangedEntry = before !== undefined && before.path === entry.path && previous?.index.entries[contentId]?.updated === entry.updated
    const fetched = unchangedEntry ? 'unchanged' : await read(entry.path, before)
    const document = fetched === 'unchanged' && before !== undefined ? before : (fetched as UpstreamDocument)
    if (document !== before) await verify.products(document, contentId)
    products.set(contentId, document)
  }
  return { metadata: { checkedAt: Date.now(), index, products }, changed: true }
}

type SavedDocument = Omit<UpstreamDocument, 'location'>

interface SavedMetadata {
  checkedAt: number
  documents: SavedDocument[]
}

/** Writes the set atomically: one file, replaced by rename. */
export async function saveUpstreamMetadata(file: string, metadata: UpstreamMetadata): Promise<void> {
  const strip = ({ path, signed, etag, lastModified }: UpstreamDocument): SavedDocument => ({ path, signed, etag, lastModified })
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
 * Reads a saved set back, verifying every signature again (the file on disk
 * is not trusted more than upstream). Undefined when there is none.
 */
export async function loadUpstreamMetadata(file: string, options: { source: UpstreamSource; verify: MetadataVerifier }): Promise<UpstreamMetadata | undefined> {
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
    return { ...document, location: options.source.describe(path) }
  }
  const { metadata } = await assemble(read, options.source, options.verify, undefined)
  return { ...metadata, checkedAt: saved.checkedAt }
}
