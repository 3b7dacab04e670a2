/**
 * `sstream-proxy prefetch [--dry-run] [--json]`: one warming pass of every
 * mirror, then garbage collection, then exit; non-zero when any file failed.
 * `--dry-run` prints the plan and fetches no item, and warns (on stderr; in
 * the JSON as `maasProblems`) of anything MAAS 3.8 would reject in the
 * metadata each mirror serves. Progress goes to stderr (a bar on a terminal,
 * a line every few seconds otherwise), results to stdout.
 */

import { buildPlan, type Plan } from '../../prefetch/plan.js'
import { findGarbage, GcRefusedError } from '../../prefetch/garbage.js'
import { formatBytes, showProgress } from '../../prefetch/progress-display.js'
import type { PassOutcome } from '../../prefetch/prefetcher.js'
import type { Publication } from '../../mirror/publication.js'
import { describeMaasProblem } from '../../streams/maas-compatibility.js'
import { PROGRAM, type Command, type CommandContext } from '../command.js'
import { openCommandCore, type CommandCore } from './command-core.js'

export const prefetchCommand: Command = {
  name: 'prefetch',
  summary: 'run one warming pass of every mirror, then exit',
  usage: 'prefetch [--dry-run] [--json]',
  options: {
    'dry-run': { type: 'boolean', short: 'n', description: 'print what would be fetched and dropped, per product and version; fetch nothing' },
    json: { type: 'boolean', description: 'print the plan or the results as JSON' },
  },
  async run(args, context) {
    const json = args.values.json === true
    const opened = await openCommandCore(context)
    try {
      return args.values['dry-run'] === true ? await dryRun(opened, context, json) : await warm(opened, context, json)
    } finally {
      await opened.core.close()
    }
  },
}

async function dryRun({ core, publications }: CommandCore, context: CommandContext, json: boolean): Promise<number> {
  const mirrors = await publications({ refresh: true })
  const ready = mirrors.filter((entry): entry is { name: string; publication: Publication } => entry.publication !== undefined)
  for (const { name } of mirrors.filter((entry) => entry.publication === undefined)) {
    const reason = core.mirrors.find((mirror) => mirror.config.name === name)?.metadataStatus().metadataError ?? 'no metadata'
    context.stderr.write(`${PROGRAM} prefetch: mirror ${name}: ${reason}\n`)
  }
  let garbage: ReturnType<typeof findGarbage> = []
  try {
    garbage = findGarbage(core.store, mirrors)
  } catch (error) {
    if (!(error instanceof GcRefusedError)) throw error
  }
  const plan = buildPlan(ready, (sha256) => core.store.index.get(sha256) !== undefined, garbage)
  const maasProblems = Object.fromEntries(ready.map(({ name, publication }) => [name, publication.maasProblems.map(describeMaasProblem)]))
  for (const [name, problems] of Object.entries(maasProblems)) {
    for (const problem of problems) context.stderr.write(`${PROGRAM} prefetch: warning: mirror ${name}: MAAS 3.8 would reject the metadata it serves: ${problem}\n`)
  }
  context.stdout.write(json ? `${JSON.stringify({ ...plan, maasProblems }, null, 2)}\n` : formatPlan(plan))
  return ready.length === mirrors.length ? 0 : 1
}

function formatPlan(plan: Plan): string {
  const lines = plan.versions.map((entry) => {
    const what =
      entry.action === 'fetch'
        ? `${entry.missingFiles} of ${entry.files} files, ${formatBytes(entry.missingBytes)}`
        : `${entry.files} files, ${formatBytes(entry.bytes)}`
    const mirror = entry.mirror === '' ? '' : `${entry.mirror} `
    return `${entry.action.padEnd(5)} ${mirror}${entry.product} ${entry.version}: ${what}`
  })
  const { totals } = plan
  lines.push(
    `total: fetch ${totals.fetchFiles} files (${formatBytes(totals.fetchBytes)}), keep ${totals.keepFiles} files (${formatBytes(totals.keepBytes)}), drop ${totals.dropFiles} files (${formatBytes(totals.dropBytes)})`,
  )
  return `${lines.join('\n')}\n`
}

async function warm({ core }: CommandCore, context: CommandContext, json: boolean): Promise<number> {
  const outcomes: PassOutcome[] = []
  // A pass run by hand is the operator's decision to fetch now: the windows hold only the schedule.
  const window = core.prefetcher.window()
  if (!window.open) context.stderr.write(`${PROGRAM} prefetch: outside prefetch.windows (${window.windows.join(', ')}); running anyway, as asked\n`)
  for (const mirror of core.mirrors) {
    let stop: (() => void) | undefined
    const outcome = await core.prefetcher.run(mirror.config.name, {
      gc: false,
      onPass: (pass) => {
        if (!json) stop = showProgress(mirror.config.name, () => pass.progress(), { out: context.stderr })
      },
    })
    stop?.()
    outcomes.push(outcome)
  }
  const ok = outcomes.every((outcome) => outcome.result === 'ok')
  const garbage = ok ? await core.prefetcher.collect() : undefined
  if (json) {
    context.stdout.write(`${JSON.stringify({ passes: outcomes, garbage: garbage === undefined ? null : { files: garbage.files.length, bytes: garbage.bytes } }, null, 2)}\n`)
  } else {
    for (const { mirror, result, counts } of outcomes) {
      const detail = result === 'skipped' ? 'another process is running a pass of this mirror' : `${counts.filesDone}/${counts.filesTotal} files, ${formatBytes(counts.bytesDone)}`
      context.stdout.write(`${mirror}: ${result}, ${detail}\n`)
      for (const error of counts.errors) context.stdout.write(`  failed: ${error}\n`)
    }
    if (garbage !== undefined) context.stdout.write(`removed ${garbage.files.length} unreferenced files (${formatBytes(garbage.bytes)})\n`)
  }
  return ok ? 0 : 1
}
