/**
 * Goals 3 and 4, on cold files from an upstream limited to 200 MB/s per
 * connection. Miss: first byte and throughput through the proxy against
 * fetching straight from upstream. Coalescing: 20 clients on one cold file
 * against one client alone on another, and the upstream bytes that cost.
 */

import { join } from 'node:path'
import { get, getAll, type Transfer } from './lib/http-client.js'
import { MiB, median, type BenchResult } from './lib/results.js'
import { squashfsTree, startStand } from './lib/stand.js'

const FILE_BYTES = 128 * MiB
const UPSTREAM_RATE = 200e6
const MISS_ROUNDS = 2
const COALESCED_CLIENTS = 20

export async function benchMiss(dir: string): Promise<BenchResult[]> {
  // Each proxy round and each coalescing run needs a file the proxy has never seen.
  const stand = await startStand({ dir: join(dir, 'stand'), tree: squashfsTree(FILE_BYTES, MISS_ROUNDS + 2) })
  try {
    const files = stand.items('/squashfs')
    await stand.upstream.setRate(UPSTREAM_RATE)
    const direct: Transfer[] = []
    const proxied: Transfer[] = []
    for (let round = 0; round < MISS_ROUNDS; round++) {
      const file = files[round]!
      direct.push(checked(await get(`${stand.upstream.url}${file.path}`), file.size))
      proxied.push(checked(await get(`${stand.proxy.mirrorUrl}${file.path}`), file.size))
    }
    const rate = (transfers: Transfer[]) => median(transfers.map((transfer) => transfer.bytes / 1e6 / (transfer.ms / 1000)))
    const ttfb = (transfers: Transfer[]) => median(transfers.map((transfer) => transfer.ttfbMs))
    const throughputRatio = rate(proxied) / rate(direct)
    const ttfbDelta = ttfb(proxied) - ttfb(direct)

    const alone = files[MISS_ROUNDS]!
    const shared = files[MISS_ROUNDS + 1]!
    const one = await getAll([`${stand.proxy.mirrorUrl}${alone.path}`])
    await stand.upstream.resetCounters()
    const many = await getAll(Array.from({ length: COALESCED_CLIENTS }, () => `${stand.proxy.mirrorUrl}${shared.path}`))
    for (const transfer of [...one.transfers, ...many.transfers]) checked(transfer, shared.size)
    const upstreamBytes = await stand.upstream.bytesSent(shared.path)
    const wallRatio = many.ms / one.ms
    const common = { fileBytes: FILE_BYTES, upstreamBytesPerSecond: UPSTREAM_RATE }
    return [
      {
        name: '3 miss throughput, 128 MiB cold file',
        value: rate(proxied),
        reference: rate(direct),
        unit: 'MB/s',
        referenceName: 'direct from upstream',
        ratioName: 'proxy / direct',
        ratio: throughputRatio,
        goal: '>= 0.95',
        met: throughputRatio >= 0.95,
        details: { ...common, rounds: MISS_ROUNDS },
      },
      {
        name: '3 miss time to first byte',
        value: ttfb(proxied),
        reference: ttfb(direct),
        unit: 'ms',
        referenceName: 'direct from upstream',
        ratioName: 'proxy - direct, ms',
        ratio: ttfbDelta,
        goal: '<= 50 ms',
        met: ttfbDelta <= 50,
        details: { ...common, rounds: MISS_ROUNDS },
      },
      {
        name: `4 coalescing, ${COALESCED_CLIENTS} clients on one cold file: wall time`,
        value: many.ms,
        reference: one.ms,
        unit: 'ms',
        referenceName: '1 client alone',
        ratioName: `${COALESCED_CLIENTS} / 1`,
        ratio: wallRatio,
        goal: '<= 1.2',
        met: wallRatio <= 1.2,
        details: { ...common, clients: COALESCED_CLIENTS },
      },
      {
        name: `4 coalescing, ${COALESCED_CLIENTS} clients on one cold file: upstream bytes`,
        value: upstreamBytes / MiB,
        reference: shared.size / MiB,
        unit: 'MiB',
        referenceName: 'file size',
        ratioName: 'copies fetched',
        ratio: upstreamBytes / shared.size,
        goal: '= 1 copy',
        met: upstreamBytes === shared.size,
        details: { upstreamBytes, fileBytes: shared.size },
      },
    ]
  } finally {
    await stand.close()
  }
}

function checked(transfer: Transfer, size: number): Transfer {
  if (transfer.status !== 200 || transfer.bytes !== size) throw new Error(`miss: status ${transfer.status}, ${transfer.bytes} of ${size} bytes`)
  return transfer
}
