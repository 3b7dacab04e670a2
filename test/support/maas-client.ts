/**
 * A client that syncs a boot source the way MAAS 3.8 does (reference §4 and
 * §6), so tests meet the proxy with MAAS's own failure semantics:
 * metadata first (index.sjson, then every products file in index order, each
 * checked with the real `gpgv --keyring`, the whole within 30 s), then the
 * newest version of each product, one download per sha256, all at once. Each
 * download has a heartbeat (10 s without a chunk, the first byte included)
 * and is retried from byte 0 after a reset, a stall, a short body or a bad
 * sha256, with backoff (1 s doubling to 60 s) for up to 2 h; any status other
 * than 200 (3xx included: MAAS follows no redirect for files) fails the whole
 * sync at once. Times are options so that tests can scale them down. An
 * `https` boot source is verified against `ca` (as a MAAS host given a private
 * CA), or against Node's roots without it.
 */

import http, { type IncomingMessage } from 'node:http'
import https from 'node:https'
import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { gpgvText } from './gpgv.js'

export interface MaasClientOptions {
  /** The boot source URL, ending in `/`. */
  url: string
  /** The binary keyring MAAS is given (`keyring_data`). */
  keyring: Uint8Array
  /** Longest silence of a download, the wait for its first byte included; MAAS: 10 s. */
  heartbeatMs?: number
  /** First backoff between attempts, doubling; MAAS: 1 s. */
  backoffMs?: number
  /** Longest backoff; MAAS: 60 s. */
  maxBackoffMs?: number
  /** How long a download is retried before the sync gives up; MAAS: 2 h. */
  giveUpAfterMs?: number
  /** The whole metadata fetch, gpgv included; MAAS: 30 s. */
  metadataTimeoutMs?: number
  /** CA certificates (PEM) trusted for an `https` boot source instead of Node's roots. */
  ca?: string | Buffer
}

/** The item types MAAS downloads; it never fetches a manifest. */
const DOWNLOADED_FTYPES = new Set(['boot-kernel', 'boot-initrd', 'squashfs', 'root-tgz', 'root-image.gz', 'archive.tar.xz'])

export interface MaasFile {
  path: string
  sha256: string
  size: number
}

export interface DownloadRecord extends MaasFile {
  /** Requests made for this file. */
  attempts: number
  /** `verified`: all bytes, right sha256. `failed`: a status ended the sync. `cancelled`: another file's failure did. */
  outcome: 'verified' | 'failed' | 'cancelled' | 'gave up'
  /** Why each failed attempt failed, in order. */
  errors: string[]
  /** Milliseconds from the start of the downloads to this file's outcome. */
  ms: number
}

export interface MetadataResult {
  /** Every document fetched, by path, as verified text. */
  documents: Map<string, string>
  files: MaasFile[]
  ms: number
}

export interface SyncResult {
  metadata: MetadataResult
  ok: boolean
  /** What failed the sync, when it failed. */
  failure?: string
  files: DownloadRecord[]
  ms: number
}

export interface MaasClient {
  /** The metadata fetch alone: throws when MAAS would fail it (a status, a bad signature, the time limit). */
  fetchMetadata(): Promise<MetadataResult>
  /** A whole sync: metadata, then every file at once. */
  sync(): Promise<SyncResult>
}

class PermanentFailure extends Error {}

/** Redirects aiohttp follows for metadata by default; files follow none. */
const METADATA_MAX_REDIRECTS = 10
const REDIRECTS = new Set([301, 302, 303, 307, 308])
const HEADERS = { 'user-agent': 'maas/3.8-test' }

