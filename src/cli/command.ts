/**
 * The shape of a CLI command and what the frame hands it. Each command is a
 * module exporting one `Command`; `commands/index.ts` lists them.
 */

import type { Config } from '../config/types.js'

export const PROGRAM = 'sstream-proxy'

/** A `node:util` parseArgs option, plus what `--help` says about it. */
export interface CommandOption {
  type: 'boolean' | 'string'
  short?: string
  multiple?: boolean
  /** One line for `--help`. */
  description: string
  /** The placeholder shown in `--help` for a string option, e.g. `FILE`. */
  valueName?: string
}

export interface CommandArgs {
  values: { [name: string]: string | boolean | (string | boolean)[] | undefined }
  /** The command's positional arguments, one per entry of `Command.arguments` (all present). */
  positionals?: string[]
}

/** A required positional argument, e.g. `DIR`. */
export interface CommandArgument {
  name: string
  /** One line for `--help`. */
  description: string
}

/** Where a command writes; `process.stdout` and `process.stderr` fit. */
export interface Writer {
  write(chunk: string | Uint8Array): unknown
  isTTY?: boolean
}

export interface CommandContext {
  /** Loads the configuration named by `--config`, else `$SSTREAM_PROXY_CONFIG`, `./config.json` or the built-in default. */
  loadConfig(): Promise<Config>
  stdout: Writer
  stderr: Writer
  env: NodeJS.ProcessEnv
  cwd: string
}

export interface Command {
  name: string
  /** One line, for the command list of `sstream-proxy --help`. */
  summary: string
  /** The synopsis after the program name, e.g. `keygen [--force]`. */
  usage: string
  options: { [name: string]: CommandOption }
  /** Required positional arguments, in order; a command without them takes none. */
  arguments?: readonly CommandArgument[]
  /** Resolves to the exit status. Throw `UsageError` for bad input (exit 2). */
  run(args: CommandArgs, context: CommandContext): Promise<number>
}

/** Bad input from the operator: reported as one line, exit status 2. */
export class UsageError extends Error {
  override name = 'UsageError'
}
