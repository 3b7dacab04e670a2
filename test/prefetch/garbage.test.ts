import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import type { Config, MirrorConfig } from '../../src/config/types.js'
import { silentLogger } from '../../src/log/logger.js'
import { openCore } from '../../src/runtime.js'
import { startHarness, selections, type Harness } from '../support/proxy-harness.js'

const NOBLE_AMD64 = 'noble/amd64/20250201'

describe('garbage collection counts references across products and mirrors', () => {
  let h: Harness
  before(async () => {
    h = await startHarness({ mirror: { selections: [{ filters: ['arch=amd64', 'release=noble'], max: 1 }] } })
    assert.equal((await h.proxy.core.prefetcher.run('stable')).result, 'ok')
    await h.stopProxy()
  })
  after(() => h.close())

  const mirror = (name: string, path: string, filters: string[]): MirrorConfig => ({
    ...(h.config.mirrors[0] as MirrorConfig),
    name,
    path,
    selections: selections([{ filters, max: 1 }]),
  })

  /** Opens the core with these mirrors, collects, and returns the stored paths left. */
  async function collectWith(mirrors: MirrorConfig[]): Promise<string[]> {
    const config: Config = { ...h.config, mirrors }
    const core = await openCore(config, { log: silentLogger })
    try {
      await Promise.all(core.mirrors.map((m) => m.publication()))
      await core.prefetcher.collect()
      return core.store.index.all().map((file) => file.path).sort()
    } finally {
      await core.close()
    }
  }

  test('the shared squashfs stays while the hwe product still references it', async () => {
    const left = await collectWith([mirror('stable', '/stable/', ['arch=amd64', 'release=noble', 'subarch=hwe-24.04'])])
    assert.deepEqual(left, [
      `${NOBLE_AMD64}/hwe-24.04/generic/boot-initrd`,
      `${NOBLE_AMD64}/hwe-24.04/generic/boot-kernel`,
      `${NOBLE_AMD64}/squashfs`,
      `${NOBLE_AMD64}/squashfs.manifest`,
    ])
  })

  test('it stays while another mirror references it, and goes when none does', async () => {
    const left = await collectWith([
      mirror('stable', '/stable/', ['os~grub']),
      // Upstream metadata: a filtered mirror would also keep the items MAAS requires of each version.
      { ...mirror('second', '/second/', ['arch=amd64', 'release=noble', 'ftype=squashfs']), metadata: 'upstream' },
    ])
    assert.deepEqual(left, [`${NOBLE_AMD64}/squashfs`])
    assert.deepEqual(await collectWith([mirror('stable', '/stable/', ['os~grub'])]), [])
  })

  test('the items a filtered mirror keeps in its metadata for MAAS are kept once stored', async () => {
    const h2 = await startHarness({ mirror: { selections: [{ filters: ['arch=amd64', 'release=noble', 'subarch=ga-24.04', 'ftype!=manifest'], max: 1 }] } })
    try {
      assert.equal((await h2.proxy.core.prefetcher.run('stable', { gc: false })).result, 'ok')
      // MAAS never asks for it, but another client may: fetched on demand, it stays.
      const response = await fetch(h2.url(`${NOBLE_AMD64}/squashfs.manifest`))
      assert.equal(response.status, 200)
      await response.arrayBuffer()
      // Stored once verified, just after the last byte is sent.
      while (h2.proxy.core.store.fills.active().length > 0) await new Promise((resolve) => setTimeout(resolve, 10))
      await h2.proxy.core.prefetcher.collect()
      assert.deepEqual(h2.proxy.core.store.index.all().filter((file) => file.path.startsWith(NOBLE_AMD64)).map((file) => file.path).sort(), [
        `${NOBLE_AMD64}/ga-24.04/generic/boot-initrd`,
        `${NOBLE_AMD64}/ga-24.04/generic/boot-kernel`,
        `${NOBLE_AMD64}/squashfs`,
        `${NOBLE_AMD64}/squashfs.manifest`,
      ])
    } finally {
      await h2.close()
    }
  })
})
