/**
 * A reload (SIGHUP) while a prefetch pass runs: the old prefetcher's pass is
 * stopped, and the new one runs a pass for that mirror at once, whatever
 * `prefetch.onStart` says, so the selection does not stay cold until the next
 * interval. The pass is made slow with the test upstream's rate fault and runs
 * one file at a time, so most files have not started when the reload comes.
 */

import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { MIRROR_PATH, selectedFiles, startHarness, type Harness } from '../support/proxy-harness.js'
import { loadConfig } from '../../src/config/load-config.js'
import { reloadConfig } from '../../src/runtime.js'

// Per connection: the 64 KiB squashfs, fetched first, takes 2 s; the whole selection about 5 s.
const BYTES_PER_SECOND = 32_768
const PREFETCH = { onStart: false, interval: '1h', concurrency: 1 }

/** Polls `check` every 20 ms until it holds or `ms` pass; a generous bound, never a timing assertion. */
async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`not within ${ms / 1000} s: ${what}`)
    await sleep(20)
  }
}

describe('a prefetch pass across a reload', () => {
  let h: Harness
  before(async () => {
    h = await startHarness({ config: { prefetch: { onStart: false, interval: 3600, concurrency: 1 } } })
  })
  after(() => h.close())

  test('the new prefetcher runs the stopped pass at once: every selected file ends up stored without waiting for the interval', async () => {
    const selected = selectedFiles(h.tree.items, '20250201')
    for (const file of selected) h.upstream.setFault(file.path, { kind: 'rate', bytesPerSecond: BYTES_PER_SECOND })
    const isStored = (sha256: string) => h.proxy.core.store.index.get(sha256) !== undefined
    const stored = () => selected.filter((file) => isStored(file.sha256)).length

    const first = h.proxy.core.prefetcher.run('stable')
    await until(() => h.proxy.core.prefetcher.status('stable').bytesDone > 0, 30_000, 'the pass started transferring')

    const configPath = join(h.dataDir, 'config.json')
    await writeFile(
      configPath,
      JSON.stringify({
        listen: { host: '127.0.0.1', port: 0 },
        dataDir: h.dataDir,
        metadataTtl: '10m',
        prefetch: PREFETCH,
        mirrors: [{ name: 'stable', path: MIRROR_PATH, upstream: h.upstream.url, keyring: h.keyringPath, selections: [{ filters: ['arch=amd64', 'release~(noble)'], max: 1 }, { filters: ['os~(grub*|pxelinux)'], max: 1 }] }],
      }),
    )
    assert.equal(await reloadConfig(h.proxy, () => loadConfig({ configPath, env: {}, cwd: h.dataDir })), true)
    assert.equal((await first).result, 'aborted', 'the running pass was stopped by the reload')
    assert.ok(stored() < selected.length, `files were still to fetch at the reload (${stored()} of ${selected.length} stored)`)
    assert.equal(h.proxy.core.prefetcher.status('stable').state, 'running', 'the new prefetcher runs a pass at once')

    await until(() => stored() === selected.length, 60_000, `every selected file stored (${stored()} of ${selected.length})`)
    const resumed = await h.proxy.core.prefetcher.run('stable')
    assert.equal(resumed.result, 'ok')
  })
})
