/**
 * The cache's SQLite index: one database file under `dataDir`, in WAL mode so
 * readers never wait on the writer, with a schema versioned by `user_version`
 * and upgraded in order by the migrations below.
 */

import Database from 'better-sqlite3'

export type SqliteDatabase = Database.Database

// Append only: a released migration is never edited, so any older database
// upgrades by running the ones it has not seen.
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE files (
     sha256      TEXT PRIMARY KEY,
     size        INTEGER NOT NULL,
     path        TEXT NOT NULL,
     stored_at   INTEGER NOT NULL,
     last_access INTEGER,
     hits        INTEGER NOT NULL DEFAULT 0
   ) WITHOUT ROWID`,
  `CREATE TABLE passes (
     id          INTEGER PRIMARY KEY AUTOINCREMENT,
     mirror      TEXT NOT NULL,
     started_at  INTEGER NOT NULL,
     finished_at INTEGER,
     result      TEXT NOT NULL,
     files_done  INTEGER NOT NULL DEFAULT 0,
     files_total INTEGER NOT NULL DEFAULT 0,
     bytes_done  INTEGER NOT NULL DEFAULT 0,
     bytes_total INTEGER NOT NULL DEFAULT 0,
     errors      TEXT NOT NULL DEFAULT '[]'
   );
   CREATE INDEX passes_by_mirror ON passes (mirror, id)`,
  `CREATE TABLE leases (
     name       TEXT PRIMARY KEY,
     owner      TEXT NOT NULL,
     expires_at INTEGER NOT NULL
   ) WITHOUT ROWID`,
]

export const SCHEMA_VERSION = MIGRATIONS.length

export class DatabaseVersionError extends Error {
  override name = 'DatabaseVersionError'
}

/** Opens (creating if needed) and migrates the index database at `file`. */
export function openDatabase(file: string): SqliteDatabase {
  const db = new Database(file)
  try {
    db.pragma('journal_mode = WAL')
    // NORMAL is durable across process crashes in WAL mode; only a power loss
    // can drop the last commits, and a lost row only costs a re-fetch.
    db.pragma('synchronous = NORMAL')
    db.pragma('busy_timeout = 5000')
    migrate(db, file)
    return db
  } catch (error) {
    db.close()
    throw error
  }
}

function migrate(db: SqliteDatabase, file: string): void {
  const current = db.pragma('user_version', { simple: true }) as number
  if (current > SCHEMA_VERSION) {
    throw new DatabaseVersionError(
      `${file}: schema version ${current} is newer than this sstream-proxy understands (${SCHEMA_VERSION}); upgrade sstream-proxy`,
    )
  }
  const upgrade = db.transaction(() => {
    for (let version = current; version < SCHEMA_VERSION; version++) {
      db.exec(MIGRATIONS[version] as string)
    }
    db.pragma(`user_version = ${SCHEMA_VERSION}`)
  })
  if (current < SCHEMA_VERSION) upgrade.immediate()
}
