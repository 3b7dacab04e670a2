/**
 * The S3 store (issue 15) on a real Ceph RADOS Gateway started for the run
 * (scripts/ceph-rgw.sh, memstore). Hit: a stored 256 MiB object through the
 * proxy against the same client GETting the same object straight from the
 * gateway (the bucket lets anyone read its objects, so the raw client needs
 * no signature), 1 and 4 concurrent clients, rounds alternating, and the
 * time to first byte of the 1-client rounds. Miss: a cold 256 MiB file
 * through the proxy, which spools it and uploads it in parts while serving,
 * against the same file straight from upstream at 200 MB/s per connection;
 * a second proxy with the filesystem store fetches the same cold files in
 * the same rounds (its figures are in the row's details), which tells the S3
 * store's own cost from what the machine allowed a miss in that run.
 */

import { join } from 'node:path'
import { PutBucketPolicyCommand } from '@aws-sdk/client-s3'
import { startCephRgw, type CephRgw } from '../test/support/ceph-rgw.js'
import { get, getAll, type Transfer } from './lib/http-client.js'
import { MiB, median, type BenchResult } from './lib/results.js'
import { startProxyProcess, type ProxyProcess } from './lib/proxy-process.js'
import { metadataLoaded, squashfsTree, startStand, type Stand } from './lib/stand.js'
import { checked, mbps, pairedMisses } from './miss.js'

const FILE_BYTES = 256 * MiB
const BUCKET = 'bench'
const PREFIX = 'cache/'
const HIT_CLIENTS = [1, 4]
const HIT_ROUNDS = 5
const MISS_ROUNDS = 3
const UPSTREAM_RATE = 200e6
const GOAL = 0.9
/** Every file of the run stays in the OSD's RAM, with room for the parts of the uploads. */
const STORE_BYTES = 4 * 2 ** 30

export interface S3BenchOptions {
  /** Extra `node` flags for the proxy, such as `--cpu-prof`. */
  nodeArgs?: string[]
}

export async function benchS3Store(dir: string, options: S3BenchOptions = {}): Promise<BenchResult[]> {
  const rgw = await startCephRgw({ storeBytes: STORE_BYTES })
  let stand: Stand | undefined
  let filesystemProxy: ProxyProcess | undefined
  try {
    await rgw.createBucket(BUCKET)
    await allowAnonymousGets(rgw)
    stand = await startStand({
      dir: join(dir, 'stand'),
      tree: squashfsTree(FILE_BYTES, MISS_ROUNDS + 1),
      nodeArgs: options.nodeArgs,
      store: { type: 's3', endpoint: rgw.endpoint, bucket: BUCKET, prefix: PREFIX },
      env: { AWS_ACCESS_KEY_ID: rgw.keys.accessKeyId, AWS_SECRET_ACCESS_KEY: rgw.keys.secretAccessKey },
    })
    const [stored, ...cold] = stand.items('/squashfs')
    if (stored === undefined) throw new Error('s3-store: the tree has no squashfs')
    // The same cold files through a second proxy with the filesystem store: what the machine allows a miss in this run.
    filesystemProxy = await startProxyProcess({ upstreamUrl: stand.upstream.url, keyringPath: stand.upstream.keyringPath, dir: join(dir, 'filesystem-proxy') })
    await metadataLoaded(filesystemProxy)
    const misses = await pairedMisses(stand, cold, UPSTREAM_RATE, [filesystemProxy.mirrorUrl])
    await stand.upstream.setRate(undefined)
    return [...missRows(misses), ...(await hitRows(stand, rgw, stored.path, stored.sha256, stored.size))]
  } finally {
    await filesystemProxy?.close()
    await stand?.close()
    await rgw.down()
  }
}

/** A bucket policy letting anyone GET the objects: the raw bench client sends no signature. */
async function allowAnonymousGets(rgw: CephRgw): Promise<void> {
  const policy = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: '*', Action: ['s3:GetObject'], Resource: [`arn:aws:s3:::${BUCKET}/*`] }] }
  await rgw.client().send(new PutBucketPolicyCommand({ Bucket: BUCKET, Policy: JSON.stringify(policy) }))
}

