/**
 * The record an export keeps in its folder (`.sstream-proxy-export.json`):
 * every file it wrote, with its sha256 and size. The next export re-uses a
 * file whose size and record match, and removes only files recorded here,
 * never anything else in the folder. Before files are placed, the manifest is
 * rewritten with them as `pending`: a crash part-way then leaves files the
 * next export owns (so may replace or remove) but trusts only after hashing.
 */

import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ExportError, exportPathProblem, MANIFEST_NAME } from './export-paths.js'

export interface ManifestEntry {
  sha256: string
  size: number
  /** Recorded before the file was placed: owned, but re-used only after hashing. */
  pending?: true
  /** Found in the folder with the right content, not written by an export: re-used, never removed. */
  adopted?: true
}

export interface ExportManifest {
  mirror: string | null
  /** ISO time the last complete export finished. */
  exportedAt: string | null
  files: Map<string, ManifestEntry>
}

const SHA256_HEX = /^[0-9a-f]{64}$/

export async function readManifest(dir: string): Promise<ExportManifest> {
  const file = join(dir, MANIFEST_NAME)
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { mirror: null, exportedAt: null, files: new Map() }
    throw error
  }
  const invalid = (why: string) => new ExportError(`${file}: ${why} (move it away to start a fresh export)`)
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    throw invalid('not JSON')
  }
  const { mirror, exportedAt, files } = (parsed ?? {}) as { mirror?: unknown; exportedAt?: unknown; files?: unknown }
  if (typeof files !== 'object' || files === null || Array.isArray(files)) throw invalid('no "files" object')
  const entries = new Map<string, ManifestEntry>()
  for (const [path, value] of Object.entries(files)) {
    // A manifest names the files an export may remove: one naming a path outside the folder is refused whole.
    const problem = exportPathProblem(path)
    if (problem !== undefined) throw invalid(`files: path ${JSON.stringify(path)} ${problem}`)
    const { sha256, size, pending, adopted } = (value ?? {}) as Record<string, unknown>
    if (typeof sha256 !== 'string' || !SHA256_HEX.test(sha256) || typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
      throw invalid(`files: ${JSON.stringify(path)} needs a sha256 and a size`)
    }
    entries.set(path, { sha256, size, ...(pending === true ? { pending } : {}), ...(adopted === true ? { adopted } : {}) })
  }
  return {
    mirror: typeof mirror === 'string' ? mirror : null,
    exportedAt: typeof exportedAt === 'string' ? exportedAt : null,
    files: entries,
  }
}

/** The manifest's text: files sorted by path, so that two exports of one selection write the same file. */
export function manifestText(manifest: ExportManifest): Buffer {
  const files = Object.fromEntries([...manifest.files].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
  return Buffer.from(`${JSON.stringify({ mirror: manifest.mirror, exportedAt: manifest.exportedAt, files }, null, 1)}\n`)
}
