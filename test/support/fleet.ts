/**
 * A fleet for tests: a real Ceph RGW with one bucket, a signed test upstream
 * (which counts requests and body bytes per path), one signing key and one
 * fleet secret shared by N `sstream-proxy serve` replicas, each a separate
 * process (so a test can `kill -9` one) with its own port, `dataDir` and
 * `fleet.advertise`. Helpers kill, restart and read the log of each replica,
 * and hash what the bucket holds.
 */

import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3'
import { loadOrCreateSigningKey } from '../../src/streams/signing-key.js'
import { startCephRgw, type CephRgw } from './ceph-rgw.js'
import { freePort } from './child-listener.js'
import { MIRROR_PATH } from './proxy-harness.js'
import { buildUpstreamTree, type TreeItem, type TreeOptions, type UpstreamTree } from './upstream-tree.js'
import { startUpstreamServer, type UpstreamServer } from './upstream-server.js'
import { startChildProxy, type ChildProxy, type Exit } from '../reliability/support/child-proxy.js'

export const FLEET_BUCKET = 'fleet'
export const FLEET_PREFIX = 'cache/'

export interface FleetOptions {
  /** Number of replicas; default 3. */
  replicas?: number
  tree?: TreeOptions
  selections?: Array<{ filters: string[]; max?: number }>
  /** `fleet.claimTtl`; default `3s`, so that a takeover comes quickly. */
  claimTtl?: string
  /** `fleet.leaseTtl`; default `5s`. */
  leaseTtl?: string
  /** The mirror's `publish`; default `selected`. */
  publish?: 'selected' | 'cached'
  prefetchOnStart?: boolean
  /** Merged into every replica's configuration file (top level). */
  config?: Record<string, unknown>
}

export interface FleetReplica {
  index: number
  port: number
  /** `http://127.0.0.1:PORT`, which is also its `fleet.advertise` (with a `/`). */
  url: string
  dataDir: string
  configPath: string
  /** The running process, undefined once killed or stopped. */
  process: ChildProxy | undefined
}

export interface Fleet {
  rgw: CephRgw
  tree: UpstreamTree
  upstream: UpstreamServer
  /** The fleet secret every replica reads. */
  secret: string
  replicas: FleetReplica[]
  /** The URL of `path` (relative to the mirror root) on replica `index`. */
  url(index: number, path: string): string
  /** `kill -9`: no clean-up, no claim removed. */
  kill(index: number): Promise<Exit>
  stop(index: number): Promise<Exit>
  /** Starts the replica again on its port, data directory and configuration. */
  restart(index: number): Promise<void>
  /** Everything the replica printed, across its runs (JSON lines on stdout, then stderr). */
  log(index: number): string
  /** The log lines of replica `index` whose message is `message`, parsed. */
  logEvents(index: number, message: string): Array<Record<string, unknown>>
  /** Every cached object in the bucket with the sha256 of its bytes, read back. */
  storedObjects(): Promise<Array<{ name: string; size: number; sha256: string }>>
  close(): Promise<void>
}

/**
 * The newest amd64 item of `release` (default noble, 24.04) whose path ends
 * with `file` (`squashfs`, `boot-kernel`, ...): in the default selection, so
 * every replica serves it.
 */
export function newestItem(tree: UpstreamTree, file: string, release = '24.04'): TreeItem {
  const candidates = tree.items.filter((item) => item.path.endsWith(`/${file}`) && item.product.includes(`:${release}:amd64:`))
  const newest = candidates.sort((a, b) => (a.version < b.version ? 1 : a.version > b.version ? -1 : 0))[0]
  if (newest === undefined) throw new Error(`no ${release} amd64 item ending with ${file} in the tree`)
  return newest
}

