/**
 * A fleet's garbage collection and its view on /status and /metrics, with
 * replicas in this process on a real Ceph RGW: GC looks at the whole bucket
 * (not the replica's own index), keeps what a mirror publishes and what a
 * live fill claim names, runs only under the fleet's `gc` lease; /status and
 * /metrics show the replicas, the leases and the fills running fleet-wide.
 */

import assert from 'node:assert/strict'
import { createHash, randomBytes, randomUUID } from 'node:crypto'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3'
import type { Config } from '../../src/config/types.js'
import type { LeaseRecord } from '../../src/fleet/bucket-leases.js'
import type { FleetStatus } from '../../src/fleet/fleet-monitor.js'
import type { FillClaim } from '../../src/fleet/fill-claims.js'
import type { RecordStore } from '../../src/store/s3-records.js'
import { startCephRgw, type CephRgw } from '../support/ceph-rgw.js'
import { startHarness, type Harness } from '../support/proxy-harness.js'

const BUCKET = 'fleet-gc'
let rgw: CephRgw
let secretFile: string
before(async () => {
  rgw = await startCephRgw()
  await rgw.createBucket(BUCKET)
  secretFile = join(await mkdtemp(join(tmpdir(), 'sstream-fleet-secret-')), 'fleet.secret')
  await writeFile(secretFile, randomBytes(32).toString('hex'))
})
after(async () => {
  await rgw?.down()
})

/** A replica on `prefix`; with `like`, one with the same mirrors and key as that one (a fleet). */
async function startReplica(prefix: string, like?: Harness, leaseTtl = 30): Promise<Harness> {
  const store: Config['store'] = { type: 's3', endpoint: rgw.endpoint, bucket: BUCKET, prefix, region: 'us-east-1', forcePathStyle: true, abandonedUploadAge: 86_400 }
  return startHarness({
    tree: { releases: [{ release: 'noble', version: '24.04' }], arches: ['amd64'], versions: ['20250201'] },
    env: { AWS_ACCESS_KEY_ID: rgw.keys.accessKeyId, AWS_SECRET_ACCESS_KEY: rgw.keys.secretAccessKey },
    config: {
      store,
      fleet: { advertise: 'http://127.0.0.1:9/', secretFile, claimTtl: 10, leaseTtl },
      ...(like && { mirrors: like.config.mirrors, signingKey: like.config.signingKey }),
    },
  })
}

const records = (h: Harness) => h.proxy.core.replica?.records as RecordStore

async function putObject(prefix: string): Promise<string> {
  const body = randomBytes(1000)
  const sha256 = createHash('sha256').update(body).digest('hex')
  await rgw.client().send(new PutObjectCommand({ Bucket: BUCKET, Key: `${prefix}${sha256}`, Body: body }))
  return sha256
}

async function objectNames(prefix: string): Promise<Set<string>> {
  const page = await rgw.client().send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }))
  return new Set((page.Contents ?? []).map((object) => object.Key?.slice(prefix.length) ?? '').filter((name) => /^[0-9a-f]{64}$/.test(name)))
}

const claim = (path: string, expiresAt: number): FillClaim => ({ owner: 'other-replica', advertise: 'http://10.0.0.2:8080/', size: 1000, path, expiresAt, since: expiresAt - 60_000 })

