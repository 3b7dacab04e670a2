/**
 * Garbage collection: removes stored files that no mirror's publication
 * references. Files are content-addressed, so one file may serve several
 * products (the shared squashfs) and several mirrors; references are counted
 * across all of them, and with `publish: "cached"` a publication's files
 * include its still-published older versions.
 */

import type { Publication } from '../mirror/publication.js'
import type { StoredFile } from '../store/file-index.js'
import type { Store } from '../store/store.js'

export interface MirrorPublication {
  name: string
  publication: Publication | undefined
}

/** A file garbage collection removes: a row of the index, or in a fleet an object of the bucket this replica may never have stored (no path then). */
export interface GarbageFile {
  sha256: string
  size: number
  path: string | null
}

export interface GarbageReport {
  /** The files removed, or with `dryRun` those that would be. */
  files: GarbageFile[]
  bytes: number
}

/** A mirror without metadata: which of the stored files it needs is unknown, so nothing may go. */
export class GcRefusedError extends Error {
  override name = 'GcRefusedError'
}

/** The sha256 of every file a mirror publishes; throws `GcRefusedError` when a mirror has no metadata. */
export function referencedFiles(mirrors: readonly MirrorPublication[]): Set<string> {
  const referenced = new Set<string>()
  for (const { name, publication } of mirrors) {
    if (publication === undefined) throw new GcRefusedError(`mirror ${name} has no metadata yet: not collecting, its files are unknown`)
    for (const file of publication.files.values()) referenced.add(file.sha256)
  }
  return referenced
}

export function findGarbage(store: Store, mirrors: readonly MirrorPublication[]): StoredFile[] {
  const referenced = referencedFiles(mirrors)
  // A file with a running fill has no row yet; a row being replaced by one is skipped too.
  return store.index.all().filter((file) => !referenced.has(file.sha256) && store.fills.get(file.sha256) === undefined)
}

export async function collectGarbage(store: Store, mirrors: readonly MirrorPublication[], options: { dryRun?: boolean } = {}): Promise<GarbageReport> {
  return removeGarbage(store, findGarbage(store, mirrors), options)
}

/** Removes `files` from the index and the store (with `dryRun`, nothing) and reports them. */
export async function removeGarbage(store: Store, files: GarbageFile[], options: { dryRun?: boolean } = {}): Promise<GarbageReport> {
  if (options.dryRun !== true) {
    for (const file of files) {
      // The row goes first so no new reader finds the file. A client already
      // reading it keeps its open descriptor (or its GET of the object).
      store.index.delete(file.sha256)
      await store.objects.remove(file.sha256)
    }
  }
  return { files, bytes: files.reduce((sum, file) => sum + file.size, 0) }
}
