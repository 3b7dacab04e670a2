/**
 * Runs one `sstream-proxy` invocation: parses the command line, prints help or
 * the version, or runs the command; turns errors into one line on stderr and
 * an exit status (2 for bad input or configuration, 1 for anything else).
 */

import { readFile } from 'node:fs/promises'
import { ConfigError, loadConfig } from '../config/load-config.js'
import { PROGRAM, UsageError, type Command, type Writer } from './command.js'
import { commands as registeredCommands } from './commands/index.js'
import { formatCommandHelp, formatProgramHelp } from './help.js'
import { parseCommandLine } from './parse-command-line.js'

export interface RunCliOptions {
  stdout?: Writer
  stderr?: Writer
  env?: NodeJS.ProcessEnv
  cwd?: string
  commands?: readonly Command[]
}

/** Resolves to the exit status; never rejects. */
export async function runCli(argv: readonly string[], options: RunCliOptions = {}): Promise<number> {
  const stdout = options.stdout ?? process.stdout
  const stderr = options.stderr ?? process.stderr
  const env = options.env ?? process.env
  const cwd = options.cwd ?? process.cwd()
  const commands = options.commands ?? registeredCommands
  try {
    const line = parseCommandLine(argv, commands)
    if (line.kind === 'help') {
      stdout.write(formatProgramHelp(commands))
      return 0
    }
    if (line.kind === 'version') {
      stdout.write(`${PROGRAM} ${await readVersion()}\n`)
      return 0
    }
    if (line.help) {
      stdout.write(formatCommandHelp(line.command))
      return 0
    }
    const context = {
      loadConfig: () => loadConfig({ configPath: line.configPath, env, cwd }),
      stdout,
      stderr,
      env,
      cwd,
    }
    return await line.command.run(line.args, context)
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    stderr.write(`${PROGRAM}: ${message}\n`)
    return error instanceof UsageError || error instanceof ConfigError ? 2 : 1
  }
}

/** Read at run time: `../../package.json` is the package root both from src/cli/ (tsx) and dist/cli/ (built). */
export async function readVersion(): Promise<string> {
  const manifest = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  return manifest.version
}
