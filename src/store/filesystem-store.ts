/**
 * The default store: files under `dataDir/blobs/<first two hex digits>/<sha256>`,
 * so that a file named by several products or mirrors is stored once. A file
 * reaches its final name only by rename after it was verified and fsynced;
 * a fill's spool lives in a per-process folder under `tmp/`. Start-up removes
 * the folders of processes that are gone, so a crash never leaves a
 * half-written file where it would be served, and a `prefetch` or `gc` started
 * beside a running `serve` does not delete the spools `serve` is filling.
 */

import { mkdir, open, readdir, rename, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { hashFile, syncFolder } from './durable-file.js'
import { createSpool, removeStaleSpools } from './spool.js'
import type { ObjectStore, ObjectWriter, RangeReader, StoredObject } from './object-store.js'

const SHA256_HEX = /^[0-9a-f]{64}$/

export interface FilesystemStoreOptions {
  dataDir: string
  /** Names this process's spool folder, `tmp/<owner>/`. */
  owner: string
}

export function createFilesystemStore(options: FilesystemStoreOptions): ObjectStore {
  const { dataDir, owner } = options
  const blobRoot = join(dataDir, 'blobs')
  const tempParent = join(dataDir, 'tmp')
  const tempRoot = join(tempParent, owner)
  const blobDir = (sha256: string) => join(blobRoot, sha256.slice(0, 2))
  const blobPath = (sha256: string) => join(blobDir(sha256), sha256)

  async function openIfThere(sha256: string): Promise<RangeReader | undefined> {
    try {
      return await open(blobPath(sha256), 'r')
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw error
    }
  }

  async function* list(): AsyncIterable<StoredObject> {
    for (const prefix of await readdir(blobRoot).catch(() => [])) {
      const entries = await readdir(join(blobRoot, prefix), { withFileTypes: true }).catch(() => [])
      for (const entry of entries) {
        // Only where blobPath looks: a file under another prefix is not a stored file.
        if (!entry.isFile() || !SHA256_HEX.test(entry.name) || !entry.name.startsWith(prefix)) continue
        const size = await stat(join(blobRoot, prefix, entry.name)).then((stats) => stats.size, () => undefined)
        if (size !== undefined) yield { sha256: entry.name, size }
      }
    }
  }

  return {
    type: 'filesystem',
    location: blobRoot,
    positionalReads: true,
    localPath: blobPath,
    async check() {
      await mkdir(blobRoot, { recursive: true })
    },
    openRange: (sha256) => openIfThere(sha256),
    async head(sha256) {
      return stat(blobPath(sha256)).then(
        (stats) => stats.size,
        (error: NodeJS.ErrnoException) => {
          if (error.code === 'ENOENT') return undefined
          throw error
        },
      )
    },
    async createWriter(target): Promise<ObjectWriter> {
      const spool = await createSpool(tempRoot, target)
      let ended = false
      return {
        get written() {
          return spool.written
        },
        write: (chunks, bytes) => spool.write(chunks, bytes),
        openWritten: () => (ended ? Promise.reject(Object.assign(new Error(`${spool.path}: fill ended`), { code: 'ENOENT' })) : open(spool.path, 'r')),
        verify: () => spool.verify(),
        async commit() {
          spool.verify()
          await spool.handle.sync()
          await spool.handle.close()
          const dir = blobDir(target.sha256)
          await mkdir(dir, { recursive: true })
          await rename(spool.path, blobPath(target.sha256))
          ended = true
          await syncFolder(dir)
        },
        async discard() {
          ended = true
          await spool.remove()
        },
      }
    },
    async remove(sha256) {
      await unlink(blobPath(sha256)).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOENT') throw error
      })
    },
    list,
    async recover({ isLive, indexed }) {
      await mkdir(blobRoot, { recursive: true })
      const removedTemp = await removeStaleSpools(tempParent, isLive)
      let discardedFiles = 0
      const objects: StoredObject[] = []
      for await (const object of list()) {
        // Files reach their final name only after verification and fsync, so a
        // file without a row most likely lost only its row (a crash between rename
        // and insert). It is re-hashed once before it is trusted: such files are
        // rare, and a file that is not what its name says must never be served.
        if (!indexed(object.sha256) && (await hashFile(blobPath(object.sha256))).sha256 !== object.sha256) {
          await unlink(blobPath(object.sha256)).catch(() => undefined)
          discardedFiles++
          continue
        }
        objects.push(object)
      }
      return { removedTemp, discardedFiles, objects }
    },
    maintain: () => Promise.resolve({ abortedUploads: 0 }),
    // A disk that fails shows in the fills and the log; the folder is always "reachable".
    health: () => ({ state: 'ok', lastError: null, since: null, errors: 0 }),
    close: () => undefined,
  }
}

