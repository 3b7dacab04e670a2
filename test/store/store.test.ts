import assert from 'node:assert/strict'
import { after, beforeEach, describe, test } from 'node:test'
import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, readFile, readdir, rm, stat, unlink, writeFile } from 'node:fs/promises'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import Database from 'better-sqlite3'
import { openStore, type Store, type StoreOptions } from '../../src/store/store.js'
import { listTempFiles } from '../support/temp-files.js'

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')

/** Puts a file on disk and in the index the way a fill does: committed blob first, then its row. */
async function storeFile(store: Store, content: Buffer, path: string): Promise<string> {
  const sha = sha256(content)
  const writer = await store.objects.createWriter({ sha256: sha, size: content.length })
  await writer.write([content], content.length)
  await writer.commit()
  store.index.put({ sha256: sha, size: content.length, path })
  return sha
}

const blobPath = (store: Store, sha: string) => (store.objects.localPath as (sha256: string) => string)(sha)

async function until(condition: () => boolean, what: string, timeoutMs = 2_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

/** Holds the index's write lock from another connection, as another process or a sqlite3 shell would. */
function holdWriteLock(dataDir: string): () => void {
  const other = new Database(join(dataDir, 'index.sqlite'))
  other.exec('BEGIN IMMEDIATE')
  return () => {
    other.exec('COMMIT')
    other.close()
  }
}

/** A row's hits as another connection sees them: what is really on disk. */
function hitsOnDisk(dataDir: string, sha: string): number | undefined {
  const reader = new Database(join(dataDir, 'index.sqlite'), { readonly: true })
  try {
    return (reader.prepare('SELECT hits FROM files WHERE sha256 = ?').get(sha) as { hits: number } | undefined)?.hits
  } finally {
    reader.close()
  }
}

describe('openStore', () => {
  const dirs: string[] = []
  const open: Store[] = []
  let dataDir: string
  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'sstream-store-'))
    dirs.push(dataDir)
  })
  after(async () => {
    for (const store of open) if (store.db.open) await store.close()
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })))
  })
  const openAt = async (dir = dataDir, options: Omit<StoreOptions, 'dataDir'> = {}) => {
    const store = await openStore({ ...options, dataDir: dir })
    open.push(store)
    return store
  }
  /** A store that flushes hits every few ms and gives up on a locked database quickly. */
  const openReportingErrors = async (errors: string[]) => {
    const store = await openAt(dataDir, { hitFlushIntervalMs: 10, onError: (message) => errors.push(message) })
    store.db.pragma('busy_timeout = 10')
    return store
  }

  test('a new data directory gets its database, blobs/ and tmp/, and an empty report', async () => {
    const dir = join(dataDir, 'nested', 'data')
    const store = await openAt(dir)
    assert.deepEqual(store.startup, { files: 0, removedTemp: 0, droppedRows: 0, adoptedFiles: 0, discardedFiles: 0, abortedUploads: 0 })
    assert.deepEqual((await readdir(dir)).filter((name) => !name.startsWith('index.sqlite-')).sort(), ['blobs', 'index.sqlite', 'tmp'])
    await store.close()
  })

  test('files and rows survive a restart', async () => {
    const first = await openAt()
    const sha = await storeFile(first, Buffer.from('kept across restarts'), 'noble/squashfs')
    await first.close()

    const second = await openAt()
    assert.deepEqual(second.startup, { files: 1, removedTemp: 0, droppedRows: 0, adoptedFiles: 0, discardedFiles: 0, abortedUploads: 0 })
    assert.equal(second.index.get(sha)?.path, 'noble/squashfs')
    await second.close()
  })

  test('start-up drops a row whose file is gone from disk', async () => {
    const first = await openAt()
    const gone = await storeFile(first, Buffer.from('deleted behind our back'), 'a')
    const kept = await storeFile(first, Buffer.from('still here'), 'b')
    await first.close()
    await unlink(join(dataDir, 'blobs', gone.slice(0, 2), gone))

    const second = await openAt()
    assert.equal(second.startup.droppedRows, 1)
    assert.equal(second.startup.files, 1)
    assert.equal(second.index.get(gone), undefined)
    assert.ok(second.index.get(kept))
    await second.close()
  })

  test('start-up adopts a committed file whose row was lost, with its size', async () => {
    const content = Buffer.from('renamed into place, then the process died before the insert')
    const sha = sha256(content)
    await mkdir(join(dataDir, 'blobs', sha.slice(0, 2)), { recursive: true })
    await writeFile(join(dataDir, 'blobs', sha.slice(0, 2), sha), content)

    const store = await openAt()
    assert.equal(store.startup.adoptedFiles, 1)
    assert.equal(store.startup.files, 1)
    assert.equal(store.index.get(sha)?.size, content.length)
    const opened = await store.openStored(sha, 0, content.length - 1)
    assert.ok(opened)
    await opened.close()
    await store.close()
  })

  test('start-up removes a file without a row whose content does not match its name', async () => {
    const sha = sha256(Buffer.from('what the name promises'))
    const path = join(dataDir, 'blobs', sha.slice(0, 2), sha)
    await mkdir(join(dataDir, 'blobs', sha.slice(0, 2)), { recursive: true })
    await writeFile(path, 'something else, cut short')

    const store = await openAt()
    assert.equal(store.startup.discardedFiles, 1)
    assert.equal(store.startup.adoptedFiles, 0)
    assert.equal(store.index.get(sha), undefined)
    assert.equal(await store.openStored(sha, 0, 0), undefined)
    await assert.rejects(stat(path))
    await store.close()
  })

  test('start-up removes the temp folder of a process on this host that is gone, even before its lease expires', async () => {
    const first = await openAt()
    await first.objects.createWriter({ sha256: 'a'.repeat(64), size: 1 })
    // Make the lease look like a dead process's: this host, a pid that does not exist.
    first.db.prepare("UPDATE leases SET owner = ? WHERE name LIKE 'tmp:%'").run(`${hostname()}:2147483646:x`)
    const second = await openAt()
    assert.equal(second.startup.removedTemp, 1)
    await second.close()
    await first.close()
  })

  test('start-up ignores a file under the wrong prefix directory instead of failing', async () => {
    const content = Buffer.from('copied to the wrong place by hand')
    const sha = sha256(content)
    const wrong = sha.startsWith('00') ? '01' : '00'
    await mkdir(join(dataDir, 'blobs', wrong), { recursive: true })
    await writeFile(join(dataDir, 'blobs', wrong, sha), content)

    const store = await openAt()
    assert.equal(store.startup.adoptedFiles, 0)
    assert.equal(store.index.get(sha), undefined)
    await store.close()
  })

  test('a second process opening the same dataDir leaves the temp files of the first alone', async () => {
    const first = await openAt()
    const writer = await first.objects.createWriter({ sha256: 'f'.repeat(64), size: 1 })
    const before = await listTempFiles(dataDir)
    assert.equal(before.length, 1)
    const second = await openAt()
    assert.equal(second.startup.removedTemp, 0)
    assert.deepEqual(await listTempFiles(dataDir), before)
    await writer.discard()
    await second.close()
    await first.close()
  })

  test('start-up deletes the temp files of interrupted fills', async () => {
    await mkdir(join(dataDir, 'tmp'), { recursive: true })
    await writeFile(join(dataDir, 'tmp', `${'e'.repeat(64)}.abc.part`), 'half a file')
    const store = await openAt()
    assert.equal(store.startup.removedTemp, 1)
    assert.deepEqual(await listTempFiles(dataDir), [])
    assert.equal(store.startup.files, 0)
    await store.close()
  })

  test('openStored opens a stored file for reading', async () => {
    const store = await openAt()
    const content = Buffer.from('read me')
    const sha = await storeFile(store, content, 'x')
    const opened = await store.openStored(sha, 0, content.length - 1)
    assert.ok(opened)
    try {
      const buffer = Buffer.alloc(content.length)
      assert.equal((await opened.read(buffer, 0, buffer.length, 0)).bytesRead, content.length)
      assert.deepEqual(buffer, content)
    } finally {
      await opened.close()
    }
    assert.equal(await store.openStored('f'.repeat(64), 0, 0), undefined)
    await store.close()
  })

  test('openStored drops the row of a file that vanished while running', async () => {
    const store = await openAt()
    const sha = await storeFile(store, Buffer.from('vanishes'), 'x')
    await unlink(blobPath(store, sha))
    assert.equal(await store.openStored(sha, 0, 0), undefined)
    assert.equal(store.index.get(sha), undefined)
    assert.equal(store.index.totals().files, 0)
    await store.close()
  })

  test('close writes the pending hits', async () => {
    const first = await openAt()
    const sha = await storeFile(first, Buffer.from('popular'), 'x')
    first.index.recordHit(sha)
    first.index.recordHit(sha)
    await first.close()
    const second = await openAt()
    assert.equal(second.index.get(sha)?.hits, 2)
    assert.equal(await readFile(blobPath(second, sha), 'utf8'), 'popular')
    await second.close()
  })

  test('a hit flush blocked by another writer is reported, not thrown, and its hits are written once the lock is released', async () => {
    const errors: string[] = []
    const store = await openReportingErrors(errors)
    const sha = await storeFile(store, Buffer.from('popular while locked'), 'x')
    store.index.recordHit(sha)
    store.index.recordHit(sha)
    const releaseLock = holdWriteLock(dataDir)
    try {
      await until(() => errors.length > 0, 'the failed flush to be reported')
      assert.deepEqual(errors, ['hit counts not written, kept for the next flush: database is locked'])
      store.index.recordHit(sha)
      // Several more flushes fail meanwhile; one report says it all.
      await sleep(100)
      assert.equal(errors.length, 1)
      assert.equal(hitsOnDisk(dataDir, sha), 0)
    } finally {
      releaseLock()
    }
    await until(() => hitsOnDisk(dataDir, sha) === 3, 'the kept hits to be written')
    await store.close()
  })

  test('close with another writer holding the lock reports the unwritten hits and still closes', async () => {
    const errors: string[] = []
    const store = await openReportingErrors(errors)
    const sha = await storeFile(store, Buffer.from('popular at shutdown'), 'x')
    store.index.recordHit(sha)
    const releaseLock = holdWriteLock(dataDir)
    try {
      await store.close()
    } finally {
      releaseLock()
    }
    assert.equal(store.db.open, false)
    assert.equal(errors[0], 'hit counts not written before closing, dropped: database is locked')
    assert.match(errors[1] ?? '', /^lease tmp:\S+ not released, it lapses within 30000 ms: database is locked$/)
  })
})