export function createMaasClient(options: MaasClientOptions): MaasClient {
  const heartbeatMs = options.heartbeatMs ?? 10_000
  const firstBackoffMs = options.backoffMs ?? 1_000
  const maxBackoffMs = options.maxBackoffMs ?? 60_000
  const giveUpAfterMs = options.giveUpAfterMs ?? 2 * 3600_000
  const metadataTimeoutMs = options.metadataTimeoutMs ?? 30_000
  const base = options.url.endsWith('/') ? options.url : `${options.url}/`

  /** One GET over http or https (trusting `ca`), without connection reuse, as each MAAS activity opens its own. */
  function get(url: URL, init: { headers: Record<string, string>; signal?: AbortSignal }): http.ClientRequest {
    if (url.protocol === 'https:') return https.get(url, { agent: false, ...init, ...(options.ca !== undefined && { ca: options.ca }) })
    return http.get(url, { agent: false, ...init })
  }

  /** A metadata document's status and text, redirects followed (aiohttp's way). */
  async function fetchText(url: URL, signal: AbortSignal, redirects = 0): Promise<{ status: number; text: string }> {
    const response = await new Promise<IncomingMessage>((resolve, reject) => get(url, { headers: HEADERS, signal }).on('response', resolve).on('error', reject))
    const location = response.headers.location
    if (REDIRECTS.has(response.statusCode ?? 0) && location !== undefined && redirects < METADATA_MAX_REDIRECTS) {
      response.resume()
      return fetchText(new URL(location, url), signal, redirects + 1)
    }
    const chunks: Buffer[] = []
    for await (const chunk of response) chunks.push(chunk as Buffer)
    return { status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }
  }

  async function verifiedDocument(path: string, signal: AbortSignal): Promise<{ text: string; json: Record<string, unknown> }> {
    const { status, text } = await fetchText(new URL(path, base), signal)
    if (status !== 200) throw new Error(`${path}: HTTP ${status}`)
    const checked = await gpgvText(options.keyring, text)
    if (!checked.ok) throw new Error(`${path}: gpgv refused it: ${checked.stderr.trim()}`)
    // MAAS cuts the JSON from the first `{` to the signature block.
    const json = text.slice(text.indexOf('{'), text.indexOf('-----BEGIN PGP SIGNATURE-----'))
    return { text, json: JSON.parse(json) as Record<string, unknown> }
  }

  async function fetchMetadata(): Promise<MetadataResult> {
    const started = performance.now()
    const signal = AbortSignal.timeout(metadataTimeoutMs)
    const documents = new Map<string, string>()
    const indexPath = 'streams/v1/index.sjson'
    const index = await verifiedDocument(indexPath, signal)
    documents.set(indexPath, index.text)
    const bySha = new Map<string, MaasFile>()
    const entries = index.json.index as Record<string, { path: string }>
    for (const entry of Object.values(entries)) {
      const products = await verifiedDocument(entry.path, signal)
      documents.set(entry.path, products.text)
      for (const product of Object.values(products.json.products as Record<string, { versions: Record<string, { items: Record<string, MaasFile & { ftype: string }> }> }>)) {
        // Versions compare as strings; MAAS takes only the newest.
        const newest = Object.keys(product.versions).sort().at(-1)
        if (newest === undefined) continue
        for (const item of Object.values(product.versions[newest]!.items)) {
          if (DOWNLOADED_FTYPES.has(item.ftype)) bySha.set(item.sha256, { path: item.path, sha256: item.sha256, size: item.size })
        }
      }
    }
    // gpgv's time counts too: MAAS's heartbeat covers the whole activity.
    if (signal.aborted) throw new Error(`metadata fetch took over ${metadataTimeoutMs / 1000}s`)
    return { documents, files: [...bySha.values()], ms: performance.now() - started }
  }

  /** One GET of `file`: resolves with its bytes, throws PermanentFailure on a status, another error on a broken or silent transfer. */
  function attempt(file: MaasFile, cancelled: AbortSignal): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const request = get(new URL(file.path, base), { headers: { ...HEADERS, 'accept-encoding': 'gzip, deflate' } })
      let timer: NodeJS.Timeout | undefined
      const heartbeat = () => {
        clearTimeout(timer)
        timer = setTimeout(() => request.destroy(new Error(`no bytes for ${heartbeatMs / 1000}s`)), heartbeatMs)
      }
      const onCancel = () => request.destroy(new Error('cancelled'))
      cancelled.addEventListener('abort', onCancel, { once: true })
      let settled = false
      const settle = (error: Error | undefined, body?: Buffer) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        cancelled.removeEventListener('abort', onCancel)
        if (error !== undefined) reject(error)
        else resolve(body as Buffer)
      }
      // The heartbeat runs from the request on: the wait for the first byte counts.
      heartbeat()
      request.on('error', (error) => settle(error))
      request.on('response', (response) => {
        if (response.statusCode !== 200) {
          response.resume()
          request.destroy()
          return settle(new PermanentFailure(`${file.path}: HTTP ${response.statusCode}`))
        }
        const chunks: Buffer[] = []
        response.on('data', (chunk: Buffer) => {
          heartbeat()
          chunks.push(chunk)
        })
        response.on('error', (error) => settle(error))
        response.on('end', () => {
          if (!response.complete) return settle(new Error('body ended early'))
          settle(undefined, Buffer.concat(chunks))
        })
        response.on('close', () => {
          if (!response.complete) settle(new Error('connection closed mid-body'))
        })
      })
    })
  }

  async function download(file: MaasFile, started: number, cancelled: AbortController): Promise<DownloadRecord> {
    const record: DownloadRecord = { ...file, attempts: 0, outcome: 'gave up', errors: [], ms: 0 }
    const finish = (outcome: DownloadRecord['outcome']) => {
      record.outcome = outcome
      record.ms = performance.now() - started
      return record
    }
    let backoff = firstBackoffMs
    while (!cancelled.signal.aborted) {
      record.attempts++
      try {
        const body = await attempt(file, cancelled.signal)
        if (body.length !== file.size) throw new Error(`${body.length} bytes, expected ${file.size}`)
        const digest = createHash('sha256').update(body).digest('hex')
        if (digest !== file.sha256) throw new Error(`sha256 ${digest}, expected ${file.sha256}`)
        return finish('verified')
      } catch (error) {
        if (cancelled.signal.aborted) return finish('cancelled')
        record.errors.push((error as Error).message)
        if (error instanceof PermanentFailure) {
          // Non-retryable: the whole selection's sync fails, pending files are dropped.
          cancelled.abort(error)
          return finish('failed')
        }
        if (performance.now() - started + backoff > giveUpAfterMs) return finish('gave up')
        await sleep(backoff, undefined, { signal: cancelled.signal }).catch(() => undefined)
        backoff = Math.min(maxBackoffMs, backoff * 2)
      }
    }
    return finish('cancelled')
  }

  return {
    fetchMetadata,
    async sync() {
      const started = performance.now()
      const metadata = await fetchMetadata()
      const downloadsStarted = performance.now()
      const cancelled = new AbortController()
      const files = await Promise.all(metadata.files.map((file) => download(file, downloadsStarted, cancelled)))
      const failed = files.find((file) => file.outcome === 'failed' || file.outcome === 'gave up')
      return {
        metadata,
        ok: failed === undefined,
        ...(failed === undefined ? {} : { failure: `${failed.path}: ${failed.outcome}: ${failed.errors.at(-1) ?? ''}` }),
        files,
        ms: performance.now() - started,
      }
    },
  }
}
