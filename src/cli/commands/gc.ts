/**
 * `sstream-proxy gc [--dry-run]`: removes stored files that no selected or
 * published version of any mirror references. Refuses when a mirror has no
 * metadata, since which files it needs is then unknown. On a replica of a
 * fleet it collects the shared bucket, as the fleet's scheduled collection does.
 */

import { collectFleetGarbage } from '../../fleet/fleet-garbage.js'
import { collectGarbage, GcRefusedError } from '../../prefetch/garbage.js'
import { formatBytes } from '../../prefetch/progress-display.js'
import { PROGRAM, type Command } from '../command.js'
import { openCommandCore } from './command-core.js'

export const gcCommand: Command = {
  name: 'gc',
  summary: 'remove stored files that no selected or published version references',
  usage: 'gc [--dry-run]',
  options: {
    'dry-run': { type: 'boolean', short: 'n', description: 'list the files that would be removed; remove nothing' },
  },
  async run(args, context) {
    const dryRun = args.values['dry-run'] === true
    const { core, publications } = await openCommandCore(context)
    // A replica of a fleet collects the whole bucket, under the fleet's `gc` lease.
    const lease = await core.fleetLeases?.tryAcquire('gc')
    try {
      if (core.fleetLeases !== undefined && lease === undefined) {
        context.stderr.write(`${PROGRAM} gc: another replica of the fleet is collecting garbage now; try again later\n`)
        return 1
      }
      const mirrors = await publications()
      const report = core.replica === undefined ? await collectGarbage(core.store, mirrors, { dryRun }) : await collectFleetGarbage(core.store, mirrors, core.replica.records, { dryRun })
      const verb = dryRun ? 'would remove' : 'removed'
      for (const file of report.files) context.stdout.write(`${verb} ${file.path ?? file.sha256} (${formatBytes(file.size)}, sha256 ${file.sha256})\n`)
      context.stdout.write(`${verb} ${report.files.length} files, ${formatBytes(report.bytes)}\n`)
      return 0
    } catch (error) {
      if (!(error instanceof GcRefusedError)) throw error
      context.stderr.write(`${PROGRAM} gc: ${error.message}\n`)
      return 1
    } finally {
      await lease?.release()
      await core.close()
    }
  },
}
