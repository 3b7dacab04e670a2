/** `wrk` (one thread, keep-alive connections) against one URL: requests or bytes per second. */

import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

export interface WrkOptions {
  connections: number
  seconds: number
  /** wrk's per-request timeout; its default of 2 s is shorter than one big body takes among many connections. */
  timeoutSeconds?: number
}

export async function requestsPerSecond(url: string, options: WrkOptions): Promise<number> {
  const stdout = await runWrk(url, options)
  const match = /Requests\/sec:\s*([\d.]+)/.exec(stdout)
  if (match === null) throw new Error(`wrk printed no Requests/sec for ${url}: ${stdout.trim()}`)
  return Number(match[1])
}

/** Bytes received per second, partial bodies included (wrk's `Transfer/sec`, whose units are powers of 1024). */
export async function bytesPerSecond(url: string, options: WrkOptions): Promise<number> {
  const stdout = await runWrk(url, options)
  // A connection that broke mid-body would count its partial bytes as served.
  if (/Socket errors/.test(stdout)) throw new Error(`wrk saw socket errors from ${url}: ${stdout.trim()}`)
  const match = /Transfer\/sec:\s*([\d.]+)([KMGT]?)B/.exec(stdout)
  if (match === null) throw new Error(`wrk printed no Transfer/sec for ${url}: ${stdout.trim()}`)
  return Number(match[1]) * 1024 ** ' KMGT'.indexOf(match[2] || ' ')
}

async function runWrk(url: string, options: WrkOptions): Promise<string> {
  const timeout = options.timeoutSeconds === undefined ? [] : [`--timeout`, `${options.timeoutSeconds}s`]
  const { stdout } = await promisify(execFile)('wrk', ['-t1', `-c${options.connections}`, `-d${options.seconds}s`, ...timeout, url])
  if (/Non-2xx or 3xx responses/.test(stdout)) throw new Error(`wrk saw error responses from ${url}: ${stdout.trim()}`)
  return stdout
}
