/**
 * Keeps each mirror's selection warm: a pass on start (`prefetch.onStart`, or
 * for a mirror whose pass a reload stopped), every `prefetch.interval`, and
 * early when a mirror's metadata changes upstream; garbage collection after each successful pass; the progress and
 * history `/status` shows. One pass per mirror at a time: within the process
 * a second request joins the running pass, and across processes sharing the
 * `dataDir` a lease in the database lets only one run.
 *
 * In a fleet (`fleet`), the lease is in the bucket, and the schedule keeps to
 * one pass per mirror per interval across the fleet: every replica looks
 * every `checkEveryMs` whether a pass is due (none of the selection it serves
 * finished within the interval, by the fleet's record of passes), and the
 * replica that gets the lease runs it; the others skip. Garbage collection
 * then takes the fleet's `gc` lease and looks at the whole bucket.
 *
 * With `prefetch.windows`, the schedule keeps to them: outside every window
 * no scheduled pass starts (one that was due runs when a window opens) and a
 * running pass pauses, starting no file and holding its transfers through the
 * rate budget, until a window opens. A pass run by hand (`run` without
 * `start`, as the `prefetch` command does) ignores the windows.
 */

import type { PrefetchConfig } from '../config/types.js'
import type { Logger } from '../log/logger.js'
import type { Mirror } from '../mirror/mirror.js'
import type { Publication } from '../mirror/publication.js'
import type { PrefetchStatus } from '../server/status-report.js'
import type { Store } from '../store/store.js'
import type { RateBudget } from '../upstream/rate-budget.js'
import { isWithinWindows } from './windows.js'
import { collectGarbage, GcRefusedError, type GarbageReport } from './garbage.js'
import { asyncLeases, createLeases, type AsyncLeases } from '../store/lease.js'
import type { RecordStore } from '../store/s3-records.js'
import { collectFleetGarbage } from '../fleet/fleet-garbage.js'
import { passDue, type FleetPasses } from '../fleet/fleet-passes.js'
import { createPassHistory, type PassCounts, type PassRecord } from './pass-history.js'
import { startPass, type PassEnd, type PrefetchPass } from './pass.js'

export interface PrefetcherOptions {
  mirrors: readonly Mirror[]
  store: Store
  settings: PrefetchConfig
  log: Logger
  /** Fills per file before a pass counts it failed. */
  attempts?: number
  retryBaseMs?: number
  leaseTtlMs?: number
  /** Holds prefetch transfers while the schedule is outside its windows. */
  budget?: RateBudget
  /** The local time the windows are read against; tests pass a fake clock. */
  now?: () => Date
  /** How often the schedule looks whether a window opened or closed; default 30 s. */
  windowCheckMs?: number
  /** Set for a replica of a fleet: leases, pass records and garbage in the shared bucket. */
  fleet?: PrefetchFleet
}

export interface PrefetchFleet {
  replica: { id: string; advertise: string }
  leases: AsyncLeases
  passes: FleetPasses
  /** The bucket's records, where garbage collection finds the fills running fleet-wide. */
  records: RecordStore
  /**
   * How often the schedule looks whether a pass is due fleet-wide, instead of
   * once per interval: well under the lease period, so that the pass of a
   * replica that died is taken on about one lease period later.
   */
  checkEveryMs: number
}

export interface PassOutcome {
  mirror: string
  /** `skipped`: another process holds the mirror's lease. */
  result: PassEnd | 'skipped'
  counts: PassCounts
  /** Set when garbage collection ran after the pass. */
  garbage?: GarbageReport
}

export interface RunOptions {
  /** Collect garbage after a successful pass; default true. */
  gc?: boolean
  /** Called once the pass knows its files, to follow its progress. */
  onPass?: (pass: PrefetchPass) => void
  /** In a fleet, run only when a pass is due fleet-wide (the schedule's passes); a pass run by hand always runs. */
  whenDue?: boolean
}

export interface StartOptions {
  /**
   * Mirrors whose pass the previous prefetcher stopped (a reload): each one
   * this prefetcher has gets a pass at once, whatever `onStart` says; files
   * already stored are skipped, so it takes up where the stopped one was.
   */
  resume?: readonly string[]
}

export interface MirrorPrefetchStatus extends PrefetchStatus {
  /** The last passes, newest first. */
  passes: PassRecord[]
}

