/**
 * The bandwidth budget: one token bucket for every upstream byte the process
 * reads (`limits.upstreamRate`) and a second one that prefetch transfers also
 * draw from (`prefetch.rate`). A transfer asks for each chunk before passing
 * it on and is held until the bucket allows it; the held stream stops reading,
 * so the upstream socket's TCP window closes and upstream waits: nothing is
 * buffered beyond a chunk or two per transfer.
 *
 * Misses go first: when tokens come free, the oldest waiting miss transfer
 * gets them, and a prefetch transfer only when no miss waits (and its own
 * bucket allows). Each transfer has at most one chunk waiting, so serving the
 * oldest waiter shares the budget fairly among the transfers of a class.
 * A transfer's priority is asked at every grant: a prefetch fill a miss has
 * joined is served as a miss from its next chunk on. While prefetch is paused
 * (outside `prefetch.windows`), prefetch transfers get nothing at all.
 */

import { Transform, pipeline, type Readable } from 'node:stream'

export type TransferPriority = 'miss' | 'prefetch'

export interface RateBudgetOptions {
  /** Bytes per second over every transfer; Infinity for no cap. */
  bytesPerSecond: number
  /** Bytes per second over prefetch transfers; Infinity for no cap of their own. */
  prefetchBytesPerSecond?: number
  /** Milliseconds, monotonic; tests pass a fake clock. */
  now?: () => number
  /** Runs `callback` after `ms`; returns a cancel function. Tests pass a fake timer. */
  schedule?: (callback: () => void, ms: number) => () => void
}

export interface RateBudgetStatus {
  /** Bytes per second; null for no cap. */
  upstreamRate: number | null
  prefetchRate: number | null
  prefetchPaused: boolean
  /** Transfers held for tokens now, by the priority they are served with. */
  waiting: { miss: number; prefetch: number }
}

export interface RateBudget {
  /** Resolves once a transfer of `priority()` may pass on `bytes`; rejects when `signal` aborts first. */
  take(bytes: number, priority: () => TransferPriority, signal?: AbortSignal): Promise<void>
  /** `body` read through the budget: destroying the result destroys `body`, and an error of `body` ends the result. */
  throttle(body: Readable, priority: () => TransferPriority): Readable
  /** While paused, prefetch transfers are held however many tokens there are. */
  pausePrefetch(paused: boolean): void
  /** A transfer's priority was raised: a held prefetch transfer that is now a miss's goes at once. */
  reprioritized(): void
  status(): RateBudgetStatus
}

interface Waiter {
  bytes: number
  priority: () => TransferPriority
  grant: () => void
}

/** A bucket allows a burst of a tenth of a second; one chunk may overdraw it, repaid before the next grant. */
const BURST_SECONDS = 0.1

class TokenBucket {
  private tokens: number
  private last: number

  constructor(
    readonly rate: number,
    private readonly now: () => number,
  ) {
    this.tokens = rate * BURST_SECONDS
    this.last = now()
  }

  get unlimited(): boolean {
    return this.rate === Infinity
  }

  /** Tokens now, refilled lazily from the time passed. */
  available(): number {
    if (this.unlimited) return Infinity
    const now = this.now()
    this.tokens = Math.min(this.rate * BURST_SECONDS, this.tokens + ((now - this.last) * this.rate) / 1000)
    this.last = now
    return this.tokens
  }

  spend(bytes: number): void {
    if (!this.unlimited) this.tokens -= bytes
  }

  /** Milliseconds until the bucket is out of debt again. */
  msUntilPositive(): number {
    const tokens = this.available()
    return tokens >= 0 ? 0 : Math.ceil((-tokens * 1000) / this.rate)
  }
}

export function createRateBudget(options: RateBudgetOptions): RateBudget {
  const now = options.now ?? (() => performance.now())
  const schedule =
    options.schedule ??
    ((callback: () => void, ms: number) => {
      const timer = setTimeout(callback, ms)
      return () => clearTimeout(timer)
    })
  const global = new TokenBucket(options.bytesPerSecond, now)
  const prefetch = new TokenBucket(options.prefetchBytesPerSecond ?? Infinity, now)
  const waiters: Waiter[] = []
  let prefetchPaused = false
  let cancelTimer: (() => void) | undefined

  /** Grants what the buckets allow, oldest miss first, then sets a timer for the rest. */
  function serve(): void {
    cancelTimer?.()
    cancelTimer = undefined
    while (waiters.length > 0 && global.available() >= 0) {
      let index = waiters.findIndex((waiter) => waiter.priority() === 'miss')
      if (index === -1) {
        if (prefetchPaused || prefetch.available() < 0) break
        index = 0
        prefetch.spend((waiters[0] as Waiter).bytes)
      }
      const [waiter] = waiters.splice(index, 1) as [Waiter]
      global.spend(waiter.bytes)
      waiter.grant()
    }
    if (waiters.length === 0) return
    const missWaits = waiters.some((waiter) => waiter.priority() === 'miss')
    // Only prefetch waits while paused: `pausePrefetch(false)` serves it again.
    if (!missWaits && prefetchPaused) return
    const ms = Math.max(global.msUntilPositive(), missWaits ? 0 : prefetch.msUntilPositive(), 1)
    cancelTimer = schedule(serve, ms)
  }

  function take(bytes: number, priority: () => TransferPriority, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted === true) return Promise.reject(signal.reason as Error)
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const index = waiters.indexOf(waiter)
        if (index !== -1) waiters.splice(index, 1)
        reject(signal?.reason as Error)
      }
      const waiter: Waiter = {
        bytes,
        priority,
        grant: () => {
          signal?.removeEventListener('abort', onAbort)
          resolve()
        },
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      waiters.push(waiter)
      serve()
    })
  }

  function throttle(body: Readable, priority: () => TransferPriority): Readable {
    const stopped = new AbortController()
    const gate = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        take(chunk.length, priority, stopped.signal).then(
          () => callback(null, chunk),
          (error: Error) => callback(error),
        )
      },
      destroy(error, callback) {
        // A transfer abandoned while it waits leaves the queue at once.
        stopped.abort(error ?? new Error('transfer closed'))
        callback(error)
      },
    })
    // Errors of `body` reach `gate`, and destroying `gate` destroys `body`.
    pipeline(body, gate, () => undefined)
    return gate
  }

  return {
    take,
    throttle,
    pausePrefetch(paused) {
      prefetchPaused = paused
      serve()
    },
    reprioritized: serve,
    status() {
      const waiting = { miss: 0, prefetch: 0 }
      for (const waiter of waiters) waiting[waiter.priority()]++
      return {
        upstreamRate: global.unlimited ? null : global.rate,
        prefetchRate: prefetch.unlimited ? null : prefetch.rate,
        prefetchPaused,
        waiting,
      }
    },
  }
}
