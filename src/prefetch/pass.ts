/**
 * One prefetch pass over a publication: every selected file not stored is
 * fetched through the store's shared fills (so a client asking for the same
 * file joins the pass's transfer, and the pass joins a client's), with
 * `concurrency` transfers at a time. A fill already resumes an interrupted
 * transfer with `Range` and retries a few times; a file whose fill still
 * fails is tried again after an exponential, jittered backoff, and one that
 * keeps failing is recorded while the pass goes on.
 */

import { setTimeout as sleep } from 'node:timers/promises'
import type { Publication } from '../mirror/publication.js'
import type { Fill, FillSource, FillTarget } from '../store/fill.js'
import type { Store } from '../store/store.js'
import { backoffMs, UpstreamError } from '../upstream/upstream-client.js'
import type { PassCounts } from './pass-history.js'
import { filesToFetch } from './plan.js'

export interface PassOptions {
  publication: Publication
  store: Store
  /** Opens the upstream body of an item path from an offset. */
  source: (path: string) => FillSource
  concurrency: number
  /** Fills per file before it counts as failed. */
  attempts?: number
  retryBaseMs?: number
  signal?: AbortSignal
  /**
   * Resolves when the pass may start its next file (at once inside its
   * prefetch window) or `signal` aborts; left out, files start back to back.
   */
  whenOpen?: (signal?: AbortSignal) => Promise<void>
}

export type PassEnd = 'ok' | 'failed' | 'aborted'

export interface PrefetchPass {
  /** The files the pass set out to fetch. */
  readonly targets: readonly FillTarget[]
  /** Counts now; bytes include the running transfers. */
  progress(): PassCounts
  readonly done: Promise<{ result: PassEnd; counts: PassCounts }>
}

export function startPass(options: PassOptions): PrefetchPass {
  const { store, signal } = options
  const attempts = options.attempts ?? 3
  const retryBaseMs = options.retryBaseMs ?? 1_000
  const isStored = (sha256: string) => store.index.get(sha256) !== undefined
  // Largest first: the pass then ends close to when its largest file could
  // (a squashfs is 30 times a kernel), rather than starting it last.
  const targets = filesToFetch(options.publication, isStored).sort((a, b) => b.size - a.size)
  const counts: PassCounts = {
    filesDone: 0,
    filesTotal: targets.length,
    bytesDone: 0,
    bytesTotal: targets.reduce((sum, target) => sum + target.size, 0),
    errors: [],
  }
  const active = new Set<Fill>()
  let resolveAborted!: (value: 'aborted') => void
  const aborted = new Promise<'aborted'>((resolve) => (resolveAborted = resolve))
  const onAbort = () => resolveAborted('aborted')
  if (signal?.aborted === true) onAbort()
  // The signal is usually the prefetcher's, which outlives every pass: the
  // listener is removed when the pass ends, or each pass would leave one behind.
  signal?.addEventListener('abort', onAbort, { once: true })
  let next = 0

  async function fetchOne(target: FillTarget): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      // Stored meanwhile by a client's miss or another process: nothing to do.
      if (isStored(target.sha256)) break
      const fill = store.fills.fill(target, options.source(target.path), 'prefetch')
      active.add(fill)
      try {
        if ((await Promise.race([fill.done, aborted])) === 'aborted') return
        break
      } catch (error) {
        if (signal?.aborted === true) return
        // A 404 or 403 will not change within the pass; a broken connection, a 5xx or bad bytes may.
        if (attempt >= attempts || (error instanceof UpstreamError && !error.retryable)) {
          counts.errors.push(`${target.path}: ${(error as Error).message}`)
          return
        }
      } finally {
        active.delete(fill)
      }
      await sleep(backoffMs(attempt, retryBaseMs), undefined, { signal }).catch(() => undefined)
    }
    counts.filesDone++
    counts.bytesDone += target.size
  }

  async function worker(): Promise<void> {
    // A call, not a property read: the signal may abort during each await.
    const stopped = () => next >= targets.length || signal?.aborted === true
    while (!stopped()) {
      await options.whenOpen?.(signal)
      if (stopped()) break
      await fetchOne(targets[next++] as FillTarget)
    }
  }

  const done = (async () => {
    try {
      await Promise.all(Array.from({ length: Math.max(1, Math.min(options.concurrency, targets.length)) }, worker))
    } finally {
      signal?.removeEventListener('abort', onAbort)
    }
    const result: PassEnd = signal?.aborted === true ? 'aborted' : counts.errors.length > 0 ? 'failed' : 'ok'
    return { result, counts: { ...counts, errors: [...counts.errors] } }
  })()

  return {
    targets,
    progress() {
      let inFlight = 0
      for (const fill of active) inFlight += fill.written
      return { ...counts, bytesDone: counts.bytesDone + inFlight, errors: [...counts.errors] }
    },
    done,
  }
}
