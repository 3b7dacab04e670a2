/**
 * Leases in the bucket of a real Ceph RGW: of replicas racing for one, one
 * wins; an expired one is taken over; its former holder finds out at its next
 * renewal and stops; a release gives up only the holder's own version.
 */

import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { createBucketLeases, type LeaseRecord } from '../../src/fleet/bucket-leases.js'
import { useRecordsBucket } from '../support/records-bucket.js'

const BUCKET = 'leases'
const { openRecords } = useRecordsBucket(BUCKET)

const replica = (n: number) => ({ id: `replica-${n}`, advertise: `http://10.0.0.${n}:8080/` })

describe('leases in the bucket', () => {
  test('of five replicas racing for one lease, exactly one holds it, and the holder is named', async () => {
    const records = await openRecords()
    const fleet = [1, 2, 3, 4, 5].map((n) => createBucketLeases({ records, ttlMs: 30_000, replica: replica(n) }))
    const leases = await Promise.all(fleet.map((leases) => leases.tryAcquire('prefetch:stable')))
    const winners = leases.flatMap((lease, index) => (lease === undefined ? [] : [index + 1]))
    assert.equal(winners.length, 1)
    const holder = await fleet[0]?.holder('prefetch:stable')
    assert.equal(holder?.owner, `replica-${winners[0]}`)
    assert.equal(holder?.advertise, replica(winners[0] as number).advertise)
    // The lease lives at leases/prefetch-stable: `:` is no record name's character.
    assert.equal((await records.read<LeaseRecord>('leases/prefetch-stable'))?.value.replica, `replica-${winners[0]}`)
    const lease = leases.find((candidate) => candidate !== undefined)
    assert.equal(lease?.held, true)
    await lease?.release()
    assert.equal(lease?.held, false)
    assert.equal(await fleet[0]?.holder('prefetch:stable'), undefined, 'released: nobody holds it')
    const next = await fleet[4]?.tryAcquire('prefetch:stable')
    assert.ok(next, 'a released lease is taken at once')
    await next.release()
  })

  test('a lease whose holder stopped renewing is taken over once it has expired, and not before', async () => {
    const records = await openRecords()
    // A replica that died: its record stays, with its last expiry.
    const dead: LeaseRecord = { replica: 'dead', advertise: 'http://10.0.0.9:8080/', token: 'x', acquiredAt: Date.now() - 60_000, expiresAt: Date.now() + 60_000 }
    const etag = await records.create('leases/gc', dead)
    assert.ok(etag)
    const leases = createBucketLeases({ records, ttlMs: 30_000, replica: replica(1) })
    assert.equal(await leases.tryAcquire('gc'), undefined, 'unexpired: still the dead replica\'s')
    assert.equal((await leases.holder('gc'))?.owner, 'dead')
    await records.replace('leases/gc', { ...dead, expiresAt: Date.now() - 1 }, etag)
    const lease = await leases.tryAcquire('gc')
    assert.ok(lease, 'expired: taken over')
    assert.equal((await leases.holder('gc'))?.owner, 'replica-1')
    await lease.release()
  })

  test('a holder that stalled past its expiry finds the lease taken over at its next renewal, stops, and releases nothing', async () => {
    const records = await openRecords()
    const lost: string[] = []
    let heardOfLoss: () => void = () => undefined
    const loss = new Promise<void>((resolve) => (heardOfLoss = resolve))
    // Its clock runs 10 s behind: every expiry it writes is already past for the others.
    const stalled = createBucketLeases({
      records,
      ttlMs: 900,
      replica: replica(1),
      now: () => Date.now() - 10_000,
      onLost: (name) => {
        lost.push(name)
        heardOfLoss()
      },
    })
    const other = createBucketLeases({ records, ttlMs: 30_000, replica: replica(2) })
    const first = await stalled.tryAcquire('prefetch:stable')
    assert.ok(first)
    const second = await other.tryAcquire('prefetch:stable')
    assert.ok(second, 'taken over')
    // Renewals run on unref'd timers: hold the process open while waiting for one.
    const keepAlive = setInterval(() => undefined, 1_000)
    await loss.finally(() => clearInterval(keepAlive))
    assert.deepEqual(lost, ['prefetch:stable'])
    assert.equal(first.held, false)
    await first.release()
    assert.equal((await other.holder('prefetch:stable'))?.owner, 'replica-2', "the former holder's release leaves the new holder's lease alone")
    assert.equal(second.held, true)
    await second.release()
  })

  test('a holder renews its lease: it outlives its first ttl and nobody takes it meanwhile', async () => {
    const records = await openRecords()
    const holder = createBucketLeases({ records, ttlMs: 900, replica: replica(1) })
    const other = createBucketLeases({ records, ttlMs: 900, replica: replica(2) })
    const lease = await holder.tryAcquire('prefetch:stable')
    assert.ok(lease)
    const firstExpiry = (await holder.holder('prefetch:stable'))?.expiresAt as number
    // Past the first expiry by the clock: only renewals keep it.
    while (Date.now() < firstExpiry + 300) await new Promise((resolve) => setTimeout(resolve, 100))
    assert.equal(await other.tryAcquire('prefetch:stable'), undefined)
    assert.equal(lease.held, true)
    assert.ok(((await other.holder('prefetch:stable'))?.expiresAt as number) > firstExpiry)
    await lease.release()
  })
})