function missRows({ direct, proxied, others }: { direct: Transfer[]; proxied: Transfer[]; others: Transfer[][] }): BenchResult[] {
  const ratio = median(proxied.map((transfer, round) => mbps(transfer) / mbps(direct[round] as Transfer)))
  const filesystem = others[0] ?? []
  const filesystemRatio = median(filesystem.map((transfer, round) => mbps(transfer) / mbps(direct[round] as Transfer)))
  return [
    {
      name: '10 S3 store miss throughput, 256 MiB cold file',
      value: median(proxied.map(mbps)),
      reference: median(direct.map(mbps)),
      unit: 'MB/s',
      referenceName: 'direct from upstream',
      ratioName: 'proxy / direct',
      ratio,
      goal: `>= ${GOAL}`,
      met: ratio >= GOAL,
      details: {
        fileBytes: FILE_BYTES,
        upstreamBytesPerSecond: UPSTREAM_RATE,
        rounds: direct.length,
        proxyRuns: proxied.map((transfer) => Math.round(mbps(transfer))).join(' '),
        directRuns: direct.map((transfer) => Math.round(mbps(transfer))).join(' '),
        filesystemStoreRuns: filesystem.map((transfer) => Math.round(mbps(transfer))).join(' '),
        filesystemStoreRatio: Number(filesystemRatio.toFixed(2)),
      },
    },
  ]
}

async function hitRows(stand: Stand, rgw: CephRgw, path: string, sha256: string, size: number): Promise<BenchResult[]> {
  const proxyUrl = `${stand.proxy.mirrorUrl}${path}`
  const directUrl = `${rgw.endpoint}/${BUCKET}/${PREFIX}${sha256}`
  // The first fetch fills; the object is in the bucket once the upload completes, just after the body ends.
  checked(await get(proxyUrl), size)
  await objectStored(directUrl)
  // A warm-up of both: the proxy's first GET to the gateway opens its connection.
  checked(await get(directUrl), size)
  checked(await get(proxyUrl), size)
  const rows: BenchResult[] = []
  const firstBytes: Array<{ proxy: number; direct: number }> = []
  for (const clients of HIT_CLIENTS) {
    const rounds: Array<{ proxy: number; direct: number }> = []
    for (let round = 0; round < HIT_ROUNDS; round++) {
      const direct = await run(directUrl, clients, size)
      const proxy = await run(proxyUrl, clients, size)
      rounds.push({ proxy: proxy.mbps, direct: direct.mbps })
      if (clients === 1) firstBytes.push({ proxy: proxy.ttfbMs, direct: direct.ttfbMs })
    }
    const ratio = median(rounds.map((round) => round.proxy / round.direct))
    rows.push({
      name: `9 S3 store hit, 256 MiB object, ${clients} client${clients === 1 ? '' : 's'}`,
      value: median(rounds.map((round) => round.proxy)),
      reference: median(rounds.map((round) => round.direct)),
      unit: 'MB/s',
      referenceName: 'direct GET from RGW',
      ratioName: 'proxy / direct',
      ratio,
      goal: `>= ${GOAL}`,
      met: ratio >= GOAL,
      details: {
        fileBytes: size,
        clients,
        rounds: HIT_ROUNDS,
        proxyRuns: rounds.map((round) => Math.round(round.proxy)).join(' '),
        directRuns: rounds.map((round) => Math.round(round.direct)).join(' '),
      },
    })
  }
  const delta = median(firstBytes.map((round) => round.proxy - round.direct))
  rows.push({
    name: '9 S3 store hit time to first byte, 1 client',
    value: median(firstBytes.map((round) => round.proxy)),
    reference: median(firstBytes.map((round) => round.direct)),
    unit: 'ms',
    referenceName: 'direct GET from RGW',
    ratioName: 'proxy - direct, ms',
    ratio: delta,
    goal: '<= 10 ms',
    met: delta <= 10,
    details: {
      rounds: firstBytes.length,
      proxyRuns: firstBytes.map((round) => round.proxy.toFixed(1)).join(' '),
      directRuns: firstBytes.map((round) => round.direct.toFixed(1)).join(' '),
    },
  })
  return rows
}

/** Aggregate MB/s of `clients` simultaneous full downloads, and the median time to first byte. */
async function run(url: string, clients: number, size: number): Promise<{ mbps: number; ttfbMs: number }> {
  const { transfers, ms } = await getAll(Array.from({ length: clients }, () => url))
  for (const transfer of transfers) checked(transfer, size)
  return { mbps: (clients * size) / 1e6 / (ms / 1000), ttfbMs: median(transfers.map((transfer) => transfer.ttfbMs)) }
}

/** Waits until the gateway serves the object (the fill's upload completes after its body ended). */
async function objectStored(url: string): Promise<void> {
  const deadline = Date.now() + 30_000
  while ((await fetch(url, { method: 'HEAD' })).status !== 200) {
    if (Date.now() > deadline) throw new Error(`s3-store: ${url} was not stored within 30 s of its fill`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}
