/**
 * One line per event: JSON objects when stdout is not a terminal (journald,
 * docker logs and log shippers parse them), `time level message key=value`
 * for a person at a terminal.
 */

export type LogLevel = 'info' | 'warn' | 'error'
export type LogFields = Record<string, unknown>

export interface Logger {
  info(message: string, fields?: LogFields): void
  warn(message: string, fields?: LogFields): void
  error(message: string, fields?: LogFields): void
}

export interface LoggerOptions {
  json?: boolean
  write?: (line: string) => void
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const json = options.json ?? !process.stdout.isTTY
  const write = options.write ?? batchedWriter(process.stdout)
  const log = (level: LogLevel) => (message: string, fields: LogFields = {}) => {
    const time = new Date().toISOString()
    if (json) {
      write(JSON.stringify({ time, level, message, ...fields }))
      return
    }
    const pairs = Object.entries(fields)
      .filter(([, value]) => value !== undefined)
      .map(([key, value]) => `${key}=${typeof value === 'string' && !/\s/.test(value) ? value : JSON.stringify(value)}`)
    write([time, level.toUpperCase().padEnd(5), message, ...pairs].join(' '))
  }
  return { info: log('info'), warn: log('warn'), error: log('error') }
}

/**
 * Lines written together once per turn of the event loop: under load one
 * write call carries many request lines instead of one each (stdout to a file
 * or pipe is a synchronous write per call).
 */
export function batchedWriter(stream: { write(chunk: string): unknown }): (line: string) => void {
  let pending: string[] = []
  const flush = () => {
    const lines = pending
    pending = []
    stream.write(`${lines.join('\n')}\n`)
  }
  return (line) => {
    if (pending.length === 0) setImmediate(flush)
    pending.push(line)
  }
}

/** A logger that drops everything, for tests and commands that print their own output. */
export const silentLogger: Logger = { info: () => undefined, warn: () => undefined, error: () => undefined }
