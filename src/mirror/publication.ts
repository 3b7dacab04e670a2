/**
 * What a mirror publishes for one state of upstream, as the main thread holds
 * it: the metadata documents it serves and the files they name. The metadata
 * worker builds it (src/metadata-worker/) and sends it as `PublicationTables`:
 * document bodies as transferred buffers and the per-file tables as flat
 * arrays, so that receiving a publication of 10,000 products costs the event
 * loop a few milliseconds, not a structured clone of a large object graph.
 * Lookups a request needs are O(1); what only status pages and plans need is
 * decoded on first use.
 */

import type { MaasProblem } from '../streams/maas-compatibility.js'
import type { FileRef } from '../streams/selection.js'
import type { UpstreamMetadata } from './upstream-metadata.js'

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

/** A file a mirror may serve. */
export interface ServableFile {
  path: string
  size: number
  sha256: string
  /** Every item naming the file, for messages: decoded on first use (only a refused file needs them). */
  readonly refs: FileRef[]
}

/** One selected version with its files (one per path), for status and plans. */
export interface VersionFiles {
  product: string
  /** What the status page shows for the product: os, release, arch... */
  label: string
  version: string
  files: ServableFile[]
}

/** A publication as the worker sends it: buffers and flat arrays, no object per file. */
export interface PublicationTables {
  documents: Array<{ path: string; contentType: string; etag: string; body: ArrayBuffer }>
  /**
   * Every servable file, sorted by path: paths, sha256s concatenated (64 hex
   * digits each), sizes, 1 in `selected` where the selection itself names the
   * file and in `published` where the served documents advertise it, and the
   * items naming each file as a UTF-8 JSON array (one list of
   * [contentId, product, version, item] per file).
   */
  files: { paths: string[]; sha256s: string; sizes: Float64Array; selected: Uint8Array; published: Uint8Array; refs: ArrayBuffer }
  /** Selected versions as [product, label, version] triples; version n's files are `files[starts[n]..starts[n+1]]`, as indices into the file table. */
  versions: { names: string[]; starts: Uint32Array; files: Uint32Array }
  pending: PendingVersion[]
  /** Every item upstream lists, as a JSON array of [sha256, product, version] triples in UTF-8: plans name stored files by it. */
  upstreamFiles: ArrayBuffer
  summary: SelectionSummary
  /** See `Publication.selectionDigest`. */
  selectionDigest: string
  maasProblems: MaasProblem[]
  /** Upstream's `updated` of the index this was built from. */
  upstreamUpdated: string | undefined
}

/** The servable files by item path. */
export interface FileTable {
  readonly size: number
  has(path: string): boolean
  get(path: string): ServableFile | undefined
  keys(): IterableIterator<string>
  values(): IterableIterator<ServableFile>
}

export interface Publication {
  /** Metadata documents by path relative to the mirror root. */
  documents: Map<string, ServedDocument>
  /** Files that may be served, by item path: the selection's, plus those of published versions outside it. */
  files: FileTable
  /** The files the selection names, one per path, sorted by path (with `publish: "cached"`, fewer than `files` may hold). */
  selectedFiles(): ServableFile[]
  /**
   * The files the served documents advertise, one per path, sorted by path:
   * the selection, or with `publish: "cached"` its complete part; with
   * filtered metadata, plus the items MAAS requires of each version.
   */
  publishedFiles(): ServableFile[]
  /** The selected versions in document order. */
  versions(): VersionFiles[]
  /** With `publish: "cached"`: the selected versions waiting for files. */
  pending: PendingVersion[]
  /** The upstream versions that list a file, by sha256: names a stored file for plans and reports. */
  upstreamOwners(sha256: string): Array<{ product: string; version: string }>
  summary: SelectionSummary
  /**
   * Digest of the selected files as (path, sha256, size): equal digests select
   * the same bytes, however the documents were signed or fetched.
   */
  selectionDigest: string
  /** What MAAS 3.8 would reject in the served documents; empty when it accepts them. */
  maasProblems: MaasProblem[]
  upstreamUpdated: string | undefined
  /** The upstream metadata this was built from. */
  source: UpstreamMetadata
}

