/**
 * How one file reaches its place in an export: written under a temp name in
 * the export's own temp folder, made durable (fsync), then renamed over its
 * final path, so a web server serving the folder sees either the old file or
 * the whole new one. A stored file is hard-linked when the export shares the
 * store's filesystem and copied otherwise, the copy hashed as it is written.
 */

import { createHash, randomBytes } from 'node:crypto'
import { link, open, rename, rm } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { hashFile, syncFolder } from '../store/durable-file.js'
import { readChunks } from '../store/object-bytes.js'
import type { RangeReader } from '../store/object-store.js'
import { ExportError, prepareParents, TEMP_DIR_NAME } from './export-paths.js'

export interface PlaceTarget {
  path: string
  sha256: string
  size: number
}

/** What the store must offer an export: the path of a stored file (to link), when it is a local file, and a way to read it (to copy). */
export interface ExportSource {
  /** A folder on the store's filesystem, to tell whether links can work. */
  root: string
  /** Absent for a store that is not a local filesystem (S3): files are then copied. */
  localPath?(sha256: string): string
  openStored(sha256: string, start: number, end: number): Promise<RangeReader | undefined>
}

export interface PlaceOptions {
  root: string
  source: ExportSource
  /** Never hard-link (a store's inode shared with a served folder is then out of reach). */
  copy: boolean
  /** Hash a linked file too (it is the store's own file, verified when stored). */
  verifyLinks: boolean
  /** Bytes written so far of the current copy (or the whole size of a link). */
  onBytes(bytes: number): void
}

export type Placed = 'linked' | 'copied'

/** Places stored files; after the first EXDEV it copies without trying links again. */
export function createFilePlacer(options: PlaceOptions): (target: PlaceTarget) => Promise<Placed> {
  const { root, source } = options
  const localPath = source.localPath
  let linksWork = !options.copy && localPath !== undefined
  return async function placeFile(target) {
    const temp = tempPath(root)
    const final = await prepareParents(root, target.path)
    try {
      let how: Placed = 'copied'
      if (linksWork && localPath !== undefined) {
        try {
          await link(localPath(target.sha256), temp)
          how = 'linked'
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code
          // Another filesystem, or one without hard links: copy from now on.
          if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EMLINK') throw error
          linksWork = false
        }
      }
      if (how === 'linked') {
        if (options.verifyLinks) await assertContent(temp, target, 'stored file')
        options.onBytes(target.size)
      } else {
        await copyVerified(source, target, temp, options.onBytes)
      }
      await rename(temp, final)
      await syncFolder(dirname(final))
      return how
    } catch (error) {
      await rm(temp, { force: true })
      throw error
    }
  }
}

/** Writes `body` at `path` below `root` through a temp file, fsync and rename. */
export async function writeAtomically(root: string, path: string, body: Uint8Array): Promise<void> {
  const temp = tempPath(root)
  const final = await prepareParents(root, path)
  try {
    const handle = await open(temp, 'wx', 0o644)
    try {
      await handle.writeFile(body)
      await handle.sync()
    } finally {
      await handle.close()
    }
    await rename(temp, final)
    await syncFolder(dirname(final))
  } catch (error) {
    await rm(temp, { force: true })
    throw error
  }
}

function tempPath(root: string): string {
  return join(root, TEMP_DIR_NAME, `${randomBytes(8).toString('hex')}.part`)
}

async function copyVerified(source: ExportSource, target: PlaceTarget, temp: string, onBytes: (bytes: number) => void): Promise<void> {
  const stored = await source.openStored(target.sha256, 0, target.size - 1)
  if (stored === undefined) throw new ExportError(`${target.path}: no longer stored (sha256 ${target.sha256}); run the export again`)
  const out = await open(temp, 'wx', 0o644)
  const hash = createHash('sha256')
  let written = 0
  try {
    for await (const chunk of readChunks(stored, 0, target.size - 1)) {
      const bytes = chunk as Buffer
      hash.update(bytes)
      await out.write(bytes)
      written += bytes.length
      onBytes(written)
    }
    await out.sync()
  } finally {
    await out.close()
    await stored.close().catch(() => undefined)
  }
  mismatch(target, { sha256: hash.digest('hex'), size: written }, 'stored file')
}

async function assertContent(path: string, target: PlaceTarget, what: string): Promise<void> {
  mismatch(target, await hashFile(path), what)
}

function mismatch(target: PlaceTarget, actual: { sha256: string; size: number }, what: string): void {
  if (actual.size === target.size && actual.sha256 === target.sha256) return
  throw new ExportError(
    `${target.path}: the ${what} does not match the metadata (size ${actual.size}, sha256 ${actual.sha256}; expected ${target.size}, ${target.sha256}); run "sstream-proxy verify --repair" and export again`,
  )
}
