/**
 * The upstream half of a mirror's metadata: fetch `streams/v1/index.sjson`
 * and every products file it lists, verify each against the mirror's keyring,
 * parse it, and keep the last good set on disk so a restart with upstream down
 * still has it. Requests are conditional, and a products file whose index
 * entry did not change is not fetched again.
 */

import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import type * as openpgp from 'openpgp'
import { parseIndex, parseProducts, StreamFormatError } from '../streams/documents.js'
import { verifyClearsigned, SignatureError } from '../streams/signature.js'
import type { IndexDocument, ProductsDocument } from '../streams/types.js'
import type { UpstreamSource } from '../upstream/upstream-source.js'

export const INDEX_PATH = 'streams/v1/index.sjson'

/** One verified upstream `.sjson` file. */
export interface UpstreamDocument {
  /** Relative to the mirror root, e.g. `streams/v1/index.sjson`. */
  path: string
  /** The clearsigned bytes exactly as upstream sent them. */
  signed: string
  /** The text inside the signature. */
  text: string
  etag?: string
  lastModified?: string
}

export interface UpstreamMetadata {
  /** When this set was last confirmed current with upstream (ms). */
  checkedAt: number
  index: UpstreamDocument & { parsed: IndexDocument }
  /** Products documents by content id. */
  products: Map<string, UpstreamDocument & { parsed: ProductsDocument }>
}

export interface FetchMetadataOptions {
  source: UpstreamSource
  keys: openpgp.PublicKey[]
  previous?: UpstreamMetadata
}

/** Metadata upstream served that does not verify or parse: retrying will not help until upstream changes. */
export class UpstreamMetadataError extends Error {
  override name = 'UpstreamMetadataError'
}

/** Where signed documents come from: upstream over HTTP, or the saved copy at start-up. */
type DocumentReader = (path: string, previous: UpstreamDocument | undefined) => Promise<RawDocument | 'unchanged'>
type RawDocument = Omit<UpstreamDocument, 'text'>

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
      return { path, signed: result.text, etag: result.etag, lastModified: result.lastModified }
    }
    return assemble(read, source, options.keys, options.previous)
  }
  const { source } = options
  return source.withOneMember === undefined ? fetchFrom(source) : source.withOneMember(fetchFrom)
}

async function assemble(read: DocumentReader, source: UpstreamSource, keys: openpgp.PublicKey[], previous: UpstreamMetadata | undefined): Promise<{ metadata: UpstreamMetadata; changed: boolean }> {
  const indexRaw = await read(INDEX_PATH, previous?.index)
  if (indexRaw === 'unchanged' && previous !== undefined) {
    return { metadata: { ...previous, checkedAt: Date.now() }, changed: false }
  }
  const index = await verify(indexRaw as RawDocument, source, keys, parseIndex)
  const products: UpstreamMetadata['products'] = new Map()
  for (const [contentId, entry] of Object.entries(index.parsed.index)) {
    if (entry.format !== undefined && entry.format !== 'products:1.0') continue
    // Signed is not enough: an entry may only name a file under the upstream root.
    const problem = source.pathProblem(entry.path)
    if (problem !== undefined) throw new UpstreamMetadataError(`${source.describe(INDEX_PATH)}: index["${contentId}"].path ${JSON.stringify(entry.path)} ${problem}`)
    const before = previous?.products.get(contentId)
    const unchangedEntry = before !== undefined && before.path === entry.path && previous?.index.parsed.index[contentId]?.updated === entry.updated
    const raw = unchangedEntry ? 'unchanged' : await read(entry.path, before)
    const document = raw === 'unchanged' && before !== undefined ? before : await verify(raw as RawDocument, source, keys, parseProducts)
    if (document.parsed.content_id !== contentId) {
      throw new UpstreamMetadataError(`${source.describe(entry.path)}: content_id "${document.parsed.content_id}" differs from its index entry "${contentId}"`)
    }
    products.set(contentId, document)
  }
  return { metadata: { checkedAt: Date.now(), index, products }, changed: true }
}

async function verify<T extends IndexDocument | ProductsDocument>(
  raw: RawDocument,
  source: UpstreamSource,
  keys: openpgp.PublicKey[],
  parser: (text: string, source: string) => T,
): Promise<UpstreamDocument & { parsed: T }> {
  const location = source.describe(raw.path)
  try {
    const text = await verifyClearsigned(raw.signed, keys)
    return { ...raw, text, parsed: parser(text, location) }
  } catch (error) {
    if (error instanceof SignatureError) throw new UpstreamMetadataError(`${location}: ${error.message}`)
    if (error instanceof StreamFormatError) throw new UpstreamMetadataError(error.message)
    throw error
  }
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
 * Reads a saved set back, verifying every signature again (the file on disk
 * is not trusted more than upstream). Undefined when there is none.
 */
export async function loadUpstreamMetadata(file: string, options: { source: UpstreamSource; keys: openpgp.PublicKey[] }): Promise<UpstreamMetadata | undefined> {
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
  const { metadata } = await assemble(read, options.source, options.keys, undefined)
  return { ...metadata, checkedAt: saved.checkedAt }
}
