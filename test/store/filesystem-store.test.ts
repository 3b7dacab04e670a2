import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, readdir, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { createFilesystemStore } from '../../src/store/filesystem-store.js'
import { listTempFiles } from '../support/temp-files.js'
import { storeContract } from './store-contract.js'

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')

storeContract('the filesystem store', {
  largeBytes: 12 * 1024 * 1024,
  async open() {
    const dataDir = await mkdtemp(join(tmpdir(), 'sstream-fs-store-'))
    const store = createFilesystemStore({ dataDir, owner: 'test' })
    await store.check()
    return { store, leftovers: async () => (await listTempFiles(dataDir)).length }
  },
})

describe('the filesystem store on disk', () => {
  test("a file lives under blobs/<first two hex digits>/<sha256>; a fill spools in this process's folder tmp/<owner>/", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'sstream-fs-store-'))
    const store = createFilesystemStore({ dataDir, owner: 'test-owner' })
    const content = Buffer.from('the verified bytes of a file')
    const sha = sha256(content)
    assert.equal(store.localPath?.(sha), join(dataDir, 'blobs', sha.slice(0, 2), sha))
    const writer = await store.createWriter({ sha256: sha, size: content.length })
    await writer.write([content], content.length)
    const [spool] = await listTempFiles(dataDir)
    assert.ok(spool?.startsWith(`test-owner/${sha}.`))
    await writer.commit()
    assert.deepEqual(await listTempFiles(dataDir), [])
    assert.deepEqual(await readdir(join(dataDir, 'blobs', sha.slice(0, 2))), [sha])
  })

  test('recover removes the spools of processes that are gone, keeps those of live ones, and re-hashes files without a row', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'sstream-fs-store-'))
    const store = createFilesystemStore({ dataDir, owner: 'live' })
    await (await store.createWriter({ sha256: 'd'.repeat(64), size: 1 })).write([Buffer.from('x')], 1)
    await mkdir(join(dataDir, 'tmp', 'gone'), { recursive: true })
    await writeFile(join(dataDir, 'tmp', 'gone', `${'e'.repeat(64)}.abc.part`), 'half a file')
    const good = Buffer.from('kept')
    const badName = sha256(Buffer.from('what the name promises'))
    for (const [name, bytes] of [[sha256(good), good], [badName, Buffer.from('something else')]] as const) {
      await mkdir(join(dataDir, 'blobs', name.slice(0, 2)), { recursive: true })
      await writeFile(join(dataDir, 'blobs', name.slice(0, 2), name), bytes)
    }
    const report = await store.recover({ isLive: (owner) => owner === 'live', indexed: () => false })
    assert.equal(report.removedTemp, 1)
    assert.equal(report.discardedFiles, 1)
    assert.deepEqual(report.objects, [{ sha256: sha256(good), size: good.length }])
    assert.deepEqual((await listTempFiles(dataDir)).map((path) => path.split('/')[0]), ['live'])
  })
})