export interface Prefetcher {
  /** One pass of the mirror now; joins the pass already running in this process. */
  run(mirror: string, options?: RunOptions): Promise<PassOutcome>
  runAll(options?: RunOptions): Promise<PassOutcome[]>
  /** Garbage collection across every mirror; undefined when a mirror has no metadata to count references with. */
  collect(): Promise<GarbageReport | undefined>
  /** Starts the schedule: on start (and for `resume`), every interval, on metadata change. */
  start(options?: StartOptions): void
  status(mirror: string): MirrorPrefetchStatus
  /** The windows, and whether the schedule is paused by them now. */
  window(): PrefetchWindowStatus
  /**
   * Stops the schedule and abandons running passes (their fills go on for any
   * client); resolves, once they have ended, to the names of their mirrors.
   */
  stop(): Promise<string[]>
}

export interface PrefetchWindowStatus {
  windows: string[]
  /** Inside a window now (always, without windows). */
  open: boolean
  /** The schedule is running and outside its windows: passes wait, prefetch transfers are held. */
  paused: boolean
}

interface Running {
  promise: Promise<PassOutcome>
  pass: PrefetchPass | undefined
  /** True while the pass refreshes metadata: a change seen then is the pass's own. */
  refreshing: boolean
}

const HISTORY_SHOWN = 5
const WINDOW_CHECK_MS = 30_000

