/**
 * Writes a mirror's publication as a static SimpleStreams tree: every item at
 * its upstream path, the metadata documents exactly as the proxy serves them,
 * and the proxy's public key as `keyring.gpg`. Incremental: a file whose size
 * and manifest record match is re-used, files are placed before the metadata
 * that names them, the metadata is replaced last (the signed index at the very
 * end), and only then are files the previous export wrote and the selection
 * no longer names removed. A web server serving the folder throughout never
 * shows metadata naming a file that is not there.
 */

import { createHash } from 'node:crypto'
import { access, constants, mkdir, open, readFile, rm, rmdir, stat, statfs, unlink } from 'node:fs/promises'
import { hostname } from 'node:os'
import { dirname, join } from 'node:path'
import type { Publication } from '../mirror/publication.js'
import { INDEX_PATH } from '../mirror/upstream-metadata.js'
import type { PassCounts } from '../prefetch/pass-history.js'
import { holderAlive } from '../store/store.js'
import { formatBytes } from '../prefetch/progress-display.js'
import { readManifest, manifestText, type ExportManifest, type ManifestEntry } from './export-manifest.js'
import { assertExportPath, entryAt, ExportError, KEYRING_NAME, LOCK_NAME, MANIFEST_NAME, TEMP_DIR_NAME } from './export-paths.js'
import { hashFile, syncFolder } from '../store/durable-file.js'
import { createFilePlacer, writeAtomically, type ExportSource, type Placed, type PlaceTarget } from './place-file.js'

export interface ExportOptions {
  /** The export folder, absolute; created when missing. */
  dir: string
  mirror: string
  publication: Publication
  /** The proxy's public key, binary. */
  keyring: Uint8Array
  source: ExportSource
  isStored(sha256: string): boolean
  /** Copy even where a hard link would do. */
  copy?: boolean
  /** Hash every file already in the folder instead of trusting size and manifest record. */
  verify?: boolean
  /** Plan only: nothing in the folder is created, written or removed. */
  dryRun?: boolean
  /** Called once the export knows its work, to follow its progress. */
  onStart?(progress: () => PassCounts): void
}

/** A file of the export: an item (from the store) or a document (metadata, keyring). */
interface Target extends PlaceTarget {
  body?: Buffer
}

export interface ExportSummary {
  dir: string
  mirror: string
  dryRun: boolean
  /** Items in the export, and their bytes. */
  files: number
  bytes: number
  linked: FileCount
  copied: FileCount
  /** Items already in the folder with the right content. */
  reused: FileCount
  /** Files found in the folder, not written by an export, with the right content: re-used and never removed. */
  adopted: string[]
  /** Files the export had written whose content no longer matched (found with `verify`, or by size): written again. */
  replaced: string[]
  /** Metadata documents and keyring written (unchanged ones are left alone). */
  documents: string[]
  /** Files an earlier export wrote that left the selection. */
  removed: FileCount & { paths: string[] }
  /** With `dryRun`: items to fetch into the store first. */
  missing: FileCount & { paths: string[] }
  seconds: number
}

interface FileCount {
  files: number
  bytes: number
}

interface Plan {
  wanted: Target[]
  place: Target[]
  reuse: Target[]
  adopted: Target[]
  replaced: string[]
  remove: Array<{ path: string; size: number }>
  missing: Target[]
  conflicts: string[]
}

const MISSING_SHOWN = 10

export async function exportTree(options: ExportOptions): Promise<ExportSummary> {
  const startedAt = performance.now()
  const { dir } = options
  if (options.dryRun === true) {
    const manifest = await readManifest(dir).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOTDIR') throw new ExportError(`${dir} is not a folder`)
      throw error
    })
    return summarise(options, await plan(options, manifest), startedAt, undefined)
  }
  await openFolder(dir)
  const release = await lock(dir)
  try {
    await rm(join(dir, TEMP_DIR_NAME), { recursive: true, force: true })
    await mkdir(join(dir, TEMP_DIR_NAME))
    const manifest = await readManifest(dir)
    const work = await plan(options, manifest)
    return summarise(options, work, startedAt, await execute(options, manifest, work))
  } finally {
    await rm(join(dir, TEMP_DIR_NAME), { recursive: true, force: true }).catch(() => undefined)
    await release()
  }
}

