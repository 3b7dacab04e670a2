/**
 * `kill -9` at random moments while clients and the prefetch pass fill the
 * cache from a slow upstream, five times over on one data directory: after
 * every restart the index is consistent with the disk, no temp file survives
 * start-up once the killed process's lease has lapsed, and no body the
 * proxy completes is corrupt.
 */

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readdir, rm, unlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import Database from 'better-sqlite3'
import { MIRROR_PATH } from '../support/proxy-harness.js'
import { rawRequest, sha256, type RawResponse } from '../support/http.js'
import { buildUpstreamTree, type TreeItem } from '../support/upstream-tree.js'
import { startUpstreamServer } from '../support/upstream-server.js'
import { startChildProxy, writeProxyConfig, type ChildProxy } from './support/child-proxy.js'
import { checkStore, storedBlobs, tempFiles } from './support/store-check.js'

const ROUNDS = 5
const NEWEST = '20250201'

test(`kill -9 during fills and prefetch, ${ROUNDS} times: no corrupt file served, index consistent, tmp/ emptied`, { timeout: 60_000 }, async () => {
  const tree = await buildUpstreamTree({ sizes: { squashfs: 2 * 1024 * 1024, initrd: 512 * 1024, kernel: 256 * 1024 } })
  const upstream = await startUpstreamServer(tree)
  // Slow enough that every kill lands in the middle of several transfers.
  upstream.setDefaultRate(1024 * 1024)
  const dir = await mkdtemp(join(tmpdir(), 'sstream-kill9-'))
  const dataDir = join(dir, 'data')
  let running: ChildProxy | undefined
  try {
    const configPath = await writeProxyConfig({ dir, dataDir, upstream: upstream.url, keyring: await tree.writeKeyring(dir), prefetchOnStart: true })
    const unique = new Map<string, TreeItem>()
    // The selection is Ubuntu and the bootloaders: centos-bases is not in it.
    for (const item of tree.items) if (!item.contentId.endsWith(':centos-bases-download') && (item.version.startsWith(NEWEST) || item.path.includes(`/${NEWEST}/`))) unique.set(item.path, item)
    const files = [...unique.values()]
    assert.ok(files.length >= 20, `expected a selection of at least 20 files, got ${files.length}`)
    /** Temp files found right after the kills: proof that they landed mid-transfer. */
    let interrupted = 0
    /** The temp folders (`tmp/<owner>/`) of the process killed last. */
    let deadFolders: string[] = []

    for (let round = 1; round <= ROUNDS + 1; round++) {
      const proxy = await startChildProxy(configPath)
      running = proxy
      const check = await checkStore(dataDir)
      assert.deepEqual(check.problems, [], `round ${round}: store problems after restart`)
      const left = (await readdir(join(dataDir, 'tmp'))).filter((name) => deadFolders.includes(name))
      assert.deepEqual(left, [], `round ${round}: temp folders of the killed process left after start-up`)
      assert.equal(check.rows, check.blobs, `round ${round}: ${check.rows} rows but ${check.blobs} stored files`)

      if (round > ROUNDS) {
        // The last start: every file is served complete and correct.
        upstream.setDefaultRate(undefined)
        const responses = await Promise.all(files.map((file) => rawRequest(proxy.url, MIRROR_PATH + file.path)))
        responses.forEach((response, i) => {
          const file = files[i] as TreeItem
          assert.equal(response.status, 200, file.path)
          assert.ok(response.complete, file.path)
          assert.equal(sha256(response.body), file.sha256, file.path)
        })
        await proxy.stop('SIGTERM')
        assert.ok(interrupted > 0, 'no kill interrupted a fill: the test proved nothing')
        break
      }

      const started = files.map((file) => rawRequest(proxy.url, MIRROR_PATH + file.path).catch((error: Error) => error))
      await sleep(200 + Math.random() * 1300)
      const exit = await proxy.stop('SIGKILL')
      assert.equal(exit.signal, 'SIGKILL')
      deadFolders = await readdir(join(dataDir, 'tmp'))
      interrupted += (await tempFiles(dataDir)).length
      expireLeases(dataDir, deadFolders)
      const results = await Promise.all(started)
      results.forEach((result, i) => {
        if (result instanceof Error) return
        const file = files[i] as TreeItem
        assertNotCorrupt(result, file, round)
      })
      // Forget some stored files (as an operator's clean-up would) so every round has fills to interrupt.
      const blobs = [...(await storedBlobs(dataDir)).values()]
      for (const path of blobs.filter(() => Math.random() < 0.6)) await unlink(path)
    }
  } finally {
    await running?.stop('SIGKILL')
    await upstream.close()
    await rm(dir, { recursive: true, force: true })
  }
})

/**
 * A killed process's temp folder is kept until its lease lapses (30 s
 * without renewal), so that a live process sharing the dataDir is never
 * robbed. Rather than wait, lapse them now, as the clock would.
 */
function expireLeases(dataDir: string, owners: string[]): void {
  const db = new Database(join(dataDir, 'index.sqlite'))
  try {
    const expire = db.prepare('UPDATE leases SET expires_at = 0 WHERE name = ?')
    for (const owner of owners) expire.run(`tmp:${owner}`)
  } finally {
    db.close()
  }
}

/** A complete 200 must carry exactly the file; anything cut short must not look complete. */
function assertNotCorrupt(response: RawResponse, file: TreeItem, round: number): void {
  if (response.status !== 200 || !response.complete) return
  assert.equal(response.body.length, file.size, `round ${round}: ${file.path} complete with the wrong length`)
  assert.equal(sha256(response.body), file.sha256, `round ${round}: ${file.path} complete with bad bytes`)
}
