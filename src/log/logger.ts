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
  /** Takes each line without its newline; the level lets a writer hurry warnings and errors. */
  write?: (line: string, level: LogLevel) => void
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const json = options.json ?? !process.stdout.isTTY
  const write = options.write ?? batchedWriter(process.stdout)
  // Under load many lines share a millisecond; formatting the time is a fair
  // part of a request line's cost.
  let timeMs = Number.NaN
  let timeText = ''
  const log = (level: LogLevel) => (message: string, fields: LogFields = {}) => {
    const now = Date.now()
    if (now !== timeMs) {
      timeMs = now
      timeText = new Date(now).toISOString()
    }
    const time = timeText
    if (json) {
      write(jsonLine(time, level, message, fields), level)
      return
    }
    const pairs = Object.entries(fields)
      .filter(([, value]) => value !== undefined)
      .map(([key, value]) => `${key}=${typeof value === 'string' && !/\s/.test(value) ? value : JSON.stringify(value)}`)
    write([time, level.toUpperCase().padEnd(5), message, ...pairs].join(' '), level)
  }
  return { info: log('info'), warn: log('warn'), error: log('error') }
}

/**
 * `JSON.stringify({ time, level, message, ...fields })`, with undefined fields
 * left out, built as text: the object and the generic serialiser cost a
 * request line about twice as much CPU under load (measured with wrk).
 */
function jsonLine(time: string, level: LogLevel, message: string, fields: LogFields): string {
  let line = `{"time":"${time}","level":"${level}","message":${jsonString(message)}`
  for (const key of Object.keys(fields)) {
    if (key === 'time' || key === 'level' || key === 'message') continue
    const value = fields[key]
    if (value !== undefined) line += `,${jsonString(key)}:${jsonValue(value)}`
  }
  return `${line}}`
}

function jsonValue(value: unknown): string {
  if (typeof value === 'string') return jsonString(value)
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : 'null'
  if (typeof value === 'boolean') return value ? 'true' : 'false'
  return JSON.stringify(value) ?? 'null'
}

// What JSON.stringify would escape: quotes, backslashes, control characters and lone surrogates.
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/

function jsonString(text: string): string {
  return NEEDS_ESCAPE.test(text) ? JSON.stringify(text) : `"${text}"`
}

export interface BatchedWriterOptions {
  /** How long an info line may wait for others to share its write. */
  delayMs?: number
  /** Written at once when this much is waiting. */
  maxBytes?: number
}

/**
 * Lines written together: under load one write carries hundreds of request
 * lines instead of one each. stdout to a file, pipe or journald is a
 * synchronous write per call on Linux, and one per request cost a third of
 * the metadata throughput. Info lines wait up to `delayMs` (like nginx's
 * `access_log ... buffer= flush=`); warnings and errors go out on this turn
 * of the event loop; whatever waits is written when the process exits.
 */
export function batchedWriter(stream: { write(chunk: string): unknown }, options: BatchedWriterOptions = {}): (line: string, level: LogLevel) => void {
  const delayMs = options.delayMs ?? 100
  const maxBytes = options.maxBytes ?? 64 * 1024
  let pending: string[] = []
  let pendingBytes = 0
  let timer: NodeJS.Timeout | undefined
  let soon: NodeJS.Immediate | undefined
  const flush = () => {
    clearTimeout(timer)
    clearImmediate(soon)
    timer = undefined
    soon = undefined
    if (pending.length === 0) return
    const lines = pending
    pending = []
    pendingBytes = 0
    stream.write(`${lines.join('\n')}\n`)
  }
  process.once('exit', flush)
  return (line, level) => {
    pending.push(line)
    pendingBytes += line.length
    if (pendingBytes >= maxBytes) flush()
    else if (level !== 'info') soon ??= setImmediate(flush)
    // Unreferenced: a waiting log line never keeps the process alive; 'exit' writes it.
    else timer ??= setTimeout(flush, delayMs).unref()
  }
}

/** A logger that drops everything, for tests and commands that print their own output. */
export const silentLogger: Logger = { info: () => undefined, warn: () => undefined, error: () => undefined }
