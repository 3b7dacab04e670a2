/** Requests per second from `wrk` (one thread, keep-alive connections) against one URL. */

import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

export interface WrkOptions {
  connections: number
  seconds: number
}

export async function requestsPerSecond(url: string, options: WrkOptions): Promise<number> {
  const { stdout } = await promisify(execFile)('wrk', ['-t1', `-c${options.connections}`, `-d${options.seconds}s`, url])
  const match = /Requests\/sec:\s*([\d.]+)/.exec(stdout)
  if (match === null) throw new Error(`wrk printed no Requests/sec for ${url}: ${stdout.trim()}`)
  if (/Non-2xx or 3xx responses/.test(stdout)) throw new Error(`wrk saw error responses from ${url}: ${stdout.trim()}`)
  return Number(match[1])
}
