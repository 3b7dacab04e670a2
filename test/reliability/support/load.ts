/**
 * A load generator for the load test and the soak run: N clients, each on its
 * own keep-alive connection, asking for random item files (some as Range
 * requests) for a fixed time and checking every body by sha256 against the
 * upstream tree. An evictor deletes stored files now and then, as an
 * operator's clean-up would, so that misses keep happening next to hits.
 */

import http from 'node:http'
import { createHash } from 'node:crypto'
import { readdir, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { MIRROR_PATH } from '../../support/proxy-harness.js'
import type { UpstreamTree } from '../../support/upstream-tree.js'

export interface LoadOptions {
  /** The proxy, `http://host:port`. */
  url: string
  tree: UpstreamTree
  /** Item paths to ask for. */
  paths: string[]
  clients: number
  durationMs: number
  /** Share of requests sent with a `Range` (0 to 1). */
  rangeShare?: number
  /** Delete this many random stored files from `dataDir` every `everyMs`. */
  evict?: { dataDir: string; everyMs: number; count: number }
}

export interface LoadResult {
  requests: number
  bytes: number
  hits: number
  misses: number
  ranges: number
  evicted: number
  /** One line per failed request: status, broken body or bad sha256. */
  errors: string[]
  elapsedMs: number
}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const { hostname, port } = new URL(options.url)
  const result: LoadResult = { requests: 0, bytes: 0, hits: 0, misses: 0, ranges: 0, evicted: 0, errors: [], elapsedMs: 0 }
  const started = performance.now()
  const deadline = started + options.durationMs
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.clients })
  const rangeShare = options.rangeShare ?? 0.1

  async function client(): Promise<void> {
    while (performance.now() < deadline) {
      const path = options.paths[Math.floor(Math.random() * options.paths.length)] as string
      const whole = options.tree.files.get(path) as Buffer
      let range: { start: number; end: number } | undefined
      if (Math.random() < rangeShare) {
        const start = Math.floor(Math.random() * whole.length)
        range = { start, end: Math.min(whole.length - 1, start + Math.floor(Math.random() * 65536)) }
      }
      const expected = createHash('sha256').update(range === undefined ? whole : whole.subarray(range.start, range.end + 1)).digest('hex')
      try {
        const got = await get(hostname, Number(port), MIRROR_PATH + path, agent, range)
        result.requests++
        result.bytes += got.bytes
        if (range !== undefined) result.ranges++
        if (got.cache === 'HIT') result.hits++
        else if (got.cache === 'MISS') result.misses++
        const wantStatus = range === undefined ? 200 : 206
        if (got.status !== wantStatus) result.errors.push(`${path}: status ${got.status}`)
        else if (!got.complete) result.errors.push(`${path}: body broken after ${got.bytes} bytes`)
        else if (got.sha256 !== expected) result.errors.push(`${path}${range === undefined ? '' : ` bytes=${range.start}-${range.end}`}: sha256 mismatch`)
      } catch (error) {
        result.requests++
        result.errors.push(`${path}: ${(error as Error).message}`)
      }
    }
  }

  let evicting: NodeJS.Timeout | undefined
  const { evict } = options
  if (evict !== undefined) {
    evicting = setInterval(() => {
      void evictSome(evict.dataDir, evict.count).then((n) => (result.evicted += n))
    }, evict.everyMs)
  }
  try {
    await Promise.all(Array.from({ length: options.clients }, client))
  } finally {
    clearInterval(evicting)
    agent.destroy()
  }
  result.elapsedMs = performance.now() - started
  return result
}

interface Got {
  status: number
  cache: string | undefined
  bytes: number
  complete: boolean
  sha256: string
}

function get(host: string, port: number, path: string, agent: http.Agent, range: { start: number; end: number } | undefined): Promise<Got> {
  return new Promise((resolve, reject) => {
    const headers = range === undefined ? {} : { range: `bytes=${range.start}-${range.end}` }
    const req = http.get({ host, port, path, agent, headers }, (res) => {
      const hash = createHash('sha256')
      let bytes = 0
      let ended = false
      res.on('data', (chunk: Buffer) => {
        hash.update(chunk)
        bytes += chunk.length
      })
      res.on('end', () => (ended = true))
      res.on('error', () => undefined)
      res.on('close', () => {
        resolve({ status: res.statusCode ?? 0, cache: res.headers['x-cache'] as string | undefined, bytes, complete: ended && res.complete, sha256: hash.digest('hex') })
      })
    })
    req.setTimeout(30_000, () => req.destroy(new Error('no response within 30 s')))
    req.on('error', reject)
  })
}

/**
 * Deletes up to `count` random stored files, skipping any committed in the
 * last second: a fill's late readers open the committed file by name.
 */
async function evictSome(dataDir: string, count: number): Promise<number> {
  const root = join(dataDir, 'blobs')
  const files: string[] = []
  for (const prefix of await readdir(root).catch(() => [])) {
    for (const name of await readdir(join(root, prefix)).catch(() => [])) files.push(join(root, prefix, name))
  }
  let evicted = 0
  for (let i = 0; i < count && files.length > 0; i++) {
    const [path] = files.splice(Math.floor(Math.random() * files.length), 1) as [string]
    const info = await stat(path).catch(() => undefined)
    if (info === undefined || Date.now() - info.ctimeMs < 1000) continue
    if (await unlink(path).then(() => true, () => false)) evicted++
  }
  return evicted
}
