/**
 * Files on disk, addressed by sha256 so that a file named by several products
 * or several mirrors is stored once. A file reaches its final name only by
 * rename after it was verified and fsynced; everything else lives in a
 * per-process folder under `tmp/`. Start-up removes the folders of processes
 * that are gone, so a crash can never leave a half-written file where it would
 * be served, and a `prefetch` or `gc` started beside a running `serve` does not
 * delete the temp files `serve` is filling.
 */

import { mkdir, open, readdir, rename, rm, unlink, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'

const SHA256_HEX = /^[0-9a-f]{64}$/

export interface TempFile {
  path: string
  handle: FileHandle
}

export interface RecoveryReport {
  /** Temp files of interrupted fills, deleted. */
  removedTemp: number
  /** The sha256 of every final file on disk. */
  onDisk: Set<string>
}

export interface BlobStore {
  readonly root: string
  blobPath(sha256: string): string
  createTemp(sha256: string): Promise<TempFile>
  /** Makes a verified temp file durable under its final name. */
  commit(temp: TempFile, sha256: string): Promise<void>
  discard(temp: TempFile): Promise<void>
  remove(sha256: string): Promise<void>
  /**
   * Removes temp files of processes for which `isLive(owner)` is false and
   * lists the final files; run once at start-up, before serving.
   */
  recover(isLive: (owner: string) => boolean): Promise<RecoveryReport>
}

/** `owner` names this process's temp folder, `tmp/<owner>/`. */
export function createBlobStore(dataDir: string, owner: string): BlobStore {
  const blobRoot = join(dataDir, 'blobs')
  const tempParent = join(dataDir, 'tmp')
  const tempRoot = join(tempParent, owner)
  const blobDir = (sha256: string) => join(blobRoot, sha256.slice(0, 2))
  const blobPath = (sha256: string) => join(blobDir(sha256), sha256)

  async function fsyncDirectory(dir: string): Promise<void> {
    const handle = await open(dir, 'r')
    try {
      await handle.sync()
    } finally {
      await handle.close()
    }
  }

  return {
    root: dataDir,
    blobPath,
    async createTemp(sha256) {
      await mkdir(tempRoot, { recursive: true })
      const path = join(tempRoot, `${sha256}.${randomBytes(6).toString('hex')}.part`)
      return { path, handle: await open(path, 'wx+', 0o644) }
    },
    async commit(temp, sha256) {
      await temp.handle.sync()
      await temp.handle.close()
      const dir = blobDir(sha256)
      await mkdir(dir, { recursive: true })
      await rename(temp.path, blobPath(sha256))
      await fsyncDirectory(dir)
    },
    async discard(temp) {
      await temp.handle.close().catch(() => undefined)
      await rm(temp.path, { force: true })
    },
    async remove(sha256) {
      await unlink(blobPath(sha256)).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOENT') throw error
      })
    },
    async recover(isLive) {
      await mkdir(blobRoot, { recursive: true })
      await mkdir(tempParent, { recursive: true })
      let removedTemp = 0
      for (const name of await readdir(tempParent)) {
        if (isLive(name)) continue
        const path = join(tempParent, name)
        removedTemp += (await readdir(path).catch(() => [name])).length
        await rm(path, { force: true, recursive: true })
      }
      const onDisk = new Set<string>()
      for (const prefix of await readdir(blobRoot)) {
        const entries = await readdir(join(blobRoot, prefix), { withFileTypes: true }).catch(() => [])
        for (const entry of entries) {
          // Only where blobPath looks: a file under another prefix is not a stored file.
          if (entry.isFile() && SHA256_HEX.test(entry.name) && entry.name.startsWith(prefix)) onDisk.add(entry.name)
        }
      }
      return { removedTemp, onDisk }
    },
  }
}
