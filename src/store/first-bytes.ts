/**
 * A miss's wait for its first byte. The request joins the file's shared fill;
 * when that fill fails in a way a retry may mend (upstream refused, reset,
 * timed out, answered 5xx) a fresh fill is started after a short backoff,
 * until bytes flow or the wait is over. MAAS gives a download 10 s to its
 * first byte and retries a broken connection but not an error status, so an
 * upstream restart or a short burst of 5xx is best ridden out here, inside
 * that window, and what is left of an outage handed back as a broken
 * connection (create-app.ts decides how the failure is answered).
 */

import { setTimeout as sleep } from 'node:timers/promises'
import { UpstreamError, backoffMs } from '../upstream/upstream-client.js'
import type { Fill, FillCoordinator, FillSource, FillTarget } from './fill.js'

export interface FirstBytesOptions {
  fills: FillCoordinator
  /** How long the miss may wait for a first byte, retries included. */
  waitMs: number
  /** First backoff between fills, doubling; default 250 ms. */
  retryBaseMs?: number
}

export type FirstBytes =
  /** The fill has bytes for readers (or is already verified). */
  | { kind: 'flowing'; fill: Fill }
  /** No byte within the wait, or a failure a retry cannot mend. */
  | { kind: 'failed'; message: string }

const RETRY_BASE_MS = 250

/** Joins or starts the fill of `target` and resolves once it has bytes or the wait is over. */
export async function awaitFirstBytes(target: FillTarget, source: FillSource, options: FirstBytesOptions): Promise<FirstBytes> {
  const deadline = performance.now() + options.waitMs
  let lastError: Error | undefined
  for (let attempt = 1; ; attempt++) {
    const fill = options.fills.fill(target, source)
    const ended = await bytesOrEnd(fill, deadline - performance.now())
    if (fill.written > 0 || fill.state === 'verified' || fill.state === 'committed') return { kind: 'flowing', fill }
    if (!ended) {
      const cause = lastError === undefined ? '' : ` (earlier: ${lastError.message})`
      return { kind: 'failed', message: `${target.path}: not cached, and no byte from upstream within ${options.waitMs / 1000}s${cause}` }
    }
    lastError = fill.error ?? new Error('fill failed')
    const retryable = lastError instanceof UpstreamError && lastError.retryable
    const pause = backoffMs(attempt, options.retryBaseMs ?? RETRY_BASE_MS)
    if (!retryable || performance.now() + pause >= deadline) {
      return { kind: 'failed', message: `${target.path}: not cached and upstream failed: ${lastError.message}` }
    }
    await sleep(pause)
  }
}

/** Resolves true once the fill has bytes or has ended, false when `ms` pass first. */
function bytesOrEnd(fill: Fill, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const finish = (ended: boolean) => {
      clearTimeout(timer)
      fill.off('progress', check)
      resolve(ended)
    }
    const check = () => {
      if (fill.written > 0 || fill.state !== 'filling') finish(true)
    }
    const timer = setTimeout(() => finish(false), Math.max(0, ms))
    fill.on('progress', check)
    check()
  })
}
