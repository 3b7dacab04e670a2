/**
 * The text of `sstream-proxy --help` and `sstream-proxy <command> --help`.
 */

import { PROGRAM, type Command, type CommandOption } from './command.js'
import { COMMON_OPTIONS } from './parse-command-line.js'

export function formatProgramHelp(commands: readonly Command[]): string {
  const width = Math.max(...commands.map((command) => command.name.length))
  return [
    `Usage: ${PROGRAM} <command> [--config FILE] [options]`,
    '',
    'A caching pull-through proxy for SimpleStreams: point MAAS at it instead of images.maas.io.',
    '',
    'Commands:',
    ...commands.map((command) => `  ${command.name.padEnd(width)}  ${command.summary}`),
    '',
    'Options:',
    ...formatOptions({
      config: COMMON_OPTIONS.config as CommandOption,
      help: { type: 'boolean', short: 'h', description: 'show this help' },
      version: { type: 'boolean', short: 'V', description: 'print the version' },
    }),
    '',
    `Run "${PROGRAM} <command> --help" for the options of a command.`,
    '',
  ].join('\n')
}

export function formatCommandHelp(command: Command): string {
  return [
    `Usage: ${PROGRAM} ${command.usage} [--config FILE]`,
    '',
    `${command.summary[0]?.toUpperCase() ?? ''}${command.summary.slice(1)}.`,
    '',
    ...formatArguments(command),
    'Options:',
    ...formatOptions({ ...command.options, ...COMMON_OPTIONS }),
    '',
  ].join('\n')
}

function formatArguments(command: Command): string[] {
  const args = command.arguments ?? []
  if (args.length === 0) return []
  const width = Math.max(...args.map((arg) => arg.name.length))
  return ['Arguments:', ...args.map((arg) => `  ${arg.name.padEnd(width)}  ${arg.description}`), '']
}

function formatOptions(options: { [name: string]: CommandOption }): string[] {
  const rows = Object.entries(options).map(([name, option]) => {
    const flags = `${option.short === undefined ? '    ' : `-${option.short}, `}--${name}`
    const value = option.type === 'string' ? ` ${option.valueName ?? 'VALUE'}` : ''
    return [`${flags}${value}`, option.description] as const
  })
  const width = Math.max(...rows.map(([flags]) => flags.length))
  return rows.map(([flags, description]) => `  ${flags.padEnd(width)}  ${description}`)
}
