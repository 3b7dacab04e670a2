/**
 * The `files` table: one row per stored file, keyed by sha256, written only
 * after the file itself is on disk under its final name. Hits are counted in
 * memory and written in batches so that serving a hit costs no disk write.
 */

import type { SqliteDatabase } from './database.js'

export interface StoredFile {
  sha256: string
  size: number
  /** The item path the file was first stored for (one of possibly several). */
  path: string
  storedAt: number
  lastAccess: number | null
  hits: number
}

export interface FileTotals {
  files: number
  bytes: number
}

interface FileRow {
  sha256: string
  size: number
  path: string
  stored_at: number
  last_access: number | null
  hits: number
}

const toStoredFile = (row: FileRow): StoredFile => ({
  sha256: row.sha256,
  size: row.size,
  path: row.path,
  storedAt: row.stored_at,
  lastAccess: row.last_access,
  hits: row.hits,
})

export interface FileIndex {
  get(sha256: string): StoredFile | undefined
  /** Adds or replaces the row of a file that has just been committed to disk. */
  put(file: { sha256: string; size: number; path: string }): void
  delete(sha256: string): void
  /** Counts a hit; written to the database by `flush`. */
  recordHit(sha256: string): void
  /**
   * Writes the counted hits. When the write fails (a busy, read-only or
   * failing database) it throws and keeps the counts for the next flush.
   */
  flush(): void
  all(): StoredFile[]
  totals(): FileTotals
}

export function createFileIndex(db: SqliteDatabase, now: () => number = Date.now): FileIndex {
  const selectOne = db.prepare<[string], FileRow>('SELECT * FROM files WHERE sha256 = ?')
  const selectAll = db.prepare<[], FileRow>('SELECT * FROM files ORDER BY path')
  const upsert = db.prepare(
    `INSERT INTO files (sha256, size, path, stored_at) VALUES (@sha256, @size, @path, @storedAt)
     ON CONFLICT (sha256) DO UPDATE SET size = excluded.size, path = excluded.path, stored_at = excluded.stored_at`,
  )
  const remove = db.prepare('DELETE FROM files WHERE sha256 = ?')
  const addHits = db.prepare('UPDATE files SET hits = hits + ?, last_access = ? WHERE sha256 = ?')
  const sums = db.prepare<[], { files: number; bytes: number | null }>(
    'SELECT count(*) AS files, sum(size) AS bytes FROM files',
  )
  const pendingHits = new Map<string, { count: number; at: number }>()
  const writeHits = db.transaction((entries: Array<[string, { count: number; at: number }]>) => {
    for (const [sha256, { count, at }] of entries) addHits.run(count, at, sha256)
  })

  return {
    get(sha256) {
      const row = selectOne.get(sha256)
      return row === undefined ? undefined : toStoredFile(row)
    },
    put({ sha256, size, path }) {
      upsert.run({ sha256, size, path, storedAt: now() })
    },
    delete(sha256) {
      pendingHits.delete(sha256)
      remove.run(sha256)
    },
    recordHit(sha256) {
      const entry = pendingHits.get(sha256)
      if (entry === undefined) pendingHits.set(sha256, { count: 1, at: now() })
      else {
        entry.count++
        entry.at = now()
      }
    },
    flush() {
      if (pendingHits.size === 0) return
      // Forgotten only once written, so a failed write leaves them for the next
      // flush. The write is synchronous and rolls back as a whole when it
      // throws: no hit can be counted in between, nor any written twice.
      writeHits([...pendingHits])
      pendingHits.clear()
    },
    all() {
      return selectAll.all().map(toStoredFile)
    },
    totals() {
      const { files, bytes } = sums.get() ?? { files: 0, bytes: 0 }
      return { files, bytes: bytes ?? 0 }
    },
  }
}
