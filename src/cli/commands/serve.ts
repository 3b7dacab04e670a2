/**
 * `sstream-proxy serve`: the HTTP proxy (and, once configured, its scheduled
 * prefetch) until SIGTERM or SIGINT, which stop accepting connections, let
 * running transfers finish for a few seconds, and exit 0. SIGHUP re-reads the
 * configuration file and puts it in force without dropping a connection; a
 * file with a mistake is refused with its one-line message in the log, and the
 * running configuration stays.
 */

import { access, constants, mkdir } from 'node:fs/promises'
import { batchedWriter, createLogger } from '../../log/logger.js'
import { reloadConfig, startProxy } from '../../runtime.js'
import { UsageError, type Command } from '../command.js'
import { readVersion } from '../run-cli.js'

/** How long transfers may run on after a stop signal before they are cut. */
const DRAIN_MS = 10_000

export const serveCommand: Command = {
  name: 'serve',
  summary: 'serve the mirrors over HTTP and keep their selection warm',
  usage: 'serve',
  options: {},
  async run(_args, context) {
    const config = await context.loadConfig()
    await assertWritable(config.dataDir)
    const log = createLogger({ json: context.stdout.isTTY !== true, write: batchedWriter(context.stdout) })
    log.info('configuration', { source: config.source })
    const proxy = await startProxy(config, { log, version: await readVersion() })
    const onHangup = () => void reloadConfig(proxy, context.loadConfig)
    process.on('SIGHUP', onHangup)
    const signal = await new Promise<NodeJS.Signals>((resolve) => {
      process.once('SIGTERM', () => resolve('SIGTERM'))
      process.once('SIGINT', () => resolve('SIGINT'))
    })
    process.off('SIGHUP', onHangup)
    log.info('stopping', { signal, drainSeconds: DRAIN_MS / 1000 })
    await proxy.close(DRAIN_MS)
    log.info('stopped')
    return 0
  },
}

/** An unwritable dataDir is an operator's mistake: one line and exit 2, not a stack trace later. */
export async function assertWritable(dataDir: string): Promise<void> {
  try {
    await mkdir(dataDir, { recursive: true })
    await access(dataDir, constants.W_OK | constants.R_OK)
  } catch (error) {
    throw new UsageError(`dataDir ${dataDir} is not writable: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`)
  }
}
