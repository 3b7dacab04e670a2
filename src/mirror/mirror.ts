/**
 * One configured mirror at run time: its upstream keyring, the last good
 * upstream metadata (in memory and on disk), and the publication built from
 * it. Metadata is held in an LRU cache entry whose TTL is `metadataTtl`:
 * requests get the current copy at once while a refresh runs behind them, and
 * a failed refresh keeps the last good copy and retries sooner. With
 * `publish: "cached"` the publication is rebuilt (and re-signed) once when a
 * stored file completes a pending version, not per request.
 */

import { EventEmitter } from 'node:events'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { LRUCache } from 'lru-cache'
import type { MirrorConfig } from '../config/types.js'
import type { Logger } from '../log/logger.js'
import type { JobDocument, JobKeyring } from '../metadata-worker/metadata-jobs.js'
import type { MetadataWorker } from '../metadata-worker/metadata-worker.js'
import { describeMaasProblem } from '../streams/maas-compatibility.js'
import { checkClearsignedShape, readKeyring, SignatureError } from '../streams/signature.js'
import { checkStoredSizes } from '../streams/size-consistency.js'
import type { FillSource } from '../store/fill.js'
import { UpstreamError } from '../upstream/upstream-client.js'
import type { UpstreamSource } from '../upstream/upstream-source.js'
import { openPublication, type Publication, type ServableFile } from './publication.js'
import {
  fetchUpstreamMetadata,
  loadUpstreamMetadata,
  saveUpstreamMetadata,
  UpstreamMetadataError,
  type MetadataVerifier,
  type UpstreamDocument,
  type UpstreamMetadata,
} from './upstream-metadata.js'

export interface MirrorOptions {
  config: MirrorConfig
  /** Where the mirror's documents and files come from; the mirror only names relative paths. */
  upstream: UpstreamSource
  /** Verifies, parses and publishes metadata off the main thread; shared by all mirrors, and by the mirrors a reload builds. */
  worker: MetadataWorker
  dataDir: string
  metadataTtlSeconds: number
  log: Logger
  /** Whether a file is stored, for `publish: "cached"`. */
  isStored?: (sha256: string) => boolean
  /** The sha256 of every stored file, for `publish: "cached"` builds. */
  listStored?: () => string[]
  /** The size of a stored file, undefined when not stored: metadata listing its sha256 at another size is refused. */
  storedSize?: (sha256: string) => number | undefined
  /** With no metadata held, how long a failed fetch answers for requests before upstream is asked again; default 5 s. */
  unavailableRetryMs?: number
}

export interface MirrorMetadataStatus {
  upstreamReachable: boolean | null
  /** ISO time of the last successful check with upstream. */
  metadataUpdated: string | null
  metadataError: string | null
  /** Items of the current metadata found inconsistent with the store while serving, each refused (see `reportInconsistency`). */
  metadataWarnings: string[]
}

export interface Mirror extends EventEmitter {
  readonly config: MirrorConfig
  /** The mirror's upstream; `describe()` is what `/status` and the log may show of it. */
  readonly upstream: UpstreamSource
  /** Loads the keyring and the saved metadata; never throws for upstream trouble. */
  start(): Promise<void>
  /** The publication held now, without asking upstream. */
  current(): Publication | undefined
  /**
   * The publication held now, for a client: past the TTL this also starts a
   * refresh behind it, without the cost of a fetch on every request.
   */
  served(): Publication | undefined
  /** The current publication; waits for upstream only when there has never been one. */
  publication(): Promise<Publication | undefined>
  /** Checks upstream now and resolves when done (the last good copy stays on failure). */
  refresh(): Promise<Publication | undefined>
  metadataStatus(): MirrorMetadataStatus
  /** Opens an item path upstream from a byte offset, for fills. */
  fileSource(path: string): FillSource
  /**
   * Tells the mirror a file was stored; with `publish: "cached"`, a version
   * it completes is published. Resolves once the publication is rebuilt.
   */
  fileStored(sha256: string): Promise<void>
  /** Resolves once no rebuild started by `fileStored` is running. */
  republished(): Promise<void>
  /**
   * Records an item of the current metadata refused while serving because the
   * store holds or fetches its sha256 at another size; shown until metadata changes.
   */
  reportInconsistency(message: string): void
}

// After a failed refresh, try again this soon rather than after a whole TTL.
const RETRY_AFTER_FAILURE_MS = 60_000
// With nothing to serve, every request would otherwise start a fetch of its
// own: a down upstream would get one per MAAS request, each client waiting on it.
const UNAVAILABLE_RETRY_MS = 5_000
const KEY = 'publication'