/** What the publication's documents advertise: items, then documents in the order they are written, the signed index last. */
function wantedFiles(options: ExportOptions): Target[] {
  const { publication, mirror } = options
  const items = new Map<string, Target>()
  for (const file of publication.publishedFiles()) {
    assertExportPath(file.path, `mirror ${mirror}: item`)
    items.set(file.path, { path: file.path, sha256: file.sha256, size: file.size })
  }
  const document = (path: string, body: Uint8Array): Target => {
    const bytes = Buffer.from(body)
    return { path, sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.length, body: bytes }
  }
  for (const path of [KEYRING_NAME, ...publication.documents.keys()]) {
    if (items.has(path)) throw new ExportError(`mirror ${mirror}: item path ${JSON.stringify(path)} is also the path of a metadata document or the keyring`)
  }
  const indexJson = INDEX_PATH.replace(/\.sjson$/, '.json')
  const products: Target[] = []
  for (const [path, served] of publication.documents) {
    assertExportPath(path, `mirror ${mirror}: metadata`)
    if (path !== INDEX_PATH && path !== indexJson) products.push(document(path, served.body))
  }
  const index = (path: string) => {
    const served = publication.documents.get(path)
    if (served === undefined) throw new ExportError(`mirror ${mirror}: the publication has no ${path}`)
    return document(path, served.body)
  }
  products.sort((a, b) => (a.path < b.path ? -1 : 1))
  return [...[...items.values()].sort((a, b) => (a.path < b.path ? -1 : 1)), document(KEYRING_NAME, options.keyring), ...products, index(indexJson), index(INDEX_PATH)]
}

async function plan(options: ExportOptions, manifest: ExportManifest): Promise<Plan> {
  const { dir } = options
  const wanted = wantedFiles(options)
  const work: Plan = { wanted, place: [], reuse: [], adopted: [], replaced: [], remove: [], missing: [], conflicts: [] }
  for (const target of wanted) {
    if (target.body === undefined && !options.isStored(target.sha256)) work.missing.push(target)
    const owned = manifest.files.get(target.path)
    const entry = await entryAt(dir, target.path)
    if (entry === undefined || (owned !== undefined && !entry.isFile() && !entry.isDirectory())) {
      work.place.push(target)
      continue
    }
    if (!entry.isFile()) {
      work.conflicts.push(`${join(dir, target.path)} is not a regular file`)
      continue
    }
    const recorded = owned !== undefined && owned.pending !== true && owned.sha256 === target.sha256
    // Documents are small and compared by content; items are trusted on size and record unless asked to verify.
    if (recorded && entry.size === target.size && target.body === undefined && options.verify !== true) {
      ;(owned.adopted === true ? work.adopted : work.reuse).push(target)
      continue
    }
    const matches = entry.size === target.size && (await hashFile(join(dir, target.path))).sha256 === target.sha256
    if (matches) (owned === undefined || owned.adopted === true ? work.adopted : work.reuse).push(target)
    else if (owned === undefined) work.conflicts.push(`${join(dir, target.path)} was not written by an export and does not match the metadata (move it away)`)
    else {
      if (recorded) work.replaced.push(target.path)
      work.place.push(target)
    }
  }
  const keep = new Set(wanted.map((target) => target.path))
  for (const [path, entry] of manifest.files) if (!keep.has(path) && entry.adopted !== true) work.remove.push({ path, size: entry.size })
  return work
}

async function execute(options: ExportOptions, manifest: ExportManifest, work: Plan): Promise<Placements> {
  const { dir } = options
  if (work.conflicts.length > 0) throw new ExportError(`cannot export into ${dir}: ${work.conflicts.join('; ')}`)
  if (work.missing.length > 0) throw new ExportError(describeMissing(work.missing))
  const items = work.place.filter((target) => target.body === undefined)
  const documents = work.place.filter((target) => target.body !== undefined)
  await assertSpace(options, items, documents)

  // Owned before placed: a crash from here on leaves files the next export may replace or remove.
  const next: ExportManifest = { mirror: options.mirror, exportedAt: manifest.exportedAt, files: new Map(manifest.files) }
  for (const target of work.place) next.files.set(target.path, { sha256: target.sha256, size: target.size, pending: true })
  for (const target of work.adopted) next.files.set(target.path, { sha256: target.sha256, size: target.size, adopted: true })
  await writeAtomically(dir, MANIFEST_NAME, manifestText(next))

  const counts: PassCounts = { filesDone: 0, filesTotal: items.length, bytesDone: 0, bytesTotal: items.reduce((sum, target) => sum + target.size, 0), errors: [] }
  let current = 0
  options.onStart?.(() => ({ ...counts, bytesDone: counts.bytesDone + current }))
  const placements: Placements = { linked: { files: 0, bytes: 0 }, copied: { files: 0, bytes: 0 }, removed: { files: 0, bytes: 0, paths: [] } }
  const placeFile = createFilePlacer({
    root: dir,
    source: options.source,
    copy: options.copy === true,
    verifyLinks: options.verify === true,
    onBytes: (bytes) => (current = bytes),
  })
  for (const target of items) {
    const how: Placed = await placeFile(target)
    current = 0
    counts.filesDone++
    counts.bytesDone += target.size
    placements[how].files++
    placements[how].bytes += target.size
  }
  // Every item is in place: now the metadata naming them, the signed index last.
  for (const target of documents) await writeAtomically(dir, target.path, target.body as Buffer)

  for (const { path } of work.remove) {
    const removed = await removeOwned(dir, path)
    if (removed === undefined) continue
    placements.removed.files++
    placements.removed.bytes += removed
    placements.removed.paths.push(path)
  }
  const done = new Map<string, ManifestEntry>()
  for (const target of work.wanted) done.set(target.path, { sha256: target.sha256, size: target.size, ...(work.adopted.includes(target) ? { adopted: true as const } : {}) })
  await writeAtomically(dir, MANIFEST_NAME, manifestText({ mirror: options.mirror, exportedAt: new Date().toISOString(), files: done }))
  return placements
}

