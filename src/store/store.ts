/**
 * The cache as a whole: the SQLite index (always local, in `dataDir`), the
 * object store that holds the files (the filesystem under `dataDir`, or an S3
 * bucket) and the shared fills, opened together and reconciled at start-up so
 * that the index and the store agree before the first request. For an S3
 * store the index is the proxy's answer to "is it stored?": rows are written
 * on commit and rebuilt from a listing at start-up (and again after the store
 * comes back, when it was down at start-up); a hit whose object has gone
 * drops its row and becomes a miss.
 */

import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import { hostname } from 'node:os'
import { openDatabase, type SqliteDatabase } from './database.js'
import { createFileIndex, type FileIndex } from './file-index.js'
import { createLeases } from './lease.js'
import type { RateBudget } from '../upstream/rate-budget.js'
import { createFillCoordinator, type FillCoordinator, type FillEvents, type FillPlanner, type FillTarget } from './fill.js'
import { createFilesystemStore } from './filesystem-store.js'
import { StoreAccessError, type ObjectStore, type RangeReader, type StoreHealth, type StoredObject, type StoreRequestObserver } from './object-store.js'
import { createStoreRequestMetrics, type StoreRequestMetrics } from '../metrics/store-requests.js'
import type { StoreConfig } from '../config/types.js'

export interface StoreOptions extends FillEvents {
  dataDir: string
  /** Where files live; default the filesystem under `dataDir`. */
  backend?: StoreConfig
  /** Where S3 credentials are read (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`); default `process.env`. */
  env?: NodeJS.ProcessEnv
  /** Upstream attempts per fill. */
  fillAttempts?: number
  fillRetryBaseMs?: number
  /** Bandwidth budget the fills read upstream through. */
  budget?: RateBudget
  /** Where each fill's bytes come from (a fleet's claims); default its upstream. */
  plan?: FillPlanner
  /** A file found in the store without a row (stored by another replica), now indexed. */
  onAdopted?: (sha256: string) => void
  /**
   * List the store again at every check (`storeCheckIntervalMs`), adopting
   * objects other replicas of a fleet stored and dropping rows of objects they
   * removed, so that the index (and `publish: "cached"`) follows the bucket.
   */
  relist?: boolean
  /** How often counted hits are written to the index. */
  hitFlushIntervalMs?: number
  /**
   * How often a store that is down is asked again, and a start-up listing it
   * missed retried; default 30 s. Abandoned uploads are looked for hourly.
   */
  storeCheckIntervalMs?: number
  /**
   * Hears of background writes that failed and that the store outlives: hit
   * counts kept for a later flush, a lease renewal to retry, a store that is
   * down. Repeats of one message come at most once a minute. Defaults to a
   * line on stderr.
   */
  onError?: (message: string) => void
}

export interface StartupReport {
  files: number
  removedTemp: number
  /** Rows whose file had gone from the store. */
  droppedRows: number
  /** Files without a row (a crash between commit and insert, or another proxy's), kept. */
  adoptedFiles: number
  /** Files without a row whose content did not match their name, removed. */
  discardedFiles: number
  /** Abandoned multipart uploads aborted (S3). */
  abortedUploads: number
  /** Set when the store could not be reached: the index was kept as it was, and is reconciled once the store answers. */
  storeUnavailable?: string
}

export interface StoreStatus extends StoreHealth {
  type: ObjectStore['type']
  location: string
}

export interface Store {
  readonly db: SqliteDatabase
  readonly index: FileIndex
  readonly objects: ObjectStore
  readonly fills: FillCoordinator
  readonly startup: StartupReport
  /**
   * Opens bytes `[start, end]` of a stored file; undefined (and the row
   * dropped) when the index or the store does not have it. Throws
   * `StoreUnavailableError` when the store cannot be reached.
   */
  openStored(sha256: string, start: number, end: number): Promise<RangeReader | undefined>
  /**
   * For a file the index does not have: whether an S3 store holds it at its
   * size (another replica of a fleet, or another proxy on the bucket, stored
   * it); if so its row is added. Always false for the filesystem store, and
   * while the S3 store is down.
   */
  adoptStored(target: FillTarget): Promise<boolean>
  /** What the store last answered, for /status and /metrics. */
  status(): StoreStatus
  /** Counts and latency of the requests sent to the store, for /metrics. */
  readonly requestMetrics: StoreRequestMetrics
  close(): Promise<void>
}