/** Wraps what the worker sent; `source` is the upstream metadata the job was given. */
export function openPublication(tables: PublicationTables, source: UpstreamMetadata): Publication {
  const documents = new Map<string, ServedDocument>()
  for (const { path, contentType, etag, body } of tables.documents) {
    const bytes = Buffer.from(body)
    documents.set(path, {
      body: bytes,
      contentType,
      etag,
      headers: { 'content-type': contentType, etag, 'cache-control': 'no-cache', 'content-length': String(bytes.length) },
    })
  }
  const files = fileTable(tables.files)
  const fileAt = (at: number): ServableFile => files.at(at)
  let versions: VersionFiles[] | undefined
  let owners: Map<string, Array<{ product: string; version: string }>> | undefined
  return {
    documents,
    files,
    selectedFiles: () => files.flagged(tables.files.selected),
    publishedFiles: () => files.flagged(tables.files.published),
    versions() {
      versions ??= decodeVersions(tables.versions, fileAt)
      return versions
    },
    pending: tables.pending,
    upstreamOwners(sha256) {
      owners ??= decodeOwners(tables.upstreamFiles)
      return owners.get(sha256) ?? []
    },
    summary: tables.summary,
    selectionDigest: tables.selectionDigest,
    maasProblems: tables.maasProblems,
    upstreamUpdated: tables.upstreamUpdated,
    source,
  }
}

function fileTable({ paths, sha256s, sizes, refs }: PublicationTables['files']): FileTable & { at(index: number): ServableFile; flagged(flags: Uint8Array): ServableFile[] } {
  // Built on the first lookup: a publication replaced before any request never pays for it.
  let byPath: Map<string, number> | undefined
  const indexOf = (path: string) => {
    byPath ??= new Map(paths.map((name, index) => [name, index]))
    return byPath.get(path)
  }
  let refLists: Array<Array<[string, string, string, string]>> | undefined
  const refsAt = (index: number): FileRef[] => {
    refLists ??= JSON.parse(new TextDecoder().decode(refs)) as Array<Array<[string, string, string, string]>>
    return (refLists[index] ?? []).map(([contentId, product, version, item]) => ({ contentId, product, version, item }))
  }
  const at = (index: number): ServableFile => ({
    path: paths[index] as string,
    size: sizes[index] as number,
    sha256: sha256s.slice(index * 64, index * 64 + 64),
    get refs() {
      return refsAt(index)
    },
  })
  function* all(): IterableIterator<ServableFile> {
    for (let index = 0; index < paths.length; index++) yield at(index)
  }
  return {
    size: paths.length,
    at,
    has: (path) => indexOf(path) !== undefined,
    get(path) {
      const index = indexOf(path)
      return index === undefined ? undefined : at(index)
    },
    keys: () => paths.values(),
    values: all,
    flagged: (flags) => paths.flatMap((_, index) => (flags[index] === 1 ? [at(index)] : [])),
  }
}

function decodeVersions({ names, starts, files }: PublicationTables['versions'], fileAt: (index: number) => ServableFile): VersionFiles[] {
  const versions: VersionFiles[] = []
  for (let n = 0; n * 3 < names.length; n++) {
    const indices = files.subarray(starts[n] as number, starts[n + 1] as number)
    versions.push({ product: names[n * 3] as string, label: names[n * 3 + 1] as string, version: names[n * 3 + 2] as string, files: [...indices].map(fileAt) })
  }
  return versions
}

function decodeOwners(bytes: ArrayBuffer): Map<string, Array<{ product: string; version: string }>> {
  const triples = JSON.parse(new TextDecoder().decode(bytes)) as string[]
  const owners = new Map<string, Array<{ product: string; version: string }>>()
  for (let n = 0; n < triples.length; n += 3) {
    const sha256 = triples[n] as string
    const list = owners.get(sha256) ?? []
    list.push({ product: triples[n + 1] as string, version: triples[n + 2] as string })
    owners.set(sha256, list)
  }
  return owners
}
