/**
 * Shared fills, the apt-cacher-ng model: one upstream transfer per file
 * (keyed by sha256) however many clients and prefetch workers want it. The
 * fill writes to the store's writer as bytes arrive and every reader follows
 * what it has written. Size and sha256 are checked before the file is committed;
 * until then the last byte is held back, so no client can ever receive a
 * complete body of bad bytes. Interrupted transfers resume with `Range`.
 */

import { EventEmitter } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FileIndex } from './file-index.js'
import type { Readable } from 'node:stream'
import type { ObjectStore, ObjectWriter, RangeReader } from './object-store.js'
import { VerificationError } from './verification-error.js'
import { UpstreamError, backoffMs } from '../upstream/upstream-client.js'
import type { FileResponse } from '../upstream/upstream-source.js'
import type { RateBudget, TransferPriority } from '../upstream/rate-budget.js'

export interface FillTarget {
  sha256: string
  size: number
  /** Item path, for the index row and for messages. */
  path: string
}

/** A body a fill reads; `from` says whether its bytes come from upstream (the default) or not. */
export interface FillResponse extends FileResponse {
  /**
   * `peer`: another replica of the fleet passing on its own fill; `store`:
   * the stored object. Neither is counted or throttled as upstream bytes.
   */
  from?: 'upstream' | 'peer' | 'store'
}

/** Opens the upstream body from `offset`; an offset above 0 asks for a `Range`. */
export type FillSource = (offset: number) => Promise<FillResponse>

/** A fill's part in a fleet: it reads upstream for the fleet, or follows the replica that does. */
export type FleetRole = { role: 'owner' } | { role: 'follower'; owner: string }

/**
 * How a fill gets its bytes, decided once before it starts (in a fleet, by a
 * claim on the file in the shared store; see src/fleet/fill-claims.ts).
 */
export interface FillPlan {
  /** Already in the store (another replica stored it): the fill commits at once, without a transfer. */
  stored: boolean
  source: FillSource
  /** The object may be stored by another replica meanwhile: the writer spools only, and stores it at commit when still absent. */
  storedElsewhere: boolean
  /** Who reads upstream, for /status; undefined outside a fleet. */
  role(): FleetRole | undefined
  /** The fill has ended, committed or failed: whatever the plan holds (a claim) is let go. */
  end(): Promise<void>
}

/** Plans the fill of `target`, whose upstream is `upstream`; `signal` aborts when the fill is aborted. */
export type FillPlanner = (target: FillTarget, upstream: FillSource, signal: AbortSignal) => Promise<FillPlan>

export type FillState = 'filling' | 'verified' | 'committed' | 'failed'

export { VerificationError }

export interface Fill extends EventEmitter {
  readonly target: FillTarget
  readonly state: FillState
  /** Bytes written to the store's writer so far. */
  readonly written: number
  /** Bytes a reader may pass on now: all once verified, all but the last before. */
  readonly releasable: number
  /**
   * A reader over the bytes written so far; rejects with ENOENT before the
   * writer exists and once it has committed (read the store then) or failed.
   */
  openWritten(): Promise<RangeReader>
  readonly error: Error | undefined
  readonly startedAt: number
  /** `prefetch` while only prefetch wants the file; `miss` from the moment a client does. */
  readonly priority: TransferPriority
  /** Resolves once committed, rejects with the failure. */
  readonly done: Promise<void>
  /**
   * Bytes `[position, end)` as they were just written, when they are still
   * held in memory (the last few MiB of the file); undefined otherwise.
   * Readers at the head of a fill take them from here rather than reading
   * them back from disk, each a view of the same buffers.
   */
  held(position: number, end: number): Buffer[] | undefined
  /** In a fleet: whether this replica reads upstream or follows another (its advertise URL); undefined otherwise. */
  readonly fleet: FleetRole | undefined
}

