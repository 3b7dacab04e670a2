/**
 * Quiet points for tests that count files: the first metadata fetch of a
 * proxy starts a prefetch pass (every metadata change does), so a test waits
 * for it before it makes a file a miss again or compares what is stored.
 */

import { setTimeout as sleep } from 'node:timers/promises'
import type { Harness } from '../../support/proxy-harness.js'
import type { TreeItem } from '../../support/upstream-tree.js'

/** Resolves once no prefetch pass and no fill has run for 100 ms. */
export async function settle(h: Harness): Promise<void> {
  const { prefetcher, store, mirrors } = h.proxy.core
  const busy = () => mirrors.some((mirror) => prefetcher.status(mirror.config.name).state === 'running') || store.fills.active().length > 0
  for (let quiet = 0; quiet < 5; quiet = busy() ? 0 : quiet + 1) await sleep(20)
}

/** Removes a stored file and its row, so that the next request for it is a miss. */
export async function evict(h: Harness, file: TreeItem): Promise<TreeItem> {
  await settle(h)
  await h.proxy.core.store.objects.remove(file.sha256)
  h.proxy.core.store.index.delete(file.sha256)
  return file
}
