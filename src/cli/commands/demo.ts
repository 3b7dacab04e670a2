/**
 * `sstream-proxy demo`: a synthetic signed upstream and a proxy in front of
 * it, the URLs and what to try, until Ctrl-C. It reads no configuration and
 * needs no internet; the data lives in a temporary directory unless
 * `--data-dir` names one to keep.
 */

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createLogger } from '../../log/logger.js'
import { demoInstructions, startDemo } from '../../demo/start-demo.js'
import { UsageError, type Command } from '../command.js'
import { readVersion } from '../run-cli.js'
import { assertWritable } from './serve.js'

export const demoCommand: Command = {
  name: 'demo',
  summary: 'run a local synthetic signed upstream and a proxy in front of it, for a first look without internet',
  usage: 'demo [--host ADDRESS] [--port PORT] [--data-dir DIR]',
  options: {
    host: { type: 'string', valueName: 'ADDRESS', description: 'address the proxy listens on (default 127.0.0.1; 0.0.0.0 to let MAAS reach it)' },
    port: { type: 'string', valueName: 'PORT', description: 'port the proxy listens on (default 8080; 0 picks a free one)' },
    'data-dir': { type: 'string', valueName: 'DIR', description: 'keep the cache and keys here (default: a temporary directory, removed on exit)' },
  },
  async run(args, context) {
    const port = parsePort(args.values.port)
    const named = args.values['data-dir']
    const dataDir = typeof named === 'string' ? resolve(context.cwd, named) : await mkdtemp(join(tmpdir(), 'sstream-proxy-demo-'))
    await assertWritable(dataDir)
    const log = createLogger({ json: context.stdout.isTTY !== true, write: (line) => context.stdout.write(`${line}\n`) })
    try {
      const host = stringValue(args.values.host)
      const demo = await startDemo({ dataDir, host, port, log, version: await readVersion() }).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'EADDRINUSE') throw error
        throw new UsageError(`demo: port ${port} is in use: pick another with --port (0 picks a free one)`)
      })
      context.stdout.write(`\n${demoInstructions(demo, named === undefined)}\n`)
      const signal = await new Promise<NodeJS.Signals>((resolveSignal) => {
        process.once('SIGTERM', () => resolveSignal('SIGTERM'))
        process.once('SIGINT', () => resolveSignal('SIGINT'))
      })
      log.info('stopping', { signal })
      await demo.close()
      return 0
    } finally {
      if (named === undefined) await rm(dataDir, { recursive: true, force: true })
    }
  },
}

function stringValue(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined
}

function parsePort(value: unknown): number {
  if (value === undefined) return 8080
  const port = Number(value)
  if (typeof value !== 'string' || !/^\d+$/.test(value) || port > 65535) throw new UsageError(`demo: --port must be a port number from 0 to 65535, got "${String(value)}"`)
  return port
}