/** Whether `publication` was built from the same upstream documents as `metadata` (a 304 keeps them, with a new check time). */
const builtFrom = (publication: Publication, metadata: UpstreamMetadata) =>
  publication.source.index === metadata.index && publication.source.products === metadata.products

/** How to fix a missing stock keyring, for the log and /status. */
const STOCK_KEYRING_HINT = 'install it with "apt install ubuntu-cloudimage-keyring", or set "keyring" of this mirror to a keyring file'

export function createMirror(options: MirrorOptions): Mirror {
  const { config, upstream: source, log } = options
  const ttlMs = options.metadataTtlSeconds * 1000
  const savedFile = join(options.dataDir, 'metadata', `${config.name}.json`)
  const emitter = new EventEmitter()
  /** The keyring's bytes once they read as a keyring; the worker verifies with them. */
  let keyring: JobKeyring | undefined
  let upstream: UpstreamMetadata | undefined
  const status: Omit<MirrorMetadataStatus, 'metadataWarnings'> = { upstreamReachable: null, metadataUpdated: null, metadataError: null }
  const inconsistencies = new Set<string>()
  const isStored = options.isStored ?? (() => false)
  const unavailableRetryMs = options.unavailableRetryMs ?? UNAVAILABLE_RETRY_MS
  /** When a fetch last failed with no publication held; requests before the retry time are answered without upstream. */
  let unavailableSince = -Infinity
  const recentlyUnavailable = () => cache.get(KEY) === undefined && performance.now() - unavailableSince < unavailableRetryMs
  /** The MAAS problems of the last publication built, so each is logged once, when it appears. */
  let knownProblems = new Set<string>()
  /**
   * A document for the worker: fresh UTF-8 bytes it takes over, while the text
   * stays here to be saved. One that is not even shaped as a clearsigned
   * document is refused here, before encoding it costs this thread anything.
   */
  const jobDocument = async (document: UpstreamDocument, transfer: ArrayBuffer[]): Promise<JobDocument> => {
    try {
      checkClearsignedShape(document.signed)
    } catch (error) {
      if (error instanceof SignatureError) throw new UpstreamMetadataError(`${document.location}: ${error.message}`)
      throw error
    }
    const signed = await utf8InSlices(document.signed)
    transfer.push(signed)
    return { path: document.path, location: document.location, signed }
  }
  const verify: MetadataVerifier = {
    async index(document) {
      const transfer: ArrayBuffer[] = []
      return options.worker.run({ kind: 'verify-index', keyring: keyring as JobKeyring, index: await jobDocument(document, transfer) }, transfer)
    },
    async products(document, contentId) {
      const transfer: ArrayBuffer[] = []
      await options.worker.run({ kind: 'verify-products', keyring: keyring as JobKeyring, products: { ...(await jobDocument(document, transfer)), contentId } }, transfer)
    },
  }
  const build = async (metadata: UpstreamMetadata) => {
    const transfer: ArrayBuffer[] = []
    const products: Array<JobDocument & { contentId: string }> = []
    for (const [contentId, document] of metadata.products) products.push({ ...(await jobDocument(document, transfer)), contentId })
    const tables = await options.worker.run(
      {
        kind: 'publish',
        keyring: keyring as JobKeyring,
        index: await jobDocument(metadata.index, transfer),
        products,
        mirror: {
          metadata: config.metadata,
          publish: config.publish,
          selections: config.selections.map(({ filters, max }) => ({ filters: filters.map((filter) => filter.source), ...(max === undefined ? {} : { max }) })),
        },
        stored: config.publish === 'cached' ? (options.listStored?.() ?? []) : [],
      },
      transfer,
    )
    const publication = openPublication(tables, metadata)
    // Signed is not enough: an item may only name a file under the upstream
    // root. Refused here, the metadata stays an error on /status naming the item.
    await eachFile(publication, (file) => {
      const problem = source.pathProblem(file.path)
      if (problem === undefined) return
      const ref = file.refs[0]
      const where = ref === undefined ? '' : `product ${JSON.stringify(ref.product)} version ${JSON.stringify(ref.version)} item ${JSON.stringify(ref.item)}: `
      throw new UpstreamMetadataError(`${where}path ${JSON.stringify(file.path)} ${problem}`)
    })
    const problems = new Set(publication.maasProblems.map(describeMaasProblem))
    for (const problem of problems) {
      if (!knownProblems.has(problem)) log.warn('MAAS would reject the published metadata', { mirror: config.name, problem })
    }
    knownProblems = problems
    return publication
  }
  /**
   * Builds the publication of newly fetched or loaded metadata. Checked against
   * the store here, where the store is, rather than in the build: the index
   * records every stored sha256 with its verified size, whichever mirror stored it.
   */
  const accept = async (metadata: UpstreamMetadata) => {
    const publication = await build(metadata)
    const { storedSize } = options
    if (storedSize !== undefined) await eachFile(publication, (file) => checkStoredSizes([file], storedSize))
    return publication
  }
  /** A pending version whose files are now all stored: the publication is out of date. */
  const completesPending = (publication: Publication, sha256?: string) =>
    publication.pending.some((version) => (sha256 === undefined || version.sha256s.includes(sha256)) && version.sha256s.every(isStored))

  const fail = (message: string) => {
    if (status.metadataError !== message) log.warn('metadata refresh failed', { mirror: config.name, error: message })
    status.metadataError = message
  }

  const cache = new LRUCache<string, Publication>({
    max: 1,
    ttl: ttlMs,
    allowStale: true,
    noDeleteOnStaleGet: true,
    allowStaleOnFetchRejection: true,
    noDeleteOnFetchRejection: true,
    fetchMethod: async (_key, stale, { options: fetchOptions, signal }) => {
      try {
        // A keyring installed after start (the hint on /status says how) is picked up here.
        if (keyring === undefined) await loadKeys()
        if (keyring === undefined) throw new Error(status.metadataError ?? `keyring ${config.keyring} not loaded`)
        const { metadata, changed } = await fetchUpstreamMetadata({ source, verify, previous: upstream })
        status.upstreamReachable = true
        // Unchanged upstream keeps the publication only if it was built from
        // these very documents: a republish racing a refresh can leave one
        // built from older ones.
        const current = !changed && stale !== undefined && builtFrom(stale, metadata)
        // Built before anything is recorded: metadata that cannot be published
        // stays an error, and the next refresh asks for it again.
        const publication = current ? stale : await accept(metadata)
        upstream = metadata
        status.metadataUpdated = new Date(metadata.checkedAt).toISOString()
        status.metadataError = null
        if (current) return stale
        inconsistencies.clear()
        // A republish replaced the entry while this was built from newer
        // metadata; the cache drops this result, so put it back.
        if (signal.aborted) setImmediate(() => cache.set(KEY, publication, { ttl: ttlMs }))
        // A file may have been stored while this was built from the older state.
        if (completesPending(publication)) setImmediate(() => void republish())
        await saveUpstreamMetadata(savedFile, metadata).catch((error: Error) => log.error('cannot save metadata', { mirror: config.name, file: savedFile, error: error.message }))
        log.info('metadata updated', { mirror: config.name, upstreamUpdated: publication.upstreamUpdated, ...publication.summary })
        // 'change' means what the selection resolves to moved on from what was
        // served: new documents selecting the same files (re-signed, or sent
        // again by an upstream that ignores conditional requests) are not one,
        // nor is the first metadata ever loaded (prefetch.onStart decides that pass).
        if (stale !== undefined && publication.selectionDigest !== stale.selectionDigest) emitter.emit('change', publication)
        return publication
      } catch (error) {
        if (error instanceof UpstreamError && error.status === undefined) status.upstreamReachable = false
        else if (error instanceof UpstreamError) status.upstreamReachable = true
        fail((error as Error).message)
        fetchOptions.ttl = Math.min(ttlMs, RETRY_AFTER_FAILURE_MS)
        if (stale !== undefined) return stale
        unavailableSince = performance.now()
        throw error
      }
    },
  })

  async function loadKeys(): Promise<void> {
    let bytes: Buffer
    try {
      bytes = await readFile(config.keyring)
    } catch (error) {
      const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : (error as Error).message
      const hint = config.keyringIsDefault ? `: ${STOCK_KEYRING_HINT}` : ''
      fail(`keyring ${config.keyring} ${reason}${hint}`)
      return
    }
    // Read here too, for a clear error at start; a keyring is a few kilobytes.
    keyring = await readKeyring(bytes, config.keyring).then(
      () => ({ bytes: new Uint8Array(bytes), source: config.keyring }),
      (error: Error) => {
        fail(error.message)
        return undefined
      },
    )
  }

  async function loadSaved(): Promise<void> {
    if (keyring === undefined) return
    try {
      const saved = await loadUpstreamMetadata(savedFile, { source, verify })
      if (saved === undefined) return
      upstream = saved
      const publication = await accept(saved)
      // Stale at once: it is served while the first refresh asks upstream.
      cache.set(KEY, publication, { ttl: 1 })
      status.metadataUpdated = new Date(saved.checkedAt).toISOString()
    } catch (error) {
      log.warn('ignoring saved metadata', { mirror: config.name, file: savedFile, error: (error as Error).message })
    }
  }

  let republishing: Promise<void> | undefined
  let republishAgain = false
  /** Rebuilds from the current upstream metadata; calls during a rebuild coalesce into one more. */
  function republish(): Promise<void> {
    if (republishing !== undefined) {
      republishAgain = true
      return republishing
    }
    republishing = (async () => {
      do {
        republishAgain = false
        if (upstream === undefined) return
        const publication = await build(upstream)
        // A refresh recorded newer metadata during the build: build from that instead.
        if (publication.source !== upstream) {
          republishAgain = true
          continue
        }
        // Keep the refresh schedule: the metadata is no fresher than before.
        const remaining = cache.getRemainingTTL(KEY)
        cache.set(KEY, publication, { ttl: remaining > 0 && Number.isFinite(remaining) ? remaining : 1 })
        log.info('publication updated', { mirror: config.name, ...publication.summary, pendingVersions: publication.pending.length })
      } while (republishAgain)
    })()
      .catch((error: Error) => log.error('cannot republish', { mirror: config.name, error: error.message }))
      .finally(() => {
        republishing = undefined
      })
    return republishing
  }

  return Object.assign(emitter, {
    config,
    upstream: source,
    async start() {
      await loadKeys()
      await loadSaved()
    },
    current: () => cache.get(KEY),
    served() {
      const publication = cache.get(KEY)
      if (publication === undefined ? !recentlyUnavailable() : cache.getRemainingTTL(KEY) <= 0) void cache.fetch(KEY).catch(() => undefined)
      return publication
    },
    async publication() {
      if (recentlyUnavailable()) return undefined
      return cache.fetch(KEY).catch(() => undefined)
    },
    async refresh() {
      return cache.fetch(KEY, { forceRefresh: true, allowStale: false }).catch(() => undefined)
    },
    metadataStatus: () => ({ ...status, metadataWarnings: [...inconsistencies] }),
    fileSource: (path: string): FillSource => (offset) => source.openFile(path, { offset }),
    async fileStored(sha256: string) {
      if (config.publish !== 'cached') return
      const publication = cache.get(KEY)
      if (publication !== undefined && completesPending(publication, sha256)) await republish()
    },
    republished: async () => republishing,
    reportInconsistency(message: string) {
      if (inconsistencies.has(message)) return
      inconsistencies.add(message)
      log.warn('inconsistent metadata', { mirror: config.name, error: message })
    },
  })
}

