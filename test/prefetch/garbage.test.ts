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
      mirror('second', '/second/', ['arch=amd64', 'release=noble', 'ftype=squashfs']),
    ])
    assert.deepEqual(left, [`${NOBLE_AMD64}/squashfs`])
    assert.deepEqual(await collectWith([mirror('stable', '/stable/', ['os~grub'])]), [])
  })
})
