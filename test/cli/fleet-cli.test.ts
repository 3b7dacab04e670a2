/**
 * A fleet of three `serve` processes on one bucket of a real Ceph RGW, as an
 * operator runs it: one prefetch pass per interval fleet-wide, whichever
 * replica holds the lease; `kill -9` of the holder mid-pass hands the lease
 * on within about one lease period; a fourth replica with another signing key
 * or other mirrors is refused with one line naming the key, exit 2.
 */

import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadOrCreateSigningKey } from '../../src/streams/signing-key.js'
import { startCephRgw, type CephRgw } from '../support/ceph-rgw.js'
import { freePort } from '../support/child-listener.js'
import { buildUpstreamTree, type UpstreamTree } from '../support/upstream-tree.js'
import { startUpstreamServer, type UpstreamServer } from '../support/upstream-server.js'

const cli = fileURLToPath(new URL('../../src/cli.ts', import.meta.url))
const tsx = import.meta.resolve('tsx')
const BUCKET = 'fleet'
const INTERVAL_S = 4
const LEASE_TTL_S = 3
const SQUASHFS_BYTES = 64 * 1024

let rgw: CephRgw
let cwd: string
let tree: UpstreamTree
let upstream: UpstreamServer
let keyring: string
let secretFile: string
let signingKey: string

before(async () => {
  cwd = await mkdtemp(join(tmpdir(), 'sstream-fleet-cli-'))
  rgw = await startCephRgw()
  await rgw.createBucket(BUCKET)
  tree = await buildUpstreamTree({ releases: [{ release: 'noble', version: '24.04' }], arches: ['amd64'], versions: ['20250201'], sizes: { squashfs: SQUASHFS_BYTES } })
  upstream = await startUpstreamServer(tree)
  keyring = await tree.writeKeyring(cwd)
  secretFile = join(cwd, 'fleet.secret')
  await writeFile(secretFile, randomBytes(32).toString('hex'))
  // The key every replica reads, made once (as an operator distributes it).
  signingKey = join(cwd, 'signing-key.asc')
  await loadOrCreateSigningKey(signingKey)
})
after(async () => {
  for (const replica of running) replica.child.kill('SIGKILL')
  await upstream?.close()
  await rgw?.down()
  await rm(cwd, { recursive: true, force: true })
})

interface LogLine {
  time: string
  level: string
  message: string
  mirror?: string
  [field: string]: unknown
}

interface RunningReplica {
  name: string
  child: ChildProcess
  url: string
  lines: LogLine[]
  stderr: string
  exited: Promise<number | null>
}

const running: RunningReplica[] = []

interface ReplicaSettings {
  signingKey?: string
  selection?: string[]
}

async function writeConfig(name: string, settings: ReplicaSettings = {}): Promise<{ config: string; url: string }> {
  const port = await freePort()
  const url = `http://127.0.0.1:${port}/`
  const config = join(cwd, `config-${name}.json`)
  await writeFile(
    config,
    JSON.stringify({
      listen: { host: '127.0.0.1', port },
      dataDir: join(cwd, `data-${name}`),
      signingKey: settings.signingKey ?? signingKey,
      store: { type: 's3', endpoint: rgw.endpoint, bucket: BUCKET, prefix: 'fleet/' },
      fleet: { advertise: url, secretFile, leaseTtl: `${LEASE_TTL_S}s` },
      prefetch: { onStart: true, interval: `${INTERVAL_S}s`, concurrency: 2 },
      mirrors: [
        {
          name: 'stable',
          path: '/stable/',
          upstream: upstream.url,
          keyring,
          selections: [{ filters: settings.selection ?? ['arch=amd64', 'release=noble'], max: 1 }],
        },
      ],
    }),
  )
  return { config, url }
}