// Checks over every file run on the main thread (the store and the upstream
// source are here): in slices, so that a publication of 100,000 files does not
// hold the event loop for the whole pass.
const SLICE_MS = 5
// Encoding a large document for the worker, likewise: 1 MiB of text is a millisecond or two.
const SLICE_CHARS = 1 << 20

const nextTurn = () => new Promise((resolve) => setImmediate(resolve))

/** The UTF-8 bytes of `text`, encoded a slice at a time between turns of the event loop. */
async function utf8InSlices(text: string): Promise<ArrayBuffer> {
  const slices: string[] = []
  let length = 0
  // Measured a slice at a time too: counting the bytes of 12 MB at once is several ms.
  for (let start = 0; start < text.length; ) {
    let end = Math.min(start + SLICE_CHARS, text.length)
    // Never between the halves of a surrogate pair.
    const last = text.charCodeAt(end - 1)
    if (end < text.length && last >= 0xd800 && last <= 0xdbff) end--
    const slice = text.slice(start, end)
    slices.push(slice)
    length += Buffer.byteLength(slice)
    start = end
    if (start < text.length) await nextTurn()
  }
  const bytes = new Uint8Array(length)
  const encoder = new TextEncoder()
  let written = 0
  for (const [n, slice] of slices.entries()) {
    if (n > 0) await nextTurn()
    written += encoder.encodeInto(slice, bytes.subarray(written)).written
  }
  return bytes.buffer
}

async function eachFile(publication: Publication, check: (file: ServableFile) => void): Promise<void> {
  let sliceStart = performance.now()
  for (const file of publication.files.values()) {
    check(file)
    if (performance.now() - sliceStart < SLICE_MS) continue
    await nextTurn()
    sliceStart = performance.now()
  }
}
