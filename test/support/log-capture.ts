/**
 * A logger whose JSON lines a test can read back: error answers carry only a
 * request id, and the detail is found in the log under it; the request lines
 * say which proxy of several answered a path.
 */

import { createLogger, type Logger } from '../../src/log/logger.js'

export interface LogCapture {
  log: Logger
  /** The `error` field of the log entry carrying the request id the response body names, or undefined. */
  errorFor(body: Buffer | string): string | undefined
  /** The paths of the `request` lines logged so far, in order. */
  requestPaths(): string[]
}

export function captureLog(): LogCapture {
  const lines: string[] = []
  const entries = () => lines.map((line) => JSON.parse(line) as Record<string, unknown>)
  return {
    log: createLogger({ json: true, write: (line) => lines.push(line) }),
    errorFor(body) {
      const requestId = /\(request id ([0-9a-f]+)\)/.exec(body.toString())?.[1]
      if (requestId === undefined) return undefined
      const entry = entries().find((logged) => logged.requestId === requestId)
      return entry === undefined ? undefined : String(entry.error)
    },
    requestPaths: () => entries().flatMap((entry) => (entry.message === 'request' ? [String(entry.path)] : [])),
  }
}
