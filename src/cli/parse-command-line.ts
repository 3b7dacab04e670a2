/**
 * Splits `sstream-proxy [--config FILE] <command> [options]` into the command and
 * its parsed options, with `node:util` parseArgs. Every mistake is a `UsageError`
 * with one line naming the argument, in place of parseArgs's longer messages.
 */

import { parseArgs, type ParseArgsConfig } from 'node:util'
import { PROGRAM, UsageError, type Command, type CommandArgs, type CommandOption } from './command.js'

/** Options every command takes, besides its own. */
export const COMMON_OPTIONS: { [name: string]: CommandOption } = {
  config: {
    type: 'string',
    valueName: 'FILE',
    description: 'configuration file (default: $SSTREAM_PROXY_CONFIG, else ./config.json if it exists, else the built-in default)',
  },
  help: { type: 'boolean', short: 'h', description: 'show this help' },
}

export type CommandLine =
  | { kind: 'help' }
  | { kind: 'version' }
  | { kind: 'command'; command: Command; args: CommandArgs; help: boolean; configPath: string | undefined }

export function parseCommandLine(argv: readonly string[], commands: readonly Command[]): CommandLine {
  // Before the command only --help, --version and --config are understood, so that
  // `sstream-proxy --config x.json serve` works as well as `serve --config x.json`.
  const leading: string[] = []
  let index = 0
  for (; index < argv.length; index++) {
    const arg = argv[index] as string
    if (arg === '-h' || arg === '--help') return { kind: 'help' }
    if (arg === '-V' || arg === '--version') return { kind: 'version' }
    if (arg === '--config') {
      leading.push(arg, requireValue(argv[index + 1], arg))
      index++
    } else if (arg.startsWith('--config=')) {
      leading.push(arg)
    } else if (arg.startsWith('-')) {
      throw new UsageError(`unknown option ${arg} (see ${PROGRAM} --help)`)
    } else {
      break
    }
  }
  const name = argv[index]
  if (name === undefined) {
    throw new UsageError(`missing command (see ${PROGRAM} --help)`)
  }
  const command = commands.find((candidate) => candidate.name === name)
  if (command === undefined) {
    throw new UsageError(`unknown command "${name}" (see ${PROGRAM} --help)`)
  }
  const { values, positionals } = parseCommandOptions(command, [...leading, ...argv.slice(index + 1)])
  const configPath = values.config as string | undefined
  if (configPath === '') {
    throw new UsageError(`${command.name}: option --config needs a value (see ${PROGRAM} ${command.name} --help)`)
  }
  const help = values.help === true
  const expected = command.arguments ?? []
  const missing = expected[positionals.length]
  if (!help && missing !== undefined) {
    throw new UsageError(`${command.name}: missing ${missing.name} (see ${PROGRAM} ${command.name} --help)`)
  }
  return { kind: 'command', command, args: { values, positionals }, help, configPath }
}

function parseCommandOptions(command: Command, args: string[]): Required<CommandArgs> {
  const options: NonNullable<ParseArgsConfig['options']> = {}
  for (const [name, { type, short, multiple }] of Object.entries({ ...command.options, ...COMMON_OPTIONS })) {
    options[name] = { type, ...(short === undefined ? {} : { short }), ...(multiple === undefined ? {} : { multiple }) }
  }
  const expected = command.arguments?.length ?? 0
  try {
    const { values, positionals } = parseArgs({ args, options, strict: true, allowPositionals: expected > 0 })
    const extra = positionals[expected]
    if (extra !== undefined) throw new UsageError(`${command.name}: unexpected argument "${extra}" (see ${PROGRAM} ${command.name} --help)`)
    return { values, positionals }
  } catch (error) {
    if (error instanceof UsageError) throw error
    throw new UsageError(`${command.name}: ${describeParseError(error)} (see ${PROGRAM} ${command.name} --help)`)
  }
}

/** parseArgs's messages run to several sentences; these name the argument in a few words. */
function describeParseError(error: unknown): string {
  const { code, message } = error as { code?: string; message: string }
  const quoted = /'([^']*)'/.exec(message)?.[1] ?? ''
  // Quoted as '--config <value>' or '-a, --armor': name the long form.
  const option = quoted.split(/[ ,]+/).filter((word) => word.startsWith('-')).at(-1) ?? quoted
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${option}`
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument "${quoted}"`
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return message.includes('does not take an argument') ? `option ${option} takes no value` : `option ${option} needs a value`
    default:
      throw error
  }
}

function requireValue(value: string | undefined, option: string): string {
  if (value === undefined || value === '' || value.startsWith('-')) {
    throw new UsageError(`option ${option} needs a value (see ${PROGRAM} --help)`)
  }
  return value
}