export interface FillEvents {
  /** Bytes received from upstream, as they arrive. */
  onUpstreamBytes?: (bytes: number) => void
  /** A body was opened from upstream (a fill's first, or one resuming it). */
  onUpstreamTransfer?: () => void
  /** Bytes received from another replica of the fleet, as they arrive. */
  onPeerBytes?: (bytes: number) => void
  onCommitted?: (fill: Fill) => void
  onFailed?: (fill: Fill, error: Error) => void
}

export interface FillCoordinatorOptions extends FillEvents {
  objects: ObjectStore
  index: FileIndex
  /** Upstream attempts per fill, resuming where the last one stopped. */
  attempts?: number
  retryBaseMs?: number
  /** Upstream bodies are read through it when given (`limits.upstreamRate`, `prefetch.rate`, `prefetch.windows`). */
  budget?: RateBudget
  /** Decides where each fill's bytes come from (a fleet); without it every fill reads its source. */
  plan?: FillPlanner
}

export interface FillCoordinator {
  /**
   * The running fill of `target.sha256`, or a new one reading from `source`.
   * `priority` (default `miss`) is who wants the file: a miss joining a
   * prefetch fill raises it to `miss` for the rest of the transfer.
   */
  fill(target: FillTarget, source: FillSource, priority?: TransferPriority): Fill
  get(sha256: string): Fill | undefined
  active(): Fill[]
  /** Resolves when every running fill has ended (committed or failed). */
  idle(): Promise<void>
  /** Fails every running fill now (shutdown): what was written is dropped, readers see an error. */
  abortAll(reason: string): Promise<void>
}

// Above this much received but unwritten data, upstream is paused: memory per
// fill stays bounded however slow the disk.
const MAX_BUFFERED_BYTES = 2 * 1024 * 1024

// How much of what was last written stays in memory for readers following
// the fill closely: twenty clients on one cold file then send from one copy
// instead of twenty reads of the written bytes. One window per running fill.
const HELD_BYTES = 4 * 1024 * 1024

// Readers at the head of a fill wake on its 'progress'. A batch written is
// often one upstream chunk (64 KiB every third of a millisecond at 200 MB/s),
// and twenty readers waking for each made twenty small writes each: the
// wake-ups for bytes written come once per PROGRESS_BYTES, or PROGRESS_DELAY_MS
// after bytes were written without one, whichever is first. The first bytes
// and every change of state are told at once.
const PROGRESS_BYTES = 1024 * 1024
const PROGRESS_DELAY_MS = 2

class SharedFill extends EventEmitter implements Fill {
  state: FillState = 'filling'
  written = 0
  writer: ObjectWriter | undefined
  error: Error | undefined
  readonly startedAt = Date.now()
  priority: TransferPriority = 'miss'
  done!: Promise<void>
  /** Set by `abortAll`; the transfer stops and is not retried. */
  abortReason: string | undefined
  /** Aborted with `abortReason`: cuts short a wait for upstream headers or for a retry. */
  readonly aborter = new AbortController()
  body: Readable | undefined
  plan: FillPlan | undefined

  constructor(readonly target: FillTarget) {
    super()
    // Readers come and go; the default limit of 10 would warn at 11 clients.
    this.setMaxListeners(0)
  }

  /** The last chunks written, ending at `written`. */
  private recent: Buffer[] = []
  private recentBytes = 0
  /** `written` as last told with 'progress'. */
  private told = 0
  private telling: NodeJS.Timeout | undefined

  /** Emits 'progress' now: readers see what changed. */
  progress(): void {
    clearTimeout(this.telling)
    this.telling = undefined
    this.told = this.written
    this.emit('progress')
  }

  /** Tells of bytes written: at once for the first ones and every PROGRESS_BYTES, else after PROGRESS_DELAY_MS. */
  private wrote(): void {
    if (this.told === 0 || this.written - this.told >= PROGRESS_BYTES || this.written === this.target.size) return this.progress()
    this.telling ??= setTimeout(() => this.progress(), PROGRESS_DELAY_MS)
  }