const HIT_FLUSH_INTERVAL_MS = 5_000
const REPEATED_ERROR_QUIET_MS = 60_000
const STORE_CHECK_INTERVAL_MS = 30_000
const MAINTENANCE_INTERVAL_MS = 3_600_000

/**
 * The object store the configuration names; S3 credentials come from the
 * environment. The AWS SDK is loaded only for an S3 store: it costs tens of MB
 * of memory that a filesystem store does not need.
 */
export async function createObjectStore(backend: StoreConfig, dataDir: string, owner: string, env: NodeJS.ProcessEnv, observeRequest?: StoreRequestObserver): Promise<ObjectStore> {
  if (backend.type === 'filesystem') return createFilesystemStore({ dataDir, owner })
  const accessKeyId = env.AWS_ACCESS_KEY_ID
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY
  if (!accessKeyId || !secretAccessKey) {
    throw new StoreAccessError('AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY', 'the S3 store needs both set in the environment')
  }
  const { createS3Store } = await import('./s3-store.js')
  return createS3Store({
    ...backend,
    credentials: { accessKeyId, secretAccessKey },
    dataDir,
    owner,
    abandonedUploadAgeMs: backend.abandonedUploadAge * 1000,
    observeRequest,
  })
}

export async function openStore(options: StoreOptions): Promise<Store> {
  const { dataDir } = options
  const reportError = withoutRepeats(
    options.onError ?? ((message) => process.stderr.write(`sstream-proxy: ${message}\n`)),
    REPEATED_ERROR_QUIET_MS,
  )
  await mkdir(dataDir, { recursive: true })
  // This process's spool folder lives as long as its lease: other processes
  // sharing the dataDir leave it alone, and clean it up once the lease lapses.
  const tempOwner = randomUUID()
  const requestMetrics = createStoreRequestMetrics()
  const objects = await createObjectStore(options.backend ?? { type: 'filesystem' }, dataDir, tempOwner, options.env ?? process.env, requestMetrics.observe)
  let reachable = true
  try {
    await objects.check()
  } catch (error) {
    if (error instanceof StoreAccessError) {
      objects.close()
      throw error
    }
    // A store that is down must not keep the metadata from being served.
    reachable = false
    reportError(`store at ${objects.location} unavailable at start-up, will retry: ${(error as Error).message}`)
  }
  const db = openDatabase(join(dataDir, 'index.sqlite'))
  const index = createFileIndex(db)
  const leases = createLeases(db, { onError: reportError })
  const tempLease = leases.tryAcquire(`tmp:${tempOwner}`)
  const fills = createFillCoordinator({ ...options, objects, index, attempts: options.fillAttempts, retryBaseMs: options.fillRetryBaseMs })
  const isLive = (owner: string) => owner !== tempOwner && holderAlive(leases.holder(`tmp:${owner}`)?.owner)
  let startup: StartupReport
  let reconciled = false
  const runReconcile = async () => {
    const report = await reconcile(index, objects, db, isLive)
    reconciled = true
    return report
  }
  try {
    if (!reachable) throw new Error(objects.health().lastError ?? 'unavailable')
    startup = { ...(await runReconcile()), abortedUploads: (await objects.maintain()).abortedUploads }
  } catch (error) {
    startup = { files: index.totals().files, removedTemp: 0, droppedRows: 0, adoptedFiles: 0, discardedFiles: 0, abortedUploads: 0, storeUnavailable: (error as Error).message }
  }
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
  // The store is asked again while it is down (so /status recovers without a
  // request), the start-up listing retried until it has run, and abandoned
  // uploads aborted hourly.
  let lastMaintenance = Date.now()
  let checking = false
  const checkTimer = setInterval(() => {
    if (checking) return
    checking = true
    void (async () => {
      try {
        if (!reconciled) {
          const report = await runReconcile()
          reportError(`store at ${objects.location} answers again: index reconciled (${report.files} files, ${report.droppedRows} rows dropped, ${report.adoptedFiles} adopted)`)
        } else if (objects.health().state === 'unavailable') {
          await objects.head('0'.repeat(64))
        } else if (options.relist === true) {
          for (const sha256 of await relist(index, objects, db)) options.onAdopted?.(sha256)
        }
        if (Date.now() - lastMaintenance >= MAINTENANCE_INTERVAL_MS) {
          lastMaintenance = Date.now()
          await objects.maintain()
        }
      } catch (error) {
        reportError(`store at ${objects.location}: ${(error as Error).message}`)
      } finally {
        checking = false
      }
    })()
  }, options.storeCheckIntervalMs ?? STORE_CHECK_INTERVAL_MS)
  checkTimer.unref()

  return {
    db,
    index,
    objects,
    fills,
    startup,
    requestMetrics,
    async openStored(sha256, start, end) {
      if (index.get(sha256) === undefined) return undefined
      const reader = await objects.openRange(sha256, start, end)
      if (reader === undefined) index.delete(sha256)
      return reader
    },
    async adoptStored(target) {
      if (objects.type !== 's3' || objects.health().state === 'unavailable') return false
      const size = await objects.head(target.sha256).catch(() => undefined)
      if (size !== target.size) return false
      index.put(target)
      options.onAdopted?.(target.sha256)
      return true
    },
    status: () => ({ type: objects.type, location: objects.location, ...objects.health() }),
    async close() {
      clearInterval(flushTimer)
      clearInterval(checkTimer)
      await fills.abortAll('shutting down')
      flushHits('hit counts not written before closing, dropped')
      tempLease?.release()
      db.close()
      objects.close()
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

async function reconcile(index: FileIndex, objects: ObjectStore, db: SqliteDatabase, isLive: (owner: string) => boolean): Promise<Omit<StartupReport, 'abortedUploads'>> {
  const listedAt = Date.now()
  const { removedTemp, discardedFiles, objects: stored } = await objects.recover({ isLive, indexed: (sha256) => index.get(sha256) !== undefined })
  const { droppedRows, adopted } = followListing(index, db, stored, listedAt)
  return { files: index.totals().files, removedTemp, droppedRows, adoptedFiles: adopted.length, discardedFiles }
}

/** Lists the store again (a fleet's replicas store and remove objects): the objects adopted. */
async function relist(index: FileIndex, objects: ObjectStore, db: SqliteDatabase): Promise<string[]> {
  const listedAt = Date.now()
  const stored: StoredObject[] = []
  for await (const object of objects.list()) stored.push(object)
  return followListing(index, db, stored, listedAt).adopted
}

/** Makes the index hold what a listing started at `listedAt` found: rows of objects gone are dropped, objects without a row adopted. */
function followListing(index: FileIndex, db: SqliteDatabase, stored: StoredObject[], listedAt: number): { droppedRows: number; adopted: string[] } {
  const inStore = new Map(stored.map((object) => [object.sha256, object.size]))
  let droppedRows = 0
  const adopted: string[] = []
  db.transaction(() => {
    for (const row of index.all()) {
      // A fill committed while the listing ran (a late reconcile) is kept.
      if (!inStore.has(row.sha256) && row.storedAt < listedAt) {
        index.delete(row.sha256)
        droppedRows++
      }
    }
    for (const [sha256, size] of inStore) {
      if (index.get(sha256) !== undefined) continue
      index.put({ sha256, size, path: `(recovered) ${sha256}` })
      adopted.push(sha256)
    }
  })()
  return { droppedRows, adopted }
}
