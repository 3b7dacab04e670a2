/**
 * What `prefetch`, `gc` and `verify` share: the proxy's core without the HTTP
 * server, logging only warnings and errors (to stderr, so stdout stays the
 * command's own output), and each mirror's current publication.
 */

import { createLogger, type Logger } from '../../log/logger.js'
import type { Publication } from '../../mirror/publication.js'
import { openCore, type ProxyCore } from '../../runtime.js'
import type { CommandContext, Writer } from '../command.js'
import { assertWritable } from './serve.js'

export interface CommandCore {
  core: ProxyCore
  /** Each mirror by name with its publication: the saved or, without one, a fresh one. */
  publications(options?: { refresh?: boolean }): Promise<Array<{ name: string; publication: Publication | undefined }>>
}

export async function openCommandCore(context: CommandContext): Promise<CommandCore> {
  const config = await context.loadConfig()
  await assertWritable(config.dataDir)
  const core = await openCore(config, { log: warningsTo(context.stderr) })
  return {
    core,
    publications: ({ refresh = false } = {}) =>
      Promise.all(
        core.mirrors.map(async (mirror) => ({
          name: mirror.config.name,
          publication: refresh ? await mirror.refresh() : await mirror.publication(),
        })),
      ),
  }
}

function warningsTo(out: Writer): Logger {
  const log = createLogger({ json: false, write: (line) => out.write(`${line}\n`) })
  return { info: () => undefined, warn: log.warn, error: log.error }
}