  get releasable(): number {
    if (this.state === 'verified' || this.state === 'committed') return this.target.size
    return Math.max(0, Math.min(this.written, this.target.size - 1))
  }

  /** Records `chunks` as written after `written`, keeping the last HELD_BYTES of them. */
  advance(chunks: Buffer[], bytes: number): void {
    this.recent.push(...chunks)
    this.recentBytes += bytes
    while (this.recentBytes - (this.recent[0] as Buffer).length >= HELD_BYTES) {
      this.recentBytes -= (this.recent.shift() as Buffer).length
    }
    this.written += bytes
    this.wrote()
  }

  openWritten(): Promise<RangeReader> {
    if (this.writer === undefined) return Promise.reject(Object.assign(new Error(`${this.target.path}: nothing written yet`), { code: 'ENOENT' }))
    return this.writer.openWritten()
  }

  get fleet(): FleetRole | undefined {
    return this.plan?.role()
  }

  /** Lets go of the held chunks: an ended fill is read from the store. */
  release(): void {
    this.recent = []
    this.recentBytes = 0
    clearTimeout(this.telling)
    this.telling = undefined
  }

  held(position: number, end: number): Buffer[] | undefined {
    let offset = this.written - this.recentBytes
    if (position < offset || position >= end || end > this.written) return undefined
    const views: Buffer[] = []
    for (const chunk of this.recent) {
      const chunkEnd = offset + chunk.length
      if (chunkEnd > position) {
        // A chunk wholly inside the range goes as it is: no view object to allocate.
        const inside = offset >= position && chunkEnd <= end
        views.push(inside ? chunk : chunk.subarray(Math.max(0, position - offset), Math.min(chunk.length, end - offset)))
      }
      offset = chunkEnd
      if (offset >= end) break
    }
    return views
  }
}

