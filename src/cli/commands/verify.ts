/**
 * `sstream-proxy verify [--repair]`: re-hashes every stored file against the
 * sha256 it is stored under and the signed metadata, reports each mismatch,
 * and with `--repair` removes the bad files and their rows. Exit status 1
 * when a mismatch is left in place.
 */

import { formatBytes } from '../../prefetch/progress-display.js'
import { verifyStore } from '../../prefetch/verify-store.js'
import type { Command } from '../command.js'
import { openCommandCore } from './command-core.js'

export const verifyCommand: Command = {
  name: 'verify',
  summary: 're-hash every stored file against the metadata; report (and with --repair remove) mismatches',
  usage: 'verify [--repair]',
  options: {
    repair: { type: 'boolean', description: 'remove files that do not match, so they are fetched again' },
  },
  async run(args, context) {
    const repair = args.values.repair === true
    const { core, publications } = await openCommandCore(context)
    try {
      const mirrors = await publications()
      const report = await verifyStore(
        core.store,
        mirrors.map((entry) => entry.publication),
        { repair },
      )
      for (const { path, sha256, problem } of report.problems) {
        context.stdout.write(`${repair ? 'removed' : 'MISMATCH'} ${path} (sha256 ${sha256}): ${problem}\n`)
      }
      context.stdout.write(`checked ${report.checked} files, ${formatBytes(report.bytes)}: ${report.problems.length} mismatches${repair && report.problems.length > 0 ? ', removed' : ''}\n`)
      return report.problems.length > 0 && !repair ? 1 : 0
    } finally {
      await core.close()
    }
  },
}
