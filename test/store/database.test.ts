import assert from 'node:assert/strict'
import { after, describe, test } from 'node:test'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { DatabaseVersionError, SCHEMA_VERSION, openDatabase } from '../../src/store/database.js'

const dirs: string[] = []
async function tempFile(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sstream-db-'))
  dirs.push(dir)
  return join(dir, 'index.sqlite')
}
after(() => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))))

const tables = (db: Database.Database) =>
  db
    .prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
    .all()
    .map((row) => row.name)

describe('openDatabase', () => {
  test('creates the schema at the current version, in WAL mode', async () => {
    const file = await tempFile()
    const db = openDatabase(file)
    try {
      assert.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION)
      assert.equal(db.pragma('journal_mode', { simple: true }), 'wal')
      assert.ok(tables(db).includes('files'))
      assert.ok(tables(db).includes('passes'))
    } finally {
      db.close()
    }
  })

  test('reopening runs no migration again and keeps the data', async () => {
    const file = await tempFile()
    const first = openDatabase(file)
    first.prepare('INSERT INTO files (sha256, size, path, stored_at) VALUES (?, ?, ?, ?)').run('a'.repeat(64), 3, 'x/y', 1)
    first.close()
    // A second run of the first migration would fail on CREATE TABLE files.
    const second = openDatabase(file)
    try {
      assert.equal(second.pragma('user_version', { simple: true }), SCHEMA_VERSION)
      assert.deepEqual(second.prepare('SELECT sha256, size, path FROM files').all(), [{ sha256: 'a'.repeat(64), size: 3, path: 'x/y' }])
    } finally {
      second.close()
    }
  })

  test('an older database is upgraded by running only the migrations it has not seen', async () => {
    const file = await tempFile()
    // A database written by a release that knew only the first migration.
    const old = new Database(file)
    old.exec(`CREATE TABLE files (
      sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL, path TEXT NOT NULL,
      stored_at INTEGER NOT NULL, last_access INTEGER, hits INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID`)
    old.prepare('INSERT INTO files (sha256, size, path, stored_at) VALUES (?, ?, ?, ?)').run('b'.repeat(64), 7, 'kept', 1)
    old.pragma('user_version = 1')
    old.close()

    const fresh = openDatabase(await tempFile())
    const expected = tables(fresh)
    fresh.close()

    const db = openDatabase(file)
    try {
      assert.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION)
      assert.deepEqual(tables(db), expected)
      assert.deepEqual(db.prepare('SELECT path FROM files').all(), [{ path: 'kept' }])
    } finally {
      db.close()
    }
  })

  test('a database from a newer release is refused with a message naming the file and both versions', async () => {
    const file = await tempFile()
    const newer = new Database(file)
    newer.pragma(`user_version = ${SCHEMA_VERSION + 1}`)
    newer.close()

    assert.throws(
      () => openDatabase(file),
      (error: unknown) => {
        assert.ok(error instanceof DatabaseVersionError)
        assert.ok(error.message.includes(file), error.message)
        assert.ok(error.message.includes(`schema version ${SCHEMA_VERSION + 1}`), error.message)
        assert.ok(error.message.includes(`(${SCHEMA_VERSION})`), error.message)
        assert.match(error.message, /upgrade sstream-proxy/)
        assert.doesNotMatch(error.message, /\n/)
        return true
      },
    )
    // Refused without touching it: nothing was migrated.
    const check = new Database(file)
    try {
      assert.equal(check.pragma('user_version', { simple: true }), SCHEMA_VERSION + 1)
      assert.deepEqual(tables(check), [])
    } finally {
      check.close()
    }
  })
})
