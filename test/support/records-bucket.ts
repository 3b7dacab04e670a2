/**
 * A bucket on a real Ceph RGW, started for one test file, whose tests each
 * open an S3 store on a fresh prefix: its records (fill claims, leases, the
 * replica list) then belong to that test alone. Stores are closed and the
 * gateway stopped after the file.
 */

import { randomUUID } from 'node:crypto'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before } from 'node:test'
import type { ObjectStore } from '../../src/store/object-store.js'
import type { RecordStore } from '../../src/store/s3-records.js'
import { createS3Store } from '../../src/store/s3-store.js'
import { startCephRgw, type CephRgw } from './ceph-rgw.js'

export interface RecordsBucket {
  /** An S3 store on `prefix` (default a fresh one) and its records. */
  open(prefix?: string): Promise<{ store: ObjectStore; records: RecordStore }>
  /** The records of `prefix` (default a fresh one). */
  openRecords(prefix?: string): Promise<RecordStore>
}

/** Registers the file's `before`/`after` hooks: call it at the top level of a test file. */
export function useRecordsBucket(bucket: string): RecordsBucket {
  let rgw: CephRgw | undefined
  const stores: ObjectStore[] = []
  before(async () => {
    rgw = await startCephRgw()
    await rgw.createBucket(bucket)
  })
  after(async () => {
    for (const store of stores) store.close()
    await rgw?.down()
  })
  const open = async (prefix = `t-${randomUUID()}/`) => {
    if (rgw === undefined) throw new Error('the gateway is not up: open stores inside tests')
    const store = createS3Store({
      endpoint: rgw.endpoint,
      bucket,
      prefix,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: rgw.keys,
      dataDir: await mkdtemp(join(tmpdir(), 'sstream-records-')),
      owner: 'test',
      abandonedUploadAgeMs: 3_600_000,
    })
    stores.push(store)
    return { store, records: store.records as RecordStore }
  }
  return { open, openRecords: async (prefix) => (await open(prefix)).records }
}