export function createFillCoordinator(options: FillCoordinatorOptions): FillCoordinator {
  const { objects, index } = options
  const attempts = options.attempts ?? 3
  const retryBaseMs = options.retryBaseMs ?? 500
  const running = new Map<string, SharedFill>()
  // Every fill until it has finished cleaning up: a failed one leaves `running`
  // before it removes its temp file, and `idle()` must wait for that too.
  const unsettled = new Set<SharedFill>()

  async function run(fill: SharedFill, upstream: FillSource): Promise<void> {
    const { target } = fill
    let writer: ObjectWriter | undefined
    try {
      const plan = options.plan === undefined ? undefined : await unlessAborted(fill.aborter.signal, options.plan(target, upstream, fill.aborter.signal), (late) => late.end())
      fill.plan = plan
      if (plan?.stored === true) {
        index.put(target)
        fill.state = 'committed'
        fill.progress()
        options.onCommitted?.(fill)
        return
      }
      const source = plan?.source ?? upstream
      writer = await objects.createWriter({ sha256: target.sha256, size: target.size }, { storedElsewhere: plan?.storedElsewhere ?? false })
      fill.writer = writer
      // Where the bytes came from (an upstream URL, a file on disk), for the message of a mismatch.
      let origin = ''
      for (let attempt = 1; fill.written < target.size || attempt === 1; attempt++) {
        const startedAt = fill.written
        let from: FillResponse['from']
        try {
          if (fill.abortReason !== undefined) throw new Error(fill.abortReason)
          const response = await unlessAborted(fill.aborter.signal, source(fill.written), (late) => late.body.destroy())
          from = response.from
          origin = response.url
          const fromUpstream = (response.from ?? 'upstream') === 'upstream'
          if (fromUpstream) options.onUpstreamTransfer?.()
          const body = fromUpstream ? (options.budget?.throttle(response.body, () => fill.priority) ?? response.body) : response.body
          fill.body = body
          if (fill.abortReason !== undefined) body.destroy()
          await receive(fill, writer, response, body, fromUpstream ? options.onUpstreamBytes : response.from === 'peer' ? options.onPeerBytes : undefined)
          if (fill.written < target.size) {
            throw new UpstreamError(response.url, `body ended after ${fill.written} of ${target.size} bytes`)
          }
        } catch (error) {
          const retryable = error instanceof UpstreamError && error.retryable && fill.abortReason === undefined
          // A replica passing its fill on that broke after some bytes (it died) costs no
          // attempt: the source waits, bounded, for the claim to be taken over.
                    if (retryable && from === 'peer' && fill.written > startedAt) attempt--
          if (!retryable || attempt >= attempts) throw error
          await sleep(backoffMs(attempt, retryBaseMs), undefined, { signal: fill.aborter.signal })
        }
      }
      try {
        writer.verify()
      } catch (error) {
        throw error instanceof VerificationError ? new VerificationError(`${target.path}: ${error.message}; read from ${origin}`) : error
      }
      fill.state = 'verified'
      fill.progress()
      await writer.commit()
      index.put(target)
      fill.state = 'committed'
      fill.progress()
      options.onCommitted?.(fill)
    } catch (caught) {
      // Out of the running set before anything else: a client retrying the
      // moment its transfer broke (MAAS does) must start a fresh fill, not
      // join this one while it cleans up and be told it failed.
      forget(fill)
      // An aborted fill fails for the reason given, whatever broke on the way.
      const error = fill.abortReason !== undefined ? new Error(fill.abortReason) : (caught as Error)
      fill.error = error
      fill.state = 'failed'
      // Heard of at once: a reader that wakes during the clean-up below already
      // sees the failure, and its client learns of it (a broken connection)
      // before the failure would otherwise be logged.
      options.onFailed?.(fill, error)
      if (writer !== undefined) await writer.discard().catch(() => undefined)
      fill.progress()
      throw error
    } finally {
      fill.release()
      forget(fill)
      await fill.plan?.end().catch(() => undefined)
      unsettled.delete(fill)
    }
  }

  /** Drops `fill` from the running set, unless a newer fill of the same file has taken its place. */
  function forget(fill: SharedFill): void {
    if (running.get(fill.target.sha256) === fill) running.delete(fill.target.sha256)
  }

  /** Appends one response's body (as read through the budget) at `fill.written`; the writer hashes it. `count` hears of the bytes received. */
  function receive(fill: SharedFill, writer: ObjectWriter, response: FileResponse, body: Readable, count: ((bytes: number) => void) | undefined): Promise<void> {
    const { target } = fill
    let skip: number
    try {
      skip = bytesToSkip(fill.written, target, response)
    } catch (error) {
      body.destroy()
      return Promise.reject(error)
    }
    return new Promise<void>((resolve, reject) => {
      let pending: Buffer[] = []
      let pendingBytes = 0
      // Bytes of the file received so far, whether written yet or not.
      let received = fill.written
      let writing = false
      let ended = false
      let failure: Error | undefined
      let settled = false

      // Settles only once no write is in flight and every received byte is
      // written, so that a retry resumes exactly where the writer stopped.
      const settle = () => {
        if (settled || writing) return
        if (failure !== undefined) {
          settled = true
          reject(failure)
        } else if (ended && pending.length === 0) {
          settled = true
          resolve()
        }
      }
      const fail = (error: Error) => {
        failure ??= error
        body.destroy()
        settle()
      }
      const flush = async () => {
        writing = true
        try {
          while (pending.length > 0) {
            const batch = pending
            const bytes = pendingBytes
            pending = []
            pendingBytes = 0
            if (body.isPaused() && !ended) body.resume()
            await writer.write(batch, bytes)
            fill.advance(batch, bytes)
          }
        } catch (error) {
          // A write error (disk, object store) wins over an upstream error already
          // recorded: the fill fails for the store, not for upstream.
          failure = error as Error
          body.destroy()
        } finally {
          writing = false
        }
        settle()
      }

      body.on('data', (chunk: Buffer) => {
        if (failure !== undefined || settled) return
        if (skip > 0) {
          // Upstream ignored our Range and sent the file from byte 0.
          const dropped = Math.min(skip, chunk.length)
          skip -= dropped
          chunk = chunk.subarray(dropped)
          if (chunk.length === 0) return
        }
        count?.(chunk.length)
        if (received + chunk.length > target.size) {
          return fail(new VerificationError(`${target.path}: upstream sent more than the ${target.size} bytes the signed metadata gives; read from ${response.url}`))
        }
        received += chunk.length
        pending.push(chunk)
        pendingBytes += chunk.length
        if (pendingBytes > MAX_BUFFERED_BYTES) body.pause()
        if (!writing) void flush()
      })
      body.once('end', () => {
        ended = true
        settle()
      })
      body.once('error', (error) => fail(asUpstreamError(error, response.url)))
      body.once('close', () => {
        if (!ended) fail(new UpstreamError(response.url, `connection closed after ${received} of ${target.size} bytes`))
      })
    })
  }

  return {
    fill(target, source, priority = 'miss') {
      const existing = running.get(target.sha256)
      if (existing !== undefined) {
        if (priority === 'miss' && existing.priority !== 'miss') {
          existing.priority = 'miss'
          options.budget?.reprioritized()
        }
        return existing
      }
      const fill = new SharedFill(target)
      fill.priority = priority
      running.set(target.sha256, fill)
      unsettled.add(fill)
      fill.done = run(fill, source)
      // Readers observe failures through events; this keeps an unobserved
      // rejection from taking the process down.
      fill.done.catch(() => undefined)
      return fill
    },
    get: (sha256) => running.get(sha256),
    active: () => [...running.values()],
    async idle() {
      await Promise.allSettled([...unsettled].map((fill) => fill.done))
    },
    async abortAll(reason) {
      for (const fill of running.values()) {
        fill.abortReason = reason
        fill.body?.destroy()
        fill.aborter.abort()
      }
      await this.idle()
    },
  }
}

