/**
 * The `passes` table: one row per prefetch pass, written when it starts and
 * completed when it ends, so `/status` can show the last passes across
 * restarts and a pass cut short by a crash shows as interrupted.
 */

import type { SqliteDatabase } from '../store/database.js'

export type PassResult = 'running' | 'ok' | 'failed' | 'aborted' | 'interrupted'

export interface PassRecord {
  id: number
  mirror: string
  startedAt: string
  finishedAt: string | null
  result: PassResult
  filesDone: number
  filesTotal: number
  bytesDone: number
  bytesTotal: number
  errors: string[]
}

export interface PassCounts {
  filesDone: number
  filesTotal: number
  bytesDone: number
  bytesTotal: number
  errors: string[]
}

export interface PassHistory {
  /** Marks the mirror's unfinished rows interrupted (call holding its lease) and opens a new row. */
  start(mirror: string, startedAt: number): number
  finish(id: number, result: Exclude<PassResult, 'running'>, counts: PassCounts, finishedAt: number): void
  /** The newest `limit` passes of a mirror, newest first. */
  recent(mirror: string, limit: number): PassRecord[]
}

interface PassRow {
  id: number
  mirror: string
  started_at: number
  finished_at: number | null
  result: PassResult
  files_done: number
  files_total: number
  bytes_done: number
  bytes_total: number
  errors: string
}

// A pass reports every failed file, but a row keeps a bounded list.
const MAX_STORED_ERRORS = 50

export function createPassHistory(db: SqliteDatabase): PassHistory {
  const interrupt = db.prepare("UPDATE passes SET result = 'interrupted' WHERE mirror = ? AND result = 'running'")
  const insert = db.prepare("INSERT INTO passes (mirror, started_at, result) VALUES (?, ?, 'running')")
  const update = db.prepare(
    `UPDATE passes SET finished_at = @finishedAt, result = @result, files_done = @filesDone, files_total = @filesTotal,
       bytes_done = @bytesDone, bytes_total = @bytesTotal, errors = @errors WHERE id = @id`,
  )
  const select = db.prepare<[string, number], PassRow>('SELECT * FROM passes WHERE mirror = ? ORDER BY id DESC LIMIT ?')
  const open = db.transaction((mirror: string, startedAt: number) => {
    interrupt.run(mirror)
    return Number(insert.run(mirror, startedAt).lastInsertRowid)
  })

  return {
    start: (mirror, startedAt) => open(mirror, startedAt) as number,
    finish(id, result, counts, finishedAt) {
      update.run({ id, result, finishedAt, ...counts, errors: JSON.stringify(counts.errors.slice(0, MAX_STORED_ERRORS)) })
    },
    recent(mirror, limit) {
      return select.all(mirror, limit).map((row) => ({
        id: row.id,
        mirror: row.mirror,
        startedAt: new Date(row.started_at).toISOString(),
        finishedAt: row.finished_at === null ? null : new Date(row.finished_at).toISOString(),
        result: row.result,
        filesDone: row.files_done,
        filesTotal: row.files_total,
        bytesDone: row.bytes_done,
        bytesTotal: row.bytes_total,
        errors: JSON.parse(row.errors) as string[],
      }))
    },
  }
}