function spawnServe(name: string, config: string): { child: ChildProcess; lines: LogLine[]; stderr: () => string; exited: Promise<number | null> } {
  const env: NodeJS.ProcessEnv = { ...process.env, AWS_ACCESS_KEY_ID: rgw.keys.accessKeyId, AWS_SECRET_ACCESS_KEY: rgw.keys.secretAccessKey }
  delete env.SSTREAM_PROXY_CONFIG
  const child = spawn(process.execPath, ['--import', tsx, cli, 'serve', '--config', config], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
  const lines: LogLine[] = []
  let pending = ''
  let stderr = ''
  child.stdout?.on('data', (chunk: Buffer) => {
    pending += chunk.toString('utf8')
    const complete = pending.split('\n')
    pending = complete.pop() ?? ''
    for (const line of complete) if (line.startsWith('{')) lines.push(JSON.parse(line) as LogLine)
  })
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')))
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve))
  return { child, lines, stderr: () => stderr, exited }
}

async function startReplica(name: string): Promise<RunningReplica> {
  const { config, url } = await writeConfig(name)
  const { child, lines, stderr, exited } = spawnServe(name, config)
  const replica: RunningReplica = {
    name,
    child,
    url,
    lines,
    get stderr() {
      return stderr()
    },
    exited,
  }
  running.push(replica)
  await until(() => lines.some((line) => line.message === 'listening'), `${name} listening`, () => replica.stderr)
  return replica
}

