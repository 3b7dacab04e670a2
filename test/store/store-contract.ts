/**
 * The contract every `ObjectStore` keeps (design note 2, the undici
 * cache-store pattern): one suite, run by filesystem-store.test.ts and by
 * s3-store.test.ts against a real Ceph RGW. A behaviour this suite does not
 * pin down is one the two stores may disagree on.
 */

import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import type { ObjectStore, RangeReader, StoredObject } from '../../src/store/object-store.js'
import { VerificationError } from '../../src/store/verification-error.js'

export interface ContractSubject {
  /** A new, empty store. */
  store: ObjectStore
  /** Unfinished writes the store still holds anywhere: spool files, multipart uploads. */
  leftovers(): Promise<number>
}

export interface ContractOptions {
  /** Makes a new empty store for each test. */
  open(): Promise<ContractSubject>
  /** A size that takes several parts (S3); the filesystem store does not care. */
  largeBytes: number
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')
const objectOf = (content: Buffer): StoredObject => ({ sha256: sha256(content), size: content.length })

/** Reads `[start, end]` with forward reads of `chunk` bytes, as the range senders do. */
export async function readRange(reader: RangeReader, start: number, end: number, chunk = 64 * 1024): Promise<Buffer> {
  const parts: Buffer[] = []
  let position = start
  try {
    while (position <= end) {
      const buffer = Buffer.alloc(Math.min(chunk, end + 1 - position))
      const { bytesRead } = await reader.read(buffer, 0, buffer.length, position)
      if (bytesRead === 0) break
      parts.push(buffer.subarray(0, bytesRead))
      position += bytesRead
    }
  } finally {
    await reader.close()
  }
  return Buffer.concat(parts)
}

/** Writes `content` through a writer in pieces of `piece` bytes. */
async function writeAll(store: ObjectStore, content: Buffer, target = objectOf(content), piece = 1024 * 1024) {
  const writer = await store.createWriter(target)
  for (let at = 0; at < content.length; at += piece) {
    const chunk = content.subarray(at, at + piece)
    await writer.write([chunk], chunk.length)
  }
  return writer
}

async function put(store: ObjectStore, content: Buffer): Promise<string> {
  const writer = await writeAll(store, content)
  await writer.commit()
  return sha256(content)
}

async function listed(store: ObjectStore): Promise<StoredObject[]> {
  const all: StoredObject[] = []
  for await (const object of store.list()) all.push(object)
  return all.sort((a, b) => a.sha256.localeCompare(b.sha256))
}

export function storeContract(name: string, options: ContractOptions): void {
  describe(`${name} keeps the store contract`, () => {
    let subject: ContractSubject
    let store: ObjectStore
    const opened: ContractSubject[] = []
    before(async () => {
      subject = await options.open()
      store = subject.store
      opened.push(subject)
    })
    after(() => {
      for (const each of opened) each.store.close()
    })

    test('put then get: the whole object, and ranges at its start, middle and end', async () => {
      const content = randomBytes(3 * 1024 * 1024 + 17)
      const sha = await put(store, content)
      const whole = await store.openRange(sha, 0, content.length - 1)
      assert.ok(whole !== undefined)
      assert.ok((await readRange(whole, 0, content.length - 1)).equals(content))
      for (const [start, end] of [[0, 0], [1000, 1_500_000], [content.length - 10, content.length - 1]] as const) {
        const reader = await store.openRange(sha, start, end)
        assert.ok(reader !== undefined)
        assert.ok((await readRange(reader, start, end, 100_000)).equals(content.subarray(start, end + 1)), `bytes ${start}-${end}`)
      }
    })

    test('an empty object is stored and read as empty', async () => {
      const sha = await put(store, Buffer.alloc(0))
      assert.equal(await store.head(sha), 0)
      const reader = await store.openRange(sha, 0, -1)
      assert.ok(reader !== undefined)
      assert.equal((await readRange(reader, 0, -1)).length, 0)
    })

    test('presence: head gives the size of a stored object and undefined for one not stored', async () => {
      const content = randomBytes(5000)
      const missing = sha256(randomBytes(8))
      assert.equal(await store.head(missing), undefined)
      assert.equal(await store.openRange(missing, 0, 10), undefined)
      const sha = await put(store, content)
      assert.equal(await store.head(sha), 5000)
    })

    test('delete removes the object; deleting one that is not there is not an error', async () => {
      const sha = await put(store, randomBytes(2048))
      await store.remove(sha)
      assert.equal(await store.head(sha), undefined)
      assert.equal(await store.openRange(sha, 0, 10), undefined)
      await store.remove(sha)
    })

    test('list gives every stored object with its size, and nothing being written', async () => {
      const fresh = await options.open()
      opened.push(fresh)
      const a = randomBytes(100)
      const b = randomBytes(70_000)
      await put(fresh.store, a)
      await put(fresh.store, b)
      const running = await writeAll(fresh.store, randomBytes(4096))
      const expected = [objectOf(a), objectOf(b)].sort((x, y) => x.sha256.localeCompare(y.sha256))
      assert.deepEqual(await listed(fresh.store), expected)
      await running.discard()
    })

    test('while a fill runs: the object is not visible, and a reader of the written bytes follows the writer', async () => {
      const content = randomBytes(options.largeBytes)
      const target = objectOf(content)
      const half = Math.floor(content.length / 2)
      const writer = await store.createWriter(target)
      await writer.write([content.subarray(0, half)], half)
      assert.equal(writer.written, half)
      assert.equal(await store.head(target.sha256), undefined)
      assert.equal(await store.openRange(target.sha256, 0, 10), undefined)
      assert.ok(!(await listed(store)).some((object) => object.sha256 === target.sha256))

      const follower = await writer.openWritten()
      const early = Buffer.alloc(half)
      assert.equal((await follower.read(early, 0, half, 0)).bytesRead, half)
      assert.ok(early.equals(content.subarray(0, half)))
      await writer.write([content.subarray(half)], content.length - half)
      await writer.commit()
      // A reader that opened the written bytes before the commit still reads them all after it.
      const rest = Buffer.alloc(content.length - half)
      let got = 0
      while (got < rest.length) got += (await follower.read(rest, got, rest.length - got, half + got)).bytesRead
      await follower.close()
      assert.ok(rest.equals(content.subarray(half)))
      // Afterwards the written bytes are gone from the writer: readers go to the store.
      await assert.rejects(writer.openWritten(), { code: 'ENOENT' })
      assert.equal(await store.head(target.sha256), content.length)
      const stored = await store.openRange(target.sha256, 0, content.length - 1)
      assert.ok(stored !== undefined)
      assert.ok((await readRange(stored, 0, content.length - 1, 1024 * 1024)).equals(content))
      assert.equal(await subject.leftovers(), 0)
    })

    test('bytes that do not hash to the name are never visible: verify and commit refuse, discard leaves nothing behind', async () => {
      const content = randomBytes(options.largeBytes)
      const target = objectOf(content)
      const corrupt = Buffer.from(content)
      corrupt[corrupt.length - 1] = (corrupt[corrupt.length - 1] as number) ^ 1
      const writer = await writeAll(store, corrupt, target)
      assert.throws(() => writer.verify(), VerificationError)
      await assert.rejects(writer.commit(), VerificationError)
      await writer.discard()
      assert.equal(await store.head(target.sha256), undefined)
      assert.ok(!(await listed(store)).some((object) => object.sha256 === target.sha256))
      assert.equal(await subject.leftovers(), 0)
    })

    test('a short write is refused at commit and leaves nothing behind', async () => {
      const content = randomBytes(200_000)
      const target = objectOf(content)
      const writer = await writeAll(store, content.subarray(0, 150_000), target)
      await assert.rejects(writer.commit(), VerificationError)
      await writer.discard()
      assert.equal(await store.head(target.sha256), undefined)
      assert.equal(await subject.leftovers(), 0)
    })

    test('a fill given up half-way (discard) leaves no object and nothing unfinished', async () => {
      const content = randomBytes(options.largeBytes)
      const target = objectOf(content)
      const writer = await writeAll(store, content.subarray(0, content.length - 1000), target)
      await writer.discard()
      await assert.rejects(writer.openWritten(), { code: 'ENOENT' })
      assert.equal(await store.head(target.sha256), undefined)
      assert.equal(await subject.leftovers(), 0)
    })

    test('storing an object that is already stored keeps it whole', async () => {
      const content = randomBytes(300_000)
      const sha = await put(store, content)
      await put(store, content)
      const reader = await store.openRange(sha, 0, content.length - 1)
      assert.ok(reader !== undefined)
      assert.ok((await readRange(reader, 0, content.length - 1)).equals(content))
    })

    test('recover lists what is stored', async () => {
      const fresh = await options.open()
      opened.push(fresh)
      const content = randomBytes(1234)
      await put(fresh.store, content)
      const report = await fresh.store.recover({ isLive: () => true, indexed: () => true })
      assert.deepEqual(report.objects, [objectOf(content)])
    })
  })
}
