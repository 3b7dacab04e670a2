/**
 * Garbage collection for a fleet: the bucket is shared, so this replica's
 * index is not the whole of it. Every object in the bucket is a candidate;
 * kept are those a mirror publishes (every replica has the same mirrors, which
 * the replica registry checks), those a fill anywhere is writing or about to
 * (a live claim `fills/<sha256>`), and those a fill of this process holds.
 * Run only under the fleet's `gc` lease.
 */

import { referencedFiles, removeGarbage, type GarbageFile, type GarbageReport, type MirrorPublication } from '../prefetch/garbage.js'
import type { RecordStore } from '../store/s3-records.js'
import type { Store } from '../store/store.js'
import { listLiveClaims } from './fill-claim-list.js'

export async function findFleetGarbage(store: Store, mirrors: readonly MirrorPublication[], records: RecordStore, at = Date.now()): Promise<GarbageFile[]> {
  const referenced = referencedFiles(mirrors)
  // Read before the listing: a fill claims before it writes, so an object the
  // listing finds was either claimed then (and kept) or committed already.
  const claims = await listLiveClaims(records, at)
  const garbage: GarbageFile[] = []
  for await (const object of store.objects.list()) {
    const { sha256, size } = object
    if (referenced.has(sha256) || claims.has(sha256) || store.fills.get(sha256) !== undefined) continue
    garbage.push({ sha256, size, path: store.index.get(sha256)?.path ?? null })
  }
  return garbage
}

export async function collectFleetGarbage(
  store: Store,
  mirrors: readonly MirrorPublication[],
  records: RecordStore,
  options: { dryRun?: boolean } = {},
): Promise<GarbageReport> {
  return removeGarbage(store, await findFleetGarbage(store, mirrors, records), options)
}
