/**
 * Rates in the configuration: `"20MB/s"`, `"160Mbit/s"`, `"512KiB/s"`, or a
 * plain number of bytes per second. Everything downstream works in bytes per second.
 */

import { UNIT_BYTES as SIZE_UNIT_BYTES } from './byte-size.js'
import { describeValue } from './duration.js'

export class RateSyntaxError extends Error {
  override name = 'RateSyntaxError'
}

/** Bytes per second of one of each unit: the sizes' decimal and binary bytes (and `kB`), decimal bits. */
const UNIT_BYTES: Record<string, number> = {
  ...SIZE_UNIT_BYTES,
  kB: 1e3,
  bit: 1 / 8,
  kbit: 1e3 / 8,
  Kbit: 1e3 / 8,
  Mbit: 1e6 / 8,
  Gbit: 1e9 / 8,
}

const RATE_SYNTAX = /^([0-9]+(?:\.[0-9]+)?)(B|kB|KB|MB|GB|KiB|MiB|GiB|bit|kbit|Kbit|Mbit|Gbit)\/s$/

/** Below this a single read of 64 KiB would take a minute: surely a typo. */
export const MIN_RATE_BYTES = 1000

/** Returns the rate in bytes per second, or throws `RateSyntaxError` with a message fit for an operator. */
export function parseRate(value: unknown): number {
  let bytes: number | undefined
  if (typeof value === 'number' && Number.isFinite(value)) {
    bytes = value
  } else if (typeof value === 'string') {
    const match = RATE_SYNTAX.exec(value)
    if (match !== null) bytes = Number(match[1]) * (UNIT_BYTES[match[2] as string] as number)
  }
  if (bytes === undefined) {
    throw new RateSyntaxError(`${describeValue(value)} is not a rate (use e.g. "20MB/s", "160Mbit/s", "512KiB/s" or a number of bytes per second)`)
  }
  if (bytes < MIN_RATE_BYTES) {
    throw new RateSyntaxError(`${describeValue(value)} is too low (at least 1kB/s; leave the key out for no limit)`)
  }
  return Math.round(bytes)
}
