/**
 * The directory upstream source on real files: documents under the metadata
 * cap with validators that answer 304 for an unchanged file, item files from
 * an offset in the shape fills expect, and a tree that cannot lead the proxy
 * out of its root (no "..", no symlink escaping it, no device file or FIFO).
 * Every error names the file on disk and says whether a retry may help.
 */

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { execFileSync } from 'node:child_process'
import { chmod, mkdir, mkdtemp, rm, symlink, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buffer } from 'node:stream/consumers'
import { pathToFileURL } from 'node:url'
import { createDirectorySource } from '../../src/upstream/directory-source.js'
import { createSource } from '../../src/upstream/create-source.js'
import { createUpstreamClient } from '../../src/upstream/upstream-client.js'
import { UpstreamError } from '../../src/upstream/upstream-client.js'
import { UpstreamPathError, type UpstreamSource } from '../../src/upstream/upstream-source.js'

const isRoot = process.getuid?.() === 0

let work: string
let root: string
let rootUrl: string
let source: UpstreamSource

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'sstream-proxy-dir-source-'))
  root = join(work, 'tree')
  await mkdir(join(root, 'streams/v1'), { recursive: true })
  await mkdir(join(root, 'noble/amd64'), { recursive: true })
  await writeFile(join(root, 'streams/v1/index.sjson'), 'the index')
  await writeFile(join(root, 'noble/amd64/boot-kernel'), 'kernel bytes 0123456789')
  await writeFile(join(work, 'secret'), 'outside the root')
  rootUrl = pathToFileURL(root).href + '/'
  source = createDirectorySource({ root: rootUrl, metadataMaxBytes: 1024 })
})
after(async () => {
  await rm(work, { recursive: true, force: true })
})

/** The error `promise` rejects with, which must be an UpstreamError. */
async function upstreamError(promise: Promise<unknown>): Promise<UpstreamError> {
  const error = await promise.then(
    () => assert.fail('expected a rejection'),
    (caught: unknown) => caught,
  )
  assert.ok(error instanceof UpstreamError, String(error))
  return error
}

describe('documents', () => {
  test('are read with a validator, and an unchanged file answers 304 so it is not verified again', async () => {
    const first = await source.getDocument('streams/v1/index.sjson')
    assert.equal(first.status, 200)
    assert.ok(first.status === 200 && first.etag !== undefined)
    assert.equal(first.text, 'the index')
    assert.deepEqual(await source.getDocument('streams/v1/index.sjson', { etag: first.etag }), { status: 304 })
  })

  test('a rewritten file is read again, even at the same size and with its old mtime put back', async () => {
    const path = join(root, 'streams/v1/other.sjson')
    await writeFile(path, 'version A')
    const first = await source.getDocument('streams/v1/other.sjson')
    assert.ok(first.status === 200)
    // A copy that keeps the mtime (cp -p, rsync -a) replaces the file: a new inode.
    await rm(path)
    await writeFile(path, 'version B')
    const stamp = new Date('2025-01-01T00:00:00Z')
    await utimes(path, stamp, stamp)
    const second = await source.getDocument('streams/v1/other.sjson', { etag: first.etag })
    assert.equal(second.status === 200 && second.text, 'version B')
  })

  test('a document over limits.metadataMaxBytes is refused without being read, naming the file; no retry helps', async () => {
    await writeFile(join(root, 'streams/v1/huge.sjson'), Buffer.alloc(4096, 'x'))
    const error = await upstreamError(source.getDocument('streams/v1/huge.sjson'))
    assert.equal(error.message, `${rootUrl}streams/v1/huge.sjson: 4096 bytes, over the metadata limit of 1024 bytes (limits.metadataMaxBytes)`)
    assert.equal(error.retryable, false)
  })

  test('a missing document is a 404 naming the file; a missing index says there is no tree here', async () => {
    const missing = await upstreamError(source.getDocument('streams/v1/gone.sjson'))
    assert.equal(missing.message, `${rootUrl}streams/v1/gone.sjson: no such file on disk`)
    assert.equal(missing.status, 404)
    assert.equal(missing.retryable, false)
    const empty = join(work, 'empty-mount-point')
    await mkdir(empty)
    const index = await upstreamError(createDirectorySource({ root: pathToFileURL(empty).href + '/', metadataMaxBytes: 1024 }).getDocument('streams/v1/index.sjson'))
    assert.match(index.message, /empty-mount-point\/streams\/v1\/index\.sjson: no such file on disk: no SimpleStreams tree here \(is the disk mounted\?\)$/)
  })

  test('a root that does not exist (a disk not mounted) is "unreachable", and is read once it appears', async () => {
    const later = join(work, 'mounted-later')
    const disk = createDirectorySource({ root: pathToFileURL(later).href + '/', metadataMaxBytes: 1024 })
    const error = await upstreamError(disk.getDocument('streams/v1/index.sjson'))
    assert.equal(error.message, `${pathToFileURL(later).href}/: directory not found (is the disk mounted?)`)
    assert.equal(error.status, undefined, '/status shows the upstream unreachable')
    assert.equal(error.retryable, true)
    await mkdir(join(later, 'streams/v1'), { recursive: true })
    await writeFile(join(later, 'streams/v1/index.sjson'), 'now here')
    const read = await disk.getDocument('streams/v1/index.sjson')
    assert.equal(read.status === 200 && read.text, 'now here')
  })
})

