/**
 * What the internal endpoint (peer-fill.ts) sends another replica for a
 * file: the running fill's bytes from an offset as they are written, or the
 * stored file's once the fill has committed; nothing when this replica has
 * neither. The last byte of a running fill goes out only once the fill has
 * committed, not merely verified: the follower, holding the whole file, then
 * finds the object in the bucket and does not upload it a second time.
 */

import type { Fill } from '../store/fill.js'
import { fillRange, storedRange, type RangeSource } from '../store/range-source.js'
import type { Store } from '../store/store.js'

export interface PeerRange {
  source: RangeSource
  /** The whole file's size. */
  size: number
}

export async function openPeerRange(store: Pick<Store, 'fills' | 'index' | 'objects' | 'openStored'>, sha256: string, from: number): Promise<PeerRange | undefined> {
  const fill = store.fills.get(sha256)
  if (fill !== undefined) {
    const { size } = fill.target
    return from < size ? { source: untilCommitted(fill, fillRange(fill, store.objects, from, size - 1)), size } : undefined
  }
  const size = store.index.get(sha256)?.size ?? 0
  if (from >= size) return undefined
  // A store that cannot be read now is as good as not having the file: the follower looks elsewhere.
  const reader = await store.openStored(sha256, from, size - 1).catch(() => undefined)
  return reader === undefined ? undefined : { source: storedRange(reader, from, size - 1), size }
}

function untilCommitted(fill: Fill, range: RangeSource): RangeSource {
  return {
    ...range,
    available: () => (fill.state === 'committed' ? range.available() : Math.min(range.available(), range.end)),
    final: () => fill.state === 'committed',
  }
}
