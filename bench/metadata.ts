/**
 * Goal 2: requests per second for `index.sjson` and a products `.sjson` over
 * 64 keep-alive connections (wrk), against nginx serving the very bytes the
 * proxy publishes, in alternating rounds. A bare `node:http` server with the
 * same bytes runs in the same rounds: its figure, in the details, is the
 * ceiling of Node's HTTP stack on this machine.
 */

import { writeFile, mkdir } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { startBareNode } from './lib/bare-node.js'
import { startNginx } from './lib/nginx.js'
import { MIRROR_PATH } from './lib/proxy-process.js'
import { median, type BenchResult } from './lib/results.js'
import { startStand } from './lib/stand.js'
import { requestsPerSecond } from './lib/wrk.js'

const CONNECTIONS = 64
const SECONDS = 2
/**
 * Proxy, nginx and bare Node take turns, and the ratio is the median of each
 * round's own ratio: this shared VM's speed drifts by up to 1.6x within an
 * hour, and servers measured seconds apart see the same machine.
 */
const ROUNDS = 5
const WARM_UP_SECONDS = 1
const GOAL = 0.5

export async function benchMetadata(dir: string): Promise<BenchResult[]> {
  // Three releases, two arches, three versions: a products document of a realistic size.
  const stand = await startStand({
    dir: join(dir, 'stand'),
    tree: {
      releases: [
        { release: 'focal', version: '20.04' },
        { release: 'jammy', version: '22.04' },
        { release: 'noble', version: '24.04' },
      ],
      versions: ['20250101', '20250201', '20250301'],
    },
  })
  const nginxRoot = join(dir, 'nginx-root')
  const documents = ['streams/v1/index.sjson', 'streams/v1/com.ubuntu.maas:stable:v3:download.sjson']
  const sizes = new Map<string, number>()
  for (const path of documents) {
    const body = await fetchText(`${stand.proxy.mirrorUrl}${path}`)
    sizes.set(path, Buffer.byteLength(body))
    const target = join(nginxRoot, MIRROR_PATH, path)
    await mkdir(dirname(target), { recursive: true })
    await writeFile(target, body)
  }
  const nginx = await startNginx(nginxRoot, join(dir, 'nginx'))
  try {
    const results: BenchResult[] = []
    for (const path of documents) {
      const options = { connections: CONNECTIONS, seconds: SECONDS }
      const proxyRuns: number[] = []
      const nginxRuns: number[] = []
      const bareRuns: number[] = []
      const bareNode = await startBareNode(join(nginxRoot, MIRROR_PATH, path))
      const urls = { proxy: `${stand.proxy.mirrorUrl}${path}`, nginx: `${nginx.url}${MIRROR_PATH}${path}`, bare: `${bareNode.url}/` }
      try {
        // Unmeasured: the first seconds of load include V8's compilation of the request path.
        for (const url of Object.values(urls)) await requestsPerSecond(url, { connections: CONNECTIONS, seconds: WARM_UP_SECONDS })
        for (let round = 0; round < ROUNDS; round++) {
          proxyRuns.push(await requestsPerSecond(urls.proxy, options))
          nginxRuns.push(await requestsPerSecond(urls.nginx, options))
          bareRuns.push(await requestsPerSecond(urls.bare, options))
        }
      } finally {
        await bareNode.close()
      }
      const proxy = median(proxyRuns)
      const reference = median(nginxRuns)
      const ratio = median(proxyRuns.map((run, round) => run / (nginxRuns[round] as number)))
      results.push({
        name: `2 metadata ${path.endsWith('index.sjson') ? 'index.sjson' : 'products .sjson'} (${Math.round((sizes.get(path) ?? 0) / 1024)} KiB), ${CONNECTIONS} conns`,
        value: proxy,
        reference,
        unit: 'req/s',
        referenceName: 'nginx',
        ratioName: 'proxy / nginx',
        ratio,
        goal: `>= ${GOAL}`,
        met: ratio >= GOAL,
        details: { path, bytes: sizes.get(path) ?? 0, connections: CONNECTIONS, seconds: SECONDS, rounds: ROUNDS, proxyRuns: proxyRuns.map(Math.round).join(' '), nginxRuns: nginxRuns.map(Math.round).join(' '), bareNodeRuns: bareRuns.map(Math.round).join(' '), proxyToBareNode: median(proxyRuns.map((run, round) => run / (bareRuns[round] as number))) },
      })
    }
    return results
  } finally {
    await nginx.close()
    await stand.close()
  }
}

async function fetchText(url: string): Promise<string> {
  const response = await fetch(url)
  if (response.status !== 200) throw new Error(`${url}: status ${response.status}`)
  return response.text()
}
