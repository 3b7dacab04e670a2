/**
 * The cache as a whole: the SQLite index, the files on disk and the shared
 * fills, opened together and reconciled at start-up so that the index and
 * the disk agree before the first request.
 */

import { mkdir, stat, type FileHandle, open } from 'node:fs/promises'
import { join } from 'node:path'
import { createHash, randomUUID } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { hostname } from 'node:os'
import { openDatabase, type SqliteDatabase } from './database.js'
import { createFileIndex, type FileIndex, type StoredFile } from './file-index.js'
import { createBlobStore, type BlobStore } from './blob-store.js'
import { createLeases } from './lease.js'
import type { RateBudget } from '../upstream/rate-budget.js'
import { createFillCoordinator, type FillCoordinator, type FillEvents } from './fill.js'

export interface StoreOptions extends FillEvents {
  dataDir: string
  /** Upstream attempts per fill. */
  fillAttempts?: number
  fillRetryBaseMs?: number
  /** Bandwidth budget the fills read upstream through. */
  budget?: RateBudget
  /** How often counted hits are written to the index. */
  hitFlushIntervalMs?: number
  /**
   * Hears of background writes that failed and that the store outlives: hit
   * counts kept for a later flush, a lease renewal to retry. Repeats of one
   * message come at most once a minute. Defaults to a line on stderr.
   */
  onError?: (message: string) => void
}

export interface StartupReport {
  files: number
  removedTemp: number
  /** Rows whose file had gone from disk. */
  droppedRows: number
  /** Files whose row was lost to a crash between rename and insert, re-hashed and kept. */
  adoptedFiles: number
  /** Files without a row whose content did not match their name, removed. */
  discardedFiles: number
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
const REPEATED_ERROR_QUIET_MS = 60_000

export async function openStore(options: StoreOptions): Promise<Store> {
  const { dataDir } = options
  const reportError = withoutRepeats(
    options.onError ?? ((message) => process.stderr.write(`sstream-proxy: ${message}\n`)),
    REPEATED_ERROR_QUIET_MS,
  )
  await mkdir(dataDir, { recursive: true })
  const db = openDatabase(join(dataDir, 'index.sqlite'))
  const index = createFileIndex(db)
  const leases = createLeases(db, { onError: reportError })
  // This process's temp folder lives as long as its lease: other processes
  // sharing the dataDir leave it alone, and clean it up once the lease lapses.
  const tempOwner = randomUUID()
  const tempLease = leases.tryAcquire(`tmp:${tempOwner}`)
  const blobs = createBlobStore(dataDir, tempOwner)
  const fills = createFillCoordinator({ ...options, blobs, index, attempts: options.fillAttempts, retryBaseMs: options.fillRetryBaseMs })
  const startup = await reconcile(index, blobs, db, (owner) => owner !== tempOwner && holderAlive(leases.holder(`tmp:${owner}`)?.owner))
  // Another process holding the write lock past the busy timeout, or a disk
  // gone read-only, must cost a report and a late count, not the process.
  const flushHits = (onFailure: string) => {
    try {
      index.flush()
    } catch (error) {
      reportError(`${onFailure}: ${error instanceof Error ? error.message : String(error)}`)
    }
  }
  const flushTimer = setInterval(() => flushHits('hit counts not written, kept for the next flush'), options.hitFlushIntervalMs ?? HIT_FLUSH_INTERVAL_MS)
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
      flushHits('hit counts not written before closing, dropped')
      tempLease?.release()
      db.close()
    },
  }
}

/**
 * Passes a message on unless the same one was passed on less than `quietMs`
 * ago; the next one passed on says how many were held back meanwhile. A
 * locked or read-only database fails every flush and every renewal alike, and
 * one line a minute says as much as one every few seconds.
 */
function withoutRepeats(report: (message: string) => void, quietMs: number): (message: string) => void {
  const lastReported = new Map<string, { at: number; heldBack: number }>()
  return (message) => {
    const now = Date.now()
    // Forget messages that have gone quiet, so that varied messages cannot pile up.
    for (const [seen, { at }] of lastReported) if (now - at >= quietMs && seen !== message) lastReported.delete(seen)
    const last = lastReported.get(message)
    if (last !== undefined && now - last.at < quietMs) {
      last.heldBack++
      return
    }
    report(last !== undefined && last.heldBack > 0 ? `${message} (${last.heldBack} more since the last report)` : message)
    lastReported.set(message, { at: now, heldBack: 0 })
  }
}

/**
 * Whether the process named by a lease owner (`host:pid:uuid`) may still be
 * running. On this host a dead pid settles it at once, so a restart right
 * after a crash cleans up; elsewhere, or for a live pid, the lease's expiry does.
 */
export function holderAlive(owner: string | undefined): boolean {
  if (owner === undefined) return false
  const [host, pid] = owner.split(':')
  if (host !== hostname()) return true
  try {
    process.kill(Number(pid), 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ESRCH'
  }
}

async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) hash.update(chunk as Buffer)
  return hash.digest('hex')
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
  let discardedFiles = 0
  for (const sha256 of onDisk) {
    if (rows.has(sha256)) continue
    // Files reach their final name only after verification and fsync, so a
    // file without a row most likely lost only its row (a crash between rename
    // and insert). It is re-hashed once before it is trusted: such files are
    // rare, and a file that is not what its name says must never be served.
    const path = blobs.blobPath(sha256)
    if ((await hashFile(path)) !== sha256) {
      await blobs.remove(sha256)
      discardedFiles++
      continue
    }
    const { size } = await stat(path)
    index.put({ sha256, size, path: `(recovered) ${sha256}` })
    adoptedFiles++
  }
  return { files: index.totals().files, removedTemp, droppedRows, adoptedFiles, discardedFiles }
}
