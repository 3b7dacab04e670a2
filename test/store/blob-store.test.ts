import assert from 'node:assert/strict'
import { after, beforeEach, describe, test } from 'node:test'
import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createBlobStore, type BlobStore } from '../../src/store/blob-store.js'

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')
const exists = (path: string) => stat(path).then(() => true, () => false)

describe('createBlobStore', () => {
  const dirs: string[] = []
  let dataDir: string
  let blobs: BlobStore
  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'sstream-blobs-'))
    dirs.push(dataDir)
    blobs = createBlobStore(dataDir, 'test-owner')
  })
  after(() => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))))

  test('a file lives under blobs/<first two hex digits>/<sha256>', () => {
    const sha = sha256(Buffer.from('x'))
    assert.equal(blobs.blobPath(sha), join(dataDir, 'blobs', sha.slice(0, 2), sha))
    assert.equal(blobs.root, dataDir)
  })

  test("temp files live in this process's folder tmp/<owner>/, each with its own name", async () => {
    const sha = sha256(Buffer.from('x'))
    const one = await blobs.createTemp(sha)
    const two = await blobs.createTemp(sha)
    try {
      assert.equal(join(one.path, '..'), join(dataDir, 'tmp', 'test-owner'))
      assert.notEqual(one.path, two.path)
      assert.ok(one.path.includes(sha))
    } finally {
      await blobs.discard(one)
      await blobs.discard(two)
    }
  })

  test('commit moves the temp file to its final name and leaves nothing in tmp/', async () => {
    const content = Buffer.from('the verified bytes of a file')
    const sha = sha256(content)
    const temp = await blobs.createTemp(sha)
    await temp.handle.write(content, 0, content.length, 0)
    assert.equal(await exists(blobs.blobPath(sha)), false, 'no final file before commit')

    await blobs.commit(temp, sha)
    assert.deepEqual(await readFile(blobs.blobPath(sha)), content)
    assert.equal(await exists(temp.path), false)
    assert.deepEqual(await readdir(join(dataDir, 'tmp', 'test-owner')), [])
  })

  test('discard removes the temp file and may run twice', async () => {
    const temp = await blobs.createTemp('c'.repeat(64))
    await temp.handle.write(Buffer.from('partial'))
    await blobs.discard(temp)
    await blobs.discard(temp)
    assert.equal(await exists(temp.path), false)
  })

  test('remove deletes a stored file; removing a missing one is harmless', async () => {
    const content = Buffer.from('remove me')
    const sha = sha256(content)
    const temp = await blobs.createTemp(sha)
    await temp.handle.write(content)
    await blobs.commit(temp, sha)
    await blobs.remove(sha)
    assert.equal(await exists(blobs.blobPath(sha)), false)
    await blobs.remove(sha)
  })

  test('recover empties tmp/ and lists the final files, ignoring anything that is not a sha256 name', async () => {
    const stored = [Buffer.from('one'), Buffer.from('two')].map((content) => ({ content, sha: sha256(content) }))
    for (const { content, sha } of stored) {
      const temp = await blobs.createTemp(sha)
      await temp.handle.write(content)
      await blobs.commit(temp, sha)
    }
    // Left behind by a crash: a half-written temp file (its handle lost with the process) and a stray directory.
    const crashed = await blobs.createTemp('d'.repeat(64))
    await crashed.handle.write(Buffer.from('half'))
    await crashed.handle.close()
    await mkdir(join(dataDir, 'tmp', 'stray-dir'))
    await writeFile(join(dataDir, 'tmp', 'stray-dir', 'f'), 'x')
    // Not stored files: a wrong name, a sha256 name under another prefix, a directory with a sha256 name.
    await writeFile(join(dataDir, 'blobs', stored[0]!.sha.slice(0, 2), 'not-a-sha.part'), 'x')
    await mkdir(join(dataDir, 'blobs', 'zz'))
    await writeFile(join(dataDir, 'blobs', 'zz', 'f'.repeat(64)), 'x')
    await mkdir(join(dataDir, 'blobs', 'ee', 'e'.repeat(64)), { recursive: true })

    const report = await blobs.recover(() => false)
    assert.equal(report.removedTemp, 2)
    assert.deepEqual(await readdir(join(dataDir, 'tmp')), [])
    assert.deepEqual([...report.onDisk].sort(), stored.map(({ sha }) => sha).sort())
  })

  test('recover keeps the temp folders of live processes', async () => {
    const temp = await blobs.createTemp('d'.repeat(64))
    await temp.handle.close()
    const report = await blobs.recover((owner) => owner === 'test-owner')
    assert.equal(report.removedTemp, 0)
    assert.ok(await exists(temp.path))
  })

  test('recover on an empty data directory creates blobs/ and tmp/', async () => {
    const report = await blobs.recover(() => false)
    assert.deepEqual(report, { removedTemp: 0, onDisk: new Set() })
    assert.ok(await exists(join(dataDir, 'blobs')))
    assert.ok(await exists(join(dataDir, 'tmp')))
  })
})
