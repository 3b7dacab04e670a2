/**
 * Exclusive, expiring leases in the fleet's bucket (records `leases/<name>`),
 * the same leases as the database's (`prefetch:<mirror>`, `gc`) for a fleet:
 * what lets one replica, whichever, run a mirror's prefetch pass or the
 * garbage collection. Taking a lease is creating its record with
 * `If-None-Match: *`, or, when the record is there and has expired, replacing
 * it with `If-Match` on the etag read: of several replicas racing, one wins.
 * The holder renews every ttl/3 by replacing its own version; a renewal that
 * finds another version means the lease was taken over (after a stall longer
 * than the ttl), and the holder stops (`held` false). Releasing replaces the
 * holder's own version with an expired one, so that a lease already taken over
 * is never given up by its former holder. A holder that dies stops renewing,
 * and its lease lapses after the ttl. Expiry times are wall-clock times: the
 * replicas' clocks must agree (NTP) to well within the ttl.
 */

import { randomUUID } from 'node:crypto'
import type { AsyncLease, AsyncLeaseHolder, AsyncLeases } from '../store/lease.js'
import type { RecordStore, StoredRecord } from '../store/s3-records.js'

export interface BucketLeasesOptions {
  records: RecordStore
  ttlMs: number
  /** This replica's id and where it is reached, written in the leases it holds. */
  replica: { id: string; advertise: string }
  now?: () => number
  /** Hears of a renewal or release that failed (the store down); the lease is kept trying until it expires. */
  onError?: (message: string) => void
  /** Hears of a lease found taken over at renewal. */
  onLost?: (name: string) => void
}

/** The record `leases/<name>`. */
export interface LeaseRecord {
  /** The id of the replica holding it. */
  replica: string
  advertise: string
  /** Unique to one acquisition: one replica taking the same lease twice holds two leases. */
  token: string
  acquiredAt: number
  /** Epoch ms; 0 once released. */
  expiresAt: number
}

/** `:` (the database's lease names, `prefetch:<mirror>`) is not a record name's character: it becomes `-`. */
export const leaseRecordName = (name: string) => `leases/${name.replaceAll(':', '-')}`

export function createBucketLeases(options: BucketLeasesOptions): AsyncLeases {
  const { records, ttlMs, replica } = options
  const now = options.now ?? Date.now
  const onError = options.onError ?? ((message) => process.stderr.write(`sstream-proxy: ${message}\n`))

  /** Writes `value` as the new version: created, or replacing `existing` when it has expired. */
  async function take(key: string, value: LeaseRecord): Promise<string | undefined> {
    const created = await records.create(key, value)
    if (created !== undefined) return created
    const existing = await records.read<LeaseRecord>(key)
    // Gone between the two requests: released for good; one more try at creating it.
    if (existing === undefined) return records.create(key, value)
    if (existing.value.expiresAt > now()) return undefined
    return records.replace(key, value, existing.etag)
  }

  return {
    async tryAcquire(name) {
      const key = leaseRecordName(name)
      let value: LeaseRecord = { replica: replica.id, advertise: replica.advertise, token: randomUUID(), acquiredAt: now(), expiresAt: now() + ttlMs }
      let etag = await take(key, value)
      if (etag === undefined) return undefined
      let held = true
      /** One write at a time: a renewal and the release never race each other. */
      let writing: Promise<void> = Promise.resolve()
      const renewEveryMs = ttlMs / 3
      const timer = setInterval(() => {
        writing = writing.then(renew)
      }, renewEveryMs)
      timer.unref()
      async function renew(): Promise<void> {
        if (!held) return
        const next = { ...value, expiresAt: now() + ttlMs }
        try {
          const renewed = await records.replace(key, next, etag as string)
          if (renewed === undefined) {
            stop()
            options.onLost?.(name)
            return
          }
          value = next
          etag = renewed
        } catch (error) {
          // The store down: the lease is still ours until it expires (`held` says
          // so by the clock), and whoever takes it over then has it.
          onError(`lease ${name} not renewed, retrying in ${renewEveryMs} ms: ${messageOf(error)}`)
        }
      }
      function stop() {
        held = false
        clearInterval(timer)
      }
      const lease: AsyncLease = {
        name,
        get held() {
          return held && value.expiresAt > now()
        },
        async release() {
          if (!held) return
          stop()
          const released = writing.then(async () => {
            try {
              await records.replace(key, { ...value, expiresAt: 0 }, etag as string)
            } catch (error) {
              onError(`lease ${name} not released, it lapses within ${ttlMs} ms: ${messageOf(error)}`)
            }
          })
          writing = released
          await released
        },
      }
      return lease
    },
    async holder(name) {
      const record = await records.read<LeaseRecord>(leaseRecordName(name))
      return holderOf(record, now())
    },
  }
}

/** The replica holding a lease record, unless it has expired or was released. */
export function holderOf(record: StoredRecord<LeaseRecord> | undefined, at: number): AsyncLeaseHolder | undefined {
  if (record === undefined || record.value.expiresAt <= at) return undefined
  return { owner: record.value.replica, advertise: record.value.advertise, expiresAt: record.value.expiresAt }
}

const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error))
