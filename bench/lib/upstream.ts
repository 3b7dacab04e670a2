/**
 * A synthetic signed upstream (src/demo) in a child process: the tree's
 * options go in, its URL, keyring and item list come back, and rate limits
 * and byte counters are driven over IPC.
 */

import { fork } from 'node:child_process'
import type { TreeOptions } from '../../src/demo/synthetic-tree.js'

export interface UpstreamItem {
  path: string
  size: number
  sha256: string
}

export type UpstreamCall = { id: number } & (
  | { method: 'setRate'; bytesPerSecond: number | undefined }
  | { method: 'bytesSent'; path?: string }
  | { method: 'requestCount'; path?: string }
  | { method: 'setStatusFault'; path: string; status: number | undefined }
  | { method: 'resetCounters' }
  | { method: 'writeFiles'; root: string; paths: string[] }
  | { method: 'close' }
)

export type UpstreamReply = { kind: 'reply'; id: number; value?: number; error?: string }
export type UpstreamStarted = { kind: 'started'; url: string; keyringPath: string; items: UpstreamItem[] }

export interface BenchUpstream {
  /** Mirror root URL, ending with `/`. */
  url: string
  keyringPath: string
  /** One entry per distinct item path. */
  items: UpstreamItem[]
  pid: number
  /** Per-connection rate limit of every body; undefined lifts it. */
  setRate(bytesPerSecond: number | undefined): Promise<void>
  /** Body bytes sent for `path` (every path when omitted) since the last reset. */
  bytesSent(path?: string): Promise<number>
  /** Requests for `path` (every path when omitted) since the last reset, error answers included. */
  requestCount(path?: string): Promise<number>
  /** Answers `path` with this status from now on; undefined serves it again. */
  setStatusFault(path: string, status: number | undefined): Promise<void>
  resetCounters(): Promise<void>
  /** Writes tree files under `root` at their item paths, for nginx to serve. */
  writeFiles(root: string, paths: string[]): Promise<void>
  close(): Promise<void>
}

export interface UpstreamOptions {
  /** Passed to `buildUpstreamTree`; sizes set big make the files the benchmarks move. */
  tree: Omit<TreeOptions, 'key'>
  /** Where the upstream's public keyring is written. */
  keyringDir: string
}

type Call = UpstreamCall extends infer C ? (C extends unknown ? Omit<C, 'id'> : never) : never

export async function startUpstream(options: UpstreamOptions): Promise<BenchUpstream> {
  const child = fork(new URL('./upstream-worker.ts', import.meta.url).pathname, [], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  const pending = new Map<number, { resolve: (value: number | undefined) => void; reject: (error: Error) => void }>()
  let nextId = 1
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const started = await new Promise<UpstreamStarted>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`upstream worker exited with code ${code} before it listened`)))
    child.on('message', (message: UpstreamReply | UpstreamStarted) => {
      if (message.kind === 'started') return resolve(message)
      const waiter = pending.get(message.id)
      pending.delete(message.id)
      if (message.error !== undefined) waiter?.reject(new Error(message.error))
      else waiter?.resolve(message.value)
    })
    child.send({ tree: options.tree, keyringDir: options.keyringDir })
  })
  const call = (message: Call) =>
    new Promise<number | undefined>((resolve, reject) => {
      const id = nextId++
      pending.set(id, { resolve, reject })
      child.send({ ...message, id })
    })
  return {
    url: started.url,
    keyringPath: started.keyringPath,
    items: started.items,
    pid: child.pid ?? 0,
    setRate: async (bytesPerSecond) => void (await call({ method: 'setRate', bytesPerSecond })),
    bytesSent: async (path) => (await call({ method: 'bytesSent', path })) ?? 0,
    requestCount: async (path) => (await call({ method: 'requestCount', path })) ?? 0,
    setStatusFault: async (path, status) => void (await call({ method: 'setStatusFault', path, status })),
    resetCounters: async () => void (await call({ method: 'resetCounters' })),
    writeFiles: async (root, paths) => void (await call({ method: 'writeFiles', root, paths })),
    async close() {
      await call({ method: 'close' }).catch(() => undefined)
      child.kill()
      await exited
    },
  }
}