/**
 * Checks the status and length of a response against what the fill expects
 * and returns how many leading bytes to drop (when upstream ignored `Range`).
 */
function bytesToSkip(offset: number, target: FillTarget, response: FileResponse): number {
  const { status, headers, url } = response
  if (status === 206 && offset > 0) {
    const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(headers['content-range'] ?? '')
    if (range === null || Number(range[1]) !== offset) {
      throw new UpstreamError(url, `Content-Range "${headers['content-range'] ?? ''}" does not start at byte ${offset}`)
    }
    if (range[3] !== '*' && Number(range[3]) !== target.size) {
      throw new VerificationError(`${target.path}: upstream size ${range[3]} differs from the signed metadata (${target.size}); read from ${url}`)
    }
    return 0
  }
  if (status !== 200) throw new UpstreamError(url, `HTTP ${status}`, status)
  const declared = headers['content-length']
  if (declared !== undefined && Number(declared) !== target.size) {
    throw new VerificationError(`${target.path}: upstream Content-Length ${declared} differs from the signed metadata (${target.size}); read from ${url}`)
  }
  return offset
}

/** The result, or a rejection as soon as `signal` aborts; a result that arrives after that is dropped with `drop`. */
function unlessAborted<T>(signal: AbortSignal, pending: Promise<T>, drop: (late: T) => unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      reject(signal.reason as Error)
      pending.then(drop, () => undefined)
    }
    if (signal.aborted) return onAbort()
    signal.addEventListener('abort', onAbort, { once: true })
    void pending.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
  })
}

function asUpstreamError(error: Error, url: string): Error {
  if (error instanceof UpstreamError || error instanceof VerificationError) return error
  const code = (error as NodeJS.ErrnoException).code
  return new UpstreamError(url, code !== undefined ? `${code} (${error.message})` : error.message)
}
