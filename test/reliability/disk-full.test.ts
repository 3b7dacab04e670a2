/**
 * Disk full, for real: dataDir on an 8 MiB tmpfs filled with a ballast file.
 * A miss then gets a clear error (before any byte) or a transfer that breaks
 * (part-way), never a complete body; nothing half-written is kept; cached
 * files and metadata are still served; and the same miss works once the
 * ballast is gone.
 */

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, open, rm, truncate, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { MIRROR_PATH, startHarness, type Harness } from '../support/proxy-harness.js'
import { captureLog } from '../support/log-capture.js'
import { rawRequest, sha256 } from '../support/http.js'
import type { TreeItem } from '../support/upstream-tree.js'
import { evict, settle } from './support/evict.js'
import { checkStore, storedBlobs } from './support/store-check.js'

const run = promisify(execFile)
const NEWEST = '20250201'
const SQUASHFS_BYTES = 2 * 1024 * 1024
const logged = captureLog()

/** Mounts a tmpfs of `size` at a new directory; undefined (with the reason) when this process may not mount. */
async function mountTmpfs(size: string): Promise<{ dir: string; root: string } | { skip: string }> {
  const root = await mkdtemp(join(tmpdir(), 'sstream-disk-full-'))
  const dir = join(root, 'data')
  await mkdir(dir)
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir])
    return { dir, root }
  } catch (error) {
    await rm(root, { recursive: true, force: true })
    return { skip: `cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): ${(error as Error).message.split('\n')[0]}` }
  }
}

/** Writes a ballast file until the filesystem is full, then frees `leave` bytes of it. */
async function fillDisk(path: string, leave: number): Promise<void> {
  const handle = await open(path, 'a')
  const block = Buffer.alloc(64 * 1024, 0xba)
  try {
    for (;;) await handle.write(block)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error
  } finally {
    await handle.close()
  }
  if (leave > 0) await truncate(path, Math.max(0, (await stat(path)).size - leave))
}

test('disk full: clear errors or broken transfers, nothing half-written kept, cached files served, recovery when space returns', { timeout: 30_000 }, async (t) => {
  const mounted = await mountTmpfs('8m')
  if ('skip' in mounted) return t.skip(mounted.skip)
  let h: Harness | undefined
  try {
    // A status rather than a reset, so the test can find the cause in the log by the answer's request id.
    h = await startHarness({ dataDir: mounted.dir, tree: { sizes: { squashfs: SQUASHFS_BYTES } }, mirror: { missFailure: '503' }, log: logged.log })
    const squashfs = h.tree.items.find((i) => i.ftype === 'squashfs' && i.path.startsWith(`noble/amd64/${NEWEST}/`)) as TreeItem
    const kernel = h.tree.items.find((i) => i.item === 'boot-kernel' && i.path.startsWith(`noble/amd64/${NEWEST}/ga-`)) as TreeItem
    assert.equal(sha256((await rawRequest(h.proxy.url, MIRROR_PATH + kernel.path)).body), kernel.sha256)
    await settle(h)
    assert.ok((await storedBlobs(h.dataDir)).has(kernel.sha256))
    await evict(h, squashfs)
    const ballast = join(mounted.dir, 'ballast')
    const index = await (await fetch(h.url('streams/v1/index.json'))).text()

    for (const leave of [0, 256 * 1024]) {
      await fillDisk(ballast, leave)
      const response = await rawRequest(h.proxy.url, MIRROR_PATH + squashfs.path)
      if (response.status === 503) {
        // The client gets a request id; the log names the cause under it.
        assert.match(logged.errorFor(response.body) ?? '', /ENOSPC/, 'the error names the cause')
      } else {
        assert.equal(response.status, 200)
        assert.ok(!response.complete, `with ${leave} bytes free the transfer must break, not complete`)
        assert.ok(response.body.length < squashfs.size)
      }
      await h.proxy.core.store.fills.idle()
      assert.ok(!(await storedBlobs(h.dataDir)).has(squashfs.sha256), 'a half-written file was kept')
      assert.equal(h.proxy.core.store.index.get(squashfs.sha256), undefined)
      const check = await checkStore(h.dataDir)
      assert.deepEqual(check.tempFiles, [], 'a temp file was left behind')

      const hit = await rawRequest(h.proxy.url, MIRROR_PATH + kernel.path)
      assert.equal(hit.headers['x-cache'], 'HIT')
      assert.equal(sha256(hit.body), kernel.sha256)
      assert.equal(await (await fetch(h.url('streams/v1/index.json'))).text(), index)
    }

    // Hits are written to SQLite every 5 s: that write meets the full disk too.
    await sleep(5_500)
    assert.equal((await rawRequest(h.proxy.url, MIRROR_PATH + kernel.path)).status, 200, 'the proxy survives a hit flush on a full disk')

    await rm(ballast)
    const recovered = await rawRequest(h.proxy.url, MIRROR_PATH + squashfs.path)
    assert.equal(recovered.status, 200)
    assert.ok(recovered.complete)
    assert.equal(sha256(recovered.body), squashfs.sha256)
    await h.proxy.core.store.fills.idle()
    assert.equal((await rawRequest(h.proxy.url, MIRROR_PATH + squashfs.path)).headers['x-cache'], 'HIT')
    const check = await checkStore(h.dataDir)
    assert.deepEqual(check.problems, [])
    assert.equal(check.rows, check.blobs)
  } finally {
    await h?.close()
    // Lazily if something still holds a file there; never rm into a mount point.
    await run('umount', [mounted.dir]).catch(() => run('umount', ['-l', mounted.dir]))
    await rm(mounted.root, { recursive: true, force: true })
  }
})
