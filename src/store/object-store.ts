/**
 * The seam between the cache and where its files live (design note 2): the
 * filesystem under `dataDir` or a bucket in an S3 object store. Objects are
 * keyed by sha256. Hits read byte ranges; fills write through a writer whose
 * `commit()` makes the object visible only once its size and sha256 are
 * verified. The fill coordinator, the range senders and the read buffers sit
 * above this interface and do not know which store they talk to; one contract
 * suite (test/store/store-contract.ts) pins down what both stores do.
 */

import type { RecordStore } from './s3-records.js'

/** Reads bytes at positions, as a `FileHandle` does (a `FileHandle` is one). */
export interface RangeReader {
  /**
   * Reads up to `length` bytes at `position` into `buffer` at `offset`; fewer
   * when fewer are there or ready, 0 only at the end. A reader on an object
   * store streams forward: each read must start where the last one ended.
   */
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>
  /**
   * Streaming readers only: up to `length` bytes at `position` as the store's
   * own chunks, handed over without a copy (no one else writes to them);
   * empty only at the end. Same rules as `read` otherwise.
   */
  readChunks?(length: number, position: number): Promise<Buffer[]>
  close(): Promise<void>
}

export interface StoredObject {
  sha256: string
  size: number
}

export interface ObjectWriter {
  /** Bytes written so far. */
  readonly written: number
  /** Appends `bytes` bytes (the sum of the chunks' lengths) at `written`. */
  write(chunks: Buffer[], bytes: number): Promise<void>
  /**
   * A reader over the bytes written so far (it keeps reading what a later
   * write adds). Fails with ENOENT once the writer has committed or discarded:
   * the reader then goes to the store.
   */
  openWritten(): Promise<RangeReader>
  /** Throws a `VerificationError` unless exactly the target's size was written and it hashes to its sha256. */
  verify(): void
  /** Verifies, then makes the object visible under its sha256. */
  commit(): Promise<void>
  /** Drops everything written; nothing becomes visible. Safe to call after a failure. */
  discard(): Promise<void>
}

export interface WriterOptions {
  /**
   * Another writer (another replica of a fleet) may store the same object
   * meanwhile: this one only spools while it is written, and at commit stores
   * it only when the store does not hold it yet. Without it an S3 writer
   * uploads parts as it goes. The filesystem store ignores it.
   */
  storedElsewhere?: boolean
}

export interface RecoverOptions {
  /** False for the temp files of a process that is gone: they are removed. */
  isLive(owner: string): boolean
  /** True when the index has a row for the object. */
  indexed(sha256: string): boolean
}

export interface RecoveryReport {
  /** Temp files of interrupted fills, deleted. */
  removedTemp: number
  /** Objects without a row that did not hash to their name, removed (filesystem). */
  discardedFiles: number
  /** Every stored object. */
  objects: StoredObject[]
}

export interface MaintenanceReport {
  /** Multipart uploads older than the set age, aborted (S3). */
  abortedUploads: number
}

/** What the store last answered, for /status and /metrics. */
export interface StoreHealth {
  /** `unknown` until the first answer; `unavailable` while requests fail. */
  state: 'ok' | 'unavailable' | 'unknown'
  /** The last failure's message, kept after the store recovers; null when none. */
  lastError: string | null
  /** When `state` last changed (ISO), or null. */
  since: string | null
  /** Requests to the store that failed since start. */
  errors: number
}

/**
 * How a request to the store ended: `ok`; `not_found` (an answer like any
 * other); `refused`, any other 4xx (denied, a precondition such as
 * `If-None-Match: *` that failed); `error`, a 5xx or no answer at all.
 */
export type StoreRequestOutcome = 'ok' | 'not_found' | 'refused' | 'error'

/** Hears of each request a store sends (`operation` as the store's API names it, e.g. `GetObject`), for /metrics. */
export type StoreRequestObserver = (operation: string, outcome: StoreRequestOutcome, seconds: number) => void

export interface ObjectStore {
  readonly type: 'filesystem' | 's3'
  /** Where the objects live, for logs and /status: a folder, or `s3://bucket/prefix at endpoint`. */
  readonly location: string
  /**
   * True when a stored object's readers read at any position, in any order,
   * and opening one is cheap (the filesystem): downloads of one file then
   * share the chunks they read (shared-chunks.ts). An S3 reader streams forward.
   */
  readonly positionalReads?: boolean
  /** The local path of a stored object when the store is a local filesystem (export links it). */
  localPath?(sha256: string): string
  /**
   * Checks at start-up that the store can be used: throws `StoreAccessError`
   * for what the operator must fix (credentials, bucket, permissions) and any
   * other error when the store could not be reached (the proxy starts anyway).
   */
  check(): Promise<void>
  /** Bytes `[start, end]` of a stored object; undefined when the object is not there. */
  openRange(sha256: string, start: number, end: number): Promise<RangeReader | undefined>
  /** The stored object's size, or undefined when it is not there. */
  head(sha256: string): Promise<number | undefined>
  createWriter(target: StoredObject, options?: WriterOptions): Promise<ObjectWriter>
  /** Removes the object; removing one that is not there is not an error. */
  remove(sha256: string): Promise<void>
  list(): AsyncIterable<StoredObject>
  /** Run once at start-up, before serving. */
  recover(options: RecoverOptions): Promise<RecoveryReport>
  /** Periodic clean-up (abandoned multipart uploads); also run at start-up. */
  maintain(): Promise<MaintenanceReport>
  health(): StoreHealth
  /** Conditional JSON records beside the objects, which replicas of a fleet agree through (S3 only). */
  readonly records?: RecordStore
  close(): void
}

/**
 * The store refused in a way only the operator can mend (wrong credentials,
 * a missing bucket, no write permission): the proxy says so in one line and
 * exits 2. `key` is the configuration key or variable to look at.
 */
export class StoreAccessError extends Error {
  override name = 'StoreAccessError'
  constructor(
    readonly key: string,
    readonly problem: string,
  ) {
    super(`${key}: ${problem}`)
  }
}

/** The store could not be reached or failed (network, 5xx): the proxy keeps running and retries. */
export class StoreUnavailableError extends Error {
  override name = 'StoreUnavailableError'
}
