/**
 * The cache as a whole: the SQLite index, the files on disk and the shared
 * fills, opened together and reconciled at start-up so that the index and
 * the disk agree before the first request.
 */

import { mkdir, stat, type FileHandle, open } from 'node:fs/promises'
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import { openDatabase, type SqliteDatabase } from './database.js'
import { createFileIndex, type FileIndex, type StoredFile } from './file-index.js'
import { createBlobStore, type BlobStore } from './blob-store.js'
import { createLeases } from './lease.js'
import { createFillCoordinator, type FillCoordinator, type FillEvents } from './fill.js'

export interface StoreOptions extends FillEvents {
  dataDir: string
  /** Upstream attempts per fill. */
  fillAttempts?: number
  fillRetryBaseMs?: number
}

export interface StartupReport {
  files: number
  removedTemp: number
  /** Rows whose file had gone from disk. */
  droppedRows: number
  /** Verified files whose row was lost to a crash between rename and insert. */
  adoptedFiles: number
}

export interface Store {
  readonly db: SqliteDatabase
  readonly index: FileIndex
  readonly blobs: BlobStore
  readonly fills: FillCoordinator
  readonly startup: StartupReport
  /** Opens a stored file for reading; undefined (and the row dropped) when it is not on disk. */
  openStored(sha256: string): Promise<{ file: StoredFile; handle: FileHandle } | undefined>
  close(): Promise<void>
}

const HIT_FLUSH_INTERVAL_MS = 5_000

export async function openStore(options: StoreOptions): Promise<Store> {
  const { dataDir } = options
  await mkdir(dataDir, { recursive: true })
  const db = openDatabase(join(dataDir, 'index.sqlite'))
  const index = createFileIndex(db)
  const leases = createLeases(db)
  // This process's temp folder lives as long as its lease: other processes
  // sharing the dataDir leave it alone, and clean it up once the lease lapses.
  const tempOwner = randomUUID()
  const tempLease = leases.tryAcquire(`tmp:${tempOwner}`)
  const blobs = createBlobStore(dataDir, tempOwner)
  const fills = createFillCoordinator({ ...options, blobs, index, attempts: options.fillAttempts, retryBaseMs: options.fillRetryBaseMs })
  const startup = await reconcile(index, blobs, db, (owner) => owner !== tempOwner && leases.holder(`tmp:${owner}`) !== undefined)
  const flushTimer = setInterval(() => index.flush(), HIT_FLUSH_INTERVAL_MS)
  flushTimer.unref()

  return {
    db,
    index,
    blobs,
    fills,
    startup,
    async openStored(sha256) {
      const file = index.get(sha256)
      if (file === undefined) return undefined
      try {
        return { file, handle: await open(blobs.blobPath(sha256), 'r') }
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
        index.delete(sha256)
        return undefined
      }
    },
    async close() {
      clearInterval(flushTimer)
      await fills.abortAll('shutting down')
      index.flush()
      tempLease?.release()
      db.close()
    },
  }
}

async function reconcile(index: FileIndex, blobs: BlobStore, db: SqliteDatabase, isLive: (owner: string) => boolean): Promise<StartupReport> {
  const { removedTemp, onDisk } = await blobs.recover(isLive)
  let droppedRows = 0
  let adoptedFiles = 0
  const rows = new Set<string>()
  db.transaction(() => {
    for (const row of index.all()) {
      rows.add(row.sha256)
      if (!onDisk.has(row.sha256)) {
        index.delete(row.sha256)
        droppedRows++
      }
    }
  })()
  for (const sha256 of onDisk) {
    if (rows.has(sha256)) continue
    // Files reach their final name only after verification and fsync, so a
    // file without a row lost only its row; keep it rather than re-fetch it.
    const { size } = await stat(blobs.blobPath(sha256))
    index.put({ sha256, size, path: `(recovered) ${sha256}` })
    adoptedFiles++
  }
  return { files: index.totals().files, removedTemp, droppedRows, adoptedFiles }
}
