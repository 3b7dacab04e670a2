import assert from 'node:assert/strict'
import { after, afterEach, beforeEach, describe, test } from 'node:test'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { openDatabase, type SqliteDatabase } from '../../src/store/database.js'
import { createLeases } from '../../src/store/lease.js'

const TTL_MS = 90
// Short enough that a renewal blocked by another writer fails within one renewal interval.
const BUSY_TIMEOUT_MS = 10

async function until(condition: () => boolean, what: string, timeoutMs = 2_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

describe('createLeases', () => {
  const dirs: string[] = []
  let file: string
  let db: SqliteDatabase
  let clock: number
  let errors: string[]

  beforeEach(async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sstream-lease-'))
    dirs.push(dir)
    file = join(dir, 'index.sqlite')
    db = openDatabase(file)
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`)
    clock = 1_000
    errors = []
  })
  afterEach(() => {
    if (db.open) db.close()
  })
  after(async () => {
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })))
  })

  const leasesOf = () => createLeases(db, { ttlMs: TTL_MS, now: () => clock, onError: (message) => errors.push(message) })
  /** The lease's expiry as another connection sees it: what other processes go by. */
  const expiryOnDisk = (name: string) => {
    const reader = new Database(file, { readonly: true })
    try {
      return (reader.prepare('SELECT expires_at FROM leases WHERE name = ?').get(name) as { expires_at: number } | undefined)?.expires_at
    } finally {
      reader.close()
    }
  }
  /** Holds the database's write lock from another connection, as another process or a sqlite3 shell would. */
  const holdWriteLock = () => {
    const other = new Database(file)
    other.exec('BEGIN IMMEDIATE')
    return () => {
      other.exec('COMMIT')
      other.close()
    }
  }

  test('a renewal that fails while another connection holds the write lock is reported and retried until it succeeds', async () => {
    const lease = leasesOf().tryAcquire('tmp:owner')
    assert.ok(lease)
    try {
      assert.equal(expiryOnDisk('tmp:owner'), 1_000 + TTL_MS)
      const releaseLock = holdWriteLock()
      try {
        clock = 2_000
        await until(() => errors.length >= 2, 'two failed renewals')
        assert.match(errors[0] ?? '', /^lease tmp:owner not renewed, retrying in 30 ms: database is locked$/)
        assert.equal(lease.held, true)
      } finally {
        releaseLock()
      }
      await until(() => expiryOnDisk('tmp:owner') === 2_000 + TTL_MS, 'a renewal after the lock was released')
      assert.equal(lease.held, true)
    } finally {
      lease.release()
    }
  })

  test('a lease taken over by another owner is given up at its next renewal', async () => {
    const lease = leasesOf().tryAcquire('prefetch:stable')
    assert.ok(lease)
    db.prepare("UPDATE leases SET owner = 'elsewhere:1:x' WHERE name = 'prefetch:stable'").run()
    await until(() => !lease.held, 'the lease to be given up')
    assert.deepEqual(errors, [])
  })

  test('renewal stops quietly once the database is closed', async () => {
    const lease = leasesOf().tryAcquire('tmp:owner')
    assert.ok(lease)
    db.close()
    await until(() => !lease.held, 'the lease to be given up')
    assert.deepEqual(errors, [])
  })

  test('release while another connection holds the write lock reports instead of throwing, and the lease lapses', () => {
    const leases = leasesOf()
    const lease = leases.tryAcquire('tmp:owner')
    assert.ok(lease)
    const releaseLock = holdWriteLock()
    try {
      assert.doesNotThrow(() => lease.release())
    } finally {
      releaseLock()
    }
    assert.equal(lease.held, false)
    assert.match(errors[0] ?? '', /^lease tmp:owner not released, it lapses within 90 ms: database is locked$/)
    clock += TTL_MS
    assert.equal(leases.holder('tmp:owner'), undefined)
  })
})
