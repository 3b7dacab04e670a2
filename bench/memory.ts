/**
 * Goal 6: the proxy process's peak resident memory while 10 clients stream
 * big files, half a stored file (hits) and half a cold one (misses, one
 * shared fill), for 256 MiB and then 1 GiB files: the peak must stay under
 * 150 MB and must not grow with the file size.
 */

import { join } from 'node:path'
import { get, getAll } from './lib/http-client.js'
import { MB, MiB, type BenchResult } from './lib/results.js'
import { readRss, sampleRss } from './lib/rss-sampler.js'
import { squashfsTree, startStand } from './lib/stand.js'

const CLIENTS = 10
const LIMIT_BYTES = 150 * MB
/** "Not growing": the 1 GiB peak may exceed the 256 MiB one by sampling noise only. */
const GROWTH_ALLOWED = 1.1

interface Peak {
  baseline: number
  peak: number
}

export async function benchMemory(dir: string): Promise<BenchResult[]> {
  const small = await peakRss(join(dir, 'small'), 256 * MiB)
  const large = await peakRss(join(dir, 'large'), 1024 * MiB)
  const growth = large.peak / small.peak
  return [
    {
      name: `6 peak proxy RSS, ${CLIENTS} clients on 1 GiB files (hits + misses)`,
      value: large.peak / MB,
      reference: small.peak / MB,
      unit: 'MB',
      referenceName: 'same with 256 MiB files',
      ratioName: '1 GiB / 256 MiB',
      ratio: growth,
      goal: `<= ${LIMIT_BYTES / MB} MB, ratio <= ${GROWTH_ALLOWED}`,
      met: large.peak <= LIMIT_BYTES && growth <= GROWTH_ALLOWED,
      details: { clients: CLIENTS, baselineSmallMB: small.baseline / MB, baselineLargeMB: large.baseline / MB },
    },
  ]
}

async function peakRss(dir: string, size: number): Promise<Peak> {
  const stand = await startStand({ dir, tree: squashfsTree(size, 2) })
  try {
    const [stored, cold] = stand.items('/squashfs')
    if (stored === undefined || cold === undefined) throw new Error('memory: the tree has fewer than two squashfs files')
    const storedUrl = `${stand.proxy.mirrorUrl}${stored.path}`
    const coldUrl = `${stand.proxy.mirrorUrl}${cold.path}`
    await get(storedUrl)
    const baseline = await readRss(stand.proxy.pid)
    const sampler = sampleRss(stand.proxy.pid)
    const urls = Array.from({ length: CLIENTS }, (_, index) => (index % 2 === 0 ? storedUrl : coldUrl))
    const { transfers } = await getAll(urls)
    const peak = await sampler.stop()
    for (const transfer of transfers) {
      if (transfer.status !== 200 || transfer.bytes !== size) throw new Error(`memory: status ${transfer.status}, ${transfer.bytes} of ${size} bytes`)
    }
    return { baseline, peak }
  } finally {
    await stand.close()
  }
}
