/**
 * Paths inside an export directory. Every path an export writes, reads or
 * removes comes from metadata or from the export's own manifest: it must be a
 * plain relative path (`unsafePathReason`), must not collide with the
 * export's own bookkeeping files, and is reached without following a symlink,
 * so nothing in metadata can make an export touch a file outside its folder.
 */

import type { Stats } from 'node:fs'
import { lstat, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { unsafePathReason } from '../streams/item-path.js'

/** Operator-facing failure of an export: one line, nothing half-written left visible. */
export class ExportError extends Error {
  override name = 'ExportError'
}

/** The export's record of what it wrote (see export-manifest.ts). */
export const MANIFEST_NAME = '.sstream-proxy-export.json'
/** Where files are written before they are renamed into place; emptied at the start of every export. */
export const TEMP_DIR_NAME = '.sstream-proxy-export.tmp'
/** Held while an export runs, so two exports never write one folder. */
export const LOCK_NAME = '.sstream-proxy-export.lock'
/** The proxy's public key, beside the streams: the keyring clients verify the tree with. */
export const KEYRING_NAME = 'keyring.gpg'

const RESERVED_PREFIX = '.sstream-proxy-export'

/** Why a path may not be written in an export, or undefined when it may. */
export function exportPathProblem(path: string): string | undefined {
  const unsafe = unsafePathReason(path)
  if (unsafe !== undefined) return unsafe
  if (path.split('/')[0]?.startsWith(RESERVED_PREFIX)) return 'is reserved for the export\'s own files'
  return undefined
}

/** Throws an `ExportError` naming the path when metadata names one an export may not write. */
export function assertExportPath(path: string, origin: string): void {
  const problem = exportPathProblem(path)
  if (problem !== undefined) throw new ExportError(`${origin}: path ${JSON.stringify(path)} ${problem}`)
}

/**
 * The entry at `path` below `root`, not following symlinks: undefined when it
 * or a parent folder does not exist. A parent that is a symlink or not a
 * folder is an `ExportError`: the export never reaches through one.
 */
export async function entryAt(root: string, path: string): Promise<Stats | undefined> {
  const segments = path.split('/')
  let current = root
  for (const [position, segment] of segments.entries()) {
    current = join(current, segment)
    let stats: Stats
    try {
      stats = await lstat(current)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw error
    }
    if (position === segments.length - 1) return stats
    assertFolder(stats, root, segments.slice(0, position + 1).join('/'))
  }
  return undefined
}

/** Creates the parent folders of `path` below `root`, refusing any that is a symlink; returns the absolute path. */
export async function prepareParents(root: string, path: string): Promise<string> {
  const segments = path.split('/')
  let current = root
  for (const [position, segment] of segments.slice(0, -1).entries()) {
    current = join(current, segment)
    try {
      await mkdir(current)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
      assertFolder(await lstat(current), root, segments.slice(0, position + 1).join('/'))
    }
  }
  return join(root, path)
}

function assertFolder(stats: Stats, root: string, path: string): void {
  if (stats.isSymbolicLink()) throw new ExportError(`${join(root, path)} is a symlink; an export never writes through one`)
  if (!stats.isDirectory()) throw new ExportError(`${join(root, path)} is not a folder`)
}
