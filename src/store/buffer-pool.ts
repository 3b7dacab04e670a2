/**
 * The read buffers of every transfer, under one byte budget
 * (`limits.readBufferMemory`). A transfer takes a pair (one is read into while
 * the other is on the socket) and gives it back once its last write has
 * settled. Few transfers read with 1 MiB buffers; as more run at once, new
 * pairs get smaller (down to 16 KiB), so that every running transfer's pair
 * fits the budget instead of memory growing with the clients. When not even
 * the smallest pair fits, a transfer waits its turn (first come, first served),
 * and transfers holding more than a fair share trade their pair for a smaller one.
 * The shared chunks of stored files (shared-chunks.ts) take whole 1 MiB
 * buffers from the same budget, one at a time, and wait in the same line.
 *
 * Buffers are carved out of 32 MiB slabs, in 1 MiB pages each holding buffers
 * of one size, and the budget counts pages. A slab is one allocation that
 * glibc always maps on its own (it is above its largest mmap threshold), so
 * when an empty slab is dropped after `idleMs` and collected its memory goes
 * back to the system. Buffers allocated one by one did not: once glibc had
 * unmapped one freed 1 MiB buffer it raised its threshold and served the rest
 * from its heap, and the process kept 1.2 GB after a burst of 1,000 clients.
 */

import { measureMemory } from 'node:vm'

export const LARGEST_BUFFER_BYTES = 1024 * 1024
export const SMALLEST_BUFFER_BYTES = 16 * 1024
const PAGE_BYTES = LARGEST_BUFFER_BYTES
const SLAB_BYTES = 32 * PAGE_BYTES
const PAGES_PER_SLAB = SLAB_BYTES / PAGE_BYTES
/** Buffers a transfer reads with in turn. */
const BUFFERS_PER_TRANSFER = 2

export interface BufferPoolOptions {
  /** Bytes the buffers of all transfers may take together, in whole 1 MiB pages; at least one page. */
  budgetBytes: number
  /** How long an empty slab is kept for the next burst before it is dropped. */
  idleMs: number
}

export interface BufferPoolStats {
  budgetBytes: number
  /** Bytes of the pages that hold buffers now: what the budget counts. */
  heldBytes: number
  /** Bytes of the slabs allocated, held pages and free ones (kept for `idleMs`). */
  allocatedBytes: number
  /** Transfers holding a pair of buffers. */
  transfers: number
  /** Transfers and shared chunks waiting for the budget. */
  waiting: number
}

export interface BufferPool {
  /**
   * A pair of buffers of one size for one transfer: as large as the budget
   * allows for every transfer running or waiting. Waits its turn when the
   * budget is spent; rejects if `signal` aborts first.
   */
  take(signal?: AbortSignal): Promise<Buffer[]>
  /** Returns a pair that nothing reads from or writes to any more. */
  give(buffers: readonly Buffer[]): void
  /**
   * True when transfers wait while this pair is larger than a fair share: its
   * transfer should `trade` it, so that a few long downloads that took 1 MiB
   * buffers early cannot hold the budget for good.
   */
  oversized(buffers: readonly Buffer[]): boolean
  /** Gives a pair back and waits, behind those already waiting, for one of the fair size. */
  trade(buffers: readonly Buffer[], signal?: AbortSignal): Promise<Buffer[]>
  /**
   * One 1 MiB buffer for a chunk that many transfers share (one page of the
   * budget). Waits its turn, in the same line as pairs, when the budget is
   * spent; rejects if `signal` aborts first.
   */
  takeChunk(signal?: AbortSignal): Promise<Buffer>
  /** Returns a chunk's buffer once no write holds it. */
  giveChunk(buffer: Buffer): void
  stats(): BufferPoolStats
}

/**
 * A dropped slab's memory returns when V8 collects it, and an idle process
 * runs no collection: measured, a process kept dropped slabs for minutes. An
 * eager memory measurement is the public API that runs a full collection now;
 * it takes a few milliseconds, once per burst.
 */
function collectDroppedSlabs(): void {
  measureMemory({ mode: 'summary', execution: 'eager' }).catch(() => undefined)
}

