/**
 * A full prefetch pass at `prefetch.concurrency` 4 against a serial,
 * one-file-at-a-time fetch of the same selection (the reference
 * `sstream-mirror` way: concurrency 1), with the upstream limited per
 * connection and unlimited. Each run starts from an empty data directory.
 *
 *   node --import tsx bench/prefetch-vs-serial.ts [bytesPerSecondPerConnection]
 */

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DEFAULT_LIMITS } from '../src/config/defaults.js'
import type { Config } from '../src/config/types.js'
import { silentLogger } from '../src/log/logger.js'
import { formatBytes } from '../src/prefetch/progress-display.js'
import { openCore } from '../src/runtime.js'
import { selections } from '../test/support/proxy-harness.js'
import { buildUpstreamTree } from '../test/support/upstream-tree.js'
import { startUpstreamServer, type UpstreamServer } from '../test/support/upstream-server.js'

const RATE = Number(process.argv[2] ?? 2_000_000)

// The shape of a real selection (two releases on amd64: squashfs 450 MB,
// initrd 115 MB, kernel 15 MB), scaled down 100 times.
const tree = await buildUpstreamTree({
  releases: [
    { release: 'jammy', version: '22.04' },
    { release: 'noble', version: '24.04' },
  ],
  arches: ['amd64'],
  versions: ['20250201'],
  sizes: { squashfs: 4_500_000, initrd: 1_150_000, kernel: 150_000, manifest: 5_000, bootloader: 20_000 },
})
const upstream = await startUpstreamServer(tree)
const workDir = await mkdtemp(join(tmpdir(), 'sstream-bench-'))
const keyring = await tree.writeKeyring(workDir)

async function pass(concurrency: number): Promise<{ seconds: number; files: number; bytes: number }> {
  const dataDir = await mkdtemp(join(workDir, 'data-'))
  const config: Config = {
    listen: { host: '127.0.0.1', port: 0 },
    dataDir,
    signingKey: join(workDir, 'signing-key.asc'),
    metadataTtl: 600,
    prefetch: { onStart: false, interval: 3600, concurrency },
    store: { type: 'filesystem' },
    limits: DEFAULT_LIMITS,
    mirrors: [
      {
        name: 'stable',
        path: '/stable/',
        upstreams: [upstream.url],
        upstreamCooldown: 300,
        keyring,
        keyringIsDefault: false,
        metadata: 'filtered',
        publish: 'selected',
        missFailure: 'reset',
        missWait: 8,
        selections: selections([
          { filters: ['arch=amd64', 'release~(jammy|noble)'], max: 1 },
          { filters: ['os~(grub*|pxelinux)'], max: 1 },
        ]),
      },
    ],
    source: 'bench',
  }
  const core = await openCore(config, { log: silentLogger })
  try {
    await core.mirrors[0]?.publication()
    const started = performance.now()
    const outcome = await core.prefetcher.run('stable', { gc: false })
    if (outcome.result !== 'ok') throw new Error(`pass ${outcome.result}: ${outcome.counts.errors.join('; ')}`)
    return { seconds: (performance.now() - started) / 1000, files: outcome.counts.filesDone, bytes: outcome.counts.bytesDone }
  } finally {
    await core.close()
    await rm(dataDir, { recursive: true, force: true })
  }
}

async function compare(label: string, server: UpstreamServer, rate: number | undefined): Promise<void> {
  server.setDefaultRate(rate)
  const serial = await pass(1)
  const parallel = await pass(4)
  console.log(
    `${label}: ${serial.files} files, ${formatBytes(serial.bytes)}; serial ${serial.seconds.toFixed(2)} s, ` +
      `concurrency 4 ${parallel.seconds.toFixed(2)} s, ${(serial.seconds / parallel.seconds).toFixed(2)}x`,
  )
}

try {
  await compare(`upstream limited to ${formatBytes(RATE)}/s per connection`, upstream, RATE)
  await compare('upstream unlimited', upstream, undefined)
} finally {
  await upstream.close()
  await rm(workDir, { recursive: true, force: true })
}