export async function startFleet(options: FleetOptions = {}): Promise<Fleet> {
  const count = options.replicas ?? 3
  const dir = await mkdtemp(join(tmpdir(), 'sstream-fleet-'))
  const rgw = await startCephRgw()
  const replicas: FleetReplica[] = []
  const logs: string[] = []
  let upstream: UpstreamServer | undefined
  try {
    await rgw.createBucket(FLEET_BUCKET)
    const tree = await buildUpstreamTree(options.tree)
    upstream = await startUpstreamServer(tree)
    const keyring = await tree.writeKeyring(dir)
    const signingKey = join(dir, 'signing-key.asc')
    await loadOrCreateSigningKey(signingKey)
    const secret = createHash('sha256').update(`fleet-secret:${dir}`).digest('hex')
    const secretFile = join(dir, 'fleet-secret')
    await writeFile(secretFile, `${secret}\n`, { mode: 0o600 })
    const env = { AWS_ACCESS_KEY_ID: rgw.keys.accessKeyId, AWS_SECRET_ACCESS_KEY: rgw.keys.secretAccessKey }

    for (let index = 0; index < count; index++) {
      const port = await freePort()
      const dataDir = join(dir, `replica-${index}`)
      await mkdir(dataDir, { recursive: true })
      const url = `http://127.0.0.1:${port}`
      const config = {
        listen: { host: '127.0.0.1', port },
        dataDir,
        signingKey,
        metadataTtl: '10m',
        store: { type: 's3', endpoint: rgw.endpoint, bucket: FLEET_BUCKET, prefix: FLEET_PREFIX, region: 'us-east-1', forcePathStyle: true },
        fleet: { advertise: `${url}/`, secretFile, claimTtl: options.claimTtl ?? '3s', leaseTtl: options.leaseTtl ?? '5s' },
        prefetch: { onStart: options.prefetchOnStart ?? false, interval: '1h', concurrency: 4 },
        mirrors: [
          {
            name: 'stable',
            path: MIRROR_PATH,
            upstream: upstream.url,
            keyring,
            publish: options.publish ?? 'selected',
            selections: options.selections ?? [{ filters: ['release~(jammy|noble)'], max: 1 }, { filters: ['os~(grub*|pxelinux)'], max: 1 }],
          },
        ],
        ...options.config,
      }
      const configPath = join(dir, `replica-${index}.json`)
      await writeFile(configPath, JSON.stringify(config, null, 2))
      replicas.push({ index, port, url, dataDir, configPath, process: undefined })
      logs.push('')
    }

    const replicaOf = (index: number): FleetReplica => {
      const replica = replicas[index]
      if (replica === undefined) throw new Error(`no replica ${index} in a fleet of ${count}`)
      return replica
    }
    const start = async (replica: FleetReplica) => {
      replica.process = await startChildProxy(replica.configPath, 30_000, env)
      // Listening comes before the first metadata is verified: tests time requests from a ready replica.
      const index = `${replica.url}${MIRROR_PATH}streams/v1/index.sjson`
      for (let tries = 0; (await fetch(index).then((answer) => answer.status, () => 0)) !== 200; tries++) {
        if (tries > 100) throw new Error(`replica ${replica.index} serves no metadata: ${replica.process.output().stdout}`)
        await sleep(100)
      }
    }
    /** Keeps what a process printed once it has exited, so the log spans restarts. */
    const ended = (replica: FleetReplica, exit: Exit) => {
      logs[replica.index] += exit.stdout + exit.stderr
      replica.process = undefined
      return exit
    }
    await Promise.all(replicas.map(start))
    const up = upstream
    const fleet: Fleet = {
      rgw,
      tree,
      upstream,
      secret,
      replicas,
      url: (index, path) => `${replicaOf(index).url}${MIRROR_PATH}${path}`,
      async kill(index) {
        const replica = replicaOf(index)
        if (replica.process === undefined) throw new Error(`replica ${index} is not running`)
        return ended(replica, await replica.process.stop('SIGKILL'))
      },
      async stop(index) {
        const replica = replicaOf(index)
        if (replica.process === undefined) throw new Error(`replica ${index} is not running`)
        return ended(replica, await replica.process.stop('SIGTERM'))
      },
      async restart(index) {
        const replica = replicaOf(index)
        if (replica.process !== undefined) throw new Error(`replica ${index} is running`)
        await start(replica)
      },
      log(index) {
        const output = replicaOf(index).process?.output()
        return logs[index] + (output === undefined ? '' : output.stdout + output.stderr)
      },
      logEvents(index, message) {
        const events: Array<Record<string, unknown>> = []
        for (const line of fleet.log(index).split('\n')) {
          if (!line.startsWith('{')) continue
          try {
            const event = JSON.parse(line) as Record<string, unknown>
            if (event.message === message) events.push(event)
          } catch {
            // A line cut by a kill.
          }
        }
        return events
      },
      async storedObjects() {
        const client = rgw.client()
        const found: Array<{ name: string; size: number; sha256: string }> = []
        let token: string | undefined
        do {
          const page = await client.send(new ListObjectsV2Command({ Bucket: FLEET_BUCKET, Prefix: FLEET_PREFIX, ContinuationToken: token }))
          for (const object of page.Contents ?? []) {
            const name = (object.Key ?? '').slice(FLEET_PREFIX.length)
            if (!/^[0-9a-f]{64}$/.test(name)) continue
            const body = await client.send(new GetObjectCommand({ Bucket: FLEET_BUCKET, Key: object.Key }))
            const bytes = Buffer.from(await (body.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray())
            found.push({ name, size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') })
          }
          token = page.IsTruncated === true ? page.NextContinuationToken : undefined
        } while (token !== undefined)
        return found
      },
      async close() {
        await Promise.all(replicas.map((replica) => replica.process?.stop('SIGKILL').catch(() => undefined)))
        await up.close()
        await rgw.down()
        await rm(dir, { recursive: true, force: true })
      },
    }
    return fleet
  } catch (error) {
    await Promise.all(replicas.map((replica) => replica.process?.stop('SIGKILL').catch(() => undefined)))
    await upstream?.close()
    await rgw.down()
    throw error
  }
}