interface Slab {
  memory: Buffer
  /** Offsets of the pages no buffer uses. */
  freePages: number[]
  usedPages: number
  /** When its last page was freed, while it has none in use. */
  emptySince: number | undefined
}

interface Page {
  slab: Slab
  offset: number
  size: number
  free: Buffer[]
  used: number
}

interface Waiter {
  /** A pair for a transfer, or one 1 MiB buffer for a shared chunk. */
  wants: 'pair' | 'chunk'
  resolve(buffers: Buffer[]): void
  reject(error: Error): void
  signal: AbortSignal | undefined
  onAbort(): void
}

export function createBufferPool(options: BufferPoolOptions): BufferPool {
  const budgetPages = Math.floor(options.budgetBytes / PAGE_BYTES)
  if (budgetPages < 1) throw new RangeError(`a read buffer budget of ${options.budgetBytes} bytes is less than one ${PAGE_BYTES}-byte page`)
  const slabs: Slab[] = []
  /** Pages with a free buffer, by buffer size. */
  const partial = new Map<number, Set<Page>>()
  const pageOf = new WeakMap<Buffer, Page>()
  const waiters: Waiter[] = []
  let heldPages = 0
  let transfers = 0
  let releaseTimer: NodeJS.Timeout | undefined

  /** The largest size whose pairs, one per transfer, all fit the budget. */
  const sizeFor = (transferCount: number) => {
    let size = LARGEST_BUFFER_BYTES
    while (size > SMALLEST_BUFFER_BYTES && transferCount * BUFFERS_PER_TRANSFER * size > budgetPages * PAGE_BYTES) size /= 2
    return size
  }

  const freeBuffers = (size: number) => {
    let count = (budgetPages - heldPages) * (PAGE_BYTES / size)
    for (const page of partial.get(size) ?? []) count += page.free.length
    return count
  }

  /** A new page of `size` buffers, from the fullest slab with room, so that others empty out. */
  const newPage = (size: number): Page => {
    let slab = slabs.filter((candidate) => candidate.freePages.length > 0).sort((a, b) => b.usedPages - a.usedPages)[0]
    if (slab === undefined) {
      slab = {
        // Outside Node's small-buffer slab; never zeroed, so pages never used take no memory.
        memory: Buffer.allocUnsafeSlow(SLAB_BYTES),
        freePages: Array.from({ length: PAGES_PER_SLAB }, (_, index) => (PAGES_PER_SLAB - 1 - index) * PAGE_BYTES),
        usedPages: 0,
        emptySince: undefined,
      }
      slabs.push(slab)
    }
    const offset = slab.freePages.pop() as number
    slab.usedPages++
    slab.emptySince = undefined
    heldPages++
    const page: Page = { slab, offset, size, free: [], used: 0 }
    for (let start = PAGE_BYTES - size; start >= 0; start -= size) {
      const buffer = slab.memory.subarray(offset + start, offset + start + size)
      pageOf.set(buffer, page)
      page.free.push(buffer)
    }
    let pages = partial.get(size)
    if (pages === undefined) partial.set(size, (pages = new Set()))
    pages.add(page)
    return page
  }

  const takeBuffer = (size: number): Buffer => {
    const page = partial.get(size)?.values().next().value ?? newPage(size)
    const buffer = page.free.pop() as Buffer
    page.used++
    if (page.free.length === 0) partial.get(size)?.delete(page)
    return buffer
  }

  /** A pair for a transfer among `transferCount`, if the budget has room for one of any size up to the fair one. */
  const tryTake = (transferCount: number): Buffer[] | undefined => {
    for (let size = sizeFor(transferCount); size >= SMALLEST_BUFFER_BYTES; size /= 2) {
      if (freeBuffers(size) < BUFFERS_PER_TRANSFER) continue
      transfers++
      return Array.from({ length: BUFFERS_PER_TRANSFER }, () => takeBuffer(size))
    }
    return undefined
  }

  /** A 1 MiB buffer for a shared chunk, if a page is free. */
  const tryTakeChunk = (): Buffer[] | undefined => {
    if (freeBuffers(LARGEST_BUFFER_BYTES) < 1) return undefined
    return [takeBuffer(LARGEST_BUFFER_BYTES)]
  }

  const giveBuffer = (buffer: Buffer) => {
    const page = pageOf.get(buffer)
    if (page === undefined) throw new RangeError(`a ${buffer.length}-byte buffer this pool did not hand out`)
    if (page.free.includes(buffer) || page.used === 0) throw new Error('a buffer given back twice')
    page.free.push(buffer)
    page.used--
    if (page.used > 0) {
      partial.get(page.size)?.add(page)
      return
    }
    // The page's buffers are dropped with it: the next use of its memory may cut it into another size.
    partial.get(page.size)?.delete(page)
    for (const free of page.free) pageOf.delete(free)
    heldPages--
    page.slab.freePages.push(page.offset)
    page.slab.usedPages--
    if (page.slab.usedPages === 0) {
      page.slab.emptySince = performance.now()
      scheduleRelease()
    }
  }

  const scheduleRelease = () => {
    if (releaseTimer !== undefined) return
    releaseTimer = setTimeout(releaseIdle, options.idleMs)
    // An idle pool must not keep the process alive.
    releaseTimer.unref()
  }

  const releaseIdle = () => {
    releaseTimer = undefined
    const now = performance.now()
    const before = slabs.length
    for (let index = slabs.length - 1; index >= 0; index--) {
      const since = slabs[index]?.emptySince
      if (since !== undefined && now - since >= options.idleMs) slabs.splice(index, 1)
    }
    if (slabs.some((slab) => slab.emptySince !== undefined)) scheduleRelease()
    if (slabs.length < before) collectDroppedSlabs()
  }

  const release = (buffers: readonly Buffer[]) => {
    for (const buffer of buffers) giveBuffer(buffer)
    transfers--
  }

  const wait = (signal: AbortSignal | undefined, wants: Waiter['wants'] = 'pair') =>
    new Promise<Buffer[]>((resolve, reject) => {
      if (signal?.aborted === true) return reject(new Error('transfer ended before it got read buffers'))
      const waiter: Waiter = {
        wants,
        resolve,
        reject,
        signal,
        onAbort() {
          const index = waiters.indexOf(waiter)
          if (index >= 0) waiters.splice(index, 1)
          reject(new Error('transfer ended while waiting for read buffers'))
          // Its leaving may make the fair size of those behind it larger.
          serveWaiters()
        },
      }
      waiters.push(waiter)
      signal?.addEventListener('abort', waiter.onAbort, { once: true })
    })

  const serveWaiters = () => {
    for (let first = waiters[0]; first !== undefined; first = waiters[0]) {
      const buffers = first.wants === 'chunk' ? tryTakeChunk() : tryTake(transfers + waiters.length)
      if (buffers === undefined) return
      const waiter = waiters.shift() as Waiter
      waiter.signal?.removeEventListener('abort', waiter.onAbort)
      waiter.resolve(buffers)
    }
  }

  return {
    take(signal) {
      // Behind anyone already waiting: first come, first served.
      const buffers = waiters.length === 0 && signal?.aborted !== true ? tryTake(transfers + 1) : undefined
      return buffers === undefined ? wait(signal) : Promise.resolve(buffers)
    },
    trade(buffers, signal) {
      release(buffers)
      // Queued before the others are served, so that the fair size they get counts this transfer.
      const traded = wait(signal)
      serveWaiters()
      return traded
    },
    give(buffers) {
      release(buffers)
      serveWaiters()
    },
    async takeChunk(signal) {
      const buffers = waiters.length === 0 && signal?.aborted !== true ? tryTakeChunk() : undefined
      const [buffer] = buffers ?? (await wait(signal, 'chunk'))
      return buffer as Buffer
    },
    giveChunk(buffer) {
      if (buffer.length !== LARGEST_BUFFER_BYTES) throw new RangeError(`a ${buffer.length}-byte buffer given back as a chunk`)
      giveBuffer(buffer)
      serveWaiters()
    },
    oversized: (buffers) => waiters.length > 0 && (buffers[0]?.length ?? 0) > sizeFor(transfers + waiters.length),
    stats: () => ({
      budgetBytes: budgetPages * PAGE_BYTES,
      heldBytes: heldPages * PAGE_BYTES,
      allocatedBytes: slabs.length * SLAB_BYTES,
      transfers,
      waiting: waiters.length,
    }),
  }
}
