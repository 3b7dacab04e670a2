/**
 * Goal 1: a 512 MiB file the proxy has stored, to 1 and to 8 concurrent
 * clients, against nginx (`sendfile on`) serving the same bytes from disk.
 */

import { join } from 'node:path'
import { getAll, get } from './lib/http-client.js'
import { startNginx } from './lib/nginx.js'
import { MIRROR_PATH } from './lib/proxy-process.js'
import { MiB, median, type BenchResult } from './lib/results.js'
import { squashfsTree, startStand } from './lib/stand.js'

const FILE_BYTES = 512 * MiB
const ROUNDS = 3
const GOAL = 0.75

export async function benchCachedFile(dir: string): Promise<BenchResult[]> {
  const stand = await startStand({ dir: join(dir, 'stand'), tree: squashfsTree(FILE_BYTES, 1) })
  const nginxRoot = join(dir, 'nginx-root')
  const [file] = stand.items('/squashfs')
  if (file === undefined) throw new Error('cached-file: the tree has no squashfs')
  await stand.upstream.writeFiles(join(nginxRoot, MIRROR_PATH), [file.path])
  const nginx = await startNginx(nginxRoot, join(dir, 'nginx'))
  try {
    const proxyUrl = `${stand.proxy.mirrorUrl}${file.path}`
    const nginxUrl = `${nginx.url}${MIRROR_PATH}${file.path}`
    // The first fetch stores it: from then on it is a hit.
    const fill = await get(proxyUrl)
    if (fill.bytes !== file.size) throw new Error(`cached-file: the first fetch of ${file.path} returned ${fill.bytes} of ${file.size} bytes`)
    await get(nginxUrl)
    const results: BenchResult[] = []
    for (const clients of [1, 8]) {
      // Rounds alternate between the two servers, so drift in the machine's load hits both alike.
      const proxyRates: number[] = []
      const nginxRates: number[] = []
      for (let round = 0; round < ROUNDS; round++) {
        proxyRates.push(await throughput(proxyUrl, clients, file.size))
        nginxRates.push(await throughput(nginxUrl, clients, file.size))
      }
      const proxy = median(proxyRates)
      const reference = median(nginxRates)
      const ratio = proxy / reference
      results.push({
        name: `1 cached 512 MiB file, ${clients} client${clients === 1 ? '' : 's'}`,
        value: proxy,
        reference,
        unit: 'MB/s',
        referenceName: 'nginx sendfile',
        ratioName: 'proxy / nginx',
        ratio,
        goal: `>= ${GOAL}`,
        met: ratio >= GOAL,
        details: { fileBytes: file.size, clients, rounds: ROUNDS },
      })
    }
    return results
  } finally {
    await nginx.close()
    await stand.close()
  }
}

/** Aggregate MB/s of `clients` simultaneous full downloads. */
async function throughput(url: string, clients: number, size: number): Promise<number> {
  const { transfers, ms } = await getAll(Array.from({ length: clients }, () => url))
  for (const transfer of transfers) {
    if (transfer.status !== 200 || transfer.bytes !== size) throw new Error(`${url}: status ${transfer.status}, ${transfer.bytes} of ${size} bytes`)
  }
  return (clients * size) / 1e6 / (ms / 1000)
}
