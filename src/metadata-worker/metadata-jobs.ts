/**
 * The jobs the metadata worker runs, and the messages that carry them. Every
 * costly step on upstream metadata lives here (clearsign parsing, signature
 * checks, JSON parsing, selection, re-signing), so that however large or
 * hostile a document is, it only ever occupies this thread.
 *
 * Jobs are self-contained: each carries the raw signed bytes and the
 * mirror's keyring, so a restarted worker needs nothing from its crashed
 * predecessor. Verified documents are remembered by their bytes, so an
 * unchanged products document is not verified again on the next build.
 */

import type * as openpgp from 'openpgp'
import type { MirrorConfig } from '../config/types.js'
import type { IndexEntries } from '../mirror/upstream-metadata.js'
import type { PublicationTables } from '../mirror/publication.js'
import { parseIndex, parseProducts, StreamFormatError } from '../streams/documents.js'
import { parseFilter } from '../streams/filter.js'
import { readKeyring, SignatureError, verifyClearsigned } from '../streams/signature.js'
import type { IndexDocument, ProductsDocument } from '../streams/types.js'
import { buildPublication, type ParsedDocument } from './build-publication.js'

/** A signed document for a job: UTF-8 bytes (transferred, not copied) and its URL for messages. */
export interface JobDocument {
  path: string
  location: string
  signed: ArrayBuffer
}

export interface JobKeyring {
  bytes: Uint8Array
  /** Where it was read from, for messages. */
  source: string
}

export type MetadataJob =
  | { kind: 'verify-index'; keyring: JobKeyring; index: JobDocument }
  | { kind: 'verify-products'; keyring: JobKeyring; products: JobDocument & { contentId: string } }
  | {
      kind: 'publish'
      keyring: JobKeyring
      index: JobDocument
      /** Products documents by content id. */
      products: Array<JobDocument & { contentId: string }>
      /** Filters as their source text: a parsed filter holds a function, which cannot cross threads. */
      mirror: Pick<MirrorConfig, 'metadata' | 'publish'> & { selections: Array<{ filters: string[]; max?: number }> }
      /** With `publish: "cached"`: the sha256 of every stored file. */
      stored: string[]
    }

export type JobResult<J extends MetadataJob> = J extends { kind: 'verify-index' } ? IndexEntries : J extends { kind: 'verify-products' } ? null : PublicationTables

/** What a job's failure carries back; `metadata` when the documents are at fault (a retry cannot help until upstream changes). */
export interface JobFailure {
  message: string
  metadata: boolean
}

export class MetadataJobError extends Error {
  override name = 'MetadataJobError'
}

export interface JobRunner {
  run(job: MetadataJob): Promise<{ result: IndexEntries | PublicationTables | null; transfer: ArrayBuffer[] }>
}

interface Remembered<T> {
  keyring: Uint8Array
  signed: Uint8Array
  document: ParsedDocument<T>
}

/** Runs jobs with the proxy's signing key (armored), read once. */
export function createJobRunner(options: { readSigningKey: () => Promise<openpgp.PrivateKey> }): JobRunner {
  let signingKey: Promise<openpgp.PrivateKey> | undefined
  const keyrings = new Map<string, { bytes: Uint8Array; keys: Promise<openpgp.PublicKey[]> }>()
  // By location: one entry per document a mirror publishes, replaced when its bytes change.
  const remembered = new Map<string, Remembered<IndexDocument | ProductsDocument>>()

  const keysOf = (keyring: JobKeyring) => {
    const known = keyrings.get(keyring.source)
    if (known !== undefined && Buffer.compare(known.bytes, keyring.bytes) === 0) return known.keys
    const keys = readKeyring(keyring.bytes, keyring.source)
    keyrings.set(keyring.source, { bytes: keyring.bytes, keys })
    return keys
  }

  async function verify<T extends IndexDocument | ProductsDocument>(document: JobDocument, keyring: JobKeyring, parser: (text: string, source: string) => T): Promise<ParsedDocument<T>> {
    const signed = new Uint8Array(document.signed)
    const known = remembered.get(document.location)
    if (known !== undefined && Buffer.compare(known.signed, signed) === 0 && Buffer.compare(known.keyring, keyring.bytes) === 0) return known.document as ParsedDocument<T>
    const signedText = new TextDecoder().decode(signed)
    try {
      const text = await verifyClearsigned(signedText, await keysOf(keyring))
      const parsed: ParsedDocument<T> = { path: document.path, signed: signedText, text, parsed: parser(text, document.location) }
      remembered.set(document.location, { keyring: keyring.bytes, signed, document: parsed })
      return parsed
    } catch (error) {
      if (error instanceof SignatureError) throw new MetadataJobError(`${document.location}: ${error.message}`)
      if (error instanceof StreamFormatError) throw new MetadataJobError(error.message)
      throw error
    }
  }

  async function verifyProducts(document: JobDocument & { contentId: string }, keyring: JobKeyring): Promise<ParsedDocument<ProductsDocument>> {
    const parsed = await verify(document, keyring, parseProducts)
    if (parsed.parsed.content_id !== document.contentId) {
      throw new MetadataJobError(`${document.location}: content_id "${parsed.parsed.content_id}" differs from its index entry "${document.contentId}"`)
    }
    return parsed
  }

  return {
    async run(job) {
      if (job.kind === 'verify-products') {
        await verifyProducts(job.products, job.keyring)
        return { result: null, transfer: [] }
      }
      if (job.kind === 'verify-index') {
        const index = await verify(job.index, job.keyring, parseIndex)
        const entries: IndexEntries = {}
        for (const [contentId, { path, format, updated }] of Object.entries(index.parsed.index)) entries[contentId] = { path, format, updated }
        return { result: entries, transfer: [] }
      }
      const index = await verify(job.index, job.keyring, parseIndex)
      const products = new Map<string, ParsedDocument<ProductsDocument>>()
      for (const document of job.products) products.set(document.contentId, await verifyProducts(document, job.keyring))
      const stored = new Set(job.stored)
      const { tables, transfer } = await buildPublication({
        index,
        products,
        mirror: { ...job.mirror, selections: job.mirror.selections.map(({ filters, max }) => ({ filters: filters.map(parseFilter), ...(max === undefined ? {} : { max }) })) },
        signingKey: await (signingKey ??= options.readSigningKey()),
        isStored: (sha256) => stored.has(sha256),
      })
      return { result: tables, transfer }
    },
  }
}