/** Polls `read` until `done` says yes; the bound is generous, as the fleet is read every leaseTtl/3. */
async function eventually<T>(read: () => Promise<T>, done: (value: T) => boolean, what: string): Promise<T> {
  const until = Date.now() + 20_000
  for (;;) {
    const value = await read()
    if (done(value)) return value
    if (Date.now() > until) assert.fail(`${what}: last seen ${JSON.stringify(value)}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

describe('garbage collection in a fleet', () => {
  test('collects the whole bucket but what a mirror publishes and what a live fill claims', async () => {
    const prefix = `${randomUUID()}/`
    const h = await startReplica(prefix)
    try {
      assert.equal((await h.proxy.core.prefetcher.run('stable', { gc: false })).result, 'ok')
      const { core } = h.proxy
      const published = new Set([...(core.mirrors[0]?.current()?.files.values() ?? [])].map((file) => file.sha256))
      const stored = await objectNames(prefix)
      assert.ok(stored.size > 0 && [...stored].every((sha256) => published.has(sha256)))
      // Stored by another replica: in the bucket, not in this replica's index.
      const [notIndexed] = [...stored]
      core.store.index.delete(notIndexed as string)
      const garbage = await putObject(prefix)
      const claimed = await putObject(prefix)
      const staleClaim = await putObject(prefix)
      await records(h).create(`fills/${claimed}`, claim('noble/amd64/x/claimed', Date.now() + 60_000))
      await records(h).create(`fills/${staleClaim}`, claim('noble/amd64/x/stale', Date.now() - 1))

      const report = await core.prefetcher.collect()
      assert.deepEqual(report?.files.map((file) => file.sha256).sort(), [garbage, staleClaim].sort())
      assert.deepEqual(report?.files.map((file) => file.path), [null, null], 'objects this replica never stored have no path')
      const left = await objectNames(prefix)
      assert.deepEqual([...left].sort(), [...stored, claimed].sort(), 'published files (indexed here or not) and the claimed one stay')

      // Another replica collecting: this one leaves everything alone.
      const more = await putObject(prefix)
      // The lease's record stays once released (expired): the other replica took it over.
      const released = await records(h).read<LeaseRecord>('leases/gc')
      assert.equal(released?.value.expiresAt, 0)
      const other: LeaseRecord = { replica: 'other-replica', advertise: 'http://10.0.0.2:8080/', token: 't', acquiredAt: Date.now(), expiresAt: Date.now() + 60_000 }
      assert.ok(await records(h).replace('leases/gc', other, released.etag))
      assert.equal(await core.prefetcher.collect(), undefined)
      assert.ok((await objectNames(prefix)).has(more))
    } finally {
      await h.close()
    }
  })
})

describe('the fleet on /status and /metrics', () => {
  let first: Harness
  let second: Harness
  before(async () => {
    const prefix = `${randomUUID()}/`
    first = await startReplica(prefix, undefined, 3)
    second = await startReplica(prefix, first, 3)
  })
  after(async () => {
    await second?.close()
    await first?.close()
  })

  const status = async (h: Harness) => (await (await fetch(`${h.proxy.url}/status`)).json()) as { fleet?: FleetStatus }

  test('shows this replica, the live replicas, the lease holders and the fills running fleet-wide', async () => {
    const sha256 = createHash('sha256').update(randomUUID()).digest('hex')
    await records(first).create(`fills/${sha256}`, claim('noble/amd64/20250201/squashfs', Date.now() + 60_000))
    const lease = await first.proxy.core.fleetLeases?.tryAcquire('prefetch:stable')
    assert.ok(lease)
    try {
      const report = await eventually(
        () => status(second),
        (value) => value.fleet?.replicas.length === 2 && value.fleet.fills.length === 1 && value.fleet.leases.some((entry) => entry.holder !== null),
        'the second replica sees both, the fill and the lease',
      )
      const fleet = report.fleet as FleetStatus
      assert.equal(fleet.replica.id, second.proxy.core.replica?.id)
      assert.deepEqual(fleet.replicas.map((replica) => [replica.id, replica.self, replica.disagrees]).sort(), [
        [first.proxy.core.replica?.id, false, null],
        [second.proxy.core.replica?.id, true, null],
      ].sort())
      assert.deepEqual(
        fleet.leases.map((entry) => [entry.name, entry.mirror, entry.holder, entry.heldHere]),
        [
          ['prefetch:stable', 'stable', first.proxy.core.replica?.id, false],
          ['gc', null, null, false],
        ],
      )
      assert.deepEqual(fleet.fills.map((fill) => [fill.sha256, fill.path, fill.owner]), [[sha256, 'noble/amd64/20250201/squashfs', 'http://10.0.0.2:8080/']])
      assert.equal(fleet.error, null)

      const metrics = await eventually(
        async () => (await fetch(`${first.proxy.url}/metrics`)).text(),
        (text) => /^sstream_proxy_fleet_prefetch_lease_held\{mirror="stable"\} 1$/m.test(text),
        'the holder says it holds the lease',
      )
      assert.match(metrics, /^sstream_proxy_fleet_replicas 2$/m)
      assert.match(metrics, /^sstream_proxy_fleet_replicas_disagreeing 0$/m)
      assert.match(metrics, /^sstream_proxy_fleet_fills 1$/m)
      assert.match(metrics, /^sstream_proxy_fleet_gc_lease_held 0$/m)
      assert.match(metrics, /^sstream_proxy_fleet_read_error 0$/m)

      const page = await (await fetch(`${second.proxy.url}/status`, { headers: { accept: 'text/html' } })).text()
      assert.match(page, /<section class="card" id="fleet">/)
      assert.ok(page.includes(`<tr data-sha256="${sha256}">`))
      assert.match(page, /2 replicas/)
    } finally {
      await lease.release()
    }
  })

  test('a replica that stops cleanly leaves the list', async () => {
    const id = first.proxy.core.replica?.id
    await first.stopProxy()
    assert.equal(await records(second).read(`replicas/${id}`), undefined)
    await eventually(() => status(second), (value) => value.fleet?.replicas.length === 1, 'the second replica sees itself alone')
  })
})