export function createPrefetcher(options: PrefetcherOptions): Prefetcher {
  const { store, settings, log, fleet } = options
  const leases = fleet?.leases ?? asyncLeases(createLeases(store.db, { ttlMs: options.leaseTtlMs, onError: (message) => log.warn('prefetch lease', { error: message }) }))
  /** The holder last logged as running each mirror's pass, so a long pass elsewhere is logged once, not at every check. */
  const skippedFor = new Map<string, string | undefined>()
  const history = createPassHistory(store.db)
  const running = new Map<string, Running>()
  const rerun = new Set<string>()
  const stopping = new AbortController()
  const listeners = new Map<Mirror, () => void>()
  let timer: NodeJS.Timeout | undefined
  let started = false
  let startedAt = 0
  const windows = settings.windows ?? []
  const now = options.now ?? (() => new Date())
  let windowTimer: NodeJS.Timeout | undefined
  let paused = false
  /** Passes that came due while paused, run when a window opens. */
  const deferred = new Set<string>()
  /** Passes waiting to start their next file. */
  let reopened: Array<() => void> = []

  /** Follows the clock into and out of the windows (only while the schedule runs). */
  function checkWindow(): void {
    const closed = !isWithinWindows(windows, now())
    if (closed === paused) return
    paused = closed
    options.budget?.pausePrefetch(paused)
    if (paused) {
      log.info('prefetch paused: outside prefetch.windows', { windows: windows.map((window) => window.text).join(',') })
      return
    }
    log.info('prefetch resumed: inside prefetch.windows', { deferred: deferred.size })
    for (const wake of reopened) wake()
    reopened = []
    for (const name of deferred) void scheduled(name)
    deferred.clear()
  }

  /** Resolves at once unless the schedule is paused, else when a window opens or `signal` aborts. */
  function whenOpen(signal?: AbortSignal): Promise<void> {
    if (!paused || signal?.aborted === true) return Promise.resolve()
    return new Promise((resolve) => {
      reopened.push(resolve)
      signal?.addEventListener('abort', () => resolve(), { once: true })
    })
  }

  const mirrorNamed = (name: string) => {
    const mirror = options.mirrors.find((candidate) => candidate.config.name === name)
    if (mirror === undefined) throw new Error(`no mirror named ${name}`)
    return mirror
  }

  async function pass(mirror: Mirror, state: Running, runOptions: RunOptions): Promise<PassOutcome> {
    const name = mirror.config.name
    const empty: PassCounts = { filesDone: 0, filesTotal: 0, bytesDone: 0, bytesTotal: 0, errors: [] }
    const skipped: PassOutcome = { mirror: name, result: 'skipped', counts: empty }
    const checkDue = fleet !== undefined && runOptions.whenDue === true
    const leaseName = `prefetch:${name}`
    const lease = await leases.tryAcquire(leaseName)
    if (lease === undefined) {
      const holder = await leases.holder(leaseName).catch(() => undefined)
      const who = holder?.advertise ?? holder?.owner
      if (fleet === undefined || skippedFor.get(name) !== who || who === undefined) {
        log.info(fleet === undefined ? 'prefetch skipped: another process is running a pass' : 'prefetch skipped: another replica is running a pass', { mirror: name, holder: who })
      }
      skippedFor.set(name, who)
      return skipped
    }
    skippedFor.delete(name)
    try {
      const startedAt = Date.now()
      let id = 0
      const begin = () => {
        id = history.start(name, startedAt)
        log.info('prefetch started', { mirror: name })
      }
      if (!checkDue) begin()
      state.refreshing = true
      const publication = await mirror.refresh()
      state.refreshing = false
      if (checkDue) {
        // Another replica may have finished a pass of this selection while we took the lease.
        if (!(await dueFleetWide(mirror, publication?.selectionDigest ?? null))) return skipped
        begin()
      }
      let outcome: PassOutcome
      if (publication === undefined) {
        const reason = mirror.metadataStatus().metadataError ?? 'no metadata'
        outcome = { mirror: name, result: 'failed', counts: { ...empty, errors: [`metadata: ${reason}`] } }
      } else {
        const current = startPass({
          publication,
          store,
          source: (path) => mirror.fileSource(path),
          concurrency: settings.concurrency,
          attempts: options.attempts,
          retryBaseMs: options.retryBaseMs,
          signal: stopping.signal,
          // Only scheduled passes keep to the windows; one run by hand goes at once.
          whenOpen: started ? whenOpen : undefined,
        })
        state.pass = current
        runOptions.onPass?.(current)
        const { result, counts } = await current.done
        outcome = { mirror: name, result, counts }
      }
      const finishedAt = Date.now()
      history.finish(id, outcome.result as PassEnd, outcome.counts, finishedAt)
      // Abandoned by a stop (shutdown, reload): the pass is owed still, by whoever runs next.
      if (fleet !== undefined && !stopping.signal.aborted) {
        await fleet.passes
          .record(name, {
            replica: fleet.replica.id,
            advertise: fleet.replica.advertise,
            startedAt: new Date(startedAt).toISOString(),
            finishedAt: new Date(finishedAt).toISOString(),
            result: outcome.result,
            selectionDigest: publication?.selectionDigest ?? null,
          })
          .catch((error: Error) => log.warn('prefetch pass not recorded for the fleet', { mirror: name, error: error.message }))
      }
      const { filesDone, filesTotal, bytesDone, errors } = outcome.counts
      const fields = { mirror: name, result: outcome.result, filesDone, filesTotal, bytesDone, errors: errors.length, seconds: Math.round((Date.now() - startedAt) / 1000) }
      if (outcome.result === 'ok') log.info('prefetch finished', fields)
      else log.warn('prefetch finished', { ...fields, firstError: errors[0] })
      if (outcome.result === 'ok' && runOptions.gc !== false) {
        if (lease.held) outcome.garbage = await collect()
        else log.warn('garbage collection skipped: the prefetch lease was lost during the pass', { mirror: name })
      }
      return outcome
    } finally {
      await lease.release()
    }
  }

  /** Whether the fleet owes a pass of the mirror's selection `digest`: none of it finished within the interval. */
  async function dueFleetWide(mirror: Mirror, digest: string | null): Promise<boolean> {
    const last = await fleet?.passes.last(mirror.config.name)
    // With no pass on record the fleet starts as a lone proxy does: at once
    // with `onStart`, otherwise an interval after this replica started.
    if (last === undefined && !settings.onStart && Date.now() - startedAt < settings.interval * 1000) return false
    return passDue(last, digest, settings.interval * 1000, Date.now())
  }

  /** Collects across every mirror; a mirror without metadata stops it (its files are unknown). */
  async function collect(): Promise<GarbageReport | undefined> {
    // A file stored just now may have completed a version: count the publication that shows it.
    await Promise.all(options.mirrors.map((mirror) => mirror.republished()))
    const publications = options.mirrors.map((mirror) => ({ name: mirror.config.name, publication: mirror.current() as Publication | undefined }))
    const lease = fleet && (await fleet.leases.tryAcquire('gc'))
    if (fleet !== undefined && lease === undefined) {
      log.info('garbage collection skipped: another replica is collecting')
      return undefined
    }
    try {
      const report = fleet === undefined ? await collectGarbage(store, publications) : await collectFleetGarbage(store, publications, fleet.records)
      if (report.files.length > 0) log.info('garbage collected', { files: report.files.length, bytes: report.bytes })
      return report
    } catch (error) {
      if (!(error instanceof GcRefusedError)) throw error
      log.warn('garbage collection skipped', { reason: error.message })
      return undefined
    } finally {
      await lease?.release()
    }
  }

  function run(name: string, runOptions: RunOptions = {}): Promise<PassOutcome> {
    const mirror = mirrorNamed(name)
    const existing = running.get(name)
    if (existing !== undefined) return existing.promise
    const state: Running = { promise: Promise.resolve(undefined as never), pass: undefined, refreshing: false }
    state.promise = pass(mirror, state, runOptions).finally(() => {
      running.delete(name)
      if (rerun.delete(name) && started && !stopping.signal.aborted) void scheduled(name)
    })
    running.set(name, state)
    return state.promise
  }

  /** A pass nobody awaits: failures are logged, never thrown. Outside the windows it waits for one to open. */
  function scheduled(name: string): Promise<unknown> {
    if (paused) {
      deferred.add(name)
      return Promise.resolve()
    }
    const failed = (error: Error) => log.error('prefetch failed', { mirror: name, error: error.message })
    if (fleet === undefined) return run(name).catch(failed)
    // A fleet's schedule looks often; not due is its common answer, and it
    // starts no pass (asked again under the lease, after the metadata refresh).
    const mirror = mirrorNamed(name)
    return dueFleetWide(mirror, mirror.current()?.selectionDigest ?? null)
      .then((due) => (due ? run(name, { whenDue: true }) : undefined))
      .catch(failed)
  }

  return {
    run,
    collect,
    runAll: (runOptions) => Promise.all(options.mirrors.map((mirror) => run(mirror.config.name, runOptions))),
    start(startOptions = {}) {
      if (started) return
      started = true
      startedAt = Date.now()
      // The budget outlives reloads: a prefetcher built by one must not inherit
      // the pause of the one it replaces (outside windows checkWindow pauses it again).
      options.budget?.pausePrefetch(false)
      if (windows.length > 0) {
        checkWindow()
        windowTimer = setInterval(checkWindow, options.windowCheckMs ?? WINDOW_CHECK_MS)
        windowTimer.unref()
      }
      for (const mirror of options.mirrors) {
        const name = mirror.config.name
        const onChange = () => {
          const state = running.get(name)
          if (state === undefined) void scheduled(name)
          else if (!state.refreshing) rerun.add(name)
        }
        mirror.on('change', onChange)
        listeners.set(mirror, onChange)
      }
      if (settings.interval > 0) {
        timer = setInterval(
          () => {
            for (const mirror of options.mirrors) void scheduled(mirror.config.name)
          },
          Math.min(settings.interval * 1000, fleet?.checkEveryMs ?? Infinity),
        )
        timer.unref()
      }
      const resume = new Set(startOptions.resume)
      for (const mirror of options.mirrors) {
        const name = mirror.config.name
        if (resume.has(name)) log.info('prefetch pass resumed after reload', { mirror: name })
        if (settings.onStart || resume.has(name)) void scheduled(name)
      }
    },
    status(name) {
      const passes = history.recent(name, HISTORY_SHOWN)
      const finished = passes.find((record) => record.result !== 'running')
      const live = running.get(name)?.pass?.progress()
      const counts = live ?? finished ?? { filesDone: 0, filesTotal: 0, bytesDone: 0, bytesTotal: 0, errors: [] }
      return {
        state: running.has(name) ? (paused ? 'paused' : 'running') : started && !settings.onStart && settings.interval <= 0 ? 'disabled' : 'idle',
        lastStarted: passes[0]?.startedAt ?? null,
        lastFinished: finished?.finishedAt ?? null,
        lastResult: finished?.result ?? null,
        filesDone: counts.filesDone,
        filesTotal: counts.filesTotal,
        bytesDone: counts.bytesDone,
        bytesTotal: counts.bytesTotal,
        errors: counts.errors,
        passes,
      }
    },
    window() {
      return { windows: windows.map((window) => window.text), open: isWithinWindows(windows, now()), paused }
    },
    async stop() {
      if (timer !== undefined) clearInterval(timer)
      if (windowTimer !== undefined) clearInterval(windowTimer)
      for (const [mirror, listener] of listeners) mirror.off('change', listener)
      listeners.clear()
      stopping.abort()
      const stopped = [...running.keys()]
      await Promise.allSettled([...running.values()].map((state) => state.promise))
      return stopped
    },
  }
}
