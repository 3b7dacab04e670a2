/**
 * The long load run (`npm run test:soak`): 200 clients for a few minutes over
 * hits and misses of a proxy running as its own process, every body checked
 * by sha256, the proxy's RSS and open file descriptors sampled every 10 s.
 * Prints a summary for docs/reliability.md and exits non-zero on any failed
 * request, on RSS growth in the second half of the run, or on leaked fds.
 *
 *   npm run test:soak -- [--clients N] [--minutes M]
 */

import { parseArgs } from 'node:util'
import { runLoadScenario } from '../reliability/support/load-scenario.js'

const MB = 1024 * 1024
const { values } = parseArgs({ options: { clients: { type: 'string', default: '200' }, minutes: { type: 'string', default: '3' } } })
const clients = Number(values.clients)
const minutes = Number(values.minutes)

const report = await runLoadScenario({
  clients,
  durationMs: minutes * 60_000,
  sampleEveryMs: 10_000,
  // Kept-alive upstream connections close after 5 s idle; then the fd count is back to its baseline.
  settleMs: 7_000,
  upstreamBytesPerSecond: 8 * MB,
  evict: { everyMs: 500, count: 3 },
  progress: (line) => console.log(line),
})

const { load, samples } = report
const mb = (bytes: number) => (bytes / MB).toFixed(1)
const half = samples.slice(Math.floor(samples.length / 2))
const firstHalfPeak = Math.max(...samples.slice(0, Math.floor(samples.length / 2)).map((s) => s.rssBytes))
const secondHalfPeak = Math.max(...half.map((s) => s.rssBytes))
const summary = {
  clients,
  minutes,
  files: report.files,
  treeMB: mb(report.treeBytes),
  requests: load.requests,
  requestsPerSecond: Math.round(load.requests / (load.elapsedMs / 1000)),
  hits: load.hits,
  misses: load.misses,
  ranges: load.ranges,
  evicted: load.evicted,
  servedGB: (load.bytes / 1024 ** 3).toFixed(2),
  errors: load.errors.length,
  rssMB: { before: mb(report.before.rssBytes), firstHalfPeak: mb(firstHalfPeak), secondHalfPeak: mb(secondHalfPeak), afterLoad: mb(report.afterLoad.rssBytes), afterSettle: mb(report.afterSettle.rssBytes) },
  fds: { before: report.before.openFds, afterLoad: report.afterLoad.openFds, afterSettle: report.afterSettle.openFds },
}
console.log(JSON.stringify(summary, null, 2))
console.log('| t (s) | RSS (MB) | open fds |\n|---:|---:|---:|')
for (const sample of samples) console.log(`| ${Math.round(sample.atMs / 1000)} | ${mb(sample.rssBytes)} | ${sample.openFds} |`)

const problems: string[] = []
if (load.errors.length > 0) problems.push(`${load.errors.length} failed requests, e.g. ${load.errors.slice(0, 5).join('; ')}`)
// Flat memory: the second half may not climb more than 20% over the first half's peak.
if (secondHalfPeak > firstHalfPeak * 1.2) problems.push(`RSS still growing: peak ${mb(firstHalfPeak)} MB, then ${mb(secondHalfPeak)} MB`)
if (report.afterSettle.openFds > report.before.openFds + 2) problems.push(`fd leak: ${report.before.openFds} before, ${report.afterSettle.openFds} after`)
for (const problem of problems) console.error(`soak: ${problem}`)
process.exitCode = problems.length === 0 ? 0 : 1
