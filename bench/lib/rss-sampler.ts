/** Samples a process's resident set size (VmRSS in /proc/PID/status) until stopped, keeping the peak. */

import { readFile } from 'node:fs/promises'

export interface RssSampler {
  /** Stops sampling; resolves with the peak seen, in bytes. */
  stop(): Promise<number>
}

export async function readRss(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status)
  if (match === null) throw new Error(`/proc/${pid}/status has no VmRSS line`)
  return Number(match[1]) * 1024
}

export function sampleRss(pid: number, intervalMs = 20): RssSampler {
  let peak = 0
  let sampling = Promise.resolve()
  const timer = setInterval(() => {
    sampling = readRss(pid).then(
      (rss) => void (peak = Math.max(peak, rss)),
      () => undefined,
    )
  }, intervalMs)
  return {
    async stop() {
      clearInterval(timer)
      await sampling
      return Math.max(peak, await readRss(pid))
    },
  }
}