interface Placements {
  linked: FileCount
  copied: FileCount
  removed: FileCount & { paths: string[] }
}

/** Removes a file an export wrote, and the folders that leaves empty; resolves to its size, undefined when it was gone. */
async function removeOwned(dir: string, path: string): Promise<number | undefined> {
  const entry = await entryAt(dir, path)
  if (entry === undefined || entry.isDirectory()) return undefined
  await unlink(join(dir, path))
  for (let parent = dirname(path); parent !== '.'; parent = dirname(parent)) {
    try {
      await rmdir(join(dir, parent))
    } catch {
      break
    }
  }
  await syncFolder(join(dir, dirname(path) === '.' ? '' : dirname(path))).catch(() => undefined)
  return entry.size
}

function describeMissing(missing: Target[]): string {
  const shown = missing.slice(0, MISSING_SHOWN).map((target) => target.path)
  const more = missing.length > MISSING_SHOWN ? `, and ${missing.length - MISSING_SHOWN} more` : ''
  const bytes = missing.reduce((sum, target) => sum + target.size, 0)
  return `${missing.length} files of the selection are not stored (${formatBytes(bytes)}): ${shown.join(', ')}${more}`
}

/** Refuses before writing anything when the folder's filesystem cannot take what must be copied. */
async function assertSpace(options: ExportOptions, items: Target[], documents: Target[]): Promise<void> {
  const { dir } = options
  const sameFilesystem = options.copy !== true && (await stat(dir)).dev === (await stat(options.source.root)).dev
  const needed = documents.reduce((sum, target) => sum + target.size, 0) + (sameFilesystem ? 0 : items.reduce((sum, target) => sum + target.size, 0))
  const { bavail, bsize } = await statfs(dir)
  const available = bavail * bsize
  if (needed > available) throw new ExportError(`${dir}: not enough space: the export needs ${formatBytes(needed)}, ${formatBytes(available)} available`)
}

async function openFolder(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true })
    if (!(await stat(dir)).isDirectory()) throw new ExportError(`${dir} is not a folder`)
    await access(dir, constants.W_OK)
  } catch (error) {
    if (error instanceof ExportError) throw error
    const { code, message } = error as NodeJS.ErrnoException
    throw new ExportError(`${dir}: ${code === 'EACCES' || code === 'EROFS' || code === 'EPERM' ? 'not writable' : code === 'EEXIST' || code === 'ENOTDIR' ? 'not a folder' : message}`)
  }
}

/** One export per folder at a time; a lock left by a crashed export on this host is taken over. */
async function lock(dir: string): Promise<() => Promise<void>> {
  const file = join(dir, LOCK_NAME)
  const owner = `${hostname()}:${process.pid}`
  for (let attempt = 0; ; attempt++) {
    try {
      const handle = await open(file, 'wx', 0o644)
      await handle.writeFile(owner)
      await handle.close()
      return () => rm(file, { force: true })
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw error
    }
    const holder = (await readFile(file, 'utf8').catch(() => '')).trim()
    if (holder === '' || holderAlive(holder)) {
      throw new ExportError(`${dir}: another export is running (${holder || 'unknown process'}); if none is, remove ${file}`)
    }
    await rm(file, { force: true })
  }
}

function summarise(options: ExportOptions, work: Plan, startedAt: number, placements: Placements | undefined): ExportSummary {
  const count = (targets: Target[]): FileCount => ({ files: targets.length, bytes: targets.reduce((sum, target) => sum + target.size, 0) })
  const items = work.wanted.filter((target) => target.body === undefined)
  const isItem = (target: Target) => target.body === undefined
  const toPlace = count(work.place.filter(isItem))
  return {
    dir: options.dir,
    mirror: options.mirror,
    dryRun: placements === undefined,
    ...count(items),
    // A dry run cannot know whether links will work: it counts every item to place as linked or copied by --copy.
    linked: placements?.linked ?? (options.copy === true ? { files: 0, bytes: 0 } : toPlace),
    copied: placements?.copied ?? (options.copy === true ? toPlace : { files: 0, bytes: 0 }),
    reused: count(work.reuse.filter(isItem)),
    adopted: work.adopted.map((target) => target.path),
    replaced: work.replaced,
    documents: work.place.filter((target) => !isItem(target)).map((target) => target.path),
    removed: placements?.removed ?? { files: work.remove.length, bytes: work.remove.reduce((sum, entry) => sum + entry.size, 0), paths: work.remove.map((entry) => entry.path) },
    missing: { ...count(work.missing), paths: work.missing.map((target) => target.path) },
    seconds: Math.round((performance.now() - startedAt) / 100) / 10,
  }
}
