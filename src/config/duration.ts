/**
 * Durations in the configuration: `30s`, `10m`, `1h`, `1d`, or a plain number
 * of seconds. Everything downstream works in seconds.
 */

export class DurationSyntaxError extends Error {
  override name = 'DurationSyntaxError'
}

const UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86400 } as const

// The same shape as the schema's duration pattern; a bare numeric string is not
// accepted so that `"10"` is not silently read as seconds when minutes were meant.
const DURATION_SYNTAX = /^([0-9]+)([smhd])$/

/** Returns the duration in seconds, or throws `DurationSyntaxError` with a message fit for an operator. */
export function parseDuration(value: unknown): number {
  if (typeof value === 'number') {
    if (Number.isFinite(value) && value > 0) {
      return value
    }
  } else if (typeof value === 'string') {
    const match = DURATION_SYNTAX.exec(value)
    if (match !== null) {
      const [, amount, unit] = match as unknown as [string, string, keyof typeof UNIT_SECONDS]
      const seconds = Number(amount) * UNIT_SECONDS[unit]
      if (seconds > 0) {
        return seconds
      }
    }
  }
  throw new DurationSyntaxError(`${describeValue(value)} is not a duration (use 30s, 10m, 1h, 1d or a number of seconds)`)
}

/** A short rendering of a configuration value for messages: JSON, cut to one readable line. */
export function describeValue(value: unknown): string {
  const text = value === undefined ? 'undefined' : JSON.stringify(value)
  return text.length > 60 ? `${text.slice(0, 57)}...` : text
}
