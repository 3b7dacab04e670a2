/**
 * This process as one replica of a fleet (`fleet` in the configuration): who
 * it is to the others (an id for this run and the URL they reach it at), the
 * secret their requests to each other are signed with, and the records in the
 * shared bucket through which they agree (fill claims, leases, the replica
 * list). Made once at start-up; everything fleet-wide takes it as an input.
 */

import { randomUUID } from 'node:crypto'
import type { FleetConfig } from '../config/types.js'
import type { ObjectStore } from '../store/object-store.js'
import type { RecordStore } from '../store/s3-records.js'
import { readFleetSecret } from './fleet-secret.js'

export interface Replica {
  /** Unique to this run of this replica: a restarted replica is a new one, whose old claims are not its own. */
  readonly id: string
  /** Where the other replicas reach this one, ending with `/`. */
  readonly advertise: string
  readonly secret: string
  readonly records: RecordStore
  readonly claimTtlMs: number
  readonly leaseTtlMs: number
}

export async function openReplica(config: FleetConfig, objects: ObjectStore, source: string): Promise<Replica> {
  // validateConfig refuses `fleet` without an S3 store, which always has records.
  if (objects.records === undefined) throw new Error(`fleet: the ${objects.type} store holds no records`)
  return {
    id: randomUUID(),
    advertise: config.advertise,
    secret: await readFleetSecret(config.secretFile, source),
    records: objects.records,
    claimTtlMs: config.claimTtl * 1000,
    leaseTtlMs: config.leaseTtl * 1000,
  }
}