describe('item files', () => {
  test('from byte 0: 200 with Content-Length', async () => {
    const response = await source.openFile('noble/amd64/boot-kernel')
    assert.equal(response.status, 200)
    assert.equal(response.headers['content-length'], '23')
    assert.equal(response.url, `${rootUrl}noble/amd64/boot-kernel`)
    assert.equal((await buffer(response.body)).toString(), 'kernel bytes 0123456789')
  })

  test('from an offset: 206 with the Content-Range a resumed fill checks', async () => {
    const response = await source.openFile('noble/amd64/boot-kernel', { offset: 13 })
    assert.equal(response.status, 206)
    assert.equal(response.headers['content-length'], '10')
    assert.equal(response.headers['content-range'], 'bytes 13-22/23')
    assert.equal((await buffer(response.body)).toString(), '0123456789')
  })

  test('an offset past the end of the file on disk is refused, naming it', async () => {
    const error = await upstreamError(source.openFile('noble/amd64/boot-kernel', { offset: 23 }))
    assert.equal(error.message, `${rootUrl}noble/amd64/boot-kernel: is 23 bytes, cannot be read from byte 23`)
    assert.equal(error.retryable, false)
  })

  test('a missing file is a 404 naming the path on disk, not retried', async () => {
    const error = await upstreamError(source.openFile('noble/amd64/squashfs'))
    assert.equal(error.message, `${rootUrl}noble/amd64/squashfs: no such file on disk`)
    assert.equal(error.retryable, false)
  })

  test('an unreadable file is a 403 naming it', { skip: isRoot ? 'root reads a file whatever its mode' : false }, async () => {
    const path = join(root, 'noble/amd64/locked')
    await writeFile(path, 'locked')
    await chmod(path, 0o000)
    const error = await upstreamError(source.openFile('noble/amd64/locked'))
    assert.equal(error.message, `${rootUrl}noble/amd64/locked: permission denied`)
    assert.equal(error.retryable, false)
  })
})

describe('the root is never left', () => {
  test('a path that is not plain relative segments is refused before the disk is touched', async () => {
    for (const [path, reason] of [
      ['../secret', 'has a ".." segment'],
      ['/etc/passwd', 'absolute'],
      ['noble//amd64/boot-kernel', 'has an empty segment'],
      ['file:/etc/passwd', 'has a ":" in its first segment (a URL scheme)'],
    ] as const) {
      assert.equal(source.pathProblem(path), reason, path)
      await assert.rejects(source.openFile(path), (error: Error) => error instanceof UpstreamPathError && error.message === `${rootUrl}: path ${JSON.stringify(path)} ${reason}`)
      await assert.rejects(source.getDocument(path), UpstreamPathError)
    }
  })

  test('a symlink to a file or a folder outside the root is refused, naming it; one inside the root is followed', async () => {
    await symlink(join(work, 'secret'), join(root, 'noble/amd64/initrd'))
    await symlink(work, join(root, 'escape'))
    await symlink(join(root, 'noble/amd64/boot-kernel'), join(root, 'noble/amd64/kernel-link'))
    const file = await upstreamError(source.openFile('noble/amd64/initrd'))
    assert.equal(file.message, `${rootUrl}noble/amd64/initrd: is a symlink to ${join(work, 'secret')}, outside the upstream root; refused`)
    assert.equal(file.retryable, false)
    const folder = await upstreamError(source.getDocument('escape/secret'))
    assert.match(folder.message, /escape\/secret: is a symlink to .*\/secret, outside the upstream root; refused$/)
    const inside = await source.openFile('noble/amd64/kernel-link')
    assert.equal((await buffer(inside.body)).toString(), 'kernel bytes 0123456789')
  })

  test('a FIFO or a folder is refused without being opened (a FIFO would block the reader)', async () => {
    execFileSync('mkfifo', [join(root, 'noble/amd64/fifo')])
    const fifo = await upstreamError(source.openFile('noble/amd64/fifo'))
    assert.equal(fifo.message, `${rootUrl}noble/amd64/fifo: is not a regular file; refused`)
    const folder = await upstreamError(source.getDocument('noble/amd64'))
    assert.equal(folder.message, `${rootUrl}noble/amd64: is not a regular file; refused`)
  })

  test('a device file is refused without being opened', { skip: isRoot ? false : 'only root can make a device node' }, async () => {
    execFileSync('mknod', [join(root, 'noble/amd64/zero'), 'c', '1', '5'])
    const error = await upstreamError(source.openFile('noble/amd64/zero'))
    assert.equal(error.message, `${rootUrl}noble/amd64/zero: is not a regular file; refused`)
  })
})

test('createSource makes a directory source of a file: URL and an HTTP source of an http URL, each describing its root', () => {
  const client = createUpstreamClient()
  try {
    assert.equal(createSource(rootUrl, { client, metadataMaxBytes: 1024 }).describe('streams/v1/index.sjson'), `${rootUrl}streams/v1/index.sjson`)
    assert.equal(createSource('https://user:pw@images.example/stable/', { client, metadataMaxBytes: 1024 }).describe(), 'https://user:***@images.example/stable/')
  } finally {
    client.close()
  }
})
