/**
 * Goal 8 (issue 15, item 5): 1,000 keep-alive clients (`wrk -c1000`)
 * downloading one stored 8 MiB file over and over, against nginx serving the
 * same file to the same clients in the same run. The proxy's throughput must
 * reach 0.9x nginx's while its RSS stays under 300 MB, and its RSS must be
 * back under 150 MB 60 s after the load ends: memory is bounded by the read
 * buffer budget, not by the number of clients.
 */

import { join } from 'node:path'
import { get } from './lib/http-client.js'
import { startNginx } from './lib/nginx.js'
import { MIRROR_PATH } from './lib/proxy-process.js'
import { MB, MiB, type BenchResult } from './lib/results.js'
import { readRss, sampleRss } from './lib/rss-sampler.js'
import { squashfsTree, startStand } from './lib/stand.js'
import { bytesPerSecond } from './lib/wrk.js'

const FILE_BYTES = 8 * MiB
const CLIENTS = 1000
const LOAD_SECONDS = 20
const SETTLE_SECONDS = 60
const THROUGHPUT_GOAL = 0.9
const PEAK_LIMIT_BYTES = 300 * MB
const SETTLED_LIMIT_BYTES = 150 * MB

export async function benchFanOut(dir: string): Promise<BenchResult[]> {
  const stand = await startStand({ dir: join(dir, 'stand'), tree: squashfsTree(FILE_BYTES, 1) })
  const nginxRoot = join(dir, 'nginx-root')
  const [file] = stand.items('/squashfs')
  if (file === undefined) throw new Error('fan-out: the tree has no squashfs')
  await stand.upstream.writeFiles(join(nginxRoot, MIRROR_PATH), [file.path])
  const nginx = await startNginx(nginxRoot, join(dir, 'nginx'), 4 * CLIENTS)
  try {
    const proxyUrl = `${stand.proxy.mirrorUrl}${file.path}`
    const nginxUrl = `${nginx.url}${MIRROR_PATH}${file.path}`
    // The first fetch stores it: from then on it is a hit.
    const fill = await get(proxyUrl)
    if (fill.bytes !== file.size) throw new Error(`fan-out: the first fetch of ${file.path} returned ${fill.bytes} of ${file.size} bytes`)
    await get(nginxUrl)
    const load = { connections: CLIENTS, seconds: LOAD_SECONDS, timeoutSeconds: 60 }

    const baseline = await readRss(stand.proxy.pid)
    const sampler = sampleRss(stand.proxy.pid)
    const proxy = await bytesPerSecond(proxyUrl, load)
    const peak = await sampler.stop()
    const settling: number[] = []
    for (let second = 1; second <= SETTLE_SECONDS; second++) {
      await new Promise((resolve) => setTimeout(resolve, 1000))
      settling.push(await readRss(stand.proxy.pid))
    }
    const settled = settling.at(-1) as number
    const reference = await bytesPerSecond(nginxUrl, load)

    const ratio = proxy / reference
    const common = { fileBytes: file.size, clients: CLIENTS, loadSeconds: LOAD_SECONDS }
    return [
      {
        name: `8 fan-out, ${CLIENTS.toLocaleString('en-US')} clients on a cached 8 MiB file: throughput`,
        value: proxy / MB,
        reference: reference / MB,
        unit: 'MB/s',
        referenceName: 'nginx sendfile',
        ratioName: 'proxy / nginx',
        ratio,
        goal: `>= ${THROUGHPUT_GOAL}`,
        met: ratio >= THROUGHPUT_GOAL,
        details: common,
      },
      {
        name: `8 fan-out, ${CLIENTS.toLocaleString('en-US')} clients: peak proxy RSS`,
        value: peak / MB,
        reference: PEAK_LIMIT_BYTES / MB,
        unit: 'MB',
        referenceName: 'limit',
        ratioName: 'peak / limit',
        ratio: peak / PEAK_LIMIT_BYTES,
        goal: `<= ${PEAK_LIMIT_BYTES / MB} MB`,
        met: peak <= PEAK_LIMIT_BYTES,
        details: { ...common, baselineMB: Math.round(baseline / MB) },
      },
      {
        name: `8 fan-out: proxy RSS ${SETTLE_SECONDS} s after the load`,
        value: settled / MB,
        reference: SETTLED_LIMIT_BYTES / MB,
        unit: 'MB',
        referenceName: 'limit',
        ratioName: 'RSS / limit',
        ratio: settled / SETTLED_LIMIT_BYTES,
        goal: `<= ${SETTLED_LIMIT_BYTES / MB} MB`,
        met: settled <= SETTLED_LIMIT_BYTES,
        // Every 10 s, to show when memory came back.
        details: { ...common, rssEvery10sMB: settling.filter((_, index) => index % 10 === 9).map((rss) => Math.round(rss / MB)).join(' ') },
      },
    ]
  } finally {
    await nginx.close()
    await stand.close()
  }
}
