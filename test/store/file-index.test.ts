import assert from 'node:assert/strict'
import { after, beforeEach, describe, test } from 'node:test'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { openDatabase, type SqliteDatabase } from '../../src/store/database.js'
import { createFileIndex, type FileIndex } from '../../src/store/file-index.js'

const A = 'a'.repeat(64)
const B = 'b'.repeat(64)

describe('createFileIndex', () => {
  const dirs: string[] = []
  let file: string
  let db: SqliteDatabase
  let clock: number
  let index: FileIndex

  beforeEach(async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sstream-index-'))
    dirs.push(dir)
    file = join(dir, 'index.sqlite')
    db = openDatabase(file)
    clock = 1_000
    index = createFileIndex(db, () => clock)
  })
  after(async () => {
    if (db.open) db.close()
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })))
  })

  /** Reads the row as another connection sees it: what is really on disk. */
  const rowOnDisk = (sha256: string) => {
    const other = new Database(file, { readonly: true })
    try {
      return other.prepare('SELECT hits, last_access FROM files WHERE sha256 = ?').get(sha256)
    } finally {
      other.close()
    }
  }

  test('put stores a row that get returns, with the time it was stored', () => {
    assert.equal(index.get(A), undefined)
    index.put({ sha256: A, size: 10, path: 'noble/squashfs' })
    assert.deepEqual(index.get(A), { sha256: A, size: 10, path: 'noble/squashfs', storedAt: 1_000, lastAccess: null, hits: 0 })
  })

  test('put of a known sha256 replaces size, path and time but keeps the hits', () => {
    index.put({ sha256: A, size: 10, path: 'first' })
    index.recordHit(A)
    index.flush()
    clock = 2_000
    index.put({ sha256: A, size: 11, path: 'second' })
    assert.deepEqual(index.get(A), { sha256: A, size: 11, path: 'second', storedAt: 2_000, lastAccess: 1_000, hits: 1 })
    assert.equal(index.all().length, 1)
  })

  test('delete removes the row; deleting an unknown sha256 is harmless', () => {
    index.put({ sha256: A, size: 10, path: 'a' })
    index.delete(A)
    assert.equal(index.get(A), undefined)
    index.delete(B)
    assert.deepEqual(index.all(), [])
  })

  test('totals count the files and sum their sizes, zero when empty', () => {
    assert.deepEqual(index.totals(), { files: 0, bytes: 0 })
    index.put({ sha256: A, size: 10, path: 'a' })
    index.put({ sha256: B, size: 32, path: 'b' })
    assert.deepEqual(index.totals(), { files: 2, bytes: 42 })
    index.delete(A)
    assert.deepEqual(index.totals(), { files: 1, bytes: 32 })
  })

  test('all lists every row ordered by path', () => {
    index.put({ sha256: A, size: 1, path: 'z/last' })
    index.put({ sha256: B, size: 2, path: 'a/first' })
    assert.deepEqual(
      index.all().map((row) => row.path),
      ['a/first', 'z/last'],
    )
  })

  test('hits are counted in memory and written only by flush', () => {
    index.put({ sha256: A, size: 10, path: 'a' })
    index.recordHit(A)
    clock = 1_500
    index.recordHit(A)
    index.recordHit(A)
    assert.deepEqual(rowOnDisk(A), { hits: 0, last_access: null })
    assert.equal(index.get(A)?.hits, 0)

    index.flush()
    assert.deepEqual(rowOnDisk(A), { hits: 3, last_access: 1_500 })

    // A second flush with nothing new changes nothing.
    index.flush()
    assert.deepEqual(rowOnDisk(A), { hits: 3, last_access: 1_500 })
    clock = 3_000
    index.recordHit(A)
    index.flush()
    assert.deepEqual(index.get(A), { sha256: A, size: 10, path: 'a', storedAt: 1_000, lastAccess: 3_000, hits: 4 })
  })

  test('pending hits of a deleted file are dropped, not written to a later row of the same sha256', () => {
    index.put({ sha256: A, size: 10, path: 'a' })
    index.recordHit(A)
    index.delete(A)
    index.put({ sha256: A, size: 10, path: 'a' })
    index.flush()
    assert.equal(index.get(A)?.hits, 0)
  })

  test('a flush that cannot write keeps its hits for the next flush, with those counted meanwhile', () => {
    index.put({ sha256: A, size: 10, path: 'a' })
    index.recordHit(A)
    index.recordHit(A)
    db.pragma('busy_timeout = 10')
    const other = new Database(file)
    other.exec('BEGIN IMMEDIATE')
    try {
      assert.throws(() => index.flush(), { code: 'SQLITE_BUSY' })
      clock = 2_000
      index.recordHit(A)
    } finally {
      other.exec('COMMIT')
      other.close()
    }
    index.flush()
    assert.deepEqual(rowOnDisk(A), { hits: 3, last_access: 2_000 })
  })

  test('hits of a file without a row are ignored by flush', () => {
    index.recordHit(B)
    assert.doesNotThrow(() => index.flush())
    assert.equal(index.get(B), undefined)
  })
})
