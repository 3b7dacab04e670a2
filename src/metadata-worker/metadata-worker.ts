/**
 * One `worker_threads` worker per process that verifies, parses, filters and
 * re-signs upstream metadata for every mirror. Why a thread: openpgp's
 * clearsign parser and the JSON of a large products document take seconds of
 * CPU on a hostile or merely large document; on the main thread that froze
 * serving for every mirror (issue 12). Here the main thread only fetches raw
 * text and swaps in the finished publication.
 *
 * A worker that dies (a crash, an out-of-memory on a hostile document) fails
 * the jobs it held, each becoming its mirror's metadata error, is logged, and
 * is started again for the next job: the process never goes down with it.
 *
 * Metadata changes every few minutes at most, and a worker is a second V8
 * heap with openpgp loaded (about 35 MB): one idle for `idleMs` is ended, and
 * the next job starts a new one, which costs that job a fraction of a second
 * off the main thread. Ended 5 s after a refresh rather than a minute, the
 * proxy's peak while serving files right after one measured 158 to 164 MB
 * instead of 178 (bench goal 6, 10 clients on 1 GiB files).
 */

import { Worker } from 'node:worker_threads'
import type { Logger } from '../log/logger.js'
import { UpstreamMetadataError } from '../mirror/upstream-metadata.js'
import type { JobResult, MetadataJob } from './metadata-jobs.js'
import type { JobMessage, ReplyMessage, WorkerData } from './worker.js'

export interface MetadataWorkerOptions {
  /** The proxy's private key, armored: handed to each worker once, at its start. */
  signingKeyArmored: string
  log: Logger
  /** Heap limit of the worker: a document that needs more kills the worker, not the process. Default 1536 MiB. */
  maxHeapMb?: number
  /** How long a worker with no job lives on; default 5 s, long enough for one refresh's documents, which come one after another. */
  idleMs?: number
}

export interface MetadataWorker {
  run<J extends MetadataJob>(job: J, transfer?: ArrayBuffer[]): Promise<JobResult<J>>
  /** The running thread, if any (tests end it to check the restart). */
  readonly thread: Worker | undefined
  /** How many times a worker died and was replaced (one ended for being idle did not die). */
  readonly restarts: number
  close(): Promise<void>
}

// Built, this module and the worker's entry are JavaScript in dist/. Under tsx
// (tests, `npm run bench`) both are TypeScript, and a worker does not inherit
// the loader that `--import tsx` registered (tsx issue #354): a small
// bootstrap registers tsx's loader in the worker before importing the entry.
const SOURCE = import.meta.url.endsWith('.ts')
const ENTRY = new URL(SOURCE ? './worker.ts' : './worker.js', import.meta.url)
const TSX_BOOTSTRAP = `import(${JSON.stringify(SOURCE ? import.meta.resolve('tsx/esm/api') : '')}).then(({ register }) => { register(); return import(${JSON.stringify(ENTRY.href)}) })`

const IDLE_MS = 5_000

export function createMetadataWorker(options: MetadataWorkerOptions): MetadataWorker {
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>()
  let nextId = 1
  let worker: Worker | undefined
  let restarts = 0
  let closed = false
  const idleMs = options.idleMs ?? IDLE_MS
  let idleTimer: NodeJS.Timeout | undefined
  /** Workers ended for being idle: their exit is not a death. */
  const retired = new WeakSet<Worker>()
  const retireWhenIdle = (idle: Worker) => {
    clearTimeout(idleTimer)
    idleTimer = setTimeout(() => {
      if (worker !== idle || pending.size > 0) return
      worker = undefined
      retired.add(idle)
      void idle.terminate()
    }, idleMs)
    idleTimer.unref()
  }

  const start = (): Worker => {
    const started = new Worker(SOURCE ? TSX_BOOTSTRAP : ENTRY, {
      eval: SOURCE,
      workerData: { signingKeyArmored: options.signingKeyArmored } satisfies WorkerData,
      resourceLimits: { maxOldGenerationSizeMb: options.maxHeapMb ?? 1536 },
    })
    started.on('message', (reply: ReplyMessage) => {
      const job = pending.get(reply.id)
      if (job === undefined) return
      pending.delete(reply.id)
      if (pending.size === 0) {
        started.unref()
        retireWhenIdle(started)
      }
      if ('result' in reply) job.resolve(reply.result)
      else job.reject(reply.failure.metadata ? new UpstreamMetadataError(reply.failure.message) : new Error(`metadata worker: ${reply.failure.message}`))
    })
    // 'error' (an uncaught exception, out of memory) is followed by 'exit'.
    let failure: Error | undefined
    started.on('error', (error) => {
      failure = error
    })
    started.on('exit', (code) => {
      if (worker === started) worker = undefined
      if (closed || retired.has(started)) return
      restarts++
      const reason = failure?.message ?? `exit code ${code}`
      options.log.error('metadata worker died; starting a new one for the next job', { error: reason, jobs: pending.size })
      for (const [id, job] of pending) {
        pending.delete(id)
        job.reject(new Error(`metadata worker died (${reason}) while checking this mirror's metadata`))
      }
    })
    // Kept alive only while it holds jobs: an idle worker never holds the process open.
    started.unref()
    return started
  }

  return {
    run(job, transfer = []) {
      if (closed) return Promise.reject(new Error('metadata worker closed'))
      clearTimeout(idleTimer)
      worker ??= start()
      const id = nextId++
      const running = worker
      running.ref()
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve: resolve as (value: unknown) => void, reject })
        running.postMessage({ id, job } satisfies JobMessage, transfer)
      })
    },
    get thread() {
      return worker
    },
    get restarts() {
      return restarts
    },
    async close() {
      closed = true
      clearTimeout(idleTimer)
      const running = worker
      worker = undefined
      for (const [id, job] of pending) {
        pending.delete(id)
        job.reject(new Error('metadata worker closed'))
      }
      await running?.terminate()
    },
  }
}