/** Waits for `done`, polling; the bound is generous and only stops a test that would hang. */
async function until(done: () => boolean, what: string, detail: () => string = () => '', boundMs = 60_000): Promise<void> {
  const end = Date.now() + boundMs
  while (!done()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}\n${detail()}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

interface PassSeen {
  replica: string
  started: number
  finished: number | undefined
  result: string | undefined
}

/** Every pass of every replica, in the order they started, from their logs. */
function passes(replicas: readonly RunningReplica[]): PassSeen[] {
  const seen: PassSeen[] = []
  for (const replica of replicas) {
    let open: PassSeen | undefined
    for (const line of replica.lines) {
      if (line.message === 'prefetch started') {
        open = { replica: replica.name, started: Date.parse(line.time), finished: undefined, result: undefined }
        seen.push(open)
      } else if (line.message === 'prefetch finished' && open !== undefined) {
        open.finished = Date.parse(line.time)
        open.result = String(line.result)
        open = undefined
      }
    }
  }
  return seen.sort((a, b) => a.started - b.started)
}

describe('a fleet of three replicas', () => {
  const fleet: RunningReplica[] = []
  before(async () => {
    // The squashfs comes slowly (8 s): the first pass holds its lease long enough to be killed in.
    const squashfs = tree.items.find((item) => item.ftype === 'squashfs')
    assert.ok(squashfs)
    upstream.setFault(squashfs.path, { kind: 'rate', bytesPerSecond: SQUASHFS_BYTES / 8 })
    fleet.push(...(await Promise.all(['a', 'b', 'c'].map(startReplica))))
  })

  test('prefetch: the holder of the lease runs the pass, the others skip; killing it hands the lease on within about one lease period', async () => {
    await until(() => passes(fleet).length > 0, 'a first pass', () => fleet.map((replica) => replica.stderr).join('\n'))
    const [first] = passes(fleet)
    const holder = fleet.find((replica) => replica.name === first?.replica) as RunningReplica
    const others = fleet.filter((replica) => replica !== holder)
    await until(
      () => others.every((replica) => replica.lines.some((line) => line.message === 'prefetch skipped: another replica is running a pass' && line.holder === holder.url)),
      'the other replicas skipping, naming the holder',
    )
    // Mid-pass: the squashfs is still coming.
    assert.equal(first?.finished, undefined)
    const killedAt = Date.now()
    holder.child.kill('SIGKILL')
    await holder.exited
    await until(() => passes(others).length > 0, 'another replica taking the pass on')
    const [next] = passes(others)
    const handedOnMs = (next?.started as number) - killedAt
    // The lease lapses at most LEASE_TTL after the last renewal, and the others look every LEASE_TTL/3;
    // the rest is slack for a loaded machine.
    process.stderr.write(`# lease handed on ${handedOnMs} ms after the kill (lease period ${LEASE_TTL_S} s)\n`)
    assert.ok(handedOnMs < (LEASE_TTL_S + LEASE_TTL_S / 3 + 3) * 1000, `handed on after ${handedOnMs} ms`)
    // Every surviving replica's /status names the new holder while its pass runs.
    const newHolder = others.find((replica) => replica.name === next?.replica) as RunningReplica
    for (const replica of others) {
      const shown = async () => {
        const report = (await (await fetch(`${replica.url}status`)).json()) as { fleet: { leases: Array<{ name: string; holderAdvertise: string | null }> } }
        return report.fleet.leases.find((lease) => lease.name === 'prefetch:stable')?.holderAdvertise
      }
      for (let seen = await shown(); seen !== newHolder.url; seen = await shown()) {
        assert.equal(passes(others)[0]?.finished, undefined, `${replica.name}'s /status never named ${newHolder.url} as the holder during its pass (last: ${seen})`)
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    }
    upstream.setFault((tree.items.find((item) => item.ftype === 'squashfs') as { path: string }).path, undefined)
    await until(() => passes(others)[0]?.result !== undefined, 'the pass taken on to finish')
    assert.equal(passes(others)[0]?.result, 'ok')
  })

  test('prefetch: one pass per interval across the fleet', async () => {
    const survivors = fleet.filter((replica) => replica.child.exitCode === null && replica.child.signalCode === null)
    const from = Date.now()
    const windowMs = 3.5 * INTERVAL_S * 1000
    await new Promise((resolve) => setTimeout(resolve, windowMs))
    const seen = passes(survivors).filter((pass) => pass.started >= from && pass.started < from + windowMs)
    // Starts at least an interval apart: at most 4 in 3.5 intervals (3 replicas on their own would run 9 or more).
    assert.ok(seen.length >= 2 && seen.length <= 4, `${seen.length} passes in ${windowMs} ms: ${JSON.stringify(seen)}`)
    process.stderr.write(`# passes ${seen.map((pass) => `${pass.replica}+${pass.started - from}ms`).join(' ')}\n`)
    for (const [index, pass] of seen.entries()) {
      const after = seen[index + 1]
      // The last may still be running.
      if (after !== undefined || pass.result !== undefined) assert.equal(pass.result, 'ok')
      if (after !== undefined) assert.ok(pass.finished !== undefined && pass.finished <= after.started, `passes overlap: ${JSON.stringify([pass, after])}`)
    }
  })

  test('a replica with another signing key is refused: one line naming signingKey and the replica, exit 2', async () => {
    const { config } = await writeConfig('other-key', { signingKey: join(cwd, 'other-signing-key.asc') })
    const { exited, stderr } = spawnServe('other-key', config)
    assert.equal(await exited, 2, stderr())
    assert.equal(stderr().trim().split('\n').length, 1, stderr())
    assert.match(stderr(), /^sstream-proxy: .*config-other-key\.json: signingKey: replica \S+ at http:\/\/127\.0\.0\.1:\d+\/ \(started [^)]+\) signs with key [0-9A-F]{40}, this one with [0-9A-F]{40}: every replica of a bucket must read the same key file\n$/)
  })

  test('a replica with other mirrors is refused: one line naming mirrors and what differs, exit 2', async () => {
    const { config } = await writeConfig('other-mirrors', { selection: ['arch=arm64'] })
    const { exited, stderr } = spawnServe('other-mirrors', config)
    assert.equal(await exited, 2, stderr())
    assert.equal(stderr().trim().split('\n').length, 1, stderr())
    assert.match(stderr(), /config-other-mirrors\.json: mirrors: differ from those of replica \S+ at http:\/\/127\.0\.0\.1:\d+\/ .*: stable set differently; every replica of a bucket must have the same mirrors\n$/)
  })
})
