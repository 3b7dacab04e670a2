/**
 * A fill's bytes on local disk while it runs, hashed as they are written: the
 * filesystem store renames the spool into place once verified, the S3 store
 * uploads it in parts. Readers following a fill read the spool (an open
 * handle keeps reading after the spool is renamed or removed).
 */

import { createHash, randomBytes } from 'node:crypto'
import { mkdir, open, readdir, rm, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { VerificationError } from './verification-error.js'
import type { StoredObject } from './object-store.js'

export interface Spool {
  readonly path: string
  readonly handle: FileHandle
  readonly written: number
  write(chunks: Buffer[], bytes: number): Promise<void>
  /** Throws a `VerificationError` unless the spool holds exactly the target's bytes. */
  verify(): void
  /** Closes the handle and removes the file (when still there). */
  remove(): Promise<void>
}

/** A new spool for `target` in `dir` (created when missing). */
export async function createSpool(dir: string, target: StoredObject): Promise<Spool> {
  await mkdir(dir, { recursive: true })
  const path = join(dir, `${target.sha256}.${randomBytes(6).toString('hex')}.part`)
  const handle = await open(path, 'wx+', 0o644)
  const hash = createHash('sha256')
  let written = 0
  let digest: string | undefined
  return {
    path,
    handle,
    get written() {
      return written
    },
    async write(chunks, bytes) {
      if (digest !== undefined) throw new Error(`${path}: written after verification`)
      await writeAll(handle, path, chunks, bytes, written)
      // Hashed once written: a retried fill resumes exactly where the hash stopped.
      for (const chunk of chunks) hash.update(chunk)
      written += bytes
    },
    verify() {
      if (written !== target.size) throw new VerificationError(`${target.sha256}: ${written} bytes written, ${target.size} expected`)
      digest ??= hash.digest('hex')
      if (digest !== target.sha256) throw new VerificationError(`sha256 ${digest} does not match the signed metadata (${target.sha256})`)
    },
    async remove() {
      await handle.close().catch(() => undefined)
      await rm(path, { force: true })
    },
  }
}

/**
 * Removes the spool folders (`<tempParent>/<owner>/`) of processes for which
 * `isLive(owner)` is false; returns how many files they held.
 */
export async function removeStaleSpools(tempParent: string, isLive: (owner: string) => boolean): Promise<number> {
  await mkdir(tempParent, { recursive: true })
  let removed = 0
  for (const name of await readdir(tempParent)) {
    if (isLive(name)) continue
    const path = join(tempParent, name)
    removed += (await readdir(path).catch(() => [name])).length
    await rm(path, { force: true, recursive: true })
  }
  return removed
}

/**
 * `writev` may write fewer bytes than asked without failing (a disk that
 * fills up part-way does exactly that); writing the rest then fails with the
 * real cause. Counting the whole batch as written would commit a short file.
 */
async function writeAll(handle: FileHandle, path: string, batch: Buffer[], bytes: number, position: number): Promise<void> {
  let done = (await handle.writev(batch, position)).bytesWritten
  if (done === bytes) return
  const rest = Buffer.concat(batch)
  while (done < bytes) {
    const { bytesWritten } = await handle.write(rest, done, bytes - done, position + done)
    if (bytesWritten === 0) throw new Error(`${path}: write made no progress at byte ${position + done}`)
    done += bytesWritten
  }
}
