/**
 * Checks a data directory from the outside, as a second reader of its SQLite
 * index: the database passes `integrity_check`, every row's file exists with
 * the row's size, and every stored file hashes to its name; it lists the
 * temp files under `tmp/`. Returns the problems found, one line each, so a failing test says
 * exactly what was wrong.
 */

import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { readdir, stat } from 'node:fs/promises'
import { join, relative } from 'node:path'
import Database from 'better-sqlite3'

export interface StoreCheck {
  rows: number
  blobs: number
  /** Files under `tmp/` (in its per-process folders), relative to it. */
  tempFiles: string[]
  problems: string[]
}

export async function checkStore(dataDir: string): Promise<StoreCheck> {
  const problems: string[] = []
  const db = new Database(join(dataDir, 'index.sqlite'), { readonly: true, fileMustExist: true })
  let rows: Array<{ sha256: string; size: number }>
  try {
    const integrity = db.pragma('integrity_check', { simple: true })
    if (integrity !== 'ok') problems.push(`integrity_check: ${String(integrity)}`)
    rows = db.prepare<[], { sha256: string; size: number }>('SELECT sha256, size FROM files').all()
  } finally {
    db.close()
  }
  for (const row of rows) {
    const path = join(dataDir, 'blobs', row.sha256.slice(0, 2), row.sha256)
    const size = await stat(path).then((s) => s.size, () => undefined)
    if (size === undefined) problems.push(`row ${row.sha256}: no file`)
    else if (size !== row.size) problems.push(`row ${row.sha256}: file has ${size} bytes, row says ${row.size}`)
  }
  const blobs = await storedBlobs(dataDir)
  for (const [sha256, path] of blobs) {
    const actual = await hashFile(path)
    if (actual !== sha256) problems.push(`${path}: content hashes to ${actual}`)
  }
  return { rows: rows.length, blobs: blobs.size, tempFiles: await tempFiles(dataDir), problems }
}

/** Every file under `blobs/`, by name. */
export async function storedBlobs(dataDir: string): Promise<Map<string, string>> {
  const root = join(dataDir, 'blobs')
  const found = new Map<string, string>()
  for (const prefix of await readdir(root).catch(() => [])) {
    for (const name of await readdir(join(root, prefix))) found.set(name, join(root, prefix, name))
  }
  return found
}

/** Files (not folders) under `tmp/`, relative to it. */
export async function tempFiles(dataDir: string): Promise<string[]> {
  const root = join(dataDir, 'tmp')
  const entries = await readdir(root, { recursive: true, withFileTypes: true }).catch(() => [])
  return entries.filter((entry) => entry.isFile()).map((entry) => relative(root, join(entry.parentPath ?? entry.path, entry.name)))
}

export function hashFile(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256')
    createReadStream(path)
      .on('data', (chunk) => hash.update(chunk))
      .on('end', () => resolve(hash.digest('hex')))
      .on('error', reject)
  })
}
