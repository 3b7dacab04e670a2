/**
 * Exclusive, expiring leases in the cache's SQLite database: what keeps two
 * prefetch passes of one mirror from running at once, in one process or in
 * several sharing a `dataDir`.
 *
 * Why a lease row rather than a lock file holding a pid: SQLite already
 * serialises writers across processes, so taking a lease is one atomic
 * transaction; a pid says nothing across containers sharing a volume (each
 * may be pid 1) or after pid reuse, and cannot be probed on another host. A
 * holder renews its lease while it works; one that crashed or was killed
 * stops renewing, and its lease lapses after `ttlMs` with nothing to clean up.
 */

import { randomUUID } from 'node:crypto'
import { hostname } from 'node:os'
import type { SqliteDatabase } from './database.js'

export interface Lease {
  readonly name: string
  /** False once the lease was released, or found taken over after a long stall. */
  readonly held: boolean
  /** Gives the lease up; never throws, as a lease that could not be removed lapses by itself. */
  release(): void
}

export interface LeaseHolder {
  owner: string
  expiresAt: number
}

export interface Leases {
  /** Takes `name` unless someone else holds it; the lease renews itself until released. */
  tryAcquire(name: string): Lease | undefined
  holder(name: string): LeaseHolder | undefined
}

/**
 * A lease whose taking and giving up wait on a store (the bucket of a fleet):
 * what the prefetcher and garbage collection hold. The database's leases are
 * one through `asyncLeases`.
 */
export interface AsyncLease {
  readonly name: string
  /** False once released, lost to a takeover, or expired without a renewal. */
  readonly held: boolean
  /** Gives the lease up; never throws, as a lease that could not be given up lapses by itself. */
  release(): Promise<void>
}

export interface AsyncLeaseHolder extends LeaseHolder {
  /** Where the holding replica is reached, for /status; absent for a process sharing `dataDir`. */
  advertise?: string
}

export interface AsyncLeases {
  tryAcquire(name: string): Promise<AsyncLease | undefined>
  holder(name: string): Promise<AsyncLeaseHolder | undefined>
}

/** The database's leases seen through the asynchronous interface. */
export function asyncLeases(leases: Leases): AsyncLeases {
  return {
    async tryAcquire(name) {
      const lease = leases.tryAcquire(name)
      if (lease === undefined) return undefined
      return {
        name,
        get held() {
          return lease.held
        },
        release: async () => lease.release(),
      }
    },
    holder: async (name) => leases.holder(name),
  }
}

export interface LeaseOptions {
  ttlMs?: number
  now?: () => number
  /** Hears of a renewal or release that failed; defaults to a line on stderr. */
  onError?: (message: string) => void
}

const DEFAULT_TTL_MS = 30_000

export function createLeases(db: SqliteDatabase, options: LeaseOptions = {}): Leases {
  const ttlMs = options.ttlMs ?? DEFAULT_TTL_MS
  const now = options.now ?? Date.now
  const onError = options.onError ?? ((message) => process.stderr.write(`sstream-proxy: ${message}\n`))
  const select = db.prepare<[string], { owner: string; expires_at: number }>('SELECT owner, expires_at FROM leases WHERE name = ?')
  const upsert = db.prepare(
    `INSERT INTO leases (name, owner, expires_at) VALUES (@name, @owner, @expiresAt)
     ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at`,
  )
  const renew = db.prepare('UPDATE leases SET expires_at = @expiresAt WHERE name = @name AND owner = @owner')
  const remove = db.prepare('DELETE FROM leases WHERE name = ? AND owner = ?')
  const take = db.transaction((name: string, owner: string) => {
    const row = select.get(name)
    if (row !== undefined && row.expires_at > now()) return false
    upsert.run({ name, owner, expiresAt: now() + ttlMs })
    return true
  })

  return {
    tryAcquire(name) {
      // A fresh owner per acquisition: one process cannot take the same lease twice either.
      const owner = `${hostname()}:${process.pid}:${randomUUID()}`
      if (!(take.immediate(name, owner) as boolean)) return undefined
      let held = true
      const renewEveryMs = ttlMs / 3
      const timer = setInterval(() => {
        // A closed database: the process is shutting down and the lease goes with it.
        if (!db.open) return stop()
        try {
          if (renew.run({ name, owner, expiresAt: now() + ttlMs }).changes === 0) stop()
        } catch (error) {
          // Another connection holding the write lock past the busy timeout, or
          // a read-only or failing disk. The lease is still ours until it
          // expires, and what it protects (this process's temp files, a running
          // pass) is lost to whoever takes it over then, so keep trying.
          onError(`lease ${name} not renewed, retrying in ${renewEveryMs} ms: ${messageOf(error)}`)
        }
      }, renewEveryMs)
      timer.unref()
      function stop() {
        held = false
        clearInterval(timer)
      }
      return {
        name,
        get held() {
          return held
        },
        release() {
          if (!held) return
          stop()
          if (!db.open) return
          try {
            remove.run(name, owner)
          } catch (error) {
            // Not worth failing a shutdown or a finished pass over: the lease lapses on its own.
            onError(`lease ${name} not released, it lapses within ${ttlMs} ms: ${messageOf(error)}`)
          }
        },
      }
    },
    holder(name) {
      const row = select.get(name)
      return row === undefined || row.expires_at <= now() ? undefined : { owner: row.owner, expiresAt: row.expires_at }
    },
  }
}

const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error))
